"""Token estimates that err on the safe side.

Used before a call (does the prompt fit the window? what to reserve against a budget?) and when a
provider reports no usage (a broken stream). Real tokenizers average ~4 characters per token for
English and fewer for code and other scripts; counting 3 characters per token plus framing keeps
the estimate above the real count for the protocols' own counts in the tests. Characters beyond
ASCII count more (a CJK character about 1.3 tokens: real tokenizers give them about one each),
and every request and tool definition adds the framing its wire format costs
(`tests/e2e/test_estimates.py` compares the estimates with what the fake providers count).
"""

from __future__ import annotations

import json

from .errors import RequestError
from .types import (
    ChatRequest,
    ImagePart,
    Message,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolResultPart,
)

CHARS_PER_TOKEN = 3
MESSAGE_OVERHEAD = 8
REQUEST_OVERHEAD = 40  # the request's own framing: model name, output limit, options
TOOL_OVERHEAD = 16  # a tool definition's framing: type, function, name and schema keys
IMAGE_TOKENS = 1600


def estimate_text(text: str) -> int:
    """Tokens of a text, rounded up; every UTF-8 byte beyond the first of a character adds 1.5
    characters (the ASCII check keeps English text at one pass)."""
    units = len(text)
    if not text.isascii():
        units += 3 * (len(text.encode("utf-8", "surrogatepass")) - len(text)) // 2
    return -(-units // CHARS_PER_TOKEN)


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
    total = REQUEST_OVERHEAD + estimate_text(request.system or "")
    total += sum(estimate_message(m) for m in request.messages)
    for tool in request.tools:
        total += (
            TOOL_OVERHEAD
            + estimate_text(tool.name + tool.description)
            + estimate_text(_schema_text(tool))
        )
    return total


def _schema_text(tool: Tool) -> str:
    try:
        return json.dumps(tool.parameters, separators=(",", ":"))
    except RecursionError:  # the gateway refuses such schemas at its edge; a library caller
        raise RequestError(f"tools: {tool.name!r}: parameters nested too deeply") from None
