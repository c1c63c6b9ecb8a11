"""Every `stellwerk` command the README shows runs in a clone, offline: the README's examples are
run as a user would paste them (pipes and redirects included), with no keys and a throwaway home,
and must succeed. Commands that need a network or a running server (`chat`, `serve`, `check`,
`probe`) are left out; the suite tests them against the fake providers elsewhere."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEEDS_NETWORK = {"chat", "serve", "check", "probe"}


def readme_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", ROOT.joinpath("README.md").read_text(), re.S)
    commands = []
    for block in blocks:
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            words = re.findall(r"(?:^|\|\s*|&&\s*)stellwerk\s+([\w-]+)", line)
            if words and not NEEDS_NETWORK & set(words):
                commands.append(line.replace(" --follow", ""))  # --follow waits for ever
    return commands


COMMANDS = readme_commands()


def test_the_readme_shows_the_offline_commands():
    shown = {re.search(r"stellwerk\s+([\w-]+)", c).group(1) for c in COMMANDS}  # type: ignore[union-attr]
    assert {"route", "status", "budget", "stats", "log", "config", "openclaw"} <= shown


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    home = tmp_path_factory.mktemp("readme")
    bin_dir = home / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "stellwerk"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m stellwerk "$@"\n')
    shim.chmod(0o755)
    request = {"messages": [{"role": "user", "content": "What is the capital of Peru?"}]}
    (home / "requests.jsonl").write_text(json.dumps(request) + "\n")
    (home / "prompts.jsonl").write_text(
        json.dumps({"prompt": "What is the capital of Peru?", "label": "simple"}) + "\n"
    )
    keep = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "SYSTEMROOT", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env |= {
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_STATE_HOME": str(home / ".state"),
        "STELLWERK_STATE_DIR": str(home / "state"),
        "NO_COLOR": "1",
    }
    return home, env


@pytest.mark.parametrize("command", COMMANDS)
def test_a_readme_command_runs(command, place, tmp_path):
    home, env = place
    for name in ("requests.jsonl", "prompts.jsonl"):  # each command in a directory of its own
        (tmp_path / name).write_bytes((home / name).read_bytes())
    done = subprocess.run(
        ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
