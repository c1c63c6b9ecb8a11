"""HTTP for every adapter, and the one place where raw upstream answers become failure classes.

The client is aiohttp: measured in front of a fast fake upstream it adds a fraction of the latency
of httpx (see ARCHITECTURE.md), and the gateway's throughput is decided by the upstream client.
`classify_failure` reads the raw status, body and headers *before* anything turns them into text,
because the class hides in the body: OpenAI's `insufficient_quota` arrives as a 429 but is billing,
Anthropic's "credit balance is too low" arrives as a 400 but is billing.

Every upstream error text is scrubbed of keys where it is read here (`error_from_response`),
before it is classified, cut to length or stored: the keys this client sends are remembered as
they are sent, so an upstream that echoes one (`invalid x-api-key: sk-ant-…`) gets none of it
into a cooldown detail, the ledger, a log or an answer, not even the part before a cut.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import msgspec

from ..errors import ProviderError
from ..failures import FailureClass
from ..policy import ProviderSpec
from ..redaction import remember, scrub_bytes, secret_headers

_BILLING = (
    "insufficient_quota",
    "credit balance is too low",
    "billing",
    "payment required",
    "insufficient credits",
    "insufficient funds",
    "exceeded your current quota",
)
_DAILY = ("daily limit", "rate limit", "rate-limit", "per day", "free-models-per-day")
_CONTEXT = (
    "context_length_exceeded",
    "context length",
    "context window",
    "prompt is too long",
    "too many tokens",
    "maximum context",
    "input is too long",
    "reduce the length",
    "exceeds the model's",
)
_MODEL = ("model_not_found", "does not exist", "unknown model", "no such model", "not found")
_OVERLOADED = ("overloaded", "server busy")
MAX_LINE = 1 << 20  # bytes of one line of a streamed answer (`iter_lines`)


def _text(body: bytes) -> str:
    return body[:8192].decode("utf-8", "replace").lower()


def classify_failure(status: int, body: bytes, headers: Mapping[str, str]) -> FailureClass:
    """The failure class of one upstream error answer."""
    text = _text(body)
    if status == 402:
        return FailureClass.RATE_LIMIT if _has(text, _DAILY) else FailureClass.BILLING
    if status == 429:
        return FailureClass.BILLING if _has(text, _BILLING) else FailureClass.RATE_LIMIT
    if status in (401, 403):
        if "key limit exceeded" in text:  # OpenRouter's per-key spend cap, not a bad key
            return FailureClass.RATE_LIMIT if "daily" in text else FailureClass.BILLING
        if "moderation" in text or "flagged" in text:
            return FailureClass.INVALID_REQUEST
        return FailureClass.AUTH
    if status == 404:
        return FailureClass.MODEL_NOT_FOUND
    if status in (408,):
        return FailureClass.TIMEOUT
    if status == 413:
        return FailureClass.CONTEXT_OVERFLOW
    if 400 <= status < 500:
        return _classify_client_error(text)
    if status == 529 or (status == 503 and _has(text, _OVERLOADED)):
        return FailureClass.OVERLOADED
    return FailureClass.SERVER


def _classify_client_error(text: str) -> FailureClass:
    if "credit balance is too low" in text or "insufficient_quota" in text:
        return FailureClass.BILLING
    if _has(text, _CONTEXT):
        return FailureClass.CONTEXT_OVERFLOW
    if "model_not_found" in text or ("model" in text and _has(text, _MODEL)):
        return FailureClass.MODEL_NOT_FOUND
    return FailureClass.INVALID_REQUEST


def classify_error_event(kind: str, message: str) -> FailureClass:
    """The failure class of an error that arrives inside a 200 stream (`event: error`)."""
    kind = kind.lower()
    table = {
        "overloaded_error": FailureClass.OVERLOADED,
        "rate_limit_error": FailureClass.RATE_LIMIT,
        "api_error": FailureClass.SERVER,
        "server_error": FailureClass.SERVER,
        "authentication_error": FailureClass.AUTH,
        "permission_error": FailureClass.AUTH,
        "billing_error": FailureClass.BILLING,
        "insufficient_quota": FailureClass.BILLING,
        "not_found_error": FailureClass.MODEL_NOT_FOUND,
        "timeout_error": FailureClass.TIMEOUT,
    }
    if kind in table:
        return table[kind]
    text = message.lower()
    if kind == "invalid_request_error" or "invalid" in kind:
        return _classify_client_error(text)
    return FailureClass.OVERLOADED if _has(text, _OVERLOADED) else FailureClass.STREAM_BROKEN


def _has(text: str, needles: tuple[str, ...]) -> bool:
    return any(n in text for n in needles)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if ms := lowered.get("retry-after-ms"):
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def upstream_message(body: bytes) -> str:
    """A short human message from an upstream error body (OpenAI, Anthropic, Ollama shapes)."""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace").strip() or "empty body"
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        return str(error.get("message") or error.get("type") or error)[:300]
    return str(error)[:300]


def error_from_response(
    status: int, body: bytes, headers: Mapping[str, str], target: str
) -> ProviderError:
    """A ProviderError carrying the failure class, the upstream status and `Retry-After`.

    The body is scrubbed of keys first, before anything reads, cuts or keeps it."""
    body = scrub_bytes(body)
    failure = classify_failure(status, body, headers)
    return ProviderError(
        failure,
        f"HTTP {status}: {upstream_message(body)}",
        status=status,
        retry_after=parse_retry_after(headers),
        body=body,
        target=target,
    )


# -- the client ------------------------------------------------------------------------------


def new_session() -> aiohttp.ClientSession:
    """One shared connection pool for all adapters of a router."""
    connector = aiohttp.TCPConnector(limit=256, limit_per_host=64, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=True,
        json_serialize=json.dumps,
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),  # upstream APIs need no cookies: skip the jar
    )


def timeouts(spec: ProviderSpec) -> aiohttp.ClientTimeout:
    """Connect timeout, and a read timeout that applies between chunks (idle)."""
    return aiohttp.ClientTimeout(
        total=None, connect=spec.connect_timeout, sock_read=spec.read_timeout
    )


async def post_json(
    session: aiohttp.ClientSession,
    spec: ProviderSpec,
    url: str,
    payload: Mapping[str, Any],
    headers: Mapping[str, str],
    target: str,
) -> Any:
    """POST a JSON body and return the decoded JSON answer, or raise a classified ProviderError."""
    async with _post(session, spec, url, payload, headers, target) as response:
        body = await _read(response, target)
    return _decode(body, target)


async def get_json(
    session: aiohttp.ClientSession,
    spec: ProviderSpec,
    url: str,
    headers: Mapping[str, str],
    target: str,
) -> Any:
    """GET a JSON document (model lists, versions, key checks), failures classified."""
    try:
        all_headers = {**spec.headers, **headers}
        remember(*secret_headers(all_headers.items()))
        async with session.get(url, headers=all_headers, timeout=timeouts(spec)) as response:
            body = await response.read()
            if response.status >= 400:
                raise error_from_response(response.status, body, response.headers, target)
    except TimeoutError:
        raise ProviderError(FailureClass.TIMEOUT, "no answer in time", target=target) from None
    except aiohttp.ClientError as exc:
        raise ProviderError(
            FailureClass.CONNECT,
            f"cannot reach {spec.base_url} ({type(exc).__name__})",
            target=target,
        ) from None
    return _decode(body, target)


def _decode(body: bytes, target: str) -> Any:
    """An upstream JSON body; a malformed one is a server failure (the next target may do)."""
    try:
        return msgspec.json.decode(body)
    except (ValueError, msgspec.DecodeError):
        raise ProviderError(
            FailureClass.SERVER, "malformed JSON from upstream", status=200, target=target
        ) from None


@asynccontextmanager
async def post_stream(
    session: aiohttp.ClientSession,
    spec: ProviderSpec,
    url: str,
    payload: Mapping[str, Any],
    headers: Mapping[str, str],
    target: str,
) -> AsyncIterator[aiohttp.ClientResponse]:
    """POST and hand over the open response for line-by-line reading (status already checked)."""
    async with _post(session, spec, url, payload, headers, target) as response:
        yield response


async def iter_lines(response: aiohttp.ClientResponse, target: str) -> AsyncIterator[bytes]:
    """The lines of a streaming body, network failures turned into ProviderErrors.

    Read as the network delivers it and split here: aiohttp's `readline` costs an await per
    line, and a stream's events mostly arrive several to a read. A line longer than `MAX_LINE`
    (an upstream that never ends one) breaks the stream."""
    rest = b""
    try:
        async for data in response.content.iter_any():
            lines = (rest + data).split(b"\n") if rest else data.split(b"\n")
            rest = lines.pop()
            if len(rest) > MAX_LINE:
                raise ProviderError(
                    FailureClass.STREAM_BROKEN, "a stream line is over 1 MiB", target=target
                )
            for line in lines:
                yield line.rstrip(b"\r")
        if rest:
            yield rest.rstrip(b"\r")
    except (TimeoutError, aiohttp.ClientError) as exc:
        failure = FailureClass.TIMEOUT if isinstance(exc, asyncio.TimeoutError) else None
        raise ProviderError(
            failure or FailureClass.STREAM_BROKEN,
            f"stream interrupted: {type(exc).__name__}",
            target=target,
        ) from None


@asynccontextmanager
async def _post(
    session: aiohttp.ClientSession,
    spec: ProviderSpec,
    url: str,
    payload: Mapping[str, Any],
    headers: Mapping[str, str],
    target: str,
) -> AsyncIterator[aiohttp.ClientResponse]:
    data = msgspec.json.encode(payload)
    all_headers = {"content-type": "application/json", **spec.headers, **headers}
    remember(*secret_headers(all_headers.items()))
    try:
        async with session.post(url, data=data, headers=all_headers, timeout=timeouts(spec)) as r:
            if r.status >= 400:
                body = await _read(r, target)
                raise error_from_response(r.status, body, r.headers, target)
            yield r
    except TimeoutError:
        raise ProviderError(FailureClass.TIMEOUT, "upstream timed out", target=target) from None
    except aiohttp.ClientConnectorError as exc:
        raise ProviderError(
            FailureClass.CONNECT, f"cannot connect: {exc.os_error.strerror or exc}", target=target
        ) from None
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
        raise ProviderError(
            FailureClass.SERVER,
            f"upstream closed the connection: {type(exc).__name__}",
            target=target,
        ) from None
    except aiohttp.ClientError as exc:
        raise ProviderError(
            FailureClass.CONNECT, f"HTTP error: {type(exc).__name__}", target=target
        ) from None


async def _read(response: aiohttp.ClientResponse, target: str) -> bytes:
    try:
        return await response.read()
    except TimeoutError:
        raise ProviderError(FailureClass.TIMEOUT, "upstream timed out", target=target) from None
    except aiohttp.ClientError as exc:
        raise ProviderError(
            FailureClass.SERVER, f"upstream body broken: {type(exc).__name__}", target=target
        ) from None
