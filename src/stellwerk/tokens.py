"""Token estimates that err on the safe side.

Used before a call (does the prompt fit the window? what to reserve against a budget?) and when a
provider reports no usage (a broken stream). Real tokenizers average ~4 characters per token for
English and fewer for code and other scripts; counting 3 characters per token plus framing keeps
the estimate above the real count for the protocols' own counts in the tests.
"""

from __future__ import annotations

import json

from .types import (
    ChatRequest,
    ImagePart,
    Message,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
)

CHARS_PER_TOKEN = 3
MESSAGE_OVERHEAD = 8
IMAGE_TOKENS = 1600


def estimate_text(text: str) -> int:
    """Tokens of a text, rounded up."""
    return -(-len(text) // CHARS_PER_TOKEN)


def estimate_message(message: Message) -> int:
    total = MESSAGE_OVERHEAD
    for part in message.content:
        if isinstance(part, TextPart | ThinkingPart):
            total += estimate_text(part.text)
        elif isinstance(part, ToolCallPart):
            total += estimate_text(part.name) + estimate_text(part.arguments) + 4
        elif isinstance(part, ToolResultPart):
            total += estimate_text(part.content) + 4
        elif isinstance(part, ImagePart):
            total += IMAGE_TOKENS
    return total


def estimate_prompt(request: ChatRequest) -> int:
    """Input tokens of a request: system prompt, every message and the tool definitions."""
    total = MESSAGE_OVERHEAD + estimate_text(request.system or "")
    total += sum(estimate_message(m) for m in request.messages)
    for tool in request.tools:
        total += estimate_text(tool.name + tool.description) + estimate_text(
            json.dumps(tool.parameters, separators=(",", ":"))
        )
    return total
