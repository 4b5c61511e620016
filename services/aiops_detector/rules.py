"""Static alert rules (as SREWorks health definitions have them) and their evaluation.

A rule names a metric and label matchers, a comparator, a threshold per level (WARNING,
CRITICAL), a `for` duration and an occurrence count. A level is active on a series once
its threshold has been crossed by `occurrences` samples in a row that span at least
`for_s`; the rule fires at its highest active level and resolves when none is active.
Evaluation is a pure function of a tiny per-(series, rule) state, kept in the faust table.
"""

from __future__ import annotations

import hashlib
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9_.:-]{0,99}$"
METRIC_PATTERN = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
LABEL_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
MAX_MATCHERS = 20
MAX_REGEX = 500


class Level(StrEnum):
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"


RANK = {None: 0, Level.WARNING: 1, Level.CRITICAL: 2}
LEVELS = (Level.CRITICAL, Level.WARNING)  # highest first

Comparator = Literal[">", ">=", "<", "<=", "==", "!="]
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


class Matcher(BaseModel):
    """A label matcher as Prometheus writes them: `=`, `!=`, `=~`, `!~` (regexes anchored)."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(pattern=LABEL_PATTERN, max_length=100)
    op: Literal["=", "!=", "=~", "!~"] = "="
    value: str = Field(default="", max_length=MAX_REGEX)

    @model_validator(mode="after")
    def _regex_compiles(self) -> Matcher:
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"matcher {self.name}: invalid regex: {exc}") from None
        return self

    @cached_property
    def _regex(self) -> re.Pattern[str]:
        return re.compile(self.value)

    def matches(self, labels: Mapping[str, str]) -> bool:
        given = labels.get(self.name, "")
        if self.op == "=":
            return given == self.value
        if self.op == "!=":
            return given != self.value
        found = self._regex.fullmatch(given) is not None
        return found if self.op == "=~" else not found


def all_match(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


class RuleSpec(BaseModel):
    """What a user writes: the body of POST/PUT /v1/alert-rules."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="alertname of the alerts it raises")
    metric: str = Field(pattern=METRIC_PATTERN, max_length=200)
    matchers: list[Matcher] = Field(default_factory=list, max_length=MAX_MATCHERS)
    comparator: Comparator = ">"
    thresholds: dict[Level, float] = Field(description="a threshold per level, at least one")
    for_s: float = Field(default=0.0, ge=0, le=7 * 86400, description="how long it must hold")
    occurrences: int = Field(default=1, ge=1, le=10_000, description="samples in a row")
    summary: str = Field(default="", max_length=1000)
    labels: dict[str, str] = Field(default_factory=dict, description="added to its alerts")
    enabled: bool = True

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, value: dict[Level, float]) -> dict[Level, float]:
        if not value:
            raise ValueError("give a threshold for WARNING, CRITICAL or both")
        for level, threshold in value.items():
            if threshold != threshold or threshold in (float("inf"), float("-inf")):
                raise ValueError(f"{level}: threshold must be a finite number")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 16:
            raise ValueError("at most 16 labels")
        for key, text in value.items():
            if not re.fullmatch(LABEL_PATTERN, key) or len(text) > 1024:
                raise ValueError(f"label {key!r}: bad name or value over 1024 characters")
        return value

    @model_validator(mode="after")
    def _levels_in_order(self) -> RuleSpec:
        w, c = self.thresholds.get(Level.WARNING), self.thresholds.get(Level.CRITICAL)
        if w is not None and c is not None:
            if self.comparator in (">", ">=") and c < w:
                raise ValueError("CRITICAL threshold must be at least the WARNING one for >")
            if self.comparator in ("<", "<=") and c > w:
                raise ValueError("CRITICAL threshold must be at most the WARNING one for <")
        return self


class Rule(RuleSpec):
    """A stored rule: the spec and its id."""

    model_config = ConfigDict(extra="ignore")

    id: str

    def applies_to(self, name: str, labels: Mapping[str, str]) -> bool:
        return self.enabled and name == self.metric and all_match(self.matchers, labels)

    def violates(self, level: Level, value: float) -> bool:
        threshold = self.thresholds.get(level)
        return threshold is not None and _COMPARE[self.comparator](value, threshold)


# Per (series, rule) state: [since_ts, count] for WARNING, then CRITICAL, then the level
# it last fired at (0 none, 1 WARNING, 2 CRITICAL).
RuleState = list[int]


def new_state() -> RuleState:
    return [0, 0, 0, 0, 0]


def evaluate(rule: Rule, state: RuleState, ts_ms: int, value: float) -> tuple[bool, Level | None]:
    """Fold one sample in: (whether the firing level changed, the level; None: not firing)."""
    for i, level in enumerate((Level.WARNING, Level.CRITICAL)):
        if rule.violates(level, value):
            if state[2 * i + 1] == 0:
                state[2 * i] = ts_ms
            state[2 * i + 1] += 1
        else:
            state[2 * i] = state[2 * i + 1] = 0
    active: Level | None = None
    for level in LEVELS:
        i = 0 if level is Level.WARNING else 1
        since, count = state[2 * i], state[2 * i + 1]
        if count >= rule.occurrences and ts_ms - since >= rule.for_s * 1000:
            active = level
            break
    if RANK[active] == state[4]:
        return False, active
    state[4] = RANK[active]
    return True, active


def fingerprint(rule_id: str, labels: Mapping[str, str]) -> str:
    """Stable id of an alert: its rule and the labels of the series it is about."""
    h = hashlib.sha256(rule_id.encode())
    for key in sorted(labels):
        h.update(b"\x00" + key.encode() + b"\x01" + labels[key].encode())
    return h.hexdigest()[:16]


class RuleSet:
    """The enabled rules, indexed by metric name (what the stream looks up per series)."""

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self.by_metric: dict[str, list[Rule]] = {}
        for rule in rules:
            if rule.enabled:
                self.by_metric.setdefault(rule.metric, []).append(rule)

    def for_series(self, name: str, labels: Mapping[str, str]) -> list[Rule]:
        return [r for r in self.by_metric.get(name, ()) if all_match(r.matchers, labels)]
