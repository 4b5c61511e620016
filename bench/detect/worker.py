"""One faust worker for bench/detect, in a process of its own: the detector, or the bare
baseline. It prints one JSON line once it has seen `--samples` samples, then exits.

python -m bench.detect.worker {detector|bare} --bootstrap H:P --samples N --home DIR
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import faust
import orjson

from libs.config import CommonSettings
from libs.events import topics as t
from libs.events.envelope import from_kafka
from libs.schemas.opsline.v1.metrics_pb2 import MetricBatch
from services.aiops_detector.app import Rules, create_app
from services.aiops_detector.rules import Rule, RuleSet
from services.aiops_detector.settings import DetectorSettings

# two rules on the benchmark's metric, so each sample is also checked against thresholds
RULES = [
    Rule(id="hot", name="hot", metric="bench_cpu", thresholds={"WARNING": 90, "CRITICAL": 99}),
    Rule(id="cold", name="cold", metric="bench_cpu", comparator="<", thresholds={"WARNING": -90}),
]


def bare_app(bootstrap: str, home: Path, partitions: int) -> tuple[faust.App, dict[str, int]]:
    """The baseline: a faust agent that reads the same topic and counts the samples."""
    app = faust.App(
        f"bench-bare-{os.getpid()}",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=str(home / "bare"),
        web_enabled=False,
        topic_partitions=partitions,
        consumer_auto_offset_reset="earliest",
    )
    points = app.topic(t.METRICS_POINTS, key_type=bytes, value_type=bytes, value_serializer="raw")
    status = {"scored": 0}

    @app.agent(points)
    async def count(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            batch = MetricBatch.FromString(from_kafka(message.value, message.headers).data)
            status["scored"] += len(batch.samples)
            status["last"] = time.perf_counter()  # type: ignore[assignment]
            status.setdefault("first", status["last"])
            status.setdefault("first_n", status["scored"])

    return app, status


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["detector", "bare"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--samples", type=int, required=True)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    if args.kind == "bare":
        app, status = bare_app(args.bootstrap, args.home, args.partitions)
    else:
        rules = Rules()
        rules.replace(RuleSet(RULES))
        settings = DetectorSettings(app_id=f"bench-detector-{os.getpid()}", store="memory://")
        common = CommonSettings(
            kafka_bootstrap=args.bootstrap, home=args.home, topic_partitions=args.partitions
        )
        app = create_app(settings, common, rules)
        app.conf.web_enabled = False
        status = app.detector_status  # type: ignore[attr-defined]
    seen: dict[str, float] = {}
    profiler = None
    if os.environ.get("BENCH_DETECT_PROFILE"):  # where to write cProfile stats
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()

    @app.timer(0.01)
    async def watch() -> None:
        now, done = time.perf_counter(), status["scored"]
        if done and "t0" not in seen:
            # the bare agent stamps its own batches; the detector is watched from here
            seen["t0"], seen["n0"] = status.get("first", now), status.get("first_n", done)
        if done >= args.samples:
            elapsed = status.get("last", now) - seen["t0"]
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            print(  # faust logs what a worker prints: run.py finds the JSON in the log line
                orjson.dumps(
                    {
                        "kind": args.kind,
                        "samples": done,
                        "rate": (done - seen["n0"]) / elapsed if elapsed > 0 else 0.0,
                        "seconds": elapsed,
                        "max_rss": rss,
                        "series": len(getattr(app, "series_table", {}) or {}),
                    }
                ).decode(),
                flush=True,
            )
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(os.environ["BENCH_DETECT_PROFILE"])
            os._exit(0)  # the figure is out; no need to leave the group politely

    # info, as the service runs by default: at warn faust sets every logger to DEBUG for
    # its terminal spinner, and the debug records alone cost a third of the time
    sys.argv = [sys.argv[0], "worker", "-l", "info", "--without-web"]
    app.main()


if __name__ == "__main__":
    main()
