"""The deploy runner: claims deployments, rolls them out, and announces every transition.

`cluster: local` runs process components on this host (the local runtime); any other
cluster name is a registered kubeconfig, where components become Kubernetes objects
applied server-side, waited for, and pruned of what the new revision no longer has.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shlex
from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.deploy import clusters, drift, service
from services.deploy.charts import render_helm
from services.deploy.kubernetes import (
    KINDS,
    KubernetesError,
    KubernetesTarget,
    RenderError,
    RolloutError,
    render,
)
from services.deploy.local_runtime import LocalRuntime, LocalRuntimeError
from services.deploy.models import DeployTask, InstanceState, Revision

log = logging.getLogger(__name__)


class DeployError(Exception):
    pass


def _timeout(objects: list[dict[str, Any]], runner: Runner) -> float:
    """How long a component's rollout may take: its progress deadline (plus a margin for
    the controller to report it), else the runner's ready timeout."""
    deadlines = [
        float(o["spec"].get("progressDeadlineSeconds") or 0) + 30
        for o in objects
        if o["kind"] == "Deployment"
    ]
    return max([runner.ready_timeout_s, *deadlines])


def _plain(value: Any) -> Any:
    """Numbers come back from protobuf Structs as floats: 8031.0 means 8031."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _port(traits: dict[str, Any]) -> int | None:
    for port in traits.get("ports") or []:
        value = _plain(port.get("port")) if isinstance(port, dict) else None
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, int) and 0 < value < 65536:
            return value
    return None


def _command(traits: dict[str, Any], build: dict[str, Any]) -> list[str]:
    command = traits.get("command") or build.get("command")
    if not command:
        raise DeployError("no command: set traits.command (e.g. 'python app.py')")
    return command if isinstance(command, list) else shlex.split(str(command))


class Runner:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        runtime: LocalRuntime,
        sealer: clusters.Sealer,
        worker: str,
        max_parallel: int,
        heartbeat_s: float,
        heartbeat_timeout_s: float,
        ready_timeout_s: float,
        wake: Callable[[], None],
        drift_interval_s: float = 60.0,
    ) -> None:
        self.sessions = sessions
        self.runtime = runtime
        self.sealer = sealer
        self.worker = worker
        self.max_parallel = max_parallel
        self.heartbeat_s = heartbeat_s
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.ready_timeout_s = ready_timeout_s
        self.wake_relay = wake
        self.drift_interval_s = drift_interval_s
        self._drift_checked = 0.0
        self.running: dict[str, asyncio.Task[None]] = {}
        self._terminating: set[str] = set()
        self._poke = asyncio.Event()

    def poke(self) -> None:
        self._poke.set()

    async def restore(self) -> None:
        """Processes die with the runtime: start every instance's current revision again."""
        async with self.sessions() as session:
            states = (await session.exec(select(InstanceState))).all()
            for state in states:
                if state.cluster != "local" or not state.current_revision:
                    continue
                row = await session.get(Revision, (state.instance, state.current_revision))
                if row is None:
                    continue
                try:
                    await self._roll_out(orjson.loads(row.request), row.revision, [])
                    log.info("restored %s at revision %d", state.instance, row.revision)
                except Exception as exc:
                    log.warning("could not restore %s: %s", state.instance, exc)

    async def run(self, stop: asyncio.Event) -> None:
        await self.restore()
        beat = 0.0
        while not stop.is_set():
            loop = asyncio.get_running_loop()
            if loop.time() - beat >= self.heartbeat_s:
                beat = loop.time()
                async with self.sessions() as session:
                    await service.heartbeat(
                        session, deployment_ids=list(self.running), worker=self.worker
                    )
                    reaped = await service.reap(session, timeout_s=self.heartbeat_timeout_s)
                    await session.commit()
                if reaped:
                    log.info("reaper: %s", ", ".join(reaped))
                    self.wake_relay()
            await self._terminate_requested()
            free = self.max_parallel - len(self.running)
            if free > 0:
                async with self.sessions() as session:
                    taken = await service.claim(session, worker=self.worker, limit=free)
                    await session.commit()
                if taken:
                    self.wake_relay()
                for deployment_id in taken:
                    task = asyncio.create_task(self._execute(deployment_id))
                    self.running[deployment_id] = task
                    task.add_done_callback(functools.partial(self._done, deployment_id))
            if loop.time() - self._drift_checked >= self.drift_interval_s:
                self._drift_checked = loop.time()
                try:
                    await self.check_drift()
                except Exception as exc:  # a cluster that does not answer: try next time
                    log.warning("drift check: %s", exc)
            self._poke.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), 0.5)
        for task in list(self.running.values()):
            task.cancel()
        await asyncio.gather(*self.running.values(), return_exceptions=True)

    async def _terminate_requested(self) -> None:
        """Stop what operators asked to stop: ours in progress, and any not yet taken."""
        async with self.sessions() as session:
            wanted = await service.terminations(session)
            for deployment_id in wanted:
                if deployment_id in self.running:
                    if deployment_id not in self._terminating:
                        self._terminating.add(deployment_id)
                        self.running[deployment_id].cancel()
                    continue
                task = await session.get(DeployTask, deployment_id)
                if task is not None and task.state == "CREATED":
                    await service.transition(
                        session, task, "TERMINATED", reason="terminated by request (CREATED)"
                    )
            await session.commit()

    def _done(self, deployment_id: str, _task: asyncio.Task[None]) -> None:
        self.running.pop(deployment_id, None)
        self.poke()

    async def _update(self, deployment_id: str, state: str, **kwargs: Any) -> None:
        async with self.sessions() as session:
            task = await session.get(DeployTask, deployment_id)
            if task is None or task.worker != self.worker:
                return
            await service.transition(session, task, state, **kwargs)
            await session.commit()
        self.wake_relay()

    async def _execute(self, deployment_id: str) -> None:
        async with self.sessions() as session:
            task = await session.get(DeployTask, deployment_id)
            assert task is not None
            kind, instance, request = task.kind, task.instance, orjson.loads(task.request)
        try:
            if kind == "uninstall":
                await self._uninstall(deployment_id, instance)
            elif kind == "rollback":
                await self._rollback(deployment_id, instance, int(request.get("revision", 0)))
            else:
                await self._deploy(deployment_id, instance, request)
        except asyncio.CancelledError:
            if deployment_id not in self._terminating:
                raise  # shutting down: the reaper gives it to another worker
            self._terminating.discard(deployment_id)
            log.info("deployment %s terminated by request", deployment_id)
            await self._update(
                deployment_id,
                "TERMINATED",
                reason="terminated by request during the rollout; what was applied so far "
                "stays: deploy again or roll the instance back",
            )
        except Exception as exc:
            log.exception("deployment %s failed", deployment_id)
            await self._update(deployment_id, "FAILURE", reason=f"{type(exc).__name__}: {exc}")

    async def _next_revision(self, instance: str) -> int:
        async with self.sessions() as session:
            rows = (
                await session.exec(select(Revision.revision).where(Revision.instance == instance))
            ).all()
        return max(rows, default=0) + 1

    async def _roll_out(
        self, request: dict[str, Any], revision: int, states: list[dict[str, str]]
    ) -> list[dict[str, str]]:
        """Install and switch every component; returns the failed ones (with reasons)."""
        target = request.get("target", {})
        if target.get("cluster", "local") != "local":
            return await self._roll_out_kubernetes(request, revision, states)
        failed = []
        for release in request.get("components", []):
            spec, artifact = release["spec"], release.get("artifact", {})
            name = spec["name"]
            entry = next((s for s in states if s["name"] == name), None)
            if spec.get("type") != "process":
                reason = (
                    f"component {name}: type {spec.get('type')} needs a Kubernetes "
                    "target; the local runtime runs process components"
                )
                failed.append({"name": name, "state": "FAILURE", "reason": reason})
                continue
            traits = spec.get("traits", {})
            try:
                await self.runtime.install(
                    request["instance"], name, revision, artifact["uri"], artifact["digest"]
                )
                await self.runtime.switch(
                    request["instance"],
                    name,
                    revision,
                    command=_command(traits, spec.get("build", {})),
                    env={str(k): str(_plain(v)) for k, v in (traits.get("env") or {}).items()}
                    | {"OPSLINE_PACKAGE_VERSION": request.get("version", "")},
                    port=_port(traits),
                    replicas=int(_plain(traits.get("replicas", 1)) or 1),
                    ready_timeout=self.ready_timeout_s,
                )
                if entry is not None:
                    entry["state"] = "SUCCESS"
            except (LocalRuntimeError, DeployError, OSError, ValueError, KeyError) as exc:
                failed.append(
                    {"name": name, "state": "FAILURE", "reason": str(exc) or type(exc).__name__}
                )
        return failed

    async def check_drift(self) -> None:
        """Announce drift (and its end) for instances on clusters with nothing in progress."""
        async with self.sessions() as session:
            busy = set(
                (
                    await session.exec(
                        select(DeployTask.instance).where(
                            col(DeployTask.state).in_(
                                ("CREATED", "PROCESSING", "WAITING", "ROLLING_BACK")
                            )
                        )
                    )
                ).all()
            )
            states = [
                s
                for s in (await session.exec(select(InstanceState))).all()
                if s.cluster != "local" and s.current_revision and s.instance not in busy
            ]
        for state in states:
            async with self.sessions() as session:
                row = await session.get(Revision, (state.instance, state.current_revision))
            if row is None:
                continue
            request = orjson.loads(row.request)
            async with await self._cluster(state.cluster) as cluster:
                live = await cluster.live(state.namespace, state.instance)
            found = drift.differences(request, row.revision, live)
            text = "; ".join(found)
            if text == state.drift:
                continue
            async with self.sessions() as session:
                current = await session.get(InstanceState, state.instance)
                if current is None:
                    continue
                current.drift = text
                session.add(current)
                service.announce_drift(
                    session, instance=state.instance, revision=row.revision, differences=found
                )
                await session.commit()
            self.wake_relay()
            log.info("%s: %s", state.instance, f"drift: {text}" if text else "back in sync")

    async def _cluster(self, name: str) -> KubernetesTarget:
        async with self.sessions() as session:
            try:
                config = await clusters.load(session, self.sealer, name)
            except (clusters.ClusterNotFound, ValueError) as exc:
                raise DeployError(str(exc)) from None
        return KubernetesTarget(config)

    async def _roll_out_kubernetes(
        self, request: dict[str, Any], revision: int, states: list[dict[str, str]]
    ) -> list[dict[str, str]]:
        target = request["target"]
        namespace, instance = target.get("namespace", "default"), request["instance"]
        failed: list[dict[str, str]] = []
        keep: set[tuple[str, str]] = set()
        async with await self._cluster(target["cluster"]) as cluster:
            rendered: dict[str, list[dict[str, Any]]] = {}
            for release in request.get("components", []):
                name = release["spec"]["name"]
                try:
                    if release["spec"].get("type") == "helm":
                        objects = await render_helm(instance, namespace, revision, release)
                    else:
                        objects = render(instance, namespace, revision, release)
                    keep |= {(o["kind"], o["metadata"]["name"]) for o in objects}
                    await cluster.apply(namespace, objects)
                    rendered[name] = objects
                except (RenderError, KubernetesError) as exc:
                    failed.append(
                        {"name": name, "state": "FAILURE", "reason": str(exc) or type(exc).__name__}
                    )

            async def wait(name: str, objects: list[dict[str, Any]]) -> None:
                try:
                    await cluster.wait(namespace, objects, timeout=_timeout(objects, self))
                except (KubernetesError, RolloutError) as exc:
                    failed.append(
                        {"name": name, "state": "FAILURE", "reason": str(exc) or type(exc).__name__}
                    )
                    return
                entry = next((s for s in states if s["name"] == name), None)
                if entry is not None:
                    entry["state"] = "SUCCESS"

            # every component rolls out at once: the slowest one sets the pace
            await asyncio.gather(*(wait(n, o) for n, o in rendered.items()))
            await self._remember(
                instance,
                revision,
                {
                    r["spec"]["name"]: rendered[r["spec"]["name"]]
                    for r in request.get("components", [])
                    if r["spec"].get("type") == "helm" and r["spec"]["name"] in rendered
                },
            )
            if not failed:
                kinds = {kind for kind, _ in keep} | await self._kinds_before(instance)
                pruned = await cluster.prune(namespace, instance, keep, kinds)
                if pruned:
                    log.info("%s: pruned %s", instance, ", ".join(pruned))
        return failed

    async def _kinds_before(self, instance: str) -> set[str]:
        """The kinds the instance's current revision has: what pruning must look through
        besides the new revision's own (all kinds when that revision cannot be read)."""
        async with self.sessions() as session:
            state = await session.get(InstanceState, instance)
            row = (
                await session.get(Revision, (instance, state.current_revision))
                if state is not None and state.current_revision
                else None
            )
        if state is None or not state.current_revision:
            return set()
        if row is None:
            return set(KINDS)
        request = orjson.loads(row.request)
        kinds: set[str] = set()
        for release in request.get("components", []):
            try:
                objects = drift.desired(request, release, row.revision)
            except RenderError:
                return set(KINDS)
            kinds |= {o["kind"] for o in objects}
        return kinds

    async def _remember(
        self, instance: str, revision: int, charts: dict[str, list[dict[str, Any]]]
    ) -> None:
        """Keep what helm components rendered to: drift is checked against exactly that."""
        if not charts:
            return
        async with self.sessions() as session:
            row = await session.get(Revision, (instance, revision))
            if row is not None:
                stored = orjson.loads(row.request)
                stored["rendered"] = {**stored.get("rendered", {}), **charts}
                row.request = orjson.dumps(stored).decode()
                session.add(row)
                await session.commit()

    async def _deploy(self, deployment_id: str, instance: str, request: dict[str, Any]) -> None:
        revision = await self._next_revision(instance)
        states = [
            {"name": r["spec"]["name"], "state": "PROCESSING", "reason": ""}
            for r in request.get("components", [])
        ]
        await self._update(deployment_id, "PROCESSING", components=states, revision=revision)
        async with self.sessions() as session:
            state = await session.get(InstanceState, instance)
            previous = state.current_revision if state else 0
            session.add(
                Revision(
                    instance=instance,
                    revision=revision,
                    deployment_id=deployment_id,
                    request=orjson.dumps(request).decode(),
                )
            )
            await session.commit()
        await self._update(deployment_id, "WAITING", components=states)
        failed = await self._roll_out(request, revision, states)
        for f in failed:
            entry = next(s for s in states if s["name"] == f["name"])
            entry.update(f)
        if not failed:
            await self._mark_current(instance, request, revision)
            await self._update(deployment_id, "SUCCESS", components=states, reason="")
            return
        reason = "; ".join(f["reason"] for f in failed)
        if request.get("auto_rollback") and previous:
            await self._update(deployment_id, "ROLLING_BACK", components=states, reason=reason)
            await self._restore_revision(instance, previous)
            await self._update(
                deployment_id,
                "ROLLED_BACK",
                components=states,
                reason=f"rolled back to revision {previous}: {reason}",
                revision=previous,
            )
            return
        await self._update(deployment_id, "WAIT_FOR_OP", components=states, reason=reason)

    async def _mark_current(self, instance: str, request: dict[str, Any], revision: int) -> None:
        target = request.get("target", {})
        async with self.sessions() as session:
            row = await session.get(Revision, (instance, revision))
            if row is not None:
                row.good = True
                session.add(row)
            state = await session.get(InstanceState, instance) or InstanceState(
                instance=instance,
                cluster=target.get("cluster", "local"),
                namespace=target.get("namespace", "default"),
            )
            state.current_revision = revision
            session.add(state)
            await session.commit()

    async def _restore_revision(self, instance: str, revision: int) -> dict[str, Any]:
        async with self.sessions() as session:
            row = await session.get(Revision, (instance, revision))
        if row is None:
            raise DeployError(f"instance {instance} has no revision {revision}")
        request = orjson.loads(row.request)
        failed = await self._roll_out(request, revision, [])
        if failed:
            raise DeployError("; ".join(f["reason"] for f in failed))
        await self._mark_current(instance, request, revision)
        return request

    async def _rollback(self, deployment_id: str, instance: str, revision: int) -> None:
        async with self.sessions() as session:
            state = await session.get(InstanceState, instance)
            if state is None:
                raise DeployError(f"instance {instance} has nothing deployed to roll back")
            good = (
                await session.exec(
                    select(Revision.revision).where(
                        Revision.instance == instance,
                        col(Revision.good).is_(True),
                        Revision.revision < state.current_revision,
                    )
                )
            ).all()
        target = revision or max(good, default=0)
        if not target:
            raise DeployError(
                f"instance {instance} has no good revision before {state.current_revision}"
            )
        await self._update(deployment_id, "ROLLING_BACK", revision=target)
        request = await self._restore_revision(instance, target)
        components = [
            {"name": r["spec"]["name"], "state": "SUCCESS", "reason": ""}
            for r in request.get("components", [])
        ]
        async with self.sessions() as session:
            task = await session.get(DeployTask, deployment_id)
            if task is not None:
                task.request = orjson.dumps({**request, "revision": target}).decode()
                session.add(task)
                await session.commit()
        await self._update(
            deployment_id,
            "SUCCESS",
            components=components,
            revision=target,
            reason=f"rolled back to revision {target}",
        )

    async def _uninstall(self, deployment_id: str, instance: str) -> None:
        async with self.sessions() as session:
            found = await session.get(InstanceState, instance)
        if found is not None and found.cluster != "local":
            async with await self._cluster(found.cluster) as cluster:
                removed = await cluster.uninstall(found.namespace, instance)
            log.info("%s: deleted %s", instance, ", ".join(removed) or "nothing")
        else:
            await self.runtime.uninstall(instance)
        async with self.sessions() as session:
            state = await session.get(InstanceState, instance)
            if state is not None:
                await session.delete(state)
            await session.commit()
        await self._update(deployment_id, "SUCCESS", reason="uninstalled")
