from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PEERS = (
    "appmanager=http://127.0.0.1:8081,build=http://127.0.0.1:8082,"
    "deploy=http://127.0.0.1:8083,dataops-ingest=http://127.0.0.1:8084,"
    "aiops-detector=http://127.0.0.1:8085"
)


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPSLINE_GATEWAY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8080
    # SQLite under OPSLINE_HOME unless set (postgresql://…, mysql://… also work).
    database_url: str | None = None
    # name=URL of every other service; /readyz is 200 only when all of them are ready.
    peers: str = DEFAULT_PEERS
    max_body_bytes: int = 5 * 1024 * 1024
    upstream_timeout_s: float = 10.0
    # The live-events tail is a broadcast: each replica needs a group of its own.
    # Empty: gateway-<hostname>-<port>.
    stream_group_id: str = ""
    # Recent live events each replica keeps, so a client resumes with Last-Event-ID.
    stream_ring_size: int = 2000
    # The app → team projection folds app.events in a group all replicas share.
    owners_group_id: str = "gateway-owners"
    # Per token, in memory per replica: a token bucket refilled at this rate (0: no limit).
    rate_limit_per_s: float = 50.0
    rate_limit_burst: int = 100
    # OIDC: off unless an issuer is set; JWKS URL empty: from the issuer's discovery document.
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_jwks_url: str = ""
    oidc_username_claim: str = "preferred_username"
    oidc_algorithms: str = "RS256,ES256"
    # Audit records older than this are deleted (0: kept for ever).
    audit_retention_days: int = 365

    def peer_urls(self) -> dict[str, str]:
        out = {}
        for item in self.peers.split(","):
            name, sep, url = item.strip().partition("=")
            if not sep or not name or not url:
                raise ValueError(f"OPSLINE_GATEWAY_PEERS: {item!r} is not name=URL")
            out[name.strip()] = url.strip().rstrip("/")
        return out


class AdminTokenSettings(BaseSettings):
    """The bootstrap admin token: OPSLINE_ADMIN_TOKEN, or the file OPSLINE_ADMIN_TOKEN_FILE."""

    model_config = SettingsConfigDict(env_prefix="OPSLINE_", extra="ignore")

    admin_token: SecretStr | None = None
    admin_token_file: str | None = None
