"""Resonance: records of value, of level and of shape novelty, each against its own horizon.

Three signals, all self-calibrating, so one parameter set fits every series:

* value records: how far a sample lies beyond the highest/lowest value of the horizon (a
  ring of block extremes), as a share of that range;
* level records: the same for the moving mean of the last `mean_window` samples, which
  sees a level move in a series too noisy for any one sample to stand out;
* shape records: every `step` samples become one point (the block's most extreme sample,
  so a spike survives); the last `window` points are matched against boxes learned online,
  fuzzy-ART style (an input resonates with a box if the box, grown to hold it, stays
  narrower on average than 1 - rho of the value range; then the box grows; otherwise a
  new box is made, recycling the least recently used one). A new box is a novelty, its
  mismatch to the nearest box its size; a novelty larger than any other in its own
  horizon is an alarm, then the shape signal rests for `quiet` points.

A value or level record that follows the previous one within `record_gap` samples (a
staircase, a trend) is discounted. The score is r / (1 + r) for the largest ratio r, so 0
means "nothing new" and 0.5 "beyond the horizon's range by the whole range"."""

from __future__ import annotations

import math
import struct
from array import array

from services.aiops_detector.detectors.base import Detector, SeriesModel, StateError, register
from services.aiops_detector.detectors.extremes import BIG, Extremes

_COUNTS = struct.Struct("<H")
_FIXED_INTS = 13  # counters before the boxes' last-use stamps


class ResonanceModel(SeriesModel):
    def __init__(self, detector: ResonanceDetector) -> None:
        p = detector.params
        self._detector = detector
        self._warmup = int(p["warmup"])
        self._step = int(p["step"])
        self._window = int(p["window"])
        self._rho = p["rho"]
        self._capacity = int(p["categories"])
        self._shape_warmup = int(p["shape_warmup"])
        self._quiet = int(p["quiet"])
        self._gain = p["shape_gain"]
        self._record_gap = p["record_gap"]
        self._mean_window = int(p["mean_window"])
        self._mean_gain = p["mean_gain"]
        self.last_ts = -(2**63)
        self.seen = 0  # samples accepted
        self.last_record = -(2**62)  # sample number of the last value record
        self.last_mean_record = -(2**62)
        self.means = Extremes(int(p["mean_block"]), int(p["mean_blocks"]))
        self.mean_recent: list[float] = []  # last `mean_window` samples
        self.values = Extremes(int(p["block"]), int(p["blocks"]))
        self.novelty = Extremes(int(p["novelty_block"]), int(p["novelty_blocks"]))
        self.block_n = 0
        self.block_sum = 0.0
        self.block_max = -math.inf
        self.block_min = math.inf
        self.level = 0.0  # slow mean of the blocks: which block extreme is the spike
        self.points = 0  # downsampled points made
        self.last_alarm = -(2**62)
        self.recent: list[float] = []  # last `window` points
        self.box_lo: list[list[float]] = []
        self.box_hi: list[list[float]] = []
        self.box_used: list[int] = []

    def step(self, ts_ms: int, value: float) -> float:
        if ts_ms <= self.last_ts or not math.isfinite(value):
            return 0.0
        self.last_ts = ts_ms
        self.seen += 1
        ratio = self._record(value)
        self.values.add(value)
        level = self._mean_record(value) * self._mean_gain
        if level > ratio:
            ratio = level
        self.block_n += 1
        self.block_sum += value
        if value > self.block_max:
            self.block_max = value
        if value < self.block_min:
            self.block_min = value
        if self.block_n >= self._step:
            shape = self._shape_ratio(self._close_block())
            if self.seen > self._warmup and shape > ratio:
                ratio = shape
        return 1.0 if ratio >= BIG else ratio / (1.0 + ratio)

    def _record(self, value: float) -> float:
        """How far beyond the horizon's range; a record hard on the heels of another (a
        staircase, a trend) counts for less, by (gap / record_gap) cubed."""
        ratio = self.values.excess(value)
        if ratio > 0:
            ratio *= self._staircase(self.seen - self.last_record)
            self.last_record = self.seen
        return ratio if self.seen > self._warmup else 0.0

    def _mean_record(self, value: float) -> float:
        """The same for the mean of the last `mean_window` samples: a level that moved, in a
        series too noisy for one sample to stand out."""
        recent = self.mean_recent
        recent.append(value)
        if len(recent) > self._mean_window:
            del recent[0]
        elif len(recent) < self._mean_window:
            return 0.0
        mean = sum(recent) / len(recent)
        ratio = self.means.excess(mean)
        self.means.add(mean)
        if ratio > 0:
            ratio *= self._staircase(self.seen - self.last_mean_record)
            self.last_mean_record = self.seen
        return ratio if self.seen > self._warmup else 0.0

    def _staircase(self, gap: int) -> float:
        return 1.0 if gap >= self._record_gap else (gap / self._record_gap) ** 3

    def _close_block(self) -> float:
        mean = self.block_sum / self.block_n
        if self.points == 0:
            self.level = mean
        up, down = self.block_max - self.level, self.level - self.block_min
        point = self.block_max if up >= down else self.block_min
        self.level += 0.05 * (mean - self.level)
        self.block_n, self.block_sum = 0, 0.0
        self.block_max, self.block_min = -math.inf, math.inf
        self.points += 1
        return point

    def _shape_ratio(self, point: float) -> float:
        lo, hi = self.values.span()
        span = hi - lo
        if span <= 0:  # a flat start: no shape yet
            return 0.0
        recent = self.recent
        recent.append(point)
        if len(recent) > self._window:
            del recent[0]
        if len(recent) < self._window:
            return 0.0
        best = self._resonate(recent, span)
        if best >= self._rho or self.points <= self._shape_warmup:
            return 0.0  # a known shape, or too soon to judge
        mismatch = 1.0 - best
        ratio = self.novelty.above(mismatch)
        self.novelty.add(mismatch)
        if self.points <= 2 * self._shape_warmup or ratio <= 0:
            return 0.0
        if self.points - self.last_alarm <= self._quiet:
            return 0.0
        self.last_alarm = self.points
        return self._gain * ratio

    def _resonate(self, f: list[float], span: float) -> float:
        """Best match of `f` to a box, learning from it; 0 when there is no box yet."""
        width = len(f) * span
        best, best_i = 0.0, -1
        for i, (blo, bhi) in enumerate(zip(self.box_lo, self.box_hi, strict=True)):
            match = 1.0 - (sum(map(max, f, bhi)) - sum(map(min, f, blo))) / width
            if match > best:
                best, best_i = match, i
        if best_i >= 0 and best >= self._rho:
            self.box_lo[best_i] = list(map(min, f, self.box_lo[best_i]))
            self.box_hi[best_i] = list(map(max, f, self.box_hi[best_i]))
            self.box_used[best_i] = self.points
        elif len(self.box_lo) < self._capacity:
            self.box_lo.append(list(f))
            self.box_hi.append(list(f))
            self.box_used.append(self.points)
        else:
            oldest = min(range(len(self.box_used)), key=self.box_used.__getitem__)
            self.box_lo[oldest], self.box_hi[oldest] = list(f), list(f)
            self.box_used[oldest] = self.points
        return best

    def dumps(self) -> bytes:
        ints = array(
            "q",
            [
                self.last_ts,
                self.seen,
                self.points,
                self.last_alarm,
                self.last_record,
                self.last_mean_record,
                self.block_n,
                len(self.recent),
                len(self.box_lo),
                len(self.values.highs),
                len(self.novelty.highs),
                len(self.mean_recent),
                len(self.means.highs),
                *self.box_used,
            ],
        )
        floats = array(
            "d",
            [self.block_sum, self.block_max, self.block_min, self.level, *self.recent],
        )
        floats.extend(self.values.to_floats())
        floats.extend(self.novelty.to_floats())
        floats.extend(self.mean_recent)
        floats.extend(self.means.to_floats())
        for blo, bhi in zip(self.box_lo, self.box_hi, strict=True):
            floats.extend(blo)
            floats.extend(bhi)
        return b"".join(
            (self._detector.header(), _COUNTS.pack(len(ints)), ints.tobytes(), floats.tobytes())
        )

    @classmethod
    def loads(cls, detector: ResonanceDetector, payload: memoryview) -> ResonanceModel:
        model = cls(detector)
        try:
            (n_ints,) = _COUNTS.unpack_from(payload)
            ints = array("q")
            ints.frombytes(payload[2 : 2 + 8 * n_ints])
            raw = array("d")
            raw.frombytes(payload[2 + 8 * n_ints :])
            floats = raw.tolist()
        except (struct.error, ValueError) as exc:
            raise StateError(f"{detector.name}: corrupt state: {exc}") from None
        if n_ints < _FIXED_INTS:
            raise StateError(f"{detector.name}: corrupt state: {n_ints} counters")
        (model.last_ts, model.seen, model.points, model.last_alarm) = ints[:4]
        model.last_record, model.last_mean_record, model.block_n = ints[4:7]
        n_recent, n_boxes, n_value_blocks, n_novelty_blocks = ints[7:11]
        n_mean_recent, n_mean_blocks = ints[11:13]
        window = model._window
        expected = 4 + n_recent + (3 + 2 * n_value_blocks) + (3 + 2 * n_novelty_blocks)
        expected += n_mean_recent + 3 + 2 * n_mean_blocks
        if (
            len(ints) != _FIXED_INTS + n_boxes
            or n_mean_recent > model._mean_window
            or len(floats) != expected + 2 * window * n_boxes
            or n_recent > window
            or n_boxes > model._capacity
        ):
            raise StateError(f"{detector.name}: state does not fit these parameters")
        model.box_used = list(ints[_FIXED_INTS:])
        model.block_sum, model.block_max, model.block_min, model.level = floats[:4]
        at = 4
        model.recent = floats[at : at + n_recent]
        at += n_recent
        end = at + 3 + 2 * n_value_blocks
        model.values = Extremes.from_floats(model.values.block, model.values.blocks, floats[at:end])
        at, end = end, end + 3 + 2 * n_novelty_blocks
        model.novelty = Extremes.from_floats(
            model.novelty.block, model.novelty.blocks, floats[at:end]
        )
        at = end + n_mean_recent
        model.mean_recent = floats[end:at]
        end = at + 3 + 2 * n_mean_blocks
        model.means = Extremes.from_floats(model.means.block, model.means.blocks, floats[at:end])
        at = end
        for _ in range(n_boxes):
            model.box_lo.append(floats[at : at + window])
            model.box_hi.append(floats[at + window : at + 2 * window])
            at += 2 * window
        return model


@register
class ResonanceDetector(Detector):
    """Value and level records plus records of shape novelty against online fuzzy-ART boxes."""

    name = "resonance"
    tag = 2
    defaults = {
        "warmup": 150,  # samples before any score
        "record_gap": 100,  # samples: a value record sooner after the last one is discounted
        "mean_window": 128,  # samples in the moving mean whose records are a level signal
        "mean_gain": 0.3,
        "mean_block": 128,  # mean horizon: mean_blocks x mean_block samples
        "mean_blocks": 64,
        "block": 64,  # value horizon: blocks x block samples
        "blocks": 128,
        "step": 6,  # samples per shape point
        "window": 8,  # points per shape
        "rho": 0.9,  # vigilance: how close a shape must be to join a box
        "categories": 64,  # boxes kept
        "shape_warmup": 60,  # points before novelty counts, and again before it alarms
        "novelty_block": 16,  # novelty horizon: novelty_blocks x novelty_block points
        "novelty_blocks": 128,
        "quiet": 12,  # points without a shape alarm after one
        "shape_gain": 1.0,
    }

    def new(self) -> ResonanceModel:
        return ResonanceModel(self)

    def max_state_bytes(self) -> int:
        p = self.params
        boxes, window = int(p["categories"]), int(p["window"])
        ints = _FIXED_INTS + boxes
        floats = 4 + window + 3 + 2 * int(p["blocks"]) + 3 + 2 * int(p["novelty_blocks"])
        floats += int(p["mean_window"]) + 3 + 2 * int(p["mean_blocks"])
        floats += 2 * window * boxes
        return len(self.header()) + _COUNTS.size + 8 * (ints + floats)

    def loads(self, data: bytes) -> ResonanceModel:
        return ResonanceModel.loads(self, self.check_header(data))
