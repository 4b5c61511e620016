from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class AppmanagerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPSLINE_APPMANAGER_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8081
    # SQLite under OPSLINE_HOME unless set (postgresql://…, mysql://… also work).
    database_url: str | None = None
    group_id: str = "appmanager"
    # Folders a market may live in (comma-separated). A market is written by the service,
    # so API callers may not point it anywhere else. Empty: OPSLINE_HOME/markets.
    market_roots: str = ""
