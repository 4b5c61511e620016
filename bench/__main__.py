"""`make bench`: every benchmark, each beside its baseline measured in the same run.

Writes bench/RESULTS.md (and the raw figures to bench/out/results.json).
`python -m bench --only build` runs one; `--quick` makes each smaller.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from bench.build import run as build
from bench.deploy import run as deploy
from bench.detect import run as detect
from bench.gateway import run as gateway
from bench.ingest import run as ingest
from bench.nab import run as nab
from bench.scrape import run as scrape

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument(
        "--only",
        choices=["ingest", "build", "deploy", "scrape", "nab", "detect", "gateway"],
        action="append",
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    wanted = args.only or ["ingest", "build", "deploy", "scrape", "nab", "detect", "gateway"]
    started = time.time()
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    previous = out / "results.json"
    results = json.loads(previous.read_text()) if previous.exists() and args.only else {}
    if "ingest" in wanted:
        print("bench/ingest: normalization, Elasticsearch sink, memory, remote_write", flush=True)
        results["ingest"] = ingest.run(quick=args.quick)
    if "build" in wanted:
        print("bench/build: concurrent builds through the platform", flush=True)
        results["build"] = build.run(quick=args.quick)
    if "deploy" in wanted:
        print("bench/deploy: concurrent launches against the Kubernetes API double", flush=True)
        results["deploy"] = deploy.run(quick=args.quick)
    if "nab" in wanted:
        print("bench/nab: the NAB corpus through every detector", flush=True)
        results["nab"] = nab.run_all(quick=args.quick)
    if "detect" in wanted:
        print("bench/detect: one detector worker beside a bare faust agent", flush=True)
        results["detect"] = detect.run(quick=args.quick)
    if "scrape" in wanted:
        print("bench/scrape: 200 exporter targets scraped by dataops-ingest", flush=True)
        results["scrape"] = scrape.run(quick=args.quick)
    if "gateway" in wanted:
        print("bench/gateway: POST /v1/events and GET /v1/apps beside their baselines", flush=True)
        results["gateway"] = gateway.run(quick=args.quick)
    previous.write_text(json.dumps(results, indent=2))
    text = [
        "# Benchmark results",
        "",
        f"Measured by `make bench` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
        f"{', quick run' if args.quick else ''} ({time.time() - started:.0f}s for "
        f"{', '.join(wanted)}). Every ratio compares two measurements of the same run.",
    ]
    if "ingest" in results:
        r = results["ingest"]
        text += [
            "",
            "## bench/ingest",
            "",
            f"{r['events']} CloudEvents of 500 samples each ({r['samples']:,} samples, "
            "5,000 series), published onto a fresh topic of 4 partitions once the workers "
            "have joined their group; best of two runs for each figure of (a). (d) runs on "
            "a stack of its own: the clock stops when Elasticsearch holds every sample.",
            "",
            ingest.table(r),
        ]
    if "build" in results:
        r = results["build"]
        text += [
            "",
            "## bench/build",
            "",
            f"{r['apps']} apps of {r['components']} `process` components (20 files each), "
            "applied through the gateway, then every build requested at once.",
            "",
            build.table(r),
        ]
    if "deploy" in results:
        r = results["deploy"]
        text += [
            "",
            "## bench/deploy",
            "",
            f"{r['instances']} instances of a one-component app (a Deployment of 2 replicas "
            f"and a Service each) launched at once; the API double takes "
            f"{r['rollout_seconds']} s per rollout; the deploy service runs "
            f"{r['parallel']} rollouts at a time.",
            "",
            deploy.table(r),
        ]
    if "nab" in results:
        text += nab.markdown(results["nab"])
    if "scrape" in results:
        r = results["scrape"]
        text += [
            "",
            "## bench/scrape",
            "",
            f"{r['targets']} targets, one node exporter page each ({r['samples_per_page']} "
            f"samples), served by one local HTTP server; dataops-ingest scrapes each every "
            f"{r['interval_s']:g} s (its round cannot be shorter than that), measured over "
            f"{r['window_s']:g} s once every target is up; the baselines fetch and parse the "
            "same pages round after round. CPU: the dataops-ingest process alone.",
            "",
            scrape.table(r),
        ]
    if "detect" in results:
        r = results["detect"]
        text += [
            "",
            "## bench/detect",
            "",
            f"{r['samples']:,} samples of {r['series']:,} series (metric batches of 500, "
            "4 partitions) pre-loaded on a private broker; one worker process scores them "
            "with the default detector (zscore) and two static rules per series, beside a "
            "bare faust agent that only decodes the same batches, each timed from its first "
            "batch. State memory: 10,000 series in a dict as the memory store keeps them "
            "(tracemalloc), and the two processes' peak RSS.",
            "",
            detect.table(r),
        ]
    if "gateway" in results:
        r = results["gateway"]
        text += [
            "",
            "## bench/gateway",
            "",
            f"(a) {r['events']['batches']} batches of {r['batch']} CloudEvents (~300 bytes each), "
            f"{r['concurrency']} clients at once, with the bootstrap admin token (never rate "
            "limited); the gateway answers 202 once Kafka has every event (acks=all), the "
            "baseline produces the same events to the same broker with aiokafka (acks=all) "
            f"and awaits them. (b) {r['reads']['requests']} reads of a catalogue of "
            f"{r['reads']['apps']} apps ({r['reads']['bytes']:,} bytes of JSON), "
            f"{r['concurrency']} at a time; the baseline is a bare FastAPI route returning the "
            "same JSON under uvicorn. The load comes from the benchmark's process, on the "
            "same two cores.",
            "",
            gateway.table(r),
        ]
    (HERE / "RESULTS.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
