"""examples/hello/src/app.py for real: a subprocess on a free port, stopped by a signal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

APP = Path(__file__).parents[2] / "examples" / "hello" / "src" / "app.py"


@contextmanager
def hello(**env: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Start the app on a free port; yields the process and its URL once it answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base_env = {
        k: v for k, v in os.environ.items() if k not in ("OPSLINE_PACKAGE_VERSION", "GREETING")
    }
    proc = subprocess.Popen(
        [sys.executable, str(APP)],
        env={**base_env, **env, "PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"{url}/healthz")
                break
            except httpx.ConnectError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else b""
                assert time.monotonic() < deadline, "hello did not start listening"
                time.sleep(0.05)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_hello_answers_and_exits_0_on_sigterm() -> None:
    with hello(OPSLINE_PACKAGE_VERSION="7", GREETING="hi") as (proc, url):
        root = httpx.get(f"{url}/")
        assert root.status_code == 200
        assert root.json() == {"app": "hello", "version": "7", "greeting": "hi"}
        assert httpx.get(f"{url}/healthz").status_code == 200
        assert httpx.get(f"{url}/nope").status_code == 404
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0


def test_hello_defaults_and_ctrl_c() -> None:
    with hello() as (proc, url):
        assert httpx.get(f"{url}/").json() == {
            "app": "hello",
            "version": "dev",
            "greeting": "hello",
        }
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=5) == 0
