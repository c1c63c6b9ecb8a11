"""Every provider of the default strategy as a fake on 127.0.0.1, with the environment to reach it.

The demo, the end-to-end tests and the benchmarks all start the same world:

    async with FakeWorld() as world:
        policy = world.policy()                 # the default strategy, pointed at the fakes
        world.fakes["anthropic"].push(Reply.error(...))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import policy_from_dict
from ..policy import Policy
from ._server import FakeUpstream, Reply
from .anthropic import FakeAnthropic
from .ollama import FakeOllama
from .openai import FakeOpenAI, FakeOpenRouter

KEYS = {
    "ANTHROPIC_API_KEY": "sk-ant-api03-fake-0123456789abcdefghij",
    "OPENAI_API_KEY": "sk-proj-fake-0123456789abcdefghijklmn",
    "OPENAI_CODEX_API_KEY": "sk-proj-codex-fake-0123456789abcdefg",
    "OPENROUTER_API_KEY": "sk-or-v1-fake-0123456789abcdefghijklm",
}


class FakeWorld:
    """Fake Anthropic, OpenAI, OpenAI-Codex, OpenRouter and Ollama servers, started together."""

    def __init__(self, default: Reply | None = None) -> None:
        self.fakes: dict[str, FakeUpstream] = {
            "anthropic": FakeAnthropic(default=default),
            "openai": FakeOpenAI(default=default),
            "openai-codex": FakeOpenAI(default=default),
            "openrouter": FakeOpenRouter(default=default),
            "ollama": FakeOllama(default=default),
        }

    async def start(self) -> None:
        for fake in self.fakes.values():
            await fake.start()

    async def stop(self) -> None:
        for fake in self.fakes.values():
            await fake.stop()

    async def __aenter__(self) -> FakeWorld:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def env(self) -> dict[str, str]:
        """The environment variables that point the default config at the fakes."""
        f = self.fakes
        return {
            **KEYS,
            "ANTHROPIC_BASE_URL": f["anthropic"].url,
            "OPENAI_BASE_URL": f"{f['openai'].url}/v1",
            "OPENAI_CODEX_BASE_URL": f"{f['openai-codex'].url}/v1",
            "OPENROUTER_BASE_URL": f"{f['openrouter'].url}/api/v1",
            "OLLAMA_HOST": f["ollama"].url,
        }

    def policy(self, raw: Mapping[str, Any] | None = None) -> Policy:
        """The default strategy (plus `raw` overrides) with every provider on its fake."""
        return policy_from_dict(raw or {}, env=self.env(), source="<fake world>")

    def requests(self) -> int:
        return sum(len(f.received) for f in self.fakes.values())
