from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class DetectorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPSLINE_AIOPS_DETECTOR_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8085
    app_id: str = "aiops-detector"  # the faust app id is its consumer group
    # "auto": rocksdict:// where the rocksdict package is installed, else memory://
    # (tables are changelogged either way; memory:// replays the changelog on start).
    store: str = "auto"
    # Where faust keeps table stores; default OPSLINE_HOME/aiops-detector. Two workers on
    # one host need two folders.
    data_dir: str | None = None
    # How soon the group notices a worker that died without leaving (then its partitions,
    # and their state, move to the others).
    session_timeout_s: float = 30.0
    # SQLite under OPSLINE_HOME unless set (postgresql://…, mysql://… also work).
    database_url: str | None = None
    # Consumer group of the alert manager (alerts, incidents, notifications).
    group_id: str = "aiops-detector-alerts"
    # The learned detector every series gets, and its parameters as JSON ({"alpha": 0.02}).
    detector: str = "zscore"
    detector_params: str = "{}"
    # A sample scoring at least this raises an anomaly alert (severity WARNING). Score
    # scales differ between detectors: zscore scores z/(z+3), so 0.75 is nine deviations.
    anomaly_threshold: float = 0.75
    # Consecutive normal samples before an anomaly alert resolves.
    anomaly_resolve_samples: int = 5
    # Publish every score as the series anomaly_score{metric=…} onto metrics.points.
    emit_scores: bool = True
    # How often each worker re-reads the alert rules from the database.
    rules_refresh_s: float = 2.0
    # An alert on an app this long after a deploy of that app is linked to the deployment.
    correlation_window_s: float = 1800.0
    # An incident with no firing alert for this long is closed; a repeat opens a new one.
    incident_close_after_s: float = 3600.0
    # How often notification groups are checked for something due.
    notify_tick_s: float = 1.0
    # POST /v1/aiops/analyze: most points in one series.
    analyze_max_points: int = 100_000
