"""The Kubernetes target against the Kubernetes API double: render, apply, wait, prune."""

from __future__ import annotations

import copy
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from libs.testing.k8s_double import K8sDouble
from services.deploy.kubernetes import (
    COMPONENT,
    INSTANCE,
    MANAGED_BY,
    REVISION,
    KubernetesError,
    KubernetesTarget,
    RenderError,
    RolloutError,
    object_name,
    render,
)

IMAGE = "repo/web@sha256:" + "a" * 64
_ns = itertools.count(1)


def web(**traits: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "replicas": 2.0,
        "env": {"A": "b", "N": 3.0},
        "ports": [{"name": "http", "port": 8080.0}],
    }
    base.update(traits)
    return {
        "spec": {
            "name": "web",
            "type": "microservice",
            "source": {"image": "repo/web:source"},
            "traits": base,
        },
        "artifact": {"kind": "image", "uri": IMAGE, "digest": "sha256:" + "a" * 64},
    }


def job(name: str = "migrate") -> dict[str, Any]:
    return {
        "spec": {
            "name": name,
            "type": "job",
            "source": {"image": "repo/migrate:1"},
            "traits": {"command": "migrate --up", "env": {"X": 1.0}},
        },
        "artifact": {},
    }


@pytest.fixture(scope="module")
def double() -> Iterator[K8sDouble]:
    k8s = K8sDouble.start()
    k8s.rollout_seconds = 0.2
    k8s.deadline_scale = 0.002  # progressDeadlineSeconds 600 -> 1.2 s
    yield k8s
    k8s.stop()


@pytest.fixture(scope="module")
def kubeconfig(double: K8sDouble, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return double.kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")


@pytest.fixture
async def target(kubeconfig: Path) -> AsyncIterator[KubernetesTarget]:
    async with KubernetesTarget(str(kubeconfig)) as t:
        t.poll_seconds = 0.05
        yield t


@pytest.fixture
def ns() -> str:
    return f"k8s-target-{next(_ns)}"


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects}


# ---------------------------------------------------------------------------- render


def test_render_microservice_shape() -> None:
    component = web(
        resources={"requests": {"cpu": "100m", "memory": 128.0}, "limits": {"cpu": 1.0}},
        autoscale={"min": 2.0, "max": 5.0, "cpu": 70.0},
        ingress={"host": "web.example.com", "path": "/"},
    )
    before = copy.deepcopy(component)
    objects = render("shop", "demo", 4, component)
    assert component == before  # pure
    kinds = by_kind(objects)
    assert [o["kind"] for o in objects] == [
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "Ingress",
    ]
    labels = {MANAGED_BY: "opsline", INSTANCE: "shop", COMPONENT: "web"}
    for obj in objects:
        assert obj["metadata"]["name"] == "shop-web"
        assert obj["metadata"]["namespace"] == "demo"
        assert obj["metadata"]["labels"] == labels
        assert obj["metadata"]["annotations"] == {REVISION: "4"}

    d = kinds["Deployment"]
    assert d["apiVersion"] == "apps/v1"
    assert d["spec"]["selector"] == {"matchLabels": {INSTANCE: "shop", COMPONENT: "web"}}
    assert d["spec"]["progressDeadlineSeconds"] == 600
    assert "replicas" not in d["spec"]  # the HPA owns it
    assert d["spec"]["template"]["metadata"]["labels"] == labels
    (container,) = d["spec"]["template"]["spec"]["containers"]
    assert container["image"] == IMAGE  # the artifact wins over source.image
    assert container["env"] == [{"name": "A", "value": "b"}, {"name": "N", "value": "3"}]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert type(container["ports"][0]["containerPort"]) is int
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "128"},
        "limits": {"cpu": "1"},
    }

    s = kinds["Service"]
    assert s["spec"]["type"] == "ClusterIP"
    assert s["spec"]["selector"] == {INSTANCE: "shop", COMPONENT: "web"}
    assert s["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]

    h = kinds["HorizontalPodAutoscaler"]
    assert h["apiVersion"] == "autoscaling/v2"
    assert h["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "shop-web",
    }
    assert (h["spec"]["minReplicas"], h["spec"]["maxReplicas"]) == (2, 5)
    assert type(h["spec"]["minReplicas"]) is int
    assert h["spec"]["metrics"][0]["resource"]["target"] == {
        "type": "Utilization",
        "averageUtilization": 70,
    }

    i = kinds["Ingress"]
    assert i["apiVersion"] == "networking.k8s.io/v1"
    (rule,) = i["spec"]["rules"]
    assert rule["host"] == "web.example.com"
    assert rule["http"]["paths"] == [
        {
            "path": "/",
            "pathType": "Prefix",
            "backend": {"service": {"name": "shop-web", "port": {"number": 8080}}},
        }
    ]


def test_render_replicas_source_image_and_no_extras() -> None:
    component = web(ports=[])
    component["artifact"] = {"kind": "tarball", "uri": "s3://x"}
    objects = render("shop", "demo", 1, component)
    assert [o["kind"] for o in objects] == ["Deployment"]  # no ports: no Service
    d = objects[0]
    assert d["spec"]["replicas"] == 2 and type(d["spec"]["replicas"]) is int
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "repo/web:source"
    # the selector never changes across revisions
    assert render("shop", "demo", 9, component)[0]["spec"]["selector"] == d["spec"]["selector"]


def test_render_job_and_names() -> None:
    (j,) = render("shop", "demo", 3, job())
    assert (j["apiVersion"], j["kind"]) == ("batch/v1", "Job")
    assert j["metadata"]["name"] == "shop-migrate-r3"
    pod = j["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["containers"][0]["command"] == ["migrate", "--up"]
    assert pod["containers"][0]["env"] == [{"name": "X", "value": "1"}]
    assert j["spec"]["template"]["metadata"]["labels"][COMPONENT] == "migrate"

    long = object_name("an-instance-with-a-rather-long-name", "and-a-component-that-is-also-long-x")
    assert len(long) <= 63 and long[-9] == "-"
    other = object_name(
        "an-instance-with-a-rather-long-name", "and-a-component-that-is-also-long-y"
    )
    assert long != other
    assert object_name("Shop_1", "Web.API") == "shop-1-web-api"

    with pytest.raises(RenderError, match="not supported"):
        render("shop", "demo", 1, {"spec": {"name": "c", "type": "helm", "source": {"image": "x"}}})
    with pytest.raises(RenderError, match="no image"):
        render("shop", "demo", 1, {"spec": {"name": "c", "type": "microservice"}})


# ---------------------------------------------------------------------------- cluster


async def test_apply_wait_reapply(target: KubernetesTarget, double: K8sDouble, ns: str) -> None:
    objects = render("shop", ns, 1, web())
    await target.apply(ns, objects)
    await target.wait(ns, objects, timeout=10)
    d = double.get("deployments", ns, "shop-web")
    assert d is not None
    assert d["status"]["availableReplicas"] == 2
    assert d["metadata"]["generation"] == 1
    managers = {m["manager"] for m in d["metadata"]["managedFields"]}
    assert "opsline" in managers
    svc = double.get("services", ns, "shop-web")
    assert svc is not None and svc["spec"]["ports"][0]["port"] == 8080
    assert double.get("namespaces", "", ns) is not None

    # the same objects again: no new generation
    await target.apply(ns, objects)
    assert double.get("deployments", ns, "shop-web")["metadata"]["generation"] == 1  # type: ignore[index]

    changed = render("shop", ns, 2, web(env={"A": "c"}))
    await target.apply(ns, changed)
    await target.wait(ns, changed, timeout=10)
    d = double.get("deployments", ns, "shop-web")
    assert d is not None
    assert d["metadata"]["generation"] == 2
    assert d["status"]["observedGeneration"] == 2
    assert d["metadata"]["annotations"][REVISION] == "2"
    env = d["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "A", "value": "c"}]  # N is pruned by server-side apply

    live = await target.live(ns, "shop")
    assert sorted((o["kind"], o["metadata"]["name"]) for o in live) == [
        ("Deployment", "shop-web"),
        ("Service", "shop-web"),
    ]


async def test_failed_rollout_names_component_object_and_event(
    target: KubernetesTarget, double: K8sDouble, ns: str
) -> None:
    objects = render("shop", ns, 1, web())
    await target.apply(ns, objects)
    await target.wait(ns, objects, timeout=10)

    double.fail_rollout(ns, "shop-web")
    broken = render("shop", ns, 2, web())
    broken[0]["spec"]["template"]["spec"]["containers"][0]["image"] = "repo/web:broken"
    await target.apply(ns, broken)

    # a timeout shorter than the deadline still names the object and the event
    with pytest.raises(RolloutError) as short:
        await target.wait(ns, broken, timeout=0.5)
    assert f"component web: Deployment {ns}/shop-web did not become ready" in short.value.reason
    assert "timed out after 0.5s" in short.value.reason

    with pytest.raises(RolloutError) as info:
        await target.wait(ns, broken, timeout=10)
    assert info.value.reason == (
        f"component web: Deployment {ns}/shop-web did not become available: "
        "ProgressDeadlineExceeded; "
        "last event CrashLoopBackOff: back-off restarting failed container"
    )

    # a rollback to the good template is healthy again
    await target.apply(ns, objects)
    await target.wait(ns, objects, timeout=10)


async def test_prune_and_uninstall(target: KubernetesTarget, double: K8sDouble, ns: str) -> None:
    api = {
        "spec": {
            "name": "api",
            "type": "microservice",
            "source": {"image": "repo/api:1"},
            "traits": {"replicas": 1, "ports": [{"port": 9000}]},
        }
    }
    first = render("shop", ns, 1, web(ingress={"host": "w.example.com"})) + render(
        "shop", ns, 1, api
    )
    await target.apply(ns, first)
    await target.wait(ns, first, timeout=10)
    # another instance in the same namespace is never touched
    other = render("other", ns, 1, api)
    await target.apply(ns, other)

    second = render("shop", ns, 2, web())  # no ingress, no api component
    await target.apply(ns, second)
    deleted = await target.prune(ns, "shop", {(o["kind"], o["metadata"]["name"]) for o in second})
    assert sorted(deleted) == ["Deployment/shop-api", "Ingress/shop-web", "Service/shop-api"]
    assert double.get("ingresses", ns, "shop-web") is None
    assert double.get("deployments", ns, "shop-api") is None
    assert double.get("deployments", ns, "shop-web") is not None
    assert double.get("deployments", ns, "other-api") is not None

    removed = await target.uninstall(ns, "shop")
    assert sorted(removed) == ["Deployment/shop-web", "Service/shop-web"]
    assert await target.live(ns, "shop") == []
    assert [o["metadata"]["name"] for o in await target.live(ns, "other")] == [
        "other-api",
        "other-api",
    ]
    assert double.get("namespaces", "", ns) is not None


async def test_job_runs_to_success_or_failure(
    target: KubernetesTarget, double: K8sDouble, ns: str
) -> None:
    objects = render("shop", ns, 1, job())
    await target.apply(ns, objects)
    await target.wait(ns, objects, timeout=10)
    done = double.get("jobs", ns, "shop-migrate-r1")
    assert done is not None and done["status"]["succeeded"] == 1

    double.fail_job(ns, "shop-migrate-r2")
    failing = render("shop", ns, 2, job())
    await target.apply(ns, failing)
    with pytest.raises(RolloutError) as info:
        await target.wait(ns, failing, timeout=10)
    assert info.value.reason == (
        f"component migrate: Job {ns}/shop-migrate-r2 failed: "
        "BackoffLimitExceeded: Job has reached the specified backoff limit"
    )
    # the revision's Job replaces the old one on prune
    deleted = await target.prune(ns, "shop", {("Job", "shop-migrate-r2")})
    assert deleted == ["Job/shop-migrate-r1"]


async def test_autoscaled_deployment_rolls_out(
    target: KubernetesTarget, double: K8sDouble, ns: str
) -> None:
    objects = render("shop", ns, 1, web(autoscale={"min": 3.0, "max": 5.0, "cpu": 70.0}))
    await target.apply(ns, objects)
    await target.wait(ns, objects, timeout=10)
    hpa = double.get("horizontalpodautoscalers", ns, "shop-web")
    assert hpa is not None and hpa["spec"]["minReplicas"] == 3
    d = double.get("deployments", ns, "shop-web")
    assert d is not None and d["spec"]["replicas"] == 3
    assert d["status"]["availableReplicas"] == 3


async def test_refused_apply_names_the_object(target: KubernetesTarget, ns: str) -> None:
    objects = target.render("shop", ns, 1, web(ports=[]))
    objects[0]["spec"]["selector"]["matchLabels"][COMPONENT] = "elsewhere"  # invalid
    with pytest.raises(KubernetesError) as info:
        await target.apply(ns, objects)
    assert info.value.status == 422
    assert f"apply Deployment {ns}/shop-web:" in str(info.value)
