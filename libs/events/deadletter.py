"""Dead-lettering: the original record, untouched, plus why and where it came from."""

from __future__ import annotations

from dataclasses import dataclass

from libs.events.envelope import Headers

REASON = "dl_reason"
SOURCE_TOPIC = "dl_topic"
SOURCE_PARTITION = "dl_partition"
SOURCE_OFFSET = "dl_offset"
SERVICE = "dl_service"
PARTIAL = "dl_partial"
_MAX_REASON = 4000


@dataclass(slots=True, frozen=True)
class Rejection:
    reason: str
    partial: bool = False  # some of the message was still taken (e.g. good samples of a batch)


def deadletter_headers(
    original: Headers,
    *,
    reason: str,
    topic: str,
    partition: int,
    offset: int,
    service: str,
    partial: bool = False,
) -> Headers:
    headers = [(k, v) for k, v in original if not k.startswith("dl_")]
    headers += [
        (REASON, reason[:_MAX_REASON].encode()),
        (SOURCE_TOPIC, topic.encode()),
        (SOURCE_PARTITION, str(partition).encode()),
        (SOURCE_OFFSET, str(offset).encode()),
        (SERVICE, service.encode()),
    ]
    if partial:
        headers.append((PARTIAL, b"true"))
    return headers
