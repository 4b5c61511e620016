"""build: build tasks and artifacts (its domain arrives with issue 3)."""

from __future__ import annotations

from fastapi import FastAPI

from libs.config import CommonSettings
from libs.events import topics as t
from libs.member import create_member_app
from libs.observability.logging import setup_logging
from libs.observability.tracing import setup_tracing
from libs.runtime import serve
from services.build import handlers
from services.build.settings import BuildSettings

NAME = "build"


def create_app(settings: BuildSettings, common: CommonSettings) -> FastAPI:
    return create_member_app(
        name=NAME,
        common=common,
        database_url=settings.database_url,
        group_id=settings.group_id,
        topics=[t.BUILD_COMMANDS],
        handler=handlers.on_events,
    )


def main() -> None:
    common = CommonSettings()
    settings = BuildSettings()
    setup_logging(NAME, common.log_level)
    setup_tracing(NAME)
    serve(create_app(settings, common), host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
