"""The overhead benchmark runs end to end: `bench/overhead.py --smoke`, a few seconds.

It starts the fast fake upstream, the gateway twice as a real process (plain, and with routing
work: classification, a chain whose first two targets fail, budgets) and `stellwerk route` cold,
and writes its JSON. What is checked is that every path answered every request and that the
report has its fields; timings are never asserted (they belong to the full run, not a test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SYSTEMS = ("direct", "stellwerk", "stellwerk+routing")
PHASES = ("c1", "c32", "c64", "stream", "anthropic_c1", "anthropic_stream")
AGENT_PHASES = (
    "agent_c1",
    "agent_stream",
    "agent_anthropic_c1",
    "agent_anthropic_stream",
    "toolloop_c1",
    "heartbeat_c1",
)
CAPTURES = ROOT.parent / "shared" / "clients" / "openclaw" / "captures"  # internal: read there

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="the benchmark reads /proc (Linux)"
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "result.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STELLWERK_")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "overhead.py"), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "c=64 throughput" in done.stdout  # the table was printed
    return json.loads(out.read_text())


def test_every_path_answers_every_request(report: dict) -> None:
    for name in SYSTEMS:
        system = report["systems"][name]
        assert "unsupported" not in system, system.get("unsupported")
        for phase in PHASES:
            assert system[phase]["requests"] > 0, (name, phase)
            assert system[phase]["errors"] == 0, (name, phase, system[phase])


def test_gateway_figures_are_reported(report: dict) -> None:
    for name in SYSTEMS[1:]:
        system = report["systems"][name]
        assert system["startup_s"] > 0
        assert system["idle_rss_mib"] > 0
        assert system["cpu_ms_per_request"] > 0
        assert system["rss_growth"]["requests"] > 0
        assert system["stream"]["ttfb_p50_ms"] > 0
        added = report["derived"]["added"][name]
        assert added["c1_p50_ms"] is not None
        assert set(report["derived"]["targets"][name]) >= {"added_c1_p50_ms", "c64_rps"}


def test_routing_work_and_cold_route_are_recorded(report: dict) -> None:
    assert "budgets" in report["settings"]["routing_work"]["on"]
    assert report["route_cold_s"]["runs"] >= 1
    assert report["route_cold_s"]["median"] > 0


@pytest.mark.skipif(
    not (CAPTURES / "agent_turn.json").is_file(), reason="no OpenClaw captures next to the repo"
)
def test_every_path_answers_the_captured_agent_requests(report: dict) -> None:
    """Plain and streamed, OpenAI and Anthropic format, a tool-loop continuation, a heartbeat;
    `auto` on the routed gateway and a named model on the plain one."""
    assert "agent_phases_skipped" not in report
    for name in SYSTEMS:
        system = report["systems"][name]
        for phase in AGENT_PHASES:
            assert system[phase]["requests"] > 0, (name, phase)
            assert system[phase]["errors"] == 0, (name, phase, system[phase])
    added = report["derived"]["added"]["stellwerk+routing"]
    assert added["agent_c1_p50_ms"] is not None
    checks = report["derived"]["targets"]["stellwerk+routing"]
    assert {"added_agent_c1_p50_ms", "cpu_per_request_vs_floor"} <= set(checks)
