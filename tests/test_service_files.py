"""The service files in contrib/ (issue 16): the systemd user unit passes `systemd-analyze verify`
where that is installed, and the launchd agent is a well-formed property list."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "contrib" / "systemd" / "stellwerk.service"
PLIST = ROOT / "contrib" / "launchd" / "dev.stellwerk.gateway.plist"


def test_the_unit_runs_serve_restarts_on_failure_and_reads_an_environment_file():
    text = UNIT.read_text()
    assert "ExecStart=%h/.local/bin/stellwerk serve\n" in text
    assert "Restart=on-failure\n" in text
    assert "EnvironmentFile=-%h/.config/stellwerk/env\n" in text
    assert "ExecReload=/bin/kill -HUP $MAINPID\n" in text
    assert "WantedBy=default.target\n" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    # verify checks that ExecStart's program exists: %h is this HOME, with a stand-in there
    stand_in = tmp_path / ".local" / "bin" / "stellwerk"
    stand_in.parent.mkdir(parents=True)
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text())
    env = {**os.environ, "HOME": str(tmp_path), "SYSTEMD_LOG_LEVEL": "notice"}
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "Failed to initialize manager" in done.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {done.stderr.strip()}")
    problems = [line for line in done.stderr.splitlines() if UNIT.name in line]
    assert done.returncode == 0, done.stderr
    assert not problems, "\n".join(problems)  # unknown keys are only warnings: none either


def test_the_launchd_agent_runs_serve_and_restarts_on_failure():
    agent = plistlib.loads(PLIST.read_bytes())
    assert agent["Label"] == "dev.stellwerk.gateway"
    assert agent["ProgramArguments"][:2] == ["/bin/sh", "-c"]
    script = agent["ProgramArguments"][2]
    assert 'exec "$HOME/.local/bin/stellwerk" serve' in script
    assert '. "$HOME/.config/stellwerk/env"' in script
    assert agent["RunAtLoad"] is True
    assert agent["KeepAlive"] == {"SuccessfulExit": False}


@pytest.mark.skipif(shutil.which("sh") is None, reason="no /bin/sh")
def test_the_launchd_shell_line_is_valid_sh():
    script = plistlib.loads(PLIST.read_bytes())["ProgramArguments"][2]
    assert subprocess.run(["sh", "-n", "-c", script], check=False).returncode == 0
