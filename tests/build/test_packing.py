"""Reproducible tarballs and shallow clones, on real directories and a real git repository."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from services.build import packing
from tests.build.conftest import make_source


def _names(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return tar.getnames()


def test_packing_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    src = make_source(tmp_path)
    first = packing.pack_dir(src, tmp_path / "a.tar.gz")
    # New mtimes, as a fresh checkout would have: the archive must not change.
    for path in src.rglob("*"):
        os.utime(path, (1_900_000_000, 1_900_000_000))
    second = packing.pack_dir(src, tmp_path / "b.tar.gz")
    assert first.sha256 == second.sha256
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.size == (tmp_path / "a.tar.gz").stat().st_size


def test_entries_are_sorted_anonymous_and_timeless(tmp_path: Path) -> None:
    packed = packing.pack_dir(make_source(tmp_path), tmp_path / "a.tar.gz")
    with tarfile.open(packed.path) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == ["README.md", "app", "logs", "run.sh", "app/main.py", "logs/today.log"]
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members)
    assert all(m.uname == "" and m.gname == "" for m in members)
    modes = {m.name: m.mode for m in members}
    assert modes["run.sh"] == 0o755 and modes["README.md"] == 0o644
    assert packed.files == 4
    raw = packed.path.read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip header mtime


def test_excludes_defaults_and_globs(tmp_path: Path) -> None:
    src = make_source(tmp_path)
    excludes = packing.parse_excludes(" logs , *.md ,")
    assert excludes == (*packing.DEFAULT_EXCLUDES, "logs", "*.md")
    packed = packing.pack_dir(src, tmp_path / "a.tar.gz", excludes=excludes)
    assert _names(packed.path) == ["app", "run.sh", "app/main.py"]
    # A path pattern excludes just that path.
    only = packing.pack_dir(src, tmp_path / "b.tar.gz", excludes=packing.parse_excludes("app/*"))
    assert "app/main.py" not in _names(only.path) and "logs/today.log" in _names(only.path)


def test_symlinks_are_kept_as_links(tmp_path: Path) -> None:
    src = make_source(tmp_path)
    (src / "current").symlink_to("app")
    packed = packing.pack_dir(src, tmp_path / "a.tar.gz")
    with tarfile.open(packed.path) as tar:
        link = tar.getmember("current")
    assert link.issym() and link.linkname == "app"
    assert "current/main.py" not in _names(packed.path)


def test_human_size() -> None:
    assert packing.human_size(12) == "12 B"
    assert packing.human_size(3482) == "3.4 KiB"
    assert packing.human_size(5 << 20) == "5.0 MiB"


def git_repo(root: Path, src: Path) -> Path:
    """A local repository on branch main whose tree is src (and a tag v1)."""
    repo = root / "repo.git-src"
    subprocess.run(["cp", "-a", str(src), str(repo)], check=True)
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_SYSTEM": "/dev/null"}
    ident = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", *ident, "commit", "-q", "-m", "first"],
        ["git", "tag", "v1"],
    ):
        subprocess.run(argv, cwd=repo, check=True, env=env, capture_output=True)
    return repo


async def test_git_clone_of_a_file_url_packs_like_the_directory(tmp_path: Path) -> None:
    src = make_source(tmp_path)
    (src / "app" / "__pycache__").rename(tmp_path / "pycache")  # not committed
    repo = git_repo(tmp_path, src)
    lines: list[str] = []
    await packing.git_clone(repo.as_uri(), "main", tmp_path / "clone", log=lines.append)
    assert (tmp_path / "clone" / "app" / "main.py").is_file()
    assert lines[0].startswith("$ git clone --depth 1")
    from_git = packing.pack_dir(tmp_path / "clone", tmp_path / "git.tar.gz")
    from_dir = packing.pack_dir(src, tmp_path / "dir.tar.gz")
    assert from_git.sha256 == from_dir.sha256  # .git is skipped, times and owners erased
    await packing.git_clone(repo.as_uri(), "v1", tmp_path / "tagged", log=lines.append)
    assert (tmp_path / "tagged" / "run.sh").is_file()


async def test_git_clone_of_a_missing_ref_says_so(tmp_path: Path) -> None:
    repo = git_repo(tmp_path, make_source(tmp_path))
    lines: list[str] = []
    with pytest.raises(packing.PackError) as err:
        await packing.git_clone(repo.as_uri(), "nope", tmp_path / "clone", log=lines.append)
    assert str(err.value) == f"git clone of {repo.as_uri()} at nope failed (exit code 128)"
    assert any("nope" in line for line in lines[1:])  # git's own words are in the log
