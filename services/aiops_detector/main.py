"""Entry point: python -m services.aiops_detector.main (a faust worker)."""

from __future__ import annotations

import sys

from libs.config import CommonSettings
from libs.observability.tracing import setup_tracing
from services.aiops_detector.app import NAME, create_app
from services.aiops_detector.settings import DetectorSettings


def main() -> None:
    common = CommonSettings()
    settings = DetectorSettings()
    setup_tracing(NAME)
    app = create_app(settings, common)
    level = {"DEBUG": "debug", "WARNING": "warn", "ERROR": "error"}.get(
        common.log_level.upper(), "info"
    )
    sys.argv = [
        sys.argv[0],
        "worker",
        "-l",
        level,
        "--web-port",
        str(settings.port),
        "--web-host",
        settings.host,
    ]
    app.main()


if __name__ == "__main__":
    main()
