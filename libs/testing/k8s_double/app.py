"""The FastAPI app: the API server's URL layout, verbs, auth, content types and watch streams."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from libs.testing.k8s_double import errors, resources
from libs.testing.k8s_double.errors import ApiError, bad_request
from libs.testing.k8s_double.resources import ResourceType
from libs.testing.k8s_double.selectors import (
    parse_field_selector,
    parse_label_selector,
    selector_requirements,
)
from libs.testing.k8s_double.store import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_PATCH,
)

if TYPE_CHECKING:
    from libs.testing.k8s_double.server import K8sDouble

log = logging.getLogger(__name__)

OPEN_PATHS = {"/healthz", "/livez", "/readyz"}
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
Scope = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]


class BearerAuth:
    """401 Unauthorized (a Status) for any request without the double's bearer token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            headers = dict(scope.get("headers") or [])
            if headers.get(b"authorization") != self.expected:
                body = ApiError(401, "Unauthorized", "Unauthorized").status()
                response = JSONResponse(body, status_code=401)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _json(body: Any, code: int = 200) -> Response:
    return Response(json.dumps(body), status_code=code, media_type="application/json")


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _dry_run(values: list[str]) -> bool:
    for value in values:
        if value != "All":
            raise errors.invalid(
                "",
                "",
                "",
                [
                    errors.Cause(
                        "FieldValueNotSupported", "dryRun", 'supported values: "All"', value
                    )
                ],
            )
    return bool(values)


def _manager(request: Request, required: bool) -> str:
    manager = request.query_params.get("fieldManager") or ""
    if len(manager) > 128:
        raise errors.invalid(
            "PatchOptions",
            "meta.k8s.io",
            "",
            [
                errors.Cause(
                    "FieldValueTooLong", "fieldManager", "must have at most 128 bytes", manager
                )
            ],
        )
    if not manager and required:
        raise errors.invalid(
            "PatchOptions",
            "meta.k8s.io",
            "",
            [errors.Cause("FieldValueRequired", "fieldManager", "is required for apply patch")],
        )
    if manager:
        return manager
    agent = request.headers.get("user-agent", "")
    return agent.split("/", 1)[0] or "unknown"


async def _body(request: Request, content_type: str = "") -> Any:
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        if content_type == APPLY_PATCH:
            return yaml.safe_load(raw)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as e:
        raise bad_request(f"error decoding request body: {e}") from e


def _selector_text(selector: dict[str, Any] | None) -> str:
    parts = []
    for req in selector_requirements(selector):
        if req.op == "=":
            parts.append(f"{req.key}={req.values[0]}")
        elif req.op in ("in", "notin"):
            parts.append(f"{req.key} {req.op} ({','.join(req.values)})")
        else:
            parts.append(req.key if req.op == "exists" else f"!{req.key}")
    return ",".join(parts)


def _scale(deployment: dict[str, Any]) -> dict[str, Any]:
    meta = deployment["metadata"]
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": deployment["spec"].get("replicas", 1)},
        "status": {
            "replicas": (deployment.get("status") or {}).get("replicas", 0),
            "selector": _selector_text(deployment["spec"].get("selector")),
        },
    }


class Handler:
    """Dispatches one resource request to the store."""

    def __init__(self, double: K8sDouble) -> None:
        self.double = double
        self.store = double.store

    @staticmethod
    def route(
        group: str, version: str, path: str
    ) -> tuple[ResourceType, str | None, str | None, str | None]:
        parts = [p for p in path.split("/") if p]
        namespace: str | None = None
        rt = None
        if len(parts) >= 3 and parts[0] == "namespaces":
            rt = resources.lookup(group, version, parts[2])
            if rt is not None and rt.namespaced:
                namespace, parts = parts[1], parts[3:]
            else:
                rt = None
        if rt is None:
            rt = resources.lookup(group, version, parts[0]) if parts else None
            if rt is None or (rt.namespaced and len(parts) > 1):
                raise errors.unknown_resource()
            parts = parts[1:]
        if len(parts) > 2 or (len(parts) == 2 and parts[1] not in rt.subresources):
            raise errors.unknown_resource()
        name = parts[0] if parts else None
        sub = parts[1] if len(parts) == 2 else None
        return rt, namespace, name, sub

    async def __call__(self, request: Request, group: str, version: str, path: str) -> Response:
        rt, namespace, name, sub = self.route(group, version, path)
        method = request.method
        ns = namespace or ""
        query = request.query_params
        if name is None:
            if method == "GET":
                labels = parse_label_selector(query.get("labelSelector"))
                fields = parse_field_selector(rt, query.get("fieldSelector"))
                if _flag(query.get("watch")):
                    return self.watch(request, rt, namespace, labels, fields)
                limit = int(query.get("limit") or 0)
                return _json(
                    self.store.list_items(
                        rt, namespace, labels, fields, limit, query.get("continue")
                    )
                )
            if method == "POST" and (namespace is not None or not rt.namespaced):
                obj = self.store.create(
                    rt,
                    ns,
                    await _body(request),
                    _manager(request, False),
                    _dry_run(query.getlist("dryRun")),
                )
                return _json(obj, 201)
            if method == "DELETE" and rt.plural != "namespaces":
                body = await _body(request) or {}
                labels = parse_label_selector(query.get("labelSelector"))
                fields = parse_field_selector(rt, query.get("fieldSelector"))
                options = {
                    "propagationPolicy": query.get("propagationPolicy")
                    or body.get("propagationPolicy")
                }
                dry = _dry_run(query.getlist("dryRun") or body.get("dryRun") or [])
                return _json(
                    self.store.delete_collection(rt, namespace, labels, fields, options, dry)
                )
            raise errors.method_not_allowed()
        if sub == "scale":
            return await self.scale(request, rt, ns, name)
        if method == "GET":
            return _json(self.store.get(rt, ns, name))
        if sub is not None:
            raise errors.method_not_allowed()
        dry_run = _dry_run(query.getlist("dryRun"))
        if method == "PUT":
            return _json(
                self.store.replace(
                    rt, ns, name, await _body(request), _manager(request, False), dry_run
                )
            )
        if method == "PATCH":
            content_type = request.headers.get("content-type", "").split(";")[0].strip()
            if content_type == APPLY_PATCH:
                obj, created = self.store.apply(
                    rt,
                    ns,
                    name,
                    await _body(request, APPLY_PATCH),
                    _manager(request, True),
                    _flag(query.get("force")),
                    dry_run,
                )
                return _json(obj, 201 if created else 200)
            if content_type not in (MERGE_PATCH, STRATEGIC_PATCH, JSON_PATCH):
                raise errors.unsupported_media_type(content_type)
            if query.get("force") is not None:
                raise errors.invalid(
                    "PatchOptions",
                    "meta.k8s.io",
                    "",
                    [
                        errors.Cause(
                            "FieldValueForbidden",
                            "force",
                            "may not be specified for non-apply patch",
                        )
                    ],
                )
            patch = await _body(request)
            return _json(
                self.store.patch(
                    rt, ns, name, content_type, patch, _manager(request, False), dry_run
                )
            )
        if method == "DELETE":
            body = await _body(request) or {}
            options = {
                "propagationPolicy": query.get("propagationPolicy")
                or body.get("propagationPolicy"),
                "preconditions": body.get("preconditions") or {},
            }
            dry = dry_run or _dry_run(body.get("dryRun") or [])
            return _json(self.store.delete(rt, ns, name, options, dry))
        raise errors.method_not_allowed()

    async def scale(self, request: Request, rt: ResourceType, ns: str, name: str) -> Response:
        current = _scale(self.store.get(rt, ns, name))
        if request.method == "GET":
            return _json(current)
        if request.method == "PUT":
            wanted = await _body(request)
        elif request.method == "PATCH":
            content_type = request.headers.get("content-type", "").split(";")[0].strip()
            if content_type not in (MERGE_PATCH, STRATEGIC_PATCH, JSON_PATCH):
                raise errors.unsupported_media_type(content_type)
            wanted = self.store.patch_document(content_type, current, await _body(request))
        else:
            raise errors.method_not_allowed()
        replicas = ((wanted or {}).get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.invalid(
                "Scale",
                "autoscaling",
                name,
                [
                    errors.Cause(
                        "FieldValueInvalid",
                        "spec.replicas",
                        "must be greater than or equal to 0",
                        replicas,
                    )
                ],
            )
        patch = {
            "spec": {"replicas": replicas},
            "metadata": {"resourceVersion": (wanted.get("metadata") or {}).get("resourceVersion")},
        }
        updated = self.store.patch(
            rt,
            ns,
            name,
            MERGE_PATCH,
            patch,
            _manager(request, False),
            _dry_run(request.query_params.getlist("dryRun")),
        )
        return _json(_scale(updated))

    def watch(
        self, request: Request, rt: ResourceType, namespace: str | None, labels: Any, fields: Any
    ) -> Response:
        query = request.query_params
        timeout = float(query.get("timeoutSeconds") or self.double.watch_timeout_seconds)
        loop = asyncio.get_running_loop()
        initial, watcher = self.store.watch(
            rt, namespace, labels, fields, query.get("resourceVersion"), loop
        )

        async def stream() -> AsyncIterator[bytes]:
            try:
                for event in initial:
                    yield (json.dumps(event) + "\n").encode()
                    if event["type"] == "ERROR":
                        return
                deadline = loop.time() + timeout
                while (remaining := deadline - loop.time()) > 0:
                    try:
                        change = await asyncio.wait_for(watcher.queue.get(), remaining)
                    except TimeoutError:
                        return
                    if change is None:  # the double is stopping
                        return
                    yield (json.dumps(change) + "\n").encode()
            finally:
                self.store.unwatch(watcher)

        return StreamingResponse(stream(), media_type="application/json")


def build_app(double: K8sDouble) -> FastAPI:
    handler = Handler(double)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(double.controllers.run())
        try:
            yield
        finally:
            double.store.close_watchers()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)
    app.add_middleware(BearerAuth, token=double.token)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> Response:
        return _json(exc.status(), exc.code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            return _json(errors.method_not_allowed().status(), 405)
        return _json(errors.unknown_resource().status(), 404)

    @app.exception_handler(Exception)
    async def crash(_: Request, exc: Exception) -> Response:
        log.exception("k8s double: unhandled error")
        return _json(
            ApiError(500, "InternalError", f"Internal error occurred: {exc!r}").status(), 500
        )

    @app.get("/healthz")
    @app.get("/livez")
    @app.get("/readyz")
    async def healthz() -> Response:
        return PlainTextResponse("ok")

    @app.get("/version")
    @app.get("/version/")
    async def version() -> Response:
        return _json(resources.SERVER_VERSION)

    @app.get("/api")
    @app.get("/api/")
    async def api() -> Response:
        return _json(resources.api_versions())

    @app.get("/api/v1")
    async def core_resources() -> Response:
        return _json(resources.resource_list("", "v1"))

    @app.get("/apis")
    @app.get("/apis/")
    async def apis() -> Response:
        return _json(resources.api_group_list())

    @app.get("/apis/{group}")
    @app.get("/apis/{group}/")
    async def group(group: str) -> Response:
        found = resources.api_group(group)
        if found is None:
            raise errors.unknown_resource()
        return _json(found)

    @app.get("/apis/{group}/{version}")
    async def group_resources(group: str, version: str) -> Response:
        found = resources.resource_list(group, version)
        if found is None:
            raise errors.unknown_resource()
        return _json(found)

    @app.api_route("/api/v1/{path:path}", methods=METHODS)
    async def core(path: str, request: Request) -> Response:
        if not path.strip("/") and request.method == "GET":
            return _json(resources.resource_list("", "v1"))
        return await handler(request, "", "v1", path)

    @app.api_route("/apis/{group}/{version}/{path:path}", methods=METHODS)
    async def grouped(group: str, version: str, path: str, request: Request) -> Response:
        if not path.strip("/") and request.method == "GET":
            return await group_resources(group, version)
        return await handler(request, group, version, path)

    return app
