from __future__ import annotations

from functools import lru_cache

from pydantic_settings import BaseSettings, SettingsConfigDict


class IngestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPSLINE_DATAOPS_INGEST_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8084
    # Normalizer (ingest.raw → metrics.points, logs.records, ops.events) and sink
    # (those three → Elasticsearch) are separate consumer groups, so a slow store
    # never holds back normalization.
    group_id: str = "dataops-ingest"
    sink_group_id: str = "dataops-ingest-sink"
    run_normalizer: bool = True
    run_sink: bool = True
    index_prefix: str = "opsline"
    max_records: int = 500
    # Records per sink batch: each holds up to thousands of samples, and a batch's documents
    # are all in memory until Elasticsearch has them.
    sink_max_records: int = 20
    max_query_points: int = 100_000


@lru_cache(maxsize=1)
def get_settings() -> IngestSettings:
    return IngestSettings()
