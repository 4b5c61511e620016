"""The `opsline` command against the fake gateway (typer's CliRunner, in-process)."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest
from rich.console import Console
from rich.text import Text

from opsline import cli
from tests.cli.conftest import Gateway, Opsline
from tests.cli.fake_gateway import DIGEST, TOKEN

HELLO = Path(__file__).parents[2] / "examples" / "hello"


@pytest.fixture
def hello_dir(tmp_path: Path) -> Path:
    """A copy of examples/hello, free to edit."""
    return Path(shutil.copytree(HELLO, tmp_path / "hello"))


def test_apply_prints_the_action_and_a_diff(
    opsline: Opsline, gateway: Gateway, hello_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(hello_dir.parent)
    first = opsline("app", "apply", "-f", "hello/opsline.yaml")
    assert first.exit_code == 0, first.output
    assert first.output.startswith("hello: created")
    assert '+ components[0].traits.command: "python app.py"' in first.output
    assert gateway.state.requests[0].headers["x-opsline-base-dir"] == str(hello_dir)

    yaml_file = hello_dir / "opsline.yaml"
    yaml_file.write_text(yaml_file.read_text().replace("replicas: 1", "replicas: 2"))
    second = opsline("app", "apply", "-f", str(yaml_file))
    assert second.exit_code == 0, second.output
    assert second.output.splitlines() == [
        "hello: updated (1 change)",
        "  ~ components[0].traits.replicas: 1 → 2",
    ]
    assert opsline("app", "apply", "-f", str(yaml_file)).output == "hello: unchanged\n"


def test_apply_shows_the_servers_validation_errors(opsline: Opsline, tmp_path: Path) -> None:
    wrong = tmp_path / "opsline.yaml"
    wrong.write_text("apiVersion: opsline.io/v1\nkind: Ap\nmeta: {name: x}\n")
    result = opsline("app", "apply", "-f", str(wrong))
    assert result.exit_code == 1
    assert result.output == (
        "error: HTTP 422: invalid opsline.yaml: line 2, column 7: kind: must be App\n"
    )


def test_apply_missing_file_names_it(opsline: Opsline, gateway: Gateway, tmp_path: Path) -> None:
    result = opsline("app", "apply", "-f", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 1
    assert result.output == f"error: no such file: {tmp_path / 'nope.yaml'}\n"
    assert gateway.state.requests == []


def test_invalid_yaml_is_reported_with_line_and_column_before_any_request(
    opsline: Opsline, gateway: Gateway, tmp_path: Path
) -> None:
    bad = tmp_path / "opsline.yaml"
    bad.write_text("apiVersion: opsline.io/v1\nkind: App\nmeta:\n  name: [hello\n")
    result = opsline("app", "apply", "-f", str(bad))
    assert result.exit_code == 1
    assert result.output.startswith(f"error: {bad}:5:1: invalid YAML: ")
    assert "Traceback" not in result.output
    assert gateway.state.requests == []


def test_app_list(opsline: Opsline, hello_dir: Path) -> None:
    assert "no apps yet" in opsline("app", "list").output
    opsline("app", "apply", "-f", str(hello_dir / "opsline.yaml"))
    result = opsline("app", "list")
    assert result.exit_code == 0
    header, row = result.output.splitlines()
    assert header.split() == ["NAME", "TEAM", "COMPONENTS", "UPDATED", "DESCRIPTION"]
    assert row.split()[:5] == ["hello", "demo", "web", "2026-11-21", "12:00:00"]


def test_build_wait_shows_the_steps_and_exits_0(opsline: Opsline, gateway: Gateway) -> None:
    result = opsline("build", "hello", "--wait")
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith("build b-1: hello version 1 QUEUED\n")
    for line in ("web/fetch │ copying ./src", "web/package │ packing web.tar.gz"):
        assert out.count(line) == 1  # each log line once, as it appears
    assert f"web/package │ wrote {DIGEST}" in out
    # Not a terminal: each step's status changes are lines, in order.
    assert [
        line for line in out.splitlines() if line.endswith(("PENDING", "RUNNING", "SUCCEEDED"))
    ] == [
        "web/fetch PENDING",
        "web/package PENDING",
        "web/fetch RUNNING",
        "web/fetch SUCCEEDED",
        "web/package RUNNING",
        "web/package SUCCEEDED",
    ]
    assert out.rstrip().endswith("build b-1 succeeded: version 1")


def test_build_wait_exits_1_with_the_reason(opsline: Opsline, gateway: Gateway) -> None:
    result = opsline("build", "hello", "--component", "broken", "--version", "7", "--wait")
    assert result.exit_code == 1
    assert "build b-1: hello version 7" in result.output
    assert "build b-1 failed: web/package: exit code 2: no such file app.py" in result.stderr
    assert json.loads(gateway.state.requests[0].body) == {"component": "broken", "version": "7"}


def test_build_wait_ctrl_c_cancels_and_exits_130(
    opsline: Opsline, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.time, "sleep", interrupt)
    result = opsline("build", "hello", "--wait")
    assert result.exit_code == 130
    assert "POST /v1/builds/b-1/cancel" in gateway.state.paths()
    assert "cancel requested for build b-1" in result.stderr


def test_build_without_wait_status_and_cancel(opsline: Opsline, gateway: Gateway) -> None:
    started = opsline("build", "start", "hello")
    assert started.output.splitlines()[-1] == "follow it: opsline build status b-1"
    status = opsline("build", "status", "b-1")
    assert status.exit_code == 0
    assert status.output.startswith("build b-1 · hello version 1 · QUEUED")
    cancelled = opsline("build", "cancel", "b-1")
    assert cancelled.output == "cancel requested for build b-1: CANCELLED\n"
    again = opsline("build", "status", "b-1")
    assert "reason: cancelled by the user" in again.output


def test_package_list_shows_short_digests(opsline: Opsline) -> None:
    result = opsline("package", "list", "hello")
    assert result.exit_code == 0
    header, row = result.output.splitlines()
    assert header.split() == ["VERSION", "BUILD", "CREATED", "ARTIFACTS"]
    assert row.split() == [
        "1",
        "b-1",
        "2026-11-21",
        "12:00:00",
        "web",
        "tar.gz",
        "sha256:ab12cd34ef56",
        "2.0",
        "KiB",
    ]


def test_market_publish_list_install(opsline: Opsline) -> None:
    market = "file:///srv/market"
    assert opsline("market", "publish", "hello", "1", "--market", market).output == (
        f"published hello 1 to {market}\n"
    )
    listed = opsline("market", "list", "--market", market).output.splitlines()
    assert listed[1].split() == ["hello", "1", "2026-11-21", "12:00:00"]
    installed = opsline("market", "install", "hello", "1", "--market", market)
    assert installed.output == f"installed hello 1 from {market}\n"
    missing = opsline("market", "install", "shop", "2", "--market", market)
    assert missing.exit_code == 1
    assert missing.output == f"error: HTTP 404: shop 2 is not in {market}\n"


def test_events_publish(opsline: Opsline, gateway: Gateway) -> None:
    result = opsline(
        "events", "publish", "com.example.ci.finished", "--source", "my-ci",
        "--subject", "shop", "--data", '{"ok": true}', "--id", "ci-1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output == "accepted ci-1\n"
    [event] = gateway.state.published
    assert (event["type"], event["source"], event["subject"]) == (
        "com.example.ci.finished",
        "my-ci",
        "shop",
    )
    assert event["data"] == {"ok": True}


def test_events_publish_refuses_bad_json(opsline: Opsline, gateway: Gateway) -> None:
    result = opsline("events", "publish", "x.y", "--source", "s", "--data", "{ok}")
    assert result.exit_code == 1
    assert result.output.startswith("error: --data is not valid JSON: ")
    assert "(line 1, column 2)" in result.output
    assert gateway.state.requests == []


def test_events_follow(opsline: Opsline) -> None:
    result = opsline("events", "follow", "--type", "io.opsline.build.", "--subject", "hello")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert [line.split()[1:3] for line in lines] == [
        ["io.opsline.build.started", "hello"],
        ["io.opsline.build.succeeded", "hello"],
    ]
    as_json = opsline("events", "follow", "-t", "com.example.", "--json").stdout.splitlines()
    assert [json.loads(line)["id"] for line in as_json] == ["e2"]


def test_unreachable_gateway(opsline: Opsline, closed_url: str) -> None:
    result = opsline("app", "list", OPSLINE_URL=closed_url)
    assert result.exit_code == 1
    assert result.output.startswith(f"error: cannot reach the gateway at {closed_url}: ")
    assert len(result.output.splitlines()) == 1


def test_missing_token(opsline: Opsline, tmp_path: Path) -> None:
    result = opsline("app", "list", OPSLINE_TOKEN=None)
    assert result.exit_code == 1
    assert "no API token: pass --token" in result.output
    assert "OPSLINE_TOKEN" in result.output
    assert str(tmp_path / "config" / "opsline" / "config.toml") in result.output


def test_global_options_beat_the_environment(
    opsline: Opsline, gateway: Gateway, closed_url: str
) -> None:
    result = opsline("--url", gateway.url, "--token", TOKEN, "app", "list", OPSLINE_URL=closed_url)
    assert result.exit_code == 0, result.output
    refused = opsline("--token", "wrong", "app", "list")
    assert refused.output == "error: HTTP 401: invalid, expired or revoked token\n"


def test_login_writes_a_private_config_file(
    opsline: Opsline, gateway: Gateway, tmp_path: Path
) -> None:
    path = tmp_path / "config" / "opsline" / "config.toml"
    refused = opsline("login", "--url", gateway.url, "--token", "wrong")
    assert refused.exit_code == 1
    assert "refused the token" in refused.output
    assert not path.exists()

    result = opsline("login", "--url", gateway.url + "/", "--token", TOKEN)
    assert result.exit_code == 0, result.output
    assert path.stat().st_mode & 0o777 == 0o600
    assert tomllib.loads(path.read_text()) == {"url": gateway.url, "token": TOKEN}
    # Now the CLI works with nothing in the environment.
    assert opsline("app", "list", OPSLINE_URL=None, OPSLINE_TOKEN=None).exit_code == 0


def test_build_wait_on_a_terminal_is_a_live_table(
    opsline: Opsline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "_out", lambda: Console(force_terminal=True, width=100))
    result = opsline("build", "hello", "--wait")
    assert result.exit_code == 0, result.output
    text = Text.from_ansi(result.stdout).plain
    assert "COMPONENT" in text and "STEP" in text
    assert text.count("copying ./src") == 1
    assert "build b-1 · hello version 1 · SUCCEEDED" in text


def test_login_without_verify_still_checks_the_url(opsline: Opsline, tmp_path: Path) -> None:
    result = opsline("login", "--url", "127.0.0.1:8080", "--token", TOKEN, "--no-verify")
    assert result.exit_code == 1
    assert "must start with http:// or https://" in result.output
    assert not (tmp_path / "config" / "opsline" / "config.toml").exists()


def test_build_help_and_options_before_the_app(opsline: Opsline) -> None:
    assert "status" in opsline("build", "--help").output
    result = opsline("build", "--wait", "hello")  # options may come first
    assert result.exit_code == 0, result.output
