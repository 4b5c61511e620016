"""Baseline: how many exponentially weighted standard deviations a sample is from the mean.

Cheap (a few float operations a sample, 29 bytes of state) and a yardstick for smarter
detectors: it catches spikes and level shifts but knows nothing of shape or seasonality.
"""

from __future__ import annotations

import math
import struct

from services.aiops_detector.detectors.base import Detector, SeriesModel, StateError, register

_STATE = struct.Struct("<qIdd")  # last_ts, n, mean, var


class ZScoreModel(SeriesModel):
    __slots__ = ("_alpha", "_detector", "_warmup", "last_ts", "mean", "n", "var")

    def __init__(self, detector: ZScoreDetector, last_ts: int, n: int, mean: float, var: float):
        self._detector = detector
        self._alpha = detector.params["alpha"]
        self._warmup = int(detector.params["warmup"])
        self.last_ts, self.n, self.mean, self.var = last_ts, n, mean, var

    def step(self, ts_ms: int, value: float) -> float:
        if ts_ms <= self.last_ts or not math.isfinite(value):
            return 0.0
        self.last_ts = ts_ms
        self.n = min(self.n + 1, 0xFFFFFFFF)
        if self.n == 1:
            self.mean, self.var = value, 0.0
            return 0.0
        delta = value - self.mean
        # the scale floor keeps a flat series from turning the first wobble into infinity;
        # z / (z + 3) rather than a normal tail, which saturates and would tie every spike
        std = max(math.sqrt(self.var), 1e-6 * max(1.0, abs(self.mean)))
        z = abs(delta) / std
        score = z / (z + 3.0) if self.n > self._warmup else 0.0
        # the first samples weigh as in a plain mean, so the start is not one sample's echo
        alpha = max(self._alpha, 1.0 / self.n)
        self.mean += alpha * delta
        self.var = (1.0 - alpha) * (self.var + alpha * delta * delta)
        return score

    def dumps(self) -> bytes:
        return self._detector.header() + _STATE.pack(self.last_ts, self.n, self.mean, self.var)


@register
class ZScoreDetector(Detector):
    """EWMA mean and variance; the score is z / (z + 3): 0.5 at three standard deviations."""

    name = "zscore"
    tag = 1
    defaults = {"alpha": 0.01, "warmup": 30}

    def new(self) -> ZScoreModel:
        return ZScoreModel(self, -(2**63), 0, 0.0, 0.0)

    def max_state_bytes(self) -> int:
        return len(self.header()) + _STATE.size

    def loads(self, data: bytes) -> ZScoreModel:
        payload = self.check_header(data)
        if len(payload) != _STATE.size:
            raise StateError(f"{self.name}: state payload of {len(payload)} bytes")
        return ZScoreModel(self, *_STATE.unpack(payload))
