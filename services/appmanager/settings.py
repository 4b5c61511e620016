from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class AppmanagerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPSLINE_APPMANAGER_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8081
    # SQLite under OPSLINE_HOME unless set (postgresql://…, mysql://… also work).
    database_url: str | None = None
    group_id: str = "appmanager"
    # Where markets may live, comma-separated: folders (file:///…) or S3 locations
    # (s3://bucket/prefix). Markets are written by the service, so API callers may not
    # point one anywhere else. Empty: OPSLINE_HOME/markets.
    market_roots: str = ""
