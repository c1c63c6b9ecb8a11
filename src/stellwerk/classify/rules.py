"""The built-in rules: strong signals the training data under-represents.

They shift the model's scores for signals it learned too weakly (code syntax, word problems,
writing tasks). Each rule's tests run only when a word they need occurs (one set intersection
finds them), so the patterns, the cost, are tried on few texts. Heartbeats have their own rules
(`heartbeat.py`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..types import TaskClass
from .text import NUMBER, Text

Signal = tuple[TaskClass, float, str]  # a class, the weight added to its score, and why


def opener(tokens: list[str]) -> str:
    """The first word (or number, read as 0) of a text: where a pattern `\\A\\W*` leads to."""
    for token in tokens:
        if token[0].isalnum() or token[0] == "_":
            return token
    return ""


def builtin(read: Text) -> list[Signal]:
    """The built-in rules that fire; a short question no rule claims is most likely a lookup.

    Only the tests whose words occur run (one set intersection finds them), in table order; a
    rule's later tests are skipped once one passed.
    """
    book = _rulebook()
    tried = book.always.union(
        *map(book.by_word.__getitem__, read.words & book.words),
        book.by_opener.get(opener(read.tokens), ()),
    )
    fired: list[Signal] = []
    for at in sorted(tried):
        signal, test = book.tests[at]
        if (not fired or fired[-1] is not signal) and test(read):
            fired.append(signal)
    if not fired and _SHORT_QUESTION.search(read.low):
        fired.append((TaskClass.SIMPLE, 1.25, "short question"))
    return fired


# -- built-in rules: strong signals the training data under-represents ------------------------

_Test = Callable[[Text], bool]


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

    def test(t: Text) -> bool:
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


def _word_problem(t: Text) -> bool:
    """A question about an amount, with the numbers to compute it from."""
    if _AMOUNT_WORDS.isdisjoint(t.words) or not _ASKS_AMOUNT.search(t.low):
        return False
    numbers = len(NUMBER.findall(t.low))
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
    "c python javascript typescript java golang rust ruby php kotlin swift scala haskell perl "
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
            r"endpoint|module|implementation)\b",
            "function program script method class algorithm query regex regular snippet code "
            "test tests api endpoint module implementation")),
        (_C, 1.9, "inline code", _low(r"`[\w.()\[\]'\"]+`", "`")),
        (_C, 3.1, "programming language", _either(
            _low(rf"\b(?:in|using|with)\s+{_LANG}(?!\w)|(?<!\w){_LANG}\s+(?:code|function|"
                 r"program|script|class|snippet|question|syntax|markup|query|tags?|"
                 rf"implementation|solution|version|method)\b|\(\s*{_LANG}\s*\)", _LANG_WORDS),
            _cased(r"\b(?:in|using|with) Go\b|\bGo (?:code|function|program|implementation)\b|"
                   r"\(Go\)", "go"),
        )),
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
            r"\bdeduce\b|\blogically\b|\bfirst-order logic\b|\bpredicates?\b|\bsyllogisms?\b|"
            r"\b(?:can we|can you|does (?:it|this)|is it possible to) (?:conclude|infer|deduce)\b|"
            r"\b(?:does|would) (?:this|that|it) (?:imply|entail)\b",
            "uncertain premise premises puzzle step deduce logically logic predicate predicates "
            "syllogism syllogisms conclude infer imply entail")),
        (_R, 2.5, "conditional logic", _either(  # if ..., then ...; either ... or ...
            _low(r"\beither\b[^.?!\n]{3,150}\bor\b", "either", also="if"),
            _low(r"\bat least one of\b|\b(?:it is|it's|we) (?:known|certain|given|know) that\b",
                 "least known certain given know", also="if"),
        )),
        (_R, 3.75, "estimate", _low(
            r"\bhow (?:many|much|long|far|fast|big|heavy)\b[^.?!\n]{3,120}\bwould\b|"
            r"\b(?:estimate|roughly how|approximately how|ballpark)\b",
            "how estimate roughly approximately ballpark")),
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
        (_X, 4.0, "asks for depth", _low(
            r"\b(?:in (?:great |more |full )?(?:detail|depth)|at length|comprehensive(?:ly)?|"
            r"thorough(?:ly)?|elaborate on|\d+ words)\b",
            "detail depth length comprehensive comprehensively thorough thoroughly elaborate "
            "words")),
        (_X, 2.5, "role play", _either(  # no `opens`: "roleplay" may open a longer first word
            _low(r"\A\W*(?:as (?:an?|the|my) |imagine (?:you are|yourself)|"
                 r"pretend (?:to be|you are)|you are (?:now )?(?:an?|the)\b|act as|roleplay|"
                 r"role-play|take on the (?:role|persona)|you(?:r|'re)? role-?play)"),
            _low(r"\b(?:take on|play|assume|in) the (?:role|persona) of\b", "role persona"),
            _cased(r"\A\W*You are (?:now )?[A-Z][\w.'-]+ [A-Z][\w.'-]+", "you"),
            _low(r"\b(?:in the style|from the perspective) of\b", "style perspective"),
            _cased(r"\A\W*[Aa]s [A-Z][\w.'-]+(?: [A-Z][\w.'-]+)*,", "as"),
        )),
        (_X, 6.5, "counterfactual", _either(
            _low(r"\bwhat if\b|\bwhat would have happened if\b", "if", also="what"),
            _low(r"\bhow (?:would|might) .{3,80} (?:be different|have changed|change|differ) if\b",
                 "if", also="how"),
            _low(r"\bif\b[^.?!\n]{3,80}\bhad (?:never|not|been)\b", "if", also="had"),
        )),
        (_S, 3.75, "extraction", _low(r"\A\W*(?:please\s+)?extract\b", opens="please extract")),
        (_S, 5.0, "arithmetic", _low(  # what is 2 + 2: a fact, no problem to work through
            r"\A\W*(?:what(?:'s| is)\s+)?\d+(?:\.\d+)?\s*[-+*/x]\s*\d+(?:\.\d+)?\s*[?.=]?\s*\Z",
            "0")),
        (_S, 2.5, "lookup", _either(
            _low(r"\A\W*(?:please\s+)?(?:identify|classify|categorize|indicate|name|list|"
                 r"define|tell me|give (?:me )?(?:some )?examples|provide (?:me with )?a list|"
                 r"find me|search(?: for| the web)?|look up|retrieve|fetch|"
                 r"i (?:want|would like|'d like) to know)\b",
                 opens="please identify classify categorize indicate name list define tell give "
                 "provide find search look i retrieve fetch"),
            _low(r"choose the correct answer|which of the following", "correct following"),
        )),
    )
# fmt: on


@dataclass(frozen=True, slots=True)
class _RuleBook:
    """The built-in rules' tests in table order, each with the signal of its rule, and which
    tests each word is needed by."""

    tests: tuple[tuple[Signal, _Test], ...]
    by_word: Mapping[str, frozenset[int]]
    words: frozenset[str]  # the words any test needs
    by_opener: Mapping[str, frozenset[int]]
    always: frozenset[int]  # the tests that name no word


@functools.cache
def _rulebook() -> _RuleBook:
    """The index `_builtin` picks its tests from, built with the rules on first use."""
    tests: list[tuple[Signal, _Test]] = []
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
