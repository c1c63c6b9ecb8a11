"""Which task class a request belongs to, and why.

Routing is only as cheap as the classifier is right: a heartbeat sent to the premium model with the
whole history burns tokens all day, a proof sent to the budget model wastes the user's time. So the
decision is layered, and every layer says what decided:

1. an explicit class (`model: auto:code` or the `x-stellwerk-task` header) is obeyed as is;
2. an in-band directive the user typed (`/model haiku`, a `# Model: opus` line) names the model
   the chain starts at;
3. a concrete model in the `model` field starts the chain there;
4. otherwise the human's latest turn decides (`reading.py` finds it and takes the client's
   framing off): heartbeats are recognised by rule (`heartbeat.py`), the rest by a small
   logistic-regression model (`model.py`) whose scores are shifted by built-in rules for strong
   signals (`rules.py`) and by the user's own rules from the config.

The system prompt and the tools are context, not the task: agents send the same long system
prompt and the same tools with every request, heartbeats included. A request that continues a
turn after tool calls is classified by that turn, never by the tools' output, so its class does
not flip in the middle of a tool loop. Only a bounded head and tail of a long text is read, so
classification costs well under a millisecond. The weights load lazily, once.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from ..errors import UnknownModelError
from ..policy import ClassifierRule, Policy
from ..types import TEXT_CLASSES, ChatRequest, TaskClass, TextPart
from .heartbeat import CERTAIN, heartbeat_evidence
from .model import POSITION, features, model_logits, preload, weights
from .reading import Reading, read_request
from .rules import Signal, builtin
from .text import RULE_HEAD, RULE_TAIL, blank, bounded, read

HEAD_CHARS, TAIL_CHARS = 3000, 1000  # how much of a long text heartbeat and user rules read
_DECISIVE = 12.0  # the score a certain heartbeat adds: no other signal outweighs it
_HEARTBEAT_AT = POSITION[TaskClass.HEARTBEAT]
_NAMES = tuple(str(t) for t in TEXT_CLASSES)


@dataclass(frozen=True, slots=True)
class Classification:
    """The class of a request, how sure the classifier is, and which rule or signal decided."""

    task: TaskClass
    confidence: float
    reason: str
    source: str  # explicit | directive | model | classifier | default
    model: str | None = None  # catalog id when a directive or the model field names one
    scores: Mapping[str, float] = field(default_factory=dict)
    reading: Reading = Reading("", None)  # the human's turn, as read
    directive: str = ""  # the directive as typed (to take out of the text sent upstream)
    notices: tuple[str, ...] = ()  # what the caller should be told (an ignored directive)


def classify(request: ChatRequest, policy: Policy) -> Classification:
    """Classify a request: explicit class, then directive, then the model field, then the text."""
    reading = read_request(request, policy.framings)
    named = _named_model(request, policy)
    explicit = _explicit_class(request)
    directive = _directive(request, reading.text, policy)
    tail = "; continues a tool loop" if reading.continuation else ""
    written = directive.written
    if explicit is not None:
        task, how = explicit
        if written:
            how += f" (directive {written!r} ignored)"
        reason = f"explicit: {how}{tail}"
        return Classification(task, 1.0, reason, "explicit", named, {}, reading, written)
    if directive.task is not None:
        reason = f"directive: {written}{tail}"
        return Classification(directive.task, 1.0, reason, "directive", named, {}, reading, written)
    guess = _guess(request, reading, directive.text, policy)
    reason, source, model = guess.reason, guess.source, None
    notices: tuple[str, ...] = ()
    if directive.problem:
        reason, notices = f"{reason}; {directive.problem}", (directive.problem,)
    if directive.model is not None:
        reason = f"directive {written!r} names {directive.model}; {reason}"
        source, model = "directive", directive.model
    elif named is not None:
        reason, source, model = f"model field names {named}; {reason}", "model", named
    return Classification(  # built once: `replace` on it cost more than the rules did
        guess.task,
        guess.confidence,
        reason + tail,
        source,
        model,
        guess.scores,
        reading,
        directive=written,
        notices=notices,
    )


# -- what the caller asked for ----------------------------------------------------------------


def _class_named(name: str, written: str) -> TaskClass:
    """The class in `auto:<name>` or the task header; UnknownModelError with a suggestion."""
    try:
        return TaskClass(name.strip().lower())
    except ValueError:
        choices = [str(t) for t in TaskClass]
        close = difflib.get_close_matches(name.lower(), choices, n=1, cutoff=0.5)
        hint = f"; did you mean auto:{close[0]}?" if close else ""
        raise UnknownModelError(
            f"unknown task class {name!r} in {written!r} (one of {', '.join(choices)}{hint})"
        ) from None


def _explicit_class(request: ChatRequest) -> tuple[TaskClass, str] | None:
    header = (request.task or "").strip().lower()
    if header and header != "auto":  # `auto` in the header asks for classification
        task = _class_named(header.removeprefix("auto:"), header)
        return task, f"task header {header}"
    model = request.model.strip().lower()
    if model.startswith("auto:"):
        return _class_named(model[5:], request.model), model
    return None


def _named_model(request: ChatRequest, policy: Policy) -> str | None:
    """The catalog id the model field names, None for `auto`; raises for unknown names."""
    name = request.model.strip()
    if not name or name.lower() == "auto" or name.lower().startswith("auto:"):
        return None
    spec = policy.resolve_model(name)
    if spec is None:
        raise UnknownModelError(f"unknown model {name!r}{_suggest(name, policy)}")
    return spec.id


def _suggest(name: str, policy: Policy) -> str:
    """The hint of an unknown name: the closest known one, and where the models are listed."""
    pool = [*policy.models, *policy.aliases, "auto", *(f"auto:{t}" for t in TaskClass)]
    close = difflib.get_close_matches(name.lower(), pool, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]}? `stellwerk models` lists the models)"
    providers = ", ".join(sorted(policy.providers))
    return (
        f" (`stellwerk models` lists the models; any model of a configured provider"
        f" ({providers}) is written provider/model)"
    )


def known_names(policy: Policy) -> str:
    """The aliases and classes a directive may name, for an error that lists them."""
    aliases = ", ".join(sorted(policy.aliases))
    classes = ", ".join(f"auto:{t}" for t in TEXT_CLASSES)
    return f"aliases: {aliases}; classes: {classes}; or a catalog id such as {policy.stack[0]}"


@dataclass(slots=True)
class _Directive:
    text: str  # the human's turn without the directive
    written: str = ""  # the directive as typed, "" when there is none
    model: str | None = None
    task: TaskClass | None = None
    problem: str = ""  # why a directive was ignored


_SLASH_MODEL = re.compile(r"\A\s*/model[ \t]+(\S+)[ \t]*\n?")
_MODEL_LINE = re.compile(r"^[ \t]*#[ \t]*model[ \t]*:[ \t]*(\S+)[ \t]*(?:\n|\Z)", re.I | re.M)


def _directive(request: ChatRequest, text: str, policy: Policy) -> _Directive:
    """`/model <alias>` opening the human's turn, or a `# Model: <alias>` line in it or the
    system prompt. `auto:<class>` names a class; an unknown name is ignored, with a notice."""
    found = (_SLASH_MODEL.search(text) if "/model" in text else None) or _model_line(text)
    if found is not None:
        text = text[: found.start()] + text[found.end() :]
    elif request.system:
        found = _system_model_line(request.system)
    if found is None:
        return _Directive(text)
    written, name = found.group(0).strip(), found.group(1).strip().lower()
    if name == "auto":
        return _Directive(text, written)
    if name.startswith("auto:"):
        if name[5:] in set(TaskClass):
            return _Directive(text, written, task=TaskClass(name[5:]))
        problem = f"directive {written!r} ignored: unknown class (one of {known_names(policy)})"
        return _Directive(text, written, problem=problem)
    spec = policy.resolve_model(name)
    if spec is None:
        problem = f"directive {written!r} ignored: unknown model{_suggest(name, policy)}"
        return _Directive(text, written, problem=problem)
    return _Directive(text, written, model=spec.id)


@functools.lru_cache(maxsize=32)
def _system_model_line(system: str) -> re.Match[str] | None:
    """`_model_line` of a system prompt, once per prompt: an agent sends the same long one with
    every request, and hashing it is cheaper than searching it."""
    return _model_line(system)


def _model_line(text: str) -> re.Match[str] | None:
    """The first `# Model: <alias>` line; substring tests first, as few texts hold one."""
    if "#" not in text or "model" not in text.lower():
        return None
    return _MODEL_LINE.search(text)


def without_directive(request: ChatRequest, found: Classification) -> ChatRequest:
    """The request as sent upstream: the directive taken out of the turn (or the system prompt)
    it was typed in, so the model never sees routing commands."""
    written, at = found.directive, found.reading.at
    if not written:
        return request
    if at is not None:
        turn = request.messages[at]
        for i, part in enumerate(turn.content):
            if isinstance(part, TextPart) and written in part.text:
                cut = replace(part, text=_cut(part.text, written))  # its cache marker stays
                content = (*turn.content[:i], cut, *turn.content[i + 1 :])
                messages = request.messages
                turned = replace(turn, content=content)
                return replace(request, messages=(*messages[:at], turned, *messages[at + 1 :]))
    if request.system and written in request.system:
        blocks = tuple(
            replace(b, text=_cut(b.text, written)) if written in b.text else b
            for b in request.system_blocks
        )
        return replace(request, system=_cut(request.system, written), system_blocks=blocks)
    return request


def _cut(text: str, written: str) -> str:
    """`text` without the first `written` and the line break that ended it."""
    start = text.index(written)
    end = start + len(written)
    if text[end : end + 1] == "\n":
        end += 1
    return text[:start] + text[end:]


# -- the text classifier ----------------------------------------------------------------------


def _guess(
    request: ChatRequest, reading: Reading, user_text: str, policy: Policy
) -> Classification:
    if reading.heartbeat:
        reason = f"heartbeat ({reading.heartbeat} framing)"
        return Classification(TaskClass.HEARTBEAT, 1.0, reason, "classifier")
    text = (request.system or "") if blank(user_text) else user_text
    if blank(text):
        task = policy.routing.default_task
        return Classification(task, 0.0, f"nothing to classify: default {task}", "default")
    logits, fired, model = _scores(text, request, user_text, policy)
    probs = _softmax(logits)
    at = probs.index(max(probs))  # the first of equals, as `max` keeps it
    best, confidence = TEXT_CLASSES[at], probs[at]
    scores = {name: round(p, 4) for name, p in zip(_NAMES, probs, strict=True)}
    if confidence < policy.routing.min_confidence:
        task = policy.routing.default_task
        reason = (
            f"classifier unsure (leaned {best} at {confidence:.2f} < "
            f"{policy.routing.min_confidence:.2f}): default {task}"
        )
        return Classification(task, confidence, reason, "default", scores=scores)
    reason = _explain(best, fired, model)
    return Classification(best, confidence, reason, "classifier", scores=scores)


def _scores(
    text: str, request: ChatRequest, user_text: str, policy: Policy
) -> tuple[list[float], list[Signal], Sequence[float] | None]:
    """The score per class (in `TEXT_CLASSES` order), the signals that fired, and the model's
    own scores (None when the model did not run).

    Only heartbeat signals (built-in, or the user's rules for `heartbeat`) make a heartbeat, and
    a certain one skips the model and the built-in rules: heartbeats are the most frequent
    requests of an idle agent, often long, and get a minimal context, so a real task taken for
    one would lose its history.
    """
    head = bounded(text, HEAD_CHARS, TAIL_CHARS)
    user = _user_rules(head, policy)
    beats = [r for r in user if r[0] is TaskClass.HEARTBEAT] if user else user
    fired = _heartbeat(head, request, user_text, beats)
    model = None
    if not fired or fired[0][1] < _DECISIVE:
        model, signals = _read_scores(bounded(text, RULE_HEAD, RULE_TAIL), weights())
        fired += signals
    logits = [0.0] * len(TEXT_CLASSES) if model is None else list(model)
    if not fired or fired[0][0] is not TaskClass.HEARTBEAT:
        logits[_HEARTBEAT_AT] -= _DECISIVE  # no heartbeat signal: the model cannot say so
    if user:
        fired += [r for r in user if r[0] is not TaskClass.HEARTBEAT]
    for task, weight, _ in reversed(fired):  # last first: float sums depend on the order
        logits[POSITION[task]] += weight
    return logits, fired, model


@functools.lru_cache(maxsize=256)
def _read_scores(raw: str, model: object) -> tuple[tuple[float, ...] | None, tuple[Signal, ...]]:
    """The model's scores and the built-in rules that fire, for a text as `read` bounds it
    (`RULE_HEAD` + `RULE_TAIL` characters, so an entry stays small), once per text and `model`
    (the weights in use: the key, not read here). An agent sends its human turn again with
    every step of a tool loop, and the same heartbeat prompt every time; reading and scoring a
    short prompt cost ~60 µs of the gateway's ~850 in place (cold caches: 40 in a loop)."""
    text = read(raw)
    logits = model_logits(text)
    return (None if logits is None else tuple(logits)), tuple(builtin(text))


@functools.lru_cache(maxsize=256)
def _evidence(head: str) -> tuple[float, tuple[str, ...]]:
    """`heartbeat_evidence` of a bounded text, once per text (`_read_scores`)."""
    evidence, names = heartbeat_evidence(head)
    return evidence, tuple(names)


def _heartbeat(
    text: str, request: ChatRequest, user_text: str, user_rules: list[Signal]
) -> list[Signal]:
    """The heartbeat evidence as one signal: 3 or more (built-in plus the user's) is certain."""
    evidence, found = _evidence(text)
    names = list(found)
    system = _system_heartbeat(request, user_text)
    if system > evidence:
        evidence, names = system, ["in the system prompt"]
    if user_rules:
        evidence += sum(weight for _, weight, _ in user_rules)
        names += [name for _, _, name in user_rules]
    if evidence <= 0:
        return []
    weight = _DECISIVE if evidence >= CERTAIN else evidence
    return [(TaskClass.HEARTBEAT, weight, f"heartbeat prompt ({', '.join(names)})")]


def _system_heartbeat(request: ChatRequest, user_text: str) -> float:
    """Heartbeat evidence from a system prompt that opens with the heartbeat instructions.

    Agents such as OpenClaw explain the heartbeat deep inside every system prompt, so only a
    system prompt that starts with it (a heartbeat runner) counts; with no user turn the system
    prompt is the text itself and is read in full.
    """
    system = request.system or ""
    if not system or blank(user_text):
        return 0.0
    evidence, _ = _evidence(system[:1000])
    return evidence if evidence >= CERTAIN else 0.0


def _user_rules(head: str, policy: Policy) -> list[Signal]:
    """The config's rules, on the bounded text heartbeats are read in."""
    if not policy.rules:
        return []
    return [
        (rule.task, rule.weight, f"rule /{rule.pattern}/")
        for rule, pattern in _compiled(policy.rules)
        if pattern.search(head)
    ]


def _explain(task: TaskClass, fired: list[Signal], model: Sequence[float] | None) -> str:
    """What spoke for a class: its signals in the order they fired, then the model's score.

    Built for the winning class only, and so the model's probabilities are computed here, not
    for every request that is then explained by a default.
    """
    signals = [name for t, _, name in fired if t is task]
    if model is not None:
        signals.append(f"model {_softmax(model)[POSITION[task]]:.2f}")
    if task is TaskClass.HEARTBEAT and signals[:1] and signals[0].startswith("heartbeat"):
        return signals[0]
    return f"{task} ({', '.join(signals) or 'prior'})"


def _softmax(logits: Sequence[float]) -> list[float]:
    top = max(logits)
    exps = [math.exp(v - top) for v in logits]
    total = sum(exps)
    return [e / total for e in exps]


@functools.lru_cache(maxsize=16)
def _compiled(
    rules: tuple[ClassifierRule, ...],
) -> tuple[tuple[ClassifierRule, re.Pattern[str]], ...]:
    """The user's rules, compiled once per policy (config validation already checked them)."""
    return tuple((rule, re.compile(rule.pattern)) for rule in rules)


__all__ = [
    "Classification",
    "Reading",
    "classify",
    "features",
    "known_names",
    "preload",
    "read_request",
    "without_directive",
]
