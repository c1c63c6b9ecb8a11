"""`stellwerk log`: recent decisions from the ledger, one readable line each, and new ones as
they are written (`--follow` polls the ledger, so it works against a gateway in another process).

    2026-11-26 08:10:03  req_9c1e…  openai  simple  openai/gpt-4o-mini  312→58 tok  $0.000082
    2026-11-26 08:12:41  req_51aa…  cli  code  ollama/codellama  40→120 tok  $0.000000  after
    openai-codex/gpt-5.3-codex: overloaded                                (one line in a terminal)

`~` marks tokens Stellwerk estimated (a stream that broke or was abandoned mid-answer). Times are
in the local time zone, as in `status`. `--json` prints one JSON object per decision instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
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


def log_json(row: Row) -> dict[str, Any]:
    """One decision for `log --json`: the ledger columns, the time in ISO 8601 (local, with its
    offset), failures as objects, and the whole decision when the ledger kept it."""
    data = dataclasses.asdict(row)
    data.pop("id", None)
    data = {"time": datetime.fromtimestamp(row.ts).astimezone().isoformat(), **data}
    data["failures"] = [{"target": t, "failure": f} for t, f in row.failures]
    data["decision"] = json.loads(row.decision) if row.decision else None
    return data


async def show_log(
    config_path: str | os.PathLike[str] | None,
    tail: int,
    *,
    forever: bool = False,
    as_json: bool = False,
    echo: Callable[[str], object] = print,
) -> None:
    """The body of `stellwerk log`: print lines until done (or, following, until interrupted)."""
    from .config import load_policy
    from .ledger import open_ledger

    policy = load_policy(config_path)
    ledger = open_ledger(policy)
    try:
        async for row in follow(ledger, tail, forever=forever):
            echo(json.dumps(log_json(row), ensure_ascii=False) if as_json else log_line(row))
    finally:
        await ledger.close()
