"""The catalogue API (internal: the gateway forwards /v1/apps…, /v1/builds… here)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Request
from pydantic import BaseModel, Field
from sqlmodel import select

from libs.objectstore import ObjectStore
from services.appmanager import deployments, market, service
from services.appmanager import spec as specs
from services.appmanager.models import Instance


class MarketRequest(BaseModel):
    market: str = Field(min_length=1, max_length=2000, description="file:///path/to/market")
    app: str = Field(pattern=specs.NAME)
    version: str = Field(pattern=specs.SEMVER.pattern)


class RollbackBody(BaseModel):
    revision: int = Field(default=0, ge=0, description="0: the last good one before now")


class BuildRequest(BaseModel):
    component: str | None = Field(default=None, max_length=63)
    version: str | None = Field(default=None, max_length=40)


@contextlib.contextmanager
def _http_errors() -> Iterator[None]:
    """The catalogue's errors as HTTP answers with their reason."""
    try:
        yield
    except service.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except service.Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    except market.MarketError as exc:
        raise HTTPException(422, str(exc)) from None


def _sessions(request: Request) -> Any:
    return request.app.state.sessions


def build_router(*, guard: Any, market_roots: list[str]) -> APIRouter:
    router = APIRouter(prefix="/internal/v1", dependencies=[Depends(guard)])

    def _folder(url: str) -> ObjectStore:
        with _http_errors():
            return market.market_store(url, market_roots)

    @router.post("/market/publish")
    async def market_publish(request: Request, body: MarketRequest) -> dict[str, Any]:
        folder = _folder(body.market)
        async with _sessions(request)() as session:
            with _http_errors():
                return await market.publish(
                    session, app=body.app, version=body.version, store=folder
                )

    @router.get("/market")
    async def market_list(market_url: Annotated[str, Query(alias="market")]) -> dict[str, Any]:
        with _http_errors():
            return await asyncio.to_thread(market.listing, _folder(market_url))

    @router.post("/market/install")
    async def market_install(request: Request, body: MarketRequest) -> dict[str, Any]:
        folder = _folder(body.market)
        async with _sessions(request)() as session:
            with _http_errors():
                result = await market.install(
                    session, store=folder, app=body.app, version=body.version
                )
        request.app.state.relay.wake()
        return result

    @router.post("/apps:apply")
    async def apply_app(
        request: Request,
        x_opsline_base_dir: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        body = await request.body()
        if len(body) > specs.MAX_SPEC_BYTES:
            raise HTTPException(413, f"opsline.yaml is larger than {specs.MAX_SPEC_BYTES} bytes")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPException(400, "opsline.yaml must be UTF-8 text") from None
        async with _sessions(request)() as session:
            try:
                result = await service.apply(session, text=text, base_dir=x_opsline_base_dir)
            except specs.SpecError as exc:
                raise HTTPException(
                    422, {"message": "invalid opsline.yaml", "errors": exc.errors}
                ) from None
            except service.Conflict as exc:
                raise HTTPException(409, str(exc)) from None
        request.app.state.relay.wake()
        return {"app": result.app, "action": result.action, "changes": result.changes}

    @router.get("/apps")
    async def list_apps(request: Request) -> dict[str, Any]:
        async with _sessions(request)() as session:
            return {"apps": [service.app_view(a) for a in await service.get_all(session)]}

    @router.get("/apps/{app}")
    async def get_app(request: Request, app: str) -> dict[str, Any]:
        async with _sessions(request)() as session:
            with _http_errors():
                return service.app_view(await service.get(session, name=app))

    @router.get("/apps/{app}/components")
    async def get_components(request: Request, app: str) -> dict[str, Any]:
        view = await get_app(request, app)
        return {"components": view["components"]}

    @router.post("/apps/{app}/builds", status_code=202)
    async def start_build(
        request: Request, app: str, body: Annotated[BuildRequest | None, Body()] = None
    ) -> dict[str, Any]:
        body = body or BuildRequest()
        async with _sessions(request)() as session:
            with _http_errors():
                build = await service.request_build(
                    session, app_name=app, component=body.component, version=body.version
                )
        request.app.state.relay.wake()
        return {"build_id": build.id, "version": build.version, "status": build.status}

    @router.get("/apps/{app}/builds")
    async def list_builds(request: Request, app: str) -> dict[str, Any]:
        async with _sessions(request)() as session:
            with _http_errors():
                builds = await service.list_builds(session, app_name=app)
        return {"builds": [service.build_view(b) for b in builds]}

    @router.get("/builds/{build_id}")
    async def get_build(request: Request, build_id: str) -> dict[str, Any]:
        async with _sessions(request)() as session:
            with _http_errors():
                return service.build_view(await service.get_build(session, build_id=build_id))

    @router.post("/builds/{build_id}/cancel", status_code=202)
    async def cancel_build(request: Request, build_id: str) -> dict[str, Any]:
        async with _sessions(request)() as session:
            with _http_errors():
                build = await service.cancel_build(session, build_id=build_id)
        request.app.state.relay.wake()
        return {"build_id": build.id, "status": "CANCEL_REQUESTED"}

    @router.get("/apps/{app}/packages")
    async def list_packages(request: Request, app: str) -> dict[str, Any]:
        async with _sessions(request)() as session:
            with _http_errors():
                packages = await service.list_packages(session, app_name=app)
        return {"packages": [service.package_view(p) for p in packages]}

    @router.post("/deployments", status_code=202)
    async def launch(request: Request) -> dict[str, Any]:
        body = await request.body()
        if len(body) > specs.MAX_SPEC_BYTES:
            raise HTTPException(413, f"the launch file is larger than {specs.MAX_SPEC_BYTES} bytes")
        async with _sessions(request)() as session:
            try:
                deployment = await deployments.launch(session, text=body.decode("utf-8"))
            except (specs.SpecError, UnicodeDecodeError) as exc:
                errors = exc.errors if isinstance(exc, specs.SpecError) else ["not UTF-8 text"]
                raise HTTPException(
                    422, {"message": "invalid launch file", "errors": errors}
                ) from None
            except service.NotFound as exc:
                raise HTTPException(404, str(exc)) from None
            except service.Conflict as exc:
                raise HTTPException(409, str(exc)) from None
        request.app.state.relay.wake()
        return deployments.deployment_view(deployment)

    @router.get("/deployments")
    async def list_deployments(request: Request, instance: str | None = None) -> dict[str, Any]:
        async with _sessions(request)() as session:
            rows = await deployments.list_all(session, instance_id=instance)
        return {"deployments": [deployments.deployment_view(d) for d in rows]}

    @router.get("/deployments/{deployment_id}")
    async def get_deployment(request: Request, deployment_id: str) -> dict[str, Any]:
        async with _sessions(request)() as session:
            with _http_errors():
                found = await deployments.get(session, deployment_id=deployment_id)
                return deployments.deployment_view(found)

    @router.post("/deployments/{deployment_id}/retry", status_code=202)
    async def retry(request: Request, deployment_id: str) -> dict[str, Any]:
        async with _sessions(request)() as session:
            with _http_errors():
                found = await deployments.retry(session, deployment_id=deployment_id)
                view = deployments.deployment_view(found)
        request.app.state.relay.wake()
        return view

    @router.post("/deployments/{deployment_id}/terminate", status_code=202)
    async def terminate(request: Request, deployment_id: str) -> dict[str, Any]:
        async with _sessions(request)() as session:
            with _http_errors():
                found = await deployments.terminate(session, deployment_id=deployment_id)
                view = deployments.deployment_view(found)
        request.app.state.relay.wake()
        return view

    @router.get("/instances")
    async def list_instances(request: Request) -> dict[str, Any]:
        async with _sessions(request)() as session:
            rows = (await session.exec(select(Instance).order_by(Instance.id))).all()
        return {"instances": [deployments.instance_view(i) for i in rows]}

    @router.get("/instances/{instance_id}")
    async def get_instance(request: Request, instance_id: str) -> dict[str, Any]:
        async with _sessions(request)() as session:
            with _http_errors():
                found = await deployments.get_instance(session, instance_id=instance_id)
                return deployments.instance_view(found)

    @router.post("/instances/{instance_id}/rollback", status_code=202)
    async def rollback(
        request: Request, instance_id: str, body: Annotated[RollbackBody | None, Body()] = None
    ) -> dict[str, Any]:
        async with _sessions(request)() as session:
            with _http_errors():
                deployment = await deployments.rollback(
                    session, instance_id=instance_id, revision=(body or RollbackBody()).revision
                )
        request.app.state.relay.wake()
        return deployments.deployment_view(deployment)

    @router.delete("/instances/{instance_id}", status_code=202)
    async def uninstall(request: Request, instance_id: str) -> dict[str, Any]:
        async with _sessions(request)() as session:
            with _http_errors():
                deployment = await deployments.uninstall(session, instance_id=instance_id)
        request.app.state.relay.wake()
        return deployments.deployment_view(deployment)

    return router
