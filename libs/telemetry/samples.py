"""Metric batches (`io.opsline.metric.batch`): validate each sample, normalize the good ones.

One bad sample never costs the good ones of its batch: the parser returns the samples it
took and a reason for each one it did not.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from libs.schemas.opsline.v1.metrics_pb2 import MetricBatch, Sample

MAX_SAMPLES = 100_000
MAX_LABELS = 32
MAX_NAME_LEN = 200
MAX_LABEL_NAME_LEN = 100
MAX_LABEL_VALUE_LEN = 1024
FUTURE_TOLERANCE_MS = 10 * 60 * 1000
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_valid_names: set[str] = set()
_valid_label_names: set[str] = set()


class BatchError(ValueError):
    """The batch as a whole is unusable (not an object, no sample list)."""


@dataclass(slots=True)
class ParsedBatch:
    samples: list[Sample]
    errors: list[str]  # "samples[3].value: not a number"
    kept: list[int]  # positions in the input of the samples taken


def series_id(name: str, labels: dict[str, str]) -> str:
    """Stable id of a series: the same name and labels always give the same id."""
    h = hashlib.blake2b(name.encode(), digest_size=8)
    for key in sorted(labels):
        h.update(b"\x00")
        h.update(key.encode())
        h.update(b"\x01")
        h.update(labels[key].encode())
    return h.hexdigest()


def parse_ts(value: Any, *, default_ms: int) -> int:
    """RFC 3339 text or epoch milliseconds → epoch milliseconds."""
    if value is None:
        return default_ms
    if isinstance(value, bool):
        raise ValueError("must be RFC 3339 text or epoch milliseconds, not a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError("epoch milliseconds must be a finite, non-negative number")
        return int(value)
    if isinstance(value, str):
        text = value.replace("Z", "+00:00").replace("z", "+00:00")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not an RFC 3339 timestamp: {value[:64]!r}") from None
        if parsed.tzinfo is None:
            raise ValueError(f"RFC 3339 timestamp needs a UTC offset: {value[:64]!r}")
        return int(parsed.timestamp() * 1000)
    raise ValueError("must be RFC 3339 text or epoch milliseconds")


def _check_name(name: Any) -> str:
    if name in _valid_names:
        return name  # type: ignore[no-any-return]
    if name is None or name == "":
        raise ValueError("name: missing")
    if not isinstance(name, str):
        raise ValueError("name: must be a string")
    if len(name) > MAX_NAME_LEN:
        raise ValueError(f"name: longer than {MAX_NAME_LEN} characters")
    if not _METRIC_NAME.match(name):
        raise ValueError(f"name: {name[:64]!r} is not a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)")
    if len(_valid_names) < 100_000:
        _valid_names.add(name)
    return name


def _check_labels(labels: Any) -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise ValueError("labels: must be an object of string values")
    if len(labels) > MAX_LABELS:
        raise ValueError(f"labels: {len(labels)} labels, at most {MAX_LABELS} are allowed")
    for key, val in labels.items():
        if key not in _valid_label_names:
            if len(key) > MAX_LABEL_NAME_LEN or not _LABEL_NAME.match(key):
                raise ValueError(f"labels: {key[:64]!r} is not a valid label name")
            if len(_valid_label_names) < 10_000:
                _valid_label_names.add(key)
        if not isinstance(val, str):
            raise ValueError(f"labels.{key}: must be a string")
        if len(val) > MAX_LABEL_VALUE_LEN:
            raise ValueError(f"labels.{key}: longer than {MAX_LABEL_VALUE_LEN} characters")
    return labels


def _check_value(value: Any) -> float:
    if value is None:
        raise ValueError("value: missing")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"value: not a number ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError("value: NaN and infinity are not accepted")
    return value


def parse_metric_batch(data: Any, *, now_ms: int | None = None) -> ParsedBatch:
    """Validate a metric batch's data; returns the normalized samples and the rejections."""
    if not isinstance(data, dict):
        raise BatchError("data must be a JSON object with a 'samples' list")
    raw = data.get("samples")
    if not isinstance(raw, list):
        raise BatchError("data.samples: missing, or not a list")
    if len(raw) > MAX_SAMPLES:
        raise BatchError(f"data.samples: {len(raw)} samples, at most {MAX_SAMPLES} per batch")
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    horizon = now + FUTURE_TOLERANCE_MS
    samples: list[Sample] = []
    errors: list[str] = []
    kept: list[int] = []
    for i, item in enumerate(raw):
        try:
            if not isinstance(item, dict):
                raise ValueError("must be an object")
            name = _check_name(item.get("name"))
            labels = _check_labels(item.get("labels"))
            value = _check_value(item.get("value"))
            try:
                ts = parse_ts(item.get("ts"), default_ms=now)
            except ValueError as exc:
                raise ValueError(f"ts: {exc}") from None
            if ts > horizon:
                raise ValueError("ts: more than 10 minutes in the future")
        except ValueError as exc:
            errors.append(f"samples[{i}].{exc}" if not str(exc).startswith("must") else
                          f"samples[{i}]: {exc}")
            continue
        samples.append(
            Sample(series_id=series_id(name, labels), name=name, labels=labels, ts_ms=ts,
                   value=value)
        )
        kept.append(i)
    return ParsedBatch(samples, errors, kept)


def encode_batch(samples: list[Sample], *, source_event_id: str) -> bytes:
    return MetricBatch(samples=samples, source_event_id=source_event_id).SerializeToString()


def decode_batch(data: bytes) -> MetricBatch:
    batch = MetricBatch()
    batch.ParseFromString(data)
    return batch
