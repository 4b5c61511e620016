"""Deterministic tarballs and fetching sources: the same input always gives the same bytes."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import gzip
import hashlib
import os
import signal
import stat
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_EXCLUDES = (".git", "__pycache__", "*.pyc")


class PackError(Exception):
    """Packing or fetching failed; the text is the reason a user reads."""


class Aborted(Exception):
    """Packing was stopped from outside (the build was cancelled or timed out)."""


@dataclass(slots=True, frozen=True)
class Packed:
    path: Path
    files: int
    size: int
    sha256: str  # hex


def parse_excludes(value: str | None) -> tuple[str, ...]:
    """A comma-separated list of glob patterns (build.exclude), plus the defaults."""
    extra = tuple(p.strip().strip("/") for p in (value or "").split(",") if p.strip())
    return DEFAULT_EXCLUDES + extra


def _excluded(rel: str, patterns: tuple[str, ...]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def walk(root: Path, patterns: tuple[str, ...]) -> Iterator[tuple[str, Path]]:
    """(relative posix path, path) of what to pack, sorted; excluded directories are pruned."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        rel_dir = base.relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        kept = []
        for d in sorted(dirnames):
            if _excluded(prefix + d, patterns):
                continue
            if (base / d).is_symlink():  # packed as a link, not followed
                filenames.append(d)
                continue
            kept.append(d)
        dirnames[:] = kept
        entries = sorted([*(f for f in filenames), *(d for d in kept)])
        for entry in entries:
            rel = prefix + entry
            if not _excluded(rel, patterns):
                yield rel, base / entry


def _tarinfo(rel: str, path: Path) -> tarfile.TarInfo:
    st = path.lstat()
    info = tarfile.TarInfo(rel)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
        info.mode = 0o777
    elif stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    elif stat.S_ISREG(st.st_mode):
        info.size = st.st_size
        # Only the executable bit survives a git checkout; keep just that.
        info.mode = 0o755 if st.st_mode & stat.S_IXUSR else 0o644
    else:
        raise PackError(f"{rel}: not a regular file, directory or symlink")
    return info


def pack_dir(
    root: Path,
    target: Path,
    *,
    excludes: tuple[str, ...] = DEFAULT_EXCLUDES,
    abort: threading.Event | None = None,
    on_file: Callable[[str, int], None] | None = None,
) -> Packed:
    """Write root's tree as a reproducible tar.gz (sorted, mtime 0, owner 0, no names)."""
    files = 0
    with target.open("wb") as raw:
        # filename="" and mtime=0 keep the gzip header free of names and times.
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for rel, path in walk(root, excludes):
                    if abort is not None and abort.is_set():
                        raise Aborted("packing stopped")
                    info = _tarinfo(rel, path)
                    if info.isreg():
                        with path.open("rb") as f:
                            tar.addfile(info, f)
                        files += 1
                        if on_file is not None:
                            on_file(rel, info.size)
                    else:
                        tar.addfile(info)
    digest = hashlib.sha256()
    with target.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return Packed(target, files, target.stat().st_size, digest.hexdigest())


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # unreachable


async def run_command(
    argv: list[str], *, log: Callable[[str], None], cwd: Path | None = None
) -> int:
    """Run a command, its output line by line into log; a cancelled caller kills it at once."""
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        # Never ext:: (runs commands) or other exotic transports named in a request.
        "GIT_ALLOW_PROTOCOL": "file:git:http:https:ssh",
        "LC_ALL": "C",
    }
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group: a kill takes its children too
    )
    try:
        assert proc.stdout is not None
        async for line in proc.stdout:
            log(line.decode(errors="replace").rstrip())
        return await proc.wait()
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.shield(proc.wait())


async def git_clone(url: str, ref: str, target: Path, *, log: Callable[[str], None]) -> None:
    """A shallow clone of ref (a branch or tag; the default branch when empty)."""
    argv = ["git", "clone", "--depth", "1", "--no-tags"]
    if ref:
        argv += ["--branch", ref]
    argv += ["--", url, str(target)]
    log("$ " + " ".join(argv))
    code = await run_command(argv, log=log)
    if code != 0:
        where = f"{url} at {ref}" if ref else url
        raise PackError(f"git clone of {where} failed (exit code {code})")
