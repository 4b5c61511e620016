"""The local runtime with real processes on real ports: install, run, crash, switch, stop."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shlex
import signal
import socket
import sys
import tarfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.deploy.local_runtime import (
    ArtifactError,
    LocalRuntime,
    LocalRuntimeError,
    RolloutFailed,
)

REPO = Path(__file__).resolve().parents[2]

# A tiny HTTP service: answers its version (from env) and what opsline told it.
APP = """\
import json, os
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({
            "version": os.environ["VERSION"],
            "port": os.environ["PORT"],
            "instance": os.environ["OPSLINE_INSTANCE"],
            "component": os.environ["OPSLINE_COMPONENT"],
            "revision": os.environ["OPSLINE_REVISION"],
        }).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

port = int(os.environ["PORT"])
server = HTTPServer(("127.0.0.1", port), Handler)
print(f"version {os.environ['VERSION']} listening on {port}")
server.serve_forever()
"""

BROKEN = """\
print("loading settings")
raise RuntimeError("DATABASE_URL is not set")
"""

# Spawns a grandchild into its own process group, prints both pids, then waits.
PARENT = """\
import os, signal, subprocess, sys, time
if os.environ.get("IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(f"pids {os.getpid()} {child.pid}")
time.sleep(60)
"""

PYTHON = shlex.join([sys.executable, "app.py"])


def make_artifact(folder: Path, name: str, files: dict[str, str]) -> tuple[str, str]:
    archive = folder / f"{name}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive.as_uri(), "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest()


def free_port(count: int = 1) -> int:
    """A port p with p .. p+count-1 all free right now."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count > 65535:
            continue
        try:
            for p in range(base + 1, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return base


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def get(port: int) -> dict[str, Any]:
    async with httpx.AsyncClient(trust_env=False, timeout=2.0) as client:
        response = await client.get(f"http://127.0.0.1:{port}/")
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


async def get_eventually(port: int, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await get(port)
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"nothing answered on port {port}"
            await asyncio.sleep(0.05)


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[LocalRuntime]:
    rt = LocalRuntime(tmp_path / "runtime")
    yield rt
    await rt.close()


async def install_app(rt: LocalRuntime, tmp_path: Path, revision: int, app: str = APP) -> None:
    uri, digest = make_artifact(tmp_path, f"web-{revision}", {"app.py": app})
    await rt.install("shop", "web", revision, uri, digest)


async def test_install_unpacks_and_is_idempotent(runtime: LocalRuntime, tmp_path: Path) -> None:
    uri, digest = make_artifact(tmp_path, "web", {"app.py": APP, "static/index.html": "hi"})
    folder = await runtime.install("shop", "web", 1, uri, digest)
    assert folder == tmp_path / "runtime" / "shop" / "web" / "rev-1"
    assert (folder / "app.py").read_text() == APP
    assert (folder / "static" / "index.html").read_text() == "hi"
    # Already there with this digest: the artifact is not even read again.
    (tmp_path / "web.tar.gz").unlink()
    assert await runtime.install("shop", "web", 1, uri, digest) == folder


async def test_only_verified_local_artifacts_are_installed(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    uri, digest = make_artifact(tmp_path, "web", {"app.py": APP})
    wrong = "sha256:" + "0" * 64
    with pytest.raises(ArtifactError) as mismatch:
        await runtime.install("shop", "web", 1, uri, wrong)
    assert digest in str(mismatch.value) and wrong in str(mismatch.value)
    assert not (tmp_path / "runtime" / "shop" / "web" / "rev-1").exists()
    with pytest.raises(ArtifactError, match="file:// URIs only, not a s3:// URI"):
        await runtime.install("shop", "web", 1, "s3://bucket/web.tar.gz", digest)
    with pytest.raises(ArtifactError, match="does not exist"):
        await runtime.install("shop", "web", 1, (tmp_path / "gone.tar.gz").as_uri(), digest)
    with pytest.raises(LocalRuntimeError, match=r"instance name '\.\./x'"):
        await runtime.install("../x", "web", 1, uri, digest)
    with pytest.raises(LocalRuntimeError, match="component web revision 7 is not installed"):
        await runtime.start("shop", "web", 7, command=PYTHON, env={}, port=None)


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize(
    ("members", "why"),
    [
        ([_member("../evil")], "'../evil' reaches outside its folder"),
        ([_member("/tmp/evil")], "'/tmp/evil' is an absolute path"),
        ([_member("lib/evil", tarfile.SYMTYPE, "../../evil")], "link 'lib/evil' points outside"),
        ([_member("etc", tarfile.SYMTYPE, "/etc")], "link 'etc' points outside"),
        ([_member("evil", tarfile.LNKTYPE, "../evil")], "link 'evil' points outside"),
        ([_member("tty", tarfile.CHRTYPE)], "'tty' is a device file"),
        (
            [_member("d", tarfile.SYMTYPE, "."), _member("d/e", tarfile.SYMTYPE, "../evil")],
            "'d/e' would link to",
        ),
    ],
    ids=["dotdot", "absolute", "symlink", "absolute-symlink", "hardlink", "device", "link-chain"],
)
async def test_unsafe_archives_are_refused(
    runtime: LocalRuntime, tmp_path: Path, members: list[tarfile.TarInfo], why: str
) -> None:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.addfile(_member("app.py"), io.BytesIO(b""))
        for member in members:
            tar.addfile(member, io.BytesIO(b""))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    with pytest.raises(ArtifactError) as refused:
        await runtime.install("shop", "web", 1, archive.as_uri(), digest)
    assert str(refused.value).startswith("unsafe archive: ")
    assert why in str(refused.value)
    assert not (tmp_path / "runtime" / "shop" / "web" / "rev-1").exists()
    assert not any(p.name == "evil" for p in tmp_path.rglob("*"))


async def test_serves_and_is_restarted_after_a_crash(runtime: LocalRuntime, tmp_path: Path) -> None:
    await install_app(runtime, tmp_path, 1)
    port = free_port()
    await runtime.start("shop", "web", 1, command=PYTHON, env={"VERSION": "v1"}, port=port)
    assert await get_eventually(port) == {
        "version": "v1",
        "port": str(port),
        "instance": "shop",
        "component": "web",
        "revision": "1",
    }
    status = runtime.status("shop")["web"]
    assert status["state"] == "running" and status["restarts"] == 0
    assert status["revision"] == 1 and status["port"] == port
    (pid,) = status["pids"]

    os.kill(pid, signal.SIGKILL)

    def restarted() -> bool:
        now = runtime.status("shop")["web"]
        return now["state"] == "running" and bool(now["pids"]) and now["pids"] != [pid]

    await eventually(restarted)
    status = runtime.status("shop")["web"]
    assert status["restarts"] == 1 and status["last_exit_code"] == -signal.SIGKILL
    assert (await get_eventually(port))["version"] == "v1"
    lines = runtime.logs("shop", "web")
    assert lines.count(f"version v1 listening on {port}") == 2
    assert "[opsline] component web revision 1 was killed by SIGKILL; restarting in 1 s" in lines
    logged = (tmp_path / "runtime" / "shop" / "web" / "logs" / "current.log").read_text()
    assert f"version v1 listening on {port}\n" in logged


async def test_switch_on_the_same_port_replaces_the_revision(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    await install_app(runtime, tmp_path, 1)
    await install_app(runtime, tmp_path, 2)
    port = free_port()
    await runtime.start("shop", "web", 1, command=PYTHON, env={"VERSION": "v1"}, port=port)
    assert (await get_eventually(port))["version"] == "v1"
    (old,) = runtime.status("shop")["web"]["pids"]
    other_uri, other_digest = make_artifact(tmp_path, "other", {"app.py": BROKEN})
    with pytest.raises(ArtifactError, match="component web rev-1 runs another artifact"):
        await runtime.install("shop", "web", 1, other_uri, other_digest)

    status = await runtime.switch(
        "shop", "web", 2, command=PYTHON, env={"VERSION": "v2"}, port=port
    )

    assert status["revision"] == 2 and status["state"] == "running"
    assert (await get(port))["version"] == "v2"
    assert not alive(old)


async def test_failed_switch_keeps_the_old_revision_then_a_good_one_replaces_it(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    await install_app(runtime, tmp_path, 1)
    await install_app(runtime, tmp_path, 2)
    await install_app(runtime, tmp_path, 3, app=BROKEN)
    port, other = free_port(), free_port()
    await runtime.start("shop", "web", 1, command=PYTHON, env={"VERSION": "v1"}, port=port)
    assert (await get_eventually(port))["version"] == "v1"
    (old,) = runtime.status("shop")["web"]["pids"]

    with pytest.raises(RolloutFailed) as failed:
        await runtime.switch("shop", "web", 3, command=PYTHON, env={}, port=other)

    reason = failed.value.reason
    assert reason.startswith(
        f"component web revision 3 exited with code 1 before it opened port {other} "
        "(revision 1 keeps running); last output:\nloading settings\nTraceback"
    )
    assert reason.endswith("RuntimeError: DATABASE_URL is not set")
    status = runtime.status("shop")["web"]
    assert status["revision"] == 1 and status["pids"] == [old]
    assert (await get(port))["version"] == "v1"

    await runtime.switch("shop", "web", 2, command=PYTHON, env={"VERSION": "v2"}, port=other)
    assert (await get(other))["version"] == "v2"
    assert not alive(old)
    with pytest.raises(httpx.ConnectError):
        await get(port)


async def test_failed_switch_on_the_same_port_restarts_the_old_revision(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    await install_app(runtime, tmp_path, 1)
    await install_app(runtime, tmp_path, 3, app=BROKEN)
    port = free_port()
    await runtime.start("shop", "web", 1, command=PYTHON, env={"VERSION": "v1"}, port=port)
    await get_eventually(port)

    with pytest.raises(RolloutFailed, match=r"\(revision 1 was restarted\)") as failed:
        await runtime.switch("shop", "web", 3, command=PYTHON, env={}, port=port)

    assert "RuntimeError: DATABASE_URL is not set" in failed.value.reason
    assert (await get(port))["version"] == "v1"
    assert runtime.status("shop")["web"]["revision"] == 1


async def test_a_port_never_opened_fails_the_rollout_in_time(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    await install_app(runtime, tmp_path, 1, app="import time\nprint('warming up')\ntime.sleep(60)")
    port = free_port()
    started = time.monotonic()
    with pytest.raises(RolloutFailed) as failed:
        await runtime.switch("shop", "web", 1, command=PYTHON, env={}, port=port, ready_timeout=1)
    assert time.monotonic() - started < 5
    assert failed.value.reason == (
        f"component web revision 1 did not open port {port} within 1 s; last output:\nwarming up"
    )
    assert runtime.status("shop") == {
        "web": {
            "revision": None,
            "pids": [],
            "state": "stopped",
            "restarts": 0,
            "last_exit_code": None,
            "port": None,
            "replicas": [],
        }
    }


async def test_replicas_get_consecutive_ports(runtime: LocalRuntime, tmp_path: Path) -> None:
    await install_app(runtime, tmp_path, 1)
    port = free_port(2)
    status = await runtime.switch(
        "shop", "web", 1, command=PYTHON, env={"VERSION": "v1"}, port=port, replicas=2
    )
    assert len(status["pids"]) == 2
    assert [r["port"] for r in status["replicas"]] == [port, port + 1]
    assert (await get(port))["port"] == str(port)
    assert (await get(port + 1))["port"] == str(port + 1)


@pytest.mark.parametrize("ignore_term", [False, True], ids=["sigterm", "sigkill"])
async def test_stop_leaves_no_process(
    runtime: LocalRuntime, tmp_path: Path, ignore_term: bool
) -> None:
    await install_app(runtime, tmp_path, 1, app=PARENT)
    env = {"IGNORE_TERM": "1"} if ignore_term else {}
    await runtime.start("shop", "web", 1, command=PYTHON, env=env, port=None)

    def printed() -> list[str]:
        return [line for line in runtime.logs("shop", "web") if line.startswith("pids ")]

    await eventually(lambda: bool(printed()))
    pids = [int(p) for p in printed()[0].split()[1:]]
    assert all(alive(pid) for pid in pids)

    started = time.monotonic()
    await runtime.stop("shop", "web", timeout=0.5)

    assert time.monotonic() - started < 3
    await eventually(lambda: not any(alive(pid) for pid in pids), timeout=2)
    status = runtime.status("shop")["web"]
    assert status["state"] == "stopped" and status["pids"] == []


async def test_a_service_exiting_0_is_restarted_and_its_output_kept(tmp_path: Path) -> None:
    runtime = LocalRuntime(tmp_path / "runtime", log_lines=5)
    try:
        await install_app(runtime, tmp_path, 1, app="for i in range(10):\n    print(f'line {i}')")
        await runtime.start("shop", "web", 1, command=PYTHON, env={}, port=None)
        await eventually(lambda: runtime.status("shop")["web"]["restarts"] >= 1, timeout=5)
        assert runtime.status("shop")["web"]["last_exit_code"] == 0
        lines = runtime.logs("shop", "web")
        assert len(lines) == 5
        assert runtime.logs("shop", "web", tail=2) == lines[-2:]
        logged = (tmp_path / "runtime" / "shop" / "web" / "logs" / "current.log").read_text()
        assert "line 0\n" in logged and "line 9\n" in logged
        assert "component web revision 1 exited with code 0; restarting in 1 s" in logged
    finally:
        await runtime.close()


async def test_a_missing_program_is_reported(runtime: LocalRuntime, tmp_path: Path) -> None:
    await install_app(runtime, tmp_path, 1)
    with pytest.raises(LocalRuntimeError, match="cannot run 'no-such-program' on PATH"):
        await runtime.start("shop", "web", 1, command="no-such-program --x", env={}, port=None)
    status = runtime.status("shop")["web"]
    assert status["state"] == "failed" and status["pids"] == []
    assert "No such file or directory" in status["replicas"][0]["error"]


async def test_uninstall_stops_everything_and_removes_the_folder(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    await install_app(runtime, tmp_path, 1)
    port = free_port()
    await runtime.start("shop", "web", 1, command=PYTHON, env={"VERSION": "v1"}, port=port)
    await get_eventually(port)
    (pid,) = runtime.status("shop")["web"]["pids"]

    await runtime.uninstall("shop")

    assert not alive(pid)
    assert not (tmp_path / "runtime" / "shop").exists()
    assert runtime.status("shop") == {}


# Runs a runtime in its own Python process, prints its child's pid, then waits to be killed.
HOST = """\
import asyncio, sys
from pathlib import Path
from services.deploy.local_runtime import LocalRuntime

async def main():
    runtime = LocalRuntime(Path(sys.argv[1]))
    await runtime.install("shop", "web", 1, sys.argv[2], sys.argv[3])
    status = await runtime.start(
        "shop", "web", 1, command=[sys.executable, "-c", "import time; time.sleep(60)"],
        env={}, port=None,
    )
    print(status["pids"][0], flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
async def test_processes_die_with_a_killed_runtime(tmp_path: Path) -> None:
    uri, digest = make_artifact(tmp_path, "web", {"app.py": APP})
    host = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOST,
        str(tmp_path / "runtime"),
        uri,
        digest,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    assert host.stdout is not None
    line = await asyncio.wait_for(host.stdout.readline(), 10)
    child = int(line)
    assert alive(child)

    host.kill()
    await host.wait()

    await eventually(lambda: not alive(child), timeout=5)


async def test_close_stops_every_process(tmp_path: Path) -> None:
    runtime = LocalRuntime(tmp_path / "runtime")
    await install_app(runtime, tmp_path, 1)
    port = free_port()
    await runtime.start("shop", "web", 1, command=PYTHON, env={"VERSION": "v1"}, port=port)
    (pid,) = runtime.status("shop")["web"]["pids"]

    await runtime.close()

    assert not alive(pid)
    assert json.dumps(runtime.status("shop"))  # still readable after close
    with pytest.raises(LocalRuntimeError, match="closed"):
        await runtime.start("shop", "web", 1, command=PYTHON, env={}, port=port)
