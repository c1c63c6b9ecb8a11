"""The validated, immutable policy that every routing decision reads.

`config.load_policy()` builds it from YAML; nothing else constructs it from raw data. Everything
here is plain frozen data plus look-ups (aliases, chains), so the planner stays pure and a reload
swaps one object atomically.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

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
    """How `stellwerk serve` listens; client keys are Secrets (none: no key needed)."""

    host: str = "127.0.0.1"
    port: int = 4711
    api_keys: tuple[Secret, ...] = ()
    max_body: int = 32 * 1024 * 1024  # bytes
    inline_notice: bool = False


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

    @property
    def default_primary(self) -> str:
        return self.tasks[self.routing.default_task].primary

    def resolve_model(self, name: str) -> ModelSpec | None:
        """The model named by an id, an alias or a bare upstream name; None if unknown."""
        model_id = self.aliases.get(name.lower(), name)
        return self.models.get(model_id)

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
