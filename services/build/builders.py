"""Builders, one per component type: turn a ComponentSpec into artifacts, step by step."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from libs.schemas.opsline.v1 import catalog_pb2
from services.build import packing
from services.build.artifacts import ArtifactStore, ObjectStoreError

MAX_LOG_LINES = 200
IMAGE_DIGEST = re.compile(r"^(?P<repo>[^@\s]+)@sha256:(?P<hex>[0-9a-f]{64})$")


class BuildError(Exception):
    """A component cannot be built; `reason` is what the user is told."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StepLog:
    """A step's log lines, capped: the last MAX_LOG_LINES are kept, and how many were dropped."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self.dropped = 0

    def __call__(self, line: str) -> None:
        self._lines.append(line[:2000])
        if len(self._lines) > MAX_LOG_LINES - 1:
            del self._lines[0]
            self.dropped += 1

    @property
    def lines(self) -> list[str]:
        head = [f"… {self.dropped} earlier lines not kept"] if self.dropped else []
        return head + self._lines


# Called with (component, step, status, log lines); the runner writes a build.step event.
StepEmitter = Callable[[str, str, str, list[str]], Awaitable[None]]


@dataclass
class BuildContext:
    """What a builder may use: a scratch directory, the store, step reporting, the abort flag."""

    build_id: str
    app: str
    version: str
    workdir: Path
    store: ArtifactStore
    emit: StepEmitter
    abort: threading.Event = field(default_factory=threading.Event)
    interrupted: Callable[[], str | None] = lambda: None

    @contextlib.asynccontextmanager
    async def step(self, component: str, name: str) -> AsyncIterator[StepLog]:
        """A build.step running event now; succeeded or failed (with the log) when it ends."""
        log = StepLog()
        await self.emit(component, name, "running", [])
        try:
            yield log
        except BuildError as exc:
            log(exc.reason)
            await self.emit(component, name, "failed", log.lines)
            raise
        except (asyncio.CancelledError, packing.Aborted):
            log(f"stopped: {self.interrupted() or 'interrupted'}")
            await self.emit(component, name, "failed", log.lines)
            raise
        except Exception as exc:
            log(f"internal error: {type(exc).__name__}: {exc}")
            await self.emit(component, name, "failed", log.lines)
            raise
        await self.emit(component, name, "succeeded", log.lines)

    async def put(self, component: str, kind: str, path: Path) -> dict[str, Any]:
        try:
            uri, digest, size = await self.store.put(component, kind, path)
        except ObjectStoreError as exc:
            raise BuildError(f"component {component}: cannot store the artifact: {exc}") from None
        return {"component": component, "kind": kind, "uri": uri, "digest": digest, "size": size}

    def scratch(self, component: str) -> Path:
        path = self.workdir / component
        path.mkdir(parents=True, exist_ok=True)
        return path


class Builder(Protocol):
    async def build(
        self, component: catalog_pb2.ComponentSpec, ctx: BuildContext
    ) -> list[dict[str, Any]]:
        """Build one component; returns its artifacts (dicts of the Artifact message's fields)."""
        ...


async def fetch_source(
    component: catalog_pb2.ComponentSpec, ctx: BuildContext, log: StepLog, *, kind: str = "dir"
) -> Path:
    """The directory to build from: source.<kind> as it is, or a shallow clone of source.git."""
    source = component.source
    if source.WhichOneof("kind") == "git":
        target = ctx.scratch(component.name) / "src"
        try:
            await packing.git_clone(source.git.url, source.git.ref, target, log=log)
        except packing.PackError as exc:
            raise BuildError(f"component {component.name}: {exc}") from None
        return target
    path = Path(getattr(source, source.WhichOneof("kind") or kind))
    _check_dir(component.name, path, "chart directory" if kind == "chart" else "source directory")
    return path


def _check_dir(component: str, path: Path, what: str) -> None:
    if not path.exists():
        raise BuildError(f"component {component}: {what} {path} does not exist")
    if not path.is_dir():
        raise BuildError(f"component {component}: {what} {path} is not a directory")


class ProcessBuilder:
    """A process component: its source tree as a reproducible tar.gz."""

    async def build(
        self, component: catalog_pb2.ComponentSpec, ctx: BuildContext
    ) -> list[dict[str, Any]]:
        name = component.name
        async with ctx.step(name, "pack") as log:
            root = await fetch_source(component, ctx, log)
            excludes = packing.parse_excludes(component.build.get("exclude"))
            target = ctx.scratch(name) / f"{name}.tar.gz"
            listed = 0

            def on_file(rel: str, size: int) -> None:
                nonlocal listed
                listed += 1
                if listed <= MAX_LOG_LINES // 2:
                    log(f"+ {rel} ({packing.human_size(size)})")

            try:
                packed = await asyncio.to_thread(
                    packing.pack_dir,
                    root,
                    target,
                    excludes=excludes,
                    abort=ctx.abort,
                    on_file=on_file,
                )
            except packing.PackError as exc:
                raise BuildError(f"component {name}: {exc}") from None
            except OSError as exc:  # an unreadable file, a full disk
                raise BuildError(f"component {name}: cannot pack {root}: {exc}") from None
            if packed.files > listed:
                log(f"… and {packed.files - listed} more files")
            artifact = await ctx.put(name, "tar.gz", packed.path)
            log(
                f"packed {packed.files} files, {packing.human_size(packed.size)}, "
                f"{artifact['digest']}"
            )
            log(f"stored {artifact['uri']}")
        return [artifact]


class HelmBuilder:
    """A helm component: lint the chart, then package it (the Helm SDK, no helm binary)."""

    async def build(
        self, component: catalog_pb2.ComponentSpec, ctx: BuildContext
    ) -> list[dict[str, Any]]:
        name = component.name
        try:
            import helm_python as helm
        except ImportError:
            raise BuildError(
                f"component {name}: helm charts need the helm-python-sdk package, "
                "which is not installed"
            ) from None
        async with ctx.step(name, "lint") as log:
            chart_dir = await fetch_source(component, ctx, log, kind="chart")
            values = None
            if component.build.get("values"):
                values = helm.values_from_yaml(component.build["values"])
            report = await asyncio.to_thread(
                helm.lint,
                str(chart_dir),
                values,
                strict=component.build.get("strict", "").lower() == "true" or None,
                kube_version=component.build.get("kube_version") or None,
            )
            problems = _lint_lines(report, log)
            if problems:
                raise BuildError(f"component {name}: helm lint failed: " + "; ".join(problems))
            log(f"lint passed ({report.get('total_charts_linted', 0)} chart(s))")
        async with ctx.step(name, "package") as log:
            staged = ctx.scratch(name) / "chart" / chart_dir.name
            out = ctx.scratch(name) / "package"
            await asyncio.to_thread(_stage_chart, chart_dir, staged)
            out.mkdir(parents=True, exist_ok=True)
            try:
                archive = Path(await asyncio.to_thread(helm.package, str(staged), destination=out))
            except helm.HelmError as exc:
                raise BuildError(f"component {name}: helm package failed: {exc}") from None
            artifact = await ctx.put(name, "helm-chart", archive)
            log(f"packaged {archive.name}, {packing.human_size(artifact['size'])}")
            log(f"{artifact['digest']} stored as {artifact['uri']}")
        return [artifact]


def _lint_lines(report: dict[str, Any], log: StepLog) -> list[str]:
    """Log every lint message; return the ones that fail the build."""
    severities = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}
    for message in report.get("messages", []):
        level = severities.get(int(message.get("severity", 0)), "UNKNOWN")
        log(f"[{level}] {message.get('path', '')}: {message.get('error', '')}")
    errors = [str(e) for e in report.get("errors", [])]
    for error in errors:
        if not any(error == m.get("error") for m in report.get("messages", [])):
            log(f"[ERROR] {error}")
    return errors


def _stage_chart(source: Path, target: Path) -> None:
    """Copy the chart with every mtime at 0: Helm archives carry mtimes, a checkout's vary."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, symlinks=False, ignore=shutil.ignore_patterns(".git"))
    for dirpath, dirnames, filenames in os.walk(target):
        for entry in [*dirnames, *filenames]:
            os.utime(Path(dirpath) / entry, (0, 0))
    os.utime(target, (0, 0))


class ImageBuilder:
    """microservice / job: a prebuilt image pinned by digest, or an image build in a cluster."""

    def __init__(self, image_builder: Builder | None = None) -> None:
        self.image_builder = image_builder

    async def build(
        self, component: catalog_pb2.ComponentSpec, ctx: BuildContext
    ) -> list[dict[str, Any]]:
        name = component.name
        if component.source.WhichOneof("kind") != "image":
            if self.image_builder is None:
                reason = (
                    f"component {name} needs an image build, and no image builder is configured "
                    "(set OPSLINE_BUILD_KUBECONFIG to a cluster where kaniko Jobs can run)"
                )
                async with ctx.step(name, "image"):
                    raise BuildError(reason)
            assert self.image_builder is not None
            return await self.image_builder.build(component, ctx)
        async with ctx.step(name, "image") as log:
            ref = component.source.image.strip()
            match = IMAGE_DIGEST.match(ref)
            if match is None:
                raise BuildError(
                    f"component {name}: image {ref} has no digest; pin it as "
                    f"{image_repository(ref)}@sha256:… — opsline cannot reach a registry "
                    "to resolve tags here"
                )
            log(f"image {ref} is pinned by digest; nothing to build")
            digest = f"sha256:{match['hex']}"
        return [{"component": name, "kind": "image", "uri": ref, "digest": digest, "size": 0}]


def image_repository(ref: str) -> str:
    """The reference without tag or digest (registry:5000/shop/web:1.0 → registry:5000/shop/web)."""
    ref = ref.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    return ref[:colon] if colon > slash else ref


def default_builders(image_builder: Builder | None = None) -> dict[str, Builder]:
    images = ImageBuilder(image_builder)
    return {
        "process": ProcessBuilder(),
        "helm": HelmBuilder(),
        "microservice": images,
        "job": images,
    }
