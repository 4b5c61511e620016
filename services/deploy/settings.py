from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class DeploySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPSLINE_DEPLOY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8083
    # SQLite under OPSLINE_HOME unless set (postgresql://…, mysql://… also work).
    database_url: str | None = None
    group_id: str = "deploy"
    # Where the local runtime unpacks and runs process components (default OPSLINE_HOME/runtime).
    runtime_dir: str | None = None
    max_parallel: int = 8
    heartbeat_s: float = 2.0
    heartbeat_timeout_s: float = 30.0
    # How long a component may take to become ready before its rollout fails.
    ready_timeout_s: float = 30.0
    # How often live Kubernetes objects are compared with the desired revision.
    drift_interval_s: float = 60.0
    worker_id: str | None = None
    # Registered clusters' kubeconfigs are stored encrypted with this key (any string).
    # Unset: a key file, created on first use (default OPSLINE_HOME/deploy-secret.key).
    # Every deploy replica needs the same key.
    secret_key: SecretStr | None = None
    secret_key_file: str | None = None
