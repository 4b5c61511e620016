"""What the client reads and writes on the wire, without any I/O: Server-Sent Events
frames, batch chunks under a body limit, Retry-After, and the gateway's error bodies."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx


class OpslineError(Exception):
    """A request the gateway refused (`status` set) or one that never reached it (None).

    `accepted` lists the ids of events a batched publish got in before it failed, so a
    caller knows what not to send again.
    """

    def __init__(self, status: int | None, detail: str, accepted: Sequence[str] = ()) -> None:
        super().__init__(status, detail)
        self.status = status
        self.detail = detail
        self.accepted = list(accepted)

    def __str__(self) -> str:
        return self.detail if self.status is None else f"HTTP {self.status}: {self.detail}"


@dataclass(frozen=True, slots=True)
class SseFrame:
    id: str | None
    event: str
    data: str


def parse_sse(lines: Iterable[str]) -> Iterator[SseFrame]:
    """Server-Sent Events frames from the lines of a text/event-stream body."""
    last_id: str | None = None
    event = ""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield SseFrame(last_id, event or "message", "\n".join(data))
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
        elif field == "id":
            last_id = value
    if data:
        yield SseFrame(last_id, event or "message", "\n".join(data))


def chunks(encoded: Sequence[bytes], max_bytes: int, max_events: int) -> Iterator[range]:
    """Consecutive index ranges whose JSON array ([a,b,…]) fits in max_bytes and max_events;
    an event too large on its own gets a range of its own (the gateway has the last word)."""
    start, size = 0, 2
    for index, item in enumerate(encoded):
        grown = size + len(item) + (1 if index > start else 0)
        if index > start and (grown > max_bytes or index - start >= max_events):
            yield range(start, index)
            start, grown = index, 2 + len(item)
        size = grown
    if start < len(encoded):
        yield range(start, len(encoded))


def json_array(encoded: Sequence[bytes]) -> bytes:
    return b"[" + b",".join(encoded) + b"]"


def retry_after_s(response: httpx.Response, now: datetime | None = None) -> float | None:
    """The wait Retry-After asks for, in seconds: delta-seconds or an HTTP date."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def json_body(response: httpx.Response) -> dict[str, Any]:
    if not response.content:
        return {}
    try:
        body = response.json()
    except ValueError:
        raise OpslineError(response.status_code, "the gateway's answer is not JSON") from None
    return body if isinstance(body, dict) else {"items": body}


def http_error(response: httpx.Response) -> OpslineError:
    """The server's own words: its "detail", plus any per-event rejections."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = ""
    if isinstance(body, dict):
        rejected = body.get("rejected")
        detail = with_rejections(
            describe(body.get("detail")), rejected if isinstance(rejected, list) else []
        )
    if not detail:
        text = response.text.strip()
        detail = text[:300] if text and not text.startswith("<") else response.reason_phrase
    return OpslineError(response.status_code, detail)


def with_rejections(detail: str, rejected: Sequence[Any]) -> str:
    if not rejected:
        return detail
    reasons = "; ".join(rejection(r) for r in rejected[:5])
    more = f" (and {len(rejected) - 5} more)" if len(rejected) > 5 else ""
    return f"{detail}: {reasons}{more}" if detail else reasons + more


def describe(detail: Any) -> str:
    if detail is None:
        return ""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, dict) and "message" in detail:  # {"message", "errors": [...]}
        errors = detail.get("errors") or []
        listed = "; ".join(str(e) for e in errors) if isinstance(errors, list) else str(errors)
        return f"{detail['message']}: {listed}" if listed else str(detail["message"])
    if isinstance(detail, list):  # FastAPI's validation errors: [{"loc": [...], "msg": ...}]
        parts = []
        for item in detail:
            if isinstance(item, dict) and "msg" in item:
                loc = ".".join(str(p) for p in item.get("loc", [])[1:])
                parts.append(f"{loc}: {item['msg']}" if loc else str(item["msg"]))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return json.dumps(detail)


def rejection(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    where = item.get("id") or f"#{item.get('index', '?')}"
    return f"event {where}: {item.get('reason', 'rejected')}"


def notice(frame: SseFrame) -> str | None:
    """What the gateway says when it ends a stream itself (an `error` frame that is not a
    CloudEvent: "client too slow; reconnect"); None for any other frame."""
    if frame.event != "error":
        return None
    try:
        value = json.loads(frame.data)
    except ValueError:
        return frame.data
    if isinstance(value, dict) and "specversion" in value:
        return None
    detail = value.get("detail") if isinstance(value, dict) else None
    return str(detail or frame.data)


def frame_event(frame: SseFrame) -> dict[str, Any]:
    """The CloudEvent a frame carries; the gateway's closing notice raises."""
    said = notice(frame)
    if said is not None:
        raise OpslineError(None, f"the gateway ended the event stream: {said}")
    try:
        value = json.loads(frame.data)
    except ValueError:
        value = None
    if isinstance(value, dict):
        return value
    return {"id": frame.id, "type": frame.event, "data": frame.data if value is None else value}
