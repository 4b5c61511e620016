"""Dead-letter headers: the original headers untouched, plus why and where from."""

from __future__ import annotations

from libs.events.deadletter import (
    PARTIAL,
    REASON,
    SERVICE,
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    SOURCE_TOPIC,
    deadletter_headers,
)
from libs.events.envelope import from_kafka

ORIGINAL = [
    ("ce_specversion", b"1.0"),
    ("ce_id", b"e1"),
    ("ce_source", b"/s"),
    ("ce_type", b"io.opsline.metric.batch"),
    ("content-type", b"application/json"),
    ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
]


def test_deadletter_headers_keep_the_original_and_say_why() -> None:
    headers = deadletter_headers(
        ORIGINAL,
        reason="rejected: no valid sample",
        topic="ingest.raw",
        partition=3,
        offset=12345,
        service="dataops-ingest",
    )
    assert headers[: len(ORIGINAL)] == ORIGINAL
    assert headers[len(ORIGINAL) :] == [
        (REASON, b"rejected: no valid sample"),
        (SOURCE_TOPIC, b"ingest.raw"),
        (SOURCE_PARTITION, b"3"),
        (SOURCE_OFFSET, b"12345"),
        (SERVICE, b"dataops-ingest"),
    ]
    assert [REASON, SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET, SERVICE, PARTIAL] == [
        "dl_reason",
        "dl_topic",
        "dl_partition",
        "dl_offset",
        "dl_service",
        "dl_partial",
    ]
    # the dead-lettered record is still the same CloudEvent
    assert from_kafka(b"{}", headers) == from_kafka(b"{}", ORIGINAL)
    assert ORIGINAL[-1][0] == "traceparent"  # the input list itself is not modified
    assert len(ORIGINAL) == 6


def test_partial_rejections_are_flagged() -> None:
    headers = deadletter_headers(
        ORIGINAL,
        reason="partially rejected",
        topic="t",
        partition=0,
        offset=0,
        service="svc",
        partial=True,
    )
    assert headers[-1] == (PARTIAL, b"true")
    plain = deadletter_headers(
        ORIGINAL, reason="r", topic="t", partition=0, offset=0, service="svc"
    )
    assert PARTIAL not in dict(plain)


def test_redead_lettering_replaces_the_previous_dl_headers() -> None:
    first = deadletter_headers(
        ORIGINAL,
        reason="first",
        topic="ingest.raw",
        partition=1,
        offset=7,
        service="a",
        partial=True,
    )
    second = deadletter_headers(
        first, reason="second", topic="deadletter", partition=0, offset=99, service="b"
    )
    values = [(k, v) for k, v in second if k.startswith("dl_")]
    assert values == [
        (REASON, b"second"),
        (SOURCE_TOPIC, b"deadletter"),
        (SOURCE_PARTITION, b"0"),
        (SOURCE_OFFSET, b"99"),
        (SERVICE, b"b"),
    ]
    assert [h for h in second if not h[0].startswith("dl_")] == ORIGINAL


def test_long_reasons_are_cut_to_4000_characters() -> None:
    headers = deadletter_headers(
        [], reason="é" * 5000, topic="t", partition=0, offset=0, service="s"
    )
    reason = dict(headers)[REASON].decode()
    assert reason == "é" * 4000
