"""Metrics, tracing and logging shared by every service."""
