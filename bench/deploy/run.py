"""bench/deploy: 100 instances launched at once through the platform against the Kubernetes
API double, beside applying the same rendered objects directly with kubernetes-asyncio
(server-side apply, then waiting for each rollout) in the same run, on the same double.

Completion is seen by polling the gateway every 0.25 s, so each figure carries up to
0.25 s of polling error.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.infra import stack_port_offset
from libs.testing.k8s_double import K8sDouble
from services.deploy.kubernetes import KubernetesTarget, render

INSTANCES = 100
IMAGE = "registry.example.com/bench/web@sha256:" + "cd" * 32
SPEC = f"""\
apiVersion: opsline.io/v1
kind: App
meta: {{name: benchweb, team: bench}}
components:
  - name: web
    type: microservice
    source: {{image: "{IMAGE}"}}
    traits: {{replicas: 2, ports: [{{name: http, port: 8080}}]}}
"""
LAUNCH = """\
apiVersion: opsline.io/v1
kind: Launch
app: benchweb
instance: bench-{i}
target: {{cluster: k8s, namespace: bench-{ns}, stage: bench}}
"""


def _release() -> dict[str, Any]:
    return {
        "spec": {
            "name": "web",
            "type": "microservice",
            "source": {"image": IMAGE},
            "traits": {"replicas": 2, "ports": [{"name": "http", "port": 8080}]},
        },
        "artifact": {"kind": "image", "uri": IMAGE},
    }


async def baseline(kubeconfig: Path, n: int) -> dict[str, float]:
    latencies: list[float] = []

    async def one(i: int, target: KubernetesTarget) -> None:
        started = time.perf_counter()
        objects = render(f"direct-{i}", f"direct-{i % 10}", 1, _release())
        await target.apply(f"direct-{i % 10}", objects)
        await target.wait(f"direct-{i % 10}", objects, timeout=300)
        latencies.append(time.perf_counter() - started)

    async with KubernetesTarget(str(kubeconfig)) as target:
        started = time.perf_counter()
        await asyncio.gather(*(one(i, target) for i in range(n)))
        total = time.perf_counter() - started
    return {"seconds": total, "per_s": n / total, "p50_s": statistics.median(latencies)}


async def platform(gateway: str, token: str, n: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=gateway, headers=headers, timeout=60) as client:
        r = await client.post(
            "/v1/apps:apply", content=SPEC.encode(), headers={"content-type": "application/yaml"}
        )
        r.raise_for_status()
        r = await client.post("/v1/apps/benchweb/builds", json={})
        build_id = r.json()["build_id"]
        while (await client.get(f"/v1/builds/{build_id}")).json()["status"] != "SUCCEEDED":
            await asyncio.sleep(0.25)
        requested: dict[str, float] = {}

        async def launch(i: int) -> None:
            t0 = time.perf_counter()
            r = await client.post(
                "/v1/deployments",
                content=LAUNCH.format(i=i, ns=i % 10).encode(),
                headers={"content-type": "application/yaml"},
            )
            r.raise_for_status()
            requested[r.json()["id"]] = t0

        started = time.perf_counter()
        await asyncio.gather(*(launch(i) for i in range(n)))
        done: dict[str, float] = {}
        failed: dict[str, str] = {}
        deadline = time.monotonic() + 600
        while len(done) + len(failed) < n and time.monotonic() < deadline:
            pending = [d for d in requested if d not in done and d not in failed]
            answers = await asyncio.gather(*(client.get(f"/v1/deployments/{d}") for d in pending))
            now = time.perf_counter()
            for d, answer in zip(pending, answers, strict=True):
                state = answer.json()["state"]
                if state == "SUCCESS":
                    done[d] = now
                elif state in ("FAILURE", "WAIT_FOR_OP", "ROLLED_BACK", "TERMINATED"):
                    failed[d] = answer.json().get("reason") or state
            await asyncio.sleep(0.25)
    if failed or len(done) < n:
        raise RuntimeError(
            f"{len(done)} of {n} deployments succeeded; failures: {list(failed.values())[:3]}"
        )
    total = max(done.values()) - started
    return {
        "seconds": total,
        "per_s": n / total,
        "p50_s": statistics.median(done[d] - requested[d] for d in done),
    }


def run(quick: bool = False) -> dict[str, Any]:
    from libs.testing.stack import start_stack

    n = 20 if quick else INSTANCES
    double = K8sDouble.start(rollout_seconds=0.5)
    try:
        with tempfile.TemporaryDirectory(prefix="opsline-bench-deploy-") as tmp:
            home = Path(tmp) / "home"
            kubeconfig = double.kubeconfig(home / "k8s.kubeconfig")
            direct = asyncio.run(baseline(kubeconfig, n))
            running = start_stack(
                home, port_offset=stack_port_offset(), env={"OPSLINE_DEPLOY_MAX_PARALLEL": "32"}
            )
            try:
                running.register_cluster("k8s", kubeconfig)
                measured = asyncio.run(platform(running.stack.gateway_url, running.admin_token, n))
            finally:
                running.stop()
    finally:
        double.stop()
    return {
        "instances": n,
        "baseline": direct,
        "platform": measured,
        "parallel": 32,
        "rollout_seconds": 0.5,
    }


def table(r: dict[str, Any]) -> str:
    b, p = r["baseline"], r["platform"]
    return "\n".join(
        [
            "| measure | opsline (launch → SUCCESS) | baseline: kubernetes-asyncio apply + wait "
            "| ratio |",
            "|---|---|---|---|",
            f"| time to all SUCCESS | {p['seconds']:.1f} s | {b['seconds']:.1f} s | "
            f"{b['seconds'] / p['seconds']:.0%} |",
            f"| deployments per second | {p['per_s']:.1f} | {b['per_s']:.1f} | "
            f"{p['per_s'] / b['per_s']:.0%} |",
            f"| p50 per deployment | {p['p50_s']:.2f} s | {b['p50_s']:.2f} s | — |",
        ]
    )


if __name__ == "__main__":
    import sys

    result = run(quick="--quick" in sys.argv)
    print(result)
    print(table(result))
