"""The streaming detector interface: per-series models whose whole state is compact bytes.

A `Detector` holds parameters (shared by every series); a `SeriesModel` is the state of one
series. The faust table keeps `dumps()` bytes per series key, so a model must be bounded:
its bytes never grow with the length of the stream.
"""

from __future__ import annotations

import math
import struct
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar, TypeVar

#: First byte of every state: bump it when a layout changes so old bytes are refused, not misread.
STATE_VERSION = 1
_HEADER = struct.Struct("<BB")  # version, detector tag


class StateError(ValueError):
    """State bytes that this detector cannot load (another detector's, or another version)."""


class SeriesModel(ABC):
    """One series: `step` folds a sample in and scores it; `dumps` is the whole state."""

    @abstractmethod
    def step(self, ts_ms: int, value: float) -> float:
        """Score in [0, 1] for this sample, then learn from it.

        A non-finite value, or a timestamp not after the last accepted one (a late or
        redelivered sample), scores 0.0 and leaves the state as it was.
        """

    @abstractmethod
    def dumps(self) -> bytes:
        """The whole state, loadable by `Detector.loads`."""


class Detector(ABC):
    """Parameters shared by all series, and the factory of their models."""

    name: ClassVar[str]
    tag: ClassVar[int]  # one byte in the state header: loads() refuses another detector's state
    defaults: ClassVar[dict[str, float]]

    def __init__(self, **params: float) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ValueError(f"{self.name}: unknown parameter(s) {', '.join(unknown)}")
        merged = {**self.defaults, **params}
        for key, value in merged.items():
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{self.name}: parameter {key} must be a finite number")
        self.params: dict[str, float] = {k: float(v) for k, v in merged.items()}

    @abstractmethod
    def new(self) -> SeriesModel:
        """A model for a series never seen before."""

    @abstractmethod
    def max_state_bytes(self) -> int:
        """The largest `dumps()` can ever be with these parameters: what a table must hold."""

    @abstractmethod
    def loads(self, data: bytes) -> SeriesModel:
        """The model whose `dumps()` gave `data`; StateError if it is not ours."""

    def update(self, state: bytes | None, ts_ms: int, value: float) -> tuple[bytes, float]:
        """Functional form for a table: old state bytes (None for a new series) in, new out."""
        model = self.new() if state is None else self.loads(state)
        score = model.step(ts_ms, value)
        return model.dumps(), score

    def update_many(
        self, state: bytes | None, samples: Iterable[tuple[int, float]]
    ) -> tuple[bytes, list[float]]:
        """Like `update` for several samples of one series: the state is decoded once."""
        model = self.new() if state is None else self.loads(state)
        scores = [model.step(ts_ms, value) for ts_ms, value in samples]
        return model.dumps(), scores

    def header(self) -> bytes:
        return _HEADER.pack(STATE_VERSION, self.tag)

    def check_header(self, data: bytes) -> memoryview:
        """The payload after a valid header."""
        if len(data) < _HEADER.size:
            raise StateError(f"{self.name}: state of {len(data)} bytes is too short")
        version, tag = _HEADER.unpack_from(data)
        if tag != self.tag:
            raise StateError(f"{self.name}: state belongs to detector tag {tag}")
        if version != STATE_VERSION:
            raise StateError(f"{self.name}: state version {version}, expected {STATE_VERSION}")
        return memoryview(data)[_HEADER.size :]


_REGISTRY: dict[str, type[Detector]] = {}
D = TypeVar("D", bound=type[Detector])


def register(cls: D) -> D:
    """Class decorator: make a detector available by its name."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"detector {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def create(name: str, **params: Any) -> Detector:
    """A detector by registered name, with parameters over its defaults."""
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; known: {', '.join(names())}") from None
    return cls(**params)


def names() -> list[str]:
    return sorted(_REGISTRY)
