"""The fake gateway (one per session, state reset per test) and a CLI runner wired to it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from opsline import cli
from opsline.cli import app
from tests.cli.fake_gateway import TOKEN, FakeState, create_app, serve


@dataclass
class Gateway:
    url: str
    state: FakeState


@pytest.fixture(scope="session")
def _gateway() -> Iterator[Gateway]:
    state = FakeState()
    with serve(create_app(state)) as url:
        yield Gateway(url, state)


@pytest.fixture
def gateway(_gateway: Gateway) -> Gateway:
    _gateway.state.reset()
    return _gateway


@pytest.fixture
def closed_url() -> str:
    """A URL on which nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class Opsline:
    """Runs the CLI in-process, with the gateway's URL and token in its environment."""

    def __init__(self, env: dict[str, str | None]) -> None:
        self.env = env
        self.runner = CliRunner()

    def __call__(self, *args: str, **env: str | None) -> Result:
        return self.runner.invoke(app, list(args), env={**self.env, **env})


@pytest.fixture
def opsline(gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Opsline:
    monkeypatch.setattr(cli, "POLL_INTERVAL", 0.01)
    return Opsline(
        {
            "OPSLINE_URL": gateway.url,
            "OPSLINE_TOKEN": TOKEN,
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "COLUMNS": "160",
        }
    )
