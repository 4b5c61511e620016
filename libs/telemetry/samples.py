"""Metric batches (`io.opsline.metric.batch`): validate each sample, normalize the good ones.

One bad sample never costs the good ones of its batch: the parser returns the samples it
took and a reason for each one it did not.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
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


class Series:
    """A validated series: its id, and its protobuf fields 1-3 serialized once."""

    __slots__ = ("hash32", "labels", "name", "prefix", "series_id")

    def __init__(self, name: str, labels: dict[str, str]) -> None:
        self.name = name
        self.labels = dict(labels)
        self.series_id = series_id(name, labels)
        self.hash32 = int(self.series_id[:8], 16)  # for partitioning
        self.prefix = Sample(series_id=self.series_id, name=name, labels=labels).SerializeToString()


class NormSample:
    """One normalized sample: its series, time and value."""

    __slots__ = ("series", "ts_ms", "value")

    def __init__(self, series: Series, ts_ms: int, value: float) -> None:
        self.series = series
        self.ts_ms = ts_ms
        self.value = value

    @property
    def series_id(self) -> str:
        return self.series.series_id

    @property
    def name(self) -> str:
        return self.series.name

    @property
    def labels(self) -> dict[str, str]:
        return self.series.labels


# Validated series by (name, labels as given): a memo, so a series seen before costs
# one dict lookup instead of validation, hashing and protobuf encoding.
_SERIES_MEMO_MAX = 200_000
_series_memo: dict[tuple[object, ...], Series] = {}


def _series(name: object, labels: object) -> Series:
    try:
        key = (name, *labels.items()) if isinstance(labels, dict) else (name, labels)
        found = _series_memo.get(key)
    except TypeError:  # unhashable junk: let validation say what is wrong
        key, found = None, None
    if found is not None:
        return found
    series = Series(_check_name(name), _check_labels(labels))
    if key is not None:
        if len(_series_memo) >= _SERIES_MEMO_MAX:
            _series_memo.clear()
        _series_memo[key] = series
    return series


@dataclass(slots=True)
class ParsedBatch:
    samples: list[NormSample]
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
    if name is None or name == "":
        raise ValueError("name: missing")
    if not isinstance(name, str):
        raise ValueError("name: must be a string")
    if name in _valid_names:
        return name
    if len(name) > MAX_NAME_LEN:
        raise ValueError(f"name: longer than {MAX_NAME_LEN} characters")
    if not _METRIC_NAME.match(name):
        raise ValueError(
            f"name: {name[:64]!r} is not a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)"
        )
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
    samples: list[NormSample] = []
    errors: list[str] = []
    kept: list[int] = []
    for i, item in enumerate(raw):
        try:
            if not isinstance(item, dict):
                raise ValueError("must be an object")
            series = _series(item.get("name"), item.get("labels"))
            value = item.get("value")
            if type(value) is not float or not math.isfinite(value):
                value = _check_value(value)
            raw_ts = item.get("ts")
            if type(raw_ts) is int and 0 <= raw_ts <= horizon:
                ts = raw_ts
            else:
                try:
                    ts = parse_ts(raw_ts, default_ms=now)
                except ValueError as exc:
                    raise ValueError(f"ts: {exc}") from None
                if ts > horizon:
                    raise ValueError("ts: more than 10 minutes in the future")
        except ValueError as exc:
            errors.append(
                f"samples[{i}].{exc}" if not str(exc).startswith("must") else f"samples[{i}]: {exc}"
            )
            continue
        samples.append(NormSample(series, ts, value))
        kept.append(i)
    return ParsedBatch(samples, errors, kept)


_DOUBLE = struct.Struct("<d")


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,)) if value >= 0 else _varint_slow(value)
    if 0x800000000 <= value < 0x40000000000:  # epoch ms from 1971 to 2109: six bytes
        return bytes(
            (
                (value & 0x7F) | 0x80,
                ((value >> 7) & 0x7F) | 0x80,
                ((value >> 14) & 0x7F) | 0x80,
                ((value >> 21) & 0x7F) | 0x80,
                ((value >> 28) & 0x7F) | 0x80,
                value >> 35,
            )
        )
    return _varint_slow(value)


def _varint_slow(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 on the wire: two's complement, ten bytes
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_batch(samples: list[NormSample], *, source_event_id: str) -> bytes:
    """Serialize a MetricBatch (protobuf wire format, byte-identical to the generated class).

    Each series' fields 1-3 are serialized once (Series.prefix); a sample adds only its
    time (field 4, varint) and value (field 5, fixed64), which is ~5x faster than
    building a Sample message per sample.
    """
    parts: list[bytes] = []
    for sample in samples:
        body = sample.series.prefix
        if sample.ts_ms:
            body += b"\x20" + _varint(sample.ts_ms)
        if sample.value != 0.0 or math.copysign(1.0, sample.value) < 0:
            body += b"\x29" + _DOUBLE.pack(sample.value)
        parts.append(b"\x0a" + _varint(len(body)) + body)
    if source_event_id:
        raw = source_event_id.encode()
        parts.append(b"\x12" + _varint(len(raw)) + raw)
    return b"".join(parts)


def decode_batch(data: bytes) -> MetricBatch:
    batch = MetricBatch()
    batch.ParseFromString(data)
    return batch
