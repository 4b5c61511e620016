"""Index documents for an app's timeline: builds, deploys, catalogue changes, alerts and
external change events, each with the app it concerns, a kind and a one-line summary.

The app comes from the event's data (`app`, else `labels.app`); events without one (a
drift report names only its instance) are indexed but belong to no timeline.
"""

from __future__ import annotations

from typing import Any

from libs.events import topics as t
from libs.events.envelope import parse_rfc3339
from libs.events.worker import Record
from services.dataops_ingest import store

KIND_BY_TOPIC = {
    t.BUILD_EVENTS: "build",
    t.DEPLOY_EVENTS: "deploy",
    t.APP_EVENTS: "app",
    t.ALERT_EVENTS: "alert",
}
TOPICS = list(KIND_BY_TOPIC)
_MAX_TEXT = 2000


def app_of(data: Any) -> str:
    if not isinstance(data, dict):
        return ""
    app = data.get("app")
    labels = data.get("labels")
    if not app and isinstance(labels, dict):
        app = labels.get("app")
    return app if isinstance(app, str) else ""


def summary_of(kind: str, what: str, data: dict[str, Any]) -> str:
    """One line a person reads in the timeline."""

    def get(key: str, default: str = "") -> str:
        value = data.get(key)
        return default if value is None or value == "" else str(value)

    if kind == "build" and what == "step":
        text = f"build step {get('component')} {get('step')}: {get('status', '?')}"
    elif kind == "build":
        text = f"build {get('version') or get('build_id')[:8]} {what}"
        if get("component"):
            text += f" ({get('component')})"
    elif kind == "deploy":
        if what == "state_changed":
            text = (
                f"{get('kind') or 'deploy'} {get('version', '')} to {get('instance', '?')} "
                f"rev {get('revision', '0')}: {get('state', '?')}"
            )
        else:
            text = f"{what.replace('_', ' ')} on {get('instance', '?')}"
    elif kind == "app":
        # io.opsline.app.created, io.opsline.package.created: the domain names the thing
        domain, _, action = what.partition(".")
        text = f"{domain} {get('version')} {action}".replace("  ", " ")
        changed = data.get("changed")
        if isinstance(changed, list) and changed:
            text += ": " + ", ".join(str(c) for c in changed[:10])
    else:
        text = str(get("summary") or get("message") or get("description") or what)
    reason = get("reason")
    if reason and kind != "alert":
        text += f": {reason}"
    return text[:_MAX_TEXT]


def _ts(record: Record) -> int:
    event = record.event
    assert event is not None
    if event.time:
        return int(parse_rfc3339(event.time).timestamp() * 1000)
    return int(record.timestamp)


def control_plane_document(record: Record, *, prefix: str) -> tuple[str, str, dict[str, Any]]:
    """(index, id, document) of a build/deploy/app/alert event."""
    event = record.event
    assert event is not None
    data = event.json() if event.data else {}
    if not isinstance(data, dict):
        data = {"value": data}
    data.pop("log", None)  # build step output: kept by the build service, not here
    kind = KIND_BY_TOPIC[record.topic]
    what = event.type.rsplit(".", 1)[-1]
    if kind == "app":  # app.events carries app.* and package.* types
        what = ".".join(event.type.split(".")[-2:])
    ts = _ts(record)
    doc: dict[str, Any] = {
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "subject": event.subject or "",
        "ts": ts,
        "app": app_of(data),
        "kind": kind,
        "summary": summary_of(kind, what, data),
        "data": data,
    }
    if kind == "alert":
        key = record.key.decode(errors="replace") if record.key else ""
        doc["fingerprint"] = str(data.get("fingerprint") or key)
        doc["state"] = str(data.get("state") or what)
        doc["severity"] = str(data.get("severity") or "")
        return store.index_for(prefix, "alerts", ts), event.id, doc
    return store.index_for(prefix, "events", ts), event.id, doc


def ops_fields(ev: dict[str, Any]) -> dict[str, Any]:
    """The timeline fields of a normalized external change event (ops.events)."""
    data = ev.get("data") if isinstance(ev.get("data"), dict) else {}
    return {
        "app": app_of(data),
        "kind": "ops",
        "summary": summary_of("ops", str(ev.get("type", "")), data or {}),
    }
