"""Decode and check build.commands payloads; an `Invalid` says why, in words a user can act on."""

from __future__ import annotations

import os
from typing import Any

from google.protobuf.json_format import ParseDict, ParseError

from libs.events.envelope import CloudEvent, EnvelopeError
from libs.schemas.opsline.v1 import build_pb2, catalog_pb2

REQUESTED = "io.opsline.build.requested"
CANCEL_REQUESTED = "io.opsline.build.cancel_requested"

# Which sources each component type can be built from.
SOURCES: dict[str, tuple[str, ...]] = {
    "process": ("dir", "git"),
    "helm": ("chart", "dir"),
    "microservice": ("image", "dir", "git"),
    "job": ("image", "dir", "git"),
}
MAX_ID = 100


class Invalid(ValueError):
    """A payload that cannot be built; build_id/app are set when they could still be read."""

    def __init__(
        self,
        reason: str,
        *,
        build_id: str = "",
        app: str = "",
        version: str = "",
        component: str = "",
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.build_id = build_id
        self.app = app
        self.version = version
        self.component = component


def parse_requested(event: CloudEvent, key: bytes | None = None) -> build_pb2.BuildRequested:
    """The BuildRequested of an event, checked; raises Invalid."""
    data = _data(event)
    # What we can still tell the requester about, should the payload be unusable.
    ids = {
        "build_id": _text(data.get("build_id")) or event.subject or "",
        "app": _text(data.get("app")) or _decode(key),
        "version": _text(data.get("version")),
    }
    if len(ids["build_id"]) > MAX_ID:
        ids["build_id"] = ""
    try:
        request = ParseDict(data, build_pb2.BuildRequested(), ignore_unknown_fields=False)
    except ParseError as exc:
        raise Invalid(f"invalid build.requested: {exc}", **ids) from None
    if not request.build_id:
        raise Invalid("invalid build.requested: no build_id", **ids)
    if len(request.build_id) > MAX_ID:
        raise Invalid(f"invalid build.requested: build_id is longer than {MAX_ID} characters")
    if not request.app:
        raise Invalid("invalid build.requested: no app", **ids)
    if not request.components:
        raise Invalid(f"build {request.build_id} of app {request.app} has no components", **ids)
    seen: set[str] = set()
    for index, component in enumerate(request.components):
        try:
            check_component(component, index=index, seen=seen)
        except Invalid as exc:
            raise Invalid(exc.reason, component=component.name, **ids) from None
    return request


def check_component(
    component: catalog_pb2.ComponentSpec, *, index: int = 0, seen: set[str] | None = None
) -> None:
    name = component.name
    if not name:
        raise Invalid(f"components[{index}] has no name")
    if seen is not None:
        if name in seen:
            raise Invalid(f"component {name} appears twice")
        seen.add(name)
    allowed = SOURCES.get(component.type)
    if allowed is None:
        kinds = ", ".join(sorted(SOURCES))
        raise Invalid(f"component {name}: unknown type {component.type!r} (expected {kinds})")
    kind = component.source.WhichOneof("kind")
    if kind is None:
        raise Invalid(f"component {name}: no source (a {component.type} needs {_or(allowed)})")
    if kind not in allowed:
        raise Invalid(
            f"component {name}: a {component.type} component is built from {_or(allowed)}, "
            f"not source.{kind}"
        )
    if kind in ("dir", "chart"):
        path = getattr(component.source, kind)
        if not os.path.isabs(path):
            raise Invalid(f"component {name}: source.{kind} must be an absolute path, got {path!r}")
    if kind == "git" and not component.source.git.url:
        raise Invalid(f"component {name}: source.git has no url")
    if kind == "image" and not component.source.image.strip():
        raise Invalid(f"component {name}: source.image is empty")


def parse_cancel(event: CloudEvent) -> build_pb2.BuildCancelRequested:
    data = _data(event)
    try:
        cancel = ParseDict(data, build_pb2.BuildCancelRequested(), ignore_unknown_fields=False)
    except ParseError as exc:
        raise Invalid(f"invalid build.cancel_requested: {exc}") from None
    if not cancel.build_id:
        raise Invalid("invalid build.cancel_requested: no build_id")
    return cancel


def _data(event: CloudEvent) -> dict[str, Any]:
    what = event.type.removeprefix("io.opsline.")
    try:
        data = event.json()
    except EnvelopeError as exc:
        raise Invalid(f"invalid {what}: {exc}", build_id=event.subject or "") from None
    if not isinstance(data, dict):
        raise Invalid(f"invalid {what}: data is not a JSON object", build_id=event.subject or "")
    return data


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _decode(key: bytes | None) -> str:
    try:
        return key.decode() if key else ""
    except UnicodeDecodeError:
        return ""


def _or(kinds: tuple[str, ...]) -> str:
    names = [f"source.{k}" for k in kinds]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
