"""Rate limits per token (429 with Retry-After) and the largest request body (413)."""

from __future__ import annotations

from pathlib import Path

import httpx

from services.gateway.limits import RateLimiter, retry_after
from tests.gateway.conftest import Gateway, make_app


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_the_burst_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    assert [limiter.take("t", rate=2.0, burst=3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("t", rate=2.0, burst=3) == 0.5  # one token takes 1/rate to refill
    clock.now += 0.25
    assert limiter.take("t", rate=2.0, burst=3) == 0.25  # refused requests take nothing
    clock.now += 0.25
    assert limiter.take("t", rate=2.0, burst=3) == 0.0
    # buckets are per key, and never fill beyond the burst
    assert limiter.take("other", rate=2.0, burst=3) == 0.0
    clock.now += 3600
    assert [limiter.take("t", rate=2.0, burst=3) == 0.0 for _ in range(4)] == [True] * 3 + [False]
    assert limiter.take("t", rate=0, burst=0) == 0.0  # 0: no limit


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    assert retry_after(0.01) == "1"
    assert retry_after(1.0) == "1"
    assert retry_after(1.2) == "2"


async def test_token_over_its_rate_gets_429_with_retry_after(gateway: Gateway) -> None:
    c = gateway.client
    created = await c.post(
        "/v1/tokens",
        json={"name": "slow", "rate_limit_per_s": 0.5, "rate_limit_burst": 2},
        headers=gateway.auth(),
    )
    slow = gateway.auth(created.json()["token"])
    assert [(await c.get("/v1/whoami", headers=slow)).status_code for _ in range(2)] == [200, 200]
    refused = await c.get("/v1/whoami", headers=slow)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "2"
    assert "rate limit of 0.5 requests/s (burst 2)" in refused.json()["detail"]
    # another token is not slowed by this one, and the bootstrap token is never limited
    assert (await c.get("/v1/whoami", headers=gateway.auth())).status_code == 200
    # a throttled mutation is audited as denied, under its user
    await c.post("/v1/tokens", json={"name": "z"}, headers=slow)
    records = (
        await c.get("/v1/audit", params={"outcome": "denied"}, headers=gateway.auth())
    ).json()
    assert records["records"][0]["status"] == 429
    assert records["records"][0]["user"] == "admin"


async def test_gateway_default_rate_applies_to_every_token(
    tmp_path: Path, gateway: Gateway
) -> None:
    gateway.app.state.settings = gateway.app.state.settings.model_copy(
        update={"rate_limit_per_s": 1.0, "rate_limit_burst": 3}
    )
    token = gateway.auth(await gateway.user("a"))
    codes = [(await gateway.client.get("/v1/whoami", headers=token)).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


async def test_body_over_the_limit_is_413_declared_or_streamed(gateway: Gateway) -> None:
    limit = gateway.app.state.settings.max_body_bytes
    big = b"x" * (limit + 1)
    declared = await gateway.client.post("/v1/teams", content=big, headers=gateway.auth())
    assert declared.status_code == 413
    assert str(limit) in declared.json()["detail"]

    async def chunks():  # no Content-Length: counted as it arrives
        for _ in range(limit // 65536 + 2):
            yield b"y" * 65536

    streamed = await gateway.client.post("/v1/apps:apply", content=chunks(), headers=gateway.auth())
    assert streamed.status_code == 413
    assert gateway.upstream.calls == []
    bad = await gateway.client.post(
        "/v1/teams", content=b"{}", headers={**gateway.auth(), "content-length": "x"}
    )
    assert bad.status_code == 400


def test_upstream_calls_have_a_timeout(tmp_path: Path) -> None:
    """Every call to an owner (forwarding, ownership look-ups) goes through this client."""
    app = make_app(tmp_path, upstream_timeout_s=3.5)
    assert app.state.http.timeout == httpx.Timeout(3.5)
    assert app.state.owners._http is app.state.http
