"""The detector process waits for Kafka instead of crashing (services start in any order)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from libs.devstack.stack import tansu_binary

ROOT = Path(__file__).resolve().parents[2]
WAITING = "waiting for Kafka at"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Output:
    """Collects a process's output lines on a thread, so the test can wait for one."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._cond = threading.Condition()
        assert process.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def wait_for(self, text: str, *, count: int = 1, deadline_s: float = 60.0) -> None:
        end = time.monotonic() + deadline_s
        with self._cond:
            while sum(text in line for line in self.lines) < count:
                left = end - time.monotonic()
                assert left > 0, f"no {count}x {text!r} in:\n{''.join(self.lines[-30:])}"
                exited = self.process.poll()
                assert exited is None, f"exited ({exited}):\n{''.join(self.lines[-30:])}"
                self._cond.wait(min(left, 0.5))


@pytest.fixture
def detector(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Output, int, int]]:
    kafka, web = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OPSLINE_")},
        "OPSLINE_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka}",
        "OPSLINE_HOME": str(tmp_path),
        "OPSLINE_AIOPS_DETECTOR_PORT": str(web),
        "OPSLINE_TOPIC_PARTITIONS": "1",
        "OTEL_SDK_DISABLED": "true",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "services.aiops_detector"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process, Output(process), kafka, web
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_waits_for_kafka_then_stops_cleanly_on_sigterm(
    detector: tuple[subprocess.Popen[str], Output, int, int],
) -> None:
    process, output, _, _ = detector
    output.wait_for(WAITING, count=3)  # it retried, with the reason, instead of exiting
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def test_starts_once_kafka_comes_up(
    detector: tuple[subprocess.Popen[str], Output, int, int],
) -> None:
    process, output, kafka, web = detector
    output.wait_for(WAITING, count=2)
    url = f"tcp://127.0.0.1:{kafka}"
    broker = subprocess.Popen(
        [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        end = time.monotonic() + 120
        while True:
            assert process.poll() is None, "".join(output.lines[-30:])
            try:
                if httpx.get(f"http://127.0.0.1:{web}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < end, "".join(output.lines[-30:])
            time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        broker.terminate()
        broker.wait(timeout=30)
