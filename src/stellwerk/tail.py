"""`stellwerk log`: recent decisions from the ledger, one readable line each, and new ones as
they are written (`--follow` polls the ledger, so it works against a gateway in another process).

    2026-11-26 08:10:03  req_9c1e…  openai  simple  openai/gpt-4o-mini  312→58 tok  $0.000082
    2026-11-26 08:12:41  req_51aa…  cli  code  ollama/codellama  40→120 tok  $0.000000  after
    openai-codex/gpt-5.3-codex: overloaded                                (one line in a terminal)

`~` marks tokens Stellwerk estimated (a stream that broke or was abandoned mid-answer).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, tzinfo
from typing import Any

from .budget import usd
from .ledger import Ledger, Row

Sleep = Callable[[float], Awaitable[Any]]
FOLLOW_EVERY = 1.0  # seconds between polls


def log_line(row: Row, tz: tzinfo | None = None) -> str:
    """One decision as one line: time, id, client, class, model, tokens, cost, what went wrong."""
    when = datetime.fromtimestamp(row.ts, tz).strftime("%Y-%m-%d %H:%M:%S")
    served = row.answered_by or (f"{row.model} (cut off)" if row.model else "no answer")
    tokens = f"{'~' if row.estimated else ''}{row.input_tokens}→{row.output_tokens} tok"
    text = f"{when}  {row.request_id}  {row.client}  {row.task}  {served}  {tokens}"
    text += f"  {usd(row.cost_micros)}"
    if row.failures:
        failed = ", ".join(f"{target}: {failure}" for target, failure in row.failures)
        text += f"  after {failed}" if row.answered_by else f"  failed {failed}"
    if row.error and not row.answered_by:
        text += f"  error: {_short(row.error)}"
    return text


def _short(text: str, limit: int = 120) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


async def follow(
    ledger: Ledger,
    tail: int,
    *,
    forever: bool = True,
    every: float = FOLLOW_EVERY,
    sleep: Sleep = asyncio.sleep,
) -> AsyncIterator[Row]:
    """The last `tail` rows; then, with `forever`, every row written after them, as it comes."""
    recent = await ledger.tail(max(tail, 1))
    for row in recent[-tail:] if tail else ():
        yield row
    last = (recent[-1].id or 0) if recent else 0
    while forever:
        await sleep(every)
        for row in await ledger.after(last):
            last = row.id or last
            yield row


async def show_log(
    config_path: str | os.PathLike[str] | None,
    tail: int,
    *,
    forever: bool = False,
    echo: Callable[[str], object] = print,
) -> None:
    """The body of `stellwerk log`: print lines until done (or, following, until interrupted)."""
    from zoneinfo import ZoneInfo

    from .config import load_policy
    from .ledger import open_ledger

    policy = load_policy(config_path)
    tz = ZoneInfo(policy.budgets.timezone)
    ledger = open_ledger(policy)
    try:
        async for row in follow(ledger, tail, forever=forever):
            echo(log_line(row, tz))
    finally:
        await ledger.close()
