"""Invalid requests get a 422 that can itself be sent, whatever bytes they carried."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from pydantic import BaseModel

from libs.runtime import ServiceRuntime, add_ops_routes
from services.appmanager.market import MarketError, market_store


class Series(BaseModel):
    values: list[float]


async def test_a_body_that_is_not_utf8_gets_a_422_not_a_500() -> None:
    app = FastAPI()
    add_ops_routes(app, ServiceRuntime("test"))

    @app.post("/analyze")
    async def analyze(body: Series) -> dict:
        return {"n": len(body.values)}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        bad = await client.post(
            "/analyze", content=b"\xf7\x00", headers={"content-type": "application/x-protobuf"}
        )
        assert bad.status_code == 422, bad.text
        assert "\\xf7" in bad.text
        good = await client.post("/analyze", json={"values": [1, 2]})
        assert good.json() == {"n": 2}


def test_a_market_url_with_control_characters_is_refused() -> None:
    try:
        market_store("/tmp/\x00\x1emarket", ["file:///tmp"])
    except MarketError as exc:
        assert "control characters" in str(exc)
    else:
        raise AssertionError("accepted a NUL in a market URL")
