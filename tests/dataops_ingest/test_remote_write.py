"""Prometheus remote_write: decoding, every bad input, normalization, and the gateway route."""

from __future__ import annotations

import math
import struct
from collections.abc import AsyncIterator

import cramjam
import httpx
import pytest
from fastapi import FastAPI

from libs.events.envelope import CloudEvent
from libs.observability.metrics import get_metrics
from libs.schemas.prometheus.remote_pb2 import WriteRequest
from libs.telemetry import remote_write as rw
from libs.telemetry.samples import MAX_LABELS, series_id
from services.dataops_ingest.service import Unusable, normalize
from services.gateway import api
from services.gateway.deps import Caller, current_caller
from services.gateway.settings import GatewaySettings

NOW_MS = 1_714_557_600_000  # 2024-05-01T10:00:00Z
STALE_NAN = struct.unpack("<d", struct.pack("<Q", rw.STALE_NAN_BITS))[0]
HEADERS = {
    "content-type": "application/x-protobuf",
    "content-encoding": "snappy",
    "x-prometheus-remote-write-version": "0.1.0",
}


def _write(*series: tuple[dict[str, str], list[tuple[float, int]]]) -> WriteRequest:
    """A WriteRequest of (labels incl. __name__, [(value, ts_ms), …]) per series."""
    request = WriteRequest()
    for labels, samples in series:
        ts = request.timeseries.add()
        for name in sorted(labels):
            ts.labels.add(name=name, value=labels[name])
        for value, timestamp in samples:
            ts.samples.add(value=value, timestamp=timestamp)
    return request


def _snappy(request: WriteRequest | bytes) -> bytes:
    raw = request if isinstance(request, bytes) else request.SerializeToString()
    return bytes(cramjam.snappy.compress_raw(raw))


def _decode(body: bytes, **headers: str) -> WriteRequest:
    h = {
        "content_type": HEADERS["content-type"],
        "content_encoding": "snappy",
        "version": "0.1.0",
        **headers,
    }
    return rw.decode_request(body, **h)  # type: ignore[arg-type]


def _refused(body: bytes, **headers: str) -> rw.RemoteWriteError:
    with pytest.raises(rw.RemoteWriteError) as info:
        _decode(body, **headers)
    return info.value


# --- decoding ----------------------------------------------------------------------------


def test_a_request_decodes_to_its_series() -> None:
    sent = _write(({"__name__": "up", "job": "prometheus"}, [(1.0, NOW_MS)]))
    got = _decode(_snappy(sent))
    assert got == sent
    assert rw.count_samples(got) == 1


@pytest.mark.parametrize(
    "content_type",
    ["application/x-protobuf; proto=prometheus.WriteRequest", "APPLICATION/X-PROTOBUF"],
)
def test_content_type_with_the_v1_proto_parameter_is_taken(content_type: str) -> None:
    sent = _write(({"__name__": "up"}, [(1.0, NOW_MS)]))
    assert _decode(_snappy(sent), content_type=content_type) == sent


def test_a_missing_version_header_is_tolerated() -> None:
    sent = _write(({"__name__": "up"}, [(1.0, NOW_MS)]))
    assert _decode(_snappy(sent), version="") == sent


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"content_encoding": ""}, "Content-Encoding must be 'snappy'"),
        ({"content_encoding": "gzip"}, "not 'gzip'"),
        ({"content_type": "application/json"}, "Content-Type must be 'application/x-protobuf'"),
        ({"content_type": ""}, "Content-Type must be"),
        (
            {"content_type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"},
            "carrying prometheus.WriteRequest",
        ),
        ({"version": "2.0.0"}, "'2.0.0' is not supported"),
    ],
)
def test_unsupported_encoding_type_or_version_is_415(headers: dict[str, str], reason: str) -> None:
    error = _refused(_snappy(_write()), **headers)
    assert error.status == 415
    assert reason in error.reason


def test_corrupt_snappy_is_400_with_the_reason() -> None:
    body = _snappy(_write(({"__name__": "up", "job": "x" * 50}, [(1.0, NOW_MS)])))
    error = _refused(body[:-5])  # cut short: a copy reaches past the end
    assert error.status == 400
    assert error.reason.startswith("corrupt snappy block: snappy: corrupt input")


def test_a_body_that_is_not_snappy_at_all_is_400() -> None:
    error = _refused(b'{"timeseries": []}')
    assert error.status == 400 and "corrupt snappy block" in error.reason


def test_an_empty_body_is_400() -> None:
    error = _refused(b"")
    assert error.status == 400 and "empty body" in error.reason


def test_a_length_header_that_never_ends_is_400() -> None:
    error = _refused(b"\xff\xff\xff\xff\xff\xff")
    assert error.status == 400 and "no valid length header" in error.reason


def test_a_declared_length_over_the_limit_is_413_before_decompressing() -> None:
    # 1 GiB declared, a few bytes of body: decompressing would fail (400); the limit answers.
    varint = bytes([0x80, 0x80, 0x80, 0x80, 0x04])
    assert rw.declared_length(varint + b"junk") == 1 << 30
    error = _refused(varint + b"junk")
    assert error.status == 413
    assert f"at most {rw.MAX_DECODED_BYTES}" in error.reason


def test_a_real_decompression_bomb_is_413() -> None:
    bomb = _snappy(b"\x00" * (rw.MAX_DECODED_BYTES + 1))
    assert len(bomb) < 2 * 1024 * 1024  # small on the wire
    assert _refused(bomb).status == 413


def test_bytes_that_are_not_a_write_request_are_400() -> None:
    error = _refused(_snappy(b"\x0a\xff\xff\xff\x0f\x01"))  # field 1, length past the end
    assert error.status == 400
    assert error.reason.startswith("not a remote_write WriteRequest protobuf")


# --- samples -----------------------------------------------------------------------------


def _samples(request: WriteRequest) -> rw.ParsedWrite:
    return rw.to_samples(request, now_ms=NOW_MS)


def test_series_labels_become_name_and_labels_with_the_metric_batch_series_id() -> None:
    parsed = _samples(
        _write(
            ({"__name__": "up", "job": "prometheus", "instance": "a:9090"}, [(1.0, NOW_MS - 5)]),
            ({"__name__": "http_requests_total"}, [(3.0, NOW_MS - 2), (4.0, NOW_MS - 1)]),
        )
    )
    assert parsed.errors == [] and parsed.stale == 0
    assert [(s.name, s.labels, s.value, s.ts_ms) for s in parsed.samples] == [
        ("up", {"instance": "a:9090", "job": "prometheus"}, 1.0, NOW_MS - 5),
        ("http_requests_total", {}, 3.0, NOW_MS - 2),
        ("http_requests_total", {}, 4.0, NOW_MS - 1),
    ]
    assert parsed.samples[0].series_id == series_id(
        "up", {"job": "prometheus", "instance": "a:9090"}
    )


@pytest.mark.parametrize(
    ("series", "reason"),
    [
        (
            ({"__name__": "up", "job": "p"}, [(math.nan, NOW_MS)]),
            'timeseries[1] up{job="p"} @1714557600000: value: NaN and infinity are not accepted',
        ),
        (
            ({"__name__": "up"}, [(math.inf, NOW_MS)]),
            "value: NaN and infinity are not accepted",
        ),
        (
            ({"__name__": "up"}, [(1.0, NOW_MS + 3_600_000)]),
            "ts: more than 10 minutes in the future",
        ),
        (({"__name__": "up"}, [(1.0, -1)]), "ts: epoch milliseconds must be a finite"),
        (({"job": "no-name"}, [(1.0, NOW_MS)]), "name: missing"),
        (({"__name__": "not-valid"}, [(1.0, NOW_MS)]), "is not a valid metric name"),
        (({"__name__": "up", "bad-label": "x"}, [(1.0, NOW_MS)]), "is not a valid label name"),
        (({"__name__": "up", "v": "x" * 2000}, [(1.0, NOW_MS)]), "labels.v: longer than 1024"),
        (
            ({"__name__": "up", **{f"l{i}": "x" for i in range(MAX_LABELS + 1)}}, [(1, NOW_MS)]),
            f"labels: {MAX_LABELS + 1} labels, at most {MAX_LABELS}",
        ),
    ],
)
def test_a_bad_sample_is_refused_with_where_and_why_and_the_good_ones_kept(
    series: tuple[dict[str, str], list[tuple[float, int]]], reason: str
) -> None:
    good = ({"__name__": "ok", "job": "p"}, [(2.0, NOW_MS)])
    parsed = _samples(_write(good, series, good))
    assert [s.name for s in parsed.samples] == ["ok", "ok"]
    assert len(parsed.errors) == 1, parsed.errors
    assert parsed.errors[0].startswith("timeseries[1] ")
    assert reason in parsed.errors[0]


def test_a_repeated_label_name_refuses_the_series() -> None:
    request = _write(({"__name__": "up"}, [(1.0, NOW_MS)]))
    request.timeseries[0].labels.add(name="job", value="a")
    request.timeseries[0].labels.add(name="job", value="b")
    parsed = _samples(request)
    assert parsed.samples == []
    assert parsed.errors == ['timeseries[0] up{job="a",job="b"}: labels: \'job\' is repeated']


def test_staleness_markers_are_dropped_and_counted_not_errors() -> None:
    assert rw.is_stale(STALE_NAN) and not rw.is_stale(math.nan) and not rw.is_stale(1.0)
    parsed = _samples(
        _write(({"__name__": "up"}, [(1.0, NOW_MS - 2), (STALE_NAN, NOW_MS - 1)])),
    )
    assert [s.value for s in parsed.samples] == [1.0]
    assert parsed.stale == 1 and parsed.errors == []


def test_native_histograms_are_refused_with_a_reason_and_floats_beside_them_kept() -> None:
    request = _write(({"__name__": "latency"}, [(1.0, NOW_MS)]))
    request.timeseries[0].histograms.add(timestamp=NOW_MS)
    parsed = _samples(request)
    assert [s.value for s in parsed.samples] == [1.0]
    assert parsed.errors == [
        "timeseries[0] latency{}: 1 native histogram sample(s) dropped: "
        "opsline stores float samples only"
    ]


def test_metadata_and_exemplars_are_ignored() -> None:
    request = _write(({"__name__": "up"}, [(1.0, NOW_MS)]))
    request.timeseries[0].exemplars.add(value=0.5, timestamp=NOW_MS)
    request.metadata.add(metric_family_name="up", help="1 if up", type=2)
    parsed = _samples(_decode(_snappy(request)))
    assert [s.value for s in parsed.samples] == [1.0] and parsed.errors == []


def test_unknown_histogram_fields_are_skipped() -> None:
    # A native histogram's count, sum, schema and spans: fields we do not declare.
    # label __name__="h", then field 4: a histogram with fields 1, 3, 4 and the time (15)
    hist = b"\x08\x05" + b"\x19" + struct.pack("<d", 2.5) + b"\x20\x06" + b"\x78\x01"
    series = b"\x0a\x0d\x0a\x08__name__\x12\x01h" + b"\x22" + bytes([len(hist)]) + hist
    body = b"\x0a" + bytes([len(series)]) + series
    request = _decode(_snappy(body))
    assert request.timeseries[0].histograms[0].timestamp == 1


# --- normalization of the ingest.raw event -----------------------------------------------


def _event(request: WriteRequest | bytes, *, compressed: bool = True) -> CloudEvent:
    raw = request if isinstance(request, bytes) else request.SerializeToString()
    event = rw.to_event(_snappy(raw) if compressed else raw, source="prometheus/test")
    if not compressed:
        event.extensions.clear()
    return event


def test_the_event_normalizes_to_samples_errors_and_stale_counts() -> None:
    event = _event(
        _write(
            ({"__name__": "up", "job": "p"}, [(1.0, NOW_MS), (STALE_NAN, NOW_MS + 1)]),
            ({"__name__": "up", "job": "q"}, [(math.nan, NOW_MS)]),
        )
    )
    assert event.type == "io.opsline.prometheus.write"
    assert event.extensions == {"contentencoding": "snappy"}
    out = normalize(event, now_ms=NOW_MS)
    assert [(s.name, s.labels, s.value) for s in out.samples] == [("up", {"job": "p"}, 1.0)]
    assert out.stale == 1
    assert out.errors == [
        'timeseries[1] up{job="q"} @1714557600000: value: NaN and infinity are not accepted'
    ]


def test_an_uncompressed_write_request_on_kafka_is_taken_too() -> None:
    out = normalize(_event(_write(({"__name__": "up"}, [(1.0, NOW_MS)])), compressed=False))
    assert [s.value for s in out.samples] == [1.0]


def test_only_stale_markers_is_not_an_error() -> None:
    out = normalize(_event(_write(({"__name__": "up"}, [(STALE_NAN, NOW_MS)]))), now_ms=NOW_MS)
    assert out.samples == [] and out.errors == [] and out.stale == 1


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (_event(_write(({"__name__": "up"}, [(math.nan, NOW_MS)]))), "no valid sample: "),
        (
            rw.to_event(b"\x10garbage-not-snappy", source="kcat"),
            "corrupt snappy block",
        ),
        (_event(b"\x0a\xff\xff\xff\x0f\x01"), "not a remote_write WriteRequest protobuf"),
        (
            CloudEvent.create(
                type=rw.EVENT_TYPE, source="kcat", data=b"x", extensions={"contentencoding": "zstd"}
            ),
            "only snappy or none",
        ),
    ],
)
def test_unusable_events_say_why(event: CloudEvent, reason: str) -> None:
    with pytest.raises(Unusable) as info:
        normalize(event, now_ms=NOW_MS)
    assert reason in str(info.value)


# --- the gateway route -------------------------------------------------------------------


class _Unstarted:
    """The gateway's publisher before Kafka ever answered (send raises)."""

    async def publish(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("publisher not started")


@pytest.fixture
async def gateway() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(api.router)
    app.state.settings = GatewaySettings(max_body_bytes=64 * 1024)
    app.state.publisher = _Unstarted()
    app.dependency_overrides[current_caller] = lambda: Caller(1, "admin", frozenset())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        yield client


def _counter(outcome: str, code: str) -> float:
    value = get_metrics().registry.get_sample_value(
        "opsline_remote_write_requests_total", {"outcome": outcome, "code": code}
    )
    return value or 0.0


URL = "/v1/ingest/prometheus/write"


@pytest.mark.parametrize(
    ("body", "headers", "status", "detail"),
    [
        (b"\xff\x00garbage", HEADERS, 400, "corrupt snappy block"),
        (_snappy(b"\x0a\xff\xff\xff\x0f\x01"), HEADERS, 400, "not a remote_write WriteRequest"),
        (b"\x80\x80\x80\x80\x04", HEADERS, 413, "declares 1073741824 bytes"),
        (b"x" * 70_000, HEADERS, 413, "larger than 65536 bytes"),
        (_snappy(_write()), {**HEADERS, "content-encoding": "gzip"}, 415, "Content-Encoding"),
        (_snappy(_write()), {**HEADERS, "content-type": "text/plain"}, 415, "Content-Type"),
    ],
)
async def test_bad_requests_get_4xx_with_the_reason_and_are_counted(
    gateway: httpx.AsyncClient, body: bytes, headers: dict[str, str], status: int, detail: str
) -> None:
    before = _counter("rejected", str(status))
    response = await gateway.post(URL, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]
    assert _counter("rejected", str(status)) == before + 1


async def test_kafka_unavailable_is_503_so_prometheus_retries(gateway: httpx.AsyncClient) -> None:
    before = _counter("unavailable", "503")
    body = _snappy(_write(({"__name__": "up"}, [(1.0, NOW_MS)])))
    response = await gateway.post(URL, content=body, headers=HEADERS)
    assert response.status_code == 503
    assert "could not hand the samples to Kafka: publisher not started" in response.text
    assert _counter("unavailable", "503") == before + 1


async def test_an_empty_write_request_is_204_without_kafka(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post(URL, content=_snappy(_write()), headers=HEADERS)
    assert response.status_code == 204 and response.content == b""
