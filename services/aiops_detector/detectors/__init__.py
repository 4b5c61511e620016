"""Pluggable streaming anomaly detectors: `create(name, **params)`, then per-series models."""

from services.aiops_detector.detectors import resonance as _resonance  # noqa: F401  (registers)
from services.aiops_detector.detectors import zscore as _zscore  # noqa: F401  (registers)
from services.aiops_detector.detectors.base import (
    Detector,
    SeriesModel,
    StateError,
    create,
    names,
    register,
)

__all__ = ["Detector", "SeriesModel", "StateError", "create", "names", "register"]
