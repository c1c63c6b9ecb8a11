"""Which task class a request belongs to, and why.

Routing is only as cheap as the classifier is right: a heartbeat sent to the premium model with the
whole history burns tokens all day, a proof sent to the budget model wastes the user's time. So the
decision is layered, and every layer says what decided:

1. an explicit class (`model: auto:code` or the `x-stellwerk-task` header) is obeyed as is;
2. an in-band directive the user typed (`/model haiku`, a `# Model: opus` line) names the model
   the chain starts at;
3. a concrete model in the `model` field starts the chain there;
4. otherwise the text decides: heartbeat prompts are recognised by rule (they are templated), the
   rest by a small logistic-regression model (`data/classifier.json`, trained by
   `scripts/train_classifier.py`) whose scores are shifted by built-in rules for strong signals
   (code syntax, word problems, writing tasks) and by the user's own rules from the config.

The text is the last user turn (the system prompt when there is none): agents send long, generic
system prompts that say nothing about the task at hand. Only a bounded head and tail of a long
text is read, so classification costs well under a millisecond. The weights load lazily, once.
"""

from __future__ import annotations

import bisect
import difflib
import functools
import itertools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import msgspec

from .errors import UnknownModelError
from .policy import ClassifierRule, Policy
from .types import TEXT_CLASSES, ChatRequest, TaskClass

HEAD_CHARS, TAIL_CHARS = 3000, 1000  # how much of a long text heartbeat and user rules read
RULE_HEAD, RULE_TAIL = 1000, 300  # built-in rules and the model: they look for the instruction
_DECISIVE = 12.0  # the score a certain heartbeat adds: no other signal outweighs it
_CODE_TOOLS = re.compile(r"exec|bash|shell|python|code|patch|edit|write_file|terminal", re.I)


@dataclass(frozen=True, slots=True)
class Classification:
    """The class of a request, how sure the classifier is, and which rule or signal decided."""

    task: TaskClass
    confidence: float
    reason: str
    source: str  # explicit | directive | model | classifier | default
    model: str | None = None  # catalog id when a directive or the model field names one
    scores: Mapping[str, float] = field(default_factory=dict)


def classify(request: ChatRequest, policy: Policy) -> Classification:
    """Classify a request: explicit class, then directive, then the model field, then the text."""
    named = _named_model(request, policy)
    explicit = _explicit_class(request)
    directive = _directive(request, policy)
    if explicit is not None:
        task, how = explicit
        if directive.written:
            how += f" (directive {directive.written!r} ignored)"
        return Classification(task, 1.0, f"explicit: {how}", "explicit", named)
    if directive.task is not None:
        reason = f"directive: {directive.written}"
        return Classification(directive.task, 1.0, reason, "directive", named)
    guess = _guess(request, directive.text, policy)
    if directive.problem:
        guess = replace(guess, reason=f"{guess.reason}; {directive.problem}")
    if directive.model is not None:
        reason = f"directive {directive.written!r} names {directive.model}; {guess.reason}"
        return replace(guess, source="directive", model=directive.model, reason=reason)
    if named is not None:
        reason = f"model field names {named}; {guess.reason}"
        return replace(guess, source="model", model=named, reason=reason)
    return guess


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
    pool = [*policy.models, *policy.aliases, "auto", *(f"auto:{t}" for t in TaskClass)]
    close = difflib.get_close_matches(name.lower(), pool, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else " (see `stellwerk config show`)"


@dataclass(slots=True)
class _Directive:
    text: str  # the last user turn without the directive
    written: str = ""  # the directive as typed, "" when there is none
    model: str | None = None
    task: TaskClass | None = None
    problem: str = ""  # why a directive was ignored


_SLASH_MODEL = re.compile(r"\A\s*/model[ \t]+(\S+)[ \t]*\n?")
_MODEL_LINE = re.compile(r"^[ \t]*#[ \t]*model[ \t]*:[ \t]*(\S+)[ \t]*(?:\n|\Z)", re.I | re.M)


def _directive(request: ChatRequest, policy: Policy) -> _Directive:
    """`/model <alias>` opening the last user turn, or a `# Model: <alias>` line in it or the
    system prompt. `auto:<class>` names a class; an unknown name is ignored, with a note."""
    text = request.last_user_text()
    found = (_SLASH_MODEL.search(text) if "/model" in text else None) or _model_line(text)
    if found is not None:
        text = text[: found.start()] + text[found.end() :]
    elif request.system:
        found = _model_line(request.system)
    if found is None:
        return _Directive(text)
    written, name = found.group(0).strip(), found.group(1).strip().lower()
    if name == "auto":
        return _Directive(text, written)
    if name.startswith("auto:"):
        if name[5:] in set(TaskClass):
            return _Directive(text, written, task=TaskClass(name[5:]))
        return _Directive(text, written, problem=f"directive {written!r} ignored: unknown class")
    spec = policy.resolve_model(name)
    if spec is None:
        problem = f"directive {written!r} ignored: unknown model{_suggest(name, policy)}"
        return _Directive(text, written, problem=problem)
    return _Directive(text, written, model=spec.id)


def _model_line(text: str) -> re.Match[str] | None:
    """The first `# Model: <alias>` line; substring tests first, as few texts hold one."""
    if "#" not in text or "model" not in text.lower():
        return None
    return _MODEL_LINE.search(text)


# -- the text classifier ----------------------------------------------------------------------

_Signal = tuple[TaskClass, float, str]  # a class, the weight added to its score, and why
_POSITION = {t: i for i, t in enumerate(TEXT_CLASSES)}  # scores are lists in this order
_HEARTBEAT_AT = _POSITION[TaskClass.HEARTBEAT]
_NAMES = tuple(str(t) for t in TEXT_CLASSES)


def _guess(request: ChatRequest, user_text: str, policy: Policy) -> Classification:
    text = (request.system or "") if _blank(user_text) else user_text
    if _blank(text):
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
) -> tuple[list[float], list[_Signal], list[float] | None]:
    """The score per class (in `TEXT_CLASSES` order), the signals that fired, and the model's
    own scores (None when the model did not run).

    Only heartbeat signals (built-in, or the user's rules for `heartbeat`) make a heartbeat, and
    a certain one skips the model and the built-in rules: heartbeats are the most frequent
    requests of an idle agent, often long, and get a minimal context, so a real task taken for
    one would lose its history.
    """
    bounded = _bounded(text, HEAD_CHARS, TAIL_CHARS)
    user = _user_rules(bounded, request, policy)
    beats = [r for r in user if r[0] is TaskClass.HEARTBEAT] if user else user
    fired = _heartbeat(bounded, request, user_text, beats)
    model = None
    if not fired or fired[0][1] < _DECISIVE:
        read = _read(text)
        model = _model_logits(read)
        fired += _builtin(read)
    logits = [0.0] * len(TEXT_CLASSES) if model is None else model.copy()
    if not fired or fired[0][0] is not TaskClass.HEARTBEAT:
        logits[_HEARTBEAT_AT] -= _DECISIVE  # no heartbeat signal: the model cannot say so
    if user:
        fired += [r for r in user if r[0] is not TaskClass.HEARTBEAT]
    for task, weight, _ in reversed(fired):  # last first: float sums depend on the order
        logits[_POSITION[task]] += weight
    return logits, fired, model


def _heartbeat(
    text: str, request: ChatRequest, user_text: str, user_rules: list[_Signal]
) -> list[_Signal]:
    """The heartbeat evidence as one signal: 3 or more (built-in plus the user's) is certain."""
    if not user_rules and not request.system and "heartbeat" not in text.lower():
        return []  # most requests: nothing could speak for a heartbeat
    evidence, names = _heartbeat_evidence(text)
    system = _system_heartbeat(request, user_text)
    if system > evidence:
        evidence, names = system, ["in the system prompt"]
    if user_rules:
        evidence += sum(weight for _, weight, _ in user_rules)
        names += [name for _, _, name in user_rules]
    if evidence <= 0:
        return []
    weight = _DECISIVE if evidence >= 3 else evidence
    return [(TaskClass.HEARTBEAT, weight, f"heartbeat prompt ({', '.join(names)})")]


def _opener(tokens: list[str]) -> str:
    """The first word (or number, read as 0) of a text: where a pattern `\\A\\W*` leads to."""
    for token in tokens:
        if token[0].isalnum() or token[0] == "_":
            return token
    return ""


def _builtin(read: _Text) -> list[_Signal]:
    """The built-in rules that fire; a short question no rule claims is most likely a lookup.

    Only the tests whose words occur run (one set intersection finds them), in table order; a
    rule's later tests are skipped once one passed.
    """
    book = _rulebook()
    tried = book.always.union(
        *map(book.by_word.__getitem__, read.words & book.words),
        book.by_opener.get(_opener(read.tokens), ()),
    )
    fired: list[_Signal] = []
    for at in sorted(tried):
        signal, test = book.tests[at]
        if (not fired or fired[-1] is not signal) and test(read):
            fired.append(signal)
    if not fired and _SHORT_QUESTION.search(read.low):
        fired.append((TaskClass.SIMPLE, 1.25, "short question"))
    return fired


def _user_rules(bounded: str, request: ChatRequest, policy: Policy) -> list[_Signal]:
    """The config's rules (on the bounded text heartbeats are read in) and the kind of tools
    defined."""
    if not policy.rules and not request.tools:
        return []
    fired = [
        (rule.task, rule.weight, f"rule /{rule.pattern}/")
        for rule, pattern in _compiled(policy.rules)
        if pattern.search(bounded)
    ]
    if any(_CODE_TOOLS.search(tool.name) for tool in request.tools):
        fired.append((TaskClass.CODE, 0.5, "code tools defined"))
    return fired


def _explain(task: TaskClass, fired: list[_Signal], model: list[float] | None) -> str:
    """What spoke for a class: its signals in the order they fired, then the model's score.

    Built for the winning class only, and so the model's probabilities are computed here, not
    for every request that is then explained by a default.
    """
    signals = [name for t, _, name in fired if t is task]
    if model is not None:
        signals.append(f"model {_softmax(model)[_POSITION[task]]:.2f}")
    if task is TaskClass.HEARTBEAT and signals[:1] and signals[0].startswith("heartbeat"):
        return signals[0]
    return f"{task} ({', '.join(signals) or 'prior'})"


def _softmax(logits: list[float]) -> list[float]:
    top = max(logits)
    exps = [math.exp(v - top) for v in logits]
    total = sum(exps)
    return [e / total for e in exps]


def _blank(text: str) -> bool:
    """`not text.strip()`, without copying a long text to find out."""
    return not text or text.isspace()


def _bounded(text: str, head: int, tail: int) -> str:
    """The head and tail of a long text: instructions sit at the start or the end."""
    if len(text) <= head + tail:
        return text
    return text[:head] + "\n" + text[-tail:]


@functools.lru_cache(maxsize=16)
def _compiled(
    rules: tuple[ClassifierRule, ...],
) -> tuple[tuple[ClassifierRule, re.Pattern[str]], ...]:
    """The user's rules, compiled once per policy (config validation already checked them)."""
    return tuple((rule, re.compile(rule.pattern)) for rule in rules)


# -- heartbeats: templated prompts, recognised by rule ----------------------------------------

_HEARTBEAT = (
    (
        "reply HEARTBEAT_OK",
        3.0,
        re.compile(
            r"\b(?:reply|respond|response|answer|return|output|say|print|send)\b"
            r"[^\n.]{0,60}?\bHEARTBEAT_OK\b|`HEARTBEAT_OK`",
            re.I,
        ),
    ),
    ("HEARTBEAT_OK", 1.5, re.compile(r"\bHEARTBEAT_OK\b")),
    ("HEARTBEAT.md", 1.5, re.compile(r"\bHEARTBEAT\.md\b", re.I)),
    (
        "heartbeat wording",
        1.5,
        re.compile(
            r"\b(?:scheduled|periodic|routine)\s+heartbeat|heartbeat\s+(?:check|poll|tasks?|"
            r"protocol|run|prompt|monitor)|^#+\s*heartbeat\b",
            re.I | re.M,
        ),
    ),
)


def _heartbeat_evidence(text: str) -> tuple[float, list[str]]:
    """Summed weight of the heartbeat signals in a text (3 or more is certain), and their names."""
    if "heartbeat" not in text.lower():
        return 0.0, []
    found = [(name, weight) for name, weight, rx in _HEARTBEAT if rx.search(text)]
    names = [n for n, _ in found if n != "HEARTBEAT_OK" or len(found) == 1]
    return sum(w for _, w in found), names


def _system_heartbeat(request: ChatRequest, user_text: str) -> float:
    """Heartbeat evidence from a system prompt that opens with the heartbeat instructions.

    Agents such as OpenClaw explain the heartbeat deep inside every system prompt, so only a
    system prompt that starts with it (a heartbeat runner) counts; with no user turn the system
    prompt is the text itself and is read in full.
    """
    system = request.system or ""
    if not system or _blank(user_text):
        return 0.0
    evidence, _ = _heartbeat_evidence(system[:1000])
    return evidence if evidence >= 3 else 0.0


# -- how rules and model read a text -----------------------------------------------------------

_TOKEN = re.compile(r"[a-z_][a-z0-9_]*|\d+(?:[.,]\d+)*|[^\sa-z0-9_]")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


@dataclass(slots=True)
class _Text:
    """A text bounded to its head and tail, as written, lowered, and as tokens (digits -> 0)."""

    raw: str
    low: str
    tokens: list[str]
    words: frozenset[str]
    digits: bool  # False: not a digit in it, so no number to look for


def _read(text: str) -> _Text:
    raw = _bounded(text, RULE_HEAD, RULE_TAIL)
    low = raw.lower()
    tokens = _TOKEN.findall(low)
    # A digit other than 0-9 can occur only in a text that is not ASCII.
    digits = not low.isascii() or any(map(low.__contains__, "0123456789"))
    if digits:
        tokens = ["0" if t[0].isdigit() else t for t in tokens]
    return _Text(raw, low, tokens, frozenset(tokens), digits)


# -- built-in rules: strong signals the training data under-represents ------------------------

_Test = Callable[[_Text], bool]


@dataclass(frozen=True, slots=True)
class _Check:
    """A test, tried only if one of the words it `needs` occurs or the text `opens` with one of
    its words (`_opener`), or always when it names none: the patterns are the cost."""

    needs: frozenset[str]
    opens: frozenset[str]
    test: _Test


_Checks = tuple[_Check, ...]  # a rule fires if one of its tests passes


def _low(pattern: str, needs: str = "", opens: str = "", also: str = "") -> _Checks:
    """A rule on the lowered text; with `also`, one of those words must occur as well."""
    search = re.compile(pattern, re.M).search
    more = frozenset(also.split())

    def test(t: _Text) -> bool:
        return (not more or not more.isdisjoint(t.words)) and search(t.low) is not None

    return (_Check(frozenset(needs.split()), frozenset(opens.split()), test),)


def _cased(pattern: str, needs: str) -> _Checks:
    """A rule on the text as written, for patterns that depend on case."""
    search = re.compile(pattern, re.M).search
    return (_Check(frozenset(needs.split()), frozenset(), lambda t: search(t.raw) is not None),)


def _either(*alternatives: _Checks) -> _Checks:
    return tuple(check for checks in alternatives for check in checks)


_ASKS_AMOUNT = re.compile(
    r"\b(?:how (?:many|much|long|old|far|fast)|what (?:percentage|fraction)|"
    r"what(?: is|'s) the (?:total|sum|average|difference|number)|in total|altogether|left over|"
    r"remain)\b"
)
# Wherever `_ASKS_AMOUNT` matches, one of these is a word of the text: a set test goes first.
_AMOUNT_WORDS = frozenset("how what total altogether left remain".split())
_QUANTITY = frozenset(
    "half twice thrice double triple quarter percent more less fewer times % $".split()
)


def _word_problem(t: _Text) -> bool:
    """A question about an amount, with the numbers to compute it from."""
    if _AMOUNT_WORDS.isdisjoint(t.words) or not _ASKS_AMOUNT.search(t.low):
        return False
    numbers = len(_NUMBER.findall(t.low))
    return numbers >= 2 or not _QUANTITY.isdisjoint(t.words)


def _equation_pattern() -> str:
    """An operator between operands (`3 + 4`, `x = 2`, `2x - 5`, `x^2`).

    The pattern starts at the operator and looks behind, which is several times faster than
    trying every word; `2026-03-26` and `1939-1945` are no equations.
    """
    op = r"[-+*/^=<>]"
    before = (r"\d[+*/^=<>]", rf"\d {op}", rf"\b[a-z] ?{op}", rf"\b\d[a-z] ?{op}")
    behind = "|".join(f"(?<={b})" for b in _fixed_widths(before))
    return rf"{op}(?:{behind}) ?\{{?\d"


def _fixed_widths(patterns: tuple[str, ...]) -> list[str]:
    """Look-behinds need a fixed width: `a ?b` becomes `ab` and `a b`."""
    return [
        v
        for p in patterns
        for v in ((p.replace(" ?", ""), p.replace(" ?", " ")) if " ?" in p else (p,))
    ]


_LANG = (
    r"(?:python|javascript|typescript|java|c\+\+|c#|golang|rust|ruby|php|kotlin|swift|scala|"
    r"haskell|perl|bash|shell|powershell|sql|html|css|matlab|lua|dart|elixir|clojure|fortran|"
    r"cobol|assembly|verilog|julia|react|node\.?js|django|flask|pandas|numpy|jquery|regex|"
    r"regular expression)"
)
_LANG_WORDS = (
    "python javascript typescript java golang rust ruby php kotlin swift scala haskell perl "
    "bash shell powershell sql html css matlab lua dart elixir clojure fortran cobol assembly "
    "verilog julia react node nodejs django flask pandas numpy jquery regex regular"
)
_GENRE = (
    r"(?:essay|story|stories|poem|haiku|limerick|sonnet|song|lyrics|letter|e-?mail|speech|blog|"
    r"blog post|article|screenplay|script|play|dialogue|caption|slogan|tagline|bio|advertisement|"
    r"ad|pitch|outline|proposal|cover letter|personal statement|tweet|post|monologue|skit|novel|"
    r"fiction|plot|itinerary|joke|riddle|ascii art|description|review|summary|recipe|toast|"
    r"eulogy|ode|ballad|rap|chapter|scene|act)"
)
_SHORT_QUESTION = re.compile(
    r"\A\s*(?:who|when|where|which|what|why|how|is|are|does|do|did|can|was|were)\b"
    r"[^\n]{0,150}\??\s*\Z"
)
_C, _R, _X, _S = TaskClass.CODE, TaskClass.REASONING, TaskClass.COMPLEX, TaskClass.SIMPLE


# fmt: off
@functools.cache
def _rules() -> tuple[tuple[TaskClass, float, str, _Checks], ...]:
    """The built-in rules, compiled on first use so that importing stays cheap."""
    return (
        (_C, 3.75, "code syntax", _either(
            _cased(r"^[ \t]*(?:(?:async[ \t]+)?def|class)[ \t]+\w+[ \t]*[(:]", "def class"),
            _cased(r"^[ \t]*(?:public|private|protected|static)[ \t]+[\w<>\[\]]+[ \t]+\w+"
                   r"[ \t]*\(", "public private protected static"),
            _cased(r"^[ \t]*(?:#include[ \t]*<|(?:import|from)[ \t]+[\w.]+"
                   r"(?:[ \t]+import\b|;?$))", "include import from"),
            # one pattern each, so that those opening with a literal are found by a fast scan
            *(_cased(pattern, "console system function > \\") for pattern in (
                r"console\.log\(", r"System\.out\.print", r"\bfunction\s+\w+\s*\(", r"=>\s*\{",
                r"\\n {2,}\w")),
            _cased(r"\bSELECT\s+[\w*, ]+?\s+FROM\b", "select"),
            _cased(r"\b[A-Z]\w*(?:Exception|Error)\b", "exception error"),
        )),
        (_C, 3.1, "asks for code", _low(
            r"\b(?:write|create|implement|complete|generate|give me|build|code|fix)\s+"
            r"(?:a|an|the|me a|some|this)?\s*(?:\w+\s+){0,3}(?:function|program|script|method|"
            r"class|algorithm|query|regex|regular expression|snippet|code|unit tests?|api|"
            r"endpoint|module)\b",
            "function program script method class algorithm query regex regular snippet code "
            "test tests api endpoint module")),
        (_C, 2.5, "programming language", _low(
            rf"\b(?:in|using|with)\s+{_LANG}\b|\b{_LANG}\s+(?:code|function|program|script|"
            r"class|snippet|question|syntax|markup|query|tags?)\b", _LANG_WORDS)),
        (_C, 1.9, "data structures", _low(
            r"\b(?:arrays?|linked lists?|binary (?:search )?trees?|hash ?(?:maps?|tables?)|"
            r"substrings?|subarrays?|subsequences?|palindromes?|"
            r"given (?:a |an )?(?:string|list|array)|tuples?|booleans?|nodes?)\b",
            "array arrays linked binary hash hashmap hashmaps hashtable hashtables substring "
            "substrings subarray subarrays subsequence subsequences palindrome palindromes "
            "given tuple tuples boolean booleans node nodes")),
        (_C, 1.9, "debugging", _low(
            r"\b(?:bug|debug|compile|compiler|syntax error|stack ?trace|exception|segfault|"
            r"null ?pointer|runtime error|refactor)\b",
            "bug debug compile compiler syntax stack stacktrace exception segfault null "
            "nullpointer runtime refactor")),
        (_R, 1.9, "equation", _either(
            _low(_equation_pattern(), "0"),  # a number follows the operator
            _low(r"\b[a-z]\([a-z0-9]\) ?=", "="),  # f(x) =
        )),
        (_R, 2.5, "math vocabulary", _low(
            r"\b(?:solve|equations?|integral|derivative|probability|prove that|inequality|"
            r"polynomial|theorem|conjecture|lemma|formula|calculate|compute|integers?|"
            r"prime numbers?|factorial|remainder|divisible)\b",
            "solve equation equations integral derivative probability prove inequality "
            "polynomial theorem conjecture lemma formula calculate compute integer integers "
            "prime factorial remainder divisible")),
        (_R, 2.5, "word problem",  # it needs a number, read as 0
         (_Check(frozenset({"0"}), frozenset(), _word_problem),)),
        (_R, 2.5, "logic puzzle", _low(
            r"\btrue,? false,? or uncertain\b|\bpremises?\b|\bpuzzle\b|\bstep[- ]by[- ]step\b|"
            r"\bdeduce\b|\blogically\b",
            "uncertain premise premises puzzle step deduce logically")),
        (_R, 5.0, "logic statements", _either(  # all A are B; A is older than B. B is ...
            _low(r"(?:\b(?:all|no|every|some) [\w-]+ (?:are|is)\b[\s\S]{0,120}?){2}",
                 "all no every some"),
            _low(r"(?:\b(?:is|are|was|were|costs?|weighs?|runs?)\s+(?:\w+er|(?:more|less|fewer)"
                 r" \w+)\s+than\s+[^.?!\n]{1,40}[.;!?][\s\S]{0,80}?){2}", "than"),
        )),
        (_X, 2.5, "writing task", _low(
            r"\A\W*(?:please\s+|can you\s+|could you\s+|help me\s+|i need you to\s+|"
            r"i want you to\s+)?(?:write|compose|draft|craft|rewrite|rephrase|paraphrase|edit|"
            r"revise|proofread|polish|expand|shorten|condense|invent|brainstorm|come up with|"
            r"imagine|pretend|role-?play|act as)\b",
            opens="please can could help i write compose draft craft rewrite rephrase paraphrase "
            "edit revise proofread polish expand shorten condense invent brainstorm come imagine "
            "pretend role roleplay act")),
        (_X, 1.9, "writing genre", _low(
            r"\b(?:write|compose|draft|craft|create|generate|make|produce|come up with|give me)"
            r"\s+(?:me\s+|us\s+)?(?:a|an|the|some|one|two|three|\d+)?\s*(?:[\w-]+\s+){0,4}"
            rf"{_GENRE}\b",
            "write compose draft craft create generate make produce come give")),
        (_X, 2.5, "role play", _either(  # no `opens`: "roleplay" may open a longer first word
            _low(r"\A\W*(?:as (?:an?|the|my) |imagine (?:you are|yourself)|"
                 r"pretend (?:to be|you are)|you are an?\b|act as|roleplay|role-play)"),
            _low(r"\b(?:in the style|from the perspective) of\b", "style perspective"),
            _cased(r"\A\W*[Aa]s [A-Z][\w.'-]+(?: [A-Z][\w.'-]+)*,", "as"),
        )),
        (_X, 5.5, "counterfactual", _either(
            _low(r"\bwhat if\b|\bwhat would have happened if\b", "if", also="what"),
            _low(r"\bhow (?:would|might) .{3,80} (?:be different|have changed|change|differ) if\b",
                 "if", also="how"),
            _low(r"\bif\b[^.?!\n]{3,80}\bhad (?:never|not|been)\b", "if", also="had"),
        )),
        (_S, 3.75, "extraction", _low(r"\A\W*(?:please\s+)?extract\b", opens="please extract")),
        (_S, 2.5, "lookup", _either(
            _low(r"\A\W*(?:please\s+)?(?:identify|classify|categorize|indicate|name|list|"
                 r"define|tell me|give (?:me )?(?:some )?examples|provide (?:me with )?a list)\b",
                 opens="please identify classify categorize indicate name list define tell give "
                 "provide"),
            _low(r"choose the correct answer|which of the following", "correct following"),
        )),
    )
# fmt: on


@dataclass(frozen=True, slots=True)
class _RuleBook:
    """The built-in rules' tests in table order, each with the signal of its rule, and which
    tests each word is needed by."""

    tests: tuple[tuple[_Signal, _Test], ...]
    by_word: Mapping[str, frozenset[int]]
    words: frozenset[str]  # the words any test needs
    by_opener: Mapping[str, frozenset[int]]
    always: frozenset[int]  # the tests that name no word


@functools.cache
def _rulebook() -> _RuleBook:
    """The index `_builtin` picks its tests from, built with the rules on first use."""
    tests: list[tuple[_Signal, _Test]] = []
    by_word: dict[str, set[int]] = {}
    by_opener: dict[str, set[int]] = {}
    always: set[int] = set()
    for task, weight, name, checks in _rules():
        signal = (task, weight, name)
        for check in checks:
            for word in check.needs:
                by_word.setdefault(word, set()).add(len(tests))
            for word in check.opens:
                by_opener.setdefault(word, set()).add(len(tests))
            if not check.needs and not check.opens:
                always.add(len(tests))
            tests.append((signal, check.test))
    words = {word: frozenset(at) for word, at in by_word.items()}
    openers = {word: frozenset(at) for word, at in by_opener.items()}
    return _RuleBook(tuple(tests), words, frozenset(words), openers, frozenset(always))


# -- the trained model -------------------------------------------------------------------------

_INDENTED = re.compile(r"^(?:    |\t)\S", re.M)
_CODE_LINE = re.compile(r"^\s*(?:def|class|function|public|import|from|#include)\b", re.M)
# Wherever `_CODE_LINE` matches, one of these is a word of the text: a set test goes first.
_CODE_WORDS = frozenset("def class function public import from include".split())


def _bucket(n: int, edges: tuple[int, ...]) -> int:
    """The number of edges below n: 0 for n <= edges[0], len(edges) above the last."""
    return bisect.bisect_left(edges, n)


def features(text: str) -> set[str]:
    """The model's features of a text: words, word pairs, the opening words and its shape."""
    return _features(_read(text))


def _features(t: _Text) -> set[str]:
    tokens, low = t.tokens, t.low
    found = set(t.words)
    found.update(map(" ".join, itertools.pairwise(tokens)))
    if tokens:
        found.add(f"^{tokens[0]}")
        if len(tokens) > 1:
            found.add(f"^{tokens[0]} {tokens[1]}")
    found.add(f"len:{_bucket(len(tokens), (5, 10, 20, 40, 80, 160, 320))}")
    numbers = len(_NUMBER.findall(low)) if t.digits else 0
    found.add(f"num:{_bucket(numbers, (0, 1, 2, 4, 8))}")
    found.add(f"nl:{_bucket(low.count(chr(10)), (0, 1, 3, 8, 20))}")
    if "```" in low:
        found.add("!fence")
    if ("    " in low or "\t" in low) and _INDENTED.search(low):
        found.add("!indent")
    if not _CODE_WORDS.isdisjoint(t.words) and _CODE_LINE.search(low):
        found.add("!codeline")
    if low.rstrip().endswith("?"):
        found.add("!qend")
    return found


@dataclass(frozen=True, slots=True)
class _Model:
    classes: tuple[TaskClass, ...]
    bias: tuple[float, ...]
    weights: Mapping[str, tuple[int, ...]]  # feature -> one weight per class, times `scale`
    positions: tuple[int, ...]  # where each of `classes` is in TEXT_CLASSES
    unit: float = 1.0  # 1 / scale: applied once to each sum, not to 100k weights at load


class _Weights(msgspec.Struct):
    """The shape of `data/classifier.json`; msgspec builds it in C (~20 ms instead of ~70)."""

    classes: list[str]
    scale: float
    bias: list[float]
    weights: dict[str, tuple[int, ...]]


@functools.cache
def _model() -> _Model | None:
    """The trained weights, read once on first use; None if the package ships none."""
    from importlib import resources  # only here: it costs more to import than this module

    try:
        raw = resources.files("stellwerk").joinpath("data/classifier.json").read_bytes()
    except FileNotFoundError:
        return None
    data = msgspec.json.decode(raw, type=_Weights)
    classes = tuple(TaskClass(c) for c in data.classes)
    bias = tuple(b / data.scale for b in data.bias)
    positions = tuple(_POSITION[c] for c in classes)
    return _Model(classes, bias, data.weights, positions, 1.0 / data.scale)


def preload() -> None:
    """Read the weights now: the gateway does it before it listens, so no request waits."""
    _model()


def _model_logits(text: _Text) -> list[float] | None:
    """The model's score per class (in `TEXT_CLASSES` order), or None when the package ships no
    weights. Features it has no weights for count only in the norm."""
    model = _model()
    if model is None:
        return None
    found = _features(text)
    rows = filter(None, map(model.weights.get, found))
    unit = model.unit
    sums = [sum(column) * unit for column in zip(*rows, strict=True)] or [0.0] * len(model.classes)
    norm = 1.0 / math.sqrt(len(found))
    logits = [0.0] * len(TEXT_CLASSES)
    for at, b, s in zip(model.positions, model.bias, sums, strict=True):
        logits[at] = b + norm * s
    return logits
