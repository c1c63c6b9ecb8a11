"""Keys out of every text: the one place where upstream texts lose the secrets they echo.

Upstreams echo the key they were sent in their error texts (Anthropic: `invalid x-api-key:
sk-ant-…`, OpenAI: `Incorrect API key provided: sk-proj-****abcd`). Such a text is scrubbed where
it is first read, before it is cut to length and before anything (cooldown detail, ledger,
status, log, answer) holds it, so no part of a key survives a cut either.

Two passes:

- anything shaped like a provider key, known or not: `sk-ant-…`, `sk-proj-…`, `sk-or-v1-…`,
  `sk-svcacct-…`, `sk-admin-…`, a bare `sk-` key of key length, OpenAI's starred echo
  (`sk-abc***wxyz`), Google's `AIza…`, Groq's `gsk_…`, xAI's `xai-…`, and `Bearer <token>`.
  These keep their recognisable prefix and lose the rest: `sk-ant-…`, `Bearer …`.
- the secrets this process knows: every key `_http` sends is remembered (`remember`), and
  callers add their own (the gateway its client keys). An exact echo becomes the masked form
  the rest of Stellwerk shows (`sk-…abcd`); a fragment of 10 or more characters from either
  end of a known key (a key cut short, or cut off at its front) becomes `…`.

The patterns are plain character classes so the PostgreSQL ledger migration can apply the same
rules with `regexp_replace` (`POSIX_RULES`).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable

ELLIPSIS = "…"
_MIN_SECRET = 8  # shorter values are not treated as secrets (they would mask ordinary words)
_MIN_FRAGMENT = 10  # a run this long from either end of a known key is a fragment of it
_KEY = "A-Za-z0-9_*-"  # the characters of a key, with OpenAI's masking star

# (pattern, replacement); the replacement keeps the prefix that names the kind of key.
# Written so that Python's `re` and PostgreSQL's regexp_replace (ARE) read them alike.
_START = "(?<![A-Za-z0-9_-])"  # a key starts a word: `task-…` holds no `sk-` key
_RULES: tuple[tuple[str, str], ...] = (
    (rf"{_START}sk-ant-[{_KEY}]+", "sk-ant-" + ELLIPSIS),
    (rf"{_START}sk-proj-[{_KEY}]+", "sk-proj-" + ELLIPSIS),
    (rf"{_START}sk-or-v1-[{_KEY}]+", "sk-or-v1-" + ELLIPSIS),
    (rf"{_START}sk-svcacct-[{_KEY}]+", "sk-svcacct-" + ELLIPSIS),
    (rf"{_START}sk-admin-[{_KEY}]+", "sk-admin-" + ELLIPSIS),
    (rf"{_START}sk-[A-Za-z0-9_-]*[*]{{3,}}[{_KEY}]*", "sk-" + ELLIPSIS),
    (rf"{_START}sk-[A-Za-z0-9_-]{{20,}}", "sk-" + ELLIPSIS),
    (rf"{_START}AIza[A-Za-z0-9_-]{{20,}}", "AIza" + ELLIPSIS),
    (rf"{_START}gsk_[A-Za-z0-9]{{20,}}", "gsk_" + ELLIPSIS),
    (rf"{_START}xai-[A-Za-z0-9]{{20,}}", "xai-" + ELLIPSIS),
    (r"([Bb]earer|BEARER)[ \t]+[A-Za-z0-9._~+/=-]{8,}", r"\1 " + ELLIPSIS),
)
_COMPILED = tuple((re.compile(p), r) for p, r in _RULES)
_QUICK = re.compile(r"sk-|AIza|gsk_|xai-|[Bb]earer|BEARER")  # no match: no rule can apply

POSIX_RULES: tuple[tuple[str, str], ...] = _RULES
"""The same rules for PostgreSQL's `regexp_replace(text, pattern, replacement, 'g')`."""

_known: set[str] = set()


_MAX_KNOWN = 4096  # a bound, should keys ever arrive per request
_SECRET_HEADERS = ("authorization", "api-key", "api_key", "apikey", "secret", "access-token")


def remember(*values: str) -> None:
    """Treat `values` as secrets from now on (the upstream keys, as they are sent)."""
    for value in values:
        value = value.strip()
        if len(value) >= _MIN_SECRET and value not in _known and len(_known) < _MAX_KNOWN:
            _known.add(value)


def secret_headers(headers: Iterable[tuple[str, str]]) -> list[str]:
    """The secret values among request headers: auth, key and token headers, Bearer stripped."""
    found: list[str] = []
    for name, value in headers:
        lowered = name.lower()
        if not any(word in lowered for word in _SECRET_HEADERS):
            continue
        scheme, _, rest = value.partition(" ")
        found.append(rest if rest and scheme.lower() in ("bearer", "basic") else value)
    return found


def masked(secret: str) -> str:
    """How a known secret is shown: enough to tell keys apart (as `Secret.masked`)."""
    return f"{secret[:3]}{ELLIPSIS}{secret[-4:]}" if len(secret) >= 16 else ELLIPSIS * 3


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without any known secret, any of `secrets`, or anything shaped like a key."""
    if not text:
        return text
    if _QUICK.search(text):  # shapes first: a known key's generic front (`sk-ant-api`) is
        for pattern, replacement in _COMPILED:  # never taken for a fragment of another key
            text = pattern.sub(replacement, text)
    values = {s for s in secrets if len(s) >= _MIN_SECRET} | _known
    for secret in sorted(values, key=len, reverse=True):
        text = _without(text, secret)
    return text


def scrub_bytes(body: bytes, secrets: Iterable[str] = ()) -> bytes:
    """`scrub` for a raw upstream body (decoded leniently; unchanged when nothing matched)."""
    if not body:
        return body
    text = body.decode("utf-8", "surrogateescape")
    clean = scrub(text, secrets)
    return body if clean == text else clean.encode("utf-8", "surrogateescape")


SQL_FUNCTION = "stellwerk_scrub"
"""The name `install` gives `scrub` in a SQLite connection, for the schema steps that scrub."""


def install(conn: sqlite3.Connection) -> None:
    """Make `stellwerk_scrub(text)` callable in `conn`'s SQL (NULL stays NULL)."""
    conn.create_function(SQL_FUNCTION, 1, _sql_scrub, deterministic=True)


def scrubbed_column(table: str, column: str) -> str:
    """The SQLite statement that scrubs every value of one text column, touching changed rows
    only (a schema step: keys an older Stellwerk stored are gone once the file is opened)."""
    call = f"{SQL_FUNCTION}({column})"
    return f"UPDATE {table} SET {column} = {call} WHERE {column} IS NOT {call}"


def _sql_scrub(value: str | bytes | int | float | None) -> str | bytes | int | float | None:
    return scrub(value) if isinstance(value, str) else value


def _without(text: str, secret: str) -> str:
    if secret in text:
        text = text.replace(secret, masked(secret))
    if len(secret) < 2 * _MIN_FRAGMENT:
        return text
    head, tail = secret[:_MIN_FRAGMENT], secret[-_MIN_FRAGMENT:]
    if head in text:  # the key's front, cut short: as much of it as is there goes
        text = _cut_runs(text, secret, head)
    if tail in text:  # the key's back, its front cut off
        text = _cut_runs(text[::-1], secret[::-1], tail[::-1])[::-1]
    return text


def _cut_runs(text: str, secret: str, head: str) -> str:
    out: list[str] = []
    start = 0
    while (at := text.find(head, start)) >= 0:
        end = at + len(head)
        while end < len(text) and end - at < len(secret) and text[end] == secret[end - at]:
            end += 1
        out.append(text[start:at] + ELLIPSIS)
        start = end
    out.append(text[start:])
    return "".join(out)
