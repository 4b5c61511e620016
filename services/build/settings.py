from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class BuildSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPSLINE_BUILD_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8082
    # SQLite under OPSLINE_HOME unless set (postgresql://…, mysql://… also work).
    database_url: str | None = None
    group_id: str = "build"
