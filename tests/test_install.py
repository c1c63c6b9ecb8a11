"""Installs reproduce: the README's commands and CI install from `requirements.txt`.

The README's test command broke on a fresh machine once because a dependency's newest release
(allowed by a lower bound) changed a message; these tests keep the lock in force and complete.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.txt"


def _readme_commands() -> list[str]:
    quick = ROOT.joinpath("README.md").read_text().split("## Quick start", 1)[1].split("\n## ")[0]
    return re.findall(r"```sh\n(.+?)\n```", quick, re.S)


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _locked() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9._-]+)==([^\s;]+)", LOCK.read_text(), re.M)
    return {name.lower().replace("_", "-"): version for name, version in pins}


def test_the_readme_has_two_commands_and_both_install_from_the_lock():
    demo, suite = _readme_commands()
    assert "stellwerk demo" in demo and "pytest" in suite
    for command in (demo, suite):
        assert "-c requirements.txt" in command


def test_ci_runs_the_readme_test_command_word_for_word():
    _, suite = _readme_commands()
    assert suite in ROOT.joinpath(".ci/run").read_text().splitlines()


def test_the_lock_pins_every_dependency_of_every_extra():
    project = tomllib.loads(ROOT.joinpath("pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        wanted |= {_name(r) for r in extra}
    assert wanted - set(_locked()) == set()


def test_every_pin_meets_the_lower_bound_in_pyproject():
    project = tomllib.loads(ROOT.joinpath("pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        requirements += extra
    locked = _locked()
    for requirement in requirements:
        bound = re.search(r">=([\d.]+)", requirement)
        if bound:
            pinned = locked[_name(requirement)]
            assert _version(pinned) >= _version(bound.group(1)), requirement


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])
