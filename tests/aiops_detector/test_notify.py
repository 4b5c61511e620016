"""Notification grouping (group wait, group interval, repeat), silences, payload formats.

The receivers are httpx transports that record what they were sent (the remote end; the
e2e test sends to a real webhook server and a real Alertmanager).
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from services.aiops_detector import lifecycle, notify, service
from services.aiops_detector.rules import Matcher
from tests.aiops_detector.test_lifecycle import TIMING, signal

S = 1000


class Inbox:
    def __init__(self, status: int = 200) -> None:
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.status = status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(
            (str(request.url), dict(request.headers), orjson.loads(request.content))
        )
        return httpx.Response(self.status)


async def receiver(sessions: async_sessionmaker[AsyncSession], **kw: Any) -> str:
    spec = {
        "name": "ops",
        "kind": "webhook",
        "url": "http://hooks.example/alerts",
        "headers": {"Authorization": "Bearer s3cret"},
        "group_wait_s": 10,
        "group_interval_s": 60,
        "repeat_interval_s": 3600,
        **kw,
    }
    async with sessions() as session, session.begin():
        row = await service.save_receiver(
            session=session,
            spec=service.ReceiverSpec.model_validate(spec),
            receiver_id=None,
            now_ms=0,
        )
    return row.id


async def fire(sessions: async_sessionmaker[AsyncSession], sig: dict[str, Any], at: int) -> None:
    async with sessions() as session, session.begin():
        alert = await lifecycle.apply_signal(session, sig, now_ms=at, timing=TIMING)
        if alert is not None:
            await notify.enqueue(session, alert, at_ms=at)


def notifier(sessions: async_sessionmaker[AsyncSession], inbox: Inbox) -> notify.Notifier:
    return notify.Notifier(
        sessions=sessions, http=httpx.AsyncClient(transport=httpx.MockTransport(inbox))
    )


async def test_group_wait_then_group_interval_then_repeat(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await receiver(sessions)
    inbox = Inbox()
    n = notifier(sessions, inbox)
    await fire(sessions, signal("firing", 0), at=0)
    await fire(sessions, signal("firing", 3 * S, pod="b"), at=3 * S)  # same group (app, alertname)
    assert await n.flush_due(9_999) == 0  # group_wait is 10 s from the first alert
    assert await n.flush_due(10 * S) == 1
    ((url, headers, body),) = inbox.requests
    assert url == "http://hooks.example/alerts" and headers["authorization"] == "Bearer s3cret"
    assert body["status"] == "firing" and body["groupLabels"] == {
        "app": "shop",
        "alertname": "cpu-hot",
    }
    assert sorted(a["fingerprint"] for a in body["alerts"]) == ["fp-a", "fp-b"]
    assert body["commonLabels"]["alertname"] == "cpu-hot" and "pod" not in body["commonLabels"]
    # a change after the send waits for the next group_interval tick (60 s after the send)
    await fire(sessions, signal("resolved", 20 * S), at=20 * S)
    assert await n.flush_due(69_999) == 0
    assert await n.flush_due(70 * S) == 1
    body = inbox.requests[-1][2]
    assert {a["fingerprint"]: a["status"] for a in body["alerts"]} == {
        "fp-a": "resolved",
        "fp-b": "firing",
    }
    # nothing changes: the still-firing group is sent again after repeat_interval
    assert await n.flush_due(70 * S + 3_599_999) == 0
    assert await n.flush_due(70 * S + 3600 * S) == 1
    body = inbox.requests[-1][2]
    assert [a["fingerprint"] for a in body["alerts"]] == ["fp-b"]  # the resolved one was told


async def test_other_groups_and_unrouted_alerts(sessions: async_sessionmaker[AsyncSession]) -> None:
    await receiver(
        sessions, matchers=[{"name": "severity", "op": "=", "value": "CRITICAL"}], group_wait_s=0
    )
    inbox = Inbox()
    n = notifier(sessions, inbox)
    await fire(sessions, signal("firing", 0), at=0)  # WARNING: not for this receiver
    await fire(sessions, signal("firing", 0, pod="b", app="cart", severity="CRITICAL"), at=0)
    assert await n.flush_due(0) == 1
    ((_, _, body),) = inbox.requests
    assert [a["labels"]["app"] for a in body["alerts"]] == ["cart"]


async def test_silences_mute_matching_alerts_until_they_end(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await receiver(sessions, group_wait_s=0)
    async with sessions() as session, session.begin():
        await service.save_silence(
            session=session,
            spec=service.SilenceSpec(
                matchers=[Matcher(name="app", value="shop")], starts_at=0, ends_at=100 * S
            ),
            silence_id=None,
            by="alice",
            now_ms=0,
        )
    inbox = Inbox()
    n = notifier(sessions, inbox)
    await fire(sessions, signal("firing", S), at=S)
    await fire(sessions, signal("firing", S, pod="b", app="cart"), at=S)
    await n.flush_due(S)
    assert [r[2]["alerts"][0]["labels"]["app"] for r in inbox.requests] == ["cart"]
    async with sessions() as session:
        (muted,) = await service.list_alerts(session=session, now_ms=2 * S, app="shop")
    assert muted["silenced_by"] != []
    assert await n.flush_due(99 * S) == 0
    assert await n.flush_due(100 * S) == 1  # the silence ended: now it is told
    assert inbox.requests[-1][2]["alerts"][0]["fingerprint"] == "fp-a"


async def test_failed_sends_are_retried_and_reported(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    from prometheus_client import REGISTRY

    def count(outcome: str) -> float:
        labels = {"kind": "webhook", "outcome": outcome}
        return REGISTRY.get_sample_value("opsline_notifications_total", labels) or 0.0

    failed, sent = count("failed"), count("sent")
    rid = await receiver(sessions, group_wait_s=0)
    inbox = Inbox(status=500)
    n = notifier(sessions, inbox)
    await fire(sessions, signal("firing", 0), at=0)
    await n.flush_due(0)
    from sqlmodel import select

    from services.aiops_detector.models import NotificationGroup

    async with sessions() as session:
        (group,) = await session.exec(
            select(NotificationGroup).where(NotificationGroup.receiver_id == rid)
        )
    assert group.failures == 1 and "HTTP 500" in group.last_error and group.last_sent_at is None
    inbox.status = 200
    assert await n.flush_due(10 * S) == 1
    assert len(inbox.requests) == 2
    assert (count("failed") - failed, count("sent") - sent) == (1, 1)


async def test_alertmanager_receivers_get_v2_postable_alerts(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await receiver(
        sessions,
        kind="alertmanager",
        url="http://am.example:9093",
        headers={},
        group_wait_s=0,
        group_interval_s=0,
        repeat_interval_s=None,  # an Alertmanager's default: 60 s
    )
    inbox = Inbox()
    n = notifier(sessions, inbox)
    await fire(sessions, signal("firing", 0), at=0)
    await n.flush_due(0)
    url, _, body = inbox.requests[0]
    assert url == "http://am.example:9093/api/v2/alerts"
    (alert,) = body
    assert alert["labels"]["alertname"] == "cpu-hot" and alert["labels"]["severity"] == "WARNING"
    assert alert["startsAt"] == "1970-01-01T00:00:00.000Z"
    assert alert["endsAt"] == "1970-01-01T00:04:00.000Z"  # expires unless sent again
    # a new level is a new label set to Alertmanager: the old one is ended at once
    await fire(sessions, signal("firing", 2 * S, severity="CRITICAL"), at=2 * S)
    await n.flush_due(2 * S)
    levels = {a["labels"]["severity"]: a["endsAt"] for a in inbox.requests[-1][2]}
    assert levels == {"CRITICAL": "1970-01-01T00:04:02.000Z", "WARNING": "1970-01-01T00:00:02.000Z"}
    await fire(sessions, signal("resolved", 5 * S), at=5 * S)
    await n.flush_due(5 * S)
    (gone,) = inbox.requests[-1][2]
    assert (gone["labels"]["severity"], gone["endsAt"]) == ("CRITICAL", "1970-01-01T00:00:05.000Z")


async def test_receivers_never_show_header_values(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    rid = await receiver(sessions)
    async with sessions() as session:
        from services.aiops_detector.models import Receiver

        row = await session.get(Receiver, rid)
    assert row is not None
    shown = service.receiver_json(row)
    assert shown["headers"] == ["Authorization"]
    assert "s3cret" not in orjson.dumps(shown).decode()
    assert shown["repeat_interval_s"] == 3600
