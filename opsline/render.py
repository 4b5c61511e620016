"""How the CLI shows the gateway's answers: diffs, build steps, tables, events (rich)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

STYLES = {
    "QUEUED": "dim",
    "PENDING": "dim",
    "RUNNING": "cyan",
    "SUCCEEDED": "green",
    "FAILED": "red",
    "CANCELLED": "magenta",
    "SKIPPED": "dim",
}


def styled(status: Any) -> Text:
    return Text(str(status), style=STYLES.get(str(status), ""))


def value(item: Any) -> str:
    """A value as compact JSON, so "1" and 1 differ; cut past 200 characters."""
    text = json.dumps(item, ensure_ascii=False, default=str)
    return text if len(text) <= 200 else text[:199] + "…"


def change_line(change: Any) -> Text:
    """One change of `app apply`: + added, - removed, ~ changed."""
    if not isinstance(change, dict):
        return Text(f"  ~ {change}", style="yellow")
    path = str(change.get("path", "?"))
    old, new = change.get("old"), change.get("new")
    if old is None and new is not None:
        return Text(f"  + {path}: {value(new)}", style="green")
    if new is None and old is not None:
        return Text(f"  - {path}: {value(old)}", style="red")
    return Text(f"  ~ {path}: {value(old)} → {value(new)}", style="yellow")


def _table(*columns: str) -> Table:
    return Table(*columns, box=None, padding=(0, 2, 0, 0))


def when(stamp: Any) -> str:
    """An RFC 3339 time as "YYYY-MM-DD HH:MM:SS" in UTC; anything else as it is."""
    if not isinstance(stamp, str):
        return "" if stamp is None else str(stamp)
    try:
        parsed = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.strftime("%Y-%m-%d %H:%M:%S")


def apps_table(items: list[Any]) -> Table:
    table = _table("NAME", "TEAM", "COMPONENTS", "UPDATED", "DESCRIPTION")
    for item in items:
        if not isinstance(item, dict):
            table.add_row(str(item), "", "", "", "")
            continue
        components = item.get("components") or []
        if isinstance(components, list):
            names = [c.get("name", "?") if isinstance(c, dict) else str(c) for c in components]
            components = ", ".join(names)
        table.add_row(
            str(item.get("name", "?")),
            str(item.get("team") or ""),
            str(components),
            when(item.get("updated_at") or item.get("created_at")),
            str(item.get("description") or ""),
        )
    return table


def build_view(build: dict[str, Any], *, live: bool = True) -> RenderableType:
    """A header line (id, app, version, status) over a table of the steps."""
    header = Text.assemble(
        (f"build {build.get('id', '?')}", "bold"),
        f" · {build.get('app', '?')} version {build.get('version', '?')} · ",
        styled(build.get("status", "?")),
    )
    table = _table("COMPONENT", "STEP", "STATUS")
    for step in build.get("steps") or []:
        status = step.get("status", "?")
        cell: RenderableType = styled(status)
        if live and status == "RUNNING":
            cell = Spinner("dots", text=styled(status), style="cyan")
        table.add_row(str(step.get("component", "")), str(step.get("step", "")), cell)
    return Group(header, table)


def step_name(step: dict[str, Any]) -> str:
    return f"{step.get('component', '')}/{step.get('step', '')}"


def log_line(step: str, line: Any) -> Text:
    return Text.assemble((f"{step} │ ", "dim"), str(line))


def packages_table(items: list[dict[str, Any]]) -> Table:
    table = _table("VERSION", "BUILD", "CREATED", "ARTIFACTS")
    for item in items:
        artifacts = "\n".join(artifact(a) for a in item.get("artifacts") or [])
        table.add_row(
            str(item.get("version", "?")),
            str(item.get("build_id", "")),
            when(item.get("created_at")),
            artifacts or "-",
        )
    return table


def market_table(items: list[dict[str, Any]]) -> Table:
    table = _table("APP", "VERSION", "PUBLISHED")
    for item in items:
        published = when(item.get("published_at"))
        table.add_row(str(item.get("app", "?")), str(item.get("version", "?")), published)
    return table


def artifact(item: Any) -> str:
    """component, kind, short digest and size on one line."""
    if not isinstance(item, dict):
        return str(item)
    parts = [str(item.get("component", "?")), str(item.get("kind", ""))]
    parts.append(short_digest(str(item.get("digest", ""))))
    if isinstance(item.get("size"), int):
        parts.append(size(item["size"]))
    return " ".join(p for p in parts if p)


def short_digest(digest: str) -> str:
    algo, sep, hexdigits = digest.rpartition(":")
    return f"{algo}{sep}{hexdigits[:12]}"


def size(n: int) -> str:
    amount = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def event_line(event: dict[str, Any]) -> Text:
    """time, type, subject and data of one event."""
    line = Text.assemble(
        (str(event.get("time", "-")), "dim"), " ", (str(event.get("type")), "cyan")
    )
    if event.get("subject"):
        line.append(f" {event['subject']}", style="bold")
    if "data" in event:
        line.append(f" {value(event['data'])}")
    return line
