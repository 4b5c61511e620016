"""appmanager: the application catalogue, builds as they are asked and reported."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from libs.config import CommonSettings
from libs.events import topics as t
from libs.internal import internal_token_guard
from libs.member import create_member_app
from libs.observability.logging import setup_logging
from libs.observability.tracing import setup_tracing
from libs.runtime import serve
from services.appmanager import api, handlers
from services.appmanager.models import TABLES
from services.appmanager.settings import AppmanagerSettings

NAME = "appmanager"
MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: AppmanagerSettings, common: CommonSettings) -> FastAPI:
    app = create_member_app(
        name=NAME,
        common=common,
        database_url=settings.database_url,
        group_id=settings.group_id,
        topics=[t.BUILD_EVENTS, t.DEPLOY_EVENTS],
        handler=handlers.on_events,
        tables=TABLES,
        migrations=MIGRATIONS,
    )
    roots = [
        r.strip() if "://" in r else Path(r.strip()).resolve().as_uri()
        for r in settings.market_roots.split(",")
        if r.strip()
    ]
    app.include_router(
        api.build_router(
            guard=internal_token_guard(common.internal_token),
            market_roots=roots or [(common.home / "markets").resolve().as_uri()],
        )
    )
    return app


def main() -> None:
    common = CommonSettings()
    settings = AppmanagerSettings()
    setup_logging(NAME, common.log_level)
    setup_tracing(NAME)
    serve(create_app(settings, common), host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
