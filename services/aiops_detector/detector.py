"""Per-series running statistics (Welford): the state the learned detectors build on."""

from __future__ import annotations

import math
from typing import Any


def update_stats(state: dict[str, Any] | None, value: float, ts_ms: int) -> dict[str, Any]:
    """Fold one sample into the series state; out-of-order or repeated samples are skipped."""
    if state is None:
        state = {"n": 0, "mean": 0.0, "m2": 0.0, "last_ts": -1}
    if ts_ms <= state["last_ts"]:
        return state
    n = state["n"] + 1
    delta = value - state["mean"]
    mean = state["mean"] + delta / n
    m2 = state["m2"] + delta * (value - mean)
    return {"n": n, "mean": mean, "m2": m2, "last_ts": ts_ms}


def zscore(state: dict[str, Any], value: float) -> float:
    if state["n"] < 2:
        return 0.0
    std = math.sqrt(state["m2"] / (state["n"] - 1))
    return 0.0 if std == 0 else abs(value - state["mean"]) / std
