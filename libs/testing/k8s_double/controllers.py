"""Simulated controllers: deployment rollouts, job completion, HPA, namespace and finalizers.

A tick every few tens of milliseconds moves status forward the way kube-controller-manager
would, writing through the store so watchers see MODIFIED events. Failure injection
(`fail_rollout`, `fail_job`) is plain Python state read by the ticks.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from libs.testing.k8s_double.resources import (
    DEPLOYMENTS,
    EVENTS,
    HPAS,
    JOBS,
    NAMESPACES,
    RESOURCES,
)
from libs.testing.k8s_double.store import Key, now_iso

if TYPE_CHECKING:
    from libs.testing.k8s_double.server import K8sDouble

log = logging.getLogger(__name__)

SYSTEM_FINALIZERS = {"foregroundDeletion", "orphan"}
REVISION = "deployment.kubernetes.io/revision"
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


@dataclass
class Failure:
    reason: str
    message: str


@dataclass
class Rollout:
    """One deployment's progress towards its current pod template."""

    template_hash: str
    revision: int
    desired: int
    started: float  # monotonic time progress last (re)started
    base_ready: int  # new-template replicas ready at `started`
    old_available: int  # replicas of the previous template still serving at the start
    failure: Failure | None = None
    complete: bool = False
    announced: set[str] = field(default_factory=set)


def template_hash(template: Any) -> str:
    digest = int(hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest(), 16)
    out = ""
    for _ in range(10):
        digest, index = divmod(digest, len(_SAFE))
        out += _SAFE[index]
    return out


def _scaled(value: Any, replicas: int, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    text = str(value or "0")
    if text.endswith("%"):
        exact = replicas * int(text[:-1]) / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(text) if text.isdigit() else 0


def _condition(
    existing: list[dict[str, Any]],
    kind: str,
    status: str,
    reason: str,
    message: str,
    stamp: str,
    update_time: bool = True,
) -> dict[str, Any]:
    previous = next((c for c in existing if c.get("type") == kind), None)
    if previous and (previous.get("status"), previous.get("reason"), previous.get("message")) == (
        status,
        reason,
        message,
    ):
        return previous
    moved = previous is None or previous.get("status") != status
    condition = {"type": kind, "status": status}
    if update_time:
        condition["lastUpdateTime"] = stamp
    condition["lastTransitionTime"] = (
        previous["lastTransitionTime"] if previous and not moved else stamp
    )
    condition.update({"reason": reason, "message": message})
    return condition


def _compact(status: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """Counters the API omits when zero (`omitempty`)."""
    return {k: v for k, v in status.items() if not (k in keys and v == 0)}


class Controllers:
    def __init__(self, double: K8sDouble) -> None:
        self.double = double
        self.store = double.store
        self.rollouts: dict[str, Rollout] = {}  # by deployment uid
        self.pending_rollout_failures: dict[tuple[str, str], Failure] = {}
        self.job_failures: dict[tuple[str, str], Failure] = {}
        self.job_started: dict[str, float] = {}
        self.namespace_deleting: dict[str, float] = {}

    async def run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # a bug here must not kill the loop silently mid-test
                log.exception("k8s double controller tick failed")
            interval = min(0.05, max(0.005, self.double.rollout_seconds / 10))
            await asyncio.sleep(interval)

    def tick(self) -> None:
        with self.store.lock:
            now = time.monotonic()
            self._finalizers()
            self._namespaces(now)
            live = set()
            for key, obj in self.store.snapshot(DEPLOYMENTS):
                live.add(obj["metadata"]["uid"])
                self._deployment(key, obj, now)
            for uid in set(self.rollouts) - live:
                del self.rollouts[uid]
            for key, obj in self.store.snapshot(JOBS):
                self._job(key, obj, now)
            for key, obj in self.store.snapshot(HPAS):
                self._hpa(key, obj)

    # ------------------------------------------------------------------------ failures

    def fail_rollout(self, namespace: str, name: str, reason: str, message: str) -> None:
        with self.store.lock:
            self.pending_rollout_failures[(namespace, name)] = Failure(reason, message)

    def fail_job(self, namespace: str, name: str, reason: str, message: str) -> None:
        with self.store.lock:
            self.job_failures[(namespace, name)] = Failure(reason, message)

    def heal(self, namespace: str, name: str) -> None:
        with self.store.lock:
            self.pending_rollout_failures.pop((namespace, name), None)
            self.job_failures.pop((namespace, name), None)
            try:
                uid = self.store.get(DEPLOYMENTS, namespace, name)["metadata"]["uid"]
            except Exception:
                return
            rollout = self.rollouts.get(uid)
            if rollout and rollout.failure:
                rollout.failure = None
                rollout.started = time.monotonic()

    # ------------------------------------------------------------------------ helpers

    def event(
        self,
        obj: dict[str, Any],
        kind: str,
        reason: str,
        message: str,
        component: str,
        event_type: str = "Normal",
    ) -> None:
        meta = obj["metadata"]
        namespace = meta.get("namespace", "default")
        stamp = now_iso()
        body = {
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
            "involvedObject": {
                "kind": kind,
                "namespace": namespace,
                "name": meta["name"],
                "uid": meta["uid"],
                "apiVersion": obj.get("apiVersion", ""),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message,
            "source": {"component": component},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "type": event_type,
            "reportingComponent": component,
            "reportingInstance": "",
        }
        try:
            self.store.create(EVENTS, namespace, body, component)
        except Exception:  # the namespace is going away: no event, as in a real cluster
            pass

    # ------------------------------------------------------------------------ deployments

    def _ready(self, rollout: Rollout, now: float) -> int:
        if rollout.failure is not None or rollout.desired <= rollout.base_ready:
            return min(rollout.base_ready, rollout.desired)
        seconds = max(self.double.rollout_seconds, 1e-6)
        fraction = min(1.0, (now - rollout.started) / seconds)
        return rollout.base_ready + math.floor(fraction * (rollout.desired - rollout.base_ready))

    def _deployment(self, key: Key, d: dict[str, Any], now: float) -> None:
        meta, spec = d["metadata"], d.get("spec") or {}
        if meta.get("deletionTimestamp"):
            return
        ns, name = key[2], key[3]
        desired = int(spec.get("replicas", 1))
        current_hash = template_hash(spec.get("template"))
        rollout = self.rollouts.get(meta["uid"])
        status = d.get("status") or {}
        if rollout is None or rollout.template_hash != current_hash:
            rollout = Rollout(
                template_hash=current_hash,
                revision=rollout.revision + 1 if rollout else 1,
                desired=desired,
                started=now,
                base_ready=0,
                old_available=int(status.get("availableReplicas", 0)) if rollout else 0,
                failure=self.pending_rollout_failures.pop((ns, name), None),
            )
            self.rollouts[meta["uid"]] = rollout
        elif desired != rollout.desired:
            rollout.base_ready = min(self._ready(rollout, now), desired)
            rollout.desired, rollout.started, rollout.complete = desired, now, False
        if (
            not rollout.complete
            and rollout.failure is None
            and ((ns, name) in self.pending_rollout_failures)
        ):
            rollout.base_ready = self._ready(rollout, now)
            rollout.started = now
            rollout.failure = self.pending_rollout_failures.pop((ns, name))

        strategy = spec.get("strategy") or {}
        rolling = strategy.get("rollingUpdate") or {}
        recreate = strategy.get("type") == "Recreate"
        surge = 0 if recreate else _scaled(rolling.get("maxSurge", "25%"), desired, True)
        unavailable = (
            desired if recreate else _scaled(rolling.get("maxUnavailable", "25%"), desired, False)
        )
        ready = self._ready(rollout, now)
        updated = desired if ready >= desired else min(desired, ready + max(surge, 1))
        old = max(0, min(rollout.old_available, desired - unavailable - ready))
        replicas = updated + old
        available = ready + old
        rollout.complete = rollout.failure is None and ready >= desired and old == 0

        rs_name = f"{name}-{rollout.template_hash}"
        if "scaled-up" not in rollout.announced:
            rollout.announced.add("scaled-up")
            self.event(
                d,
                "Deployment",
                "ScalingReplicaSet",
                f"Scaled up replica set {rs_name} to {desired}",
                "deployment-controller",
            )
        if rollout.failure and "failure" not in rollout.announced:
            rollout.announced.add("failure")
            self.event(
                d,
                "Deployment",
                rollout.failure.reason,
                rollout.failure.message,
                "kubelet",
                "Warning",
            )
        stamp = now_iso()
        conditions = status.get("conditions") or []
        deadline = float(spec.get("progressDeadlineSeconds", 600)) * self.double.deadline_scale
        if rollout.complete:
            progressing = (
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
            )
        elif rollout.failure and now - rollout.started >= deadline:
            progressing = (
                "False",
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{rs_name}" has timed out progressing.',
            )
        elif ready == 0 and rollout.base_ready == 0:
            progressing = ("True", "NewReplicaSetCreated", f'Created new replica set "{rs_name}"')
        else:
            progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')
        if available >= desired - unavailable:
            avail = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            avail = (
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        new_status = _compact(
            {
                "observedGeneration": meta.get("generation", 1),
                "replicas": replicas,
                "updatedReplicas": updated,
                "readyReplicas": available,
                "availableReplicas": available,
                "unavailableReplicas": max(0, replicas - available),
                "conditions": [
                    _condition(conditions, "Available", *avail, stamp),
                    _condition(conditions, "Progressing", *progressing, stamp),
                ],
            },
            (
                "replicas",
                "updatedReplicas",
                "readyReplicas",
                "availableReplicas",
                "unavailableReplicas",
            ),
        )

        def mutate(obj: dict[str, Any]) -> None:
            obj["status"] = new_status
            obj["metadata"].setdefault("annotations", {})[REVISION] = str(rollout.revision)

        self.store.controller_write(DEPLOYMENTS, key, mutate)

    # ------------------------------------------------------------------------ jobs

    def _job(self, key: Key, job: dict[str, Any], now: float) -> None:
        meta, spec = job["metadata"], job.get("spec") or {}
        status = job.get("status") or {}
        done = any(c.get("type") in ("Complete", "Failed") for c in status.get("conditions") or [])
        if meta.get("deletionTimestamp") or spec.get("suspend") or done:
            return
        started = self.job_started.setdefault(meta["uid"], now)
        stamp = now_iso()
        new_status: dict[str, Any] = {
            "startTime": status.get("startTime") or stamp,
            "active": int(spec.get("parallelism", 1)),
            "ready": 0,
            "terminating": 0,
            "uncountedTerminatedPods": {},
        }
        if not status.get("startTime"):
            self.event(
                job,
                "Job",
                "SuccessfulCreate",
                f"Created pod: {meta['name']}-{template_hash(meta['uid'])[:5]}",
                "job-controller",
            )
        if now - started >= self.double.rollout_seconds:
            new_status.pop("active")
            failure = self.job_failures.get((key[2], key[3]))
            if failure is not None:
                new_status["failed"] = int(spec.get("backoffLimit", 6)) + 1
                new_status["conditions"] = [
                    _condition([], kind, "True", failure.reason, failure.message, stamp, False)
                    | {"lastProbeTime": stamp}
                    for kind in ("FailureTarget", "Failed")
                ]
                self.event(job, "Job", failure.reason, failure.message, "job-controller", "Warning")
            else:
                new_status["succeeded"] = int(spec.get("completions", 1))
                new_status["completionTime"] = stamp
                new_status["conditions"] = [
                    _condition([], kind, "True", reason, message, stamp, False)
                    | {"lastProbeTime": stamp}
                    for kind, reason, message in (
                        (
                            "SuccessCriteriaMet",
                            "CompletionsReached",
                            "Reached expected number of succeeded pods",
                        ),
                        (
                            "Complete",
                            "CompletionsReached",
                            "Reached expected number of succeeded pods",
                        ),
                    )
                ]
                self.event(job, "Job", "Completed", "Job completed", "job-controller")

        def mutate(obj: dict[str, Any]) -> None:
            obj["status"] = new_status

        self.store.controller_write(JOBS, key, mutate)

    # ------------------------------------------------------------------------ HPAs

    def _hpa(self, key: Key, hpa: dict[str, Any]) -> None:
        spec = hpa.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        if ref.get("kind") != "Deployment":
            return
        target_key = self.store.key(DEPLOYMENTS, key[2], ref.get("name", ""))
        target = self.store.objects.get(target_key)
        if target is None:
            return
        low, high = int(spec.get("minReplicas", 1)), int(spec.get("maxReplicas", 1))
        replicas = int((target.get("spec") or {}).get("replicas", 1))
        wanted = min(max(replicas, low), high)
        if wanted != replicas:

            def scale(obj: dict[str, Any]) -> None:
                obj["spec"]["replicas"] = wanted
                obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1

            self.store.controller_write(DEPLOYMENTS, target_key, scale, subresource="scale")
        current = int((target.get("status") or {}).get("replicas", 0))
        new_status = _compact(
            {"currentReplicas": current, "desiredReplicas": wanted}, ("currentReplicas",)
        )

        def mutate(obj: dict[str, Any]) -> None:
            obj["status"] = {**(obj.get("status") or {}), **new_status}

        self.store.controller_write(HPAS, key, mutate)

    # ------------------------------------------------------------------------ deletion

    def _finalizers(self) -> None:
        for rt in RESOURCES:
            if rt is NAMESPACES:
                continue
            for key, obj in self.store.snapshot(rt):
                meta = obj["metadata"]
                if meta.get("deletionTimestamp") and set(meta.get("finalizers") or []) <= (
                    SYSTEM_FINALIZERS
                ):
                    self.store.remove(rt, key)

    def _namespaces(self, now: float) -> None:
        for key, ns in self.store.snapshot(NAMESPACES):
            name = ns["metadata"]["name"]
            if not ns["metadata"].get("deletionTimestamp"):
                self.namespace_deleting.pop(name, None)
                continue
            since = self.namespace_deleting.setdefault(name, now)
            if now - since < self.double.namespace_termination_seconds:
                continue
            for rt in RESOURCES:
                if rt.namespaced:
                    for obj_key, _ in self.store.snapshot(rt):
                        if obj_key[2] == name:
                            self.store.remove(rt, obj_key)
            self.store.remove(NAMESPACES, key)
            self.namespace_deleting.pop(name, None)
