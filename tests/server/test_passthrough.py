"""Every model, not only the catalog's: pass-through ids through the official SDKs, the 404 hint
for a name no provider has, `stellwerk models`, unknown prices in `stats`, Ollama's window."""

from __future__ import annotations

import json
import socket
from typing import Any

import anthropic
import openai
import pytest
from click.testing import CliRunner

from stellwerk import prices
from stellwerk.cli import main
from stellwerk.ledger import row_from
from stellwerk.stats import aggregate, render_stats, stats_json
from stellwerk.testing.ollama import InstalledModel

KEY = "sk-none"
USER = [{"role": "user", "content": "hi"}]

# (what the client sends, the fake that must get it, the model name it must get)
PASSTHROUGH = [
    ("gpt-4o", "openai", "gpt-4o"),
    ("openai/gpt-4.1", "openai", "gpt-4.1"),
    ("claude-3-5-sonnet-20241022", "anthropic", "claude-3-5-sonnet-20241022"),
    ("ollama/llama3.2", "ollama", "llama3.2"),
    (
        "openrouter/meta-llama/llama-3.1-70b-instruct",
        "openrouter",
        "meta-llama/llama-3.1-70b-instruct",
    ),
]


def _install_llama(world: Any) -> None:
    model = InstalledModel(
        "llama3.2:latest", "llama", "3.2B", "Q4_K_M", 131072, ("completion", "tools")
    )
    world.fakes["ollama"].models[model.name] = model


def _chat_models(world: Any, fake: str) -> list[str]:
    return [
        r.json["model"]
        for r in world.fakes[fake].received
        if isinstance(r.json, dict) and "messages" in r.json
    ]


@pytest.mark.parametrize(("name", "fake", "upstream"), PASSTHROUGH)
async def test_openai_sdk_reaches_the_provider_of_a_model_outside_the_catalog(
    make_gateway, world, name, fake, upstream
):
    _install_llama(world)
    gw = await make_gateway()
    async with openai.AsyncOpenAI(base_url=str(gw.client.make_url("/v1")), api_key=KEY) as client:
        answer = await client.chat.completions.create(model=name, messages=USER)
    assert answer.choices[0].message.content
    assert _chat_models(world, fake) == [upstream]
    decision = (await gw.wait_decisions())[0]
    assert decision.answered_by == gw.router.policy.resolve_model(name).id


@pytest.mark.parametrize(("name", "fake", "upstream"), PASSTHROUGH)
async def test_anthropic_sdk_reaches_the_provider_of_a_model_outside_the_catalog(
    make_gateway, world, name, fake, upstream
):
    _install_llama(world)
    gw = await make_gateway()
    url = str(gw.client.make_url(""))
    async with anthropic.AsyncAnthropic(base_url=url, api_key=KEY) as client:
        answer = await client.messages.create(model=name, max_tokens=50, messages=USER)
    assert answer.content
    assert _chat_models(world, fake) == [upstream]


async def test_ollama_model_outside_the_config_runs_with_the_window_api_show_reports(
    make_gateway, world
):
    _install_llama(world)
    gw = await make_gateway()
    response = await gw.chat({"model": "ollama/llama3.2"})
    assert response.status == 200
    chats = [r for r in world.fakes["ollama"].received if r.path == "/api/chat"]
    shows = [r for r in world.fakes["ollama"].received if r.path == "/api/show"]
    assert len(shows) == 1
    assert chats[0].json["options"]["num_ctx"] == 16384  # 131072 trained, capped
    spec = gw.router.policy.models["ollama/llama3.2"]
    assert (spec.context_window, spec.source) == (16384, "ollama")
    assert "tools" in spec.capabilities
    await gw.chat({"model": "ollama/llama3.2"})  # built once: no second /api/show
    assert len([r for r in world.fakes["ollama"].received if r.path == "/api/show"]) == 1


async def test_unknown_bare_name_is_404_pointing_at_stellwerk_models(make_gateway, world):
    gw = await make_gateway()
    url = str(gw.client.make_url("/v1"))
    async with openai.AsyncOpenAI(base_url=url, api_key=KEY) as client:
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(model="nonesuch-9", messages=USER)
    assert "stellwerk models" in str(caught.value)
    assert "config show" not in str(caught.value)
    assert world.requests() == 0


async def test_a_typo_of_a_catalog_model_is_404_with_did_you_mean(make_gateway, world):
    gw = await make_gateway()
    response = await gw.chat({"model": "claude-sonet-4-5"})
    assert response.status == 404
    message = (await response.json())["error"]["message"]
    assert "did you mean" in message and "stellwerk models" in message
    assert world.requests() == 0


def test_price_database_prices_models_outside_the_catalog_offline(monkeypatch):
    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the price database must not use the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    price = prices.lookup("openai", "gpt-4.1-mini-2025-04-14")
    assert price is not None and price.input > 0 and price.cache_read is not None
    claude = prices.lookup("anthropic", "claude-3-5-sonnet-20241022")
    assert claude is not None
    assert (claude.input, claude.cache_write, claude.cache_write_1h) == (
        3_000_000,
        3_750_000,
        6_000_000,
    )
    assert prices.lookup("openai", "no-such-model-anywhere") is None
    assert prices.lookup("ollama", "llama3.2") is None


def test_models_json_lists_ids_aliases_prices_keys_and_cooldowns(tmp_path, monkeypatch):
    monkeypatch.setenv("STELLWERK_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-0123456789abcdef")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = tmp_path / "stellwerk.yaml"
    config.write_text("state: {backend: sqlite, path: " + str(tmp_path / "s.db") + "}\n")
    result = CliRunner().invoke(main, ["models", "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in json.loads(result.output)}
    haiku = rows["anthropic/claude-haiku-4-5"]
    assert haiku["aliases"] == ["haiku"]
    assert haiku["tier"] == "budget" and haiku["context_window"] == 200000
    assert haiku["price"] == {
        "input": 1.0, "output": 5.0, "cache_read": 0.1, "cache_write": 1.25, "cache_write_1h": 2.0
    }  # fmt: skip
    assert (haiku["key"], haiku["usable"], haiku["cooldown"]) == ("present", True, None)
    assert rows["openai/gpt-4o-mini"]["key"] == "missing"
    assert rows["openai/gpt-4o-mini"]["usable"] is False
    assert rows["ollama/qwen3-4b"]["key"] == "local"
    text = CliRunner().invoke(main, ["models", "--config", str(config)]).output
    assert "anthropic/claude-haiku-4-5" in text and "passes through" in text


async def test_v1_models_agrees_with_stellwerk_models_and_adds_auto(gw):
    from stellwerk.listing import model_rows
    from stellwerk.state.base import Snapshot

    listed = {e["id"] for e in (await (await gw.client.get("/v1/models")).json())["data"]}
    rows = model_rows(gw.router.policy, Snapshot(now=0.0))
    ids = {r["id"] for r in rows}
    aliases = {a for r in rows for a in r["aliases"]}
    extra = {"auto", "auto:heartbeat", "auto:simple", "auto:complex", "auto:code", "auto:reasoning"}
    assert listed == ids | aliases | extra


async def test_unknown_price_is_counted_as_unknown_in_stats_not_as_zero(make_gateway, world):
    gw = await make_gateway()
    response = await gw.chat({"model": "openai/gpt-77-preview"})  # no price anywhere
    assert response.status == 200
    decision = (await gw.wait_decisions())[0]
    assert decision.answered_by == "openai/gpt-77-preview"
    assert decision.cost_micros == 0
    policy = gw.router.policy
    stats = aggregate([row_from(decision)], policy, 0, 2e9)
    assert stats.unpriced == 1
    assert stats_json(stats)["unpriced"] == 1
    assert "1 requests with unknown price" in render_stats(stats)


def test_config_may_name_a_model_outside_the_catalog_without_a_models_entry():
    from stellwerk.config import policy_from_dict
    from stellwerk.errors import ConfigError

    policy = policy_from_dict(
        {"tasks": {"simple": {"primary": "openai/gpt-4.1", "fallbacks": ["ollama/llama3.2"]}}},
        env={},
    )
    assert policy.tasks["simple"].primary == "openai/gpt-4.1"
    assert policy.models["openai/gpt-4.1"].priced
    partial = policy_from_dict({"models": {"ollama/mistral": {"aliases": ["mistral"]}}}, env={})
    assert partial.resolve_model("mistral").tier == "local"
    with pytest.raises(ConfigError, match="did you mean"):
        policy_from_dict({"stack": ["openai/gpt-4o-mni"]}, env={})
