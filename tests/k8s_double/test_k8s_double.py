"""The Kubernetes API double, driven only through kubernetes-asyncio (as the deploy service is)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from libs.testing.k8s_double import K8sDouble

APPLY = "application/apply-patch+yaml"
T = TypeVar("T")


@pytest.fixture(scope="module")
def double() -> Iterator[K8sDouble]:
    k8s = K8sDouble.start(rollout_seconds=0.3, namespace_termination_seconds=0.5)
    yield k8s
    k8s.stop()


@pytest.fixture(scope="module")
def kubeconfig(double: K8sDouble, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return double.kubeconfig(tmp_path_factory.mktemp("k8s") / "kubeconfig")


@pytest.fixture
async def api(kubeconfig: Path) -> AsyncIterator[client.ApiClient]:
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    async with client.ApiClient(configuration) as api_client:
        yield api_client


@pytest.fixture
async def ns(api: client.ApiClient, request: pytest.FixtureRequest) -> str:
    """A fresh namespace per test."""
    name = request.node.name.removeprefix("test_").replace("_", "-")[:50]
    await client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    return name


def status_of(error: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(error.body)
    return body


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout: float = 5.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {value!r})")
        await asyncio.sleep(0.05)


def deployment(name: str, replicas: int = 3, image: str = "nginx:1.25", **spec: Any) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": image, "env": [{"name": "MODE", "value": "a"}]}
                    ]
                },
            },
            **spec,
        },
    }


# ---------------------------------------------------------------------- basics


async def test_discovery_and_version(api: client.ApiClient) -> None:
    version = await client.VersionApi(api).get_code()
    assert version.major == "1" and version.git_version.startswith("v1.")
    assert (await client.CoreApi(api).get_api_versions()).versions == ["v1"]
    groups = {g.name for g in (await client.ApisApi(api).get_api_versions()).groups}
    assert {"apps", "batch", "networking.k8s.io", "autoscaling"} <= groups
    names = {r.name for r in (await client.AppsV1Api(api).get_api_resources()).resources}
    assert {"deployments", "deployments/status", "deployments/scale"} <= names


async def test_unauthorized_without_token(double: K8sDouble) -> None:
    for api_key in ({}, {"BearerToken": "Bearer wrong"}):
        configuration = client.Configuration(host=double.url, api_key=api_key)
        async with client.ApiClient(configuration) as anonymous:
            with pytest.raises(ApiException) as raised:
                await client.CoreV1Api(anonymous).list_namespace()
        assert raised.value.status == 401
        body = status_of(raised.value)
        assert body["kind"] == "Status" and body["reason"] == "Unauthorized"
        assert body["code"] == 401


async def test_namespaces_create_get_list_delete(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    created = await core.create_namespace({"metadata": {"name": "team-a"}})
    assert created.status.phase == "Active" and created.metadata.uid
    assert created.metadata.labels == {"kubernetes.io/metadata.name": "team-a"}
    assert (await core.read_namespace("team-a")).metadata.uid == created.metadata.uid
    listed = await core.list_namespace(label_selector="kubernetes.io/metadata.name=team-a")
    assert [n.metadata.name for n in listed.items] == ["team-a"]
    assert listed.kind == "NamespaceList" and int(listed.metadata.resource_version) > 0
    assert "default" in {n.metadata.name for n in (await core.list_namespace()).items}

    await core.create_namespaced_config_map("team-a", {"metadata": {"name": "inside"}})
    await core.delete_namespace("team-a")
    terminating = await core.read_namespace("team-a")
    assert terminating.status.phase == "Terminating"
    assert terminating.metadata.deletion_timestamp is not None
    with pytest.raises(ApiException) as raised:
        await core.create_namespaced_config_map("team-a", {"metadata": {"name": "late"}})
    assert raised.value.status == 403
    assert "being terminated" in status_of(raised.value)["message"]

    async def gone() -> bool:
        try:
            await core.read_namespace("team-a")
        except ApiException as e:
            return e.status == 404
        return False

    await eventually(gone)
    with pytest.raises(ApiException) as raised:
        await core.read_namespaced_config_map("inside", "team-a")
    assert raised.value.status == 404


async def test_configmap_crud(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    created = await core.create_namespaced_config_map(
        ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings"), data={"a": "1"})
    )
    assert created.kind == "ConfigMap" and created.api_version == "v1"
    assert created.metadata.namespace == ns and created.metadata.creation_timestamp
    assert created.metadata.managed_fields[0].manager == "OpenAPI-Generator"
    assert created.metadata.managed_fields[0].operation == "Update"
    read = await core.read_namespaced_config_map("settings", ns)
    assert read.data == {"a": "1"}

    read.data["b"] = "2"
    replaced = await core.replace_namespaced_config_map("settings", ns, read)
    assert replaced.data == {"a": "1", "b": "2"}
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)

    patched = await core.patch_namespaced_config_map(
        "settings", ns, {"data": {"a": None, "c": "3"}}, field_manager="editor"
    )
    assert patched.data == {"b": "2", "c": "3"}
    assert {m.manager for m in patched.metadata.managed_fields} == {"OpenAPI-Generator", "editor"}

    listed = await core.list_namespaced_config_map(ns)
    assert listed.kind == "ConfigMapList" and listed.api_version == "v1"
    assert [c.metadata.name for c in listed.items] == ["settings"]
    assert int(listed.metadata.resource_version) >= int(patched.metadata.resource_version)

    deleted = await core.delete_namespaced_config_map(
        "settings", ns, propagation_policy="Background"
    )
    assert deleted.status == "Success" and deleted.details.name == "settings"
    with pytest.raises(ApiException) as raised:
        await core.read_namespaced_config_map("settings", ns)
    assert raised.value.status == 404 and raised.value.reason == "Not Found"
    body = status_of(raised.value)
    assert body["reason"] == "NotFound" and body["code"] == 404
    assert body["message"] == 'configmaps "settings" not found'
    with pytest.raises(ApiException) as raised:
        await core.delete_namespaced_config_map("settings", ns)
    assert status_of(raised.value)["reason"] == "NotFound"


async def test_errors_409_404_422(api: client.ApiClient, ns: str) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    await core.create_namespaced_config_map(ns, {"metadata": {"name": "once"}})
    with pytest.raises(ApiException) as raised:
        await core.create_namespaced_config_map(ns, {"metadata": {"name": "once"}})
    assert raised.value.status == 409 and raised.value.reason == "Conflict"
    assert status_of(raised.value)["reason"] == "AlreadyExists"

    with pytest.raises(ApiException) as raised:
        await core.create_namespaced_config_map("nowhere", {"metadata": {"name": "x"}})
    assert raised.value.status == 404
    assert status_of(raised.value)["message"] == 'namespaces "nowhere" not found'

    stale = await core.read_namespaced_config_map("once", ns)
    await core.patch_namespaced_config_map("once", ns, {"data": {"k": "v"}})
    with pytest.raises(ApiException) as raised:
        await core.replace_namespaced_config_map("once", ns, stale)
    assert raised.value.status == 409
    assert "the object has been modified" in status_of(raised.value)["message"]

    with pytest.raises(ApiException) as raised:
        await apps.read_namespaced_deployment("missing", ns)
    assert status_of(raised.value)["message"] == 'deployments.apps "missing" not found'

    bad = deployment("bad")
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    with pytest.raises(ApiException) as raised:
        await apps.create_namespaced_deployment(ns, bad)
    assert raised.value.status == 422
    body = status_of(raised.value)
    assert body["reason"] == "Invalid" and body["details"]["kind"] == "Deployment"
    assert body["details"]["causes"][0]["field"] == "spec.template.metadata.labels"


async def test_label_and_field_selectors(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    for name, labels in {
        "web": {"app": "shop", "tier": "web"},
        "db": {"app": "shop", "tier": "db"},
        "cache": {"app": "shop", "tier": "cache"},
        "plain": {},
    }.items():
        await core.create_namespaced_config_map(ns, {"metadata": {"name": name, "labels": labels}})

    async def names(selector: str) -> list[str]:
        listed = await core.list_namespaced_config_map(ns, label_selector=selector)
        return sorted(c.metadata.name for c in listed.items)

    assert await names("tier=web") == ["web"]
    assert await names("tier==web") == ["web"]
    assert await names("tier!=web") == ["cache", "db", "plain"]
    assert await names("tier") == ["cache", "db", "web"]
    assert await names("!tier") == ["plain"]
    assert await names("tier in (web, db)") == ["db", "web"]
    assert await names("tier notin (web)") == ["cache", "db", "plain"]
    assert await names("app=shop,tier notin (web,cache)") == ["db"]
    assert await names("app=shop,!tier") == []
    by_name = await core.list_namespaced_config_map(ns, field_selector="metadata.name=db")
    assert [c.metadata.name for c in by_name.items] == ["db"]
    with pytest.raises(ApiException) as raised:
        await names("tier in (web")
    assert raised.value.status == 400 and status_of(raised.value)["reason"] == "BadRequest"
    with pytest.raises(ApiException) as raised:
        await core.list_namespaced_config_map(ns, field_selector="data.x=1")
    assert status_of(raised.value)["message"] == "field label not supported: data.x"

    page = await core.list_namespaced_config_map(ns, limit=3)
    assert len(page.items) == 3 and page.metadata._continue
    rest = await core.list_namespaced_config_map(ns, limit=3, _continue=page.metadata._continue)
    assert [c.metadata.name for c in rest.items] == ["web"] and not rest.metadata._continue


# ---------------------------------------------------------------------- server-side apply


async def test_server_side_apply_conflict_and_force(api: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api)
    created, code, _ = await apps.patch_namespaced_deployment_with_http_info(
        "web",
        ns,
        deployment("web", replicas=2),
        field_manager="opsline",
        _content_type=APPLY,
    )
    assert code == 201 and created.spec.replicas == 2 and created.metadata.generation == 1
    assert created.spec.progress_deadline_seconds == 600  # defaulted, owned by nobody
    owners = {m.manager: m for m in created.metadata.managed_fields}
    assert owners["opsline"].operation == "Apply"
    assert "f:replicas" in owners["opsline"].fields_v1["f:spec"]

    updated, code, _ = await apps.patch_namespaced_deployment_with_http_info(
        "web", ns, deployment("web", replicas=4), field_manager="opsline", _content_type=APPLY
    )
    assert code == 200 and updated.spec.replicas == 4 and updated.metadata.generation == 2

    same = await apps.patch_namespaced_deployment(
        "web",
        ns,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 4},
        },
        field_manager="autoscaler",
        _content_type=APPLY,
    )
    assert same.metadata.generation == 2  # an equal value is shared ownership, not a conflict

    scale_to_5 = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 5},
    }
    with pytest.raises(ApiException) as raised:
        await apps.patch_namespaced_deployment(
            "web", ns, scale_to_5, field_manager="hpa-ish", _content_type=APPLY
        )
    assert raised.value.status == 409
    body = status_of(raised.value)
    assert body["reason"] == "Conflict" and body["code"] == 409
    causes = sorted(body["details"]["causes"], key=lambda c: c["message"])
    assert causes == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "autoscaler"',
            "field": ".spec.replicas",
        },
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "opsline"',
            "field": ".spec.replicas",
        },
    ]
    assert body["message"].startswith("Apply failed with 2 conflicts")

    forced = await apps.patch_namespaced_deployment(
        "web", ns, scale_to_5, field_manager="hpa-ish", force=True, _content_type=APPLY
    )
    assert forced.spec.replicas == 5
    owners = {m.manager: m.fields_v1 for m in forced.metadata.managed_fields}
    assert "f:replicas" in owners["hpa-ish"]["f:spec"]
    assert "f:replicas" not in owners["opsline"]["f:spec"]
    assert "autoscaler" not in owners  # it owned nothing else

    with pytest.raises(ApiException) as raised:  # opsline now conflicts with the new owner
        await apps.patch_namespaced_deployment(
            "web",
            ns,
            deployment("web", replicas=4),
            field_manager="opsline",
            _content_type=APPLY,
        )
    assert status_of(raised.value)["details"]["causes"][0]["message"] == 'conflict with "hpa-ish"'

    with pytest.raises(ApiException) as raised:
        await apps.patch_namespaced_deployment("web", ns, scale_to_5, _content_type=APPLY)
    assert raised.value.status == 422  # fieldManager is required for apply (as the real server)
    assert "fieldManager: Required value" in status_of(raised.value)["message"]


async def test_apply_conflicts_with_an_update_manager(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    await core.create_namespaced_config_map(
        ns, {"metadata": {"name": "made"}, "data": {"k": "v"}}, field_manager="kubectl-create"
    )
    applied = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "made"},
        "data": {"k": "other"},
    }
    with pytest.raises(ApiException) as raised:
        await core.patch_namespaced_config_map(
            "made", ns, applied, field_manager="opsline", _content_type=APPLY
        )
    cause = status_of(raised.value)["details"]["causes"][0]
    assert cause == {
        "reason": "FieldManagerConflict",
        "field": ".data.k",
        "message": 'conflict with "kubectl-create" using v1',
    }


async def test_apply_prunes_omitted_fields(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)

    async def apply(manager: str, data: dict[str, str], labels: dict[str, str] | None = None):
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cfg", **({"labels": labels} if labels else {})},
            "data": data,
        }
        return await core.patch_namespaced_config_map(
            "cfg", ns, body, field_manager=manager, _content_type=APPLY
        )

    first = await apply("opsline", {"a": "1", "b": "2"}, {"team": "x"})
    assert first.data == {"a": "1", "b": "2"} and first.metadata.labels == {"team": "x"}
    await apply("other", {"b": "2"})  # shares b
    second = await apply("opsline", {"a": "1"})
    assert second.data == {"a": "1", "b": "2"}  # b stays: "other" still owns it
    assert second.metadata.labels is None  # the label was opsline's alone
    third = await apply("other", {"c": "3"})
    assert third.data == {"a": "1", "c": "3"}  # now nobody owns b

    dep = deployment("pruned")
    dep["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "busybox"})
    await client.AppsV1Api(api).patch_namespaced_deployment(
        "pruned", ns, dep, field_manager="opsline", _content_type=APPLY
    )
    dep = deployment("pruned")
    del dep["spec"]["replicas"]
    again = await client.AppsV1Api(api).patch_namespaced_deployment(
        "pruned", ns, dep, field_manager="opsline", _content_type=APPLY
    )
    assert [c.name for c in again.spec.template.spec.containers] == ["app"]
    assert again.spec.replicas == 1  # pruned, then defaulted like the real server


# ---------------------------------------------------------------------- controllers


async def test_deployment_rollout_progresses(api: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api)
    created = await apps.create_namespaced_deployment(ns, deployment("web"))
    assert created.status.observed_generation is None and created.status.replicas is None

    async def rolled_out(generation: int) -> client.V1Deployment | None:
        d = await apps.read_namespaced_deployment_status("web", ns)
        s = d.status
        if (s.observed_generation or 0) < generation:
            return None
        done = s.updated_replicas == s.replicas == s.available_replicas == s.ready_replicas == 3
        return d if done else None

    seen_partial = False
    deadline = time.monotonic() + 5
    while not (done := await rolled_out(1)):
        s = (await apps.read_namespaced_deployment_status("web", ns)).status
        seen_partial |= (s.available_replicas or 0) < 3
        assert time.monotonic() < deadline
        await asyncio.sleep(0.03)
    assert seen_partial
    conditions = {c.type: c for c in done.status.conditions}
    assert conditions["Available"].status == "True"
    assert conditions["Progressing"].reason == "NewReplicaSetAvailable"
    assert done.metadata.annotations["deployment.kubernetes.io/revision"] == "1"

    patched = await apps.patch_namespaced_deployment(  # strategic merge: containers by name
        "web",
        ns,
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.26"}]}}}},
    )
    container = patched.spec.template.spec.containers[0]
    assert container.image == "nginx:1.26" and container.env[0].name == "MODE"
    assert patched.metadata.generation == 2
    done = await eventually(lambda: rolled_out(2))
    assert done.metadata.annotations["deployment.kubernetes.io/revision"] == "2"

    scale = await apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 1}})
    assert scale.spec.replicas == 1 and scale.status.selector == "app=web"


async def test_fail_rollout_exceeds_progress_deadline(
    api: client.ApiClient, ns: str, double: K8sDouble
) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    double.fail_rollout(ns, "crashy")
    await apps.create_namespaced_deployment(
        ns,
        deployment("crashy", replicas=2, progressDeadlineSeconds=50),  # 0.5 s scaled
    )

    async def progressing(reason: str) -> client.V1Deployment | None:
        d = await apps.read_namespaced_deployment_status("crashy", ns)
        found = [c for c in d.status.conditions or [] if c.type == "Progressing"]
        return d if found and found[0].reason == reason else None

    stuck = await eventually(lambda: progressing("ProgressDeadlineExceeded"))
    condition = next(c for c in stuck.status.conditions if c.type == "Progressing")
    assert condition.status == "False"
    assert not stuck.status.available_replicas
    assert stuck.status.unavailable_replicas == stuck.status.replicas
    events = await core.list_namespaced_event(ns, field_selector="involvedObject.name=crashy")
    warnings = [e for e in events.items if e.type == "Warning"]
    assert [(e.reason, e.message) for e in warnings] == [
        ("CrashLoopBackOff", "back-off restarting failed container")
    ]
    assert warnings[0].involved_object.kind == "Deployment"

    double.heal(ns, "crashy")
    healed = await eventually(lambda: progressing("NewReplicaSetAvailable"))
    assert healed.status.available_replicas == 2


async def test_jobs_complete_or_fail(api: client.ApiClient, ns: str, double: K8sDouble) -> None:
    batch = client.BatchV1Api(api)

    def job(name: str) -> dict[str, Any]:
        return {
            "metadata": {"name": name},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "run", "image": "busybox"}],
                    }
                }
            },
        }

    double.fail_job(ns, "broken")
    created = await batch.create_namespaced_job(ns, job("works"))
    assert created.spec.backoff_limit == 6
    assert created.spec.template.metadata.labels["job-name"] == "works"
    await batch.create_namespaced_job(ns, job("broken"))

    async def finished(name: str) -> client.V1Job | None:
        j = await batch.read_namespaced_job_status(name, ns)
        return j if j.status.succeeded or j.status.failed else None

    works = await eventually(lambda: finished("works"))
    assert works.status.succeeded == 1 and works.status.completion_time is not None
    assert "Complete" in {c.type for c in works.status.conditions}
    broken = await eventually(lambda: finished("broken"))
    assert broken.status.failed and not broken.status.succeeded
    failed = next(c for c in broken.status.conditions if c.type == "Failed")
    assert failed.reason == "BackoffLimitExceeded"

    no_policy = job("invalid")
    del no_policy["spec"]["template"]["spec"]["restartPolicy"]
    with pytest.raises(ApiException) as raised:
        await batch.create_namespaced_job(ns, no_policy)
    assert raised.value.status == 422


# ---------------------------------------------------------------------- watch


async def test_watch_sees_added_modified_deleted(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    await core.create_namespaced_config_map(ns, {"metadata": {"name": "existing"}})
    seen: list[tuple[str, str]] = []
    ready = asyncio.Event()

    async def follow() -> None:
        async with watch.Watch() as w:
            async for event in w.stream(core.list_namespaced_config_map, ns, timeout_seconds=5):
                seen.append((event["type"], event["object"].metadata.name))
                assert isinstance(event["object"], client.V1ConfigMap)
                ready.set()
                if event["type"] == "DELETED":
                    w.stop()

    task = asyncio.create_task(follow())
    await asyncio.wait_for(ready.wait(), 5)  # the synthetic ADDED of what already exists
    await core.create_namespaced_config_map(ns, {"metadata": {"name": "live"}})
    await core.patch_namespaced_config_map("live", ns, {"data": {"k": "v"}})
    await core.delete_namespaced_config_map("live", ns)
    await asyncio.wait_for(task, 5)
    assert seen == [
        ("ADDED", "existing"),
        ("ADDED", "live"),
        ("MODIFIED", "live"),
        ("DELETED", "live"),
    ]


async def test_watch_from_resource_version_and_timeout(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    start = (await core.list_namespaced_config_map(ns)).metadata.resource_version
    await core.create_namespaced_config_map(
        ns, {"metadata": {"name": "a", "labels": {"keep": "yes"}}}
    )
    await core.create_namespaced_config_map(ns, {"metadata": {"name": "b"}})
    await core.patch_namespaced_config_map("a", ns, {"metadata": {"labels": {"keep": None}}})
    events = []
    began = time.monotonic()
    async with watch.Watch() as w:
        async for event in w.stream(
            core.list_namespaced_config_map,
            ns,
            label_selector="keep=yes",
            resource_version=start,
            timeout_seconds=1,
        ):
            events.append((event["type"], event["object"].metadata.name))
    assert events == [("ADDED", "a"), ("DELETED", "a")]  # left the selector: DELETED
    assert 0.9 < time.monotonic() - began < 3  # the stream ended at timeoutSeconds


async def test_deployment_status_watch(api: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api)
    start = (await apps.list_namespaced_deployment(ns)).metadata.resource_version
    await apps.create_namespaced_deployment(ns, deployment("watched", replicas=2))
    available = []
    async with watch.Watch() as w:
        async for event in w.stream(
            apps.list_namespaced_deployment, ns, resource_version=start, timeout_seconds=5
        ):
            available.append(event["object"].status.available_replicas or 0)
            if available[-1] == 2:
                w.stop()
    assert available[0] == 0 and available[-1] == 2 and len(available) >= 3


# ---------------------------------------------------------------------- misc


async def test_services_and_deletion_semantics(api: client.ApiClient, ns: str) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    svc = await core.create_namespaced_service(
        ns,
        {
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
        },
    )
    assert svc.spec.cluster_ip.startswith("10.96.") and svc.spec.type == "ClusterIP"
    assert svc.spec.ports[0].target_port == 80 and svc.spec.ports[0].protocol == "TCP"

    await apps.create_namespaced_deployment(ns, deployment("going", replicas=1))
    await apps.delete_namespaced_deployment("going", ns, propagation_policy="Foreground")

    async def gone() -> bool:
        try:
            d = await apps.read_namespaced_deployment("going", ns)
        except ApiException as e:
            return e.status == 404
        assert d.metadata.deletion_timestamp is not None
        assert d.metadata.finalizers == ["foregroundDeletion"]
        return False

    await eventually(gone)

    await core.create_namespaced_config_map(
        ns, {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    )
    await core.delete_namespaced_config_map("held", ns)
    held = await core.read_namespaced_config_map("held", ns)
    assert held.metadata.deletion_timestamp is not None
    await core.patch_namespaced_config_map(
        "held", ns, [{"op": "remove", "path": "/metadata/finalizers"}]
    )  # a list body goes as a JSON patch
    with pytest.raises(ApiException) as raised:
        await core.read_namespaced_config_map("held", ns)
    assert raised.value.status == 404
