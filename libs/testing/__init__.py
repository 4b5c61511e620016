"""Helpers for tests that drive the real stack (no mocks of our own services)."""
