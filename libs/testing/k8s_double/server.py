"""`K8sDouble`: the double served by uvicorn on 127.0.0.1 (free port, background thread)."""

from __future__ import annotations

import copy
import secrets
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn
import yaml

from libs.testing.k8s_double.app import build_app
from libs.testing.k8s_double.controllers import Controllers
from libs.testing.k8s_double.resources import by_name
from libs.testing.k8s_double.store import Store, now_iso


class K8sDouble:
    """A Kubernetes API server test double.

    Tunables (plain attributes, read live by the simulated controllers):
      rollout_seconds: how long a Deployment takes from new template to all replicas
        available, and a Job from start to completion (default 0.5).
      deadline_scale: factor applied to spec.progressDeadlineSeconds (default 0.01: 600 s
        becomes 6 s).
      namespace_termination_seconds: how long a deleted namespace stays Terminating before
        it and its contents are gone (default 0.1).
      watch_timeout_seconds: how long a watch without timeoutSeconds lasts (default 1800).
    """

    def __init__(
        self,
        *,
        rollout_seconds: float = 0.5,
        deadline_scale: float = 0.01,
        namespace_termination_seconds: float = 0.1,
        watch_timeout_seconds: float = 1800.0,
        token: str | None = None,
    ) -> None:
        self.rollout_seconds = rollout_seconds
        self.deadline_scale = deadline_scale
        self.namespace_termination_seconds = namespace_termination_seconds
        self.watch_timeout_seconds = watch_timeout_seconds
        self.token = token or secrets.token_urlsafe(24)
        self.store = Store()
        self.controllers = Controllers(self)
        self.app = build_app(self)
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------ lifecycle

    @classmethod
    def start(cls, **options: Any) -> K8sDouble:
        """Build a double with `options` (see the class doc) and serve it; answers it."""
        double = cls(**options)
        double._serve()
        return double

    def _serve(self) -> None:
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only
        # then (with proto 0, every response waits ~40 ms for Nagle + delayed ACK).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="k8s-double", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the Kubernetes API double did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self.store.close_watchers()
        self._thread.join(timeout=10)
        self._server = None

    def __enter__(self) -> K8sDouble:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def kubeconfig(self, path: str | Path, namespace: str = "default") -> Path:
        """Write a kubeconfig for this double (bearer token, plain HTTP); answers its path."""
        path = Path(path)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "k8s-double", "cluster": {"server": self.url}}],
            "users": [{"name": "k8s-double", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "k8s-double",
                    "context": {
                        "cluster": "k8s-double",
                        "user": "k8s-double",
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": "k8s-double",
            "preferences": {},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    # ------------------------------------------------------------------------ test controls

    def fail_rollout(
        self,
        namespace: str,
        name: str,
        reason: str = "CrashLoopBackOff",
        message: str = "back-off restarting failed container",
    ) -> None:
        """Make the Deployment's ongoing rollout, or else its next one (a new pod template,
        or its creation), never become available: Progressing turns False with reason
        ProgressDeadlineExceeded after spec.progressDeadlineSeconds * deadline_scale, and a
        Warning Event with `reason`/`message` is recorded for it. A later rollout (another
        template, e.g. a rollback) is healthy again unless this is called again."""
        self.controllers.fail_rollout(namespace, name, reason, message)

    def fail_job(
        self,
        namespace: str,
        name: str,
        reason: str = "BackoffLimitExceeded",
        message: str = "Job has reached the specified backoff limit",
    ) -> None:
        """Make the Job (running now or created later) end Failed instead of Complete."""
        self.controllers.fail_job(namespace, name, reason, message)

    def heal(self, namespace: str, name: str) -> None:
        """Clear injected failures of that Deployment/Job; a stuck rollout resumes."""
        self.controllers.heal(namespace, name)

    def set_pod_phase(
        self, namespace: str, name: str, phase: str = "Running", pod_ip: str = "10.244.0.10"
    ) -> None:
        """Play the kubelet for a pod: status.phase, podIP and the Ready condition change
        (a MODIFIED event for watchers), as when its containers start or stop."""
        if phase not in ("Pending", "Running", "Succeeded", "Failed", "Unknown"):
            raise ValueError(f"unknown pod phase {phase!r}")
        ready = "True" if phase == "Running" else "False"

        def mutate(pod: dict[str, Any]) -> None:
            status = pod.setdefault("status", {})
            status["phase"] = phase
            status["conditions"] = [{"type": "Ready", "status": ready}]
            if phase == "Running":
                status["podIP"] = pod_ip
                status["podIPs"] = [{"ip": pod_ip}]
                status.setdefault("startTime", now_iso())

        if self.get("pods", namespace, name) is None:
            raise KeyError(f"no pod {namespace}/{name}")
        pods = by_name("pods")
        key = self.store.key(pods, namespace, name)
        self.store.controller_write(pods, key, mutate, manager="kubelet", subresource="status")

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored object (a copy), or None: for assertions that bypass the API."""
        rt = by_name(resource)
        with self.store.lock:
            obj = self.store.objects.get(self.store.key(rt, namespace, name))
            return None if obj is None else copy.deepcopy(obj)
