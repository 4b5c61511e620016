"""Prometheus remote_write into the running stack: a real Prometheus, and bad input over HTTP."""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import cramjam
import httpx
import pytest

from libs.schemas.prometheus.remote_pb2 import WriteRequest
from libs.testing.stack import RunningStack
from tests.e2e.helpers import auth, find_deadletter, query_until, unique

pytestmark = pytest.mark.e2e

WINDOW = [("start", "2000-01-01T00:00:00Z"), ("end", "2100-01-01T00:00:00Z")]
HEADERS = {
    "content-type": "application/x-protobuf",
    "content-encoding": "snappy",
    "x-prometheus-remote-write-version": "0.1.0",
    "user-agent": "opsline-tests",
}
# What README.md shows under "Sending metrics from Prometheus (remote_write)", with the
# test's ports, token file and a faster pace.
CONFIG = """\
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:{prom_port}"]
remote_write:
  - url: {gateway}/v1/ingest/prometheus/write
    authorization:
      credentials_file: {token_file}
    queue_config:
      batch_send_deadline: 1s
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as c:
        yield c


@pytest.fixture
def prometheus(stack: RunningStack, tmp_path: Path) -> Iterator[str]:
    """A real Prometheus that scrapes itself and remote_writes to the stack's gateway."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed: run tests/system-deps.sh (make test does)")
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        CONFIG.format(
            prom_port=port,
            gateway=stack.stack.gateway_url,
            token_file=stack.stack.admin_token_file.resolve(),
        )
    )
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def _prom_value(client: httpx.AsyncClient, url: str, expr: str) -> float | None:
    response = await client.get(f"{url}/api/v1/query", params={"query": expr})
    result = response.json()["data"]["result"] if response.status_code == 200 else []
    return float(result[0]["value"][1]) if result else None


async def test_a_real_prometheus_remote_writes_its_own_series(
    stack: RunningStack, prometheus: str, client: httpx.AsyncClient
) -> None:
    series = await query_until(
        client,
        stack,
        [("name", "prometheus_build_info"), ("match", "job=prometheus"), *WINDOW],
        lambda s: bool(s),
        timeout=90,
    )
    labels = series[0]["labels"]
    assert labels["version"].startswith("2.") and labels["instance"].startswith("127.0.0.1:")
    up = await query_until(
        client,
        stack,
        [("name", "up"), ("match", "job=prometheus"), *WINDOW],
        lambda s: bool(s) and len(s[0]["points"]) >= 2,
    )
    assert {p[1] for p in up[0]["points"]} == {1.0}
    # Prometheus itself saw every send succeed: nothing failed, nothing is being retried.
    sent = await _prom_value(client, prometheus, "prometheus_remote_storage_samples_total")
    assert sent and sent > 0
    failed = await _prom_value(client, prometheus, "prometheus_remote_storage_samples_failed_total")
    assert failed == 0
    exposition = (await client.get(f"{stack.stack.gateway_url}/metrics")).text
    assert 'opsline_remote_write_requests_total{code="204",outcome="accepted"}' in exposition


def _body(*series: tuple[dict[str, str], list[tuple[float, int]]]) -> bytes:
    request = WriteRequest()
    for labels, samples in series:
        ts = request.timeseries.add()
        for name in sorted(labels):
            ts.labels.add(name=name, value=labels[name])
        for value, timestamp in samples:
            ts.samples.add(value=value, timestamp=timestamp)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


async def _post(
    client: httpx.AsyncClient, stack: RunningStack, body: bytes, **headers: str
) -> httpx.Response:
    return await client.post(
        f"{stack.stack.gateway_url}/v1/ingest/prometheus/write",
        content=body,
        headers={**HEADERS, **auth(stack), **headers},
    )


async def test_bad_requests_are_refused_with_the_reason(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    good = _body(({"__name__": unique("rw_bad")}, [(1.0, int(time.time() * 1000))]))
    corrupt = await _post(client, stack, good[:-4])
    assert corrupt.status_code == 400
    assert corrupt.json()["detail"].startswith("corrupt snappy block: ")
    bomb = await _post(client, stack, bytes(cramjam.snappy.compress_raw(b"\0" * (40 << 20))))
    assert bomb.status_code == 413 and "declares 41943040 bytes" in bomb.json()["detail"]
    gzip = await _post(client, stack, good, **{"content-encoding": "gzip"})
    assert gzip.status_code == 415 and "Content-Encoding must be 'snappy'" in gzip.text
    not_proto = await _post(client, stack, bytes(cramjam.snappy.compress_raw(b"\x0a\xff\xff")))
    assert not_proto.status_code == 400 and "WriteRequest protobuf" in not_proto.text
    anonymous = await client.post(
        f"{stack.stack.gateway_url}/v1/ingest/prometheus/write", content=good, headers=HEADERS
    )
    assert anonymous.status_code == 401


async def test_a_nan_sample_is_dead_lettered_and_the_next_write_still_lands(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    name = unique("rw_nan")
    now = int(time.time() * 1000)
    first = await _post(
        client,
        stack,
        _body(
            ({"__name__": name, "job": "good"}, [(1.0, now - 2000)]),
            ({"__name__": name, "job": "bad"}, [(math.nan, now - 2000)]),
        ),
    )
    assert first.status_code == 204, first.text
    value, headers = await find_deadletter(
        stack, lambda h: name.encode() in h.get("dl_reason", b"")
    )
    reason = headers["dl_reason"].decode()
    assert "partially rejected (1 items)" in reason
    assert f'{name}{{job="bad"}} @{now - 2000}: value: NaN and infinity are not accepted' in reason
    assert headers["dl_partial"] == b"true"
    assert headers["ce_type"] == b"io.opsline.prometheus.write"
    assert (
        value is not None
        and WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(value)))
        .timeseries[1]
        .labels[1]
        .value
        == "bad"
    )  # the original bytes, untouched
    second = await _post(client, stack, _body(({"__name__": name, "job": "good"}, [(2.0, now)])))
    assert second.status_code == 204
    series = await query_until(
        client,
        stack,
        [("name", name), *WINDOW],
        lambda s: sum(len(x["points"]) for x in s) == 2,
    )
    assert [x["labels"] for x in series] == [{"job": "good"}]
    assert [p[1] for p in series[0]["points"]] == [1.0, 2.0]
