"""Stream every NAB file through a detector, write NAB's results layout, score it.

Results go to bench/out/nab/results/<detector>/<category>/<detector>_<file>.csv with the
columns timestamp,value,anomaly_score,label (label 1 inside a labelled window); scoring
reads those files back, so what is scored is exactly what was written.
"""

from __future__ import annotations

import csv
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bench.nab import corpus
from bench.nab.scoring import Case, ProfileResult, optimize
from services.aiops_detector import detectors

T = TypeVar("T")
OUT = Path(__file__).resolve().parent.parent / "out" / "nab"

#: The NAB README scoreboard (standard, reward_low_FP_rate, reward_low_FN_rate).
SCOREBOARD = [
    ("ARTime", 74.9, 65.1, 80.4),
    ("Numenta HTM", 70.5, 62.6, 75.2),
    ("CAD OSE", 69.9, 67.0, 73.2),
    ("earthgecko Skyline", 58.2, 46.2, 63.9),
    ("KNN CAD", 58.0, 43.4, 64.8),
    ("Relative Entropy", 54.6, 47.6, 58.8),
    ("Random Cut Forest", 51.7, 38.4, 59.7),
    ("Twitter ADVec", 47.1, 33.6, 53.5),
    ("Windowed Gaussian", 39.6, 20.9, 47.4),
    ("Etsy Skyline", 35.7, 27.1, 44.5),
    ("Bayes Changepoint", 17.7, 3.2, 32.2),
]


@dataclass(frozen=True)
class FileRun:
    scores: list[float]
    seconds: float
    max_state_bytes: int


def stream(series: corpus.Series, name: str, params: dict[str, float]) -> FileRun:
    """Row by row through the real detector code; the state size is sampled as it goes."""
    model = detectors.create(name, **params).new()
    step = model.step
    scores: list[float] = []
    largest = 0
    started = time.process_time()
    for i, (ts, value) in enumerate(zip(series.ts_ms, series.values, strict=True)):
        scores.append(step(ts, value))
        if i % 1000 == 999:
            largest = max(largest, len(model.dumps()))
    seconds = time.process_time() - started
    return FileRun(scores, seconds, max(largest, len(model.dumps())))


def result_path(out: Path, name: str, series_name: str) -> Path:
    category, file = series_name.split("/", 1)
    return out / "results" / name / category / f"{name}_{file}"


def write(path: Path, series: corpus.Series, scores: list[float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    inside = [0] * len(scores)
    for start, end in series.windows:
        inside[start : end + 1] = [1] * (end - start + 1)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["timestamp", "value", "anomaly_score", "label"])
        for row in zip(series.timestamps, series.values, scores, inside, strict=True):
            writer.writerow(row)


def read_scores(path: Path) -> list[float]:
    with path.open(newline="") as f:
        reader = csv.reader(f)
        next(reader)
        return [float(row[2]) for row in reader]


def pick(items: list[T], files: int | None) -> list[T]:
    """`files` spread evenly over the sorted corpus, so a short run still sees every kind."""
    if files is None or files >= len(items):
        return items
    step = len(items) / files
    return [items[int(i * step)] for i in range(files)]


def run(
    *,
    name: str,
    params: dict[str, float] | None = None,
    files: int | None = None,
    jobs: int = 1,
    out: Path = OUT,
    root: Path = corpus.DEFAULT_ROOT,
) -> dict[str, Any]:
    params = params or {}
    detectors.create(name, **params)  # bad names and parameters fail before any work
    chosen = pick(corpus.load(root), files)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        runs = list(pool.map(stream, chosen, [name] * len(chosen), [params] * len(chosen)))
    cases = []
    for series, file_run in zip(chosen, runs, strict=True):
        path = result_path(out, name, series.name)
        write(path, series, file_run.scores)
        cases.append(Case(series.name, read_scores(path), series.windows))
    results = [optimize(cases, profile) for profile in corpus.profiles(root)]
    samples = sum(len(s.values) for s in chosen)
    return {
        "detector": name,
        "params": detectors.create(name, **params).params,
        "files": len(chosen),
        "samples": samples,
        "windows": sum(len(s.windows) for s in chosen),
        "samples_per_s": samples / max(1e-9, sum(r.seconds for r in runs)),
        "max_state_bytes": max(r.max_state_bytes for r in runs),
        "profiles": {r.profile.name: _profile_dict(r) for r in results},
    }


def _profile_dict(r: ProfileResult) -> dict[str, float]:
    return {"score": r.score, "threshold": r.threshold, "tp": r.tp, "fp": r.fp, "fn": r.fn}


def table(results: list[dict[str, Any]]) -> str:
    """Our detectors (measured now) beside the published NAB scoreboard."""
    lines = [
        "| detector | standard | low FP | low FN | note |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        p = r["profiles"]
        std = p["standard"]
        lines.append(
            f"| **opsline {r['detector']}** (measured) | **{std['score']:.1f}** | "
            f"**{p['reward_low_FP_rate']['score']:.1f}** | "
            f"**{p['reward_low_FN_rate']['score']:.1f}** | "
            f"{r['files']} files; standard threshold {std['threshold']:.4g}: "
            f"TP {std['tp']}, FP {std['fp']}, FN {std['fn']}; "
            f"{r['samples_per_s']:,.0f} samples/s/core; state ≤ {r['max_state_bytes']:,} B |"
        )
    for name, std, low_fp, low_fn in SCOREBOARD:
        lines.append(f"| {name} (published) | {std} | {low_fp} | {low_fn} | |")
    return "\n".join(lines)


def run_all(*, quick: bool = False, jobs: int = 2) -> dict[str, Any]:
    """Every registered detector over the corpus (`quick`: 15 files), for `python -m bench`."""
    files = 15 if quick else None
    return {
        "files": files,
        "results": [run(name=name, files=files, jobs=jobs) for name in detectors.names()],
    }


def markdown(r: dict[str, Any]) -> list[str]:
    """The bench/RESULTS.md section."""
    n = r["results"][0]["files"] if r["results"] else 0
    scope = f"The whole NAB corpus ({n} files)" if r["files"] is None else f"{n} NAB files"
    return [
        "",
        "## bench/nab",
        "",
        f"{scope} streamed row by row through each detector, scored by our "
        "own NAB scorer (bench/nab/scoring.py: windows, probationary period, scaled "
        "sigmoid, per-profile threshold over the corpus, normalised against the null and "
        "perfect detectors), beside the published scoreboard. One parameter set for every "
        "file; `make nab` reruns it. Samples/s are per CPU second in one process.",
        "",
        table(r["results"]),
    ]
