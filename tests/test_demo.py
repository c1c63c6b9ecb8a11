"""`stellwerk demo` runs the agent day through the gateway and shows every incident."""

from __future__ import annotations

import logging

from stellwerk.demo import run_demo


def test_demo_shows_the_day_and_the_report(monkeypatch, tmp_path, caplog):
    monkeypatch.chdir(tmp_path)  # no stellwerk.yaml here: the embedded defaults
    monkeypatch.delenv("STELLWERK_CONFIG", raising=False)
    lines: list[str] = []
    with caplog.at_level(logging.WARNING):
        run_demo(None, echo=lambda text="", **_: lines.append(text))
    out = "\n".join(lines)
    assert "10:00  heartbeat → ollama/deepseek-r1" in out
    assert "(after anthropic/claude-haiku-4-5: billing)" in out
    assert "11:45  code      → ollama/codellama" in out  # codex overloaded
    assert "12:00  heartbeat → anthropic/claude-haiku-4-5" in out  # back after the 2 h cooldown
    assert "mode emergency; context fitted to the local window" in out
    assert "budget warn" in out and "budget downgrade" in out
    assert "premium tier downgraded" in out
    assert "Per class: which model served" in out and "saved" in out
    logs = caplog.text
    assert "emergency mode on" in logs and "emergency mode off" in logs
    # the heartbeats left the long history out: a few hundred tokens each, not ~135k
    heartbeats = [line for line in lines if "  heartbeat →" in line]
    assert len(heartbeats) == 24
    assert all(int(line.split()[4]) < 1000 for line in heartbeats)
