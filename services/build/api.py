"""The owner's read API (internal: the gateway calls it with the internal token)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from services.build import service
from services.build.models import BuildTaskPublic


def _sessions(request: Request) -> Any:
    return request.app.state.sessions


def build_router(*, guard: Any) -> APIRouter:
    router = APIRouter(prefix="/internal/v1", dependencies=[Depends(guard)])

    @router.get("/builds/{build_id}")
    async def get_build(request: Request, build_id: str) -> BuildTaskPublic:
        async with _sessions(request)() as session:
            task = await service.get(session, build_id=build_id)
        if task is None:
            raise HTTPException(404, f"no build {build_id!r}")
        return BuildTaskPublic.from_task(task)

    @router.get("/builds")
    async def list_builds(
        request: Request,
        app: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> dict[str, list[BuildTaskPublic]]:
        async with _sessions(request)() as session:
            tasks = await service.get_all(session, app=app, limit=limit)
        return {"builds": [BuildTaskPublic.from_task(t) for t in tasks]}

    return router
