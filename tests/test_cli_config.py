"""Finding the config (issue 16): the search order, which file is in force, `config init`,
unknown keys with a suggestion, and `--config` before or after the subcommand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from stellwerk.cli import main
from stellwerk.config import BUILT_IN, find_config, load_policy, policy_from_dict
from stellwerk.errors import ConfigError
from stellwerk.testing.world import KEYS


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A clean working directory and an empty XDG config home; returns the latter."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("STELLWERK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name in [*KEYS, "STELLWERK_CONFIG", "NO_COLOR"]:
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "xdg"


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _user_file(xdg: Path, text: str) -> Path:
    path = xdg / "stellwerk" / "stellwerk.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- the search order ------------------------------------------------------------------------


def test_without_any_file_the_built_in_defaults_are_in_force(home):
    assert find_config() is None
    assert load_policy().source == BUILT_IN
    assert "config    built-in defaults" in cli("status").output


def test_the_user_config_directory_is_found_from_any_directory(home):
    user = _user_file(home, "budgets:\n  limits: [{window: daily, usd: 5}]\n")
    assert find_config() == user
    result = cli("budget")
    assert result.exit_code == 0
    assert "no budgets configured" not in result.output
    assert f"config    {user}" in cli("status").output


def test_home_falls_back_to_dot_config_without_xdg_config_home(home, monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    user = _user_file(tmp_path / "h" / ".config", "routing: {mode: shadow}\n")
    assert find_config() == user


def test_the_working_directory_wins_over_the_user_directory(home):
    _user_file(home, "routing: {mode: shadow}\n")
    Path("stellwerk.yaml").write_text('routing: {mode: "off"}\n')
    assert find_config() == Path("stellwerk.yaml")
    assert str(load_policy().routing.mode) == "off"


def test_the_variable_wins_over_the_working_directory(home, monkeypatch):
    Path("stellwerk.yaml").write_text('routing: {mode: "off"}\n')
    Path("env.yaml").write_text("routing: {mode: shadow}\n")
    monkeypatch.setenv("STELLWERK_CONFIG", "env.yaml")
    assert find_config() == Path("env.yaml")


def test_the_option_wins_over_the_variable(home, monkeypatch):
    Path("env.yaml").write_text("routing: {mode: shadow}\n")
    Path("opt.yaml").write_text('routing: {mode: "off"}\n')
    monkeypatch.setenv("STELLWERK_CONFIG", "env.yaml")
    assert json.loads(cli("--config", "opt.yaml", "status", "--json").output)["mode"] == "off"
    assert json.loads(cli("status", "--json", "--config", "opt.yaml").output)["mode"] == "off"
    assert json.loads(cli("status", "--json").output)["mode"] == "shadow"


def test_a_named_file_that_is_missing_is_an_error(home, monkeypatch):
    monkeypatch.setenv("STELLWERK_CONFIG", "nowhere.yaml")
    result = cli("status")
    assert result.exit_code == 2
    assert "cannot read config file nowhere.yaml" in result.output


# -- --config before and after the subcommand ------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("--config", "x.yaml", "status"),
        ("status", "--config", "x.yaml"),
        ("--config", "x.yaml", "config", "show"),
        ("config", "show", "--config", "x.yaml"),
    ],
)
def test_config_works_before_and_after_the_subcommand(home, args):
    Path("x.yaml").write_text("routing: {mode: shadow}\n")
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert "x.yaml" in result.output
    assert "shadow" in result.output


def test_the_option_after_the_subcommand_wins(home):
    Path("a.yaml").write_text("routing: {mode: shadow}\n")
    Path("b.yaml").write_text('routing: {mode: "off"}\n')
    out = cli("--config", "a.yaml", "status", "--json", "--config", "b.yaml").output
    assert json.loads(out)["mode"] == "off"


# -- which file is in force ------------------------------------------------------------------


def test_config_show_names_the_file_in_force(home):
    assert cli("config", "show").output.startswith("# config in force: built-in defaults\n")
    Path("stellwerk.yaml").write_text("routing: {mode: shadow}\n")
    shown = cli("config", "show").output
    assert shown.startswith("# config in force: stellwerk.yaml\n")
    assert yaml.safe_load(shown)["routing"]["mode"] == "shadow"


# -- config init -----------------------------------------------------------------------------


def test_config_init_writes_a_short_commented_file_that_validates(home):
    result = cli("config", "init")
    assert result.exit_code == 0 and result.output == "wrote stellwerk.yaml\n"
    text = Path("stellwerk.yaml").read_text()
    assert len(text.splitlines()) < 60
    assert text.count("#") > 20  # explained
    for words in ("ANTHROPIC_API_KEY", "OPENAI_CODEX_API_KEY", "budgets:", "gateway:", "--full"):
        assert words in text
    assert "framings" not in text  # the details stay in the defaults
    assert cli("config", "validate").exit_code == 0
    # what the short file sets is exactly the default
    assert policy_from_dict(yaml.safe_load(text), env={}) == policy_from_dict({}, env={})


def test_config_init_full_writes_every_default(home):
    assert cli("config", "init", "--full", "full.yaml").exit_code == 0
    text = Path("full.yaml").read_text()
    assert "framings:" in text and "stack:" in text and "tasks:" in text
    assert cli("config", "validate", "full.yaml").exit_code == 0


def test_config_init_does_not_overwrite_without_force(home):
    Path("stellwerk.yaml").write_text("# mine\n")
    result = cli("config", "init")
    assert result.exit_code == 1 and "exists (use --force to overwrite)" in result.output
    assert Path("stellwerk.yaml").read_text() == "# mine\n"
    assert cli("config", "init", "--force").exit_code == 0
    assert Path("stellwerk.yaml").read_text() != "# mine\n"


def test_config_init_user_writes_where_stellwerk_finds_it(home):
    result = cli("config", "init", "--user")
    assert result.exit_code == 0
    written = home / "stellwerk" / "stellwerk.yaml"
    assert written.is_file() and str(written) in result.output
    assert find_config() == written
    assert cli("config", "init", "--user", "x.yaml").exit_code == 2


# -- unknown keys ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"routing": {"mdoe": "auto"}}, "routing: unknown field 'mdoe' (did you mean 'mode'?)"),
        ({"budget": {}}, "unknown field 'budget' (did you mean 'budgets'?)"),
        (
            {"providers": {"openai": {"api_key": "sk-x"}}},
            "providers.openai: unknown field 'api_key' (did you mean 'keys'? Stellwerk takes a"
            ' list of keys: providers.openai.keys: ["${OPENAI_API_KEY}"])',
        ),
        (
            {"providers": {"anthropic": {"api_base": "http://h"}}},
            "providers.anthropic: unknown field 'api_base' (did you mean 'base_url'?)",
        ),
        (
            {"budgets": {"limits": [{"window": "daily", "usd": 1, "scop": "all"}]}},
            "budgets.limits[0]: unknown field 'scop' (did you mean 'scope'?)",
        ),
        (
            {"cooldowns": {"rate_limit": {"bsae": 1}}},
            "cooldowns.rate_limit: unknown field 'bsae' (did you mean 'base'?)",
        ),
        ({"model_list": []}, "unknown field 'model_list' (did you mean 'models'?)"),
        ({"routing": {"zzz": 1}}, "routing: unknown field 'zzz' (one of mode, classes,"),
    ],
)
def test_unknown_keys_get_a_suggestion(raw, message):
    with pytest.raises(ConfigError) as caught:
        policy_from_dict(raw, env={})
    assert str(caught.value).startswith(message)


def test_unknown_key_on_the_command_line_exits_2_with_the_path(home):
    Path("bad.yaml").write_text("routing:\n  mdoe: auto\n")
    result = cli("--config", "bad.yaml", "status")
    assert result.exit_code == 2
    assert result.output.strip() == (
        "stellwerk: config error: routing: unknown field 'mdoe' (did you mean 'mode'?)"
    )


# -- -V --------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(flag):
    from importlib.metadata import version

    result = cli(flag)
    assert result.exit_code == 0
    assert result.output == f"stellwerk {version('stellwerk')}\n"


# -- shell completion ------------------------------------------------------------------------


def test_the_documented_completion_line_prints_a_bash_script():
    script = Path(sys.executable).parent / "stellwerk"
    if not script.exists():
        pytest.skip("the stellwerk script is not installed next to this python")
    env = {**os.environ, "_STELLWERK_COMPLETE": "bash_source"}
    done = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "_stellwerk_completion()" in done.stdout
    assert "complete -o nosort -F _stellwerk_completion stellwerk" in done.stdout
    documented = Path(__file__).resolve().parents[1] / "docs" / "install.md"
    assert 'eval "$(_STELLWERK_COMPLETE=bash_source stellwerk)"' in documented.read_text()
