"""Log batches (`io.opsline.log.batch`): validate each record, normalize the good ones."""

from __future__ import annotations

import time

from libs.schemas.opsline.v1.logs_pb2 import LogRecord
from libs.telemetry.samples import FUTURE_TOLERANCE_MS, BatchError, parse_ts

MAX_LOG_RECORDS = 50_000
MAX_MESSAGE_LEN = 64 * 1024
LEVELS = {"trace", "debug", "info", "notice", "warn", "warning", "error", "critical", "fatal"}


def parse_log_batch(
    data: object, *, source: str, now_ms: int | None = None
) -> tuple[list[LogRecord], list[str], list[int]]:
    """The records taken, the reasons for those not taken, and the positions taken."""
    if not isinstance(data, dict) or not isinstance(data.get("records"), list):
        raise BatchError("data.records: missing, or not a list")
    raw = data["records"]
    if len(raw) > MAX_LOG_RECORDS:
        raise BatchError(f"data.records: {len(raw)} records, at most {MAX_LOG_RECORDS}")
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    records: list[LogRecord] = []
    errors: list[str] = []
    kept: list[int] = []
    for i, item in enumerate(raw):
        try:
            if not isinstance(item, dict):
                raise ValueError("must be an object")
            message = item.get("message")
            if not isinstance(message, str) or not message:
                raise ValueError("message: missing, or not a string")
            level = str(item.get("level") or "info").lower()
            if level not in LEVELS:
                raise ValueError(f"level: {level[:20]!r} is not one of {sorted(LEVELS)}")
            labels = item.get("labels") or {}
            if not isinstance(labels, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
            ):
                raise ValueError("labels: must be an object of string values")
            try:
                ts = parse_ts(item.get("ts"), default_ms=now)
            except ValueError as exc:
                raise ValueError(f"ts: {exc}") from None
            if ts > now + FUTURE_TOLERANCE_MS:
                raise ValueError("ts: more than 10 minutes in the future")
        except ValueError as exc:
            text = str(exc)
            errors.append(
                f"records[{i}]: {text}" if text.startswith("must") else f"records[{i}].{text}"
            )
            continue
        records.append(
            LogRecord(
                ts_ms=ts,
                level=level,
                message=message[:MAX_MESSAGE_LEN],
                labels=labels,
                source=source,
            )
        )
        kept.append(i)
    return records, errors, kept
