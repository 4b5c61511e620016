"""Streaming detectors: scores, state bytes, bad input, the registry."""

from __future__ import annotations

import math
import random

import pytest

from services.aiops_detector import detectors
from services.aiops_detector.detectors import StateError

NAMES = detectors.names()
MAX_STATE = 16 * 1024


def _seasonal(n: int, seed: int = 1) -> list[float]:
    """A daily-looking cycle of 288 samples with noise: what ops metrics mostly are."""
    rng = random.Random(seed)
    return [50 + 20 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 2) for i in range(n)]


def _run(name: str, values: list[float]) -> list[float]:
    model = detectors.create(name).new()
    return [model.step(60_000 * i, v) for i, v in enumerate(values)]


def test_the_registry_knows_both_detectors_and_refuses_unknowns() -> None:
    assert {"zscore", "resonance"} <= set(NAMES)
    with pytest.raises(ValueError, match="unknown detector 'nope'"):
        detectors.create("nope")
    with pytest.raises(ValueError, match="unknown parameter"):
        detectors.create("zscore", speed=3)
    with pytest.raises(ValueError, match="finite"):
        detectors.create("zscore", alpha=math.nan)


@pytest.mark.parametrize("name", NAMES)
def test_scores_stay_in_the_unit_interval(name: str) -> None:
    rng = random.Random(3)
    values = _seasonal(3000)
    for i in rng.sample(range(3000), 30):
        values[i] *= rng.choice([-50, 0, 1e6])
    scores = _run(name, values)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert max(scores) > 0


@pytest.mark.parametrize("name", NAMES)
def test_a_clear_spike_scores_high_and_above_everything_before_it(name: str) -> None:
    values = _seasonal(3000)
    values[2500] = 200.0  # seven and a half amplitudes above the cycle
    scores = _run(name, values)
    assert scores[2500] >= 0.5
    assert scores[2500] > max(scores[300:2500])


@pytest.mark.parametrize("name", NAMES)
def test_a_constant_series_scores_zero(name: str) -> None:
    assert max(_run(name, [42.0] * 3000)) == 0.0


@pytest.mark.parametrize("name", NAMES)
def test_state_bytes_round_trip_and_stay_bounded(name: str) -> None:
    detector = detectors.create(name)
    model = detector.new()
    state: bytes | None = None
    values = _seasonal(20_000, seed=5)
    sizes = []
    for i, value in enumerate(values):
        # half the stream through bytes, as a faust table would; it must not change a score
        if i < 3000:
            state, by_bytes = detector.update(state, 60_000 * i, value)
            assert by_bytes == model.step(60_000 * i, value)
            if i == 2999:
                assert state == model.dumps()
        else:
            model.step(60_000 * i, value)
        if i % 2000 == 1999:
            sizes.append(len(model.dumps()))
    copy = detector.loads(model.dumps())
    assert copy.dumps() == model.dumps()
    later = [(60_000 * (20_000 + i), v) for i, v in enumerate(_seasonal(500, seed=9))]
    assert [copy.step(ts, v) for ts, v in later] == [model.step(ts, v) for ts, v in later]
    assert max(sizes) <= detector.max_state_bytes() <= MAX_STATE


@pytest.mark.parametrize("name", NAMES)
def test_state_never_outgrows_its_declared_bound(name: str) -> None:
    # wild input makes every shape new, so the boxes and rings fill as fast as they can
    detector = detectors.create(name)
    model = detector.new()
    rng = random.Random(11)
    sizes = []
    for i in range(30_000):
        model.step(i + 1, rng.choice([1.0, 10.0, 100.0]) * rng.random() + i % 7)
        if i % 1000 == 999:
            sizes.append(len(model.dumps()))
    assert max(sizes) <= detector.max_state_bytes() <= MAX_STATE
    assert sizes[-1] == sizes[-10]  # full: a longer stream costs no more bytes


@pytest.mark.parametrize("name", NAMES)
def test_update_many_is_update_one_by_one(name: str) -> None:
    detector = detectors.create(name)
    samples = [(60_000 * i, v) for i, v in enumerate(_seasonal(1000))]
    state: bytes | None = None
    one_by_one = []
    for ts, value in samples:
        state, score = detector.update(state, ts, value)
        one_by_one.append(score)
    batched_state, batched = detector.update_many(None, samples)
    assert batched == one_by_one
    assert batched_state == state


@pytest.mark.parametrize("name", NAMES)
def test_bad_samples_score_zero_and_leave_the_state_alone(name: str) -> None:
    model = detectors.create(name).new()
    for i, value in enumerate(_seasonal(500)):
        model.step(60_000 * (i + 1), value)
    before = model.dumps()
    last = 60_000 * 500
    for ts, value in [
        (last + 1, math.nan),
        (last + 1, math.inf),
        (last + 1, -math.inf),
        (last, 1e9),  # a redelivered timestamp
        (last - 60_000, 1e9),  # a late sample
    ]:
        assert model.step(ts, value) == 0.0
        assert model.dumps() == before
    assert model.step(last + 60_000, 50.0) >= 0.0
    assert model.dumps() != before


@pytest.mark.parametrize("name", NAMES)
def test_foreign_or_corrupt_state_is_refused(name: str) -> None:
    detector = detectors.create(name)
    other = next(n for n in NAMES if n != name)
    foreign = detectors.create(other).new()
    foreign.step(1, 1.0)
    with pytest.raises(StateError, match="belongs to detector"):
        detector.loads(foreign.dumps())
    good = detector.new()
    for i, value in enumerate(_seasonal(400)):
        good.step(i + 1, value)
    data = good.dumps()
    with pytest.raises(StateError):
        detector.loads(data[:1])
    with pytest.raises(StateError):
        detector.loads(data[:-3])
    with pytest.raises(StateError, match="version"):
        detector.loads(bytes([99]) + data[1:])
