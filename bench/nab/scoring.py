"""NAB scoring, written from the benchmark's published description (no NAB code).

Per file: rows before the probationary period are not scored. In each labelled window only
the earliest detection counts, worth the TP weight times a scaled sigmoid of how late it
came (full weight at the window's start, nothing at its end); a window without one costs
the FN weight. A detection outside every window costs the FP weight, scaled by the same
sigmoid of its distance past the preceding window (the full weight when far, or when no
window precedes it). A profile's threshold is the one that maximises the corpus total, and
the total is normalised so the detector that never fires scores 0 and a perfect one 100.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

PROBATION_SHARE = 0.15
PROBATION_CAP = 750  # 15% of 5,000 rows


@dataclass(frozen=True)
class Profile:
    name: str
    tp: float
    fn: float
    fp: float


@dataclass(frozen=True)
class Case:
    """One file as the scorer sees it: a score per row, windows as inclusive row ranges."""

    name: str
    scores: Sequence[float]
    windows: Sequence[tuple[int, int]]

    @property
    def probation(self) -> int:
        return probation_length(len(self.scores))


@dataclass(frozen=True)
class Outcome:
    raw: float
    tp: int = 0
    fp: int = 0
    fn: int = 0


@dataclass(frozen=True)
class ProfileResult:
    profile: Profile
    threshold: float
    raw: float
    null: float
    perfect: float
    tp: int
    fp: int
    fn: int

    @property
    def score(self) -> float:
        return 100.0 * (self.raw - self.null) / (self.perfect - self.null)


def probation_length(rows: int) -> int:
    return min(math.floor(PROBATION_SHARE * rows), PROBATION_CAP)


def scaled_sigmoid(x: float) -> float:
    """2·sigmoid(-5x) - 1: about +1 at x = -1, 0 at x = 0, tending to -1 (exactly -1 past 3)."""
    if x > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


_START = scaled_sigmoid(-1.0)


def tp_weight(row: int, window: tuple[int, int], profile: Profile) -> float:
    """The reward for a first detection at `row`: the full TP weight at the window's start."""
    start, end = window
    length = end - start + 1
    return profile.tp * scaled_sigmoid(-(end - row + 1) / length) / _START


def fp_cost(row: int, previous: tuple[int, int] | None, profile: Profile) -> float:
    """The (negative) score of a detection outside every window."""
    if previous is None:
        return -profile.fp
    start, end = previous
    return profile.fp * scaled_sigmoid((row - end) / (end - start + 1))


def score_detections(
    detections: Sequence[bool], windows: Sequence[tuple[int, int]], profile: Profile
) -> Outcome:
    """One file's raw score for a given set of detections (the reference implementation)."""
    probation = probation_length(len(detections))
    ordered = sorted(windows)
    raw, tp, fp = 0.0, 0, 0
    detected = [False] * len(ordered)
    previous: tuple[int, int] | None = None
    w = 0
    for row in range(probation, len(detections)):
        while w < len(ordered) and ordered[w][1] < row:
            previous = ordered[w]
            w += 1
        if not detections[row]:
            continue
        inside = w < len(ordered) and ordered[w][0] <= row
        if inside and not detected[w]:
            detected[w] = True
            raw += tp_weight(row, ordered[w], profile)
            tp += 1
        elif not inside:
            raw += fp_cost(row, previous, profile)
            fp += 1
    fn = detected.count(False)
    return Outcome(raw=raw - fn * profile.fn, tp=tp, fp=fp, fn=fn)


def _row_values(case: Case, profile: Profile, first_window: int) -> list[tuple[float, int, float]]:
    """(score, global window id or -1, weight) for every scored row of a file."""
    ordered = sorted(case.windows)
    out: list[tuple[float, int, float]] = []
    previous: tuple[int, int] | None = None
    w = 0
    for row in range(case.probation, len(case.scores)):
        while w < len(ordered) and ordered[w][1] < row:
            previous = ordered[w]
            w += 1
        if w < len(ordered) and ordered[w][0] <= row:
            out.append((case.scores[row], first_window + w, tp_weight(row, ordered[w], profile)))
        else:
            out.append((case.scores[row], -1, fp_cost(row, previous, profile)))
    return out


def optimize(cases: Sequence[Case], profile: Profile) -> ProfileResult:
    """The threshold that maximises the corpus score, found by one sweep over every score.

    Lowering the threshold past a group of equal scores turns those rows into detections:
    each outside a window adds its FP cost, each inside raises its window's reward to the
    row's weight if it beats the current one (an earlier row weighs more).
    """
    rows: list[tuple[float, int, float]] = []
    n_windows = 0
    for case in cases:
        rows.extend(_row_values(case, profile, n_windows))
        n_windows += len(case.windows)
    null = -profile.fn * n_windows
    perfect = profile.tp * n_windows
    rows.sort(key=lambda r: r[0], reverse=True)
    best = [-profile.fn] * n_windows
    total, best_total, best_threshold = null, null, math.inf
    i = 0
    while i < len(rows):
        threshold = rows[i][0]
        while i < len(rows) and rows[i][0] == threshold:
            _, window, weight = rows[i]
            if window < 0:
                total += weight
            elif weight > best[window]:
                total += weight - best[window]
                best[window] = weight
            i += 1
        if total > best_total:
            best_total, best_threshold = total, threshold
    tp = fp = fn = 0
    raw = 0.0
    for case in cases:
        outcome = score_detections(
            [s >= best_threshold for s in case.scores], case.windows, profile
        )
        raw += outcome.raw
        tp, fp, fn = tp + outcome.tp, fp + outcome.fp, fn + outcome.fn
    return ProfileResult(profile, best_threshold, raw, null, perfect, tp, fp, fn)
