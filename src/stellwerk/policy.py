"""The validated, immutable policy that every routing decision reads.

`config.load_policy()` builds it from YAML; nothing else constructs it from raw data. Everything
here is plain frozen data plus look-ups (aliases, chains), so the planner stays pure and a reload
swaps one object atomically.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .types import TaskClass, Tier, Usage


class RoutingMode(enum.StrEnum):
    AUTO = "auto"
    SHADOW = "shadow"
    OFF = "off"


class ContextPolicy(enum.StrEnum):
    FULL = "full"
    MINIMAL = "minimal"
    FIT = "fit"


LOCAL_PROVIDER_TYPES = frozenset({"ollama"})
AGGREGATOR_PROVIDER_TYPES = frozenset({"openrouter"})
PROVIDER_TYPES = frozenset(
    {"anthropic", "openai", "openai-codex", "openrouter", "ollama", "openai-compatible"}
)


class Secret:
    """An API key that never shows itself in repr, str, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def masked(self) -> str:
        v = self._value
        return f"{v[:3]}…{v[-4:]}" if len(v) >= 16 else "…" * 3

    def __repr__(self) -> str:
        return f"Secret({self.masked()!r})"

    __str__ = masked

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def masked_url(url: str) -> str:
    """A server URL (Redis, PostgreSQL) without its password, for logs, status and `config show`."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{host}"


@dataclass(frozen=True, slots=True)
class Credential:
    """One API key of a provider; `id` (`anthropic#1`) is what logs and state refer to."""

    id: str
    secret: Secret

    @property
    def masked(self) -> str:
        return self.secret.masked()


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    name: str
    type: str
    base_url: str
    credentials: tuple[Credential, ...] = ()
    billing_cooldown: float = 7200.0
    connect_timeout: float = 10.0
    read_timeout: float = 300.0
    headers: Mapping[str, str] = field(default_factory=dict)
    local: bool = False  # runs on this machine or LAN: free, usable in emergency mode

    @property
    def aggregator(self) -> bool:
        """Aggregators route around failures themselves: never cooled down provider-wide."""
        return self.type in AGGREGATOR_PROVIDER_TYPES

    @property
    def needs_key(self) -> bool:
        return not self.local

    @property
    def available(self) -> bool:
        """Configured and usable: local, or holding at least one key."""
        return self.local or bool(self.credentials)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One catalog entry. Prices are integer micro-dollars per million tokens."""

    id: str  # "provider/model", as users write it
    provider: str
    upstream: str  # the name sent to the provider
    tier: Tier
    input_price: int
    output_price: int
    context_window: int
    max_output: int
    capabilities: frozenset[str] = frozenset()
    aliases: tuple[str, ...] = ()
    api: str = "chat"
    parameters: str | None = None
    # Prompt-cache prices (micro-dollars per million tokens; -1: the input price) and the
    # shortest prefix the provider caches for this model.
    cache_read_price: int = -1
    cache_write_price: int = -1  # a write with the default TTL (Anthropic: 5 min, 1.25x)
    cache_write_1h_price: int = -1  # a write with a 1 h TTL (Anthropic: 2x)
    cache_min_tokens: int = 1024
    cache_retention: str | None = None  # OpenAI's extended retention ("24h") to ask for
    # False: no price is known (a pass-through model the price database lacks); its cost is
    # recorded as 0 and reported as unknown, never as a real $0.
    priced: bool = True
    # Where the entry comes from: catalog (the catalog or the config's `models:`), database
    # (genai-prices), ollama (`/api/show`), default (nothing known: conservative defaults)
    source: str = "catalog"

    def __post_init__(self) -> None:
        for name in ("cache_read_price", "cache_write_price", "cache_write_1h_price"):
            if getattr(self, name) < 0:
                object.__setattr__(self, name, self.input_price)

    def cost_micros(self, input_tokens: int, output_tokens: int) -> int:
        """Cost of a call in micro-dollars, rounded up so budgets never undercount."""
        total = input_tokens * self.input_price + output_tokens * self.output_price
        return -(-total // 1_000_000)

    def cost_of(self, usage: Usage) -> int:
        """Cost of a call's usage in micro-dollars, cache reads and writes at their own prices
        (`usage.input_tokens` holds them: the rest is plain input), rounded up."""
        hour = min(usage.cache_write_1h_tokens, usage.cache_write_tokens)
        cached = usage.cache_read_tokens + usage.cache_write_tokens
        total = (
            max(usage.input_tokens - cached, 0) * self.input_price
            + usage.cache_read_tokens * self.cache_read_price
            + (usage.cache_write_tokens - hour) * self.cache_write_price
            + hour * self.cache_write_1h_price
            + usage.output_tokens * self.output_price
        )
        return -(-total // 1_000_000)

    def cache_saved(self, usage: Usage) -> int:
        """What caching saved against the same tokens at the input price (negative when writes
        cost more than reads saved), in micro-dollars."""
        plain = self.cost_micros(usage.input_tokens, usage.output_tokens)
        return plain - self.cost_of(usage)


PASSTHROUGH_CACHE = 4096  # pass-through specs kept per policy; beyond it, built per use


class ModelCatalog(Mapping[str, ModelSpec]):
    """The configured models, and the pass-through models built as they are first named.

    Iterating (and `len`) gives the configured models only; looking up a `provider/model` id whose
    provider is configured also finds a model the catalog does not list: its `ModelSpec` is built
    once (`passthrough.build`: prices from genai-prices, a local model's window from Ollama) and
    kept, so the planner, the router and `stats` all read one spec per model.
    """

    __slots__ = ("_configured", "_providers", "_built", "_names", "_local")

    def __init__(
        self, configured: Mapping[str, ModelSpec], providers: Mapping[str, ProviderSpec]
    ) -> None:
        self._configured = dict(configured)
        self._providers = providers
        self._built: dict[str, ModelSpec | None] = {}
        self._names: dict[str, str | None] = {}  # bare name → pass-through id (None: unknown)
        self._local: dict[str, Mapping[str, Any]] = {}  # id → Ollama's `/api/show` answer

    def __getitem__(self, model_id: str) -> ModelSpec:
        spec = self._configured.get(model_id) or self.passthrough(model_id)
        if spec is None:
            raise KeyError(model_id)
        return spec

    def __iter__(self) -> Iterator[str]:
        return iter(self._configured)

    def __len__(self) -> int:
        return len(self._configured)

    def __repr__(self) -> str:
        return f"ModelCatalog({list(self._configured)!r}, built={list(self._built)!r})"

    @property
    def built(self) -> Mapping[str, ModelSpec | None]:
        """The pass-through models built so far (None: named, but not usable)."""
        return self._built

    def configured(self, model_id: str) -> bool:
        return model_id in self._configured

    def passthrough(self, model_id: str) -> ModelSpec | None:
        """The spec of a `provider/model` id the catalog does not list, built once; None when
        the provider is not configured."""
        if model_id in self._built:
            return self._built[model_id]
        provider, _, upstream = model_id.partition("/")
        spec = None
        if upstream and provider in self._providers:
            from .passthrough import build

            show = self._local.get(model_id)
            spec = build(model_id, self._providers[provider], upstream, show)
        if len(self._built) < PASSTHROUGH_CACHE:
            self._built[model_id] = spec
        return spec

    def resolve(self, name: str, aliases: Mapping[str, str]) -> ModelSpec | None:
        """A configured id or alias, a `provider/model` id of a configured provider, or a bare
        name whose provider the price database or the naming conventions tell."""
        model_id = aliases.get(name.lower(), name)
        spec = self._configured.get(model_id)
        if spec is not None:
            return spec
        provider = name.partition("/")[0]
        if provider in self._providers:
            return self._unless_typo(name, self.passthrough(name), aliases)
        if name not in self._names:
            from .passthrough import bare_provider

            found = bare_provider(name, self._providers)
            mapped = f"{found}/{name}" if found else None
            if len(self._names) < PASSTHROUGH_CACHE:
                self._names[name] = mapped
        else:
            mapped = self._names[name]
        return self._unless_typo(name, self.passthrough(mapped), aliases) if mapped else None

    def _unless_typo(
        self, name: str, spec: ModelSpec | None, aliases: Mapping[str, str]
    ) -> ModelSpec | None:
        """None for a cloud model the price database does not know whose name is one letter or
        so from a configured one (`claude-sonet-4-5`): a typo gets a 404 with "did you mean",
        not a trip to the provider and a fallback."""
        if spec is None or spec.source != "default" or self._providers[spec.provider].local:
            return spec
        import difflib

        pool = [*self._configured, *aliases]
        return None if difflib.get_close_matches(name, pool, n=1, cutoff=0.9) else spec

    def wants_show(self, name: str) -> str | None:
        """The pass-through id of a local model not built yet, whose `/api/show` answer should
        be learned first (`learn`); None otherwise. A dictionary look-up: cheap per request."""
        if name in self._configured or name in self._built:
            return None
        provider = self._providers.get(name.partition("/")[0])
        if provider is None or not provider.local or provider.type != "ollama":
            return None
        return name

    def learn(self, model_id: str, show: Mapping[str, Any]) -> None:
        """Keep Ollama's `/api/show` answer for a model, before its spec is built."""
        if model_id not in self._built and len(self._local) < PASSTHROUGH_CACHE:
            self._local[model_id] = show


@dataclass(frozen=True, slots=True)
class TaskPolicy:
    task: TaskClass
    primary: str
    fallbacks: tuple[str, ...] = ()
    context: ContextPolicy = ContextPolicy.FULL
    cache_ttl: str | None = "5m"  # breakpoints Stellwerk places: 5m | 1h | None (off)


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    mode: RoutingMode = RoutingMode.AUTO
    classes: frozenset[TaskClass] = frozenset()
    default_task: TaskClass = TaskClass.COMPLEX
    min_confidence: float = 0.5
    cache_aware: bool = True  # count warm prompt caches in the choice of a turn's model


@dataclass(frozen=True, slots=True)
class CooldownPolicy:
    rate_limit_base: float = 30.0
    rate_limit_max: float = 600.0
    retry_after_cap: float = 300.0
    breaker: float = 30.0
    probe_every: float = 300.0  # 0: no probes; a cooled key is probed once this long has passed
    probe_billing: bool = False  # probing a billing cooldown spends a request on an empty account


@dataclass(frozen=True, slots=True)
class EmergencyPolicy:
    """When local-only emergency mode starts by itself (`emergency:`); see `emergency.py`."""

    rate_limits: int = 5  # this many cloud rate limits within `window` (0: never by count)
    window: float = 300.0  # seconds


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """The gateway's health watch on local providers (`health:`); see `health.py`."""

    interval: float = 10.0  # seconds between pings (0: no watch)


@dataclass(frozen=True, slots=True)
class BudgetLimit:
    window: str  # daily | weekly
    scope: str = "all"  # all | provider:NAME | model:ID | task:CLASS
    tokens: int | None = None
    micros: int | None = None

    @property
    def name(self) -> str:
        return f"{self.window} {self.scope}"


@dataclass(frozen=True, slots=True)
class BudgetPolicy:
    timezone: str = "UTC"
    warn_at: float = 0.8
    downgrade_at: float = 0.9
    downgrade_tiers: frozenset[Tier] = frozenset({Tier.PREMIUM})
    at_limit: str = "local-only"
    limits: tuple[BudgetLimit, ...] = ()
    webhook: str | None = None  # URL that gets a JSON POST when a threshold is first crossed


@dataclass(frozen=True, slots=True)
class ClassifierRule:
    task: TaskClass
    pattern: str
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class Framing:
    """How a client wraps the human's words (`classifier.framings`); see `classify/reading.py`."""

    name: str
    action: str  # skip | strip | heartbeat
    pattern: str


@dataclass(frozen=True, slots=True)
class StatePolicy:
    backend: str = "sqlite"  # sqlite | memory | redis
    path: str = ""
    url: str = ""  # redis: redis://host:6379/0 (default: $STELLWERK_REDIS_URL)
    prefix: str = "stellwerk:"  # redis: the prefix of every key
    cache: float = 0.0  # redis: seconds a replica may reuse its last read (0: read every request)


@dataclass(frozen=True, slots=True)
class LedgerPolicy:
    """Where decisions are recorded and for how long (`ledger:`); see `ledger/`."""

    backend: str = "sqlite"  # sqlite | memory | postgres
    path: str = ""  # empty: ledger.db next to the state database
    url: str = ""  # postgres: postgresql://user@host:5432/db
    retention: float = 90 * 86400.0  # seconds; 0 keeps everything
    store_content: bool = False  # also keep the last user turn and the answer text


@dataclass(frozen=True, slots=True)
class GatewayPolicy:
    """How `stellwerk serve` listens; client and admin keys are Secrets (none: no key needed)."""

    host: str = "127.0.0.1"
    port: int = 4711
    api_keys: tuple[Secret, ...] = ()
    admin_keys: tuple[Secret, ...] = ()  # the dashboard's actions (reset, emergency, reload)
    max_body: int = 32 * 1024 * 1024  # bytes
    inline_notice: bool = False
    dashboard: bool = True  # the page at /ui/


@dataclass(frozen=True, slots=True)
class Policy:
    """Everything a routing decision needs to know about the configuration."""

    providers: Mapping[str, ProviderSpec]
    models: Mapping[str, ModelSpec]
    stack: tuple[str, ...]
    tasks: Mapping[TaskClass, TaskPolicy]
    routing: RoutingPolicy = RoutingPolicy()
    cooldowns: CooldownPolicy = CooldownPolicy()
    emergency: EmergencyPolicy = EmergencyPolicy()
    health: HealthPolicy = HealthPolicy()
    budgets: BudgetPolicy = BudgetPolicy()
    rules: tuple[ClassifierRule, ...] = ()
    framings: tuple[Framing, ...] = ()
    state: StatePolicy = StatePolicy()
    gateway: GatewayPolicy = GatewayPolicy()
    ledger: LedgerPolicy = LedgerPolicy()
    source: str = "<built-in>"
    aliases: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.models, ModelCatalog):
            object.__setattr__(self, "models", ModelCatalog(self.models, self.providers))

    @property
    def catalog(self) -> ModelCatalog:
        """The models, configured and pass-through (`models`, typed as what it is)."""
        assert isinstance(self.models, ModelCatalog)
        return self.models

    @property
    def default_primary(self) -> str:
        return self.tasks[self.routing.default_task].primary

    def resolve_model(self, name: str) -> ModelSpec | None:
        """The model named by an id, an alias or a bare upstream name, or a model the catalog
        does not list (`provider/model` of a configured provider; a bare name whose provider is
        known); None if unknown."""
        return self.catalog.resolve(name, self.aliases)

    def chain(self, task: TaskClass, start: str | None = None) -> tuple[str, ...]:
        """Targets in order: `start` or the class primary, the class fallbacks, then the stack."""
        policy = self.tasks[task]
        head = (start,) if start else (policy.primary,)
        return tuple(dict.fromkeys((*head, *policy.fallbacks, *self.stack)))

    def stack_from(self, start: str) -> tuple[str, ...]:
        """A chain that starts at a named model and continues with the global stack."""
        return tuple(dict.fromkeys((start, *self.stack)))

    def provider_of(self, model_id: str) -> ProviderSpec:
        return self.providers[self.models[model_id].provider]
