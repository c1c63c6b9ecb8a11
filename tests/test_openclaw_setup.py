"""`stellwerk openclaw`: the block a user pastes into OpenClaw, and `--apply` on their file."""

from __future__ import annotations

from pathlib import Path

import json5
import pytest
from click.testing import CliRunner

from stellwerk.cli import main
from stellwerk.testing.world import KEYS

USER_FILE = """\
// my OpenClaw setup: keep this comment
{
  gateway: { mode: "local", port: 18789 },  // local only
  models: {
    mode: "merge",
    providers: {
      // the vLLM box under the desk
      vllm: { baseUrl: "http://gpu:8000/v1", apiKey: "${VLLM_KEY}", api: "openai-completions" },
    },
  },
  agents: {
    defaults: {
      workspace: "~/work",
      model: { primary: "vllm/llama" },
    },
  },
  channels: { telegram: { enabled: true } },
}
"""


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STELLWERK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in [*KEYS, "STELLWERK_CONFIG", "STELLWERK_API_KEYS", "STELLWERK_CLIENT_KEY"]:
        monkeypatch.delenv(name, raising=False)
    for name in ("OPENCLAW_CONFIG_PATH", "OPENCLAW_STATE_DIR", "OPENCLAW_HOME"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(main, list(args), catch_exceptions=False)

    return run


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "stellwerk.yaml"
    path.write_text(text, "utf-8")
    return str(path)


def _backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".bak-*"))


# -- printing --------------------------------------------------------------------------------


def test_prints_parseable_json5_for_the_configured_gateway(cli, tmp_path):
    config = _config(tmp_path, "gateway: {host: 0.0.0.0, port: 5123}\n")
    result = cli("openclaw", "--config", config)
    assert result.exit_code == 0, result.output
    block = json5.loads(result.output)
    providers = block["models"]["providers"]
    assert providers["stellwerk"]["baseUrl"] == "http://127.0.0.1:5123/v1"  # 0.0.0.0: this host
    assert providers["stellwerk"]["api"] == "openai-completions"
    assert providers["stellwerk-anthropic"]["baseUrl"] == "http://127.0.0.1:5123"  # no /v1
    assert providers["stellwerk-anthropic"]["api"] == "anthropic-messages"
    ids = [m["id"] for m in providers["stellwerk"]["models"]]
    assert ids[:2] == ["auto", "auto:heartbeat"]
    defaults = block["agents"]["defaults"]
    assert defaults["model"] == {
        "primary": "stellwerk/auto",
        "fallbacks": ["stellwerk-anthropic/auto"],
    }
    assert defaults["heartbeat"] == {"model": "stellwerk/auto:heartbeat"}
    assert providers["stellwerk"]["apiKey"] == "any-non-empty-text"  # the gateway is open
    assert "any non-empty text works" in result.output


def test_with_client_keys_the_key_is_a_placeholder_never_the_secret(cli, tmp_path):
    config = _config(tmp_path, "gateway: {api_keys: [sk-client-secret-123456]}\n")
    result = cli("openclaw", "--config", config)
    assert result.exit_code == 0
    assert "sk-client-secret-123456" not in result.output
    block = json5.loads(result.output)
    assert block["models"]["providers"]["stellwerk"]["apiKey"] == (
        "REPLACE-WITH-A-STELLWERK-CLIENT-KEY"
    )
    assert "gateway.api_keys" in result.output


def test_a_client_key_from_the_environment_becomes_openclaws_env_reference(
    cli, tmp_path, monkeypatch
):
    monkeypatch.setenv("STELLWERK_CLIENT_KEY", "sk-client-secret-123456")
    config = _config(tmp_path, 'gateway: {api_keys: ["${STELLWERK_CLIENT_KEY}"]}\n')
    result = cli("openclaw", "--config", config)
    assert "sk-client-secret-123456" not in result.output
    providers = json5.loads(result.output)["models"]["providers"]
    assert providers["stellwerk"]["apiKey"] == "${STELLWERK_CLIENT_KEY}"
    assert providers["stellwerk-anthropic"]["apiKey"] == "${STELLWERK_CLIENT_KEY}"


def test_keys_from_stellwerk_api_keys_also_ask_for_a_client_key(cli, monkeypatch):
    monkeypatch.setenv("STELLWERK_API_KEYS", "k1,k2")
    result = cli("openclaw")
    assert "STELLWERK_API_KEYS" in result.output
    key = json5.loads(result.output)["models"]["providers"]["stellwerk"]["apiKey"]
    assert key == "REPLACE-WITH-A-STELLWERK-CLIENT-KEY"


# -- --apply ---------------------------------------------------------------------------------


def test_apply_merges_keeps_the_rest_backs_up_and_is_idempotent(cli, tmp_path):
    target = tmp_path / "oc" / "openclaw.json"
    target.parent.mkdir()
    target.write_text(USER_FILE, "utf-8")

    result = cli("openclaw", "--apply", "--file", str(target))
    assert result.exit_code == 0, result.output
    assert "+      stellwerk: {" in result.output  # the diff
    assert '-      model: { primary: "vllm/llama" },' in result.output
    assert 'primary was "vllm/llama"' in result.output

    text = target.read_text("utf-8")
    for kept in (
        "// my OpenClaw setup: keep this comment",
        "// local only",
        "// the vLLM box under the desk",
    ):
        assert kept in text
    data = json5.loads(text)
    assert data["models"]["providers"]["vllm"]["apiKey"] == "${VLLM_KEY}"
    assert data["models"]["mode"] == "merge"
    assert data["gateway"] == {"mode": "local", "port": 18789}
    assert data["channels"] == {"telegram": {"enabled": True}}
    assert data["agents"]["defaults"]["workspace"] == "~/work"
    assert data["agents"]["defaults"]["model"]["primary"] == "stellwerk/auto"
    assert data["agents"]["defaults"]["model"]["fallbacks"] == ["stellwerk-anthropic/auto"]
    assert data["agents"]["defaults"]["heartbeat"]["model"] == "stellwerk/auto:heartbeat"
    assert data["models"]["providers"]["stellwerk"]["baseUrl"] == "http://127.0.0.1:4711/v1"

    [backup] = _backups(target)
    assert backup.read_text("utf-8") == USER_FILE
    assert f"backup: {backup}" in result.output

    again = cli("openclaw", "--apply", "--file", str(target))
    assert again.exit_code == 0
    assert "nothing to change" in again.output
    assert "+++" not in again.output
    assert target.read_text("utf-8") == text
    assert len(_backups(target)) == 1  # no second backup for no change


def test_apply_keeps_a_users_own_fallbacks_and_says_so(cli, tmp_path):
    target = tmp_path / "openclaw.json"
    target.write_text('{agents: {defaults: {model: {primary: "a/b", fallbacks: ["c/d"]}}}}')
    result = cli("openclaw", "--apply", "--file", str(target))
    assert result.exit_code == 0
    assert "kept your agents.defaults.model.fallbacks" in result.output
    model = json5.loads(target.read_text())["agents"]["defaults"]["model"]
    assert model == {"primary": "stellwerk/auto", "fallbacks": ["c/d"]}


def test_apply_keeps_the_api_key_a_user_already_put_in(cli, tmp_path):
    target = tmp_path / "openclaw.json"
    target.write_text('{models: {providers: {stellwerk: {apiKey: "my-real-client-key"}}}}')
    result = cli("openclaw", "--apply", "--file", str(target))
    assert "kept the apiKey" in result.output
    providers = json5.loads(target.read_text())["models"]["providers"]
    assert providers["stellwerk"]["apiKey"] == "my-real-client-key"
    assert providers["stellwerk"]["api"] == "openai-completions"


def test_apply_keeps_a_secret_ref_api_key(cli, tmp_path):
    target = tmp_path / "openclaw.json"
    ref = '{source: "env", provider: "default", id: "STELLWERK_CLIENT_KEY"}'
    target.write_text("{models: {providers: {stellwerk: {apiKey: " + ref + "}}}}")
    result = cli("openclaw", "--apply", "--file", str(target))
    assert result.exit_code == 0, result.output
    key = json5.loads(target.read_text())["models"]["providers"]["stellwerk"]["apiKey"]
    assert key == {"source": "env", "provider": "default", "id": "STELLWERK_CLIENT_KEY"}


def test_apply_creates_a_missing_file_and_directory(cli, tmp_path, monkeypatch):
    target = tmp_path / "fresh" / "dir" / "openclaw.json"
    monkeypatch.setenv("OPENCLAW_CONFIG_PATH", str(target))  # OpenClaw's own variable
    result = cli("openclaw", "--apply")
    assert result.exit_code == 0, result.output
    assert "--- /dev/null" in result.output
    data = json5.loads(target.read_text("utf-8"))
    assert data["agents"]["defaults"]["model"]["primary"] == "stellwerk/auto"
    assert _backups(target) == []


def test_apply_defaults_to_the_home_openclaw_json(cli, tmp_path):
    result = cli("openclaw", "--apply")
    assert result.exit_code == 0
    assert (tmp_path / "home" / ".openclaw" / "openclaw.json").is_file()


def test_dry_run_shows_the_diff_and_writes_nothing(cli, tmp_path):
    target = tmp_path / "openclaw.json"
    target.write_text(USER_FILE, "utf-8")
    result = cli("openclaw", "--dry-run", "--file", str(target))
    assert result.exit_code == 0
    assert "+      stellwerk: {" in result.output and "not written" in result.output
    assert target.read_text("utf-8") == USER_FILE
    assert _backups(target) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{ models: { providers: { "a": 1,, } }', "is not valid JSON5"),
        ("[1, 2, 3]", "not an object"),
        ("{ models: 3 }", "models is 3, not an object"),
    ],
)
def test_a_file_it_cannot_merge_is_a_clear_error_and_stays_untouched(
    cli, tmp_path, content, message
):
    target = tmp_path / "openclaw.json"
    target.write_text(content, "utf-8")
    result = cli("openclaw", "--apply", "--file", str(target))
    assert result.exit_code == 1
    assert message in result.output and str(target) in result.output
    assert "Traceback" not in result.output
    assert target.read_text("utf-8") == content
    assert _backups(target) == []


def test_file_without_apply_is_a_usage_error(cli, tmp_path):
    result = cli("openclaw", "--file", str(tmp_path / "x.json"))
    assert result.exit_code == 2
    assert "--apply" in result.output


def test_a_plain_json_file_gets_quoted_keys_like_its_own(cli, tmp_path):
    target = tmp_path / "openclaw.json"
    target.write_text('{\n  "agents": {\n    "defaults": { "workspace": "/w" }\n  }\n}\n')
    result = cli("openclaw", "--apply", "--file", str(target))
    assert result.exit_code == 0
    text = target.read_text("utf-8")
    assert '"stellwerk-anthropic": {' in text and '"baseUrl": "http://127.0.0.1:4711"' in text
    assert json5.loads(text)["agents"]["defaults"]["workspace"] == "/w"
