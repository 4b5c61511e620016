"""OpslineClient against the fake gateway: settings, errors, events, catalogue, builds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from opsline.client import (
    DEFAULT_URL,
    OpslineClient,
    OpslineError,
    parse_sse,
    read_config,
    write_config,
)
from tests.cli.conftest import Gateway
from tests.cli.fake_gateway import TOKEN


def _config(tmp_path: Path, **keys: str) -> dict[str, str]:
    """An environment whose config file (under XDG_CONFIG_HOME) holds `keys`."""
    path = tmp_path / "xdg" / "opsline" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text("".join(f'{k} = "{v}"\n' for k, v in keys.items()))
    return {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}


def _client(gateway: Gateway, **kwargs: object) -> OpslineClient:
    return OpslineClient(gateway.url, TOKEN, env={}, retry_backoff=0.01, **kwargs)  # type: ignore[arg-type]


def test_argument_beats_environment_beats_config_file(gateway: Gateway, tmp_path: Path) -> None:
    env = _config(tmp_path, url="http://config:1", token="from-config")
    env |= {"OPSLINE_URL": gateway.url, "OPSLINE_TOKEN": "from-env"}

    def sent_token(client: OpslineClient) -> str:
        with client:
            try:
                client.list_apps()
            except OpslineError:
                pass
        return gateway.state.requests[-1].headers["authorization"]

    assert sent_token(OpslineClient(token=TOKEN, env=env)) == f"Bearer {TOKEN}"
    assert sent_token(OpslineClient(env=env)) == "Bearer from-env"
    env.pop("OPSLINE_TOKEN")
    assert sent_token(OpslineClient(env=env)) == "Bearer from-config"
    assert OpslineClient(url="http://arg:2", env=env).url == "http://arg:2"
    env.pop("OPSLINE_URL")
    assert OpslineClient(env=env).url == "http://config:1"


def test_url_defaults_to_the_local_gateway(tmp_path: Path) -> None:
    client = OpslineClient(token="t", env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert client.url == DEFAULT_URL


def test_missing_token_names_the_three_places(tmp_path: Path) -> None:
    with pytest.raises(OpslineError) as caught:
        OpslineClient(env={"XDG_CONFIG_HOME": str(tmp_path)})
    message = str(caught.value)
    assert "--token" in message
    assert "OPSLINE_TOKEN" in message
    assert str(tmp_path / "opsline" / "config.toml") in message


def test_broken_config_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "opsline" / "config.toml"
    path.parent.mkdir()
    path.write_text("token = \n")
    with pytest.raises(OpslineError, match=r"config\.toml: invalid TOML"):
        OpslineClient(env={"XDG_CONFIG_HOME": str(tmp_path)})


def test_write_config_round_trips_odd_characters(tmp_path: Path) -> None:
    path = tmp_path / "opsline" / "config.toml"
    write_config(path, url="http://h:1", token='a"b\\c\té\x7f')
    assert read_config(path) == {"url": "http://h:1", "token": 'a"b\\c\té\x7f'}
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(OpslineError, match="non-ASCII"):
        OpslineClient(env={}, config_file=path)


def test_publish_sends_a_structured_cloudevent(gateway: Gateway) -> None:
    with _client(gateway) as ops:
        result = ops.publish("com.example.ci.finished", "my-ci", {"ok": True}, subject="shop")
    [seen] = gateway.state.requests
    assert seen.headers["content-type"] == "application/cloudevents+json"
    event = json.loads(seen.body)
    assert event["specversion"] == "1.0"
    assert (event["type"], event["source"], event["subject"]) == (
        "com.example.ci.finished",
        "my-ci",
        "shop",
    )
    assert event["data"] == {"ok": True}
    assert event["time"].endswith("Z")
    assert result == {"accepted": [event["id"]], "rejected": []}


def test_publish_retries_a_503_with_the_same_id(gateway: Gateway) -> None:
    with _client(gateway) as ops:
        result = ops.publish("com.example.x", "flaky", {}, id="evt-1")
    assert result["accepted"] == ["evt-1"]
    bodies = [json.loads(s.body) for s in gateway.state.requests]
    assert [b["id"] for b in bodies] == ["evt-1", "evt-1"]


def test_publish_batch_fills_ids(gateway: Gateway) -> None:
    events = [{"type": "com.example.a", "source": "s", "data": {"i": i}} for i in range(3)]
    with _client(gateway) as ops:
        result = ops.publish_batch(events)
    [seen] = gateway.state.requests
    assert seen.headers["content-type"] == "application/cloudevents-batch+json"
    sent = json.loads(seen.body)
    assert [e["specversion"] for e in sent] == ["1.0"] * 3
    assert result["accepted"] == [e["id"] for e in sent]
    assert len(set(result["accepted"])) == 3


def test_a_refused_event_raises_with_the_servers_reasons(gateway: Gateway) -> None:
    with _client(gateway) as ops, pytest.raises(OpslineError) as caught:
        ops.publish("io.opsline.metric.batch", "bad", {"samples": []}, id="e-9")
    assert caught.value.status == 422
    assert "no event accepted" in caught.value.detail
    assert "event e-9: samples[0].value: not a number (str)" in caught.value.detail


def test_errors_carry_status_and_detail(gateway: Gateway) -> None:
    with _client(gateway) as ops, pytest.raises(OpslineError) as caught:
        ops.get_app("nope")
    assert (caught.value.status, caught.value.detail) == (404, "app 'nope' not found")
    with OpslineClient(gateway.url, "wrong", env={}) as ops, pytest.raises(OpslineError) as caught:
        ops.list_apps()
    assert caught.value.status == 401
    assert str(caught.value) == "HTTP 401: invalid, expired or revoked token"


def test_unreachable_gateway(closed_url: str) -> None:
    with OpslineClient(closed_url, "t", env={}, retry_backoff=0.01) as ops:
        with pytest.raises(
            OpslineError, match=re.escape(f"cannot reach the gateway at {closed_url}: ")
        ):
            ops.list_apps()
        with pytest.raises(OpslineError, match="cannot reach the gateway"):
            ops.publish("com.example.x", "s", {})  # three tries, then the same message


def test_query_metrics_sends_matchers(gateway: Gateway) -> None:
    with _client(gateway) as ops:
        series = ops.query_metrics(
            "cpu_usage", "2026-11-01T00:00:00Z", 1700000000000, {"app": "shop"}
        )
    assert series == [
        {
            "name": "cpu_usage",
            "labels": {"app": "shop"},
            "points": [["2026-11-01T00:00:00Z", 1.0], ["1700000000000", 2.0]],
        }
    ]


def test_stream_events_parses_sse_frames(gateway: Gateway) -> None:
    with _client(gateway) as ops:
        got = list(ops.stream_events(types=["io.opsline.build."], subject="hello"))
    assert [(e["id"], e["type"]) for e in got] == [
        ("e1", "io.opsline.build.started"),
        ("e3", "io.opsline.build.succeeded"),
    ]
    assert got[0]["data"] == {"n": 1}
    assert "type=io.opsline.build.&subject=hello" in gateway.state.requests[0].query


def test_stream_error_frame_raises(gateway: Gateway) -> None:
    with _client(gateway) as ops, pytest.raises(OpslineError, match="client too slow"):
        list(ops.stream_events(types=["error"]))


def test_parse_sse() -> None:
    lines = [
        ": connected",
        "",
        "id: 1",
        "event: a",
        "data: {",
        'data:"x": 1}',
        "",
        "event: nothing",  # no data: not dispatched
        "",
        "data: plain",  # no event name: "message"; no blank line at the end
    ]
    frames = list(parse_sse(lines))
    assert [(f.id, f.event, f.data) for f in frames] == [
        ("1", "a", '{\n"x": 1}'),
        ("1", "message", "plain"),
    ]


def test_apply_sends_yaml_and_the_base_dir(gateway: Gateway, tmp_path: Path) -> None:
    text = "apiVersion: opsline.io/v1\nkind: App\nmeta: {name: shop}\n"
    with _client(gateway) as ops:
        result = ops.apply_app(text, tmp_path)
    assert result["app"] == "shop" and result["action"] == "created"
    [seen] = gateway.state.requests
    assert seen.path == "/v1/apps:apply"
    assert seen.headers["content-type"] == "application/yaml"
    assert seen.headers["x-opsline-base-dir"] == str(tmp_path)
    assert seen.body == text.encode()


def test_build_and_market_round_trip(gateway: Gateway) -> None:
    with _client(gateway) as ops:
        started = ops.start_build("hello", component="web")
        assert started == {"build_id": "b-1", "version": 1, "status": "QUEUED"}
        assert json.loads(gateway.state.requests[-1].body) == {"component": "web"}
        statuses = [ops.get_build("b-1")["status"] for _ in range(4)]
        assert statuses == ["QUEUED", "RUNNING", "RUNNING", "SUCCEEDED"]
        ops.cancel_build("b-1")
        assert ops.get_build("b-1")["status"] == "CANCELLED"
        assert ops.list_packages("hello")["packages"][0]["version"] == 1
        ops.market_publish("hello", 1, "file:///m")
        assert ops.market_list("file:///m")["packages"][0]["app"] == "hello"
        assert ops.market_install("file:///m", "hello", 1)["action"] == "installed"
