"""Kubernetes discovery through kubernetes-asyncio against the Kubernetes API double:
labelled Running pods become targets, and stop being targets as they go."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, config

from libs import db
from libs.testing.k8s_double import K8sDouble
from services.dataops_ingest import discovery, targets
from services.dataops_ingest.models import TABLES

NS = "scrape-disc"


def _pod(name: str, labels: dict[str, str], notes: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels, "annotations": notes},
        "spec": {
            "containers": [{"name": "c", "image": "exporter:1", "ports": [{"containerPort": 8080}]}]
        },
    }


@pytest.fixture
async def core(k8s: K8sDouble, tmp_path: Path) -> AsyncIterator[tuple[client.CoreV1Api, Path]]:
    kubeconfig = k8s.kubeconfig(tmp_path / "kubeconfig")
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    async with client.ApiClient(configuration=configuration) as api:
        v1 = client.CoreV1Api(api)
        with contextlib.suppress(client.ApiException):
            await v1.create_namespace({"metadata": {"name": NS}})
        yield v1, kubeconfig


async def _urls(sessions: Any) -> dict[str, tuple[str, float, str | None]]:
    async with sessions() as session:
        rows = await targets.get_all(session, source=targets.KUBERNETES)
    return {r.discovery_key or "": (r.url, r.interval_s, r.app) for r in rows}


async def _until(sessions: Any, expected: dict[str, Any], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        seen = await _urls(sessions)
        if seen == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"targets {seen}, expected {expected}")


async def test_running_labelled_pods_are_targets_as_long_as_they_run(
    k8s: K8sDouble, core: tuple[client.CoreV1Api, Path], tmp_path: Path
) -> None:
    v1, kubeconfig = core
    engine = db.create_engine(f"sqlite:///{tmp_path}/ingest.db")
    await db.create_tables(engine, TABLES)
    sessions = db.session_factory(engine)
    pods = discovery.PodDiscovery(
        sessions=sessions,
        source=str(kubeconfig),
        namespaces=[NS],
        leader=lambda: True,
        default_interval_s=15,
        default_timeout_s=10,
    )
    labelled = {discovery.SCRAPE_LABEL: "true", discovery.APP: "shop"}
    await v1.create_namespaced_pod(
        NS,
        _pod(
            "web-1",
            labelled,
            {discovery.PORT: "9100", discovery.PATH: "stats", discovery.INTERVAL: "30s"},
        ),
    )
    await v1.create_namespaced_pod(NS, _pod("web-2", labelled, {}))
    await v1.create_namespaced_pod(NS, _pod("other", {"tier": "web"}, {discovery.PORT: "1"}))
    k8s.set_pod_phase(NS, "other", "Running", "10.9.9.9")
    stop = asyncio.Event()
    task = asyncio.create_task(pods.run(stop))
    try:
        # Pending pods are not targets yet (the first sync writes an empty set).
        deadline = time.monotonic() + 10
        while pods.synced == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await _urls(sessions) == {}
        k8s.set_pod_phase(NS, "web-1", "Running", "10.1.0.1")
        k8s.set_pod_phase(NS, "web-2", "Running", "10.1.0.2")
        await _until(
            sessions,
            {
                f"{NS}/web-1": ("http://10.1.0.1:9100/stats", 30.0, "shop"),
                f"{NS}/web-2": ("http://10.1.0.2:8080/metrics", 15.0, "shop"),
            },
        )
        async with sessions() as session:
            row = (await targets.get_all(session, source=targets.KUBERNETES))[0]
        assert targets.labels_of(row) == {"namespace": NS, "pod": "web-1"}
        assert row.timeout_s == 10

        k8s.set_pod_phase(NS, "web-1", "Failed")
        await _until(sessions, {f"{NS}/web-2": ("http://10.1.0.2:8080/metrics", 15.0, "shop")})
        await v1.delete_namespaced_pod("web-2", NS)
        await _until(sessions, {})
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await engine.dispose()


def test_pods_without_a_port_or_with_a_bad_interval_are_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(
            name="p", namespace="n", labels={discovery.SCRAPE_LABEL: "true"}, annotations={}
        ),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c")]),
        status=client.V1PodStatus(phase="Running", pod_ip="10.0.0.1"),
    )
    with pytest.raises(ValueError, match=r"no opsline\.io/scrape-port annotation"):
        discovery.target_for(pod, default_interval_s=15, default_timeout_s=10)
    pod.metadata.annotations = {discovery.PORT: "http"}
    with pytest.raises(ValueError, match="is not a port number"):
        discovery.target_for(pod, default_interval_s=15, default_timeout_s=10)
    pod.metadata.annotations = {discovery.PORT: "9100", discovery.INTERVAL: "soon"}
    with pytest.raises(ValueError, match="not a duration"):
        discovery.target_for(pod, default_interval_s=15, default_timeout_s=10)
    pod.metadata.annotations = {discovery.PORT: "9100", discovery.INTERVAL: "5s"}
    spec = discovery.target_for(pod, default_interval_s=15, default_timeout_s=10)
    assert spec is not None and (spec.interval_s, spec.timeout_s) == (5, 4)
    assert discovery.interval_of("1m") == 60 and discovery.interval_of("500ms") == 0.5
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert discovery.discovery_source("") is None
    assert discovery.discovery_source("/k/config") == "/k/config"
