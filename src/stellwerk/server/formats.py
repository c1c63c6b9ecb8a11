"""The two client formats the gateway speaks, behind one small interface.

The handlers are the same for OpenAI Chat Completions and Anthropic Messages: read, parse, route,
render. What differs (parsing, the answer's shape, the error's shape, the SSE framing) is one
`Format` object per wire format, built on `wire.openai` and `wire.anthropic`, so no handler asks
"which format is this?".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Protocol

from ..tokens import estimate_prompt
from ..types import ChatRequest, ChatResponse, Chunk
from ..wire import anthropic as anthropic_wire
from ..wire import openai as openai_wire
from .errors import JSON, Problem, anthropic_error, openai_error


class StreamWriter(Protocol):
    """The SSE bytes of one streamed answer."""

    def start(self) -> bytes: ...

    def chunk(self, chunk: Chunk) -> bytes: ...

    def error(self, problem: Problem) -> bytes: ...


class Format(Protocol):
    """One client wire format."""

    name: str

    def parse(self, data: Any) -> ChatRequest: ...

    def render(self, response: ChatResponse, request_id: str) -> JSON: ...

    def error(self, problem: Problem) -> JSON: ...

    def writer(
        self, model: str, request_id: str, request: ChatRequest, data: Any
    ) -> StreamWriter: ...


# -- OpenAI Chat Completions -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _OpenAIWriter:
    renderer: openai_wire.StreamRenderer

    def start(self) -> bytes:
        return self.renderer.start()

    def chunk(self, chunk: Chunk) -> bytes:
        return self.renderer.chunk(chunk)

    def error(self, problem: Problem) -> bytes:
        """A `data: {"error": ...}` frame; the OpenAI SDKs raise an APIError on it."""
        return b"data: " + json.dumps(openai_error(problem)).encode() + b"\n\n"


class OpenAIFormat:
    name = "openai"

    def parse(self, data: Any) -> ChatRequest:
        return openai_wire.parse_request(data)

    def render(self, response: ChatResponse, request_id: str) -> JSON:
        return openai_wire.render_response(response, response.target, request_id)

    def error(self, problem: Problem) -> JSON:
        return openai_error(problem)

    def writer(self, model: str, request_id: str, request: ChatRequest, data: Any) -> StreamWriter:
        usage = isinstance(data, dict) and openai_wire.include_usage(data)
        return _OpenAIWriter(openai_wire.StreamRenderer(model, request_id, include_usage=usage))


# -- Anthropic Messages ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _AnthropicWriter:
    renderer: anthropic_wire.StreamRenderer

    def start(self) -> bytes:
        return self.renderer.start()

    def chunk(self, chunk: Chunk) -> bytes:
        return self.renderer.feed(chunk)

    def error(self, problem: Problem) -> bytes:
        """An `event: error`; the Anthropic SDKs raise an APIStatusError on it."""
        return anthropic_wire.sse_event("error", anthropic_error(problem))


class AnthropicFormat:
    name = "anthropic"

    def parse(self, data: Any) -> ChatRequest:
        return anthropic_wire.parse_request(data)

    def render(self, response: ChatResponse, request_id: str) -> JSON:
        response = replace(response, id=message_id(request_id))
        return anthropic_wire.render_response(response, response.target)

    def error(self, problem: Problem) -> JSON:
        return anthropic_error(problem)

    def writer(self, model: str, request_id: str, request: ChatRequest, data: Any) -> StreamWriter:
        renderer = anthropic_wire.StreamRenderer(
            model, message_id=message_id(request_id), input_tokens=estimate_prompt(request)
        )
        return _AnthropicWriter(renderer)


def message_id(request_id: str) -> str:
    """An Anthropic-style message id that still carries the gateway's request id."""
    return "msg_" + request_id.removeprefix("req_")


OPENAI = OpenAIFormat()
ANTHROPIC = AnthropicFormat()
