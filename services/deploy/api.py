"""deploy's own API (internal: the gateway forwards /v1/clusters… here)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, Field

from services.deploy import clusters
from services.deploy.kubernetes import KubernetesTarget
from services.deploy.local_runtime import LocalRuntime

ClusterName = Annotated[str, Path(pattern=clusters.NAME_PATTERN)]
CHECK_TIMEOUT_S = 5.0


class ClusterBody(BaseModel):
    kubeconfig: str = Field(
        min_length=1,
        max_length=clusters.MAX_KUBECONFIG_BYTES,
        description="the kubeconfig as YAML text, self-contained (inline certificates)",
    )
    context: str | None = Field(
        default=None, max_length=253, description="default: the kubeconfig's current-context"
    )


async def _reachable(config: dict[str, Any]) -> dict[str, Any]:
    """Ask the API server for its version: whether deploy can reach it, and if not, why."""
    try:
        async with KubernetesTarget(config) as target:
            version = await asyncio.wait_for(target.version(), CHECK_TIMEOUT_S)
    except TimeoutError:
        return {"reachable": False, "error": f"no answer within {CHECK_TIMEOUT_S:g}s"}
    except Exception as exc:  # any failure is the answer: a wrong address, a bad token, …
        return {"reachable": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    return {"reachable": True, "version": version}


def build_router(*, guard: Any) -> APIRouter:
    router = APIRouter(prefix="/internal/v1", dependencies=[Depends(guard)])

    def _sessions(request: Request) -> Any:
        return request.app.state.sessions

    @router.get("/instances/{instance}/logs")
    async def instance_logs(
        request: Request,
        instance: ClusterName,
        component: Annotated[str | None, Query(max_length=63)] = None,
        tail: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> dict[str, Any]:
        """The last lines each process component of a local instance printed."""
        runtime: LocalRuntime = request.app.state.local_runtime
        names = runtime.components(instance)
        if not names:
            raise HTTPException(404, f"no process of instance {instance!r} runs on this host")
        if component is not None and component not in names:
            raise HTTPException(404, f"instance {instance!r} has no component {component!r}")
        chosen = [component] if component else names
        return {
            "instance": instance,
            "components": {name: runtime.logs(instance, name, tail) for name in chosen},
        }

    @router.put("/clusters/{name}")
    async def register(
        request: Request, response: Response, name: ClusterName, body: ClusterBody
    ) -> dict[str, Any]:
        sealer: clusters.Sealer = request.app.state.sealer
        async with _sessions(request)() as session:
            try:
                row, created = await clusters.register(
                    session, sealer, name=name, text=body.kubeconfig, context=body.context
                )
            except clusters.ClusterError as exc:
                raise HTTPException(
                    422, {"message": "unusable kubeconfig", "errors": exc.errors}
                ) from None
            config = sealer.open(row.sealed)
        response.status_code = 201 if created else 200
        return clusters.view(row) | await _reachable(config)

    @router.get("/clusters")
    async def list_clusters(request: Request) -> dict[str, Any]:
        async with _sessions(request)() as session:
            rows = await clusters.list_all(session)
        return {"clusters": [clusters.view(r) for r in rows]}

    @router.get("/clusters/{name}")
    async def get_cluster(request: Request, name: ClusterName) -> dict[str, Any]:
        async with _sessions(request)() as session:
            try:
                row = await clusters.get(session, name)
            except clusters.ClusterNotFound as exc:
                raise HTTPException(404, str(exc)) from None
            config = request.app.state.sealer.open(row.sealed)
        return clusters.view(row) | await _reachable(config)

    @router.delete("/clusters/{name}", status_code=204)
    async def remove(request: Request, name: ClusterName) -> Response:
        async with _sessions(request)() as session:
            try:
                await clusters.remove(session, name)
            except clusters.ClusterNotFound as exc:
                raise HTTPException(404, str(exc)) from None
            except clusters.ClusterInUse as exc:
                raise HTTPException(409, str(exc)) from None
        return Response(status_code=204)

    return router
