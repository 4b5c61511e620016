"""opsline for external tools: a typed client of the gateway's API, and the `opsline` CLI."""

from opsline.client import OpslineClient, OpslineError

__all__ = ["OpslineClient", "OpslineError"]
