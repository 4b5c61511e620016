from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class DeploySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPSLINE_DEPLOY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8083
    # SQLite under OPSLINE_HOME unless set (postgresql://…, mysql://… also work).
    database_url: str | None = None
    group_id: str = "deploy"
