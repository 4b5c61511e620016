"""Alerts raised → updated → resolved, deduplicated; incidents; change correlation."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from services.aiops_detector import lifecycle, service
from services.aiops_detector.models import Alert, Incident
from tests.aiops_detector.conftest import outbox_events

TIMING = lifecycle.Timing(correlation_window_ms=600_000, incident_close_after_ms=60_000)
MIN = 60_000


def signal(state: str, ts: int, *, severity: str = "WARNING", **labels: str) -> dict[str, Any]:
    labels = {"app": "shop", "alertname": "cpu-hot", **labels}
    return {
        "fingerprint": "fp-" + labels.get("pod", "a"),
        "state": state,
        "rule_id": "hot",
        "rule_name": "cpu-hot",
        "severity": severity if state == "firing" else "",
        "labels": labels,
        "value": 90.0,
        "ts_ms": ts,
        "summary": "cpu is hot",
    }


async def apply(sessions: async_sessionmaker[AsyncSession], *signals: dict[str, Any]) -> list[bool]:
    changed = []
    for sig in signals:
        async with sessions() as session, session.begin():
            alert = await lifecycle.apply_signal(session, sig, now_ms=sig["ts_ms"], timing=TIMING)
            changed.append(alert is not None)
    return changed


async def test_lifecycle_events_and_deduplication(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    from prometheus_client import REGISTRY

    def raised() -> float:
        labels = {"change": "alert.raised"}
        return REGISTRY.get_sample_value("opsline_alert_changes_total", labels) or 0.0

    before = raised()
    changed = await apply(
        sessions,
        signal("firing", 1000),
        signal("firing", 1000),  # redelivered
        signal("firing", 2000),  # same level again: nothing new
        signal("firing", 3000, severity="CRITICAL"),
        signal("firing", 2500, severity="WARNING"),  # late: older than what we have
        signal("resolved", 4000),
        signal("resolved", 5000),
    )
    assert changed == [True, False, False, True, False, True, False]
    assert raised() - before == 1
    types = [t for t, _ in await outbox_events(sessions) if t.startswith("io.opsline.alert.")]
    assert types == [
        "io.opsline.alert.raised",
        "io.opsline.alert.updated",
        "io.opsline.alert.resolved",
    ]
    async with sessions() as session:
        alert = await session.get(Alert, "fp-a")
    assert alert is not None
    assert (alert.state, alert.starts_at, alert.ends_at, alert.severity) == (
        "resolved",
        1000,
        4000,
        "CRITICAL",
    )


async def test_a_resolved_signal_for_an_unknown_alert_is_ignored(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    assert await apply(sessions, signal("resolved", 1000)) == [False]
    assert await outbox_events(sessions) == []


async def test_repeats_of_one_rule_on_one_app_aggregate_into_one_incident(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await apply(
        sessions,
        signal("firing", 1 * MIN),
        signal("resolved", 2 * MIN),
        signal("firing", 3 * MIN, severity="CRITICAL"),
        signal("firing", 3 * MIN, pod="b"),  # another series, same rule and app
        signal("resolved", 4 * MIN),
        signal("resolved", 5 * MIN, pod="b"),
    )
    async with sessions() as session:
        incidents = await service.list_incidents(session=session)
    assert len(incidents) == 1
    inc = incidents[0]
    assert inc["occurrences"] == 3
    assert (inc["first_seen"], inc["last_seen"]) == (1 * MIN, 3 * MIN)
    assert inc["severity"] == "CRITICAL" and inc["state"] == "open" and inc["firing"] == 0
    assert inc["recovered_at"] == 5 * MIN and inc["recovery_ms"] == 4 * MIN
    types = [t for t, _ in await outbox_events(sessions) if t.startswith("io.opsline.incident.")]
    assert types[0] == "io.opsline.incident.opened"
    assert types.count("io.opsline.incident.recovered") == 2  # after 2 min, then after 5 min


async def test_quiet_incidents_close_and_a_later_repeat_opens_a_new_one(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await apply(sessions, signal("firing", 1 * MIN), signal("resolved", 2 * MIN))
    async with sessions() as session, session.begin():
        assert (
            await lifecycle.close_quiet_incidents(session, now_ms=2 * MIN + 59_999, timing=TIMING)
            == 0
        )
        assert await lifecycle.close_quiet_incidents(session, now_ms=3 * MIN, timing=TIMING) == 1
    await apply(sessions, signal("firing", 10 * MIN))
    async with sessions() as session:
        states = sorted(i["state"] for i in await service.list_incidents(session=session))
    assert states == ["closed", "open"]


async def deploy(sessions: async_sessionmaker[AsyncSession], app: str, at: int, state: str) -> None:
    async with sessions() as session, session.begin():
        data = {
            "deployment_id": f"d-{app}-1",
            "app": app,
            "instance": f"{app}-prod",
            "state": state,
            "version": "1.2.0",
        }
        await lifecycle.record_deployment(session, data, at_ms=at)


async def test_an_alert_soon_after_a_deploy_of_its_app_links_the_deployment(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await deploy(sessions, "shop", 10 * MIN, "PROCESSING")
    await deploy(sessions, "shop", 11 * MIN, "SUCCESS")
    await deploy(sessions, "cart", 11 * MIN, "SUCCESS")
    await apply(sessions, signal("firing", 15 * MIN))
    async with sessions() as session:
        (inc,) = await service.list_incidents(session=session)
        found = await service.get_incident(session=session, incident_id=inc["id"])
    assert inc["change_induced"] is True
    assert inc["deployment"]["deployment_id"] == "d-shop-1"
    assert inc["deployment"]["state"] == "SUCCESS" and inc["deployment"]["started_at"] == 10 * MIN
    assert found is not None and [a["fingerprint"] for a in found["alerts"]] == ["fp-a"]


async def test_no_link_outside_the_window_or_before_the_deploy(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await deploy(sessions, "shop", 10 * MIN, "SUCCESS")
    await apply(sessions, signal("firing", 9 * MIN))  # before it started
    async with sessions() as session:
        (inc,) = await service.list_incidents(session=session)
    assert inc["change_induced"] is False
    await apply(sessions, signal("resolved", 9 * MIN + 1000))
    async with sessions() as session, session.begin():
        await lifecycle.close_quiet_incidents(session, now_ms=100 * MIN, timing=TIMING)
    await apply(sessions, signal("firing", 21 * MIN))  # 11 min after: window is 10
    async with sessions() as session:
        incidents = await service.list_incidents(session=session, state="open")
    assert [i["change_induced"] for i in incidents] == [False]


async def test_health_score_falls_with_firing_alerts(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        assert (await service.app_health(session=session, app="shop"))["score"] == 100
    await apply(
        sessions, signal("firing", 1000), signal("firing", 1000, pod="b", severity="CRITICAL")
    )
    async with sessions() as session:
        health = await service.app_health(session=session, app="shop")
        other = await service.app_health(session=session, app="cart")
    assert health["score"] == 100 - 15 - 40
    assert health["status"] == "unhealthy"  # under 50
    assert health["firing"] == {"CRITICAL": 1, "WARNING": 1}
    assert len(health["open_incidents"]) == 1
    assert other["score"] == 100
    assert service.health_score(["CRITICAL"] * 3) == 0
    async with sessions() as session, session.begin():
        await lifecycle.apply_signal(
            session, signal("resolved", 2000, pod="b"), now_ms=2000, timing=TIMING
        )
    async with sessions() as session:
        health = await service.app_health(session=session, app="shop")
    assert (health["score"], health["status"]) == (85, "degraded")


async def test_deleting_a_rule_resolves_its_alerts(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    from services.aiops_detector.rules import RuleSpec

    async with sessions() as session, session.begin():
        rule, created = await service.save_rule(
            session=session,
            spec=RuleSpec(name="cpu-hot", metric="cpu", thresholds={"WARNING": 80}),
            rule_id="hot",
            now_ms=0,
        )
    assert created and rule.id == "hot"
    await apply(sessions, signal("firing", 1000))
    async with sessions() as session, session.begin():
        assert await service.delete_rule(session=session, rule_id="hot", now_ms=2000)
    async with sessions() as session:
        alert = await session.get(Alert, "fp-a")
        incident = await session.get(Incident, alert.incident_id if alert else "")
    assert alert is not None and alert.state == "resolved" and "rule deleted" in alert.summary
    assert incident is not None and incident.firing == 0


async def test_every_event_payload_follows_its_proto_schema(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    from google.protobuf.json_format import ParseDict

    from libs.schemas.opsline.v1 import alerts_pb2

    await deploy(sessions, "shop", 1000, "SUCCESS")
    await apply(sessions, signal("firing", 2000), signal("resolved", 3000))
    async with sessions() as session, session.begin():
        await lifecycle.close_quiet_incidents(session, now_ms=10 * MIN, timing=TIMING)
    events = await outbox_events(sessions)
    assert sorted(t.rsplit(".", 2)[1] + "." + t.rsplit(".", 1)[1] for t, _ in events) == [
        "alert.raised",
        "alert.resolved",
        "incident.closed",
        "incident.opened",
        "incident.recovered",
    ]
    for ce_type, data in events:
        kind = alerts_pb2.Alert if ".alert." in ce_type else alerts_pb2.Incident
        ParseDict(data, kind())  # raises on an unknown field or a wrong type
    incident = next(d for t, d in events if t == "io.opsline.incident.closed")
    assert incident["deployment"]["deployment_id"] == "d-shop-1"
