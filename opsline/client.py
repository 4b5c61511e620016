"""A synchronous client of the opsline gateway: events, metrics, the catalogue, builds, market.

Use: `with OpslineClient() as ops: ops.publish("com.example.ci.done", "my-ci", {"ok": True})`;
the URL and token come from the arguments, the environment or the config file.
"""

from __future__ import annotations

import json
import os
import time
import tomllib
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
PUBLISH_ATTEMPTS = 3

JSONDict = dict[str, Any]


class OpslineError(Exception):
    """A request the gateway refused (`status` set) or one that never reached it (None)."""

    def __init__(self, status: int | None, detail: str) -> None:
        super().__init__(status, detail)
        self.status = status
        self.detail = detail

    def __str__(self) -> str:
        return self.detail if self.status is None else f"HTTP {self.status}: {self.detail}"


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """Where `opsline login` keeps the URL and token: $XDG_CONFIG_HOME/opsline/config.toml."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or ""
    # The XDG spec says a relative value is invalid and must be ignored.
    root = Path(base) if os.path.isabs(base) else Path.home() / ".config"
    return root / "opsline" / "config.toml"


def read_config(path: Path) -> dict[str, str]:
    """The `url` and `token` keys of the config file; {} when there is no file."""
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise OpslineError(None, f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise OpslineError(None, f"{path}: invalid TOML: {exc}") from None
    out: dict[str, str] = {}
    for key in ("url", "token"):
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise OpslineError(None, f"{path}: '{key}' must be a string")
        out[key] = value
    return out


def write_config(path: Path, *, url: str, token: str) -> None:
    """Write the config file atomically, readable by its owner only (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = f"url = {_toml_string(url)}\ntoken = {_toml_string(token)}\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask may have taken bits away, never added: be exact
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _toml_string(value: str) -> str:
    # A JSON string is a TOML basic string, except that TOML wants DEL escaped too.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


@dataclass(frozen=True, slots=True)
class SseFrame:
    id: str | None
    event: str
    data: str


def parse_sse(lines: Iterable[str]) -> Iterator[SseFrame]:
    """Server-Sent Events frames from the lines of a text/event-stream body."""
    last_id: str | None = None
    event = ""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield SseFrame(last_id, event or "message", "\n".join(data))
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
        elif field == "id":
            last_id = value
    if data:
        yield SseFrame(last_id, event or "message", "\n".join(data))


class OpslineClient:
    """The gateway's /v1 API. URL and token: argument, else OPSLINE_URL / OPSLINE_TOKEN,
    else the config file (see `config_path`); the URL defaults to http://127.0.0.1:8080."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 30,
        *,
        env: Mapping[str, str] | None = None,
        config_file: Path | None = None,
        retry_backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        env = os.environ if env is None else env
        path = config_file or config_path(env)
        url = url or env.get("OPSLINE_URL") or None
        token = token or env.get("OPSLINE_TOKEN") or None
        if url is None or token is None:
            stored = read_config(path)
            url = url or stored.get("url") or None
            token = token or stored.get("token") or None
        url = (url or DEFAULT_URL).strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise OpslineError(None, f"the gateway URL must start with http:// or https://: {url}")
        token = (token or "").strip()
        if not token:
            raise OpslineError(
                None,
                "no API token: pass --token (token= in Python), set OPSLINE_TOKEN, "
                f'or put token = "…" in {path} (`opsline login` writes it)',
            )
        if not all("!" <= c <= "~" for c in token):
            raise OpslineError(
                None, "the API token has spaces, control or non-ASCII characters: check its value"
            )
        self.url = url
        self.timeout = timeout
        self._backoff = retry_backoff
        self._http = httpx.Client(
            base_url=url,
            timeout=timeout,
            transport=transport,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": "opsline-client",
            },
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OpslineClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # events and metrics

    def publish(
        self,
        event_type: str,
        source: str,
        data: Any,
        subject: str | None = None,
        id: str | None = None,
    ) -> JSONDict:
        """Publish one CloudEvent (structured mode); {"accepted": [...], "rejected": [...]}."""
        event: JSONDict = {
            "specversion": "1.0",
            "id": id or str(uuid.uuid4()),
            "source": source,
            "type": event_type,
            "time": _rfc3339(datetime.now(UTC)),
            "datacontenttype": "application/json",
            "data": data,
        }
        if subject is not None:
            event["subject"] = subject
        return self._publish(STRUCTURED, event)

    def publish_batch(self, events: Iterable[Mapping[str, Any]]) -> JSONDict:
        """Publish structured CloudEvents in one request; a missing specversion or id is filled."""
        batch = [{"specversion": "1.0", "id": str(uuid.uuid4()), **event} for event in events]
        if not batch:
            raise ValueError("publish_batch needs at least one event")
        return self._publish(BATCH, batch)

    def _publish(self, content_type: str, payload: Any) -> JSONDict:
        # Ids are fixed before the first try, so a retry can only duplicate an event that
        # consumers already drop by id.
        response = self._request(
            "POST",
            "/v1/events",
            attempts=PUBLISH_ATTEMPTS,
            content=json.dumps(payload).encode(),
            headers={"Content-Type": content_type},
        )
        return _json(response)

    def query_metrics(
        self,
        name: str,
        start: str | int | datetime,
        end: str | int | datetime,
        match: Mapping[str, str] | None = None,
    ) -> list[JSONDict]:
        """Series of `name` whose labels match, between start and end (RFC 3339 or epoch ms)."""
        params = [("name", name), ("start", _time_param(start)), ("end", _time_param(end))]
        params += [("match", f"{k}={v}") for k, v in (match or {}).items()]
        series = _json(self._request("GET", "/v1/metrics/query", params=params)).get("series")
        return list(series or [])

    def stream_events(
        self, types: Iterable[str] = (), subject: str | None = None
    ) -> Iterator[JSONDict]:
        """Live events (structured CloudEvents) until the gateway closes the stream."""
        params: list[tuple[str, str | int | float | bool | None]] = [("type", t) for t in types]
        if subject is not None:
            params.append(("subject", subject))
        connected = False
        try:
            with self._http.stream(
                "GET",
                "/v1/events/stream",
                params=params,
                headers={"Accept": "text/event-stream"},
                # Idle streams are normal; the gateway sends a comment every 15 s anyway.
                timeout=httpx.Timeout(self.timeout, read=None),
            ) as response:
                if not response.is_success:
                    response.read()
                    raise _http_error(response)
                connected = True
                for frame in parse_sse(response.iter_lines()):
                    yield _frame_event(frame)
        except httpx.TransportError as exc:
            if connected:
                raise OpslineError(None, f"the event stream broke: {_reason(exc)}") from None
            raise self._transport_error(exc) from None

    # the catalogue

    def apply_app(self, yaml_text: str, base_dir: str | os.PathLike[str]) -> JSONDict:
        """Create or update an app from its opsline.yaml; relative paths are under base_dir."""
        response = self._request(
            "POST",
            "/v1/apps:apply",
            content=yaml_text.encode(),
            # Bytes, so a non-ASCII path reaches the server as its exact file-system bytes.
            headers={
                "Content-Type": "application/yaml",
                "X-Opsline-Base-Dir": os.fsencode(os.path.abspath(base_dir)),
            },
        )
        return _json(response)

    def list_apps(self) -> JSONDict:
        return _json(self._request("GET", "/v1/apps"))

    def get_app(self, app: str) -> JSONDict:
        return _json(self._request("GET", f"/v1/apps/{_seg(app)}"))

    def list_packages(self, app: str) -> JSONDict:
        return _json(self._request("GET", f"/v1/apps/{_seg(app)}/packages"))

    # builds

    def start_build(
        self, app: str, component: str | None = None, version: str | int | None = None
    ) -> JSONDict:
        """Queue a build; {"build_id", "version", "status"}."""
        body = {
            k: v for k, v in {"component": component, "version": version}.items() if v is not None
        }
        return _json(self._request("POST", f"/v1/apps/{_seg(app)}/builds", json=body))

    def get_build(self, build_id: str) -> JSONDict:
        return _json(self._request("GET", f"/v1/builds/{_seg(build_id)}"))

    def cancel_build(self, build_id: str) -> JSONDict:
        return _json(self._request("POST", f"/v1/builds/{_seg(build_id)}/cancel"))

    # market

    def market_publish(self, app: str, version: str | int, market: str) -> JSONDict:
        body = {"app": app, "version": version, "market": market}
        return _json(self._request("POST", "/v1/market/publish", json=body))

    def market_list(self, market: str) -> JSONDict:
        return _json(self._request("GET", "/v1/market", params={"market": market}))

    def market_install(self, market: str, app: str, version: str | int) -> JSONDict:
        body = {"market": market, "app": app, "version": version}
        return _json(self._request("POST", "/v1/market/install", json=body))

    # transport

    # deployments

    def deploy(self, launch_yaml: str) -> JSONDict:
        """Launch or upgrade an instance from a launch file; returns the deployment."""
        return _json(
            self._request(
                "POST",
                "/v1/deployments",
                content=launch_yaml.encode(),
                headers={"Content-Type": "application/yaml"},
            )
        )

    def get_deployment(self, deployment_id: str) -> JSONDict:
        return _json(self._request("GET", f"/v1/deployments/{_seg(deployment_id)}"))

    def retry_deployment(self, deployment_id: str) -> JSONDict:
        """Run a WAIT_FOR_OP (or failed) deployment again, as a new revision."""
        return _json(self._request("POST", f"/v1/deployments/{_seg(deployment_id)}/retry"))

    def terminate_deployment(self, deployment_id: str) -> JSONDict:
        """Stop a deployment that has not finished."""
        return _json(self._request("POST", f"/v1/deployments/{_seg(deployment_id)}/terminate"))

    def register_cluster(self, name: str, kubeconfig: str, context: str | None = None) -> JSONDict:
        """Register (or replace) a Kubernetes cluster; the kubeconfig is stored encrypted."""
        body = {"kubeconfig": kubeconfig, "context": context}
        return _json(self._request("PUT", f"/v1/clusters/{_seg(name)}", json=body))

    def list_clusters(self) -> JSONDict:
        return _json(self._request("GET", "/v1/clusters"))

    def remove_cluster(self, name: str) -> None:
        self._request("DELETE", f"/v1/clusters/{_seg(name)}")

    def instance_logs(
        self, instance: str, component: str | None = None, tail: int = 100
    ) -> JSONDict:
        """{"components": {name: [line, …]}}: what its local processes printed last."""
        params: dict[str, Any] = {"tail": tail}
        if component:
            params["component"] = component
        return _json(self._request("GET", f"/v1/instances/{_seg(instance)}/logs", params=params))

    def list_instances(self) -> JSONDict:
        return _json(self._request("GET", "/v1/instances"))

    def rollback(self, instance: str, revision: int = 0) -> JSONDict:
        return _json(
            self._request(
                "POST", f"/v1/instances/{_seg(instance)}/rollback", json={"revision": revision}
            )
        )

    def uninstall(self, instance: str) -> JSONDict:
        return _json(self._request("DELETE", f"/v1/instances/{_seg(instance)}"))

    # identity: users, teams, tokens, the audit log

    def whoami(self) -> JSONDict:
        return _json(self._request("GET", "/v1/whoami"))

    def create_token(
        self,
        name: str,
        *,
        scopes: list[str] | None = None,
        expires_in_s: int | None = None,
        user: str | None = None,
    ) -> JSONDict:
        """A new token (yours; another user's if you are a platform admin). Its secret,
        `token`, is in this answer only: the gateway keeps a hash."""
        body: JSONDict = {"name": name, "scopes": scopes, "expires_in_s": expires_in_s}
        path = f"/v1/users/{_seg(user)}/tokens" if user else "/v1/tokens"
        return _json(self._request("POST", path, json=body))

    def list_tokens(self, user: str | None = None) -> JSONDict:
        params = {"user": user} if user else None
        return _json(self._request("GET", "/v1/tokens", params=params))

    def revoke_token(self, token_id: int) -> JSONDict:
        return _json(self._request("DELETE", f"/v1/tokens/{int(token_id)}"))

    def create_user(self, name: str, *, platform_admin: bool = False) -> JSONDict:
        body = {"name": name, "platform_admin": platform_admin}
        return _json(self._request("POST", "/v1/users", json=body))

    def list_users(self) -> JSONDict:
        return _json(self._request("GET", "/v1/users"))

    def create_team(self, name: str, description: str = "") -> JSONDict:
        body = {"name": name, "description": description}
        return _json(self._request("POST", "/v1/teams", json=body))

    def list_teams(self) -> JSONDict:
        return _json(self._request("GET", "/v1/teams"))

    def team_members(self, team: str) -> JSONDict:
        return _json(self._request("GET", f"/v1/teams/{_seg(team)}/members"))

    def set_member(self, team: str, user: str, role: str) -> JSONDict:
        path = f"/v1/teams/{_seg(team)}/members/{_seg(user)}"
        return _json(self._request("PUT", path, json={"role": role}))

    def remove_member(self, team: str, user: str) -> None:
        self._request("DELETE", f"/v1/teams/{_seg(team)}/members/{_seg(user)}")

    def audit(self, **filters: Any) -> JSONDict:
        """Audit records, newest first (filters: user, team, app, outcome, method, limit)."""
        params = {k: v for k, v in filters.items() if v is not None}
        return _json(self._request("GET", "/v1/audit", params=params))

    def _request(
        self, method: str, path: str, *, attempts: int = 1, **kwargs: Any
    ) -> httpx.Response:
        """One call; with attempts > 1, a 503 or a transport error is retried with backoff."""
        for attempt in range(1, attempts + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt == attempts:
                    raise self._transport_error(exc) from None
            else:
                if response.status_code != 503 or attempt == attempts:
                    if response.is_success:
                        return response
                    raise _http_error(response)
            time.sleep(self._backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def _transport_error(self, exc: httpx.TransportError) -> OpslineError:
        if isinstance(exc, httpx.TimeoutException):
            return OpslineError(
                None, f"the gateway at {self.url} did not answer within {self.timeout:g} s"
            )
        return OpslineError(None, f"cannot reach the gateway at {self.url}: {_reason(exc)}")


def _seg(value: str) -> str:
    return quote(str(value), safe="")


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _time_param(value: str | int | datetime) -> str:
    # A naive datetime is local time, as everywhere in Python.
    return _rfc3339(value) if isinstance(value, datetime) else str(value)


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _json(response: httpx.Response) -> JSONDict:
    if not response.content:
        return {}
    try:
        body = response.json()
    except ValueError:
        raise OpslineError(response.status_code, "the gateway's answer is not JSON") from None
    return body if isinstance(body, dict) else {"items": body}


def _http_error(response: httpx.Response) -> OpslineError:
    """The server's own words: its "detail", plus any per-event rejections."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = ""
    if isinstance(body, dict):
        detail = _describe(body.get("detail"))
        rejected = body.get("rejected") or []
        if isinstance(rejected, list) and rejected:
            reasons = "; ".join(_rejection(r) for r in rejected[:5])
            more = f" (and {len(rejected) - 5} more)" if len(rejected) > 5 else ""
            detail = f"{detail}: {reasons}{more}" if detail else reasons + more
    if not detail:
        text = response.text.strip()
        detail = text[:300] if text and not text.startswith("<") else response.reason_phrase
    return OpslineError(response.status_code, detail)


def _describe(detail: Any) -> str:
    if detail is None:
        return ""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, dict) and "message" in detail:  # {"message", "errors": [...]}
        errors = detail.get("errors") or []
        listed = "; ".join(str(e) for e in errors) if isinstance(errors, list) else str(errors)
        return f"{detail['message']}: {listed}" if listed else str(detail["message"])
    if isinstance(detail, list):  # FastAPI's validation errors: [{"loc": [...], "msg": ...}]
        parts = []
        for item in detail:
            if isinstance(item, dict) and "msg" in item:
                loc = ".".join(str(p) for p in item.get("loc", [])[1:])
                parts.append(f"{loc}: {item['msg']}" if loc else str(item["msg"]))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return json.dumps(detail)


def _rejection(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    where = item.get("id") or f"#{item.get('index', '?')}"
    return f"event {where}: {item.get('reason', 'rejected')}"


def _frame_event(frame: SseFrame) -> JSONDict:
    try:
        value = json.loads(frame.data)
    except ValueError:
        value = None
    if frame.event == "error" and not (isinstance(value, dict) and "specversion" in value):
        detail = value.get("detail") if isinstance(value, dict) else None
        raise OpslineError(None, f"the gateway ended the event stream: {detail or frame.data}")
    if isinstance(value, dict):
        return value
    return {"id": frame.id, "type": frame.event, "data": frame.data if value is None else value}
