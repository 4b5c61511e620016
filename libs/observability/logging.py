"""One log format for every process: time, level, service, logger, message."""

from __future__ import annotations

import logging
import re
import sys

_SECRET = re.compile(r"(?i)(bearer\s+|token[=:]\s*|password[=:]\s*)([^\s,;\"']+)")


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return _SECRET.sub(r"\1[redacted]", super().format(record))


def setup_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        _RedactingFormatter(f"%(asctime)s %(levelname)-5s [{service}] %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "elastic_transport", "httpx", "uvicorn.access", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
