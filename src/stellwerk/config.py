"""Loading `stellwerk.yaml` into a validated `Policy`.

The raw file is merged over the built-in default (`data/default.yaml`) and the model catalog
(`data/catalog.yaml`), `${VAR}` references are expanded, the shape is checked by msgspec and the
meaning (every model named exists, every class has a chain, durations parse) by the functions
below. Every problem becomes a `ConfigError` whose message starts with the key path, so a user
reads `tasks.code.fallbacks[1]: unknown model 'opnai/o3-mini' (did you mean openai/o3-mini?)`
instead of a traceback.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec
import yaml

from .errors import ConfigError
from .policy import (
    LOCAL_PROVIDER_TYPES,
    PROVIDER_TYPES,
    BudgetLimit,
    BudgetPolicy,
    ClassifierRule,
    ContextPolicy,
    CooldownPolicy,
    Credential,
    EmergencyPolicy,
    Framing,
    GatewayPolicy,
    HealthPolicy,
    LedgerPolicy,
    ModelSpec,
    Policy,
    ProviderSpec,
    RoutingMode,
    RoutingPolicy,
    Secret,
    StatePolicy,
    TaskPolicy,
    masked_url,
)
from .types import TEXT_CLASSES, TaskClass, Tier

CONFIG_ENV = "STELLWERK_CONFIG"
CONFIG_NAME = "stellwerk.yaml"
BUILT_IN = "built-in defaults"  # the source named when no config file is in force
RESERVED = {"auto"}  # virtual model names that no alias may take
Number = float | int | str
_T = TypeVar("_T")


class _Struct(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class _Price(_Struct):
    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    cache_write_1h: float | None = None


class _Model(_Struct):
    # left out: from the price database, Ollama or the defaults (`passthrough.build`)
    tier: Literal["premium", "mid", "budget", "local", "aggregator"] | None = None
    price: _Price | None = None
    context_window: int | None = None
    max_output: int | None = None
    capabilities: list[Literal["tools", "vision", "reasoning", "code"]] = []
    aliases: list[str] = []
    upstream: str | None = None
    api: Literal["chat", "responses"] | None = None
    parameters: str | None = None
    cache_min_tokens: int = 1024
    cache_retention: Literal["24h"] | None = None


class _Provider(_Struct):
    type: str | None = None
    base_url: str | None = None
    keys: list[str] = []
    billing_cooldown: Number | None = None
    connect_timeout: Number = 10
    read_timeout: Number = 300
    headers: dict[str, str] = {}
    local: bool | None = None


class _Task(_Struct):
    primary: str
    fallbacks: list[str] = []
    context: Literal["full", "minimal", "fit"] = "full"
    cache: Literal["5m", "1h", "auto", "off"] = "5m"


class _Routing(_Struct):
    mode: Literal["auto", "shadow", "off"] = "auto"
    classes: list[str] = msgspec.field(default_factory=lambda: [str(t) for t in TEXT_CLASSES])
    default_task: str = "complex"
    min_confidence: float = 0.5
    cache_aware: bool = True


class _RateLimit(_Struct):
    base: Number = 30
    max: Number = 600
    retry_after_cap: Number = 300


class _Probe(_Struct):
    every: Number = 300
    billing: bool = False


class _Emergency(_Struct):
    rate_limits: int = 5
    window: Number = "5m"


class _Health(_Struct):
    interval: Number = "10s"


class _Cooldowns(_Struct):
    rate_limit: _RateLimit = msgspec.field(default_factory=_RateLimit)
    breaker: Number = 30
    probe: _Probe = msgspec.field(default_factory=_Probe)


class _Limit(_Struct):
    window: Literal["daily", "weekly"]
    tokens: int | None = None
    usd: float | None = None
    scope: str = "all"


class _Budgets(_Struct):
    timezone: str = "UTC"
    warn_at: Number = 0.8
    downgrade_at: Number = 0.9
    downgrade_tiers: list[Literal["premium", "mid", "budget", "local", "aggregator"]] = (
        msgspec.field(default_factory=lambda: ["premium"])
    )
    at_limit: Literal["local-only", "block"] = "local-only"
    limits: list[_Limit] = []
    webhook: str | None = None


class _Rule(_Struct):
    task: str
    pattern: str
    weight: float = 1.0


class _Framing(_Struct):
    action: Literal["skip", "strip", "heartbeat"]
    pattern: str


class _Classifier(_Struct):
    rules: list[_Rule] = []
    framings: dict[str, Any] = {}  # by name (each converted on its own); null switches one off


class _State(_Struct):
    backend: Literal["sqlite", "memory", "redis"] = "sqlite"
    path: str = ""
    url: str = ""
    prefix: str = "stellwerk:"
    cache: Number = 0


class _Gateway(_Struct):
    host: str = "127.0.0.1"
    port: int = 4711
    api_keys: list[str] = []
    admin_keys: list[str] = []
    max_body: int | str = "32MiB"
    inline_notice: bool = False
    dashboard: bool = True


class _Ledger(_Struct):
    backend: Literal["sqlite", "memory", "postgres"] = "sqlite"
    path: str = ""
    url: str = ""
    retention: Number = "90d"
    store_content: bool = False


class _Config(_Struct):
    version: Literal[1] = 1
    routing: _Routing = msgspec.field(default_factory=_Routing)
    providers: dict[str, Any] = {}  # each entry converted on its own, for exact error paths
    models: dict[str, Any] = {}
    stack: list[str] = []
    tasks: dict[str, Any] = {}
    cooldowns: _Cooldowns = msgspec.field(default_factory=_Cooldowns)
    emergency: _Emergency = msgspec.field(default_factory=_Emergency)
    health: _Health = msgspec.field(default_factory=_Health)
    budgets: _Budgets = msgspec.field(default_factory=_Budgets)
    classifier: _Classifier = msgspec.field(default_factory=_Classifier)
    state: _State = msgspec.field(default_factory=_State)
    gateway: _Gateway = msgspec.field(default_factory=_Gateway)
    ledger: _Ledger = msgspec.field(default_factory=_Ledger)


# -- public entry points ---------------------------------------------------------------------


def default_config_text(full: bool = True) -> str:
    """What `stellwerk config init` writes: every default (`full`), or the short commented
    template of the settings users change (`config init` without `--full`)."""
    name = "data/default.yaml" if full else "data/template.yaml"
    return resources.files("stellwerk").joinpath(name).read_text("utf-8")


def user_config_path(env: Mapping[str, str] | None = None) -> Path:
    """`$XDG_CONFIG_HOME/stellwerk/stellwerk.yaml` (`~/.config/stellwerk/stellwerk.yaml`)."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".config"
    return root / "stellwerk" / CONFIG_NAME


def find_config(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Path | None:
    """The config file in force, the first of: the argument (`--config`), `$STELLWERK_CONFIG`,
    `./stellwerk.yaml`, `$XDG_CONFIG_HOME/stellwerk/stellwerk.yaml`. None: the built-in
    defaults. A file named by the argument or the variable must exist (reading it says so)."""
    if path is not None and str(path) != "":
        return Path(path)
    env = os.environ if env is None else env
    if named := env.get(CONFIG_ENV):
        return Path(named)
    local = Path(CONFIG_NAME)
    if local.is_file():
        return local
    user = user_config_path(env)
    return user if user.is_file() else None


def load_policy(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Policy:
    """Read, merge, expand and validate a config file (or the built-in default) into a Policy."""
    found = find_config(path)
    user: dict[str, Any] = {}
    if found is not None:
        user = read_config_file(found)
    return policy_from_dict(user, env=env, source=str(found) if found else BUILT_IN)


def policy_from_dict(
    user: Mapping[str, Any], *, env: Mapping[str, str] | None = None, source: str = "<dict>"
) -> Policy:
    """Validate a config mapping (as read from YAML) merged over the built-in defaults."""
    env = os.environ if env is None else env
    base = yaml.safe_load(default_config_text())
    catalog = yaml.safe_load(_catalog_text())
    base["models"] = catalog["models"]
    merged = _offs(_expand(_merge(base, dict(user)), env, ""))
    raw: _Config = _convert(merged)
    return _build(raw, source)


def raw_config(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The effective config as plain data, with secrets masked (for `config show`)."""
    policy = load_policy(path)
    found = find_config(path)
    user = read_config_file(found) if found else {}
    base = yaml.safe_load(default_config_text())
    merged = _expand(_merge(base, user), os.environ, "")
    for name, provider in merged.get("providers", {}).items():
        spec = policy.providers[name]
        provider["keys"] = [c.masked for c in spec.credentials]
    if "gateway" in merged:
        merged["gateway"]["api_keys"] = [k.masked() for k in policy.gateway.api_keys]
        merged["gateway"]["admin_keys"] = [k.masked() for k in policy.gateway.admin_keys]
    for section in ("state", "ledger"):  # server URLs may carry a password
        if merged.get(section, {}).get("url"):
            merged[section]["url"] = masked_url(str(merged[section]["url"]))
    return dict(merged)


# -- reading and merging ---------------------------------------------------------------------


def _catalog_text() -> str:
    return resources.files("stellwerk").joinpath("data/catalog.yaml").read_text("utf-8")


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError("", f"{path}: not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("", f"{path}: expected a mapping at the top level")
    return data


def _offs(merged: dict[str, Any]) -> dict[str, Any]:
    """`off` where YAML 1.1 read a bare `off` as false: `routing.mode: off`, `tasks.X.cache: off`
    are what users write, and the settings take no booleans."""
    routing = merged.get("routing")
    if isinstance(routing, dict) and routing.get("mode") is False:
        routing["mode"] = "off"
    for task in (merged.get("tasks") or {}).values():
        if isinstance(task, dict) and task.get("cache") is False:
            task["cache"] = "off"
    return merged


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge mappings; lists and scalars in `override` replace those in `base`."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: Any, env: Mapping[str, str], path: str) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string of a parsed YAML tree."""
    if isinstance(value, dict):
        return {k: _expand(v, env, _join(path, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        return _VAR.sub(lambda m: _lookup(m, env, path), value)
    return value


def _lookup(match: re.Match[str], env: Mapping[str, str], path: str) -> str:
    name, default = match.group(1), match.group(2)
    if name in env and (env[name] or default is None):
        return env[name]
    if default is not None:
        return default
    raise ConfigError(
        path, f"environment variable {name} is not set (write ${{{name}:-}} to allow)"
    )


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


_MSGSPEC_AT = re.compile(r"^(.*?)(?: - at `\$(.*)`)?$", re.S)


def _convert(data: Any, kind: type[_T] = _Config, path: str = "") -> _T:  # type: ignore[assignment]
    """msgspec's shape check, its error re-worded to start with the key path. Unknown keys are
    found first, in Stellwerk's own words and with a suggestion (`_unknown_keys`)."""
    if kind is not _Config and not isinstance(data, dict):
        raise ConfigError(path, f"expected a mapping, got {type(data).__name__}")
    _unknown_keys(data, kind, path)
    try:
        return msgspec.convert(data, kind, strict=False)
    except msgspec.ValidationError as exc:
        match = _MSGSPEC_AT.match(str(exc))
        assert match is not None
        message, where = match.group(1), (match.group(2) or "")
        raise ConfigError(f"{path}{where}".lstrip("."), message[0].lower() + message[1:]) from None


# Keys other tools (LiteLLM, mostly) use, with what Stellwerk calls them; by section type.
_FOREIGN_KEYS: dict[tuple[type, str], str] = {
    (_Provider, "api_key"): "keys",
    (_Provider, "api_keys"): "keys",
    (_Provider, "key"): "keys",
    (_Provider, "api_base"): "base_url",
    (_Provider, "base-url"): "base_url",
    (_Provider, "url"): "base_url",
    (_Config, "model_list"): "models",
    (_Config, "budget"): "budgets",
    (_Config, "provider"): "providers",
    (_Config, "model"): "models",
    (_Config, "task"): "tasks",
}


def _unknown_keys(data: Any, kind: Any, path: str) -> None:
    """ConfigError for the first key of `data` that the section type `kind` does not know:
    `routing: unknown field 'mdoe' (did you mean 'mode'?)`."""
    if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
        if not isinstance(data, dict):
            return  # msgspec says what is wrong with the shape
        fields = {f.encode_name: f.type for f in msgspec.structs.fields(kind)}
        for key, value in data.items():
            if key in fields:
                _unknown_keys(value, fields[key], _join(path, str(key)))
            else:
                raise ConfigError(path, _unknown_message(kind, str(key), path, list(fields)))
        return
    origin = getattr(kind, "__origin__", None)
    args = getattr(kind, "__args__", ()) or ()
    if origin is list and isinstance(data, list) and args:
        for i, item in enumerate(data):
            _unknown_keys(item, args[0], f"{path}[{i}]")
    elif args and origin is not dict and origin is not list:  # a union: its struct member
        structs = [a for a in args if isinstance(a, type) and issubclass(a, msgspec.Struct)]
        if len(structs) == 1 and isinstance(data, dict):
            _unknown_keys(data, structs[0], path)


def _unknown_message(kind: type, key: str, path: str, fields: list[str]) -> str:
    message = f"unknown field {key!r}"
    hint = _FOREIGN_KEYS.get((kind, key))
    if hint == "keys":  # LiteLLM's `api_key: os.environ/OPENAI_API_KEY`
        name = path.rpartition(".")[2] or "NAME"
        var = re.sub(r"[^A-Z0-9]+", "_", name.upper()) + "_API_KEY"
        return (
            f"{message} (did you mean 'keys'? Stellwerk takes a list of keys:"
            f' {path or "providers.NAME"}.keys: ["${{{var}}}"])'
        )
    if hint is None:
        close = difflib.get_close_matches(key.lower(), fields, n=1, cutoff=0.6)
        hint = close[0] if close else None
    if hint is not None:
        return f"{message} (did you mean {hint!r}?)"
    return f"{message} (one of {', '.join(fields)})"


# -- meaning ---------------------------------------------------------------------------------


def parse_duration(value: Number | None, path: str) -> float:
    """Seconds from `90`, `"90s"`, `"30m"`, `"2h"`, `"1h30m"`, `"500ms"`."""
    if value is None:
        return 0.0
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(path, f"duration must not be negative, got {value}")
        return float(value)
    text = str(value).strip().lower()
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", text)
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)|\s", "", text):
        raise ConfigError(path, f"expected a duration like 30s, 10m or 2h, got {value!r}")
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return float(sum(float(n) * units[u] for n, u in parts))


def parse_fraction(value: Number, path: str) -> float:
    """0.8 from `0.8`, `80` or `"80%"`."""
    text = str(value).strip()
    try:
        number = float(text.rstrip("%"))
    except ValueError:
        raise ConfigError(path, f"expected a percentage like 80%, got {value!r}") from None
    if text.endswith("%") or number > 1:
        number /= 100
    if not 0 < number <= 1:
        raise ConfigError(path, f"expected a percentage between 0 and 100, got {value!r}")
    return number


def _build(raw: _Config, source: str) -> Policy:
    providers = {
        name: _provider(name, _convert(p, _Provider, f"providers.{name}"))
        for name, p in raw.providers.items()
    }
    models = {
        mid: _model(mid, _convert(m, _Model, f"models.{mid}"), providers)
        for mid, m in raw.models.items()
    }
    aliases = _aliases(models)
    resolve = _resolver(models, aliases, providers)
    stack = tuple(resolve(m, f"stack[{i}]") for i, m in enumerate(raw.stack))
    tasks = _tasks(raw.tasks, resolve)
    return Policy(
        providers=providers,
        models=models,
        stack=stack,
        tasks=tasks,
        routing=_routing(raw.routing),
        cooldowns=_cooldowns(raw.cooldowns),
        emergency=_emergency(raw.emergency),
        health=HealthPolicy(parse_duration(raw.health.interval, "health.interval")),
        budgets=_budgets(raw.budgets, resolve, providers),
        rules=_rules(raw.classifier.rules),
        framings=_framings(raw.classifier.framings),
        state=_state(raw.state),
        gateway=_gateway(raw.gateway),
        ledger=_ledger(raw.ledger),
        source=source,
        aliases=aliases,
    )


def _provider(name: str, raw: _Provider) -> ProviderSpec:
    path = f"providers.{name}"
    kind = raw.type or name
    if kind not in PROVIDER_TYPES:
        choices = ", ".join(sorted(PROVIDER_TYPES))
        raise ConfigError(f"{path}.type", f"unknown provider type {kind!r} (one of {choices})")
    if not raw.base_url:
        raise ConfigError(f"{path}.base_url", "a base URL is required")
    if not re.match(r"^https?://[^/\s]+", raw.base_url):
        raise ConfigError(f"{path}.base_url", f"expected an http(s) URL, got {raw.base_url!r}")
    keys = [k.strip() for k in raw.keys if k and k.strip()]
    return ProviderSpec(
        name=name,
        type=kind,
        base_url=raw.base_url.rstrip("/"),
        credentials=tuple(Credential(f"{name}#{i + 1}", Secret(k)) for i, k in enumerate(keys)),
        billing_cooldown=parse_duration(
            raw.billing_cooldown if raw.billing_cooldown is not None else 7200,
            f"{path}.billing_cooldown",
        ),
        connect_timeout=parse_duration(raw.connect_timeout, f"{path}.connect_timeout"),
        read_timeout=parse_duration(raw.read_timeout, f"{path}.read_timeout"),
        headers=dict(raw.headers),
        local=raw.local if raw.local is not None else kind in LOCAL_PROVIDER_TYPES,
    )


def _model(model_id: str, raw: _Model, providers: Mapping[str, ProviderSpec]) -> ModelSpec:
    path = f"models.{model_id}"
    provider, _, name = model_id.partition("/")
    if not name:
        raise ConfigError(path, "model ids are written provider/model")
    if provider not in providers:
        raise ConfigError(path, f"unknown provider {provider!r}{_suggest(provider, providers)}")
    if raw.context_window is not None and raw.context_window <= 0:
        raise ConfigError(f"{path}.context_window", "must be a positive number of tokens")
    kind = providers[provider].type
    if raw.tier is None or raw.price is None or raw.context_window is None:
        return _completed(model_id, raw, providers[provider], name)
    default_api = "responses" if kind == "openai-codex" else "chat"
    price = raw.price
    for field in ("input", "output", "cache_read", "cache_write", "cache_write_1h"):
        value = getattr(price, field)
        if value is not None and value < 0:
            raise ConfigError(f"{path}.price.{field}", "must not be negative")
    # Anthropic's rule where the catalog names no cache price; elsewhere the input price.
    read, write, hour = (0.1, 1.25, 2.0) if kind == "anthropic" else (1.0, 1.0, 1.0)
    return ModelSpec(
        id=model_id,
        provider=provider,
        upstream=raw.upstream or name,
        tier=Tier(raw.tier),
        input_price=round(raw.price.input * 1_000_000),
        output_price=round(raw.price.output * 1_000_000),
        context_window=raw.context_window,
        max_output=raw.max_output or min(raw.context_window // 4, 8192),
        capabilities=frozenset(raw.capabilities),
        aliases=tuple(a.lower() for a in raw.aliases),
        api=raw.api or default_api,
        parameters=raw.parameters,
        cache_read_price=_micros(price.cache_read, price.input * read),
        cache_write_price=_micros(price.cache_write, price.input * write),
        cache_write_1h_price=_micros(price.cache_write_1h, price.input * hour),
        cache_min_tokens=raw.cache_min_tokens,
        cache_retention=raw.cache_retention,
    )


def _completed(model_id: str, raw: _Model, provider: ProviderSpec, name: str) -> ModelSpec:
    """A `models:` entry that leaves out the tier, the price or the window: the rest from the
    price database (a local model: free, window 8192 unless given)."""
    from dataclasses import replace

    from .passthrough import build

    spec = build(model_id, provider, raw.upstream or name)
    changes: dict[str, Any] = {
        "aliases": tuple(a.lower() for a in raw.aliases),
        "parameters": raw.parameters,
        "cache_min_tokens": raw.cache_min_tokens,
        "cache_retention": raw.cache_retention,
        "source": "catalog",
    }
    if raw.tier is not None:
        changes["tier"] = Tier(raw.tier)
    if raw.context_window is not None:
        changes["context_window"] = raw.context_window
        changes["max_output"] = min(raw.context_window // 4, 8192)
    if raw.max_output:
        changes["max_output"] = raw.max_output
    if raw.capabilities:
        changes["capabilities"] = frozenset(raw.capabilities)
    if raw.api:
        changes["api"] = raw.api
    if (price := raw.price) is not None:
        for field in ("input", "output", "cache_read", "cache_write", "cache_write_1h"):
            value = getattr(price, field)
            if value is not None and value < 0:
                raise ConfigError(f"models.{model_id}.price.{field}", "must not be negative")
        read, write, hour = (0.1, 1.25, 2.0) if provider.type == "anthropic" else (1.0, 1.0, 1.0)
        changes |= {
            "input_price": _micros(price.input, 0),
            "output_price": _micros(price.output, 0),
            "cache_read_price": _micros(price.cache_read, price.input * read),
            "cache_write_price": _micros(price.cache_write, price.input * write),
            "cache_write_1h_price": _micros(price.cache_write_1h, price.input * hour),
            "priced": True,
        }
    return replace(spec, **changes)


def _micros(value: float | None, default: float) -> int:
    """USD per million tokens as integer micro-dollars; `default` when not given."""
    return round((default if value is None else value) * 1_000_000)


def _aliases(models: Mapping[str, ModelSpec]) -> dict[str, str]:
    """Alias → model id: the declared aliases, then bare upstream names that are unambiguous."""
    table: dict[str, str] = {}
    for spec in models.values():
        for alias in spec.aliases:
            other = table.get(alias)
            if alias in RESERVED or alias.startswith("auto:"):
                raise ConfigError(f"models.{spec.id}.aliases", f"{alias!r} is reserved")
            if other and other != spec.id:
                raise ConfigError(f"models.{spec.id}.aliases", f"alias {alias!r} is also {other}")
            table[alias] = spec.id
    bare: dict[str, list[str]] = {}
    for spec in models.values():
        for name in {spec.id.partition("/")[2].lower(), spec.upstream.lower()}:
            bare.setdefault(name, []).append(spec.id)
    for name, ids in bare.items():
        if len(set(ids)) == 1 and name not in table and name not in models and name not in RESERVED:
            table[name] = ids[0]
    return table


def _resolver(
    models: Mapping[str, ModelSpec],
    aliases: Mapping[str, str],
    providers: Mapping[str, ProviderSpec] | None = None,
) -> Any:
    def resolve(name: str, path: str) -> str:
        model_id = aliases.get(name.lower(), name)
        if model_id not in models and not _passes(model_id, providers or {}):
            raise ConfigError(path, f"unknown model {name!r}{_suggest(name, models, aliases)}")
        return model_id

    return resolve


def _passes(model_id: str, providers: Mapping[str, ProviderSpec]) -> bool:
    """A model the catalog does not list that a chain may name: `provider/model` of a configured
    local provider, or one the price database knows (so a typo is still an error)."""
    from . import prices

    provider, _, name = model_id.partition("/")
    spec = providers.get(provider)
    if spec is None or not name:
        return False
    return spec.local or prices.lookup(spec.type, name) is not None


def _suggest(name: str, *choices: Mapping[str, Any]) -> str:
    pool = [c for table in choices for c in table]
    close = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _task_class(name: str, path: str, allowed: tuple[TaskClass, ...]) -> TaskClass:
    if name not in {str(t) for t in allowed}:
        choices = ", ".join(str(t) for t in allowed)
        raise ConfigError(path, f"unknown task class {name!r} (one of {choices})")
    return TaskClass(name)


def _tasks(raw: Mapping[str, Any], resolve: Any) -> dict[TaskClass, TaskPolicy]:
    tasks: dict[TaskClass, TaskPolicy] = {}
    for name, entry in raw.items():
        path = f"tasks.{name}"
        task = _convert(entry, _Task, path)
        cls = _task_class(name, path, tuple(TaskClass))
        tasks[cls] = TaskPolicy(
            task=cls,
            primary=resolve(task.primary, f"{path}.primary"),
            fallbacks=tuple(
                resolve(m, f"{path}.fallbacks[{i}]") for i, m in enumerate(task.fallbacks)
            ),
            context=ContextPolicy(task.context),
            cache_ttl=None if task.cache == "off" else task.cache,
        )
    missing = [str(t) for t in TaskClass if t not in tasks]
    if missing:
        raise ConfigError("tasks", f"missing task classes: {', '.join(missing)}")
    return tasks


def _routing(raw: _Routing) -> RoutingPolicy:
    if not 0 <= raw.min_confidence <= 1:
        raise ConfigError("routing.min_confidence", "expected a number between 0 and 1")
    return RoutingPolicy(
        mode=RoutingMode(raw.mode),
        classes=frozenset(
            _task_class(c, f"routing.classes[{i}]", TEXT_CLASSES) for i, c in enumerate(raw.classes)
        ),
        default_task=_task_class(raw.default_task, "routing.default_task", TEXT_CLASSES),
        min_confidence=raw.min_confidence,
        cache_aware=raw.cache_aware,
    )


def _cooldowns(raw: _Cooldowns) -> CooldownPolicy:
    p = "cooldowns.rate_limit"
    return CooldownPolicy(
        rate_limit_base=parse_duration(raw.rate_limit.base, f"{p}.base"),
        rate_limit_max=parse_duration(raw.rate_limit.max, f"{p}.max"),
        retry_after_cap=parse_duration(raw.rate_limit.retry_after_cap, f"{p}.retry_after_cap"),
        breaker=parse_duration(raw.breaker, "cooldowns.breaker"),
        probe_every=parse_duration(raw.probe.every, "cooldowns.probe.every"),
        probe_billing=raw.probe.billing,
    )


def _emergency(raw: _Emergency) -> EmergencyPolicy:
    if raw.rate_limits < 0:
        raise ConfigError("emergency.rate_limits", "expected a count, 0 or more (0: never)")
    window = parse_duration(raw.window, "emergency.window")
    if raw.rate_limits and window <= 0:
        raise ConfigError("emergency.window", "must be longer than 0s")
    return EmergencyPolicy(rate_limits=raw.rate_limits, window=window)


def _budgets(raw: _Budgets, resolve: Any, providers: Mapping[str, ProviderSpec]) -> BudgetPolicy:
    _check_timezone(raw.timezone)
    warn = parse_fraction(raw.warn_at, "budgets.warn_at")
    downgrade = parse_fraction(raw.downgrade_at, "budgets.downgrade_at")
    if downgrade < warn:
        raise ConfigError("budgets.downgrade_at", "must not be below budgets.warn_at")
    limits = tuple(
        _limit(lim, f"budgets.limits[{i}]", resolve, providers) for i, lim in enumerate(raw.limits)
    )
    return BudgetPolicy(
        timezone=raw.timezone,
        warn_at=warn,
        downgrade_at=downgrade,
        downgrade_tiers=frozenset(Tier(t) for t in raw.downgrade_tiers),
        at_limit=raw.at_limit,
        limits=limits,
        webhook=_webhook(raw.webhook),
    )


def _webhook(url: str | None) -> str | None:
    if not url or not url.strip():
        return None
    if not re.match(r"^https?://[^/\s]+", url.strip()):
        raise ConfigError("budgets.webhook", f"expected an http(s) URL, got {url!r}")
    return url.strip()


def _check_timezone(name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("budgets.timezone", f"unknown time zone {name!r}") from None


def _limit(
    raw: _Limit, path: str, resolve: Any, providers: Mapping[str, ProviderSpec]
) -> BudgetLimit:
    if raw.tokens is None and raw.usd is None:
        raise ConfigError(path, "a budget needs tokens, usd or both")
    kind, _, value = raw.scope.partition(":")
    if kind == "provider" and value not in providers:
        raise ConfigError(f"{path}.scope", f"unknown provider {value!r}")
    if kind == "model":
        value = resolve(value, f"{path}.scope")
    if kind == "task":
        _task_class(value, f"{path}.scope", TEXT_CLASSES)
    if kind not in {"all", "provider", "model", "task"}:
        raise ConfigError(f"{path}.scope", "expected all, provider:NAME, model:ID or task:CLASS")
    scope = "all" if kind == "all" else f"{kind}:{value}"
    micros = None if raw.usd is None else round(raw.usd * 1_000_000)
    return BudgetLimit(window=raw.window, scope=scope, tokens=raw.tokens, micros=micros)


def _rules(raw: list[_Rule]) -> tuple[ClassifierRule, ...]:
    rules = []
    for i, rule in enumerate(raw):
        path = f"classifier.rules[{i}]"
        task = _task_class(rule.task, f"{path}.task", TEXT_CLASSES)
        try:
            re.compile(rule.pattern)
        except re.error as exc:
            raise ConfigError(f"{path}.pattern", f"invalid regular expression: {exc}") from None
        rules.append(ClassifierRule(task, rule.pattern, rule.weight))
    return tuple(rules)


def _framings(raw: dict[str, Any]) -> tuple[Framing, ...]:
    framings = []
    for name, entry in raw.items():
        if entry is None:
            continue
        framing = _convert(entry, _Framing, f"classifier.framings.{name}")
        try:
            re.compile(framing.pattern)
        except re.error as exc:
            path = f"classifier.framings.{name}.pattern"
            raise ConfigError(path, f"invalid regular expression: {exc}") from None
        framings.append(Framing(name, framing.action, framing.pattern))
    return tuple(framings)


_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 10**6, "mb": 10**6}
_SIZE_UNITS |= {"mib": 1024**2, "g": 10**9, "gb": 10**9, "gib": 1024**3}


def parse_size(value: int | str, path: str) -> int:
    """Bytes from `1048576`, `"512KiB"`, `"32MiB"`, `"10MB"`."""
    if isinstance(value, int) and not isinstance(value, bool):
        number, unit = float(value), ""
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", str(value).lower())
        if match is None or match.group(2) not in _SIZE_UNITS:
            raise ConfigError(path, f"expected a size like 32MiB or 1048576, got {value!r}")
        number, unit = float(match.group(1)), match.group(2)
    size = int(number * _SIZE_UNITS[unit])
    if size < 1:
        raise ConfigError(path, f"must be at least 1 byte, got {value!r}")
    return size


def _gateway(raw: _Gateway) -> GatewayPolicy:
    if not raw.host.strip():
        raise ConfigError("gateway.host", "a host to bind is required (e.g. 127.0.0.1)")
    if not 0 <= raw.port <= 65535:
        raise ConfigError("gateway.port", f"expected a port between 0 and 65535, got {raw.port}")
    keys = tuple(Secret(k.strip()) for k in raw.api_keys if k and k.strip())
    admin = tuple(Secret(k.strip()) for k in raw.admin_keys if k and k.strip())
    if shared := {k.reveal() for k in keys} & {k.reveal() for k in admin}:
        at = next(i for i, k in enumerate(raw.admin_keys) if k.strip() in shared)
        raise ConfigError(
            f"gateway.admin_keys[{at}]", "is also a client key (gateway.api_keys): use another"
        )
    return GatewayPolicy(
        host=raw.host.strip(),
        port=raw.port,
        api_keys=keys,
        admin_keys=admin,
        max_body=parse_size(raw.max_body, "gateway.max_body"),
        inline_notice=raw.inline_notice,
        dashboard=raw.dashboard,
    )


def _state(raw: _State) -> StatePolicy:
    url = raw.url.strip()
    if url and not re.match(r"^(redis|rediss|unix)://", url):
        expected = "expected a redis://, rediss:// or unix:// URL"
        raise ConfigError("state.url", f"{expected}, got {masked_url(url)!r}")
    if raw.backend == "redis" and not url:
        raise ConfigError("state.url", "backend redis needs a URL: redis://host:6379/0")
    return StatePolicy(
        backend=raw.backend,
        path=os.path.expanduser(raw.path),
        url=url,
        prefix=raw.prefix,
        cache=parse_duration(raw.cache, "state.cache"),
    )


def _ledger(raw: _Ledger) -> LedgerPolicy:
    url = raw.url.strip()
    if url and not re.match(r"^postgres(ql)?://", url):
        raise ConfigError("ledger.url", f"expected a postgresql:// URL, got {masked_url(url)!r}")
    if raw.backend == "postgres" and not url:
        raise ConfigError("ledger.url", "backend postgres needs a URL: postgresql://host/db")
    return LedgerPolicy(
        backend=raw.backend,
        path=os.path.expanduser(raw.path),
        url=url,
        retention=parse_duration(raw.retention, "ledger.retention"),
        store_content=raw.store_content,
    )
