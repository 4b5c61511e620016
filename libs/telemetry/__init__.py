"""Validation and normalization of telemetry that external tools send (metric and log batches)."""
