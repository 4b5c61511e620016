"""Prometheus remote_write 1.0: check and decode a request, turn it into validated samples.

The gateway checks a request (headers, snappy, protobuf) and puts the body, as Prometheus
sent it, on `ingest.raw` as an `io.opsline.prometheus.write` event; the normalizer decodes
it again (Kafka is an input from outside too) and validates every sample with the rules
of `io.opsline.metric.batch` (libs/telemetry/samples.py).

Staleness markers (the StaleNaN bit pattern Prometheus writes when a series disappears)
are not values and not errors: they are dropped and counted as stale.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field

import cramjam
from google.protobuf.message import DecodeError

from libs.events.envelope import CloudEvent
from libs.schemas.prometheus.remote_pb2 import WriteRequest
from libs.schemas.prometheus.types_pb2 import TimeSeries
from libs.telemetry.samples import MAX_SAMPLES, NormSample, parse_metric_batch

EVENT_TYPE = "io.opsline.prometheus.write"
CONTENT_TYPE = "application/x-protobuf"
ENCODING = "snappy"
# remote_write 1.0 senders announce 0.1.0; a 2.0 sender announces 2.0.0 and a v2 proto.
VERSION = "0.1.0"
# Decompressed size limit: a declared length above it is refused before decompressing.
MAX_DECODED_BYTES = 32 << 20
STALE_NAN_BITS = 0x7FF0000000000002
_BITS = struct.Struct("<Q")
_DOUBLE = struct.Struct("<d")
_ERROR_AT = re.compile(r"^samples\[(\d+)\][.:]?\s*")


class RemoteWriteError(ValueError):
    """A request or event that cannot be taken; `status` is the HTTP answer for it."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def check_headers(*, content_type: str, content_encoding: str, version: str | None) -> None:
    """415 unless the request is what remote_write 1.0 sends."""
    encoding = content_encoding.strip().lower()
    if encoding != ENCODING:
        raise RemoteWriteError(
            415, f"Content-Encoding must be {ENCODING!r} (remote_write 1.0), not {encoding!r}"
        )
    media, _, params = content_type.partition(";")
    proto = next(
        (v.strip().strip('"') for k, _, v in _params(params) if k.lower() == "proto"),
        "prometheus.WriteRequest",
    )
    if media.strip().lower() != CONTENT_TYPE or proto != "prometheus.WriteRequest":
        raise RemoteWriteError(
            415,
            f"Content-Type must be {CONTENT_TYPE!r} carrying prometheus.WriteRequest "
            f"(remote_write 1.0), not {content_type.strip()[:100]!r}",
        )
    if version and not version.strip().startswith(("0.", "1.")):
        raise RemoteWriteError(
            415,
            f"X-Prometheus-Remote-Write-Version {version.strip()[:20]!r} is not supported: "
            f"send remote_write 1.0 ({VERSION})",
        )


def _params(text: str) -> list[tuple[str, str, str]]:
    return [p.strip().partition("=") for p in text.split(";") if p.strip()]


def declared_length(block: bytes) -> int:
    """The decompressed length a snappy block announces (its leading varint)."""
    value = 0
    for i, byte in enumerate(block[:5]):
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value
    raise RemoteWriteError(400, "corrupt snappy block: no valid length header")


def decompress(block: bytes, *, max_bytes: int = MAX_DECODED_BYTES) -> bytes:
    """Snappy block format → bytes; 413 above `max_bytes`, checked before decompressing."""
    if not block:
        raise RemoteWriteError(400, "empty body: expected a snappy-compressed WriteRequest")
    size = declared_length(block)
    if size > max_bytes:
        raise RemoteWriteError(
            413, f"the snappy block declares {size} bytes decompressed; at most {max_bytes}"
        )
    try:
        return bytes(cramjam.snappy.decompress_raw(block))
    except cramjam.DecompressionError as exc:
        raise RemoteWriteError(400, f"corrupt snappy block: {exc}") from None


def parse(data: bytes) -> WriteRequest:
    request = WriteRequest()
    try:
        request.ParseFromString(data)
    except DecodeError as exc:
        raise RemoteWriteError(400, f"not a remote_write WriteRequest protobuf: {exc}") from None
    return request


def decode_request(
    body: bytes, *, content_type: str, content_encoding: str, version: str | None
) -> WriteRequest:
    """Check and decode one HTTP request body; RemoteWriteError says what is wrong."""
    check_headers(content_type=content_type, content_encoding=content_encoding, version=version)
    return parse(decompress(body))


def count_samples(request: WriteRequest) -> int:
    return sum(len(ts.samples) + len(ts.histograms) for ts in request.timeseries)


def to_event(body: bytes, *, source: str) -> CloudEvent:
    """The event the gateway puts on ingest.raw: the body untouched, the headers kept."""
    return CloudEvent.create(
        type=EVENT_TYPE,
        source=source,
        data=body,
        datacontenttype=CONTENT_TYPE,
        extensions={"contentencoding": ENCODING},
    )


@dataclass(slots=True)
class ParsedWrite:
    samples: list[NormSample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # "timeseries[3] up{job="x"}: ..."
    stale: int = 0  # staleness markers, dropped


def parse_event_data(
    data: bytes, *, encoding: str | None, now_ms: int | None = None
) -> ParsedWrite:
    """An io.opsline.prometheus.write event's data → validated samples and the reasons."""
    if (encoding or "").lower() == ENCODING:
        data = decompress(data)
    elif encoding:
        raise RemoteWriteError(415, f"contentencoding {encoding[:20]!r}: only snappy or none")
    return to_samples(parse(data), now_ms=now_ms)


def is_stale(value: float) -> bool:
    return math.isnan(value) and _BITS.unpack(_DOUBLE.pack(value))[0] == STALE_NAN_BITS


def to_samples(request: WriteRequest, *, now_ms: int | None = None) -> ParsedWrite:
    """Every float sample through the metric batch rules; one bad series costs only itself."""
    out = ParsedWrite()
    flat: list[dict[str, object]] = []
    origin: list[int] = []
    for i, series in enumerate(request.timeseries):
        name, labels, problem = _series_labels(series)
        if problem:
            out.errors.append(f"timeseries[{i}] {_describe(series)}: {problem}")
            continue
        if series.histograms:
            out.errors.append(
                f"timeseries[{i}] {_describe(series)}: {len(series.histograms)} native "
                "histogram sample(s) dropped: opsline stores float samples only"
            )
        for sample in series.samples:
            value = sample.value
            if value != value and is_stale(value):
                out.stale += 1
                continue
            flat.append({"name": name, "labels": labels, "value": value, "ts": sample.timestamp})
            origin.append(i)
    for start in range(0, len(flat), MAX_SAMPLES):
        parsed = parse_metric_batch({"samples": flat[start : start + MAX_SAMPLES]}, now_ms=now_ms)
        out.samples.extend(parsed.samples)
        for error in parsed.errors:
            out.errors.append(_locate(error, flat, origin, start, request))
    return out


def _series_labels(series: TimeSeries) -> tuple[object, dict[str, str], str]:
    """(name, other labels, problem): a repeated label name makes the series unusable."""
    name: object = None
    labels: dict[str, str] = {}
    for label in series.labels:
        if label.name == "__name__":
            if name is not None:
                return None, {}, "labels: '__name__' is repeated"
            name = label.value
        elif label.name in labels:
            return None, {}, f"labels: {label.name[:64]!r} is repeated"
        else:
            labels[label.name] = label.value
    return name, labels, ""


def _describe(series: TimeSeries) -> str:
    """up{job="prometheus"} (cut short), for reasons a person reads."""
    name = next((lb.value for lb in series.labels if lb.name == "__name__"), "")
    rest = ",".join(f'{lb.name}="{lb.value}"' for lb in series.labels if lb.name != "__name__")
    text = f"{name}{{{rest}}}"
    return text if len(text) <= 200 else text[:197] + "..."


def _locate(
    error: str, flat: list[dict[str, object]], origin: list[int], start: int, request: WriteRequest
) -> str:
    """samples[k].value: … → timeseries[i] up{…} @ts: value: … (where Prometheus sent it)."""
    match = _ERROR_AT.match(error)
    if not match:
        return error
    k = start + int(match.group(1))
    i = origin[k]
    where = f"timeseries[{i}] {_describe(request.timeseries[i])} @{flat[k]['ts']}"
    return f"{where}: {error[match.end() :]}"
