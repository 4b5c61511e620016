"""Build service settings (env prefix OPSLINE_BUILD_); built by get_settings(), never at import."""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class BuildSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPSLINE_BUILD_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8082
    # SQLite under OPSLINE_HOME unless set (postgresql://…, mysql://… also work).
    database_url: str | None = None
    group_id: str = "build"
    # Local artifact store (default OPSLINE_HOME/artifacts); or artifact_url (file://, s3://).
    artifact_dir: str | None = None
    artifact_url: str | None = None
    # Builds this process runs at once.
    max_parallel: int = 4
    # A build whose worker died is retried until it has had this many attempts.
    max_attempts: int = 2
    heartbeat_s: float = 5.0
    heartbeat_timeout_s: float = 30.0
    build_timeout_s: float = 900.0
    # Image builds (kaniko Jobs) need a cluster; without a kubeconfig they fail clearly.
    kubeconfig: str | None = None
    builder_image: str = "gcr.io/kaniko-project/executor:v1.23.2"
    builder_namespace: str = "default"
    # Where built images are pushed when a component names no build.destination.
    image_registry: str | None = None
    # Unique per replica; hostname-pid when unset.
    worker_id: str | None = None

    def worker_name(self) -> str:
        return self.worker_id or f"{socket.gethostname()}-{os.getpid()}"

    def database(self, home: Path) -> str:
        return self.database_url or f"sqlite:///{home}/build.db"

    def artifact_root(self, home: Path) -> Path:
        return Path(self.artifact_dir) if self.artifact_dir else home / "artifacts"


@lru_cache(maxsize=1)
def get_settings() -> BuildSettings:
    return BuildSettings()
