"""The detector agent, driven through faust's test context (no broker needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.config import CommonSettings
from libs.events import topics as t
from libs.events.envelope import PROTOBUF, CloudEvent, to_kafka
from libs.telemetry.samples import encode_batch, parse_metric_batch
from services.aiops_detector.app import create_app
from services.aiops_detector.detector import update_stats, zscore
from services.aiops_detector.settings import DetectorSettings


def test_running_stats_match_the_textbook_formulas() -> None:
    values = [3.0, 5.0, 4.0, 10.0, 2.0]
    state = None
    for ts, value in enumerate(values, start=1):
        state = update_stats(state, value, ts)
    assert state is not None
    mean = sum(values) / len(values)
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    assert state["n"] == 5
    assert state["mean"] == pytest.approx(mean)
    assert state["m2"] / (state["n"] - 1) == pytest.approx(variance)
    assert zscore(state, mean + 2 * variance**0.5) == pytest.approx(2.0)


def test_late_and_repeated_samples_do_not_count_twice() -> None:
    state = update_stats(None, 1.0, 100)
    assert update_stats(state, 50.0, 100) is state
    assert update_stats(state, 50.0, 99) is state
    assert update_stats(state, 2.0, 101)["n"] == 2


async def test_agent_folds_each_sample_into_its_series_state(tmp_path: Path) -> None:
    app = create_app(DetectorSettings(), CommonSettings(home=tmp_path))
    app.finalize()
    agent = next(iter(app.agents.values()))
    parsed = parse_metric_batch(
        {
            "samples": [
                {"name": "cpu", "labels": {"app": "shop"}, "value": 1.0, "ts": 1000},
                {"name": "cpu", "labels": {"app": "shop"}, "value": 3.0, "ts": 2000},
                {"name": "cpu", "labels": {"app": "cart"}, "value": 7.0, "ts": 1000},
            ]
        }
    )
    event = CloudEvent.create(
        type=t.METRIC_POINTS,
        source="tests",
        datacontenttype=PROTOBUF,
        data=encode_batch(parsed.samples, source_event_id="e1"),
    )
    _, value, headers = to_kafka(event)
    table = app.stats_table  # type: ignore[attr-defined]
    async with agent.test_context() as ctx:
        await ctx.put(value, key=b"k", headers=headers)
    shop, cart = parsed.samples[0].series_id, parsed.samples[2].series_id
    assert table[shop]["n"] == 2 and table[shop]["mean"] == pytest.approx(2.0)
    assert table[cart]["n"] == 1 and table[cart]["last_ts"] == 1000
