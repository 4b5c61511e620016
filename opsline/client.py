"""A synchronous, typed client of the opsline gateway: events, metrics, the live stream,
the catalogue, builds, deployments, market and identity.

Use: `with OpslineClient() as ops: ops.publish("com.example.ci.done", "my-ci", {"ok": True})`;
the URL and token come from the arguments, the environment or the config file.

Publishing is safe to retry (every CloudEvent has its id before the first try, and
consumers drop repeats by id), so publishes are retried on 429 (after Retry-After), 502,
503, 504 and transport errors; batches are split to stay under the gateway's body limit.
`follow_events` reconnects after a disconnect and resumes with Last-Event-ID.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import tomllib
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, NotRequired, TypedDict, cast
from urllib.parse import quote

import httpx

from opsline.wire import (
    OpslineError,
    SseFrame,
    chunks,
    frame_event,
    http_error,
    json_array,
    json_body,
    notice,
    parse_sse,
    retry_after_s,
    with_rejections,
)

__all__ = [
    "DEFAULT_URL",
    "OpslineClient",
    "OpslineError",
    "PublishResult",
    "Rejection",
    "Series",
    "SseFrame",
    "config_path",
    "parse_sse",
    "read_config",
    "write_config",
]

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8080"
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
PUBLISH_ATTEMPTS = 5
# What a 429, 502, 503 or 504 means: try again later (a publish is safe to repeat).
RETRYABLE = frozenset({429, 502, 503, 504})
# Under the gateway's default body limit (5 MiB); a 413 halves a chunk anyway.
MAX_BATCH_BYTES = 4 * 1024 * 1024
MAX_BATCH_EVENTS = 10_000  # the gateway's own limit per batch
# The gateway sends a comment every 15 s: this much silence means a dead connection.
STREAM_IDLE_S = 60.0

JSONDict = dict[str, Any]
Time = str | int | datetime
QueryParams = list[tuple[str, str | int | float | bool | None]]


class Rejection(TypedDict):
    """An event the gateway refused (or took in part: `partial`), and why."""

    index: int
    reason: str
    id: NotRequired[str]
    partial: NotRequired[bool]


class PublishResult(TypedDict):
    accepted: list[str]  # event ids, in the order sent
    rejected: list[Rejection]


class Series(TypedDict):
    name: str
    labels: dict[str, str]
    points: list[list[Any]]  # [timestamp, value]; one per step with step/agg


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
        publish_attempts: int = PUBLISH_ATTEMPTS,
        max_retry_wait: float = 60.0,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        sleep: Callable[[float], None] = time.sleep,
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
        self._publish_attempts = max(1, publish_attempts)
        self._max_wait = max_retry_wait
        self._max_batch_bytes = max_batch_bytes
        self._sleep = sleep
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
    ) -> PublishResult:
        """Publish one CloudEvent (structured mode), retried until the gateway takes it."""
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
        response = self._request(
            "POST",
            "/v1/events",
            attempts=self._publish_attempts,
            content=json.dumps(event).encode(),
            headers={"Content-Type": STRUCTURED},
        )
        return _publish_result(json_body(response))

    def publish_batch(self, events: Iterable[Mapping[str, Any]]) -> PublishResult:
        """Publish structured CloudEvents, as few requests as the body limit allows.

        A missing specversion or id is filled. Each request is retried like `publish`; a
        413 splits it in two. Rejections carry their index in `events`. Raises if no event
        at all was accepted, or if a request fails for good (`accepted` on the error lists
        what got in before).
        """
        batch = [{"specversion": "1.0", "id": str(uuid.uuid4()), **event} for event in events]
        if not batch:
            raise ValueError("publish_batch needs at least one event")
        encoded = [json.dumps(event).encode() for event in batch]
        result = PublishResult(accepted=[], rejected=[])
        for part in chunks(encoded, self._max_batch_bytes, MAX_BATCH_EVENTS):
            self._publish_chunk(encoded, part, result)
        if not result["accepted"]:
            raise OpslineError(400, with_rejections("no event accepted", result["rejected"]))
        return result

    def _publish_chunk(self, encoded: list[bytes], part: range, result: PublishResult) -> None:
        try:
            response = self._request(
                "POST",
                "/v1/events",
                attempts=self._publish_attempts,
                content=json_array(encoded[part.start : part.stop]),
                headers={"Content-Type": BATCH},
                keep=frozenset({400, 413}),
            )
        except OpslineError as exc:
            raise OpslineError(exc.status, exc.detail, result["accepted"]) from None
        if response.status_code == 413:
            if len(part) == 1:
                raise OpslineError(
                    413,
                    f"event #{part.start} is larger than the gateway's body limit on its own",
                    result["accepted"],
                )
            middle = part.start + len(part) // 2
            self._publish_chunk(encoded, range(part.start, middle), result)
            self._publish_chunk(encoded, range(middle, part.stop), result)
            return
        body = json_body(response)
        if response.status_code == 400 and not isinstance(body.get("rejected"), list):
            raise OpslineError(400, http_error(response).detail, result["accepted"])
        answer = _publish_result(body)
        result["accepted"] += answer["accepted"]
        for rejected in answer["rejected"]:
            rejected["index"] = part.start + rejected.get("index", 0)
            result["rejected"].append(rejected)

    def query_metrics(
        self,
        name: str,
        start: Time,
        end: Time | None = None,
        match: Mapping[str, str] | Iterable[str] | None = None,
        *,
        step: str | float | timedelta | None = None,
        agg: str | None = None,
    ) -> list[Series]:
        """Series of `name` whose labels match, between start and end (RFC 3339, epoch ms
        or a datetime; end defaults to now). `match`: {"app": "shop"} for equality, or
        matcher strings ("app=shop", "env!=test", "pod=~web-.*").

        With `step` (30s, 5m, 1h; seconds; a timedelta) or `agg` (avg, min, max, sum,
        count, rate), one aggregated point per series and step.
        """
        params = [
            ("name", name),
            ("start", _time_param(start)),
            ("end", _time_param(end if end is not None else datetime.now(UTC))),
        ]
        params += [("match", m) for m in match_params(match or {})]
        if step is not None:
            params.append(("step", _step_param(step)))
        if agg is not None:
            params.append(("agg", agg))
        series = json_body(self._request("GET", "/v1/metrics/query", params=params)).get("series")
        return list(series or [])

    def stream_events(
        self,
        types: Iterable[str] = (),
        subject: str | None = None,
        *,
        app: str | None = None,
        last_event_id: str | None = None,
    ) -> Iterator[JSONDict]:
        """Live events (structured CloudEvents) until the gateway closes the stream, over one
        connection; `follow_events` reconnects instead."""
        for frame in self._stream_frames(_stream_params(types, subject, app), last_event_id):
            if frame.event != "missed":
                yield frame_event(frame)

    def follow_events(
        self,
        types: Iterable[str] = (),
        subject: str | None = None,
        *,
        app: str | None = None,
        last_event_id: str | None = None,
        attempts: int = 8,
        on_missed: Callable[[str], None] | None = None,
    ) -> Iterator[JSONDict]:
        """Live events for as long as the caller iterates: after a disconnect, a closed
        stream or the gateway's "too slow" notice, it reconnects (with backoff, honouring
        Retry-After) and resumes after the last event seen with Last-Event-ID.

        Gives up after `attempts` failed connections in a row, or at once on an answer
        that will not change (401, 403, 404, 422). When the gateway no longer holds the
        events after that id, `on_missed` is called with its notice (else it is logged).
        """
        params = _stream_params(types, subject, app)
        failures = 0
        while True:
            try:
                for frame in self._stream_frames(params, last_event_id, failures):
                    failures = 0
                    if frame.event == "missed":
                        (on_missed or log.warning)(f"event stream: {frame.data}")
                        continue
                    if notice(frame) is not None:
                        break  # "client too slow; reconnect": resume where we were
                    event = frame_event(frame)
                    last_event_id = frame.id or last_event_id
                    yield event
            except OpslineError as exc:
                if exc.status is not None and exc.status not in RETRYABLE:
                    raise
                failures += 1
                if failures >= attempts:
                    raise OpslineError(exc.status, exc.detail) from None
                log.info("event stream: %s; reconnecting", exc)
                wait = exc.wait if isinstance(exc, _Unavailable) else self._backoff_s(failures)
            else:
                failures += 1  # the gateway closed the stream (a restart, a deploy)
                wait = self._backoff_s(failures)
            self._sleep(wait)

    def _stream_frames(
        self, params: QueryParams, last_event_id: str | None, retried: int = 0
    ) -> Iterator[SseFrame]:
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        connected = False
        try:
            with self._http.stream(
                "GET",
                "/v1/events/stream",
                params=params,
                headers=headers,
                timeout=httpx.Timeout(self.timeout, read=STREAM_IDLE_S),
            ) as response:
                if not response.is_success:
                    response.read()
                    error = http_error(response)
                    if response.status_code in RETRYABLE:
                        raise _Unavailable(error, self._retry_wait(response, retried + 1))
                    raise error
                connected = True
                yield from parse_sse(response.iter_lines())
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
        return json_body(response)

    def list_apps(self) -> JSONDict:
        return json_body(self._request("GET", "/v1/apps"))

    def get_app(self, app: str) -> JSONDict:
        return json_body(self._request("GET", f"/v1/apps/{_seg(app)}"))

    def list_packages(self, app: str) -> JSONDict:
        return json_body(self._request("GET", f"/v1/apps/{_seg(app)}/packages"))

    # builds

    def start_build(
        self, app: str, component: str | None = None, version: str | int | None = None
    ) -> JSONDict:
        """Queue a build; {"build_id", "version", "status"}."""
        body = {
            k: v for k, v in {"component": component, "version": version}.items() if v is not None
        }
        return json_body(self._request("POST", f"/v1/apps/{_seg(app)}/builds", json=body))

    def get_build(self, build_id: str) -> JSONDict:
        return json_body(self._request("GET", f"/v1/builds/{_seg(build_id)}"))

    def cancel_build(self, build_id: str) -> JSONDict:
        return json_body(self._request("POST", f"/v1/builds/{_seg(build_id)}/cancel"))

    # market

    def market_publish(self, app: str, version: str | int, market: str) -> JSONDict:
        body = {"app": app, "version": version, "market": market}
        return json_body(self._request("POST", "/v1/market/publish", json=body))

    def market_list(self, market: str) -> JSONDict:
        return json_body(self._request("GET", "/v1/market", params={"market": market}))

    def market_install(self, market: str, app: str, version: str | int) -> JSONDict:
        body = {"market": market, "app": app, "version": version}
        return json_body(self._request("POST", "/v1/market/install", json=body))

    # transport

    # deployments

    def deploy(self, launch_yaml: str) -> JSONDict:
        """Launch or upgrade an instance from a launch file; returns the deployment."""
        return json_body(
            self._request(
                "POST",
                "/v1/deployments",
                content=launch_yaml.encode(),
                headers={"Content-Type": "application/yaml"},
            )
        )

    def get_deployment(self, deployment_id: str) -> JSONDict:
        return json_body(self._request("GET", f"/v1/deployments/{_seg(deployment_id)}"))

    def retry_deployment(self, deployment_id: str) -> JSONDict:
        """Run a WAIT_FOR_OP (or failed) deployment again, as a new revision."""
        return json_body(self._request("POST", f"/v1/deployments/{_seg(deployment_id)}/retry"))

    def terminate_deployment(self, deployment_id: str) -> JSONDict:
        """Stop a deployment that has not finished."""
        return json_body(self._request("POST", f"/v1/deployments/{_seg(deployment_id)}/terminate"))

    def register_cluster(self, name: str, kubeconfig: str, context: str | None = None) -> JSONDict:
        """Register (or replace) a Kubernetes cluster; the kubeconfig is stored encrypted."""
        body = {"kubeconfig": kubeconfig, "context": context}
        return json_body(self._request("PUT", f"/v1/clusters/{_seg(name)}", json=body))

    def list_clusters(self) -> JSONDict:
        return json_body(self._request("GET", "/v1/clusters"))

    def remove_cluster(self, name: str) -> None:
        self._request("DELETE", f"/v1/clusters/{_seg(name)}")

    def instance_logs(
        self, instance: str, component: str | None = None, tail: int = 100
    ) -> JSONDict:
        """{"components": {name: [line, …]}}: what its local processes printed last."""
        params: dict[str, Any] = {"tail": tail}
        if component:
            params["component"] = component
        path = f"/v1/instances/{_seg(instance)}/logs"
        return json_body(self._request("GET", path, params=params))

    def list_instances(self) -> JSONDict:
        return json_body(self._request("GET", "/v1/instances"))

    def rollback(self, instance: str, revision: int = 0) -> JSONDict:
        return json_body(
            self._request(
                "POST", f"/v1/instances/{_seg(instance)}/rollback", json={"revision": revision}
            )
        )

    def uninstall(self, instance: str) -> JSONDict:
        return json_body(self._request("DELETE", f"/v1/instances/{_seg(instance)}"))

    # identity: users, teams, tokens, the audit log

    def whoami(self) -> JSONDict:
        return json_body(self._request("GET", "/v1/whoami"))

    def create_token(
        self,
        name: str,
        *,
        scopes: list[str] | None = None,
        expires_in_s: int | None = None,
        user: str | None = None,
        rate_limit_per_s: float | None = None,
        rate_limit_burst: int | None = None,
    ) -> JSONDict:
        """A new token (yours; another user's if you are a platform admin), optionally with
        a lower rate limit of its own. Its secret, `token`, is in this answer only: the
        gateway keeps a hash."""
        body: JSONDict = {"name": name, "scopes": scopes, "expires_in_s": expires_in_s}
        if rate_limit_per_s is not None:
            body |= {"rate_limit_per_s": rate_limit_per_s, "rate_limit_burst": rate_limit_burst}
        path = f"/v1/users/{_seg(user)}/tokens" if user else "/v1/tokens"
        return json_body(self._request("POST", path, json=body))

    def list_tokens(self, user: str | None = None) -> JSONDict:
        params = {"user": user} if user else None
        return json_body(self._request("GET", "/v1/tokens", params=params))

    def revoke_token(self, token_id: int) -> JSONDict:
        return json_body(self._request("DELETE", f"/v1/tokens/{int(token_id)}"))

    def create_user(self, name: str, *, platform_admin: bool = False) -> JSONDict:
        body = {"name": name, "platform_admin": platform_admin}
        return json_body(self._request("POST", "/v1/users", json=body))

    def list_users(self) -> JSONDict:
        return json_body(self._request("GET", "/v1/users"))

    def create_team(self, name: str, description: str = "") -> JSONDict:
        body = {"name": name, "description": description}
        return json_body(self._request("POST", "/v1/teams", json=body))

    def list_teams(self) -> JSONDict:
        return json_body(self._request("GET", "/v1/teams"))

    def team_members(self, team: str) -> JSONDict:
        return json_body(self._request("GET", f"/v1/teams/{_seg(team)}/members"))

    def set_member(self, team: str, user: str, role: str) -> JSONDict:
        path = f"/v1/teams/{_seg(team)}/members/{_seg(user)}"
        return json_body(self._request("PUT", path, json={"role": role}))

    def remove_member(self, team: str, user: str) -> None:
        self._request("DELETE", f"/v1/teams/{_seg(team)}/members/{_seg(user)}")

    def audit(self, **filters: Any) -> JSONDict:
        """Audit records, newest first (filters: user, team, app, outcome, method, limit)."""
        params = {k: v for k, v in filters.items() if v is not None}
        return json_body(self._request("GET", "/v1/audit", params=params))

    def _request(
        self,
        method: str,
        path: str,
        *,
        attempts: int = 1,
        keep: frozenset[int] = frozenset(),
        **kwargs: Any,
    ) -> httpx.Response:
        """One call. With attempts > 1 (for requests safe to repeat), a 429, 502, 503, 504 or
        a transport error is tried again after Retry-After or an exponential backoff.
        Statuses in `keep` are returned, not raised."""
        for attempt in range(1, attempts + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt == attempts:
                    raise self._transport_error(exc) from None
                wait = self._backoff_s(attempt)
            else:
                if response.is_success or response.status_code in keep:
                    return response
                if response.status_code not in RETRYABLE or attempt == attempts:
                    raise http_error(response)
                wait = self._retry_wait(response, attempt)
            self._sleep(wait)
        raise AssertionError("unreachable")

    def _backoff_s(self, attempt: int) -> float:
        """Exponential, capped, with jitter so that many clients do not retry in step."""
        ceiling = min(self._max_wait, self._backoff * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)

    def _retry_wait(self, response: httpx.Response, attempt: int) -> float:
        asked = retry_after_s(response)
        return self._backoff_s(attempt) if asked is None else min(asked, self._max_wait)

    def _transport_error(self, exc: httpx.TransportError) -> OpslineError:
        if isinstance(exc, httpx.TimeoutException):
            return OpslineError(
                None, f"the gateway at {self.url} did not answer within {self.timeout:g} s"
            )
        return OpslineError(None, f"cannot reach the gateway at {self.url}: {_reason(exc)}")


class _Unavailable(OpslineError):
    """A refusal worth trying again (429, 502, 503, 504), after `wait` seconds."""

    def __init__(self, error: OpslineError, wait: float) -> None:
        super().__init__(error.status, error.detail)
        self.wait = wait


def _seg(value: str) -> str:
    return quote(str(value), safe="")


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _time_param(value: Time) -> str:
    # A naive datetime is local time, as everywhere in Python.
    return _rfc3339(value) if isinstance(value, datetime) else str(value)


def _step_param(step: str | float | timedelta) -> str:
    if isinstance(step, timedelta):
        step = step.total_seconds()
    return step if isinstance(step, str) else f"{step:g}s"


def match_params(match: Mapping[str, str] | Iterable[str]) -> list[str]:
    """Label matchers: a mapping means equality (LABEL=VALUE); strings pass as they are
    (LABEL!=VALUE, LABEL=~REGEX, LABEL!~REGEX)."""
    if isinstance(match, Mapping):
        return [f"{k}={v}" for k, v in match.items()]
    return list(match)


def _stream_params(types: Iterable[str], subject: str | None, app: str | None) -> QueryParams:
    params: QueryParams = [("type", t) for t in types]
    params += [(k, v) for k, v in (("subject", subject), ("app", app)) if v is not None]
    return params


def _publish_result(body: JSONDict) -> PublishResult:
    accepted = body.get("accepted")
    rejected = body.get("rejected")
    return PublishResult(
        accepted=[str(i) for i in accepted] if isinstance(accepted, list) else [],
        rejected=[
            cast(Rejection, r)
            for r in (rejected if isinstance(rejected, list) else [])
            if isinstance(r, dict)
        ],
    )


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
