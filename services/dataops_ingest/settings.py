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
    # Scrape targets live here: SQLite under OPSLINE_HOME unless set (postgresql://…,
    # mysql://… also work; replicas must then share one database).
    database_url: str | None = None
    # The scraper: each replica scrapes the targets whose shard is a partition of
    # ingest.raw its normalizer holds (see services/dataops_ingest/scrape.py).
    run_scraper: bool = True
    # Largest exposition page read from a target; a bigger one is a failed scrape.
    scrape_max_bytes: int = 16 * 1024 * 1024
    # Fetches in flight per replica. Parsing is serial (one thread, the GIL), so more
    # only makes each fetch wait longer for the event loop and time out under load.
    scrape_concurrency: int = 16
    # How often target health (last_scrape, last_error) is written to the database.
    scrape_status_flush_s: float = 2.0
    # Kubernetes discovery of pods labelled opsline.io/scrape=true: a kubeconfig file,
    # or "in-cluster" for the pod's service account; empty turns discovery off.
    discovery_kubeconfig: str = ""
    # Namespaces to watch (comma-separated); empty: all namespaces.
    discovery_namespaces: str = ""
    # Defaults for discovered pods (an annotation opsline.io/scrape-interval overrides).
    discovery_interval_s: float = 15.0
    discovery_timeout_s: float = 10.0
    # Retention of the monthly metric, log, event and alert indices, in days (0: keep all).
    retention_days: int = 30
    # How often the fallback retention task looks for expired indices (stores without ILM).
    retention_check_s: float = 3600.0


@lru_cache(maxsize=1)
def get_settings() -> IngestSettings:
    return IngestSettings()
