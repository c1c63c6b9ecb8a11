"""The gateway's limits on what clients send and how slowly they send it (issue 15).

Module constants, not config options: they guard the process, they do not shape routing. The
README's Errors section lists them. aiohttp itself answers the few cases that fail before a
request exists (a request line or header over `MAX_LINE`, more than `MAX_HEADERS` headers, an
unknown method) with a plain-text 400: no handler or middleware runs for them.
"""

from __future__ import annotations

from typing import Any

HEADER_TIMEOUT = 30.0
"""Seconds a connection may take to send a complete request head; also how long an idle
keep-alive connection stays open (aiohttp's `keepalive_timeout` covers both)."""
BODY_TIMEOUT = 60.0
"""Seconds a request may take to send its whole body (32 MiB at about 0.5 MB/s); 408 after."""
LINGER = 2.0
"""Seconds the rest of an unread body is still read and dropped after an early answer (a 408,
a 413 by Content-Length) before the connection closes; aiohttp's default is 10."""
MAX_READING = 256
"""Requests that may be sending their bodies at once; one more gets a 503 at once."""
MAX_LINE = 8190
"""Bytes of the request line (method, URL) and of each header line: aiohttp's default."""
MAX_HEADERS = 128
"""Headers per request: aiohttp's default."""
OFF_LOOP_BYTES = 1 << 20
"""Bodies larger than this (1 MiB) are decompressed, decoded, checked and parsed on a worker
thread, so a 10 MB body does not stall the other requests for a second."""
ENCODINGS = ("identity", "gzip", "x-gzip", "deflate")
"""`Content-Encoding`s the gateway reads; anything else (br, zstd) gets a 415."""


def handler_args() -> dict[str, Any]:
    """aiohttp's per-connection settings for the gateway (`web.Application(handler_args=...)`).

    Bodies are decompressed by the gateway itself (`auto_decompress` off): a body its header
    does not describe, or an encoding it does not read, is then answered in the caller's JSON
    format, and a compressed body cannot expand past `gateway.max_body`."""
    return {
        "keepalive_timeout": HEADER_TIMEOUT,
        "lingering_time": LINGER,
        "max_line_size": MAX_LINE,
        "max_field_size": MAX_LINE,
        "max_headers": MAX_HEADERS,
        "auto_decompress": False,
    }
