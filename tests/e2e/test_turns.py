"""One model per agent turn, through the real router against the fake upstreams.

An agent turn is the request after the human's words plus the continuations that answer its tool
calls. What a user notices: a tool loop finishes on the model that started it, even when a fresh
plan would pick another one in between (a cooldown ended, the config was reloaded, another
replica serves the continuation); only a failure of that model moves the turn, and then the
fallback that answered keeps the rest of it; the next human turn is planned afresh; the ledger
says which requests belong to one turn.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest

from stellwerk import warmth
from stellwerk.affinity import TURN_TTL, turn_id
from stellwerk.classify.reading import read_request
from stellwerk.config import policy_from_dict
from stellwerk.decision import Decision
from stellwerk.ledger import Ledger, SQLiteLedger
from stellwerk.policy import Policy
from stellwerk.router import Router
from stellwerk.state import MemoryStore, SQLiteStore, StateStore
from stellwerk.testing._server import Reply, ToolCall
from stellwerk.testing.world import FakeWorld
from stellwerk.types import (
    ChatRequest,
    ChatResponse,
    Message,
    Tool,
    ToolCallPart,
    ToolResultPart,
)
from stellwerk.wire.openai import parse_request

from ..conftest import capture

MINI, HAIKU, QWEN = "openai/gpt-4o-mini", "anthropic/claude-haiku-4-5", "ollama/qwen3-4b"
NOW = 1_800_000_000.0

# code: gpt-4o-mini first, haiku as its fallback, then the stack
CONFIG: dict[str, Any] = {
    "stack": [MINI, HAIKU, QWEN],
    "tasks": {"code": {"primary": MINI, "fallbacks": [HAIKU]}},
}
RELOADED: dict[str, Any] = {  # the same, with haiku made the primary (a config reload)
    "stack": [MINI, HAIKU, QWEN],
    "tasks": {"code": {"primary": HAIKU, "fallbacks": [MINI]}},
}
SYSTEM = "You are a coding agent. Use the tools to read and change files in the repository."
TOOLS = (Tool("read_file", "Read a file", {"type": "object", "properties": {}}),)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def human(text: str, *history: Message) -> ChatRequest:
    """A request whose latest message is the human's `text`, after `history`."""
    messages = (*history, Message.of("user", text))
    return ChatRequest(messages, system=SYSTEM, model="auto:code", tools=TOOLS)


def continued(request: ChatRequest, answer: ChatResponse, result: str) -> ChatRequest:
    """The agent's next request: the model's tool calls and the tools' results appended."""
    calls = [p for p in answer.content if isinstance(p, ToolCallPart)]
    assert calls, f"expected a tool call, got {answer.content}"
    results = tuple(Message("tool", (ToolResultPart(c.id, result),)) for c in calls)
    return ChatRequest(
        (*request.messages, Message("assistant", answer.content), *results),
        system=request.system,
        model=request.model,
        tools=request.tools,
    )


def tool_call(n: int = 1) -> Reply:
    return Reply.tools(ToolCall("read_file", {"path": f"src/part{n}.py"}, id=f"call_{n}"))


def rate_limited() -> Reply:
    body = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit"}}
    return Reply.error(429, body, headers={"retry-after": "5"})


def server_error() -> Reply:
    return Reply.error(500, {"error": {"message": "boom", "type": "server_error"}})


@pytest.fixture
async def world() -> AsyncIterator[FakeWorld]:
    async with FakeWorld() as w:
        yield w


Make = Callable[..., Router]


@pytest.fixture
async def make_router(world: FakeWorld) -> AsyncIterator[Make]:
    """Routers on the fakes (closed after the test); each records its decisions in `.seen`."""
    made: list[Router] = []

    def make(
        raw: dict[str, Any] | None = None,
        store: StateStore | None = None,
        clock: Clock | None = None,
        ledger: Ledger | None = None,
    ) -> Router:
        policy: Policy = world.policy(CONFIG if raw is None else raw)
        router = Router(policy, store or MemoryStore(), clock=clock or Clock(), ledger=ledger)
        seen: list[Decision] = []
        inner = router.sink

        async def sink(decision: Decision) -> None:
            seen.append(decision)
            await inner(decision)

        router.sink = sink
        router.seen = seen  # type: ignore[attr-defined]
        made.append(router)
        return router

    yield make
    for router in made:
        await router.aclose()


def upstream_calls(world: FakeWorld, provider: str) -> int:
    return len(world.fakes[provider].received)


# -- the turn id -------------------------------------------------------------------------------


def test_a_turns_requests_share_its_id_and_a_new_human_turn_gets_another():
    first = human("Refactor the parser in src/parse.py")
    reading = read_request(first)
    turn = turn_id(first, reading)
    assert len(turn) == 32 and int(turn, 16) >= 0
    answer = ChatResponse(HAIKU, (_call("call_1"),))
    loop = continued(first, answer, "def parse(): ...")
    loop_reading = read_request(loop)
    assert loop_reading.continuation and turn_id(loop, loop_reading) == turn
    again = continued(loop, ChatResponse(HAIKU, (_call("call_2"),)), "ok")
    assert turn_id(again, read_request(again)) == turn
    after = human("Now add tests", *loop.messages, Message.of("assistant", "Done."))
    assert turn_id(after, read_request(after)) not in {"", turn}


def test_the_turn_id_depends_on_the_system_prompt_the_words_and_the_session():
    base = human("Refactor the parser")
    turn = turn_id(base, read_request(base))
    other_words = human("Refactor the lexer")
    assert turn_id(other_words, read_request(other_words)) != turn
    other_system = ChatRequest(base.messages, system=SYSTEM + " Be brief.", model="auto")
    assert turn_id(other_system, read_request(other_system)) != turn
    session = ChatRequest(base.messages, system=SYSTEM, metadata={"session": "s-1"})
    assert turn_id(session, read_request(session)) != turn
    no_human = ChatRequest((Message.of("assistant", "hello"),))
    assert turn_id(no_human, read_request(no_human)) == ""


def test_the_openclaw_tool_loop_is_one_turn():
    first, continuation = (parse_request(r["body"]) for r in capture("agent_turn_toolcall"))
    framings = policy_from_dict({}).framings  # OpenClaw's context message after the human's
    first_reading, loop_reading = (
        read_request(first, framings),
        read_request(continuation, framings),
    )
    assert not first_reading.continuation and loop_reading.continuation
    assert first_reading.at == loop_reading.at
    assert turn_id(first, first_reading) == turn_id(continuation, loop_reading) != ""


# -- through the router ------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_a_tool_loop_stays_on_its_model_when_a_cooldown_ends_in_between(
    world, make_router, stream
):
    """The primary is rate-limited for the first request, so haiku starts the turn; by the
    continuation the cooldown is over and a fresh plan would go back to gpt-4o-mini."""
    clock = Clock()
    router = make_router(clock=clock)
    world.fakes["openai"].push(rate_limited())
    world.fakes["anthropic"].push(tool_call(1), Reply.ok("The parser is refactored."))
    first = human("Refactor the parser in src/parse.py")
    answer = await router.complete(first)
    assert answer.response.target == HAIKU
    clock.now += 60
    assert not (await router.store.snapshot(clock.now)).cooldowns  # mini would be planned first
    loop = continued(first, answer.response, "def parse(): ...")
    mini_calls = upstream_calls(world, "openai")
    if stream:
        routed = router.stream(loop)
        async for _ in routed:
            pass
        decision = routed.decision
    else:
        decision = (await router.complete(loop)).decision
    assert decision is not None
    assert decision.answered_by == HAIKU
    assert upstream_calls(world, "openai") == mini_calls  # never asked
    assert decision.route.chain[:2] == (HAIKU, MINI)  # the rest of the chain is the fallback
    assert decision.reason.endswith(f"; turn affinity: {HAIKU}")
    assert decision.continuation and decision.turn == router.seen[0].turn
    assert decision.notices == []  # not a fallback: the turn's model answered


async def test_a_config_reload_in_the_middle_of_a_tool_loop_does_not_move_the_turn(
    world, make_router
):
    router = make_router()
    world.fakes["openai"].push(tool_call(1), tool_call(2), Reply.ok("done"))
    first = human("Refactor the parser in src/parse.py")
    answer = await router.complete(first)
    assert answer.response.target == MINI
    router.swap_policy(world.policy(RELOADED))  # haiku is the primary from now on
    loop = continued(first, answer.response, "def parse(): ...")
    second = await router.complete(loop)
    loop = continued(loop, second.response, "ok")
    third = await router.complete(loop)
    assert [d.answered_by for d in router.seen] == [MINI, MINI, MINI]
    assert upstream_calls(world, "anthropic") == 0
    # the next human turn is planned afresh, on the new config
    after = human("Now add tests", *loop.messages, Message("assistant", third.response.content))
    fresh = await router.complete(after)
    assert fresh.response.target == HAIKU
    assert not fresh.decision.continuation and "turn affinity" not in fresh.decision.reason
    assert fresh.decision.turn != router.seen[0].turn


async def test_when_the_turns_model_fails_the_fallback_keeps_the_rest_of_the_turn(
    world, make_router
):
    clock = Clock()
    router = make_router(clock=clock)
    world.fakes["openai"].push(tool_call(1), server_error(), Reply.ok("mini again"))
    world.fakes["anthropic"].push(tool_call(2), tool_call(3), Reply.ok("finished"))
    first = human("Refactor the parser in src/parse.py")
    answer = await router.complete(first)
    assert answer.response.target == MINI
    loop = continued(first, answer.response, "def parse(): ...")
    second = await router.complete(loop)  # mini fails: haiku answers and keeps the turn
    assert second.response.target == HAIKU
    assert [a.failure for a in second.decision.attempts] == ["server", None]
    assert f"turn affinity: {MINI}" in second.decision.reason
    clock.now += 600  # every breaker cooldown is over: a fresh plan would start at mini again
    loop = continued(loop, second.response, "def lex(): ...")
    third = await router.complete(loop)
    assert third.response.target == HAIKU
    assert f"turn affinity: {HAIKU}" in third.decision.reason
    fourth = await router.complete(continued(loop, third.response, "ok"))
    assert fourth.response.target == HAIKU and fourth.response.text == "finished"
    assert upstream_calls(world, "openai") == 2  # the first answer and the one failure
    turns = {d.turn for d in router.seen}
    assert len(turns) == 1 and [d.continuation for d in router.seen] == [False, True, True, True]
    # a new human turn: planned afresh, back on the primary
    after = human("Thanks. Now the lexer.", *loop.messages, Message.of("assistant", "finished"))
    fresh = await router.complete(after)
    assert fresh.response.target == MINI and fresh.response.text == "mini again"
    assert not fresh.decision.continuation and fresh.decision.turn not in turns


async def test_a_turn_that_is_forgotten_or_expired_is_planned_afresh(world, make_router):
    clock = Clock()
    router = make_router(clock=clock)
    world.fakes["openai"].push(rate_limited())
    world.fakes["anthropic"].push(tool_call(1))
    first = human("Refactor the parser in src/parse.py")
    answer = await router.complete(first)
    assert answer.response.target == HAIKU
    clock.now += TURN_TTL + 1
    late = await router.complete(continued(first, answer.response, "def parse(): ..."))
    assert late.response.target == MINI
    assert late.decision.continuation and "turn affinity" not in late.decision.reason


async def test_openclaws_tool_loop_keeps_its_model_across_a_config_reload(world, make_router):
    """The real agent's first request and its continuation (60 KB each, the human's words
    followed by OpenClaw's internal-context message), on the default strategy."""
    first, continuation = (
        parse_request({**r["body"], "model": "auto", "stream": False})
        for r in capture("agent_turn_toolcall")
    )
    router = make_router({})
    for fake in ("openai", "anthropic"):  # as the captured agent's was: with a tool call
        world.fakes[fake].push(Reply.tools(ToolCall("ls", {"path": "."}, id="call_ls")))
    answer = await router.complete(first)
    kept = answer.response.target
    other = MINI if kept != MINI else HAIKU
    router.swap_policy(
        world.policy({"routing": {"mode": "off"}, "tasks": {"complex": {"primary": other}}})
    )
    loop = await router.complete(continuation)
    assert loop.response.target == kept
    assert loop.decision.continuation and loop.decision.turn == router.seen[0].turn
    assert loop.decision.reason.endswith(f"; continues a tool loop; turn affinity: {kept}")
    assert loop.decision.route.chain[:2] == (kept, other)


async def test_the_ledger_records_each_requests_turn_and_whether_it_continues_one(
    world, make_router, tmp_path
):
    ledger = Ledger(SQLiteLedger(tmp_path / "ledger.db"))
    router = make_router(ledger=ledger)
    world.fakes["openai"].push(tool_call(1), Reply.ok("done"), Reply.ok("hello"))
    first = human("Refactor the parser in src/parse.py")
    answer = await router.complete(first)
    await router.complete(continued(first, answer.response, "def parse(): ..."))
    await router.complete(human("What time is it?"))
    await ledger.flush()
    rows = await ledger.since(0)
    assert [r.continuation for r in rows] == [False, True, False]
    assert rows[0].turn == rows[1].turn == router.seen[0].turn
    assert rows[2].turn not in {None, rows[0].turn}
    stored = json.loads((await ledger.tail(1))[0].decision)
    assert stored["turn"] == rows[2].turn and stored["continuation"] is False


async def test_only_an_answer_that_calls_tools_keeps_its_turn_in_the_state(world, make_router):
    """No continuation follows an answer without tool calls (a chat, a heartbeat, the last step
    of a tool loop): its turn is not written; one with tool calls is, for the loop's next step."""
    store = MemoryStore()
    router = make_router(store=store)
    world.fakes["openai"].push(Reply.ok("hello"), tool_call(1))
    said = await router.complete(human("Say hello"))
    assert await store.turn_target(said.decision.turn, NOW + 1) is None
    asked = await router.complete(human("Refactor the parser in src/parse.py"))
    assert await store.turn_target(asked.decision.turn, NOW + 1) == MINI


async def test_the_turn_table_survives_a_restart_in_the_sqlite_state(world, make_router, tmp_path):
    """The gateway restarts with a new config between a turn's requests (SQLite state)."""
    path = tmp_path / "state.db"
    before = make_router(store=SQLiteStore(path))
    world.fakes["openai"].push(tool_call(1), Reply.ok("done"))
    first = human("Refactor the parser in src/parse.py")
    answer = await before.complete(first)
    assert answer.response.target == MINI
    await before.aclose()
    after = make_router(RELOADED, store=SQLiteStore(path))
    loop = await after.complete(continued(first, answer.response, "def parse(): ..."))
    assert loop.response.target == MINI
    assert f"turn affinity: {MINI}" in loop.decision.reason


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_an_agents_answer_is_settled_and_remembered_in_one_transaction(
    world, make_router, tmp_path, stream
):
    """With budget limits on, an agent's request writes three things after its answer: the
    settlement, the turn's target (it called tools) and the session's warm caches (its prompt is
    long enough to be cached). They commit together: two transactions for the request (the
    reservation, then the rest) instead of three, a commit's cost saved on every agent request."""
    store = SQLiteStore(tmp_path / "state.db")
    commits: list[str] = []
    store._inline.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    limits = {"limits": [{"window": "daily", "tokens": 10_000_000}]}
    router = make_router({**CONFIG, "budgets": limits}, store=store)
    world.fakes["openai"].push(tool_call(1))
    request = replace(human("Refactor the parser in src/parse.py"), system=SYSTEM * 40)
    if stream:
        routed = router.stream(request)
        async for _ in routed:
            pass
        assert routed.decision is not None
        decision = routed.decision
    else:
        decision = (await router.complete(request)).decision
    assert decision.answered_by == MINI and decision.session, decision.reason
    assert len(commits) == 2
    assert await store.turn_target(decision.turn, NOW + 1) == MINI
    assert warmth.decode(await store.turn_target(warmth.KEY + decision.session, NOW), NOW)
    (usage,) = (await store.snapshot(NOW)).budgets.values()
    assert usage.tokens == decision.usage.total_tokens and usage.reserved_tokens == 0


async def test_two_replicas_share_the_turn_through_redis(
    world, make_router, redis_server, redis_prefix
):
    """The load balancer sends the continuation to another replica."""
    from stellwerk.state.redis import RedisStore

    clock = Clock()
    one = make_router(store=RedisStore(redis_server.url, prefix=redis_prefix), clock=clock)
    two = make_router(store=RedisStore(redis_server.url, prefix=redis_prefix), clock=clock)
    world.fakes["openai"].push(rate_limited())
    world.fakes["anthropic"].push(tool_call(1), Reply.ok("done"))
    first = human("Refactor the parser in src/parse.py")
    answer = await one.complete(first)
    assert answer.response.target == HAIKU
    clock.now += 60  # the shared cooldown is over
    loop = await two.complete(continued(first, answer.response, "def parse(): ..."))
    assert loop.response.target == HAIKU
    assert f"turn affinity: {HAIKU}" in loop.decision.reason


async def test_in_emergency_mode_a_cloud_turn_continues_locally(world, make_router):
    """The turn's model is not in the emergency chain: the plan stands, and says why."""
    clock = Clock()
    router = make_router(clock=clock)
    world.fakes["openai"].push(tool_call(1))
    first = human("Refactor the parser in src/parse.py")
    answer = await router.complete(first)
    await router.store.set_emergency(True, clock.now, "by hand: test")
    loop = await router.complete(continued(first, answer.response, "def parse(): ..."))
    assert loop.response.target.startswith("ollama/")
    assert f"turn affinity: {MINI} left out" in loop.decision.reason


def _call(call_id: str) -> ToolCallPart:
    return ToolCallPart(call_id, "read_file", '{"path": "src/parse.py"}')
