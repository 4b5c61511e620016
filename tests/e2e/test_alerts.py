"""Alerts end to end through the gateway: rules on metrics published over HTTP fire, reach a
webhook and a real Prometheus Alertmanager, resolve; silences, incidents, change
correlation, analyze; and a second detector worker sharing the series, then killed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from libs.telemetry.samples import series_id
from libs.testing.stack import RunningStack
from services.aiops_detector.app import partition_of
from tests.e2e.helpers import auth, unique
from tests.e2e.test_deploy import HELLO_SRC, LAUNCH, SPEC, _build, _deploy, _free_port, _wait

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


class Webhook:
    """A tiny HTTP server that keeps every JSON body posted to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with inbox.lock:
                    inbox.bodies.append(
                        {"auth": self.headers.get("authorization"), **orjson.loads(body)}
                    )
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self, app: str) -> list[tuple[str, str]]:
        """(status, fingerprint-ish alertname) of each alert of the app, in arrival order."""
        with self.lock:
            return [
                (a["status"], a["labels"]["alertname"])
                for body in self.bodies
                for a in body["alerts"]
                if a["labels"].get("app") == app
            ]


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.server.shutdown()


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus Alertmanager (Debian's prometheus-alertmanager) on a free port."""
    home = tmp_path_factory.mktemp("alertmanager")
    config = home / "alertmanager.yml"
    config.write_text('route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n')
    port = _free_port()
    process = subprocess.Popen(
        [
            "prometheus-alertmanager",
            f"--config.file={config}",
            f"--storage.path={home}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "alertmanager down"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.3)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last})")


class Api:
    def __init__(self, client: httpx.AsyncClient, stack: RunningStack) -> None:
        self.client, self.gw, self.headers = client, stack.stack.gateway_url, auth(stack)

    async def call(self, method: str, path: str, expect: int = 200, **kw: Any) -> Any:
        headers = {**self.headers, **kw.pop("headers", {})}
        response = await self.client.request(method, f"{self.gw}{path}", headers=headers, **kw)
        assert response.status_code == expect, f"{method} {path}: {response.text}"
        return response.json() if response.content else None

    async def samples(self, metric: str, app: str, *values: float, **labels: str) -> None:
        """Publish samples 10 ms apart, ending now, over POST /v1/events."""
        now = int(time.time() * 1000)
        items = [
            {"name": metric, "labels": {"app": app, **labels}, "value": v, "ts": now - 10 * i}
            for i, v in enumerate(reversed(values))
        ]
        event = {
            "specversion": "1.0",
            "id": unique("ev"),
            "source": "e2e-alerts",
            "type": "io.opsline.metric.batch",
            "data": {"samples": items[::-1]},
        }
        await self.call(
            "POST",
            "/v1/events",
            202,
            content=orjson.dumps(event),
            headers={"content-type": "application/cloudevents+json"},
        )

    async def rule(self, metric: str, app: str, **kw: Any) -> dict[str, Any]:
        body = {
            "name": f"{metric}-high",
            "metric": metric,
            "matchers": [{"name": "app", "value": app}],
            "thresholds": {"WARNING": 80, "CRITICAL": 95},
            **kw,
        }
        return dict(await self.call("POST", "/v1/alert-rules", 201, json=body))

    async def alerts(self, app: str, state: str = "firing") -> list[dict[str, Any]]:
        found = await self.call("GET", "/v1/alerts", params={"state": state, "app": app})
        return list(found["alerts"])


@pytest.fixture
async def api(stack: RunningStack) -> Any:
    async with httpx.AsyncClient(timeout=30) as client:
        yield Api(client, stack)


async def test_a_rule_fires_notifies_a_webhook_and_alertmanager_then_resolves(
    api: Api, webhook: Webhook, alertmanager: str
) -> None:
    app, metric = unique("shop").replace("_", "-"), unique("cpu")
    for kind, url in (("webhook", webhook.url), ("alertmanager", alertmanager)):
        await api.call(
            "POST",
            "/v1/notifications/receivers",
            201,
            json={
                "name": unique(kind),
                "kind": kind,
                "url": url,
                "headers": {"Authorization": "Bearer hook-secret"} if kind == "webhook" else {},
                "matchers": [{"name": "app", "value": app}],
                "group_wait_s": 0.5,
                "group_interval_s": 1,
            },
        )
    listed = await api.call("GET", "/v1/notifications/receivers")
    assert "hook-secret" not in orjson.dumps(listed).decode()
    rule = await api.rule(metric, app, occurrences=2)
    await api.samples(metric, app, 50.0, 90.0)  # one sample over: not yet (2 needed)
    await api.samples(metric, app, 91.0)
    (alert,) = await eventually(lambda: api.alerts(app), "alert firing")
    assert alert["rule_id"] == rule["id"] and alert["severity"] == "WARNING"
    assert alert["labels"] == {"app": app, "alertname": f"{metric}-high", "metric": metric}
    one = await api.call("GET", f"/v1/alerts/{alert['fingerprint']}")
    assert one["state"] == "firing" and one["silenced_by"] == []
    health = await api.call("GET", f"/v1/apps/{app}/health")
    assert health["score"] == 85 and health["alerts"] == [alert["fingerprint"]]

    async def webhook_got(status: str) -> bool:
        return (status, f"{metric}-high") in webhook.alerts(app)

    await eventually(lambda: webhook_got("firing"), "webhook notified")
    assert {b["auth"] for b in webhook.bodies} == {"Bearer hook-secret"}

    async def in_alertmanager() -> list[dict[str, Any]]:
        found = httpx.get(f"{alertmanager}/api/v2/alerts", params={"filter": f'app="{app}"'}).json()
        return [a for a in found if a["labels"].get("alertname") == f"{metric}-high"]

    (am_alert,) = await eventually(in_alertmanager, "alert in Alertmanager")
    assert am_alert["status"]["state"] == "active" and am_alert["labels"]["severity"] == "WARNING"

    await api.samples(metric, app, 99.0, 99.5)  # CRITICAL (2 in a row): the same alert
    await eventually(
        lambda: _severity(api, app, "CRITICAL"), "alert updated to CRITICAL", timeout=30
    )
    await api.samples(metric, app, 10.0)
    (resolved,) = await eventually(lambda: api.alerts(app, "resolved"), "alert resolved")
    assert resolved["fingerprint"] == alert["fingerprint"] and resolved["ends_at"]
    await eventually(lambda: webhook_got("resolved"), "webhook told it resolved")
    await eventually(lambda: _gone(in_alertmanager), "alert resolved in Alertmanager", timeout=30)
    assert (await api.call("GET", f"/v1/apps/{app}/health"))["score"] == 100


async def _severity(api: Api, app: str, level: str) -> bool:
    return [a["severity"] for a in await api.alerts(app)] == [level]


async def _gone(check: Callable[[], Awaitable[list[Any]]]) -> bool:
    return not await check()


async def test_a_silence_mutes_notifications_until_it_is_expired(
    api: Api, webhook: Webhook
) -> None:
    muted, loud, metric = (
        unique("muted").replace("_", "-"),
        unique("loud").replace("_", "-"),
        unique("mem"),
    )
    await api.call(
        "POST",
        "/v1/notifications/receivers",
        201,
        json={
            "name": unique("team"),
            "kind": "webhook",
            "url": webhook.url,
            "matchers": [{"name": "app", "op": "=~", "value": f"{muted}|{loud}"}],
            "group_by": ["alertname"],  # both apps' alerts go out together
            "group_wait_s": 0.5,
            "group_interval_s": 1,
        },
    )
    silence = await api.call(
        "POST",
        "/v1/silences",
        201,
        json={
            "matchers": [{"name": "app", "value": muted}],
            "ends_at": int(time.time() * 1000) + 3_600_000,
            "comment": "maintenance",
        },
    )
    assert silence["state"] == "active" and silence["created_by"]
    await api.call(
        "POST",
        "/v1/alert-rules",
        201,
        json={
            "name": f"{metric}-high",
            "metric": metric,
            "matchers": [{"name": "app", "op": "=~", "value": f"{muted}|{loud}"}],
            "thresholds": {"CRITICAL": 1},
        },
    )
    await api.samples(metric, muted, 5.0)
    await api.samples(metric, loud, 5.0)
    (alert,) = await eventually(lambda: api.alerts(muted), "muted app's alert firing")
    assert alert["silenced_by"] == [silence["id"]]
    await eventually(lambda: _told(webhook, loud, "firing"), "loud app notified")
    assert webhook.alerts(muted) == []  # it was due in the same group: left out
    await api.call("DELETE", f"/v1/silences/{silence['id']}", 204)
    await eventually(lambda: _told(webhook, muted, "firing"), "notified once the silence ended")


async def _told(webhook: Webhook, app: str, status: str) -> bool:
    return any(s == status for s, _ in webhook.alerts(app))


async def test_repeats_aggregate_into_one_incident_linked_to_the_deploy_before(api: Api) -> None:
    name = unique("svc").replace("_", "-")
    metric = unique("errors")
    applied = await api.client.post(
        f"{api.gw}/v1/apps:apply",
        content=SPEC.format(name=name, src=HELLO_SRC).encode(),
        headers={**api.headers, "content-type": "application/yaml"},
    )
    assert applied.status_code == 200, applied.text
    version = await _build(api.client, api.gw, name, api.headers)
    text = LAUNCH.format(name=name, version=version, port=_free_port(), greeting="hi")
    deployed = await _deploy(api.client, api.gw, text, api.headers)
    assert deployed["state"] == "SUCCESS", deployed
    try:
        await api.rule(metric, name)
        for _ in range(2):
            await api.samples(metric, name, 90.0)
            await eventually(lambda: api.alerts(name), "alert firing")
            await api.samples(metric, name, 10.0)
            await eventually(lambda: api.alerts(name, "resolved"), "alert resolved")
        incidents = await api.call("GET", "/v1/incidents", params={"app": name})
        (incident,) = incidents["incidents"]
        assert incident["occurrences"] == 2 and incident["state"] == "open"
        assert incident["recovered_at"] is not None and incident["recovery_ms"] > 0
        assert incident["change_induced"] is True
        assert incident["deployment"]["deployment_id"] == deployed["id"]
        assert incident["deployment"]["instance"] == f"{name}-dev"
        full = await api.call("GET", f"/v1/incidents/{incident['id']}")
        assert [a["state"] for a in full["alerts"]] == ["resolved"]
    finally:
        gone = await api.client.delete(f"{api.gw}/v1/instances/{name}-dev", headers=api.headers)
        if gone.status_code == 202:
            await _wait(api.client, api.gw, gone.json()["id"], api.headers)


async def test_analyze_scores_a_series_and_refuses_bad_input(api: Api) -> None:
    series = [[1_700_000_000_000 + i * 60_000, 10.0 + (i % 5) * 0.1] for i in range(200)]
    series[150][1] = 500.0
    out = await api.call("POST", "/v1/aiops/analyze", json={"series": series, "threshold": 0.9})
    assert [i for i, p in enumerate(out["points"]) if p["anomaly"]] == [150]
    assert out["points"][150]["value"] > out["points"][150]["upper"]
    bad = await api.client.post(
        f"{api.gw}/v1/aiops/analyze",
        content=b'{"series": [[1, 1.0], [1, 2.0]]}',
        headers={**api.headers, "content-type": "application/json"},
    )
    assert bad.status_code == 422 and "not after the previous point" in bad.text
    anonymous = await api.client.post(f"{api.gw}/v1/aiops/analyze", json={"series": series})
    assert anonymous.status_code == 401


# --- two detector workers ---------------------------------------------------------


def _internal(stack: RunningStack) -> dict[str, str]:
    token = (stack.home / "internal-token").read_text().strip()
    return {"Authorization": f"Bearer {token}"}


def _worker(url: str, stack: RunningStack) -> dict[str, Any]:
    try:
        response = httpx.get(f"{url}/internal/v1/aiops/worker", headers=_internal(stack), timeout=5)
    except httpx.HTTPError:
        return {}
    return dict(response.json()) if response.status_code == 200 else {}


@pytest.fixture
def second_worker(
    stack: RunningStack, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Another aiops-detector process: the same faust app id, the same database."""
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OPSLINE_")},
        "OPSLINE_HOME": str(stack.home),
        "OPSLINE_KAFKA_BOOTSTRAP": stack.stack.bootstrap,
        "OPSLINE_TOPIC_PARTITIONS": str(stack.stack.partitions),
        "OPSLINE_INTERNAL_TOKEN": (stack.home / "internal-token").read_text().strip(),
        "OPSLINE_AIOPS_DETECTOR_PORT": str(port),
        "OPSLINE_AIOPS_DETECTOR_DATA_DIR": str(tmp_path / "faust"),
        "OPSLINE_AIOPS_DETECTOR_SESSION_TIMEOUT_S": "6",
        "OTEL_SDK_DISABLED": "true",
    }
    log = (tmp_path / "worker2.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "services.aiops_detector"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        log.close()


async def test_two_workers_split_the_series_and_state_survives_a_killed_one(
    api: Api, stack: RunningStack, second_worker: tuple[subprocess.Popen[bytes], str]
) -> None:
    process, url2 = second_worker
    url1 = stack.stack.url("aiops-detector")
    everything = list(range(stack.stack.partitions))
    assert _worker(url1, stack)["partitions"] == everything

    async def split() -> tuple[list[int], list[int]] | None:
        one, two = _worker(url1, stack).get("partitions"), _worker(url2, stack).get("partitions")
        if one and two and sorted(one + two) == everything:
            return one, two
        return None

    one, two = await eventually(split, "partitions split between the workers", timeout=150)
    assert not set(one) & set(two)
    # a series the second worker owns; a rule that needs 4 violating samples in a row
    app, metric = unique("split").replace("_", "-"), unique("lat")
    pod = next(
        p
        for p in (str(i) for i in range(1000))
        if partition_of(series_id(metric, {"app": app, "pod": p}), len(everything)) in two
    )
    sid = series_id(metric, {"app": app, "pod": pod})
    rule = await api.rule(metric, app, occurrences=4, thresholds={"WARNING": 80})

    async def knows_rule() -> bool:  # each worker re-reads the rules every 2 s
        return rule["id"] in _worker(url2, stack).get("rules", [])

    await eventually(knows_rule, "the second worker loaded the rule")
    await api.samples(metric, app, 90.0, 91.0, pod=pod)

    async def held_by_two() -> dict[str, Any] | None:
        response = httpx.get(f"{url2}/internal/v1/aiops/series/{sid}", headers=_internal(stack))
        return response.json() if response.status_code == 200 else None

    state = await eventually(held_by_two, "series state on the second worker")
    assert state["rules"][rule["id"]][1] == 2  # two violating samples counted so far
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)

    async def all_back() -> bool:
        return _worker(url1, stack).get("partitions") == everything

    await eventually(all_back, "the first worker took every partition back", timeout=150)

    async def held_by_one() -> dict[str, Any] | None:
        response = httpx.get(f"{url1}/internal/v1/aiops/series/{sid}", headers=_internal(stack))
        return response.json() if response.status_code == 200 else None

    recovered = await eventually(held_by_one, "series state recovered on the first worker")
    assert recovered["last_ts"] == state["last_ts"] and recovered["rules"] == state["rules"]
    # the count goes on from 2: two more samples make the 4 the rule needs
    await api.samples(metric, app, 92.0, 93.0, pod=pod)
    (alert,) = await eventually(lambda: api.alerts(app), "alert after the recovered count")
    assert alert["labels"]["pod"] == pod
