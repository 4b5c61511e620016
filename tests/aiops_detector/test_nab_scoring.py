"""Our NAB scorer on hand-built cases, and the harness on a two-file corpus.

The hand figures use s(x) = 2 / (1 + e^(5x)) - 1, s(-1) = 0.986614. Each file below has
100 rows, so its probationary period is floor(0.15 x 100) = 15 rows.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from bench.nab import run as nab
from bench.nab.scoring import Case, Profile, optimize, probation_length, score_detections

STANDARD = Profile("standard", tp=1.0, fn=1.0, fp=0.11)
LOW_FN = Profile("reward_low_FN_rate", tp=1.0, fn=2.0, fp=0.11)
WINDOW = (40, 49)  # ten rows


def _detect(*rows: int, n: int = 100) -> list[bool]:
    flags = [False] * n
    for row in rows:
        flags[row] = True
    return flags


def test_probationary_period_is_15_percent_capped_at_750_rows() -> None:
    assert probation_length(100) == 15
    assert probation_length(4032) == 604
    assert probation_length(22695) == 750


def test_a_detection_at_the_window_start_earns_the_full_tp_weight() -> None:
    # position -(49 - 40 + 1) / 10 = -1: s(-1) / s(-1) = 1
    outcome = score_detections(_detect(40), [WINDOW], STANDARD)
    assert outcome.raw == pytest.approx(1.0)
    assert (outcome.tp, outcome.fp, outcome.fn) == (1, 0, 0)


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    # row 41: position -0.9, s(-0.9) / s(-1) = 0.978026 / 0.986614 = 0.991295; 45 is free
    outcome = score_detections(_detect(45, 41), [WINDOW], STANDARD)
    assert outcome.raw == pytest.approx(0.991295, abs=1e-6)
    # the last row of the window: position -0.1, s(-0.1) / s(-1) = 0.244919 / 0.986614
    assert score_detections(_detect(49), [WINDOW], STANDARD).raw == pytest.approx(
        0.248242, abs=1e-6
    )


def test_a_missed_window_costs_the_fn_weight() -> None:
    assert score_detections(_detect(), [WINDOW], STANDARD).raw == pytest.approx(-1.0)
    assert score_detections(_detect(), [WINDOW], LOW_FN).raw == pytest.approx(-2.0)


def test_false_positives_cost_by_distance_after_the_preceding_window() -> None:
    # row 99: (99 - 49) / 10 = 5 > 3, so s = -1: the full 0.11; plus 1 for the window
    assert score_detections(_detect(40, 99), [WINDOW], STANDARD).raw == pytest.approx(0.89)
    # row 50, right after the window: s(0.1) = -0.244919, x 0.11 = -0.026941
    assert score_detections(_detect(40, 50), [WINDOW], STANDARD).raw == pytest.approx(
        1.0 - 0.026941, abs=1e-6
    )
    # row 20: no window before it, the full 0.11; the window is missed, -1
    outcome = score_detections(_detect(20), [WINDOW], STANDARD)
    assert outcome.raw == pytest.approx(-1.11)
    assert (outcome.tp, outcome.fp, outcome.fn) == (0, 1, 1)


def test_detections_in_the_probationary_period_are_ignored() -> None:
    outcome = score_detections(_detect(*range(15)), [WINDOW], STANDARD)
    assert outcome.raw == pytest.approx(-1.0)
    assert outcome.fp == 0
    assert score_detections(_detect(15), [WINDOW], STANDARD).fp == 1


def test_threshold_optimisation_picks_the_best_corpus_threshold() -> None:
    a = [0.0] * 100
    a[40], a[70], a[90] = 0.9, 0.5, 0.3  # a window start, then two false positives
    b = [0.0] * 100
    b[65] = 0.4  # the middle of b's window (60, 69)
    cases = [Case("a", a, [WINDOW]), Case("b", b, [(60, 69)])]
    # threshold 0.9: +1 - 1 = 0
    # threshold 0.5: + row 70 of a, (70 - 49) / 10 = 2.1, s(2.1) x 0.11 = -0.109994
    # threshold 0.4: + row 65 of b, position -0.5, s(-0.5) / s(-1) = 0.859793 -> 1.749799
    # threshold 0.3: + row 90 of a, 4.1 past the window, -0.11 -> 1.639799
    # threshold 0: every row: far worse. Normalised: 100 x (1.749799 + 2) / (2 + 2) = 93.745
    result = optimize(cases, STANDARD)
    assert result.threshold == 0.4
    assert result.raw == pytest.approx(1.749799, abs=1e-6)
    assert (result.null, result.perfect) == (-2.0, 2.0)
    assert result.score == pytest.approx(93.745, abs=1e-3)
    assert (result.tp, result.fp, result.fn) == (2, 1, 0)


def test_the_sweep_finds_the_same_optimum_as_scoring_every_threshold() -> None:
    rng = random.Random(7)
    cases = []
    for i in range(4):
        n = rng.randint(80, 300)
        scores = [round(rng.random(), 2) for _ in range(n)]
        start = rng.randint(20, n - 30)
        cases.append(Case(f"f{i}", scores, [(start, start + rng.randint(3, 20))]))
    for profile in (STANDARD, LOW_FN):
        best = max(
            sum(score_detections([s >= t for s in c.scores], c.windows, profile).raw for c in cases)
            for t in {s for c in cases for s in c.scores} | {2.0}
        )
        assert optimize(cases, profile).raw == pytest.approx(best)


def _corpus(root: Path) -> None:
    """Two 400-row files: a flat one with a spike inside its window, and a clean one."""
    (root / "data" / "demo").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "config").mkdir()
    windows = {"demo/spike.csv": [["2024-01-01 05:00:00", "2024-01-01 05:30:00"]]}
    windows["demo/calm.csv"] = []
    for name in windows:
        with (root / "data" / name).open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["timestamp", "value"])
            for minute in range(400):
                value = 50.0 if name == "demo/spike.csv" and minute == 310 else 1.0 + minute % 3
                writer.writerow([f"2024-01-01 {minute // 60:02d}:{minute % 60:02d}:00", value])
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    costs = {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0}
    (root / "config" / "profiles.json").write_text(json.dumps({"standard": {"CostMatrix": costs}}))


def test_the_harness_writes_nab_results_and_scores_them(tmp_path: Path) -> None:
    _corpus(tmp_path / "nab")
    result = nab.run(name="zscore", root=tmp_path / "nab", out=tmp_path / "out")
    path = tmp_path / "out" / "results" / "zscore" / "demo" / "zscore_spike.csv"
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["timestamp", "value", "anomaly_score", "label"]
    assert len(rows) == 400
    labelled = [i for i, row in enumerate(rows) if row["label"] == "1"]
    assert labelled == list(range(300, 331))
    assert all(0.0 <= float(row["anomaly_score"]) <= 1.0 for row in rows)
    # the spike at row 310 is the file's top score after the warm-up, found by the sweep
    standard = result["profiles"]["standard"]
    assert (standard["tp"], standard["fn"]) == (1, 0)
    assert standard["score"] > 50
    assert result["files"] == 2 and result["samples"] == 800


def test_the_harness_refuses_an_unknown_detector_or_parameter(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown detector"):
        nab.run(name="nope", root=tmp_path)
    with pytest.raises(ValueError, match="unknown parameter"):
        nab.run(name="zscore", params={"bogus": 1.0}, root=tmp_path)


def test_pick_spreads_a_short_run_over_the_corpus() -> None:
    names = [f"c{i}" for i in range(10)]
    assert nab.pick(names, 3) == ["c0", "c3", "c6"]
    assert nab.pick(names, None) == names
    assert nab.pick(names, 99) == names
