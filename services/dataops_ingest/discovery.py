"""Kubernetes discovery: pods labelled opsline.io/scrape=true become scrape targets.

A pod is a target while it is Running, has an IP and is not being deleted:

    metadata:
      labels:
        opsline.io/scrape: "true"
        opsline.io/app: shop                  # optional: the target's app
      annotations:
        opsline.io/scrape-port: "9100"        # default: the pod's first containerPort
        opsline.io/scrape-path: /metrics      # default /metrics
        opsline.io/scrape-interval: 30s       # optional; default the discovery setting
        opsline.io/scrape-scheme: http        # optional (http or https)
        opsline.io/scrape-job: node           # optional; default kubernetes-pods

The pods are listed, then watched from the list's resourceVersion; any watch error or
expiry lists again. Targets carry the labels namespace and pod. One replica writes the
targets (the holder of ingest.raw partition 0); the rows' ids derive from namespace/pod,
so a change of holder rewrites the same rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config, watch
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from services.dataops_ingest import targets
from services.dataops_ingest.models import ScrapeTargetCreate

log = logging.getLogger(__name__)

SCRAPE_LABEL = "opsline.io/scrape"
SELECTOR = f"{SCRAPE_LABEL}=true"
PORT = "opsline.io/scrape-port"
PATH = "opsline.io/scrape-path"
INTERVAL = "opsline.io/scrape-interval"
SCHEME = "opsline.io/scrape-scheme"
JOB = "opsline.io/scrape-job"
APP = "opsline.io/app"
DEFAULT_JOB = "kubernetes-pods"
IN_CLUSTER = "in-cluster"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
RESYNC_S = 30.0
WATCH_S = 300


def interval_of(text: str) -> float:
    """`30s`, `1m`, `500ms` or plain seconds."""
    m = _DURATION.match(text.strip())
    if m is None:
        raise ValueError(f"{INTERVAL}: {text[:40]!r} is not a duration like 30s or 1m")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _first_container_port(spec: Any) -> int | None:
    for container in (spec.containers if spec else None) or []:
        for port in container.ports or []:
            return int(port.container_port)
    return None


def target_for(
    pod: Any, *, default_interval_s: float, default_timeout_s: float
) -> ScrapeTargetCreate | None:
    """The target a pod asks for, or None (not running, no IP, being deleted)."""
    meta, status = pod.metadata, pod.status
    if meta.deletion_timestamp is not None or status is None:
        return None
    if status.phase != "Running" or not status.pod_ip:
        return None
    labels, notes = meta.labels or {}, meta.annotations or {}
    if labels.get(SCRAPE_LABEL) != "true":
        return None
    port_text = notes.get(PORT)
    port = int(port_text) if port_text and port_text.isdigit() else None
    if port_text and port is None:
        raise ValueError(f"{PORT}: {port_text[:20]!r} is not a port number")
    port = port or _first_container_port(pod.spec)
    if port is None:
        raise ValueError(f"no {PORT} annotation and no containerPort")
    path = notes.get(PATH) or "/metrics"
    if not path.startswith("/"):
        path = "/" + path
    ip = status.pod_ip
    host = f"[{ip}]" if ":" in ip else ip
    interval = interval_of(notes[INTERVAL]) if INTERVAL in notes else default_interval_s
    return ScrapeTargetCreate(
        job=notes.get(JOB) or DEFAULT_JOB,
        url=f"{notes.get(SCHEME, 'http')}://{host}:{port}{path}",
        interval_s=interval,
        timeout_s=min(default_timeout_s, interval * 0.8),
        labels={"namespace": meta.namespace, "pod": meta.name},
        app=labels.get(APP) or None,
    )


def discovery_source(kubeconfig: str) -> str | None:
    """A kubeconfig path, IN_CLUSTER, or None (discovery off)."""
    if kubeconfig:
        return kubeconfig
    token = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
    if os.environ.get("KUBERNETES_SERVICE_HOST") and token.exists():
        return IN_CLUSTER
    return None


class PodDiscovery:
    """List + watch the labelled pods, keep the kubernetes targets equal to them."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        source: str,
        namespaces: list[str],
        leader: Callable[[], bool],
        default_interval_s: float,
        default_timeout_s: float,
    ) -> None:
        self.sessions = sessions
        self.source = source
        self.namespaces = namespaces or [""]
        self.leader = leader
        self.default_interval_s = default_interval_s
        self.default_timeout_s = default_timeout_s
        self.pods: dict[str, Any] = {}
        self.listed: set[str] = set()  # namespaces listed at least once
        self.changed = asyncio.Event()
        self.synced = 0  # completed syncs (tests wait on it)

    async def _api(self) -> client.ApiClient:
        configuration = client.Configuration()
        if self.source == IN_CLUSTER:
            config.load_incluster_config(client_configuration=configuration)
        else:
            await config.load_kube_config(
                config_file=self.source, client_configuration=configuration
            )
        return client.ApiClient(configuration=configuration)

    async def run(self, stop: asyncio.Event) -> None:
        log.info("kubernetes discovery on (%s), pods with %s", self.source, SELECTOR)
        api = await self._api()
        try:
            v1 = client.CoreV1Api(api)
            tasks = [asyncio.create_task(self._follow(v1, ns, stop)) for ns in self.namespaces]
            tasks.append(asyncio.create_task(self._sync_loop(stop)))
            await stop.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await api.close()

    def _lister(self, v1: client.CoreV1Api, namespace: str) -> tuple[Any, tuple[str, ...]]:
        if namespace:
            return v1.list_namespaced_pod, (namespace,)
        return v1.list_pod_for_all_namespaces, ()

    async def _follow(self, v1: client.CoreV1Api, namespace: str, stop: asyncio.Event) -> None:
        lister, args = self._lister(v1, namespace)
        delay = 0.5
        while not stop.is_set():
            try:
                listed = await lister(*args, label_selector=SELECTOR)
                mine = {k for k in self.pods if not namespace or k.startswith(f"{namespace}/")}
                for key in mine:
                    del self.pods[key]
                for pod in listed.items:
                    self.pods[_key(pod)] = pod
                self.listed.add(namespace)
                self.changed.set()
                async with watch.Watch() as watcher:
                    events = watcher.stream(
                        lister,
                        *args,
                        label_selector=SELECTOR,
                        resource_version=listed.metadata.resource_version,
                        timeout_seconds=WATCH_S,
                    )
                    async for event in events:
                        self._on_event(event)
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("kubernetes discovery: %s (listing again in %.1fs)", exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 30.0)

    def _on_event(self, event: dict[str, Any]) -> None:
        pod = event.get("object")
        if event.get("type") == "BOOKMARK":
            return
        if event.get("type") == "ERROR" or pod is None or not hasattr(pod, "metadata"):
            raise RuntimeError(f"watch error: {event.get('raw_object') or event}")
        if event["type"] == "DELETED":
            self.pods.pop(_key(pod), None)
        else:
            self.pods[_key(pod)] = pod
        self.changed.set()

    def wanted(self) -> dict[str, ScrapeTargetCreate]:
        out: dict[str, ScrapeTargetCreate] = {}
        for key, pod in sorted(self.pods.items()):
            try:
                spec = target_for(
                    pod,
                    default_interval_s=self.default_interval_s,
                    default_timeout_s=self.default_timeout_s,
                )
            except (ValueError, ValidationError) as exc:
                log.warning("kubernetes discovery: pod %s skipped: %s", key, exc)
                continue
            if spec is not None:
                out[key] = spec
        return out

    async def _sync_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), RESYNC_S)
            await asyncio.sleep(0.2)  # let a burst of pod events settle into one write
            self.changed.clear()
            # Before every namespace is listed, an empty view would remove live targets.
            if len(self.listed) < len(self.namespaces) or not self.leader():
                continue
            try:
                async with self.sessions() as session:
                    added, changed, removed = await targets.sync_discovered(
                        session, source=targets.KUBERNETES, wanted=self.wanted()
                    )
            except Exception as exc:
                log.warning("kubernetes discovery: cannot write targets: %s", exc)
                self.changed.set()
                continue
            if added or changed or removed:
                log.info(
                    "kubernetes targets: %d added, %d changed, %d removed", added, changed, removed
                )
            self.synced += 1


def _key(pod: Any) -> str:
    return f"{pod.metadata.namespace}/{pod.metadata.name}"
