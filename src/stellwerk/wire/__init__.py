"""The wire formats: what clients send and get (`openai`, `anthropic`) and the edge's limits.

`dumps` and `loads` are the JSON of the per-chunk path (every streamed frame read from an
upstream, every frame written to a client): msgspec, several times faster than `json`, with
`json` where only it copes, so what is accepted and sent means the same as before.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec


def dumps(value: Any) -> bytes:
    """Compact JSON, UTF-8 as is (a text with a lone surrogate, which UTF-8 cannot hold, as
    `json` escapes it)."""
    try:
        return msgspec.json.encode(value)
    except (UnicodeEncodeError, msgspec.EncodeError, TypeError, OverflowError):
        return json.dumps(value, separators=(",", ":")).encode()


def loads(data: str | bytes) -> Any:
    """Decoded JSON; what msgspec refuses but `json` reads (a lone surrogate's escape, NaN) is
    read by `json`, and what neither reads raises ValueError."""
    try:
        return msgspec.json.decode(data)
    except ValueError:
        return json.loads(data)
