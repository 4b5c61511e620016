"""hello: a tiny HTTP service (standard library only), the quickstart's example app.

GET / answers {"app", "version", "greeting"}; GET /healthz answers 200. Settings come from
the environment: PORT (8000), HOST (127.0.0.1), GREETING ("hello") and
OPSLINE_PACKAGE_VERSION ("dev"), which opsline sets to the deployed package version.
SIGTERM or Ctrl-C stops it cleanly, with exit code 0.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

VERSION = os.environ.get("OPSLINE_PACKAGE_VERSION", "dev")
GREETING = os.environ.get("GREETING", "hello")


class Handler(BaseHTTPRequestHandler):
    server_version = "hello"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/":
            self._send(200, {"app": "hello", "version": VERSION, "greeting": GREETING})
        elif path == "/healthz":
            self._send(200, {"status": "ok"})
        else:
            self._send(404, {"detail": f"no route {path}"})

    def _send(self, status: int, body: dict[str, str]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def main() -> int:
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    server = ThreadingHTTPServer((host, port), Handler)

    def stop(signum: int, frame: object) -> None:
        # shutdown() waits for serve_forever() to return, so it cannot run on this thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"hello {VERSION} listening on http://{host}:{port}", flush=True)
    server.serve_forever()
    server.server_close()
    print("hello stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
