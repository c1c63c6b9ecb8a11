"""How deep a client's JSON may nest: checked at the edge, before anything recurses into it.

Python's own `json` module, the token estimates and the provider adapters walk JSON recursively;
about 1,000 levels raise `RecursionError` (issue 15). The gateway refuses deeper input with a 400
that names the field, long before that: `MAX_JSON_DEPTH` levels for the whole request body
(counted from the body itself, so a tool schema or a `tool_use.input` gets the limit minus the
5-6 levels of the envelope around it), and `MAX_JSON_DEPTH` levels for a JSON text inside a
string (OpenAI's tool-call `arguments`). Real tool schemas and arguments stay below 20 levels.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

MAX_JSON_DEPTH = 128
"""Levels of nested objects and arrays a request body, or a JSON text in one of its strings,
may have. A module constant (not a config option): the limit only guards the code's recursion."""

MAX_ECHO = 200
"""Characters of one client-sent word (a model name, a header value, a path) that an error
message echoes and the ledger stores; longer ones are cut and end in an ellipsis."""
MAX_MESSAGE = 1000
"""Characters of a whole error message that the gateway writes about a client's request."""

_FREE_FORM = frozenset(
    {"input", "input_schema", "parameters", "arguments", "schema", "metadata", "response_format"}
)
"""Fields whose inside is the client's own JSON: an error names the field, not the path in it."""
_NAMED_SEGMENTS = 6
_LONG_WORD = re.compile(rf"\S{{{MAX_ECHO + 1},}}")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},:]', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether decoded JSON nests objects and arrays more than `limit` levels (no recursion).

    One level at a time, containers only: on a 60 KB agent request (a few hundred containers,
    most values strings) this costs about what decoding it does, a third of a walk that kept
    a depth with every node."""
    containers = (dict, list)  # a tuple: isinstance checks it faster than `dict | list`
    level: list[Any] = [value] if isinstance(value, containers) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        deeper: list[Any] = []
        for node in level:
            for child in node.values() if isinstance(node, dict) else node:
                if isinstance(child, containers):
                    deeper.append(child)
        level = deeper
    return False


def deep_path(value: Any, limit: int = MAX_JSON_DEPTH) -> tuple[str | int, ...]:
    """The path to the field that holds JSON nested more than `limit` levels ((): none).

    The path stops at a field whose inside is the client's own JSON (a tool schema, a tool
    call's input) or after a few segments, so it names a field of the API, not a path in it."""
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(value, 1, ())]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, dict):
            items: Any = node.items()
        elif isinstance(node, list):
            items = enumerate(node)
        else:
            continue
        if depth > limit:
            return _named(path)
        for key, child in items:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1, (*path, key)))
    return ()


def raw_deep_path(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> tuple[str | int, ...]:
    """`deep_path` for a JSON text that cannot be decoded because it nests too deeply: a scan
    of its tokens, without recursion (it need not be valid JSON)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    stack: list[list[Any]] = []  # per open container: [its current key or index]
    last = ""
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token[0] == '"':
            last = token
        elif token in "[{":
            if len(stack) >= limit:
                return _named([entry[0] for entry in stack])
            stack.append([0 if token == "[" else None])
        elif token in "]}":
            if stack:
                stack.pop()
        elif token == ":" and stack:
            stack[-1][0] = _key(last)
        elif token == "," and stack and isinstance(stack[-1][0], int):
            stack[-1][0] += 1
    return ()


def _key(token: str) -> str:
    try:
        key = json.loads(token)
    except ValueError:
        return token[1:-1]
    return key if isinstance(key, str) else token[1:-1]


def _named(path: Sequence[str | int]) -> tuple[str | int, ...]:
    named: list[str | int] = []
    for segment in path[:_NAMED_SEGMENTS]:
        named.append(segment)
        if segment in _FREE_FORM:
            break
    return tuple(named)


def text_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a JSON text (e.g. tool-call arguments) nests more than `limit` levels.

    Cheap for the usual case: a text with at most `limit` brackets cannot nest deeper. It need
    not be valid JSON; brackets inside string literals do not count."""
    if text.count("{") + text.count("[") <= limit:
        return False
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth = max(depth - 1, 0)
    return False


def nesting_message(limit: int = MAX_JSON_DEPTH) -> str:
    return f"nested deeper than {limit} levels of JSON (the gateway's limit)"


def nesting_error(path: Sequence[str | int], *, dotted: bool) -> str:
    """The 400's message: the field first (`tools.0.input_schema: ...`, the `param`)."""
    if not path or not isinstance(path[0], str):
        return f"the request body is {nesting_message()}"
    return f"{path_text(path, dotted=dotted)}: {nesting_message()}"


def path_text(path: Sequence[str | int], *, dotted: bool) -> str:
    """`messages.1.content.0.input` (Anthropic's style) or `messages[1].content[0]` (OpenAI's)."""
    out = ""
    for segment in path:
        if isinstance(segment, int):
            out += f".{segment}" if dotted else f"[{segment}]"
        else:
            out += f".{segment}" if out else str(segment)
    return out


def cap(text: str, limit: int = MAX_ECHO) -> str:
    """`text`, cut to `limit` characters with an ellipsis when it is longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cap_message(text: str) -> str:
    """An error message with every word longer than `MAX_ECHO` characters cut (an unknown model
    name of 1 MB), and the whole cut to `MAX_MESSAGE`."""
    if len(text) <= MAX_ECHO:
        return text
    return cap(_LONG_WORD.sub(lambda m: cap(m.group()), text), MAX_MESSAGE)
