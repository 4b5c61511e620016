"""Each builder on real inputs: directories, a git repository, Helm charts, image references."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from google.protobuf.json_format import ParseDict

from libs.objectstore import LocalStore
from libs.schemas.opsline.v1 import catalog_pb2
from services.build.artifacts import ArtifactStore
from services.build.builders import (
    MAX_LOG_LINES,
    BuildContext,
    BuildError,
    HelmBuilder,
    ImageBuilder,
    ProcessBuilder,
    StepLog,
    image_repository,
)
from tests.build.conftest import make_chart, make_source
from tests.build.test_packing import git_repo

DIGEST = "sha256:" + "ab" * 32


class Steps:
    """Collects what a builder reports, as the runner would turn into build.step events."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, list[str]]] = []

    async def __call__(self, component: str, step: str, status: str, log: list[str]) -> None:
        self.events.append((component, step, status, log))

    def statuses(self) -> list[str]:
        return [f"{c}/{s}:{st}" for c, s, st, _ in self.events]


def component(name: str, type: str, source: dict[str, Any], **build: str) -> Any:
    spec = {"name": name, "type": type, "source": source, "build": build}
    return ParseDict(spec, catalog_pb2.ComponentSpec())


@pytest.fixture
def ctx(tmp_path: Path, store: ArtifactStore) -> BuildContext:
    (tmp_path / "work").mkdir()
    return BuildContext(
        build_id="b-1",
        app="shop",
        version="1.0.0",
        workdir=tmp_path / "work",
        store=store,
        emit=Steps(),
    )


def _stored(artifact: dict[str, Any]) -> bytes:
    data = Path(urlparse(artifact["uri"]).path).read_bytes()
    assert artifact["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
    assert artifact["size"] == len(data)
    return data


async def test_process_packs_the_directory_into_the_store(
    tmp_path: Path, ctx: BuildContext
) -> None:
    src = make_source(tmp_path)
    spec = component("web", "process", {"dir": str(src)}, exclude="logs")
    [artifact] = await ProcessBuilder().build(spec, ctx)
    assert artifact["component"] == "web" and artifact["kind"] == "tar.gz"
    _stored(artifact)
    hexdigest = artifact["digest"].removeprefix("sha256:")
    assert artifact["uri"].endswith(f"/artifacts/sha256/{hexdigest[:2]}/{hexdigest}.tar.gz")
    steps = ctx.emit  # type: ignore[assignment]
    assert isinstance(steps, Steps)
    assert steps.statuses() == ["web/pack:running", "web/pack:succeeded"]
    log = steps.events[-1][3]
    assert "+ app/main.py (15 B)" in log
    assert f"packed 3 files, {artifact['size']} B, {artifact['digest']}" in log
    # The same tree again (another build): the same artifact, stored once.
    [again] = await ProcessBuilder().build(spec, ctx)
    assert again == artifact


async def test_process_from_git(tmp_path: Path, ctx: BuildContext) -> None:
    repo = git_repo(tmp_path, make_source(tmp_path))
    spec = component("web", "process", {"git": {"url": repo.as_uri(), "ref": "main"}})
    [artifact] = await ProcessBuilder().build(spec, ctx)
    assert b"app/main.py" in _gunzip(_stored(artifact))


def _gunzip(data: bytes) -> bytes:
    import gzip

    return gzip.decompress(data)


async def test_missing_directory_fails_with_the_path(tmp_path: Path, ctx: BuildContext) -> None:
    spec = component("web", "process", {"dir": "/x/y"})
    with pytest.raises(BuildError) as err:
        await ProcessBuilder().build(spec, ctx)
    assert err.value.reason == "component web: source directory /x/y does not exist"
    steps = ctx.emit
    assert isinstance(steps, Steps)
    assert steps.statuses() == ["web/pack:running", "web/pack:failed"]
    assert steps.events[-1][3] == [err.value.reason]


async def test_helm_chart_is_linted_and_packaged(tmp_path: Path, ctx: BuildContext) -> None:
    chart = make_chart(tmp_path / "charts")
    [artifact] = await HelmBuilder().build(component("web", "helm", {"chart": str(chart)}), ctx)
    assert artifact["kind"] == "helm-chart" and artifact["uri"].endswith(".tgz")
    data = _stored(artifact)
    steps = ctx.emit
    assert isinstance(steps, Steps)
    assert steps.statuses() == [
        "web/lint:running",
        "web/lint:succeeded",
        "web/package:running",
        "web/package:succeeded",
    ]
    assert "[INFO] Chart.yaml: icon is recommended" in steps.events[1][3]
    assert steps.events[3][3][0] == f"packaged web-0.3.0.tgz, {len(data)} B"
    # Helm archives carry mtimes; staged at mtime 0, a fresh checkout packages the same.
    for path in chart.rglob("*"):
        path.touch()
    [again] = await HelmBuilder().build(component("web", "helm", {"chart": str(chart)}), ctx)
    assert again["digest"] == artifact["digest"]


async def test_helm_lint_failure_fails_with_the_messages(tmp_path: Path, ctx: BuildContext) -> None:
    chart = make_chart(tmp_path / "charts", broken=True)
    with pytest.raises(BuildError) as err:
        await HelmBuilder().build(component("web", "helm", {"chart": str(chart)}), ctx)
    assert err.value.reason.startswith("component web: helm lint failed: ")
    assert 'function "nosuchfunction" not defined' in err.value.reason
    steps = ctx.emit
    assert isinstance(steps, Steps)
    assert steps.statuses() == ["web/lint:running", "web/lint:failed"]
    log = steps.events[-1][3]
    assert any(line.startswith("[ERROR] templates/:") for line in log)
    assert log[-1] == err.value.reason


async def test_helm_chart_directory_must_exist(tmp_path: Path, ctx: BuildContext) -> None:
    spec = component("web", "helm", {"chart": str(tmp_path / "nope")})
    with pytest.raises(BuildError) as err:
        await HelmBuilder().build(spec, ctx)
    assert err.value.reason == f"component web: chart directory {tmp_path / 'nope'} does not exist"


async def test_image_pinned_by_digest_is_the_artifact(ctx: BuildContext) -> None:
    ref = f"registry.example.com:5000/shop/web@{DIGEST}"
    [artifact] = await ImageBuilder().build(component("web", "microservice", {"image": ref}), ctx)
    assert artifact == {
        "component": "web",
        "kind": "image",
        "uri": ref,
        "digest": DIGEST,
        "size": 0,
    }


async def test_image_without_digest_fails_clearly(ctx: BuildContext) -> None:
    with pytest.raises(BuildError) as err:
        await ImageBuilder().build(component("web", "job", {"image": "shop/web:1.0"}), ctx)
    assert err.value.reason == (
        "component web: image shop/web:1.0 has no digest; pin it as shop/web@sha256:… — "
        "opsline cannot reach a registry to resolve tags here"
    )


async def test_image_build_without_a_cluster_fails_clearly(ctx: BuildContext) -> None:
    spec = component("web", "microservice", {"dir": "/src/web"})
    with pytest.raises(BuildError) as err:
        await ImageBuilder(None).build(spec, ctx)
    assert err.value.reason == (
        "component web needs an image build, and no image builder is configured "
        "(set OPSLINE_BUILD_KUBECONFIG to a cluster where kaniko Jobs can run)"
    )
    steps = ctx.emit
    assert isinstance(steps, Steps)
    assert steps.statuses() == ["web/image:running", "web/image:failed"]


@pytest.mark.parametrize(
    ("ref", "repo"),
    [
        ("shop/web:1.0", "shop/web"),
        ("localhost:5000/shop/web:1.0", "localhost:5000/shop/web"),
        ("localhost:5000/shop/web", "localhost:5000/shop/web"),
        (f"web:1@{DIGEST}", "web"),
    ],
)
def test_image_repository(ref: str, repo: str) -> None:
    assert image_repository(ref) == repo


def test_step_log_keeps_the_last_lines() -> None:
    log = StepLog()
    for i in range(MAX_LOG_LINES + 50):
        log(f"line {i}")
    assert len(log.lines) == MAX_LOG_LINES
    assert log.lines[0] == "… 51 earlier lines not kept"
    assert log.lines[-1] == f"line {MAX_LOG_LINES + 49}"


async def test_a_store_that_cannot_write_fails_the_build_clearly(
    tmp_path: Path, ctx: BuildContext
) -> None:
    (tmp_path / "not-a-dir").write_text("")
    ctx.store = ArtifactStore(LocalStore(tmp_path / "not-a-dir" / "artifacts"))
    spec = component("web", "process", {"dir": str(make_source(tmp_path))})
    with pytest.raises(BuildError) as err:
        await ProcessBuilder().build(spec, ctx)
    assert err.value.reason.startswith("component web: cannot store the artifact: put file://")
