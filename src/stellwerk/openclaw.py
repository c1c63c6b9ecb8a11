"""`stellwerk openclaw`: the OpenClaw config block for this gateway, and merging it into the
user's `openclaw.json` without touching anything else.

OpenClaw reads `~/.openclaw/openclaw.json` (JSON5: comments, unquoted keys, trailing commas).
Stellwerk appears there as two custom providers, `stellwerk` (OpenAI Chat Completions) and
`stellwerk-anthropic` (Anthropic Messages, for the fallback), with `stellwerk/auto` as the primary
model and `stellwerk/auto:heartbeat` as the heartbeat model.

`--apply` edits the file through json-five's round-trip model, so the user's comments and layout
stay as they were; only the keys in `OWNED` change. The JSON5 library is imported here, inside
the functions that need it, never at `stellwerk` import time.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import StellwerkError

if TYPE_CHECKING:
    from json5.model import JSONObject, Key, Value

    from .policy import Policy

PROVIDER = "stellwerk"
ANTHROPIC_PROVIDER = "stellwerk-anthropic"
PRIMARY = f"{PROVIDER}/auto"
FALLBACK = f"{ANTHROPIC_PROVIDER}/auto"
HEARTBEAT = f"{PROVIDER}/auto:heartbeat"

# apiKey values this command writes itself: an existing apiKey that is one of them may be replaced
KEY_PLACEHOLDER = "REPLACE-WITH-A-STELLWERK-CLIENT-KEY"
NO_KEY_NEEDED = "any-non-empty-text"
_PLACEHOLDERS = {KEY_PLACEHOLDER, NO_KEY_NEEDED}

# the keys `--apply` owns; everything else in the file is the user's and stays as it is
OWNED = (
    f"models.providers.{PROVIDER}",
    f"models.providers.{ANTHROPIC_PROVIDER}",
    "agents.defaults.model.primary",
    "agents.defaults.model.fallbacks",  # only when absent or pointing at Stellwerk already
    "agents.defaults.heartbeat.model",
)

_ENV_REF = re.compile(r"^\$\{([A-Z_][A-Z0-9_]*)(?::-[^}]*)?\}$")  # what both can substitute
_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_CLIENT_KEYS_ENV = "STELLWERK_API_KEYS"


class OpenClawConfigError(StellwerkError):
    """The user's openclaw.json cannot be read or merged; the message says why (exit 1)."""


# -- the block -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """The OpenClaw settings for one Stellwerk configuration."""

    data: dict[str, Any]
    api_key: str
    key_note: str  # shown as a comment beside each apiKey

    def text(self) -> str:
        """The block as JSON5, with the apiKey explained in a comment."""
        return render(self.data, comments={"apiKey": self.key_note}) + "\n"


def client_host(host: str) -> str:
    """The address a client uses for a gateway bound to `host` (a wildcard is this machine)."""
    if host in ("0.0.0.0", "::", "[::]", "", "*"):
        return "127.0.0.1"
    if ":" in host and not host.startswith("["):
        return f"[{host}]"  # an IPv6 literal in a URL
    return host


def client_key(policy: Policy, config_file: Path | None, env: Mapping[str, str]) -> tuple[str, str]:
    """(apiKey value, comment) for OpenClaw.

    The gateway's client key is read from an environment variable when the Stellwerk config
    names one (`api_keys: ["${MY_GATEWAY_KEY}"]`): OpenClaw substitutes `${VAR}` in its
    config too, so both read the same variable. Otherwise a placeholder: one that tells the user
    to paste a client key when the gateway requires keys, or any text when it does not.
    """
    from_env = env.get(_CLIENT_KEYS_ENV)
    if from_env is not None:  # $STELLWERK_API_KEYS overrides the file (comma-separated)
        if any(k.strip() for k in from_env.split(",")):
            return KEY_PLACEHOLDER, f"one of the client keys in ${_CLIENT_KEYS_ENV}"
        return NO_KEY_NEEDED, "the gateway needs no client key: any non-empty text works"
    if policy.gateway.api_keys:
        for raw in _raw_api_keys(config_file):
            match = _ENV_REF.match(raw.strip())
            if match and env.get(match.group(1)):  # not a `${VAR:-default}` falling back
                name = match.group(1)
                return "${" + name + "}", f"${name}: Stellwerk's gateway.api_keys read it too"
        return KEY_PLACEHOLDER, "one of the client keys in Stellwerk's gateway.api_keys"
    return NO_KEY_NEEDED, "the gateway needs no client key: any non-empty text works"


def _raw_api_keys(config_file: Path | None) -> list[str]:
    if config_file is None:
        return []
    from .config import read_config_file

    gateway = read_config_file(config_file).get("gateway")
    keys = gateway.get("api_keys") if isinstance(gateway, dict) else None
    return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []


def build_block(policy: Policy, api_key: str, key_note: str = "") -> Block:
    """The providers, primary/fallbacks and heartbeat model for the gateway of `policy`."""
    origin = f"http://{client_host(policy.gateway.host)}:{policy.gateway.port}"
    auto = {"id": "auto", "name": "Stellwerk (auto)", "input": ["text"]}
    limits = {"contextWindow": 200000, "maxTokens": 8192}
    heartbeat = {"id": "auto:heartbeat", "name": "Stellwerk (heartbeat)", "input": ["text"]}
    data = {
        "models": {
            "providers": {
                PROVIDER: {
                    "baseUrl": f"{origin}/v1",
                    "apiKey": api_key,
                    "api": "openai-completions",
                    "models": [
                        {**auto, **limits},
                        {**heartbeat, "contextWindow": 200000, "maxTokens": 1024},
                    ],
                },
                ANTHROPIC_PROVIDER: {
                    "baseUrl": origin,  # the Anthropic SDK adds /v1 itself
                    "apiKey": api_key,
                    "api": "anthropic-messages",
                    "models": [{**auto, **limits}],
                },
            }
        },
        "agents": {
            "defaults": {
                "model": {"primary": PRIMARY, "fallbacks": [FALLBACK]},
                "heartbeat": {"model": HEARTBEAT},
            }
        },
    }
    return Block(data=data, api_key=api_key, key_note=key_note)


def block_for(config_path: Path | None, env: Mapping[str, str] | None = None) -> Block:
    """The block for the Stellwerk configuration in force (`--config`, `$STELLWERK_CONFIG`...)."""
    from .config import find_config, load_policy

    env = os.environ if env is None else env
    policy = load_policy(config_path, env=env)
    api_key, note = client_key(policy, find_config(config_path), env)
    return build_block(policy, api_key, note)


# -- JSON5 rendering -------------------------------------------------------------------------


def render(
    value: Any,
    base: str = "",
    step: str = "  ",
    comments: Mapping[str, str] | None = None,
    quote: bool = False,
) -> str:
    """`value` as JSON5 in OpenClaw's documented style: unquoted keys, trailing commas, small
    objects on one line; `comments` adds `// text` after a key's line (by key name); `quote`
    quotes every key (for a file written in plain JSON style)."""
    comments = comments or {}
    if isinstance(value, dict):
        if not value:
            return "{}"
        if _flat(value):
            inner = ", ".join(
                f"{_key(k, quote)}: {render(v, quote=quote)}" for k, v in value.items()
            )
            if len(inner) + len(base) < 96:
                return "{ " + inner + " }"
        pad = base + step
        lines = []
        for k, v in value.items():
            note = comments.get(k) if isinstance(v, str) else None
            line = f"{pad}{_key(k, quote)}: {render(v, pad, step, comments, quote)},"
            lines.append(f"{line}  // {note}" if note else line)
        return "{\n" + "\n".join(lines) + "\n" + base + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        items = [render(v, base + step, step, comments, quote) for v in value]
        if all(_flat(v) for v in value) and sum(len(i) + 2 for i in items) + len(base) < 96:
            return "[" + ", ".join(items) + "]"
        pad = base + step
        return "[\n" + "".join(f"{pad}{i},\n" for i in items) + base + "]"
    return json.dumps(value, ensure_ascii=False)


def _flat(value: Any) -> bool:
    if isinstance(value, dict):
        return all(
            not isinstance(v, dict | list)
            or (isinstance(v, list) and all(not isinstance(i, dict | list) for i in v))
            for v in value.values()
        )
    return not isinstance(value, list)


def _key(name: str, quote: bool = False) -> str:
    if _IDENTIFIER.match(name) and not quote:
        return name
    return json.dumps(name, ensure_ascii=False)


# -- where the file is -----------------------------------------------------------------------


def default_config_file(env: Mapping[str, str] | None = None) -> Path:
    """OpenClaw's config file: `$OPENCLAW_CONFIG_PATH`, `$OPENCLAW_STATE_DIR/openclaw.json`, or
    `~/.openclaw/openclaw.json` (home: `$OPENCLAW_HOME`, else `$HOME`), as OpenClaw documents."""
    env = os.environ if env is None else env
    if path := env.get("OPENCLAW_CONFIG_PATH", "").strip():
        return Path(path).expanduser()
    if state := env.get("OPENCLAW_STATE_DIR", "").strip():
        return Path(state).expanduser() / "openclaw.json"
    home = env.get("OPENCLAW_HOME", "").strip()
    return (Path(home).expanduser() if home else Path.home()) / ".openclaw" / "openclaw.json"


# -- merging ---------------------------------------------------------------------------------


@dataclass
class Merge:
    """What `--apply` would do to one file."""

    path: Path
    old_text: str | None  # None: the file does not exist
    new_text: str
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.old_text != self.new_text

    def diff(self) -> str:
        old = (self.old_text or "").splitlines(keepends=True)
        new = self.new_text.splitlines(keepends=True)
        before = str(self.path) if self.old_text is not None else "/dev/null"
        lines = difflib.unified_diff(old, new, fromfile=before, tofile=str(self.path))
        return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def plan_merge(path: Path, block: Block) -> Merge:
    """Read `path` (JSON5) and work out the merged text; raises OpenClawConfigError."""
    try:
        old_text: str | None = path.read_text("utf-8")
    except FileNotFoundError:
        old_text = None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise OpenClawConfigError(f"cannot read {path}: {reason}") from None
    return merge_text(path, old_text, block)


def merge_text(path: Path, old_text: str | None, block: Block) -> Merge:
    """The merged text for `old_text` (None or blank: a new file holding just the block)."""
    if old_text is None or not old_text.strip():
        new_text = render(block.data, comments={"apiKey": block.key_note}) + "\n"
        return Merge(path, old_text, new_text, ["a new file with just the Stellwerk block"])
    json5 = _json5()
    try:
        data = json5.loads(old_text)
    except ValueError as exc:
        first = str(exc).strip().splitlines()
        raise OpenClawConfigError(
            f"{path} is not valid JSON5 ({first[0] if first else 'parse error'}); "
            "fix it (`openclaw config validate` shows where) or pass another --file"
        ) from None
    if not isinstance(data, dict):
        raise OpenClawConfigError(
            f"{path} holds a JSON5 {type(data).__name__}, not an object; "
            "OpenClaw's config is an object ({ models: ..., agents: ... })"
        )
    notes: list[str] = []
    edits = _edits(data, block, notes)
    expected = copy.deepcopy(data)
    for keys, value in edits:
        _set_plain(expected, keys, value, path)
    if expected == data:
        return Merge(path, old_text, old_text, ["already set up for Stellwerk; nothing to change"])
    edited = _edit_keeping_layout(old_text, edits, block.key_note)
    if edited is None or _loads_or_none(edited) != expected:
        notes.append("the file's comments and layout could not be kept; rewrote it as JSON5")
        edited = render(expected, comments={"apiKey": block.key_note}) + "\n"
    return Merge(path, old_text, edited, notes)


def _edits(
    data: dict[str, Any], block: Block, notes: list[str]
) -> list[tuple[tuple[str, ...], Any]]:
    """(key path, value) pairs: only keys in OWNED, and fallbacks only if they are ours."""
    edits: list[tuple[tuple[str, ...], Any]] = []
    providers = block.data["models"]["providers"]
    for name in (PROVIDER, ANTHROPIC_PROVIDER):
        new = copy.deepcopy(providers[name])
        old = _get(data, ("models", "providers", name))
        old_key = old.get("apiKey") if isinstance(old, dict) else None
        ours = isinstance(old_key, str) and old_key in _PLACEHOLDERS
        if old_key not in (None, "", new["apiKey"]) and not ours:  # a key or a SecretRef
            new["apiKey"] = old_key
            notes.append(f"kept the apiKey you had in models.providers.{name}")
        edits.append((("models", "providers", name), new))
    model = _get(data, ("agents", "defaults", "model"))
    if isinstance(model, str):  # the short form `model: "provider/id"` is just a primary
        edits.append(
            (("agents", "defaults", "model"), {"primary": PRIMARY, "fallbacks": [FALLBACK]})
        )
    else:
        primary = model.get("primary") if isinstance(model, dict) else None
        if isinstance(primary, str) and primary != PRIMARY:
            notes.append(f"agents.defaults.model.primary was {json.dumps(primary)}")
        edits.append((("agents", "defaults", "model", "primary"), PRIMARY))
        fallbacks = model.get("fallbacks") if isinstance(model, dict) else None
        if fallbacks is None or (
            isinstance(fallbacks, list)
            and fallbacks
            and all(
                isinstance(f, str) and f.startswith((f"{PROVIDER}/", f"{ANTHROPIC_PROVIDER}/"))
                for f in fallbacks
            )
        ):
            edits.append((("agents", "defaults", "model", "fallbacks"), [FALLBACK]))
        else:
            notes.append(
                f"kept your agents.defaults.model.fallbacks {json.dumps(fallbacks)}; "
                f'add "{FALLBACK}" to it to fall back to Stellwerk\'s Anthropic endpoint'
            )
    edits.append((("agents", "defaults", "heartbeat", "model"), HEARTBEAT))
    return edits


def _get(data: Any, keys: Sequence[str]) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _set_plain(data: dict[str, Any], keys: Sequence[str], value: Any, path: Path) -> None:
    node = data
    for i, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            where = ".".join(keys[: i + 1])
            raise OpenClawConfigError(
                f"{path}: {where} is {json.dumps(child)}, not an object; "
                "Stellwerk's settings go inside it: fix it by hand or remove it"
            )
        node = child
    node[keys[-1]] = copy.deepcopy(value)


def _loads_or_none(text: str) -> Any:
    try:
        return _json5().loads(text)
    except ValueError:
        return None


def _json5() -> Any:
    try:
        import json5  # json-five: a JSON5 parser that keeps comments in a round trip
        import json5.loader
    except ImportError:  # pragma: no cover - a dependency of stellwerk
        raise OpenClawConfigError(
            "reading openclaw.json needs the json-five package: pip install json-five"
        ) from None
    return json5


# -- editing the file in place (comments and layout kept) -----------------------------------


def _edit_keeping_layout(
    text: str, edits: Sequence[tuple[tuple[str, ...], Any]], key_note: str
) -> str | None:
    """Apply `edits` to the JSON5 model of `text` and dump it; None if the model will not do."""
    from json5.dumper import ModelDumper
    from json5.loader import ModelLoader
    from json5.model import JSONObject

    json5 = _json5()
    try:
        model = json5.loads(text, loader=ModelLoader())
    except ValueError:
        return None
    if not isinstance(model.value, JSONObject):
        return None
    comments = {"apiKey": key_note}
    try:
        for keys, value in edits:
            _set_node(model.value, list(keys), value, "", comments, _quoted_style(model.value))
    except ValueError:
        return None
    dumped = json5.dumps(model, dumper=ModelDumper())
    return str(dumped)


def _node_name(key: Key) -> str | None:
    from json5.model import Identifier, String

    if isinstance(key, Identifier):
        return key.name
    if isinstance(key, String):
        return key.characters
    return None


def _gaps(obj: JSONObject) -> list[list[Any]]:
    """The whitespace and comments before each key of `obj`."""
    return [obj.leading_wsc] + [k.wsc_before for k in obj.keys[1:]]


def _layout(obj: JSONObject, base: str) -> tuple[bool, str]:
    """(one key per line?, indentation of the keys) of `obj`, guessed from its existing keys."""
    for gap in _gaps(obj) if obj.keys else []:
        for item in reversed(gap):
            if isinstance(item, str) and "\n" in item:
                return True, item.rsplit("\n", 1)[1]
    return not obj.keys, base + "  "


def _quoted_style(root: JSONObject) -> bool:
    """Whether the file quotes every key, as plain JSON does (then so do the keys added)."""
    from json5.model import Identifier, JSONObject, walk

    objects = [n for n in walk(root) if isinstance(n, JSONObject)]
    keys = [k for o in objects for k in o.keys]
    return bool(keys) and not any(isinstance(k, Identifier) for k in keys)


def _parse_value(text: str) -> Value:
    from json5.loader import ModelLoader

    node: Value = _json5().loads(text, loader=ModelLoader()).value
    node.wsc_before, node.wsc_after = [], []
    return node


def _parse_key(name: str, quote: bool) -> Key:
    from json5.loader import ModelLoader

    obj = _json5().loads("{" + _key(name, quote) + ": 0}", loader=ModelLoader()).value
    key: Key = obj.keys[0]
    key.wsc_before, key.wsc_after = [], []
    return key


def _set_node(
    obj: JSONObject,
    keys: list[str],
    value: Any,
    base: str,
    comments: Mapping[str, str],
    quote: bool,
) -> None:
    from json5.model import JSONObject

    multiline, indent = _layout(obj, base)
    step = indent[len(base) :] if indent.startswith(base) and len(indent) > len(base) else "  "
    found = [i for i, k in enumerate(obj.keys) if _node_name(k) == keys[0]]
    if found:
        index = found[-1]  # JSON5 keeps the last of duplicate keys
        old = obj.values[index]
        if len(keys) > 1:
            if not isinstance(old, JSONObject):
                raise ValueError("not an object")  # caught by the round-trip check's fallback
            _set_node(old, keys[1:], value, indent, comments, quote)
            return
        new = _parse_value(render(value, indent, step, comments, quote))
        new.wsc_before, new.wsc_after = old.wsc_before or [" "], old.wsc_after
        obj.values[index] = new
        return
    for key in reversed(keys[1:]):
        value = {key: value}
    _insert(obj, keys[0], value, base, indent, step, multiline, comments, quote)


def _insert(
    obj: JSONObject,
    name: str,
    value: Any,
    base: str,
    indent: str,
    step: str,
    multiline: bool,
    comments: Mapping[str, str],
    quote: bool,
) -> None:
    from json5.model import LineComment

    key = _parse_key(name, quote)
    new = _parse_value(render(value, indent, step, comments, quote))
    new.wsc_before = [" "]
    if not obj.keys:
        kept = list(obj.leading_wsc)
        while kept and isinstance(kept[-1], str) and not kept[-1].strip():
            kept.pop()
        obj.leading_wsc = [*kept, "\n" + indent]
        new.wsc_after = ["\n" + base]
        obj.keys.append(key)
        obj.values.append(new)
        return
    last = obj.values[-1]
    trail = list(obj.trailing_comma.wsc_after if obj.trailing_comma else last.wsc_after)
    tail = trail.pop() if trail and isinstance(trail[-1], str) and not trail[-1].strip() else ""
    if not multiline and "\n" in render(value, indent, step, comments, quote):
        multiline, tail = True, "\n" + base  # a block does not fit in a one-line object
    line_comment = any(isinstance(item, LineComment) for item in trail)
    key.wsc_before = [*trail, ("\n" + indent) if multiline or line_comment else " "]
    if obj.trailing_comma:
        obj.trailing_comma.wsc_after = [tail] if tail else []
    else:
        last.wsc_after = []
        new.wsc_after = [tail] if tail else []
    obj.keys.append(key)
    obj.values.append(new)


# -- writing ---------------------------------------------------------------------------------


def write_merge(merge: Merge, now: Callable[[], datetime] = datetime.now) -> Path | None:
    """Write the merged file: a backup of the old one beside it first (returned), then the new
    text, atomically; a new file (and its directory) is created readable by the user only."""
    target = merge.path
    backup: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if merge.old_text is not None:
            stamp = now().strftime("%Y%m%d-%H%M%S")
            backup = target.with_name(f"{target.name}.bak-{stamp}")
            for n in range(2, 100):
                if not backup.exists():
                    break
                backup = target.with_name(f"{target.name}.bak-{stamp}-{n}")
            shutil.copy2(target, backup)
        real = target.resolve() if target.is_symlink() else target
        mode = real.stat().st_mode & 0o777 if real.exists() else 0o600
        fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", dir=real.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(merge.new_text)
            os.chmod(tmp, mode)
            os.replace(tmp, real)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise OpenClawConfigError(f"cannot write {target}: {exc.strerror or exc}") from None
    return backup
