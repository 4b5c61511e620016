"""Start the embedded stack (supervisord, real broker, store and services) for a test run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from libs.devstack.stack import Stack, admin_token, write_config


@dataclass
class RunningStack:
    stack: Stack
    process: subprocess.Popen[bytes]
    admin_token: str

    @property
    def home(self) -> Path:
        return self.stack.home

    def log(self, program: str) -> str:
        path = self.stack.home / "logs" / f"{program}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def supervisorctl(self, *args: str) -> str:
        ctl = Path(sys.executable).parent / "supervisorctl"
        out = subprocess.run(
            [str(ctl), "-c", str(self.stack.config_file), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout + out.stderr

    def pid(self, program: str) -> int:
        out = self.supervisorctl("pid", program).strip()
        return int(out)

    def register_cluster(self, name: str, kubeconfig: Path) -> dict:
        """PUT /v1/clusters/<name> with the kubeconfig file's text, as a user would."""
        response = httpx.put(
            f"{self.stack.gateway_url}/v1/clusters/{name}",
            json={"kubeconfig": kubeconfig.read_text()},
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=30,
        )
        response.raise_for_status()
        return dict(response.json())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_stack(
    home: Path, *, port_offset: int, timeout: float = 240.0, env: dict[str, str] | None = None
) -> RunningStack:
    """Start everything under supervisord and wait until the gateway's /readyz is 200."""
    stack = Stack(home=home, port_offset=port_offset, console=False)
    home.mkdir(parents=True, exist_ok=True)
    config = write_config(stack)
    supervisord = Path(sys.executable).parent / "supervisord"
    process = subprocess.Popen(
        [str(supervisord), "-c", str(config)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    running = RunningStack(stack, process, admin_token(stack)[0])
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"supervisord exited with {process.returncode}")
        try:
            response = httpx.get(f"{stack.gateway_url}/readyz", timeout=3)
            if response.status_code == 200:
                return running
            last = response.json()
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(1)
    logs = "\n".join(
        f"--- {p}\n{running.log(p)[-3000:]}"
        for p in ("gateway", "dataops-ingest", "aiops-detector", "broker", "store")
    )
    running.stop()
    raise TimeoutError(f"stack not ready after {timeout}s: {last}\n{logs}")
