"""The local runtime: `process` components run as supervised subprocesses on the embedded stack.

Layout under root: <instance>/<component>/rev-<n>/ (the unpacked artifact, the working
directory), rev-<n>.sha256 (what was unpacked there) and logs/current.log (the output of
every revision, rotated to previous.log when large).

Processes live and die with the runtime: close() stops them, and on Linux each child asks
the kernel (prctl PR_SET_PDEATHSIG) to SIGKILL it when the thread that started it dies, so
a killed deploy service leaves no process behind. Only the direct child is covered that
way; what it spawns shares its process group and is killed with it by stop() and close().
Nothing is adopted after a restart: the deploy state machine installs and starts again from
its database.

switch() starts the new revision next to the old one and stops the old one once the new
one is ready. Two processes cannot listen on one port, so when the new revision uses a port
of the old one (the usual upgrade), the old revision is stopped first and restarted if the
new one fails: a short gap instead of a false "ready" answered by the old process.

A child's environment is a few variables of ours (PATH, HOME, LANG, LC_*, TZ, TMPDIR, …),
not the whole environment (which holds the service's secrets), then PYTHONUNBUFFERED=1,
then the component's env, then PORT and OPSLINE_INSTANCE / _COMPONENT / _REVISION /
_REPLICA, which win. Exit codes follow subprocess: -9 means killed by SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import os
import posixpath
import re
import shlex
import shutil
import signal
import sys
import tarfile
import tempfile
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import unquote, urlsplit

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
BACKOFF_RESET_AFTER_S = 60.0  # uptime after which a crash counts as a first crash again
ALIVE_READY_S = 1.0  # a component without a port is ready once alive this long
FAILURE_TAIL = 20  # output lines quoted in a RolloutFailed reason
MAX_LINE = 16 * 1024
_PR_SET_PDEATHSIG = 1
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_INHERITED = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR")


class LocalRuntimeError(Exception):
    """The local runtime cannot do what was asked; the text is the reason a user reads."""


class ArtifactError(LocalRuntimeError):
    """An artifact cannot be installed: not a local file, wrong digest, unsafe archive."""


class RolloutFailed(LocalRuntimeError):
    """A new revision never became ready; the old one (if any) still runs."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _check_name(what: str, name: str) -> None:
    # Names become folder names, and uninstall removes root/<instance>: no '..', no '/'.
    if not _NAME.fullmatch(name):
        raise LocalRuntimeError(f"{what} name {name!r} is not [A-Za-z0-9][A-Za-z0-9._-]*")


# --- artifacts ---------------------------------------------------------------------------


def _artifact_path(uri: str) -> Path:
    parts = urlsplit(uri)
    if parts.scheme != "file":
        got = f"a {parts.scheme}:// URI" if parts.scheme else "a bare path"
        raise ArtifactError(
            f"artifact {uri}: the local runtime installs file:// URIs only, not {got}"
        )
    if parts.netloc not in ("", "localhost"):
        raise ArtifactError(f"artifact {uri}: names host {parts.netloc!r}; only local files work")
    return Path(unquote(parts.path))


def _sha256_hex(digest: str) -> str:
    algorithm, sep, value = digest.partition(":")
    hexdigest = (value if sep else algorithm).lower()
    if (sep and algorithm != "sha256") or not re.fullmatch(r"[0-9a-f]{64}", hexdigest):
        raise ArtifactError(f"digest {digest!r} is not sha256:<64 hex digits>")
    return hexdigest


def _download(source: Path, target: Path, uri: str) -> str:
    """Copy the artifact next to where it is unpacked; the sha256 of exactly what was copied."""
    sha = hashlib.sha256()
    try:
        with source.open("rb") as src, target.open("wb") as dst:
            while chunk := src.read(1 << 20):
                sha.update(chunk)
                dst.write(chunk)
    except FileNotFoundError:
        raise ArtifactError(f"artifact {uri} does not exist") from None
    except OSError as exc:
        raise ArtifactError(f"artifact {uri} cannot be read: {exc.strerror or exc}") from None
    return sha.hexdigest()


def _inside(path: str) -> bool:
    normal = posixpath.normpath(path)
    return normal != ".." and not normal.startswith("../")


def _check_member(member: tarfile.TarInfo) -> None:
    name, path = member.name, PurePosixPath(member.name)
    if path.is_absolute():
        raise ArtifactError(f"unsafe archive: {name!r} is an absolute path")
    if ".." in path.parts:
        raise ArtifactError(f"unsafe archive: {name!r} reaches outside its folder ('..')")
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise ArtifactError(f"unsafe archive: {name!r} is a device file or fifo")
    if member.issym() or member.islnk():
        target = member.linkname
        resolved = posixpath.join(str(path.parent), target) if member.issym() else target
        if posixpath.isabs(target) or not _inside(resolved):
            raise ArtifactError(
                f"unsafe archive: link {name!r} points outside its folder ({target})"
            )


def _unpack(archive: Path, target: Path, uri: str) -> None:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member)
            # The data filter checks again with the real paths (links through links).
            tar.extractall(target, members=members, filter="data")
    except tarfile.FilterError as exc:
        raise ArtifactError(f"unsafe archive: {exc}") from None
    except (tarfile.TarError, EOFError) as exc:
        raise ArtifactError(f"artifact {uri} is not a valid tar.gz: {exc}") from None


def _install(source: Path, folder: Path, expected: str, uri: str, running: bool) -> Path:
    marker = folder.with_name(folder.name + ".sha256")
    if folder.is_dir() and marker.is_file() and marker.read_text().strip() == expected:
        return folder
    if running:
        raise ArtifactError(
            f"component {folder.parent.name} {folder.name} runs another artifact; "
            "stop it before installing this one"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}-") as scratch:
        download = Path(scratch) / "artifact.tar.gz"
        actual = _download(source, download, uri)
        if actual != expected:
            raise ArtifactError(
                f"artifact {uri} has digest sha256:{actual}, expected sha256:{expected}"
            )
        tree = Path(scratch) / "tree"
        tree.mkdir()
        _unpack(download, tree, uri)
        marker.unlink(missing_ok=True)  # written last: a half-done install is redone
        if folder.exists():
            shutil.rmtree(folder)
        tree.rename(folder)
    marker.write_text(expected + "\n")
    return folder


# --- processes ---------------------------------------------------------------------------


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn making Linux SIGKILL the child when the thread that forked it dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    # Built here: the child between fork and exec should do as little as possible.
    args = (ctypes.c_int(_PR_SET_PDEATHSIG), ctypes.c_ulong(signal.SIGKILL))
    parent = os.getpid()

    def preexec() -> None:
        prctl(*args)
        if os.getppid() != parent:  # the runtime died before the request took effect
            os._exit(1)

    return preexec


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


async def _port_open(port: int) -> bool:
    for host in ("127.0.0.1", "::1"):
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
        except (OSError, TimeoutError):
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


@dataclass(frozen=True, slots=True)
class _Spec:
    revision: int
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    port: int | None
    replicas: int
    cwd: Path

    def ports(self) -> set[int]:
        return set() if self.port is None else {self.port + i for i in range(self.replicas)}


@dataclass(eq=False)
class _Replica:
    index: int
    port: int | None
    state: str = "stopped"
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    exits: int = 0
    last_exit_code: int | None = None
    error: str | None = None
    task: asyncio.Task[None] | None = None
    spawned: asyncio.Event = field(default_factory=asyncio.Event)


class _Revision:
    """The processes of one revision of a component."""

    def __init__(self, spec: _Spec, log_lines: int) -> None:
        self.spec = spec
        self.replicas = [
            _Replica(i, None if spec.port is None else spec.port + i) for i in range(spec.replicas)
        ]
        self.output: deque[str] = deque(maxlen=log_lines)  # this revision's own lines only
        self.stopping = asyncio.Event()
        self.last_exit_code: int | None = None

    @property
    def running(self) -> bool:
        return not self.stopping.is_set()


class _LogFile:
    """logs/current.log of a component, line by line; moved to previous.log when large."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path, self.max_bytes = path, max_bytes
        self._file: IO[str] | None = None
        self._size = 0
        self.closed = False

    def write(self, line: str) -> None:
        if self.closed:
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8", buffering=1)
            self._size = self._file.tell()
        self._file.write(line + "\n")
        self._size += len(line) + 1
        if self._size >= self.max_bytes:
            self._file.close()
            self._file = None
            os.replace(self.path, self.path.with_name("previous.log"))

    def close(self) -> None:
        self.closed = True
        if self._file is not None:
            self._file.close()
            self._file = None


class _Component:
    def __init__(self, instance: str, name: str, folder: Path, log_lines: int, log_bytes: int):
        self.instance, self.name, self.folder = instance, name, folder
        self.log: deque[str] = deque(maxlen=log_lines)
        self.log_file = _LogFile(folder / "logs" / "current.log", log_bytes)
        self.lock = asyncio.Lock()
        self.current: _Revision | None = None


class LocalRuntime:
    """Installs process components and keeps their processes running until told otherwise."""

    def __init__(self, root: Path, *, log_lines: int = 500, log_bytes: int = 10 << 20) -> None:
        self.root = Path(root)
        self.log_lines = log_lines
        self.log_bytes = log_bytes
        self._instances: dict[str, dict[str, _Component]] = {}
        self._preexec = _die_with_parent()
        self._closed = False
        # every output line, (instance, component, line): the log shipper's intake
        self.on_line: Callable[[str, str, str], None] | None = None

    # --- installing

    async def install(
        self, instance: str, component: str, revision: int, artifact_uri: str, digest: str
    ) -> Path:
        """Fetch, verify and unpack an artifact into <instance>/<component>/rev-<revision>/."""
        source, expected = _artifact_path(artifact_uri), _sha256_hex(digest)
        comp = self._component(instance, component)
        folder = comp.folder / f"rev-{int(revision)}"
        async with comp.lock:
            cur = comp.current
            running = cur is not None and cur.running and cur.spec.cwd == folder
            return await asyncio.to_thread(
                _install, source, folder, expected, artifact_uri, running
            )

    async def uninstall(self, instance: str, *, timeout: float = 10.0) -> None:
        """Stop every component of the instance and remove its folder."""
        _check_name("instance", instance)
        components = self._instances.pop(instance, {})
        await asyncio.gather(*(self._stop(c, timeout) for c in components.values()))
        for comp in components.values():
            comp.log_file.close()
        await asyncio.to_thread(shutil.rmtree, self.root / instance, ignore_errors=True)

    # --- running

    async def start(
        self,
        instance: str,
        component: str,
        revision: int,
        *,
        command: list[str] | str,
        env: Mapping[str, Any],
        port: int | None,
        replicas: int = 1,
        stop_timeout: float = 10.0,
    ) -> dict[str, Any]:
        """Run the revision (stopping whatever else runs); a no-op if it already runs as asked."""
        comp = self._component(instance, component)
        spec = self._spec(comp, revision, command, env, port, replicas)
        async with comp.lock:
            old = comp.current
            if old is not None and old.running and old.spec == spec:
                return self._status(comp)
            if old is not None:
                await self._stop_revision(comp, old, stop_timeout)
            new = comp.current = self._launch(comp, spec)
            await asyncio.gather(*(rep.spawned.wait() for rep in new.replicas))
            failed = next((rep for rep in new.replicas if rep.state == "failed"), None)
            if failed is not None:
                await self._stop_revision(comp, new, stop_timeout)
                raise LocalRuntimeError(
                    f"{self._who(comp, new, failed)} could not start: {failed.error}"
                )
            return self._status(comp)

    async def switch(
        self,
        instance: str,
        component: str,
        revision: int,
        *,
        command: list[str] | str,
        env: Mapping[str, Any],
        port: int | None,
        replicas: int = 1,
        ready_timeout: float = 10.0,
        stop_timeout: float = 10.0,
    ) -> dict[str, Any]:
        """Bring up the revision, then stop the old one; RolloutFailed if it never gets ready."""
        comp = self._component(instance, component)
        spec = self._spec(comp, revision, command, env, port, replicas)
        async with comp.lock:
            old = comp.current if comp.current is not None and comp.current.running else None
            if old is not None and old.spec == spec:
                return self._status(comp)
            side_by_side = old is None or not (old.spec.ports() & spec.ports())
            if old is not None and not side_by_side:
                self._note(
                    comp,
                    f"revision {revision} needs the ports of revision "
                    f"{old.spec.revision}; stopping it first",
                )
                await self._stop_revision(comp, old, stop_timeout)
            new = self._launch(comp, spec)
            why = await self._wait_ready(comp, new, ready_timeout)
            if why is None:
                comp.current = new
                if old is not None and side_by_side:
                    await self._stop_revision(comp, old, stop_timeout)
                return self._status(comp)
            await self._stop_revision(comp, new, stop_timeout)
            if old is not None and not side_by_side:
                comp.current = self._launch(comp, old.spec)
                again = await self._wait_ready(comp, comp.current, ready_timeout)
                state = "was restarted" if again is None else f"was restarted but {again}"
                why += f" (revision {old.spec.revision} {state})"
            elif old is not None:
                why += f" (revision {old.spec.revision} keeps running)"
            tail = list(new.output)[-FAILURE_TAIL:]
            output = "last output:\n" + "\n".join(tail) if tail else "it printed nothing"
            raise RolloutFailed(f"{why}; {output}")

    async def stop(self, instance: str, component: str, timeout: float = 10.0) -> None:
        """SIGTERM the component's process groups, SIGKILL what is left after timeout."""
        comp = self._instances.get(instance, {}).get(component)
        if comp is not None:
            await self._stop(comp, timeout)

    async def close(self, timeout: float = 10.0) -> None:
        """Stop every process (the service is shutting down); the folders stay."""
        self._closed = True
        components = [c for comps in self._instances.values() for c in comps.values()]
        await asyncio.gather(*(self._stop(c, timeout) for c in components))
        for comp in components:
            comp.log_file.close()

    # --- looking

    def status(self, instance: str) -> dict[str, dict[str, Any]]:
        """Per component: revision, pids, state, restarts, last_exit_code, port, replicas."""
        return {n: self._status(c) for n, c in self._instances.get(instance, {}).items()}

    def components(self, instance: str) -> list[str]:
        """The instance's components this runtime knows, sorted."""
        return sorted(self._instances.get(instance, {}))

    def logs(self, instance: str, component: str, tail: int = 100) -> list[str]:
        """Its last output lines, all revisions, oldest first; ours start with [opsline]."""
        comp = self._instances.get(instance, {}).get(component)
        return [] if comp is None or tail <= 0 else list(comp.log)[-tail:]

    # --- internals

    def _component(self, instance: str, component: str) -> _Component:
        if self._closed:
            raise LocalRuntimeError("the local runtime is closed")
        _check_name("instance", instance)
        _check_name("component", component)
        comps = self._instances.setdefault(instance, {})
        if component not in comps:
            folder = self.root / instance / component
            comps[component] = _Component(
                instance, component, folder, self.log_lines, self.log_bytes
            )
        return comps[component]

    def _spec(
        self,
        comp: _Component,
        revision: int,
        command: list[str] | str,
        env: Mapping[str, Any],
        port: int | None,
        replicas: int,
    ) -> _Spec:
        what = f"component {comp.name} revision {revision}"
        argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
        if not argv:
            raise LocalRuntimeError(f"{what}: the command is empty")
        if replicas < 1:
            raise LocalRuntimeError(f"{what}: replicas must be at least 1, not {replicas}")
        if port is not None and not 0 < port <= 65536 - replicas:
            raise LocalRuntimeError(f"{what}: port {port} is out of range for {replicas} replicas")
        cwd = comp.folder / f"rev-{int(revision)}"
        if not cwd.with_name(cwd.name + ".sha256").is_file():
            raise LocalRuntimeError(f"{what} is not installed")
        pairs = tuple(sorted((str(k), str(v)) for k, v in env.items()))
        return _Spec(int(revision), tuple(argv), pairs, port, replicas, cwd)

    def _launch(self, comp: _Component, spec: _Spec) -> _Revision:
        rev = _Revision(spec, self.log_lines)
        for rep in rev.replicas:
            name = f"{comp.instance}/{comp.name}/rev-{spec.revision}/{rep.index}"
            rep.task = asyncio.create_task(self._supervise(comp, rev, rep), name=name)
        return rev

    def _child_env(self, comp: _Component, spec: _Spec, rep: _Replica) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in _INHERITED or k.startswith("LC_")}
        env["PYTHONUNBUFFERED"] = "1"
        env.update(spec.env)
        if rep.port is not None:
            env["PORT"] = str(rep.port)
        env["OPSLINE_INSTANCE"] = comp.instance
        env["OPSLINE_COMPONENT"] = comp.name
        env["OPSLINE_REVISION"] = str(spec.revision)
        env["OPSLINE_REPLICA"] = str(rep.index)
        return env

    async def _supervise(self, comp: _Component, rev: _Revision, rep: _Replica) -> None:
        """Run one replica until stopped: every exit, 0 included, is followed by a restart."""
        loop = asyncio.get_running_loop()
        delay = BACKOFF_FIRST_S
        while True:
            started = loop.time()
            code = await self._run(comp, rev, rep)
            if code is None or rev.stopping.is_set():
                rep.state = "failed" if code is None and not rev.stopping.is_set() else "stopped"
                return
            if loop.time() - started >= BACKOFF_RESET_AFTER_S:
                delay = BACKOFF_FIRST_S
            rep.state = "restarting"
            self._note(
                comp,
                f"{self._who(comp, rev, rep)} {_describe_exit(code)}; restarting in {delay:g} s",
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rev.stopping.wait(), delay)
            if rev.stopping.is_set():
                rep.state = "stopped"
                return
            rep.restarts += 1
            delay = min(delay * 2, BACKOFF_MAX_S)

    async def _run(self, comp: _Component, rev: _Revision, rep: _Replica) -> int | None:
        """Start the process and wait for it; its exit code, or None if it cannot start."""
        argv = rev.spec.argv
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=rev.spec.cwd,
                env=self._child_env(comp, rev.spec, rep),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() kills what it spawned
                preexec_fn=self._preexec,
            )
        except OSError as exc:
            where = " on PATH" if "/" not in argv[0] else ""
            rep.error = f"cannot run {argv[0]!r}{where}: {exc.strerror or exc}"
            self._note(comp, f"{self._who(comp, rev, rep)} {rep.error}")
            rep.spawned.set()
            return None
        rep.proc, rep.state = proc, "running"
        rep.spawned.set()
        self._note(comp, f"{self._who(comp, rev, rep)} started: pid {proc.pid}, {shlex.join(argv)}")
        if rev.stopping.is_set():  # stop() came while it was being started
            _signal_group(proc.pid, signal.SIGTERM)
        assert proc.stdout is not None
        pump = asyncio.create_task(self._pump(comp, rev, proc.stdout))
        try:
            code = await proc.wait()
        except asyncio.CancelledError:
            _signal_group(proc.pid, signal.SIGKILL)
            pump.cancel()
            raise
        _signal_group(proc.pid, signal.SIGKILL)  # whatever it left behind in its group
        with contextlib.suppress(TimeoutError):  # a child that left the group may hold the pipe
            await asyncio.wait_for(pump, 1.0)
        rep.proc = None
        rep.last_exit_code = rev.last_exit_code = code
        rep.exits += 1
        return code

    async def _pump(self, comp: _Component, rev: _Revision, stream: asyncio.StreamReader) -> None:
        pending = b""
        while chunk := await stream.read(1 << 16):
            *lines, pending = (pending + chunk).split(b"\n")
            if len(pending) > MAX_LINE:
                lines.append(pending[:MAX_LINE] + " …".encode())
                pending = b""
            for line in lines:
                self._output(comp, rev, line.decode("utf-8", "replace").rstrip("\r"))
        if pending:
            self._output(comp, rev, pending.decode("utf-8", "replace").rstrip("\r"))

    def _output(self, comp: _Component, rev: _Revision, line: str) -> None:
        rev.output.append(line)
        self._keep(comp, line)

    def _note(self, comp: _Component, text: str) -> None:
        """A line of ours in the component's log, told apart from the program's own."""
        self._keep(comp, f"[opsline] {text}")

    def _keep(self, comp: _Component, line: str) -> None:
        comp.log.append(line)
        comp.log_file.write(line)
        if self.on_line is not None:
            self.on_line(comp.instance, comp.name, line)

    async def _stop(self, comp: _Component, timeout: float) -> None:
        async with comp.lock:
            if comp.current is not None:
                await self._stop_revision(comp, comp.current, timeout)

    async def _stop_revision(self, comp: _Component, rev: _Revision, timeout: float) -> None:
        rev.stopping.set()
        for rep in rev.replicas:
            if rep.proc is not None:
                _signal_group(rep.proc.pid, signal.SIGTERM)
        tasks = [rep.task for rep in rev.replicas if rep.task is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        if pending:
            self._note(
                comp,
                f"revision {rev.spec.revision} ignored SIGTERM for {timeout:g} s; sending SIGKILL",
            )
            for rep in rev.replicas:
                if rep.proc is not None:
                    _signal_group(rep.proc.pid, signal.SIGKILL)
            await asyncio.wait(pending)

    async def _wait_ready(self, comp: _Component, rev: _Revision, timeout: float) -> str | None:
        """None once every replica is ready, else why the first one is not."""
        deadline = asyncio.get_running_loop().time() + timeout
        answers = await asyncio.gather(
            *(self._replica_ready(comp, rev, rep, deadline, timeout) for rep in rev.replicas)
        )
        return next((a for a in answers if a is not None), None)

    async def _replica_ready(
        self, comp: _Component, rev: _Revision, rep: _Replica, deadline: float, timeout: float
    ) -> str | None:
        loop = asyncio.get_running_loop()
        await rep.spawned.wait()
        who = self._who(comp, rev, rep)
        if rep.error is not None:
            return f"{who} could not start: {rep.error}"
        alive_since = loop.time()
        while True:
            if rep.exits:
                until = "within 1 s" if rep.port is None else f"before it opened port {rep.port}"
                return f"{who} {_describe_exit(rep.last_exit_code)} {until}"
            if rep.port is None:
                if loop.time() - alive_since >= ALIVE_READY_S:
                    return None
            elif await _port_open(rep.port):
                return None
            elif loop.time() >= deadline:
                return f"{who} did not open port {rep.port} within {timeout:g} s"
            await asyncio.sleep(0.1)

    @staticmethod
    def _who(comp: _Component, rev: _Revision, rep: _Replica) -> str:
        replica = f" replica {rep.index}" if rev.spec.replicas > 1 else ""
        return f"component {comp.name} revision {rev.spec.revision}{replica}"

    @staticmethod
    def _status(comp: _Component) -> dict[str, Any]:
        rev = comp.current
        replicas = rev.replicas if rev is not None else []
        states = {rep.state for rep in replicas}
        state = next((s for s in ("failed", "restarting", "running") if s in states), "stopped")
        return {
            "revision": rev.spec.revision if rev is not None else None,
            "pids": [rep.proc.pid for rep in replicas if rep.proc is not None],
            "state": state,
            "restarts": sum(rep.restarts for rep in replicas),
            "last_exit_code": rev.last_exit_code if rev is not None else None,
            "port": rev.spec.port if rev is not None else None,
            "replicas": [
                {
                    "index": rep.index,
                    "pid": rep.proc.pid if rep.proc is not None else None,
                    "port": rep.port,
                    "state": rep.state,
                    "restarts": rep.restarts,
                    "last_exit_code": rep.last_exit_code,
                    "error": rep.error,
                }
                for rep in replicas
            ],
        }
