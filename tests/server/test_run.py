"""`serve` helpers and the `gateway:` config section: keys, reload, pid files, validation."""

from __future__ import annotations

import os
import signal

import pytest
import yaml
from click.testing import CliRunner

from stellwerk.cli import main
from stellwerk.config import parse_size, policy_from_dict, raw_config
from stellwerk.errors import ConfigError, StellwerkError
from stellwerk.server.gateway import GATEWAY
from stellwerk.server.run import client_keys, default_pid_file, reload_config, signal_reload


def test_client_keys_from_the_environment():
    assert client_keys({}) is None  # follow the config
    assert client_keys({"STELLWERK_API_KEYS": " a-key , b-key,, "}) == ("a-key", "b-key")
    assert client_keys({"STELLWERK_API_KEYS": ""}) == ()


def test_pid_file_lives_next_to_the_state(tmp_path):
    assert default_pid_file({"STELLWERK_STATE_DIR": str(tmp_path)}) == tmp_path / "gateway.pid"


def test_signal_reload_without_a_gateway_says_so(tmp_path):
    with pytest.raises(StellwerkError, match="no running gateway found"):
        signal_reload(tmp_path / "missing.pid")


def test_signal_reload_sends_sighup(tmp_path, monkeypatch):
    sent = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    pid_file = tmp_path / "gateway.pid"
    pid_file.write_text("4242\n")
    assert signal_reload(pid_file) == 4242
    assert sent == [(4242, signal.SIGHUP)]


def test_config_reload_command_rejects_an_invalid_file_before_signalling(tmp_path):
    bad = tmp_path / "stellwerk.yaml"
    bad.write_text(yaml.safe_dump({"tasks": {"simple": {"primary": "opnai/gpt-4o-mini"}}}))
    result = CliRunner().invoke(
        main, ["config", "reload", "--config", str(bad), "--pid-file", str(tmp_path / "x.pid")]
    )
    assert result.exit_code == 2
    assert "tasks.simple.primary: unknown model 'opnai/gpt-4o-mini'" in result.output


def test_config_reload_command_without_a_gateway_exits_1(tmp_path):
    result = CliRunner().invoke(main, ["config", "reload", "--pid-file", str(tmp_path / "x.pid")])
    assert result.exit_code == 1
    assert "no running gateway found" in result.output


async def test_reload_swaps_the_policy_or_keeps_it(gw, tmp_path, monkeypatch, config, caplog):
    for name, value in gw.world.env().items():
        monkeypatch.setenv(name, value)
    gateway = gw.client.server.app[GATEWAY]
    path = tmp_path / "stellwerk.yaml"
    changed = {**config, "tasks": {"simple": {"primary": "anthropic/claude-haiku-4-5"}}}
    path.write_text(yaml.safe_dump(changed))
    assert reload_config(gateway, path)
    assert gw.router.policy.tasks["simple"].primary == "anthropic/claude-haiku-4-5"
    response = await gw.chat({})
    assert response.headers["x-stellwerk-model"] == "anthropic/claude-haiku-4-5"

    path.write_text("tasks: [not, a, mapping")
    assert not reload_config(gateway, path)
    assert "config reload rejected" in caplog.text
    assert gw.router.policy.tasks["simple"].primary == "anthropic/claude-haiku-4-5"


def test_gateway_section_defaults():
    gateway = policy_from_dict({}, env={}).gateway
    assert (gateway.host, gateway.port, gateway.api_keys) == ("127.0.0.1", 4711, ())
    assert gateway.max_body == 32 * 1024 * 1024
    assert gateway.inline_notice is False


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"port": 70000}, "gateway.port: expected a port between 0 and 65535, got 70000"),
        ({"port": "eighty"}, "gateway.port: expected `int`, got `str`"),
        ({"host": " "}, "gateway.host: a host to bind is required"),
        ({"max_body": "lots"}, "gateway.max_body: expected a size like 32MiB"),
        ({"max_body": 0}, "gateway.max_body: must be at least 1 byte"),
        ({"listen": 1}, "gateway: unknown field 'listen'"),
    ],
)
def test_gateway_section_errors_name_the_key(section, message):
    with pytest.raises(ConfigError) as caught:
        policy_from_dict({"gateway": section}, env={})
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (1024, 1024),
        ("512KiB", 512 * 1024),
        ("32MiB", 32 * 1024**2),
        ("10MB", 10**7),
        ("1.5k", 1500),
    ],
)
def test_sizes(value, size):
    assert parse_size(value, "x") == size


def test_client_keys_in_the_config_are_secrets_and_masked(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_CLIENT_KEY", "sk-client-0123456789abcdef")
    path = tmp_path / "stellwerk.yaml"
    path.write_text(yaml.safe_dump({"gateway": {"api_keys": ["${MY_CLIENT_KEY}", "${UNSET:-}"]}}))
    policy = policy_from_dict(yaml.safe_load(path.read_text()))
    assert [k.reveal() for k in policy.gateway.api_keys] == ["sk-client-0123456789abcdef"]
    shown = raw_config(path)
    assert shown["gateway"]["api_keys"] == ["sk-…cdef"]
    assert "0123456789" not in repr(policy.gateway)
