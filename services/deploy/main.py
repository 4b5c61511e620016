"""deploy: deployments and live state (its domain arrives with issue 4)."""

from __future__ import annotations

from fastapi import FastAPI

from libs.config import CommonSettings
from libs.events import topics as t
from libs.member import create_member_app
from libs.observability.logging import setup_logging
from libs.observability.tracing import setup_tracing
from libs.runtime import serve
from services.deploy import handlers
from services.deploy.settings import DeploySettings

NAME = "deploy"


def create_app(settings: DeploySettings, common: CommonSettings) -> FastAPI:
    return create_member_app(
        name=NAME,
        common=common,
        database_url=settings.database_url,
        group_id=settings.group_id,
        topics=[t.DEPLOY_COMMANDS],
        handler=handlers.on_events,
    )


def main() -> None:
    common = CommonSettings()
    settings = DeploySettings()
    setup_logging(NAME, common.log_level)
    setup_tracing(NAME)
    serve(create_app(settings, common), host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
