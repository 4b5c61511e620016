"""Bench infrastructure: a private broker and store, process-tree memory, table output."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import httpx

from libs.devstack.stack import noida_binary, tansu_binary


def stack_port_offset() -> int:
    """Where a benchmark's embedded stack puts its ports: OPSLINE_BENCH_PORT_OFFSET (20000).

    Another stack (tests, a second benchmark) may already run on this machine.
    """
    return int(os.environ.get("OPSLINE_BENCH_PORT_OFFSET", "20000"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


class Infra:
    """A Tansu broker and a noida-db Elasticsearch of the benchmark's own."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.kafka_port = free_port()
        self.es_port = free_port()
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def es_url(self) -> str:
        return f"http://127.0.0.1:{self.es_port}"

    def start(self) -> Infra:
        self.workdir.mkdir(parents=True, exist_ok=True)
        url = f"tcp://127.0.0.1:{self.kafka_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        log = open(self.workdir / "infra.log", "wb")
        self.procs.append(
            subprocess.Popen(
                [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        )
        self.procs.append(
            subprocess.Popen(
                [
                    noida_binary(),
                    "start",
                    "--only",
                    "elasticsearch",
                    "--elasticsearch-port",
                    str(self.es_port),
                    "--data-dir",
                    str(self.workdir / "es"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        )
        wait_port(self.kafka_port)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.es_url, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise TimeoutError("the benchmark's Elasticsearch did not start")

    def stop(self) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, 15)
            except ProcessLookupError:
                continue
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)


def tree_rss_bytes(root_pid: int) -> int:
    """Resident memory of a process and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            ppid = int(fields[1])
            with open(f"/proc/{entry}/statm") as fh:
                pages = int(fh.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        pid = int(entry)
        children.setdefault(ppid, []).append(pid)
        rss[pid] = pages * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def children_rss(root_pid: int) -> dict[str, int]:
    """RSS of each direct child's process tree, by the child's command name."""
    out: dict[str, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            if int(fields[1]) != root_pid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        words = [a.decode(errors="replace") for a in argv if a]
        name = next((w.split(".")[-1] for w in words if w.startswith("services.")), None)
        name = name or next(
            (os.path.basename(w) for w in words if "tansu" in w or "noida" in w),
            os.path.basename(words[0]) if words else entry,
        )
        out[name] = out.get(name, 0) + tree_rss_bytes(int(entry))
    return out


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
