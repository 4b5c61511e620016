"""Image builds as kaniko Jobs on a Kubernetes cluster (kubernetes-asyncio)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from typing import Any

from libs.schemas.opsline.v1 import catalog_pb2
from services.build.builders import IMAGE_DIGEST, BuildContext, BuildError, image_repository

_POLL_S = 2.0
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9._-]")


def job_name(build_id: str, component: str) -> str:
    """A DNS-1123 name, stable for one build and component."""
    digest = hashlib.sha256(f"{build_id}/{component}".encode()).hexdigest()[:10]
    stem = re.sub(r"[^a-z0-9-]", "-", component.lower()).strip("-")[:30] or "image"
    return f"opsline-build-{stem}-{digest}"


def _label(value: str) -> str:
    return _LABEL_VALUE.sub("-", value)[:63].strip("-._") or "x"


def git_context(url: str, ref: str) -> str:
    """kaniko's git context: git://host/path#refs/heads/<ref>."""
    bare = re.sub(r"^(https?|git|ssh)://", "", url)
    context = f"git://{bare}"
    if ref:
        context += "#" + (ref if ref.startswith("refs/") else f"refs/heads/{ref}")
    return context


def render_job(
    *,
    name: str,
    namespace: str,
    builder_image: str,
    context: str,
    destination: str,
    dockerfile: str = "Dockerfile",
    sub_path: str = "",
    labels: dict[str, str] | None = None,
    deadline_s: int = 900,
) -> dict[str, Any]:
    """The batch/v1 Job that builds and pushes one image; the digest ends up in its log."""
    labels = {"app.kubernetes.io/managed-by": "opsline", **(labels or {})}
    args = [
        f"--context={context}",
        f"--dockerfile={dockerfile}",
        f"--destination={destination}",
        # The pushed digest becomes the container's termination message.
        "--digest-file=/dev/termination-log",
    ]
    if sub_path:
        args.append(f"--context-sub-path={sub_path}")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline_s,
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "kaniko", "image": builder_image, "args": args}],
                },
            },
        },
    }


class KanikoBuilder:
    """Builds a component's image from source.git in a kaniko Job, and waits for it."""

    def __init__(
        self,
        *,
        kubeconfig: str,
        builder_image: str,
        namespace: str,
        registry: str | None,
        deadline_s: int,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.builder_image = builder_image
        self.namespace = namespace
        self.registry = registry
        self.deadline_s = deadline_s

    def manifest(self, component: catalog_pb2.ComponentSpec, ctx: BuildContext) -> dict[str, Any]:
        name = component.name
        if component.source.WhichOneof("kind") != "git":
            raise BuildError(
                f"component {name}: an image build in the cluster needs source.git (the "
                "cluster cannot read this host's source.dir), or use a prebuilt image pinned "
                "by digest"
            )
        destination = component.build.get("destination") or (
            f"{self.registry.rstrip('/')}/{ctx.app}-{name}:{ctx.version or ctx.build_id}"
            if self.registry
            else ""
        )
        if not destination:
            raise BuildError(
                f"component {name}: no image destination (set build.destination on the "
                "component, or OPSLINE_BUILD_IMAGE_REGISTRY)"
            )
        return render_job(
            name=job_name(ctx.build_id, name),
            namespace=self.namespace,
            builder_image=self.builder_image,
            context=git_context(component.source.git.url, component.source.git.ref),
            destination=destination,
            dockerfile=component.build.get("dockerfile", "Dockerfile"),
            sub_path=component.build.get("context", ""),
            labels={
                "opsline.io/build-id": _label(ctx.build_id),
                "opsline.io/app": _label(ctx.app),
                "opsline.io/component": _label(name),
            },
            deadline_s=self.deadline_s,
        )

    async def build(
        self, component: catalog_pb2.ComponentSpec, ctx: BuildContext
    ) -> list[dict[str, Any]]:
        from kubernetes_asyncio import client, config

        name = component.name
        async with ctx.step(name, "image") as log:
            job: Any = self.manifest(component, ctx)
            job_id = job["metadata"]["name"]
            destination = job["spec"]["template"]["spec"]["containers"][0]["args"][2]
            api = await config.new_client_from_config(config_file=self.kubeconfig)
            async with api:
                jobs, pods = client.BatchV1Api(api), client.CoreV1Api(api)
                await jobs.create_namespaced_job(self.namespace, job)
                log(f"created Job {self.namespace}/{job_id} ({self.builder_image})")
                try:
                    while True:
                        status = (
                            await jobs.read_namespaced_job_status(job_id, self.namespace)
                        ).status
                        if status.succeeded:
                            break
                        if status.failed:
                            raise BuildError(
                                f"component {name}: kaniko Job {job_id} failed; see "
                                f"kubectl -n {self.namespace} logs job/{job_id}"
                            )
                        await asyncio.sleep(_POLL_S)
                except BaseException:
                    with contextlib.suppress(Exception):
                        await jobs.delete_namespaced_job(
                            job_id, self.namespace, propagation_policy="Background"
                        )
                    raise
                listed = await pods.list_namespaced_pod(
                    self.namespace, label_selector=f"job-name={job_id}"
                )
                digest = _termination_message(listed.items)
            image = f"{image_repository(destination.split('=', 1)[1])}@{digest}"
            if not IMAGE_DIGEST.match(image):
                raise BuildError(f"component {name}: kaniko reported no image digest ({digest!r})")
            log(f"pushed {image}")
        return [{"component": name, "kind": "image", "uri": image, "digest": digest, "size": 0}]


def _termination_message(pods: list[Any]) -> str:
    for pod in pods:
        for cs in (pod.status.container_statuses or []) if pod.status else []:
            terminated = cs.state.terminated if cs.state else None
            if terminated is not None and terminated.message:
                return str(terminated.message).strip()
    return ""
