"""Waits for the gateway's /readyz, then prints where everything is (run by supervisord)."""

from __future__ import annotations

import os
import sys
import time

import httpx


def main() -> None:
    gateway = os.environ["OPSLINE_GATEWAY_URL"]
    started = time.monotonic()
    last = ""
    while True:
        try:
            response = httpx.get(f"{gateway}/readyz", timeout=3)
            if response.status_code == 200:
                break
            waiting = [k for k, v in response.json().get("checks", {}).items() if not v]
            status = "waiting for: " + ", ".join(waiting)
        except httpx.HTTPError:
            status = "waiting for the gateway"
        if status != last:
            print(f"opsline: {status} ({time.monotonic() - started:.0f}s)", flush=True)
            last = status
        time.sleep(1)
    token_file = os.environ["OPSLINE_ADMIN_TOKEN_FILE"]
    token = (
        open(token_file).read().strip() if os.path.exists(token_file) else "(OPSLINE_ADMIN_TOKEN)"
    )
    print(
        "\n"
        f"opsline is ready ({time.monotonic() - started:.0f}s)\n"
        f"  gateway (API, /docs)      {gateway}\n"
        f"  Kafka bootstrap           {os.environ['OPSLINE_KAFKA_BOOTSTRAP']}\n"
        f"  Elasticsearch             {os.environ['OPSLINE_ELASTICSEARCH_URL']}\n"
        f"  admin token               {token}\n"
        f"                            (kept in {token_file}, mode 0600)\n"
        "  Ctrl-C stops everything.\n",
        flush=True,
    )
    sys.exit(0)


if __name__ == "__main__":
    main()
