"""Static rules: levels, the for-duration, occurrence counts, matchers and fingerprints."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.aiops_detector.rules import (
    Level,
    Matcher,
    Rule,
    RuleSet,
    RuleSpec,
    evaluate,
    fingerprint,
    new_state,
)


def rule(**kw: object) -> Rule:
    spec = {"id": "r1", "name": "cpu-high", "metric": "cpu", "thresholds": {"WARNING": 80}}
    return Rule.model_validate({**spec, **kw})


def run(r: Rule, points: list[tuple[int, float]]) -> list[tuple[int, Level | None]]:
    """The (ts, level) of every change in firing level over the points."""
    state = new_state()
    changes = []
    for ts, value in points:
        changed, level = evaluate(r, state, ts, value)
        if changed:
            changes.append((ts, level))
    return changes


def test_fires_at_once_without_for_or_occurrences_and_resolves_below() -> None:
    assert run(rule(), [(1, 50), (2, 90), (3, 95), (4, 10)]) == [
        (2, Level.WARNING),
        (4, None),
    ]


def test_occurrences_need_that_many_violating_samples_in_a_row() -> None:
    r = rule(occurrences=3)
    assert run(r, [(1, 90), (2, 90), (3, 10), (4, 90), (5, 90)]) == []
    assert run(r, [(1, 90), (2, 90), (3, 90)]) == [(3, Level.WARNING)]


def test_for_duration_counts_from_the_first_violating_sample() -> None:
    r = rule(for_s=60)
    points = [(0, 90), (30_000, 90), (59_999, 90), (60_000, 90), (61_000, 10)]
    assert run(r, points) == [(60_000, Level.WARNING), (61_000, None)]
    # a dip restarts the clock
    assert run(r, [(0, 90), (30_000, 10), (40_000, 90), (90_000, 90), (100_000, 90)]) == [
        (100_000, Level.WARNING)
    ]


def test_for_and_occurrences_both_hold_before_firing() -> None:
    r = rule(for_s=10, occurrences=5)
    # 10 s passed after 2 samples, but 5 are needed
    points = [(0, 90), (10_000, 90), (11_000, 90), (12_000, 90), (13_000, 90)]
    assert run(r, points) == [(13_000, Level.WARNING)]


def test_escalates_to_critical_and_back_down_to_warning() -> None:
    r = rule(thresholds={"WARNING": 80, "CRITICAL": 95})
    points = [(1, 85), (2, 99), (3, 99), (4, 85), (5, 50)]
    assert run(r, points) == [
        (1, Level.WARNING),
        (2, Level.CRITICAL),
        (4, Level.WARNING),
        (5, None),
    ]


def test_critical_needs_its_own_duration() -> None:
    r = rule(thresholds={"WARNING": 80, "CRITICAL": 95}, for_s=5)
    points = [(0, 99), (5_000, 99), (6_000, 85), (7_000, 99), (12_000, 99)]
    # CRITICAL's clock restarts when the value drops under it at 6 s (WARNING's does not)
    assert run(r, points) == [
        (5_000, Level.CRITICAL),
        (6_000, Level.WARNING),
        (12_000, Level.CRITICAL),
    ]


@pytest.mark.parametrize(
    ("comparator", "value", "fires"),
    [("<", 5, True), ("<", 15, False), ("<=", 10, True), ("==", 10, True), ("!=", 10, False)],
)
def test_comparators(comparator: str, value: float, fires: bool) -> None:
    r = rule(comparator=comparator, thresholds={"WARNING": 10})
    assert bool(run(r, [(1, value)])) is fires


def test_spec_refuses_levels_out_of_order_and_missing_thresholds() -> None:
    with pytest.raises(ValidationError, match="CRITICAL threshold must be at least"):
        RuleSpec(name="x", metric="cpu", thresholds={"WARNING": 90, "CRITICAL": 80})
    with pytest.raises(ValidationError, match="at most the WARNING"):
        RuleSpec(name="x", metric="cpu", comparator="<", thresholds={"WARNING": 5, "CRITICAL": 9})
    with pytest.raises(ValidationError, match="give a threshold"):
        RuleSpec(name="x", metric="cpu", thresholds={})
    with pytest.raises(ValidationError, match="invalid regex"):
        Matcher(name="app", op="=~", value="(")


def test_matchers_select_series_and_regexes_are_anchored() -> None:
    r = rule(
        matchers=[
            {"name": "app", "op": "=~", "value": "shop|cart"},
            {"name": "env", "op": "!=", "value": "dev"},
        ]
    )
    rules = RuleSet([r, rule(id="r2", metric="mem"), rule(id="r3", enabled=False)])
    assert rules.for_series("cpu", {"app": "shop", "env": "prod"}) == [r]
    assert rules.for_series("cpu", {"app": "shopping"}) == []
    assert rules.for_series("cpu", {"app": "cart", "env": "dev"}) == []
    assert [x.id for x in rules.for_series("mem", {})] == ["r2"]


def test_fingerprint_is_the_rule_and_the_labels_in_any_order() -> None:
    a = fingerprint("r1", {"app": "shop", "pod": "a"})
    assert a == fingerprint("r1", {"pod": "a", "app": "shop"})
    assert a != fingerprint("r2", {"app": "shop", "pod": "a"})
    assert a != fingerprint("r1", {"app": "shop", "pod": "b"})
    # no ambiguity between label boundaries
    assert fingerprint("r1", {"a": "b=c"}) != fingerprint("r1", {"a=b": "c"})
