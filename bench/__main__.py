"""`make bench`: every benchmark, each beside its baseline measured in the same run.

Writes bench/RESULTS.md (and the raw figures to bench/out/results.json).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

from bench.ingest import run as ingest

HERE = Path(__file__).parent


def main() -> None:
    quick = "--quick" in sys.argv
    started = time.time()
    print("bench/ingest: normalization, Elasticsearch sink, memory", flush=True)
    results = {"ingest": ingest.run(quick=quick)}
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    text = [
        "# Benchmark results",
        "",
        f"Measured by `make bench` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{'quick run' if quick else 'full run'} ({time.time() - started:.0f}s). Every ratio "
        "compares two measurements of the same run, on the same broker and store.",
        "",
        "## bench/ingest",
        "",
        f"{results['ingest']['events']} CloudEvents of 500 samples each "
        f"({results['ingest']['samples']:,} samples, 5,000 series), published onto a fresh "
        "topic of 4 partitions once the workers have joined their group.",
        "",
        ingest.table(results["ingest"]),
        "",
    ]
    (HERE / "RESULTS.md").write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
