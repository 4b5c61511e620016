"""The web console: static/ served by the gateway at /console/, a client of /v1 only.

The files need no token (they hold no data); every API call the console makes carries
the bearer token the user signed in with. No build step: plain ES modules, one vendored
chart library (static/vendor/README.md says which version and where from).
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC = Path(__file__).resolve().parent / "static"
PREFIX = "/console"
# no inline script or style, no third-party origin; the API is same-origin
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".md": "text/plain; charset=utf-8",
}


def cache_control(path: str) -> str:
    """Vendored files carry their version in their name and never change: cache them.

    Our own files keep their names across releases, so browsers revalidate them (ETag,
    304) on every load: an upgraded gateway never serves a stale console.
    """
    if path.startswith("vendor/") and not path.endswith((".md", ".txt")):
        return "public, max-age=31536000, immutable"
    return "no-cache"


class ConsoleFiles(StaticFiles):
    """StaticFiles with the console's content types, cache policy and security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        name = "index.html" if path in ("", ".") or path.endswith("/") else path
        kind = TYPES.get(os.path.splitext(name)[1])
        if kind and response.status_code == 200:
            response.headers["content-type"] = kind
        response.headers["cache-control"] = cache_control(path)
        response.headers.update(HEADERS)
        return response


def mount(app: FastAPI) -> None:
    """/console/ serves the files; / and /console redirect there. None is in the schema."""

    async def to_console() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    app.add_api_route("/", to_console, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_api_route(PREFIX, to_console, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount(PREFIX, ConsoleFiles(directory=STATIC, html=True), name="console")
