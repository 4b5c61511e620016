"""Real database servers for the library tests: PostgreSQL 15 and MariaDB, one each per session.

Each server runs from a throw-away data directory on a free port bound to 127.0.0.1 and is
stopped (and its directory removed) when the session ends. A missing server binary skips the
tests that need it, with the reason; on the project's CI image both are installed.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("OPSLINE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
MARIADBD = Path(os.environ.get("OPSLINE_TEST_MARIADBD", "/usr/sbin/mariadbd"))
MARIADB_INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class DatabaseServer:
    url: str  # plain URL (libs.db.async_url adds the driver)
    port: int


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unprivileged_user() -> str | None:
    """The account to run PostgreSQL as when we are root (it refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    pytest.skip("running as root and no unprivileged account (postgres/nobody) to run PostgreSQL")


def _stop(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


def _wait_until(ready, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + START_TIMEOUT
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
        try:
            ready()
            return
        except Exception as exc:  # not accepting connections yet
            last = exc
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not start within {START_TIMEOUT}s ({last}):\n{_tail(log)}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[DatabaseServer]:
    initdb, postgres, psql = PG_BIN / "initdb", PG_BIN / "postgres", PG_BIN / "psql"
    for binary in (initdb, postgres, psql):
        if not binary.exists():
            pytest.skip(f"PostgreSQL 15 is not installed ({binary} is missing)")
    user = _unprivileged_user()
    # Not under pytest's tmp_path: that tree is private to root, the server user must enter.
    base = Path(tempfile.mkdtemp(prefix="opsline-pg-"))
    data, sockdir, log = base / "data", base / "sock", base / "postgres.log"
    sockdir.mkdir()
    if user is not None:
        pw = pwd.getpwnam(user)
        for path in (base, sockdir):
            os.chown(path, pw.pw_uid, pw.pw_gid)
    group = pwd.getpwnam(user).pw_gid if user else None
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    port = free_port()
    proc: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            [
                str(initdb),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
            check=True,
            capture_output=True,
            env=env,
            cwd=base,
            timeout=120,
            user=user,
            group=group,
        )
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [
                    str(postgres),
                    "-D",
                    str(data),
                    "-p",
                    str(port),
                    "-k",
                    str(sockdir),
                    "-h",
                    "127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=50",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=base,
                user=user,
                group=group,
            )

        def ready() -> None:
            subprocess.run(
                [
                    str(psql),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-Atqc",
                    "SELECT 1",
                ],
                check=True,
                capture_output=True,
                timeout=10,
            )

        _wait_until(ready, proc, log, "postgres")
        subprocess.run(
            [
                str(psql),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-qc",
                "CREATE DATABASE opsline_test",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        yield DatabaseServer(f"postgresql://postgres@127.0.0.1:{port}/opsline_test", port)
    finally:
        if proc is not None:
            _stop(proc, signal.SIGINT)  # SIGINT: PostgreSQL's "fast" shutdown
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[DatabaseServer]:
    if not MARIADBD.exists():
        pytest.skip(f"MariaDB is not installed ({MARIADBD} is missing)")
    if not Path(MARIADB_INSTALL_DB).exists():
        pytest.skip(f"MariaDB is not installed ({MARIADB_INSTALL_DB} is missing)")
    import pymysql

    base = Path(tempfile.mkdtemp(prefix="opsline-mariadb-"))
    data, sock, log = base / "data", base / "mariadb.sock", base / "mariadb.log"
    user = pwd.getpwuid(os.geteuid()).pw_name
    port = free_port()
    proc: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            [
                MARIADB_INSTALL_DB,
                "--no-defaults",
                f"--datadir={data}",
                "--auth-root-authentication-method=normal",
                f"--user={user}",
                "--skip-test-db",
                "--skip-name-resolve",
            ],
            check=True,
            capture_output=True,
            cwd=base,
            timeout=180,
        )
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [
                    str(MARIADBD),
                    "--no-defaults",
                    f"--datadir={data}",
                    f"--port={port}",
                    "--bind-address=127.0.0.1",
                    f"--socket={sock}",
                    f"--user={user}",
                    f"--pid-file={base / 'mariadb.pid'}",
                    "--skip-grant-tables",
                    "--skip-name-resolve",
                    "--skip-log-bin",
                    "--innodb-buffer-pool-size=32M",
                    "--innodb-flush-log-at-trx-commit=0",
                    "--innodb-doublewrite=0",
                    f"--log-error={log}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=base,
            )

        def ready() -> None:
            pymysql.connect(host="127.0.0.1", port=port, user="root", connect_timeout=2).close()

        _wait_until(ready, proc, log, "mariadbd")
        conn = pymysql.connect(host="127.0.0.1", port=port, user="root")
        try:
            with conn.cursor() as cur:
                cur.execute("CREATE DATABASE opsline_test CHARACTER SET utf8mb4")
        finally:
            conn.close()
        yield DatabaseServer(f"mariadb://root@127.0.0.1:{port}/opsline_test", port)
    finally:
        if proc is not None:
            _stop(proc, signal.SIGTERM)
        shutil.rmtree(base, ignore_errors=True)
