"""CloudEvents 1.0 envelope: Kafka binary mode, HTTP structured, batch and binary modes."""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

SPECVERSION = "1.0"
REQUIRED = ("id", "source", "specversion", "type")
OPTIONAL = ("datacontenttype", "dataschema", "subject", "time")
_ATTR_NAME = re.compile(r"^[a-z0-9]{1,20}$")
_MAX_ATTR_LEN = 2048
JSON = "application/json"
PROTOBUF = "application/protobuf"


class EnvelopeError(ValueError):
    """The message is not a valid CloudEvent; the text says which attribute and why."""


@dataclass(slots=True)
class CloudEvent:
    id: str
    source: str
    type: str
    data: bytes = b""
    datacontenttype: str | None = None
    subject: str | None = None
    time: str | None = None
    dataschema: str | None = None
    extensions: dict[str, str] = field(default_factory=dict)
    specversion: str = SPECVERSION

    @classmethod
    def create(
        cls,
        *,
        type: str,
        source: str,
        data: Any = None,
        subject: str | None = None,
        datacontenttype: str | None = None,
        id: str | None = None,
        time: str | None = None,
        extensions: dict[str, str] | None = None,
    ) -> CloudEvent:
        """Build a new event; dict/list data is JSON-encoded, bytes are kept as they are."""
        if isinstance(data, bytes | bytearray):
            raw = bytes(data)
        elif data is None:
            raw = b""
        else:
            raw = orjson.dumps(data)
            datacontenttype = datacontenttype or JSON
        return cls(
            id=id or str(uuid.uuid4()),
            source=source,
            type=type,
            data=raw,
            datacontenttype=datacontenttype,
            subject=subject,
            time=time or now_rfc3339(),
            extensions=dict(extensions or {}),
        )

    def json(self) -> Any:
        """The data decoded as JSON (raises EnvelopeError when it is not JSON)."""
        try:
            return orjson.loads(self.data)
        except orjson.JSONDecodeError as exc:
            raise EnvelopeError(f"data is not valid JSON: {exc}") from None

    def is_json(self) -> bool:
        ct = (self.datacontenttype or JSON).split(";")[0].strip().lower()
        return ct == JSON or ct.endswith("+json") or ct == "text/json"

    def attributes(self) -> dict[str, str]:
        out = {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "type": self.type,
        }
        for name in OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out.update(self.extensions)
        return out


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 timestamp; a missing offset is an error, as the RFC says."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, AttributeError):
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"RFC 3339 timestamp has no UTC offset: {value!r}")
    return parsed


def _check(attrs: dict[str, Any]) -> None:
    for name in REQUIRED:
        value = attrs.get(name)
        if value is None or value == "":
            raise EnvelopeError(f"missing required CloudEvents attribute '{name}'")
        if not isinstance(value, str):
            raise EnvelopeError(f"attribute '{name}' must be a string")
    if attrs["specversion"] != SPECVERSION:
        raise EnvelopeError(
            f"unsupported specversion {attrs['specversion']!r}: only '{SPECVERSION}' is accepted"
        )
    for name, value in attrs.items():
        if not _ATTR_NAME.match(name):
            raise EnvelopeError(
                f"invalid attribute name {name!r}: CloudEvents names are 1-20 "
                "lower-case letters or digits"
            )
        if not isinstance(value, str | int | bool):
            raise EnvelopeError(f"attribute '{name}' must be a string, integer or boolean")
        if isinstance(value, str) and len(value) > _MAX_ATTR_LEN:
            raise EnvelopeError(f"attribute '{name}' is longer than {_MAX_ATTR_LEN} characters")
    if attrs.get("time") is not None:
        try:
            parse_rfc3339(str(attrs["time"]))
        except ValueError as exc:
            raise EnvelopeError(f"attribute 'time': {exc}") from None


def _from_attrs(attrs: dict[str, Any], data: bytes) -> CloudEvent:
    _check(attrs)
    ext = {k: str(v) for k, v in attrs.items() if k not in REQUIRED and k not in OPTIONAL}
    return CloudEvent(
        id=attrs["id"],
        source=attrs["source"],
        type=attrs["type"],
        specversion=attrs["specversion"],
        data=data,
        datacontenttype=attrs.get("datacontenttype"),
        subject=attrs.get("subject"),
        time=attrs.get("time"),
        dataschema=attrs.get("dataschema"),
        extensions=ext,
    )


# --- Kafka binary content mode -------------------------------------------------------

Headers = list[tuple[str, bytes]]


def to_kafka(
    event: CloudEvent, *, extra: Headers | None = None
) -> tuple[bytes | None, bytes, Headers]:
    """Key, value and headers for a Kafka record (binary content mode)."""
    headers: Headers = []
    for name, value in event.attributes().items():
        if name == "datacontenttype":
            headers.append(("content-type", value.encode()))
        else:
            headers.append((f"ce_{name}", value.encode()))
    if extra:
        headers.extend(extra)
    key = event.extensions.get("partitionkey")
    return (key.encode() if key else None), event.data, headers


def from_kafka(value: bytes | None, headers: Headers) -> CloudEvent:
    """Decode a Kafka record in binary content mode; raises EnvelopeError."""
    attrs: dict[str, Any] = {}
    if not any(name.startswith("ce_") for name, _ in headers):
        raise EnvelopeError("no ce_* headers: not a CloudEvent in Kafka binary content mode")
    for name, raw in headers:
        if name.startswith("ce_"):
            try:
                attrs[name[3:]] = raw.decode("utf-8") if raw is not None else ""
            except UnicodeDecodeError:
                raise EnvelopeError(f"header '{name}' is not UTF-8") from None
        elif name.lower() == "content-type" and raw:
            try:
                attrs["datacontenttype"] = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise EnvelopeError("header 'content-type' is not UTF-8") from None
    return _from_attrs(attrs, value or b"")


def header(headers: Headers, name: str) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


# --- HTTP ------------------------------------------------------------------------------


def from_structured(obj: Any) -> CloudEvent:
    """One event in structured JSON mode (a parsed JSON object)."""
    if not isinstance(obj, dict):
        raise EnvelopeError("a structured CloudEvent must be a JSON object")
    attrs = {k: v for k, v in obj.items() if k not in ("data", "data_base64")}
    if "data" in obj and "data_base64" in obj:
        raise EnvelopeError("an event may carry 'data' or 'data_base64', not both")
    if "data_base64" in obj:
        try:
            data = base64.b64decode(obj["data_base64"], validate=True)
        except (ValueError, TypeError):
            raise EnvelopeError("'data_base64' is not valid base64") from None
    elif "data" in obj:
        raw = obj["data"]
        ct = str(attrs.get("datacontenttype") or JSON)
        if isinstance(raw, str) and not _is_json_type(ct):
            data = raw.encode()
        else:
            data = orjson.dumps(raw)
            attrs.setdefault("datacontenttype", JSON)
    else:
        data = b""
    return _from_attrs(attrs, data)


def _is_json_type(ct: str) -> bool:
    base = ct.split(";")[0].strip().lower()
    return base == JSON or base.endswith("+json") or base == "text/json"


def from_binary_http(headers: dict[str, str], body: bytes) -> CloudEvent:
    """One event in HTTP binary mode: ce-* headers, the body is the data."""
    attrs: dict[str, Any] = {}
    for name, value in headers.items():
        lname = name.lower()
        if lname.startswith("ce-"):
            attrs[lname[3:]] = value
    if not attrs:
        raise EnvelopeError("no ce-* headers: not a CloudEvent in HTTP binary mode")
    ct = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
    if ct:
        attrs["datacontenttype"] = ct
    return _from_attrs(attrs, body)


def to_structured(event: CloudEvent) -> dict[str, Any]:
    out: dict[str, Any] = dict(event.attributes())
    if event.data:
        if event.is_json():
            try:
                out["data"] = orjson.loads(event.data)
                return out
            except orjson.JSONDecodeError:
                pass
        out["data_base64"] = base64.b64encode(event.data).decode()
    return out
