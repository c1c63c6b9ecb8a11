"""A day of OpenClaw heartbeats, replayed on the fakes' prompt caches (`bench/heartbeat_cost.py`
prints the figures): with the heartbeat class (haiku, minimal context, 1 h breakpoints) the system
prompt and tools are read from the cache all day, and the day costs a small fraction of the same
heartbeats sent to claude-sonnet-4-0 with full context and no cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from stellwerk.testing.replay import full_context_on, heartbeat_day, replay

from ..conftest import capture

CAPTURE = Path(__file__).resolve().parents[3] / "shared/clients/openclaw/captures/heartbeat.json"


@pytest.fixture(scope="module")
def day() -> list[dict[str, object]]:
    (captured,) = capture("heartbeat")
    return heartbeat_day(captured, 48, 1800)


async def test_a_day_of_heartbeats_reads_its_prefix_from_the_cache(day):
    baseline = await replay(day, full_context_on("anthropic/claude-sonnet-4-0"))
    stellwerk = await replay(day, {})
    assert stellwerk.models == {"anthropic/claude-haiku-4-5": 48}
    assert stellwerk.cache_read_share > 0.9
    assert stellwerk.usage.cache_write_tokens < stellwerk.usage.input_tokens / 40  # one write
    assert stellwerk.cost_micros < baseline.cost_micros * 0.06  # 5.4 % measured


async def test_five_minute_breakpoints_go_cold_between_heartbeats(day):
    hour = await replay(day, {})
    five = await replay(day, {"tasks": {"heartbeat": {"cache": "5m"}}})
    none = await replay(day, {"tasks": {"heartbeat": {"cache": "off"}}})
    assert five.cache_read_share == 0  # written every time, never read: worse than none
    assert hour.cost_micros < none.cost_micros < five.cost_micros
