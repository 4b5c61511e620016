"""bench/build: 50 apps, 3 `process` components built concurrently through the platform,
beside packing the same sources directly in one process, in the same run.

Latency is request → package version (the build's SUCCEEDED, seen by polling every
0.2 s through the gateway), so each figure carries up to 0.2 s of polling error.
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
from services.build.packing import pack_dir

APPS = 50
COMPONENTS = ("web", "worker", "cron")
FILES_PER_COMPONENT = 20

SPEC = """\
apiVersion: opsline.io/v1
kind: App
meta:
  name: {name}
  team: bench
components:
""" + "".join(
    f"  - name: {c}\n    type: process\n    source:\n      dir: ./{c}\n" for c in COMPONENTS
)


def make_sources(root: Path, apps: int) -> list[Path]:
    folders = []
    for a in range(apps):
        for c in COMPONENTS:
            folder = root / f"bench-{a}" / c
            folder.mkdir(parents=True)
            for f in range(FILES_PER_COMPONENT):
                body = (f"# {a}/{c}/{f}\n" + "x = 1\n" * 200).encode()
                (folder / f"mod{f}.py").write_bytes(body)
            folders.append(folder)
    return folders


def baseline(folders: list[Path], out: Path, apps: int) -> dict[str, float]:
    out.mkdir(parents=True, exist_ok=True)
    per_app: list[float] = []
    started = time.perf_counter()
    for a in range(apps):
        t = time.perf_counter()
        for c in COMPONENTS:
            folder = folders[a * len(COMPONENTS) + COMPONENTS.index(c)]
            pack_dir(folder, out / f"{a}-{c}.tar.gz")
        per_app.append(time.perf_counter() - t)
    total = time.perf_counter() - started
    return {
        "seconds": total,
        "builds_per_min": apps / total * 60,
        "p50_s": statistics.median(per_app),
        "p99_s": _p99(per_app),
    }


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


async def platform(gateway: str, token: str, root: Path, apps: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=gateway, headers=headers, timeout=60) as client:

        async def apply(a: int) -> None:
            r = await client.post(
                "/v1/apps:apply",
                content=SPEC.format(name=f"bench-{a}"),
                headers={
                    "content-type": "application/yaml",
                    "x-opsline-base-dir": str(root / f"bench-{a}"),
                },
            )
            r.raise_for_status()

        await asyncio.gather(*(apply(a) for a in range(apps)))
        requested: dict[str, float] = {}

        async def start(a: int) -> None:
            r = await client.post(f"/v1/apps/bench-{a}/builds", json={})
            r.raise_for_status()
            requested[r.json()["build_id"]] = time.perf_counter()

        started = time.perf_counter()
        await asyncio.gather(*(start(a) for a in range(apps)))
        done: dict[str, float] = {}
        failed: dict[str, str] = {}
        deadline = time.monotonic() + 900
        while len(done) + len(failed) < apps and time.monotonic() < deadline:
            pending = [b for b in requested if b not in done and b not in failed]
            answers = await asyncio.gather(*(client.get(f"/v1/builds/{b}") for b in pending))
            now = time.perf_counter()
            for build_id, answer in zip(pending, answers, strict=True):
                status = answer.json()["status"]
                if status == "SUCCEEDED":
                    done[build_id] = now
                elif status in ("FAILED", "CANCELLED"):
                    failed[build_id] = answer.json().get("reason") or status
            await asyncio.sleep(0.2)
    if failed or len(done) < apps:
        raise RuntimeError(f"{len(done)} of {apps} builds succeeded; failures: {failed}")
    latencies = [done[b] - requested[b] for b in done]
    total = max(done.values()) - started
    return {
        "seconds": total,
        "builds_per_min": apps / total * 60,
        "p50_s": statistics.median(latencies),
        "p99_s": _p99(latencies),
    }


def run(quick: bool = False) -> dict[str, Any]:
    from libs.testing.stack import start_stack

    apps = 10 if quick else APPS
    with tempfile.TemporaryDirectory(prefix="opsline-bench-build-") as tmp:
        root = Path(tmp) / "src"
        folders = make_sources(root, apps)
        base = baseline(folders, Path(tmp) / "direct", apps)
        running = start_stack(Path(tmp) / "home", port_offset=stack_port_offset())
        try:
            measured = asyncio.run(
                platform(running.stack.gateway_url, running.admin_token, root, apps)
            )
        finally:
            running.stop()
    return {"apps": apps, "components": len(COMPONENTS), "baseline": base, "platform": measured}


def table(r: dict[str, Any]) -> str:
    b, p = r["baseline"], r["platform"]
    return "\n".join(
        [
            "| measure | opsline (request → package version) | baseline: packing in one process "
            "| ratio |",
            "|---|---|---|---|",
            f"| builds per minute | {p['builds_per_min']:,.0f} | {b['builds_per_min']:,.0f} | "
            f"{p['builds_per_min'] / b['builds_per_min']:.0%} |",
            f"| p50 per build | {p['p50_s']:.2f} s | {b['p50_s'] * 1000:.1f} ms | — |",
            f"| p99 per build | {p['p99_s']:.2f} s | {b['p99_s'] * 1000:.1f} ms | — |",
        ]
    )


if __name__ == "__main__":
    import sys

    result = run(quick="--quick" in sys.argv)
    print(result)
    print(table(result))
