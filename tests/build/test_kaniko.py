"""The kaniko Job the image builder would create (no cluster here: the manifest only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.build.builders import BuildContext, BuildError
from services.build.kaniko import KanikoBuilder, git_context, job_name, render_job
from tests.build.test_builders import component


def builder(registry: str | None = "registry.example.com/opsline") -> KanikoBuilder:
    return KanikoBuilder(
        kubeconfig="/nonexistent/kubeconfig",
        builder_image="gcr.io/kaniko-project/executor:v1.23.2",
        namespace="builds",
        registry=registry,
        deadline_s=900,
    )


@pytest.fixture
def ctx(tmp_path: Path) -> BuildContext:
    async def emit(*_: Any) -> None:
        pass

    return BuildContext(
        build_id="8c1f2c4e-4a59-4d0c-9d7f-0f3c2b1a9e77",
        app="shop",
        version="1.2.0",
        workdir=tmp_path,
        store=None,  # type: ignore[arg-type]
        emit=emit,
    )


def test_the_job_builds_from_git_and_pushes(ctx: BuildContext) -> None:
    spec = component(
        "Web_UI",
        "microservice",
        {"git": {"url": "https://git.example.com/shop/web.git", "ref": "main"}},
        dockerfile="docker/Dockerfile",
        context="web",
    )
    job = builder().manifest(spec, ctx)
    name = job_name(ctx.build_id, "Web_UI")
    assert name.startswith("opsline-build-web-ui-") and len(name) <= 63
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    assert job["metadata"]["name"] == name and job["metadata"]["namespace"] == "builds"
    assert job["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "opsline",
        "opsline.io/build-id": ctx.build_id,
        "opsline.io/app": "shop",
        "opsline.io/component": "Web_UI",
    }
    spec_ = job["spec"]
    assert spec_["backoffLimit"] == 0 and spec_["activeDeadlineSeconds"] == 900
    pod = spec_["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    [container] = pod["containers"]
    assert container["image"] == "gcr.io/kaniko-project/executor:v1.23.2"
    assert container["args"] == [
        "--context=git://git.example.com/shop/web.git#refs/heads/main",
        "--dockerfile=docker/Dockerfile",
        "--destination=registry.example.com/opsline/shop-Web_UI:1.2.0",
        "--digest-file=/dev/termination-log",
        "--context-sub-path=web",
    ]


def test_an_explicit_destination_wins(ctx: BuildContext) -> None:
    spec = component(
        "web",
        "job",
        {"git": {"url": "git://git.example.com/shop/web.git"}},
        destination="ghcr.io/acme/web:nightly",
    )
    job = builder(registry=None).manifest(spec, ctx)
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--destination=ghcr.io/acme/web:nightly" in args
    assert "--context=git://git.example.com/shop/web.git" in args


def test_no_destination_and_no_registry_fails_clearly(ctx: BuildContext) -> None:
    spec = component("web", "job", {"git": {"url": "https://git.example.com/web.git"}})
    with pytest.raises(BuildError, match="no image destination"):
        builder(registry=None).manifest(spec, ctx)


def test_a_local_directory_cannot_reach_the_cluster(ctx: BuildContext) -> None:
    with pytest.raises(BuildError, match=r"needs source\.git"):
        builder().manifest(component("web", "microservice", {"dir": "/src/web"}), ctx)


def test_git_context_forms() -> None:
    assert git_context("https://h/r.git", "") == "git://h/r.git"
    assert git_context("https://h/r.git", "refs/tags/v1") == "git://h/r.git#refs/tags/v1"


def test_render_job_without_sub_path() -> None:
    job = render_job(
        name="j", namespace="n", builder_image="k", context="git://h/r", destination="d"
    )
    assert "--context-sub-path" not in " ".join(
        job["spec"]["template"]["spec"]["containers"][0]["args"]
    )
