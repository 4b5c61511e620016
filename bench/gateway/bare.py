"""The baseline for catalogue reads: a bare FastAPI route returning the same JSON as the
gateway's GET /v1/apps, served by uvicorn like the gateway (one process, no access log).

Run: python -m bench.gateway.bare PORT FILE (FILE holds the JSON the route returns).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI


def create_app(answer: dict[str, Any]) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/apps")
    async def list_apps() -> dict[str, Any]:
        return answer

    return app


if __name__ == "__main__":
    port, path = int(sys.argv[1]), Path(sys.argv[2])
    app = create_app(json.loads(path.read_text()))
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
