"""Entry point: python -m services.aiops_detector.main (a faust worker serving the API)."""

from __future__ import annotations

import asyncio
import functools
import signal
import sys

from faust.contrib.asgi import serve_asgi

from libs.config import CommonSettings
from libs.events.topics import ALL_TOPICS, wait_for_topics
from libs.observability.logging import setup_logging
from libs.observability.tracing import setup_tracing
from services.aiops_detector.api import StreamView
from services.aiops_detector.app import NAME, Rules, create_app, describe_series, describe_worker
from services.aiops_detector.manager import create_api
from services.aiops_detector.settings import DetectorSettings


def wait_for_kafka(common: CommonSettings) -> bool:
    """Block until the broker answers and the topics exist; False if stopped first.

    Services start in any order, and faust gives up at once when it cannot bootstrap,
    so the worker starts only once Kafka is there (logging "waiting for Kafka …").
    """

    async def wait() -> bool:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await wait_for_topics(
            common.kafka_bootstrap, ALL_TOPICS, partitions=common.topic_partitions, stop=stop
        )
        return not stop.is_set()

    return asyncio.run(wait())


def main() -> None:
    common = CommonSettings()
    settings = DetectorSettings()
    # faust sets up its own logging when the worker starts; until then, ours
    setup_logging(NAME, common.log_level)
    if not wait_for_kafka(common):
        return
    setup_tracing(NAME)
    rules = Rules()
    app = create_app(settings, common, rules)
    status = app.detector_status  # type: ignore[attr-defined]
    api = create_api(
        settings,
        common,
        rules=rules,
        stream_ready=lambda: status["assigned"],
        stream=StreamView(
            worker=functools.partial(describe_worker, app),
            series=functools.partial(describe_series, app),
        ),
    )
    # the API, health probes and the alert manager run on the worker's loop (uvicorn)
    serve_asgi(app, api, host=settings.host, port=settings.port, access_log=False)
    # Never above info: at warn and error faust sets every logger to DEBUG to drive its
    # terminal spinner, and building those debug records costs a third of the stream's time.
    level = "debug" if common.log_level.upper() == "DEBUG" else "info"
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
