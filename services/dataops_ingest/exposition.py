"""The Prometheus text exposition format (0.0.4, and OpenMetrics' compatible subset).

A page that breaks the format fails as a whole, as it does for Prometheus: a half-read
page would make series vanish and come back at random.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped", "unknown", "info", "stateset"}
_SPECIAL = {"+inf": math.inf, "inf": math.inf, "-inf": -math.inf, "nan": math.nan}
_UNESCAPE = re.compile(r"\\(.)")
# What a target may answer with; anything else (an HTML page, JSON) is not an exposition.
ACCEPTED_TYPES = ("text/plain", "application/openmetrics-text", "application/octet-stream", "")


class ParseError(ValueError):
    """The page is not in the exposition format; the text says where."""


@dataclass(slots=True)
class RawSample:
    name: str
    labels: dict[str, str]
    value: float
    ts_ms: int | None


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return _UNESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def _value(text: str, line_no: int) -> float:
    try:
        return float(text)
    except ValueError:
        special = _SPECIAL.get(text.lower())
        if special is None:
            raise ParseError(f"line {line_no}: {text[:40]!r} is not a number") from None
        return special


def _labels(text: str, line_no: int) -> dict[str, str]:
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        m = _LABEL.match(text, pos)
        if m is None:
            raise ParseError(f"line {line_no}: malformed label at {text[pos : pos + 40]!r}")
        name = m.group(1)
        if name in labels:
            raise ParseError(f"line {line_no}: label {name!r} appears twice")
        labels[name] = _unescape(m.group(2))
        pos = m.end()
    return labels


def _close_brace(line: str, start: int) -> int:
    """The position of the `}` that closes the label set (braces in values don't count)."""
    quoted = escaped = False
    for pos in range(start, len(line)):
        ch = line[pos]
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "}" and not quoted:
            return pos
    return -1


def _sample(line: str, line_no: int) -> RawSample:
    m = _NAME.match(line)
    if m is None:
        raise ParseError(f"line {line_no}: not a sample or a comment: {line[:60]!r}")
    name, rest = m.group(0), line[m.end() :]
    labels: dict[str, str] = {}
    if rest.startswith("{"):
        end = _close_brace(rest, 1)
        if end < 0:
            raise ParseError(f"line {line_no}: unclosed label set")
        labels = _labels(rest[1:end], line_no)
        rest = rest[end + 1 :]
    elif rest and not rest[0].isspace():
        raise ParseError(f"line {line_no}: not a sample or a comment: {line[:60]!r}")
    fields = rest.split()
    if not fields or len(fields) > 2:
        raise ParseError(f"line {line_no}: expected a value and an optional timestamp")
    ts_ms = None
    if len(fields) == 2:
        try:
            ts = float(fields[1])
        except ValueError:
            raise ParseError(f"line {line_no}: {fields[1][:40]!r} is not a timestamp") from None
        # OpenMetrics timestamps are seconds (with a fraction); 0.0.4 ones are milliseconds.
        ts_ms = int(ts * 1000) if "." in fields[1] or ts < 1e11 else int(ts)
    return RawSample(name, labels, _value(fields[0], line_no), ts_ms)


def _comment(line: str, line_no: int, types: dict[str, str]) -> None:
    parts = line.split(None, 3)
    if len(parts) >= 2 and parts[1] == "TYPE":
        if len(parts) < 4 or parts[3].strip().lower() not in _TYPES:
            raise ParseError(f"line {line_no}: malformed TYPE line")
        if not _NAME.fullmatch(parts[2]):
            raise ParseError(f"line {line_no}: {parts[2][:60]!r} is not a metric name")
        types[parts[2]] = parts[3].strip().lower()


def parse(text: str) -> list[RawSample]:
    """Every sample of a page, in page order; ParseError on the first malformed line."""
    samples: list[RawSample] = []
    types: dict[str, str] = {}
    for line_no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line[0] == "#":
            _comment(line, line_no, types)
            continue
        samples.append(_sample(line, line_no))
    return samples


def check_content_type(content_type: str) -> None:
    """ParseError unless the media type can carry an exposition."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in ACCEPTED_TYPES:
        raise ParseError(
            f"not Prometheus text format: the target answered {media!r} "
            "(expected text/plain or application/openmetrics-text)"
        )
