"""One model per agent turn: a tool loop keeps the model that answered its first request.

An agent turn is the first request after the human's words plus the continuations that answer its
tool calls. Planned afresh, a continuation could land on another model (a cooldown that ended, a
config reload, a budget counter that moved), which throws away the prompt cache and mixes two
models' styles in one task. So the router remembers, in the state store, which target answered
each turn (`StateStore.remember_turn`), and a continuation starts its chain there
(`StateStore.turn_target`); the rest of the chain follows as fallback, and whatever answers after
a failure is remembered for the rest of the turn. A request that starts a turn never reads the
table: it is planned as usual and remembered.

The turn is recognised from the conversation itself, no client has to cooperate: `turn_id` hashes
the system prompt and the messages up to and including the human's latest turn, which is the same
in every request of the turn (later messages are the tool calls and their results). A client may
refine it with a session id (`metadata.session` in the body; `x-stellwerk-session` once the
gateway passes that header on as `metadata["session"]`), so two sessions that happen to start
alike stay apart.
"""

from __future__ import annotations

import functools
import hashlib

from .classify.reading import Reading
from .types import ChatRequest, ImagePart, TextPart, ToolCallPart, ToolResultPart

TURN_TTL = 1800.0
"""Seconds a turn's model is remembered after its last answer (each answer starts it again)."""

SESSION = "session"
"""The request metadata key of a client's session id."""

_ROLE = {"system": b"\x1es", "user": b"\x1eu", "assistant": b"\x1ea", "tool": b"\x1et"}


def turn_id(request: ChatRequest, reading: Reading) -> str:
    """The turn a request belongs to: 32 hex digits (the first 16 bytes of a SHA-256), "" when it
    has no human turn. One pass over the messages up to the human's turn; the system prompt,
    the same long text in every request of a session, is hashed once per distinct prompt
    (`system_digest`). Tool call arguments, tool results' content and thinking are left out
    (ids name them); images count by reference and size.

    SHA-256 rather than blake2b: with the SHA extensions of current x86 and ARM cores it is the
    faster of the two in CPython's hashlib (~0.8 against ~0.4 GB/s on the 2-core machine)."""
    if reading.at is None:
        return ""
    digest = hashlib.sha256()
    update = digest.update
    session = request.metadata.get(SESSION)
    if session:
        update(b"\x1dsession\x1f")
        update(utf8(session))
    update(b"\x1dsystem\x1f")
    if request.system:
        update(system_digest(request.system))
    for message in request.messages[: reading.at + 1]:
        update(_ROLE.get(message.role) or utf8(f"\x1e{message.role}"))
        for part in message.content:
            if isinstance(part, TextPart):
                update(b"\x1f")
                update(utf8(part.text))
            elif isinstance(part, ToolCallPart):
                update(utf8(f"\x1fcall\x1f{part.id}\x1f{part.name}"))
            elif isinstance(part, ToolResultPart):
                update(utf8(f"\x1fresult\x1f{part.tool_call_id}"))
            elif isinstance(part, ImagePart):
                size = len(part.data) if part.data else 0
                update(utf8(f"\x1fimage\x1f{part.url or ''}\x1f{size}"))
    return digest.hexdigest()[:32]


@functools.lru_cache(maxsize=64)
def system_digest(system: str) -> bytes:
    """The digest of a system prompt, once per prompt: the lookup costs nothing more, as the
    classifier has already hashed the same string object (`classify._system_model_line`)."""
    return hashlib.sha256(utf8(system)).digest()


def utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")
