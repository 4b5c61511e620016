from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class DetectorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPSLINE_AIOPS_DETECTOR_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8085
    app_id: str = "aiops-detector"  # the faust app id is its consumer group
    store: str = "memory://"  # rocksdb:// where python-rocksdb is installed
