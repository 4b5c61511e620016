"""Score a whole series sent in a request (POST /v1/aiops/analyze), without streaming.

Like SREWorks' anomaly detection service: series in; per point the anomaly flag, the
score in [0, 1] and the band the point was expected in. The flag and the score are the
detector's (anomaly: score ≥ threshold). The band is the same for every detector, so a
chart can draw it: an exponentially weighted mean ± `band_sigma` standard deviations of
the points before (detectors score on different scales, so the band does not decide).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from libs.telemetry.samples import parse_ts
from services.aiops_detector import detectors


class AnalyzeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    series: list[list[Any]] = Field(
        description="[[ts, value], …] in time order; ts RFC 3339 or epoch milliseconds"
    )
    detector: str | None = Field(default=None, description="default: the service's detector")
    params: dict[str, float] = Field(default_factory=dict, description="detector parameters")
    threshold: float | None = Field(default=None, gt=0, lt=1, description="anomaly at score ≥")
    band_sigma: float = Field(default=3.0, gt=0, le=100, description="band: ± this many std")
    band_alpha: float = Field(default=0.05, gt=0, le=1, description="band EWMA weight")


class AnalyzeError(ValueError):
    """Input that cannot be scored; the message names the offending field."""


def parse_points(series: list[list[Any]], *, max_points: int) -> list[tuple[int, float]]:
    if not series:
        raise AnalyzeError("series: no points")
    if len(series) > max_points:
        raise AnalyzeError(f"series: {len(series)} points, at most {max_points}")
    points: list[tuple[int, float]] = []
    last = -1
    for i, item in enumerate(series):
        if len(item) != 2:
            raise AnalyzeError(f"series[{i}]: expected [ts, value], got {len(item)} items")
        try:
            ts = parse_ts(item[0], default_ms=0)
        except ValueError as exc:
            raise AnalyzeError(f"series[{i}].ts: {exc}") from None
        value = item[1]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise AnalyzeError(f"series[{i}].value: not a number ({type(value).__name__})")
        if not math.isfinite(value):
            raise AnalyzeError(f"series[{i}].value: NaN and infinity are not accepted")
        if ts <= last:
            raise AnalyzeError(f"series[{i}].ts: {ts} is not after the previous point ({last})")
        last = ts
        points.append((ts, float(value)))
    return points


def make_detector(name: str, params: dict[str, float]) -> detectors.Detector:
    try:
        return detectors.create(name, **params)
    except ValueError as exc:
        raise AnalyzeError(f"detector: {exc}") from None


def analyze(
    points: list[tuple[int, float]],
    detector: detectors.Detector,
    *,
    threshold: float,
    band_sigma: float = 3.0,
    band_alpha: float = 0.05,
) -> dict[str, Any]:
    model = detector.new()
    alpha, k = band_alpha, band_sigma
    mean = var = 0.0
    out = []
    for n, (ts, value) in enumerate(points, start=1):
        lower = upper = None
        if n > 2:
            std = math.sqrt(var)
            lower, upper = mean - k * std, mean + k * std
        score = model.step(ts, value)
        out.append(
            {
                "ts": ts,
                "value": value,
                "score": score,
                "anomaly": score >= threshold,
                "lower": lower,
                "upper": upper,
            }
        )
        if n == 1:
            mean = value
            continue
        a = max(alpha, 1.0 / n)
        delta = value - mean
        mean += a * delta
        var = (1.0 - a) * (var + a * delta * delta)
    return {
        "detector": detector.name,
        "params": detector.params,
        "threshold": threshold,
        "anomalies": sum(p["anomaly"] for p in out),
        "points": out,
    }
