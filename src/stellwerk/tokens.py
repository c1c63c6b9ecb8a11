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

import msgspec

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
    """Input tokens of a request: system prompt, every message and the tool definitions.

    Counted once per request: planning, cache-aware routing, the budget reservation, fitting
    and an adapter's breakpoint all ask, and an agent's request is 50-200 KB. The count is kept
    on the request (`ChatRequest.estimated`) with the parts it counted, and counts again only
    for a request whose system prompt, messages or tools are new objects (minimal context,
    fitting, a cut): frozen parts are never changed in place, only replaced."""
    kept = request.estimated
    system, messages, tools = request.system, request.messages, request.tools
    if kept is not None and kept[0] is system and kept[1] is messages and kept[2] is tools:
        return kept[3]
    total = REQUEST_OVERHEAD + estimate_text(system or "")
    total += sum(estimate_message(m) for m in messages)
    total += sum(_estimate_tool(tool) for tool in tools)
    object.__setattr__(request, "estimated", (system, messages, tools, total))  # a cache only
    return total


def _estimate_tool(tool: Tool) -> int:
    return TOOL_OVERHEAD + estimate_text(tool.name + tool.description) + _estimate_schema(tool)


def _estimate_schema(tool: Tool) -> int:
    """The schema's tokens as compact JSON (msgspec encodes it at a sixth of `json.dumps`'s
    cost; a schema with text beyond ASCII is counted as `json.dumps` escapes it, as before)."""
    try:
        encoded = msgspec.json.encode(tool.parameters)
    except RecursionError:  # the gateway refuses such schemas at its edge; a library caller
        raise RequestError(f"tools: {tool.name!r}: parameters nested too deeply") from None
    if encoded.isascii():
        return -(-len(encoded) // CHARS_PER_TOKEN)
    return estimate_text(json.dumps(tool.parameters, separators=(",", ":")))
