"""Notifications, grouped as Alertmanager does: per receiver, alerts sharing the group-by
labels are sent together; a new group waits `group_wait`, later changes are batched per
`group_interval`, and a group still firing is sent again every `repeat_interval`.
Silenced alerts are left out. Receivers are webhooks (Alertmanager's webhook format) or a
Prometheus Alertmanager (its v2 API).

Each change marks the groups it belongs to due (in the transaction that made it); a loop
claims due groups (a lease, so two replicas do not both send) and sends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from libs.observability.metrics import get_metrics
from services.aiops_detector.models import Alert, NotificationGroup, Receiver, Silence, dumps, loads
from services.aiops_detector.rules import Matcher, all_match

log = logging.getLogger(__name__)
CLAIM_MS = 30_000
SEND_TIMEOUT_S = 10.0


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def match_labels(alert: Alert) -> dict[str, str]:
    """What silences and receiver routes match on: the labels, severity and app."""
    return {**loads(alert.labels), "severity": alert.severity, "app": alert.app}


def matchers_of(text: str) -> list[Matcher]:
    return [Matcher(**m) for m in loads(text)]


def silenced_by(silences: list[Silence], labels: dict[str, str], at_ms: int) -> list[Silence]:
    return [
        s
        for s in silences
        if s.starts_at <= at_ms < s.ends_at and all_match(matchers_of(s.matchers), labels)
    ]


async def active_silences(session: AsyncSession, at_ms: int) -> list[Silence]:
    found = await session.exec(
        select(Silence).where(col(Silence.starts_at) <= at_ms, col(Silence.ends_at) > at_ms)
    )
    return list(found)


def group_id(receiver: Receiver, labels: dict[str, str]) -> tuple[str, dict[str, str]]:
    group_labels = {k: labels.get(k, "") for k in loads(receiver.group_by)}
    digest = hashlib.sha256(dumps(group_labels).encode()).hexdigest()[:20]
    return f"{receiver.id}:{digest}", group_labels


def next_due(group: NotificationGroup, receiver: Receiver, at_ms: int) -> int:
    """When a change at `at_ms` gets sent: group_wait for a new group, else the next
    group_interval tick after the last send."""
    if group.last_sent_at is None:
        due = at_ms + int(receiver.group_wait_s * 1000)
    else:
        due = max(at_ms, group.last_sent_at + int(receiver.group_interval_s * 1000))
    return due if group.due_at is None else min(group.due_at, due)


async def enqueue(session: AsyncSession, alert: Alert, *, at_ms: int) -> None:
    """Mark the groups of every receiver that routes this alert as due."""
    labels = match_labels(alert)
    for receiver in await session.exec(select(Receiver)):
        if not all_match(matchers_of(receiver.matchers), labels):
            continue
        gid, group_labels = group_id(receiver, labels)
        group = await session.get(NotificationGroup, gid)
        if group is None:
            group = NotificationGroup(
                id=gid,
                receiver_id=receiver.id,
                group_key=f"{receiver.name}:{dumps(group_labels)}",
                group_labels=dumps(group_labels),
            )
        members = loads(group.members)
        if alert.fingerprint not in members:
            members[alert.fingerprint] = ""  # not told yet
            group.members = dumps(members)
        group.due_at = next_due(group, receiver, at_ms)
        session.add(group)


async def unmute(session: AsyncSession, *, old_end: int, at_ms: int) -> None:
    """A silence ended early or changed: groups it muted are looked at now, not at its end."""
    found = await session.exec(select(NotificationGroup).where(NotificationGroup.due_at == old_end))
    for group in found:
        group.due_at = at_ms
        session.add(group)


Sender = Callable[[Receiver, dict[str, Any]], Awaitable[None]]


class Notifier:
    """Sends due groups; one loop per process, groups claimed under a lease."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        tick_s: float = 1.0,
        on_tick: Callable[[AsyncSession, int], Awaitable[None]] | None = None,
    ) -> None:
        self.sessions = sessions
        self.http = http
        self.tick_s = tick_s
        self.on_tick = on_tick
        self.sent = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.flush_due(now_ms())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("notifier tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.tick_s)

    async def flush_due(self, at_ms: int) -> int:
        async with self.sessions() as session, session.begin():
            if self.on_tick is not None:
                await self.on_tick(session, at_ms)
            found = await session.exec(
                select(NotificationGroup)
                .where(
                    col(NotificationGroup.due_at) <= at_ms,
                    col(NotificationGroup.claimed_until) <= at_ms,
                )
                .limit(50)
            )
            claimed = list(found)
            for group in claimed:
                group.claimed_until = at_ms + CLAIM_MS
                session.add(group)
            due = [(g.id, g.due_at) for g in claimed]
        for gid, was_due in due:
            await self._flush(gid, was_due, at_ms)
        return len(due)

    async def _flush(self, gid: str, was_due: int | None, at_ms: int) -> None:
        async with self.sessions() as session:
            group = await session.get(NotificationGroup, gid)
            receiver = await session.get(Receiver, group.receiver_id) if group else None
            if group is None:
                return
            if receiver is None:  # the receiver was deleted
                async with session.begin():
                    await session.delete(group)
                return
            told: dict[str, str] = loads(group.members)  # fingerprint → severity last sent
            found = await session.exec(select(Alert).where(col(Alert.fingerprint).in_(told)))
            alerts = list(found)
            silences = await active_silences(session, at_ms)
        firing, resolved, muted_until = [], [], None
        for alert in alerts:
            muting = silenced_by(silences, match_labels(alert), at_ms)
            if muting:
                if alert.state == "firing":
                    end = min(s.ends_at for s in muting)
                    muted_until = end if muted_until is None else min(muted_until, end)
                continue
            if alert.state == "firing":
                firing.append(alert)
            elif receiver.send_resolved:  # a member not yet told it resolved
                resolved.append(alert)
        error = ""
        if firing or resolved:
            payload = payload_for(receiver, group, firing + resolved, at_ms, told)
            try:
                await self._send(receiver, payload)
            except Exception as exc:  # any failure is reported on the group, then retried
                error = f"{type(exc).__name__}: {exc}"[:500]
                log.warning("receiver %s: sending failed: %s", receiver.name, error)
            outcome = "failed" if error else "sent"
            get_metrics().notifications.labels(receiver.kind, outcome).inc()
        async with self.sessions() as session, session.begin():
            group = await session.get(NotificationGroup, gid)
            if group is None:
                return
            group.claimed_until = 0
            if error:
                group.failures += 1
                group.last_error = error
                group.due_at = at_ms + min(int(receiver.group_interval_s * 1000), 10_000)
            else:
                if firing or resolved:
                    group.last_sent_at, group.sent = at_ms, group.sent + 1
                    self.sent += 1
                group.last_error = ""
                sent = {a.fingerprint: a.severity for a in firing}
                members: dict[str, str] = loads(group.members)  # may have grown meanwhile
                for alert in alerts:
                    if alert.fingerprint in sent:
                        members[alert.fingerprint] = sent[alert.fingerprint]
                    elif alert.state != "firing":
                        members.pop(alert.fingerprint, None)
                group.members = dumps(members)
                due = [at_ms + int(receiver.repeat_interval_s * 1000)] if firing else []
                if muted_until is not None:
                    due.append(muted_until)
                if group.due_at is not None and group.due_at != was_due:
                    due.append(group.due_at)  # a change came in while we were sending
                group.due_at = min(due) if due else None
            session.add(group)

    async def _send(self, receiver: Receiver, payload: Any) -> None:
        headers = {str(k): str(v) for k, v in loads(receiver.headers).items()}
        url = receiver.url
        if receiver.kind == "alertmanager":
            url = url.rstrip("/") + "/api/v2/alerts"
        response = await self.http.post(url, json=payload, headers=headers, timeout=SEND_TIMEOUT_S)
        if response.status_code >= 300:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")


def payload_for(
    receiver: Receiver,
    group: NotificationGroup,
    alerts: list[Alert],
    at_ms: int,
    told: dict[str, str] | None = None,
) -> Any:
    if receiver.kind != "alertmanager":
        return _webhook(receiver, group, alerts)
    out = [_postable(a, receiver, at_ms) for a in alerts]
    # Alertmanager knows an alert by its labels, severity included: an alert that changed
    # level ends the one it told before, or that one would linger until it expires
    for alert in alerts:
        before = (told or {}).get(alert.fingerprint, "")
        if before and before != alert.severity:
            gone = _postable(alert, receiver, at_ms, severity=before)
            gone["endsAt"] = iso(at_ms)
            out.append(gone)
    return out


def _postable(
    alert: Alert, receiver: Receiver, at_ms: int, severity: str | None = None
) -> dict[str, Any]:
    """An Alertmanager v2 postable alert; a firing one expires unless sent again."""
    ends = alert.ends_at if alert.state == "resolved" and alert.ends_at else None
    if ends is None:
        ends = at_ms + max(int(4 * receiver.repeat_interval_s * 1000), 180_000)
    return {
        "labels": {**loads(alert.labels), "severity": severity or alert.severity},
        "annotations": {"summary": alert.summary, "fingerprint": alert.fingerprint},
        "startsAt": iso(alert.starts_at),
        "endsAt": iso(ends),
    }


def _webhook(receiver: Receiver, group: NotificationGroup, alerts: list[Alert]) -> dict[str, Any]:
    """Alertmanager's webhook body (version 4), so existing webhook consumers work."""
    items: list[dict[str, Any]] = []
    for a in alerts:
        labels = {**loads(a.labels), "severity": a.severity}
        items.append(
            {
                "status": a.state,
                "labels": labels,
                "annotations": {"summary": a.summary},
                "startsAt": iso(a.starts_at),
                "endsAt": iso(a.ends_at) if a.ends_at else "0001-01-01T00:00:00Z",
                "fingerprint": a.fingerprint,
                "incidentId": a.incident_id,
            }
        )
    common = dict(items[0]["labels"]) if items else {}
    for item in items[1:]:
        common = {k: v for k, v in common.items() if item["labels"].get(k) == v}
    return {
        "version": "4",
        "groupKey": group.group_key,
        "status": "firing" if any(a.state == "firing" for a in alerts) else "resolved",
        "receiver": receiver.name,
        "groupLabels": loads(group.group_labels),
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "",
        "truncatedAlerts": 0,
        "alerts": items,
    }
