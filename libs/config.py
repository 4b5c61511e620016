"""Settings shared by every service (env prefix OPSLINE_); each service adds its own."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPSLINE_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_partitions: int = 4
    elasticsearch_url: str = "http://127.0.0.1:9200"
    # Shared secret for service-to-service HTTP calls (the gateway asking an owner's API).
    internal_token: SecretStr | None = None
    # Where the embedded stack keeps its state (SQLite files, tokens, store data).
    home: Path = Path(".opsline")
    log_level: str = "INFO"


def env_names(settings_cls: type[BaseSettings]) -> list[str]:
    """The environment variables a settings class reads (for docs and deployment checks)."""
    prefix = settings_cls.model_config.get("env_prefix", "")
    return [f"{prefix}{name}".upper() for name in settings_cls.model_fields]
