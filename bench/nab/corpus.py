"""The NAB corpus on disk: data files, labelled windows as row ranges, scoring profiles."""

from __future__ import annotations

import bisect
import csv
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.nab.scoring import Profile

DEFAULT_ROOT = Path(os.environ.get("OPSLINE_NAB_DIR", "/work/shared/data/nab"))


@dataclass(frozen=True)
class Series:
    name: str  # relative to data/, e.g. realKnownCause/nyc_taxi.csv
    timestamps: list[str]
    ts_ms: list[int]
    values: list[float]
    windows: list[tuple[int, int]]  # inclusive row ranges

    @property
    def category(self) -> str:
        return self.name.split("/", 1)[0]


def _ms(text: str) -> int:
    """NAB timestamps are naive; they are read as UTC."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def _rows(path: Path) -> tuple[list[str], list[float]]:
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        if header[:2] != ["timestamp", "value"]:
            raise ValueError(f"{path}: expected columns timestamp,value, got {header}")
        stamps, values = [], []
        for line, row in enumerate(reader, start=2):
            try:
                stamps.append(row[0])
                values.append(float(row[1]))
            except (IndexError, ValueError) as exc:
                raise ValueError(f"{path}:{line}: bad row {row!r}: {exc}") from None
    return stamps, values


def window_rows(ts_ms: list[int], windows: list[list[str]]) -> list[tuple[int, int]]:
    """Each [start, end] timestamp pair as the first and last row inside it.

    Rows are matched by time, not position, and a few NAB files have a timestamp that steps
    back; the running maximum keeps the search monotonic.
    """
    running: list[int] = []
    top = -(2**63)
    for t in ts_ms:
        top = max(top, t)
        running.append(top)
    out = []
    for start, end in windows:
        first = bisect.bisect_left(running, _ms(start))
        last = bisect.bisect_right(running, _ms(end)) - 1
        if first > last:
            raise ValueError(f"window {start}..{end} holds no row")
        out.append((first, last))
    return out


def load(root: Path = DEFAULT_ROOT, limit: int | None = None) -> list[Series]:
    labels = json.loads((root / "labels" / "combined_windows.json").read_text())
    series = []
    for name in sorted(labels)[:limit]:
        stamps, values = _rows(root / "data" / name)
        ts_ms = [_ms(s) for s in stamps]
        series.append(Series(name, stamps, ts_ms, values, window_rows(ts_ms, labels[name])))
    return series


def profiles(root: Path = DEFAULT_ROOT) -> list[Profile]:
    raw = json.loads((root / "config" / "profiles.json").read_text())
    out = []
    for name, body in raw.items():
        costs = body["CostMatrix"]
        out.append(Profile(name, costs["tpWeight"], costs["fnWeight"], costs["fpWeight"]))
    return out
