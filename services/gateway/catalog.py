"""/v1 routes the application catalogue answers: forwarded to appmanager's API."""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import APIRouter, Body, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, Field

from services.gateway import access
from services.gateway.api import read_body
from services.gateway.deps import CurrentCaller

router = APIRouter(prefix="/v1", tags=["catalogue"])
_FORWARDED_HEADERS = ("content-type", "x-opsline-base-dir", "traceparent", "tracestate")


AppName = Annotated[str, Path(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
BuildId = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]


class BuildRequest(BaseModel):
    component: str | None = Field(default=None, description="build only this component")
    version: str | None = Field(default=None, description="MAJOR.MINOR.PATCH; default next patch")


async def forward(request: Request, peer: str, path: str) -> Response:
    """Send the request on to the owner's internal API and hand back its answer."""
    state = request.app.state
    base = state.settings.peer_urls().get(peer)
    if not base:
        raise HTTPException(503, f"no {peer} peer configured (OPSLINE_GATEWAY_PEERS)")
    body = await read_body(request, state.settings.max_body_bytes)
    # raw bytes: a base dir may hold non-ASCII characters, which text headers cannot carry
    headers: dict[bytes, bytes] = {
        k.encode(): v.encode("latin-1")
        for k, v in request.headers.items()
        if k in _FORWARDED_HEADERS
    }
    headers.update({k.encode(): v.encode() for k, v in state.internal_headers.items()})
    client: httpx.AsyncClient = state.http
    try:
        upstream = await client.request(
            request.method,
            f"{base}/internal/v1{path}",
            content=body,
            headers=headers,
            params=list(request.query_params.multi_items()),
        )
    except httpx.HTTPError as exc:
        raise HTTPException(503, f"{peer} unreachable: {exc}") from None
    if upstream.status_code >= 500:
        raise HTTPException(502, f"{peer} failed: {upstream.text[:500]}")
    return Response(
        await access.shape(request, upstream.status_code, upstream.content),
        status_code=upstream.status_code,
        media_type=upstream.headers.get("content-type"),
    )


@router.post("/apps:apply", summary="Create or update an app from opsline.yaml (the body)")
async def apply_app(request: Request, caller: CurrentCaller) -> Response:
    return await forward(request, "appmanager", "/apps:apply")


@router.get("/apps", summary="All apps")
async def list_apps(request: Request, caller: CurrentCaller) -> Response:
    return await forward(request, "appmanager", "/apps")


@router.get("/apps/{app}", summary="One app, with its components and parameters")
async def get_app(request: Request, caller: CurrentCaller, app: AppName) -> Response:
    return await forward(request, "appmanager", f"/apps/{app}")


@router.get("/apps/{app}/components", summary="An app's components")
async def get_components(request: Request, caller: CurrentCaller, app: AppName) -> Response:
    return await forward(request, "appmanager", f"/apps/{app}/components")


@router.post("/apps/{app}/builds", status_code=202, summary="Build an app (or one component)")
async def start_build(
    request: Request,
    caller: CurrentCaller,
    app: AppName,
    body: Annotated[BuildRequest | None, Body()] = None,
) -> Response:
    return await forward(request, "appmanager", f"/apps/{app}/builds")


@router.get("/apps/{app}/builds", summary="An app's builds, newest first")
async def list_builds(request: Request, caller: CurrentCaller, app: AppName) -> Response:
    return await forward(request, "appmanager", f"/apps/{app}/builds")


@router.get("/builds/{build_id}", summary="A build: status, steps with their logs, artifacts")
async def get_build(request: Request, caller: CurrentCaller, build_id: BuildId) -> Response:
    return await forward(request, "appmanager", f"/builds/{build_id}")


@router.post("/builds/{build_id}/cancel", status_code=202, summary="Cancel a build")
async def cancel_build(request: Request, caller: CurrentCaller, build_id: BuildId) -> Response:
    return await forward(request, "appmanager", f"/builds/{build_id}/cancel")


@router.get("/apps/{app}/packages", summary="An app's package versions, newest first")
async def list_packages(request: Request, caller: CurrentCaller, app: AppName) -> Response:
    return await forward(request, "appmanager", f"/apps/{app}/packages")


class MarketRequest(BaseModel):
    market: str = Field(description="file:///path/to/market (inside the allowed market folders)")
    app: str
    version: str


@router.post("/market/publish", summary="Publish a package version to a market")
async def market_publish(
    request: Request, caller: CurrentCaller, body: Annotated[MarketRequest, Body()]
) -> Response:
    return await forward(request, "appmanager", "/market/publish")


@router.get("/market", summary="The package versions in a market")
async def market_list(request: Request, caller: CurrentCaller, market: str) -> Response:
    return await forward(request, "appmanager", "/market")


@router.post("/market/install", summary="Install a package version from a market")
async def market_install(
    request: Request, caller: CurrentCaller, body: Annotated[MarketRequest, Body()]
) -> Response:
    return await forward(request, "appmanager", "/market/install")


InstanceId = Annotated[str, Path(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]


class RollbackRequest(BaseModel):
    revision: int = Field(default=0, ge=0, description="0: the last good revision before now")


@router.post("/deployments", status_code=202, summary="Launch or upgrade (a launch file, YAML)")
async def launch(request: Request, caller: CurrentCaller) -> Response:
    return await forward(request, "appmanager", "/deployments")


@router.get("/deployments", summary="Deployments, newest first (filter: instance)")
async def list_deployments(
    request: Request, caller: CurrentCaller, instance: str | None = None
) -> Response:
    return await forward(request, "appmanager", "/deployments")


@router.get("/deployments/{deployment_id}", summary="A deployment: state, components, reason")
async def get_deployment(
    request: Request, caller: CurrentCaller, deployment_id: BuildId
) -> Response:
    return await forward(request, "appmanager", f"/deployments/{deployment_id}")


@router.post(
    "/deployments/{deployment_id}/retry",
    status_code=202,
    summary="Run a WAIT_FOR_OP (or failed) deployment again, as a new revision",
)
async def retry_deployment(
    request: Request, caller: CurrentCaller, deployment_id: BuildId
) -> Response:
    return await forward(request, "appmanager", f"/deployments/{deployment_id}/retry")


@router.post(
    "/deployments/{deployment_id}/terminate",
    status_code=202,
    summary="Stop a deployment that has not finished (state TERMINATED)",
)
async def terminate_deployment(
    request: Request, caller: CurrentCaller, deployment_id: BuildId
) -> Response:
    return await forward(request, "appmanager", f"/deployments/{deployment_id}/terminate")


@router.get("/instances", summary="Instances: where each app runs, at which revision")
async def list_instances(request: Request, caller: CurrentCaller) -> Response:
    return await forward(request, "appmanager", "/instances")


@router.get("/instances/{instance_id}", summary="One instance")
async def get_instance(
    request: Request, caller: CurrentCaller, instance_id: InstanceId
) -> Response:
    return await forward(request, "appmanager", f"/instances/{instance_id}")


@router.get(
    "/instances/{instance_id}/logs",
    summary="The last lines its process components printed (local runtime)",
)
async def instance_logs(
    request: Request,
    caller: CurrentCaller,
    instance_id: InstanceId,
    component: str | None = None,
    tail: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    return await forward(request, "deploy", f"/instances/{instance_id}/logs")


@router.post(
    "/instances/{instance_id}/rollback",
    status_code=202,
    summary="Roll an instance back to an earlier revision",
)
async def rollback(
    request: Request,
    caller: CurrentCaller,
    instance_id: InstanceId,
    body: Annotated[RollbackRequest | None, Body()] = None,
) -> Response:
    return await forward(request, "appmanager", f"/instances/{instance_id}/rollback")


@router.delete("/instances/{instance_id}", status_code=202, summary="Uninstall an instance")
async def uninstall(request: Request, caller: CurrentCaller, instance_id: InstanceId) -> Response:
    return await forward(request, "appmanager", f"/instances/{instance_id}")


ClusterName = Annotated[str, Path(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]


class ClusterRequest(BaseModel):
    kubeconfig: str = Field(description="kubeconfig YAML, self-contained (inline certificates)")
    context: str | None = Field(default=None, description="default: its current-context")


@router.put(
    "/clusters/{name}",
    tags=["clusters"],
    summary="Register (or replace) a Kubernetes cluster; its kubeconfig is stored encrypted",
)
async def register_cluster(
    request: Request,
    caller: CurrentCaller,
    name: ClusterName,
    body: Annotated[ClusterRequest, Body()],
) -> Response:
    return await forward(request, "deploy", f"/clusters/{name}")


@router.get("/clusters", tags=["clusters"], summary="Registered clusters (never credentials)")
async def list_clusters(request: Request, caller: CurrentCaller) -> Response:
    return await forward(request, "deploy", "/clusters")


@router.get("/clusters/{name}", tags=["clusters"], summary="A cluster, and whether it answers")
async def get_cluster(request: Request, caller: CurrentCaller, name: ClusterName) -> Response:
    return await forward(request, "deploy", f"/clusters/{name}")


@router.delete("/clusters/{name}", status_code=204, tags=["clusters"], summary="Forget a cluster")
async def remove_cluster(request: Request, caller: CurrentCaller, name: ClusterName) -> Response:
    return await forward(request, "deploy", f"/clusters/{name}")
