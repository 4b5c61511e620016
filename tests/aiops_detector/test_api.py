"""The internal API: CRUD of rules, silences and receivers, analyze, validation errors."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from libs.events.outbox import OutboxRelay
from libs.events.publisher import Publisher
from libs.internal import internal_token_guard
from services.aiops_detector import api
from services.aiops_detector.settings import DetectorSettings

TOKEN = {"Authorization": "Bearer internal"}
RULE = {"name": "cpu-hot", "metric": "cpu", "thresholds": {"WARNING": 80, "CRITICAL": 95}}


@pytest.fixture
async def client(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[httpx.AsyncClient]:
    reloads: list[int] = []

    async def on_rules_changed() -> None:
        reloads.append(1)

    app = FastAPI()
    app.include_router(
        api.build_router(
            guard=internal_token_guard(SecretStr("internal")),
            settings=DetectorSettings(analyze_max_points=1000),
            on_rules_changed=on_rules_changed,
        )
    )
    app.state.sessions = sessions
    app.state.relay = OutboxRelay(
        sessions=sessions, publisher=Publisher("127.0.0.1:1", client_id="t")
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://d/internal/v1", headers=TOKEN
    ) as c:
        c.reloads = reloads  # type: ignore[attr-defined]
        yield c


async def test_the_internal_token_is_required(client: httpx.AsyncClient) -> None:
    response = await client.get("/alerts", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401


async def test_rules_crud_reloads_the_stream_rules(client: httpx.AsyncClient) -> None:
    created = await client.post("/alert-rules", json={**RULE, "for_s": 60, "occurrences": 3})
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["for_s"] == 60 and rule["occurrences"] == 3 and rule["id"]
    changed = await client.put(
        f"/alert-rules/{rule['id']}", json={**RULE, "thresholds": {"WARNING": 70}}
    )
    assert changed.json()["thresholds"] == {"WARNING": 70.0}
    listed = (await client.get("/alert-rules")).json()["rules"]
    assert [r["id"] for r in listed] == [rule["id"]]
    assert (await client.delete(f"/alert-rules/{rule['id']}")).status_code == 204
    assert (await client.get(f"/alert-rules/{rule['id']}")).status_code == 404
    assert (await client.delete(f"/alert-rules/{rule['id']}")).status_code == 404
    assert len(client.reloads) == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            {**RULE, "thresholds": {"WARNING": 90, "CRITICAL": 80}},
            "CRITICAL threshold must be at least",
        ),
        ({**RULE, "thresholds": {}}, "give a threshold"),
        ({**RULE, "thresholds": {"FATAL": 1}}, "WARNING"),
        ({**RULE, "metric": "cpu usage"}, "metric"),
        ({**RULE, "for_s": -1}, "for_s"),
        ({**RULE, "matchers": [{"name": "app", "op": "=~", "value": "("}]}, "invalid regex"),
        ({**RULE, "surprise": 1}, "surprise"),
    ],
)
async def test_bad_rules_get_422_with_the_reason(
    client: httpx.AsyncClient, body: dict[str, Any], reason: str
) -> None:
    response = await client.post("/alert-rules", json=body)
    assert response.status_code == 422
    assert reason in response.text


async def test_silences_record_who_and_expire_on_delete(client: httpx.AsyncClient) -> None:
    body = {
        "matchers": [{"name": "app", "value": "shop"}],
        "ends_at": 4_000_000_000_000,
        "comment": "upgrade",
    }
    created = await client.post("/silences", json=body, params={"created_by": "alice"})
    assert created.status_code == 201, created.text
    silence = created.json()
    assert silence["state"] == "active" and silence["created_by"] == "alice"
    assert (await client.delete(f"/silences/{silence['id']}")).status_code == 204
    assert (await client.get(f"/silences/{silence['id']}")).json()["state"] == "expired"
    bad = await client.post("/silences", json={**body, "starts_at": 5_000_000_000_000})
    assert bad.status_code == 422 and "ends_at must be after starts_at" in bad.text
    empty = await client.post("/silences", json={**body, "matchers": []})
    assert empty.status_code == 422


async def test_receivers_hide_secrets_and_refuse_duplicates(client: httpx.AsyncClient) -> None:
    body = {
        "name": "pager",
        "kind": "webhook",
        "url": "https://hooks.example/x",
        "headers": {"Authorization": "Bearer topsecret"},
    }
    created = await client.post("/notifications/receivers", json=body)
    assert created.status_code == 201, created.text
    assert "topsecret" not in created.text
    for response in (
        await client.get("/notifications/receivers"),
        await client.get(f"/notifications/receivers/{created.json()['id']}"),
    ):
        assert response.status_code == 200 and "topsecret" not in response.text
    assert (await client.post("/notifications/receivers", json=body)).status_code == 409
    bad = await client.post(
        "/notifications/receivers", json={**body, "name": "x", "url": "ftp://x"}
    )
    assert bad.status_code == 422
    wrong_kind = await client.post(
        "/notifications/receivers", json={**body, "name": "y", "kind": "sms"}
    )
    assert wrong_kind.status_code == 422


async def test_unknown_alerts_and_incidents_are_404_and_health_starts_at_100(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/alerts/0123456789abcdef")).status_code == 404
    assert (await client.get("/incidents/nope")).status_code == 404
    assert (await client.get("/alerts", params={"state": "firing"})).json() == {"alerts": []}
    assert (await client.get("/alerts", params={"state": "burning"})).status_code == 422
    health = (await client.get("/apps/shop/health")).json()
    assert health["score"] == 100 and health["status"] == "healthy"


async def test_analyze_flags_the_spike_with_scores_and_bounds(client: httpx.AsyncClient) -> None:
    rng = random.Random(3)
    series = [[1_700_000_000_000 + i * 60_000, 10 + rng.gauss(0, 0.5)] for i in range(300)]
    series[250][1] = 80.0
    response = await client.post("/aiops/analyze", json={"series": series, "threshold": 0.9})
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["detector"] == "zscore" and len(out["points"]) == 300
    flagged = [i for i, p in enumerate(out["points"]) if p["anomaly"]]
    assert flagged == [250]
    spike = out["points"][250]
    assert spike["score"] >= 0.9 and spike["value"] > spike["upper"]
    assert all(0 <= p["score"] <= 1 for p in out["points"])
    calm = out["points"][200]
    assert calm["lower"] < calm["value"] < calm["upper"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"series": [[1, 1.0], [2, NaN]]}', "series[1].value: NaN"),
        ('{"series": [[1, 1.0], [2, Infinity]]}', "series[1].value: NaN"),
        ('{"series": [[2, 1.0], [2, 1.0]]}', "series[1].ts: 2 is not after the previous point"),
        ('{"series": [[1, "x"]]}', "series[0].value: not a number"),
        ('{"series": [[1]]}', "series[0]: expected [ts, value]"),
        ('{"series": [["yesterday", 1]]}', "series[0].ts"),
        ('{"series": []}', "series: no points"),
        ('{"series": [[1, 1]], "detector": "nope"}', "unknown detector"),
        ('{"series": [[1, 1]], "params": {"beta": 1}}', "unknown parameter"),
        ('{"series": [[1, 1]], "threshold": 1.5}', "threshold"),
    ],
)
async def test_analyze_refuses_bad_input_with_422(
    client: httpx.AsyncClient, body: str, reason: str
) -> None:
    response = await client.post(
        "/aiops/analyze", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert reason in response.text


async def test_analyze_limits_the_number_of_points(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/aiops/analyze", json={"series": [[i, 1.0] for i in range(1, 1002)]}
    )
    assert response.status_code == 422
    assert "1001 points, at most 1000" in response.text
