"""The seam between the router and the protocols: one Protocol every adapter implements.

An adapter knows one wire protocol and nothing about routing: it turns a `ChatRequest` into the
provider's JSON, the answer back into a `ChatResponse` or a stream of `Chunk`s, and every failure
into a `ProviderError` with its failure class (through `_http.classify_failure`). It never
retries, never cools anything down and never picks another model: that is the router's job.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import aiohttp

from ..policy import Credential, ModelSpec, ProviderSpec
from ..types import ChatRequest, ChatResponse, Chunk


class Provider(Protocol):
    """A provider adapter; built as `Adapter(spec, session)`."""

    spec: ProviderSpec

    async def complete(
        self, request: ChatRequest, model: ModelSpec, credential: Credential | None
    ) -> ChatResponse:
        """One non-streaming call; raises ProviderError on any failure."""
        ...

    def stream(
        self, request: ChatRequest, model: ModelSpec, credential: Credential | None
    ) -> AsyncIterator[Chunk]:
        """One streaming call: content chunks, then exactly one StreamEnd.

        Raises ProviderError (stream_broken) when the upstream ends without its final event.
        """
        ...


class ProviderFactory(Protocol):
    def __call__(self, spec: ProviderSpec, session: aiohttp.ClientSession) -> Provider: ...
