"""`stellwerk serve` as a real process, driven by the official openai and anthropic SDKs.

The gateway runs as `python -m stellwerk serve --port 0 --ready-file F` against the fake
upstreams (their URLs and keys come in through the environment, as a user's real ones would),
so every test here sees exactly what a user's client sees: HTTP, SSE, headers and exit codes.
One gateway serves the module; the shutdown and reload tests start their own. Cooldowns are
configured to zero so one test's failures do not steer the next one.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
import pytest_asyncio
import yaml

import stellwerk
from stellwerk.testing._server import Reply, ToolCall
from stellwerk.testing.world import KEYS, FakeWorld

pytestmark = pytest.mark.asyncio(loop_scope="module")

SOURCE = str(Path(stellwerk.__file__).resolve().parents[1])  # the process runs this same code
CLIENT_KEY = "sk-stellwerk-e2e-client-0123456789"
CONFIG = {
    "stack": ["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5", "ollama/qwen3-4b"],
    "tasks": {
        "simple": {"primary": "openai/gpt-4o-mini", "fallbacks": ["anthropic/claude-haiku-4-5"]}
    },
    "cooldowns": {"rate_limit": {"base": "0s", "max": "0s", "retry_after_cap": "0s"}, "breaker": 0},
    "providers": {"openai": {"billing_cooldown": 0}, "anthropic": {"billing_cooldown": 0}},
    "gateway": {"max_body": "1MiB"},
}
USER = [{"role": "user", "content": "hi"}]
WEATHER_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
WEATHER_ANTHROPIC = {
    "name": "get_weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@dataclass
class Process:
    """A running gateway process."""

    proc: asyncio.subprocess.Process
    url: str
    config: Path
    pid_file: Path
    log: Path
    clients: dict[tuple[str, str], Any] = field(default_factory=dict)

    def openai(self, key: str = CLIENT_KEY) -> openai.AsyncOpenAI:
        client = self.clients.get(("openai", key))
        if client is None:
            client = openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0)
            self.clients["openai", key] = client
        return client  # type: ignore[no-any-return]

    def anthropic(self, key: str = CLIENT_KEY) -> anthropic.AsyncAnthropic:
        client = self.clients.get(("anthropic", key))
        if client is None:
            client = anthropic.AsyncAnthropic(base_url=self.url, api_key=key, max_retries=0)
            self.clients["anthropic", key] = client
        return client  # type: ignore[no-any-return]

    async def stop(self) -> int:
        for client in self.clients.values():
            await client.close()
        self.clients.clear()
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 15)


async def start_gateway(world: FakeWorld, directory: Path, config: dict) -> Process:
    directory.mkdir(parents=True, exist_ok=True)
    config_file, ready = directory / "stellwerk.yaml", directory / "ready"
    config_file.write_text(yaml.safe_dump(config))
    env = {**os.environ, **world.env(), "STELLWERK_API_KEYS": CLIENT_KEY}
    env["STELLWERK_STATE_DIR"] = str(directory / "state")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SOURCE, env.get("PYTHONPATH")]))
    env.pop("STELLWERK_CONFIG", None)
    log = directory / "gateway.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stellwerk", "serve", "--port", "0",
            "--config", str(config_file), "--ready-file", str(ready),
            "--pid-file", str(directory / "gateway.pid"),
            env=env, stdout=out, stderr=out, cwd=directory,
        )  # fmt: skip
    for _ in range(1500):
        if ready.exists():
            url = ready.read_text().strip()
            return Process(proc, url, config_file, directory / "gateway.pid", log)
        if proc.returncode is not None:
            break
        await asyncio.sleep(0.01)
    if proc.returncode is None:
        proc.kill()
        await proc.wait()
    raise AssertionError(f"the gateway did not start:\n{log.read_text()}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world() -> AsyncIterator[FakeWorld]:
    async with FakeWorld() as w:
        yield w


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(world, tmp_path_factory) -> AsyncIterator[Process]:
    process = await start_gateway(world, tmp_path_factory.mktemp("gateway"), CONFIG)
    yield process
    assert await process.stop() == 0


@pytest.fixture(autouse=True)
def _clean_scripts(world):
    for fake in world.fakes.values():
        fake.script.clear()
        fake.received.clear()
    yield


# -- OpenAI SDK ------------------------------------------------------------------------------


async def test_openai_sdk_plain_answer(gateway, world):
    world.fakes["openai"].push(Reply.ok("Hello from OpenAI."))
    raw = await gateway.openai().chat.completions.with_raw_response.create(
        model="auto:simple", messages=USER
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from OpenAI."
    assert completion.model == "openai/gpt-4o-mini"
    assert raw.headers["x-stellwerk-model"] == "openai/gpt-4o-mini"
    assert raw.headers["x-stellwerk-task"] == "simple"
    assert raw.headers["x-stellwerk-attempts"] == "1"
    assert raw.headers["x-stellwerk-request-id"] == completion.id


async def test_openai_sdk_stream_with_usage(gateway, world):
    world.fakes["openai"].push(Reply.ok("one two three"))
    stream = await gateway.openai().chat.completions.create(
        model="auto:simple",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert {c.model for c in chunks} == {"openai/gpt-4o-mini"}


async def test_openai_sdk_tools(gateway, world):
    world.fakes["openai"].push(Reply.tools(ToolCall("get_weather", {"city": "Oslo"}, "call_1")))
    completion = await gateway.openai().chat.completions.create(
        model="auto:simple", messages=USER, tools=[WEATHER_OPENAI]
    )
    call = completion.choices[0].message.tool_calls[0]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo"}


async def test_openai_sdk_fallback_mid_chain(gateway, world):
    world.fakes["openai"].push(world.fakes["openai"].error("insufficient_quota"))
    raw = await gateway.openai().chat.completions.with_raw_response.create(
        model="auto:simple", messages=USER
    )
    assert raw.parse().model == "anthropic/claude-haiku-4-5"
    assert raw.headers["x-stellwerk-model"] == "anthropic/claude-haiku-4-5"
    assert raw.headers["x-stellwerk-attempts"] == "2"
    assert raw.headers["x-stellwerk-fallback"] == "openai/gpt-4o-mini: billing"


async def test_openai_sdk_stream_fails_over_before_the_first_token(gateway, world):
    world.fakes["openai"].push(Reply.ok("lost", break_after=0))
    client = gateway.openai()
    async with client.chat.completions.with_streaming_response.create(
        model="auto:simple", messages=USER, stream=True
    ) as response:
        assert response.headers["x-stellwerk-model"] == "anthropic/claude-haiku-4-5"
        assert response.headers["x-stellwerk-fallback"] == "openai/gpt-4o-mini: stream_broken"
        chunks = [c async for c in await response.parse()]
    assert {c.model for c in chunks} == {"anthropic/claude-haiku-4-5"}


async def test_openai_sdk_raises_on_a_stream_broken_after_the_first_token(gateway, world):
    world.fakes["openai"].push(Reply.ok("alpha beta gamma", break_after=1))
    stream = await gateway.openai().chat.completions.create(
        model="auto:simple", messages=USER, stream=True
    )
    seen = []
    with pytest.raises(openai.APIError, match="stream_broken"):
        async for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "")
    assert "".join(seen) == "alpha "


async def test_openai_sdk_lists_models(gateway):
    models = [m.id async for m in gateway.openai().models.list()]
    assert models[:2] == ["auto", "auto:heartbeat"]
    assert "anthropic/claude-haiku-4-5" in models


# -- Anthropic SDK ---------------------------------------------------------------------------


async def test_anthropic_sdk_plain_answer(gateway, world):
    world.fakes["openai"].push(Reply.ok("Hello from the gateway."))
    raw = await gateway.anthropic().messages.with_raw_response.create(
        model="auto:simple", max_tokens=100, messages=USER
    )
    message = await raw.parse()
    assert message.content[0].text == "Hello from the gateway."
    assert message.model == "openai/gpt-4o-mini"
    assert raw.headers["x-stellwerk-model"] == "openai/gpt-4o-mini"


async def test_anthropic_sdk_stream(gateway, world):
    world.fakes["openai"].push(Reply.ok("one two three"))
    async with gateway.anthropic().messages.stream(
        model="auto:simple", max_tokens=100, messages=USER
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "one two three"
    assert final.stop_reason == "end_turn"
    assert final.model == "openai/gpt-4o-mini"


async def test_anthropic_sdk_tools(gateway, world):
    world.fakes["openai"].push(Reply.tools(ToolCall("get_weather", {"city": "Oslo"}, "call_1")))
    message = await gateway.anthropic().messages.create(
        model="auto:simple", max_tokens=100, messages=USER, tools=[WEATHER_ANTHROPIC]
    )
    block = message.content[-1]
    assert message.stop_reason == "tool_use"
    assert (block.type, block.name, block.input) == ("tool_use", "get_weather", {"city": "Oslo"})


async def test_anthropic_sdk_streamed_tools(gateway, world):
    world.fakes["anthropic"].push(Reply.tools(ToolCall("get_weather", {"city": "Bergen"}, "t1")))
    async with gateway.anthropic().messages.stream(
        model="anthropic/claude-haiku-4-5",
        max_tokens=100,
        messages=USER,
        tools=[WEATHER_ANTHROPIC],
    ) as stream:
        final = await stream.get_final_message()
    assert final.content[-1].input == {"city": "Bergen"}


async def test_anthropic_sdk_fallback_mid_chain(gateway, world):
    world.fakes["openai"].push(world.fakes["openai"].error("server_error"))
    world.fakes["anthropic"].push(529)
    raw = await gateway.anthropic().messages.with_raw_response.create(
        model="auto:simple", max_tokens=100, messages=USER
    )
    assert (await raw.parse()).model == "ollama/qwen3-4b"
    assert raw.headers["x-stellwerk-attempts"] == "3"
    assert raw.headers["x-stellwerk-fallback"] == (
        "openai/gpt-4o-mini: server, anthropic/claude-haiku-4-5: overloaded"
    )


async def test_anthropic_sdk_raises_on_a_stream_broken_after_the_first_token(gateway, world):
    world.fakes["openai"].push(Reply.ok("alpha beta gamma", break_after=1))
    with pytest.raises(anthropic.APIStatusError, match="stream_broken"):
        async with gateway.anthropic().messages.stream(
            model="auto:simple", max_tokens=100, messages=USER
        ) as stream:
            async for _ in stream:
                pass


async def test_anthropic_sdk_lists_models(gateway):
    page = await gateway.anthropic().models.list()
    assert [m.id for m in page.data][:1] == ["auto"]


# -- every error status, as each SDK raises it ----------------------------------------------


async def test_400_for_empty_messages(gateway):
    with pytest.raises(openai.BadRequestError) as caught:
        await gateway.openai().chat.completions.create(model="auto", messages=[])
    assert caught.value.body["param"] == "messages"
    with pytest.raises(anthropic.BadRequestError):
        await gateway.anthropic().messages.create(model="auto", max_tokens=10, messages=[])


async def test_400_for_the_upstreams_own_invalid_request(gateway, world):
    world.fakes["openai"].push(world.fakes["openai"].error("invalid_request"))
    with pytest.raises(openai.BadRequestError) as caught:
        await gateway.openai().chat.completions.create(model="auto:simple", messages=USER)
    assert caught.value.code == "invalid_type"  # the upstream's own error, as is
    assert caught.value.param == "messages[0].content"
    assert world.fakes["anthropic"].received == []  # the caller's own error: no fallback


async def test_401_for_a_wrong_client_key(gateway, world):
    with pytest.raises(openai.AuthenticationError):
        await gateway.openai("wrong").chat.completions.create(model="auto", messages=USER)
    with pytest.raises(anthropic.AuthenticationError):
        await gateway.anthropic("wrong").messages.create(model="auto", max_tokens=10, messages=USER)


async def test_404_for_an_unknown_model(gateway):
    with pytest.raises(openai.NotFoundError):
        await gateway.openai().chat.completions.create(model="nonesuch-9", messages=USER)
    with pytest.raises(anthropic.NotFoundError):
        await gateway.anthropic().messages.create(model="nonesuch-9", max_tokens=10, messages=USER)


async def test_413_for_an_oversized_body(gateway):
    huge = [{"role": "user", "content": "x" * 1_200_000}]
    with pytest.raises(openai.APIStatusError) as caught:
        await gateway.openai().chat.completions.create(model="auto", messages=huge)
    assert caught.value.status_code == 413
    with pytest.raises(anthropic.APIStatusError) as caught_a:
        await gateway.anthropic().messages.create(model="auto", max_tokens=10, messages=huge)
    assert caught_a.value.status_code == 413


async def test_502_when_every_target_failed(gateway, world):
    for name in ("openai", "anthropic", "ollama"):
        world.fakes[name].push(500)
    with pytest.raises(openai.InternalServerError) as caught:
        await gateway.openai().chat.completions.create(model="auto:simple", messages=USER)
    assert caught.value.status_code == 502
    attempts = caught.value.body["attempts"]
    assert [(a["target"], a["failure"]) for a in attempts] == [
        ("openai/gpt-4o-mini", "server"),
        ("anthropic/claude-haiku-4-5", "server"),
        ("ollama/qwen3-4b", "server"),
    ]
    assert not any(key in str(caught.value.body) for key in KEYS.values())


async def test_400_context_length_when_the_prompt_fits_no_target(gateway):
    """Issue 15: a prompt too long for every window is the caller's 400 (what the providers
    answer), not a 503 the SDKs retry."""
    too_long = [{"role": "user", "content": "word " * 130_000}]  # > every window in the chain
    with pytest.raises(openai.BadRequestError) as caught:
        await gateway.openai().chat.completions.create(model="auto:simple", messages=too_long)
    assert caught.value.code == "context_length_exceeded"
    with pytest.raises(anthropic.BadRequestError) as caught_a:
        await gateway.anthropic().messages.create(
            model="auto:simple", max_tokens=10, messages=too_long
        )
    assert "prompt is too long" in str(caught_a.value)


# -- raw HTTP: malformed input and a client that hangs up ------------------------------------


async def test_malformed_json_and_invalid_utf8_are_400(gateway):
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for body in (b'{"model": "auto", "messages": [', b'{"model": "\xff"}'):
            async with session.post(f"{gateway.url}/v1/chat/completions", data=body) as r:
                assert r.status == 400
                assert (await r.json())["error"]["type"] == "invalid_request_error"


async def test_a_client_hanging_up_mid_stream_is_recorded_once_as_cancelled(gateway, world):
    before = await _cancelled(gateway)
    world.fakes["openai"].push(Reply.ok(" ".join(["word"] * 1000), chunk_delay=0.05))
    headers = {"x-api-key": CLIENT_KEY}
    body = {"model": "auto:simple", "messages": USER, "stream": True}
    async with aiohttp.ClientSession(headers=headers) as session:
        response = await session.post(f"{gateway.url}/v1/chat/completions", json=body)
        assert response.status == 200
        assert await response.content.readany()
        response.close()
    for _ in range(500):
        if await _cancelled(gateway) > before:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert await _cancelled(gateway) == before + 1


async def _cancelled(gateway: Process) -> float:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{gateway.url}/metrics") as r:
            text = await r.text()
    found = re.findall(r'stellwerk_requests_total\{outcome="cancelled"[^}]*\} ([0-9.]+)', text)
    return sum(float(v) for v in found)


# -- the process: health, shutdown, reload ---------------------------------------------------


async def test_health_and_readiness_need_no_key(gateway):
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{gateway.url}/healthz") as r:
            assert r.status == 200
        async with session.get(f"{gateway.url}/readyz") as r:
            assert (await r.json())["status"] == "ready"
        async with session.get(f"{gateway.url}/api/status") as r:
            assert r.status == 401


async def test_the_collector_leaves_served_requests_to_reference_counting(gateway, world):
    """`stellwerk serve` sets the garbage collector up for serving (`run.tune_for_serving`): a
    hundred answered requests cost no young collection where Python's default ran one every
    few requests; /metrics shows the collections and the process's memory."""
    client = gateway.openai()

    async def young() -> tuple[float, str]:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{gateway.url}/metrics") as r:
                text = await r.text()
        found = re.search(r'python_gc_collections_total\{generation="0"\} ([0-9.]+)', text)
        assert found is not None, text[:2000]
        return float(found.group(1)), text

    before, _ = await young()
    for _ in range(100):
        world.fakes["openai"].push(Reply.ok("ok"))
        answer = await client.chat.completions.create(model="auto:simple", messages=USER)
        assert answer.choices[0].message.content == "ok"
    after, text = await young()
    assert after - before <= 1
    assert re.search(r"^process_resident_memory_bytes [0-9.e+]+$", text, re.M)


async def test_sigterm_lets_the_request_in_flight_finish(world, tmp_path):
    process = await start_gateway(world, tmp_path, CONFIG)
    world.fakes["openai"].push(Reply.ok("finished anyway", delay=0.5))
    request = asyncio.create_task(
        process.openai().chat.completions.create(model="auto:simple", messages=USER)
    )
    for _ in range(500):  # the request has reached the upstream
        if any(r.path.endswith("/chat/completions") for r in world.fakes["openai"].received):
            break
        await asyncio.sleep(0.01)
    world.fakes["openai"].received.clear()
    process.proc.send_signal(signal.SIGTERM)
    completion = await request
    assert completion.choices[0].message.content == "finished anyway"
    assert await asyncio.wait_for(process.proc.wait(), 15) == 0  # no second signal needed
    await process.stop()
    assert not process.pid_file.exists()
    assert not (tmp_path / "ready").exists()
    assert "shutting down" in process.log.read_text()


async def test_config_reload_swaps_the_chain_and_rejects_an_invalid_file(world, tmp_path):
    process = await start_gateway(world, tmp_path, CONFIG)
    try:
        client = process.openai()
        first = await client.chat.completions.create(model="auto:simple", messages=USER)
        assert first.model == "openai/gpt-4o-mini"

        changed = json.loads(json.dumps(CONFIG))
        changed["tasks"]["simple"]["primary"] = "anthropic/claude-haiku-4-5"
        process.config.write_text(yaml.safe_dump(changed))
        code, out = await _cli("config", "reload", "--config", str(process.config),
                               "--pid-file", str(process.pid_file))  # fmt: skip
        assert code == 0, out
        assert await _answered_by(client, "anthropic/claude-haiku-4-5")

        changed["tasks"]["simple"]["primary"] = "opnai/gpt-4o-mini"
        process.config.write_text(yaml.safe_dump(changed))
        code, out = await _cli("config", "reload", "--config", str(process.config),
                               "--pid-file", str(process.pid_file))  # fmt: skip
        assert code == 2
        assert "tasks.simple.primary: unknown model 'opnai/gpt-4o-mini'" in out
        process.proc.send_signal(signal.SIGHUP)  # the gateway validates on its own too
        for _ in range(500):
            if "config reload rejected" in process.log.read_text():
                break
            await asyncio.sleep(0.01)
        assert "tasks.simple.primary" in process.log.read_text()
        again = await client.chat.completions.create(model="auto:simple", messages=USER)
        assert again.model == "anthropic/claude-haiku-4-5"
    finally:
        assert await process.stop() == 0


async def _answered_by(client: openai.AsyncOpenAI, target: str) -> bool:
    for _ in range(200):
        done = await client.chat.completions.create(model="auto:simple", messages=USER)
        if done.model == target:
            return True
        await asyncio.sleep(0.02)
    return False


async def _cli(*args: str) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": SOURCE}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stellwerk", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_anthropic_sdk_counts_tokens(gateway):
    counted = await gateway.anthropic().messages.count_tokens(
        model="auto", messages=[{"role": "user", "content": "x" * 300}]
    )
    assert counted.input_tokens >= 100
