"""The OpenAI family of adapters: OpenAI, OpenAI Codex, OpenRouter and OpenAI-compatible servers.

They share two wire protocols (Chat Completions and the Responses API, in `openai_chat` and
`openai_responses`) and differ only in small, declared ways: which protocol a model speaks, the
name of the output-limit field, whether a key is required, and OpenRouter's attribution headers
and cost reporting. So there is one adapter class, and the four providers are subclasses that set
those differences as class attributes; no `if provider == ...` anywhere else.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import aiohttp

from ..errors import ProviderError
from ..failures import FailureClass
from ..policy import Credential, ModelSpec, ProviderSpec
from ..types import ChatRequest, ChatResponse, Chunk, StreamEnd, is_content
from ..wire.hop import hop_headers
from . import openai_chat, openai_responses
from ._http import iter_lines, post_json, post_stream

_REASONING_NAME = re.compile(r"^(o\d|gpt-5)")


class _StreamParser(Protocol):
    done: bool

    def feed(self, data: str) -> list[Chunk]: ...

    def finish(self) -> StreamEnd: ...


class OpenAIProvider:
    """OpenAI: Chat Completions, or the Responses API for models with `api: responses`."""

    path_chat = "/chat/completions"
    path_responses = "/responses"
    max_tokens_field = "max_completion_tokens"
    key_required = True
    always_responses = False
    cache_key_field: str | None = "prompt_cache_key"  # the client's, passed through

    def __init__(self, spec: ProviderSpec, session: aiohttp.ClientSession) -> None:
        self.spec = spec
        self.session = session

    async def complete(
        self, request: ChatRequest, model: ModelSpec, credential: Credential | None
    ) -> ChatResponse:
        """One non-streaming call."""
        url, payload = self._request(request, model, stream=False)
        headers = self.headers(credential, model)
        data = await post_json(self.session, self.spec, url, payload, headers, model.id)
        return self._parse(data, model, request)

    async def stream(
        self, request: ChatRequest, model: ModelSpec, credential: Credential | None
    ) -> AsyncIterator[Chunk]:
        """One streaming call: content chunks as they arrive, then one StreamEnd."""
        url, payload = self._request(request, model, stream=True)
        headers = self.headers(credential, model)
        parser = self._parser(request, model)
        started = False
        try:
            async with post_stream(
                self.session, self.spec, url, payload, headers, model.id
            ) as response:
                async for data in sse_data(iter_lines(response, model.id)):
                    for chunk in parser.feed(data):
                        started = started or is_content(chunk)
                        yield chunk
                    if parser.done:
                        break
            yield parser.finish()
        except ProviderError as exc:
            exc.after_first_token = exc.after_first_token or started
            raise

    # -- what the subclasses vary ------------------------------------------------------------

    def headers(self, credential: Credential | None, model: ModelSpec) -> dict[str, str]:
        """Bearer auth; the key is revealed here and nowhere else."""
        if credential is None:
            if self.key_required:
                raise ProviderError(
                    FailureClass.AUTH,
                    f"no API key configured for {self.spec.name}",
                    target=model.id,
                )
            return hop_headers()
        return {"authorization": f"Bearer {credential.secret.reveal()}", **hop_headers()}

    def uses_responses(self, model: ModelSpec) -> bool:
        return self.always_responses or model.api == "responses"

    def is_reasoning(self, model: ModelSpec) -> bool:
        """OpenAI reasoning models: `max_completion_tokens`, no temperature, no top_p."""
        name = model.upstream.rpartition("/")[2]
        return "reasoning" in model.capabilities or bool(_REASONING_NAME.match(name))

    def chat_extra(self) -> dict[str, Any]:
        """Extra top-level fields of a Chat Completions body."""
        return {}

    # -- plumbing ----------------------------------------------------------------------------

    def _request(
        self, request: ChatRequest, model: ModelSpec, *, stream: bool
    ) -> tuple[str, dict[str, Any]]:
        reasoning = self.is_reasoning(model)
        if self.uses_responses(model):
            payload = openai_responses.to_payload(
                request, model, stream=stream, reasoning=reasoning
            )
            url = self.spec.base_url + self.path_responses
            return url, self._cache_key(payload, request, model)
        payload = openai_chat.to_payload(
            request,
            model,
            stream=stream,
            max_tokens_field="max_completion_tokens" if reasoning else self.max_tokens_field,
            reasoning=reasoning,
            extra=self.chat_extra(),
        )
        return self.spec.base_url + self.path_chat, self._cache_key(payload, request, model)

    def _cache_key(
        self, payload: dict[str, Any], request: ChatRequest, model: ModelSpec
    ) -> dict[str, Any]:
        """OpenAI caches prompt prefixes by itself; the client's `prompt_cache_key` (which
        requests share a prefix) helps it route them to the same cache, and a model that offers
        extended retention (`cache_retention: 24h` in the catalog: the same price, up to a day
        instead of minutes) is asked for it."""
        if request.cache_key and self.cache_key_field:
            payload[self.cache_key_field] = request.cache_key
        if model.cache_retention and self.cache_key_field:
            payload.setdefault("prompt_cache_retention", model.cache_retention)
        return payload

    def _parse(self, data: Any, model: ModelSpec, request: ChatRequest) -> ChatResponse:
        parse: Callable[[Any, ModelSpec, ChatRequest], ChatResponse] = (
            openai_responses.parse_response
            if self.uses_responses(model)
            else openai_chat.parse_response
        )
        return parse(data, model, request)

    def _parser(self, request: ChatRequest, model: ModelSpec) -> _StreamParser:
        if self.uses_responses(model):
            return openai_responses.ResponsesStream(request, model)
        return openai_chat.ChatStream(request, model)


class OpenAICodexProvider(OpenAIProvider):
    """OpenAI Codex models: the Responses API, always."""

    always_responses = True


class OpenRouterProvider(OpenAIProvider):
    """OpenRouter: Chat Completions with attribution headers; records the cost it reports."""

    max_tokens_field = "max_tokens"
    cache_key_field = None
    attribution = {"HTTP-Referer": "https://github.com/stellwerk/stellwerk", "X-Title": "Stellwerk"}

    def headers(self, credential: Credential | None, model: ModelSpec) -> dict[str, str]:
        configured = {k.lower() for k in self.spec.headers}
        extra = {k: v for k, v in self.attribution.items() if k.lower() not in configured}
        return {**extra, **super().headers(credential, model)}

    def uses_responses(self, model: ModelSpec) -> bool:
        return False

    def is_reasoning(self, model: ModelSpec) -> bool:
        return False  # OpenRouter maps sampling parameters per model itself

    def chat_extra(self) -> dict[str, Any]:
        return {"usage": {"include": True}}


class OpenAICompatibleProvider(OpenAIProvider):
    """vLLM, llama.cpp, LM Studio and the like: plain Chat Completions, key optional."""

    max_tokens_field = "max_tokens"
    key_required = False
    cache_key_field = None

    def is_reasoning(self, model: ModelSpec) -> bool:
        return False


async def sse_data(lines: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """The `data:` payloads of a server-sent event stream; comments and `event:` lines skipped."""
    buffer: list[str] = []
    async for raw in lines:
        line = raw.decode("utf-8", "replace")
        if not line:
            if buffer:
                yield "\n".join(buffer)
                buffer = []
        elif line.startswith("data:"):
            buffer.append(line[5:].removeprefix(" "))
    if buffer:
        yield "\n".join(buffer)
