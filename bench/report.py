"""Turning the raw phases of `overhead.py` into added costs, ratios, target checks and a table.

Absolute numbers drift on a shared machine; what one run says reliably is how each gateway
compares with the direct path and with the peer measured in the same minute. So the derived
figures are differences to `direct` (added latency) and ratios (to `direct`, to the peer), and
the issue's targets are checked against them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

DIRECT, FLOOR, PEER = "direct", "passthrough", "litellm"
ADDED = {
    "c1_p50_ms": ("c1", "p50_ms"),
    "c1_p99_ms": ("c1", "p99_ms"),
    "c32_p50_ms": ("c32", "p50_ms"),
    "c32_p99_ms": ("c32", "p99_ms"),
    "stream_ttfb_p50_ms": ("stream", "ttfb_p50_ms"),
    "stream_ttfb_p99_ms": ("stream", "ttfb_p99_ms"),
    "stream_total_p50_ms": ("stream", "total_p50_ms"),
    "anthropic_c1_p50_ms": ("anthropic_c1", "p50_ms"),
    "anthropic_c1_p99_ms": ("anthropic_c1", "p99_ms"),
    "anthropic_ttfb_p50_ms": ("anthropic_stream", "ttfb_p50_ms"),
    # what agents send (captured OpenClaw requests, ~60 KB; absent without the captures)
    "agent_c1_p50_ms": ("agent_c1", "p50_ms"),
    "agent_c1_p99_ms": ("agent_c1", "p99_ms"),
    "agent_ttfb_p50_ms": ("agent_stream", "ttfb_p50_ms"),
    "agent_anthropic_c1_p50_ms": ("agent_anthropic_c1", "p50_ms"),
    "agent_anthropic_ttfb_p50_ms": ("agent_anthropic_stream", "ttfb_p50_ms"),
    "toolloop_c1_p50_ms": ("toolloop_c1", "p50_ms"),
    "heartbeat_c1_p50_ms": ("heartbeat_c1", "p50_ms"),
}


def _get(system: dict[str, Any], phase: str, key: str) -> float | None:
    value = system.get(phase, {}).get(key) if isinstance(system.get(phase), dict) else None
    return float(value) if isinstance(value, int | float) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def derive(result: dict[str, Any]) -> dict[str, Any]:
    """Added latency and ratios per gateway, the peer comparison and the target checks."""
    systems = result["systems"]
    direct = systems.get(DIRECT, {})
    out: dict[str, Any] = {
        "added": {},
        "vs_direct": {},
        "above_floor": {},
        "vs_peer": {},
        "targets": {},
    }
    for name, system in systems.items():
        if name == DIRECT:
            continue
        out["added"][name] = added = {
            key: _minus(_get(system, *where), _get(direct, *where)) for key, where in ADDED.items()
        }
        out["vs_direct"][name] = {
            "c64_rps": _ratio(_get(system, "c64", "rps"), _get(direct, "c64", "rps")),
            "c1_p50": _ratio(_get(system, "c1", "p50_ms"), _get(direct, "c1", "p50_ms")),
        }
        if name.startswith("stellwerk"):
            out["targets"][name] = targets(system, added, systems.get(PEER), result)
            if FLOOR in systems:
                out["above_floor"][name] = above_floor(system, systems[FLOOR])
    if PEER in systems:
        for name in [n for n in systems if n.startswith("stellwerk")]:
            out["vs_peer"][name] = versus(systems[name], systems[PEER], out["added"], name)
    return out


def above_floor(ours: dict[str, Any], floor: dict[str, Any]) -> dict[str, float | None]:
    """What Stellwerk adds on top of the bare proxy on the same stack: its own work."""
    return {
        "c1_p50_ms": _minus(_get(ours, "c1", "p50_ms"), _get(floor, "c1", "p50_ms")),
        "cpu_ms_per_request": _minus(
            ours.get("cpu_ms_per_request"), floor.get("cpu_ms_per_request")
        ),
        "stream_ttfb_p50_ms": _minus(
            _get(ours, "stream", "ttfb_p50_ms"), _get(floor, "stream", "ttfb_p50_ms")
        ),
    }


def _minus(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def versus(
    ours: dict[str, Any], theirs: dict[str, Any], added: dict[str, Any], name: str
) -> dict[str, float | None]:
    """How many times better than the peer (above 1: better), metric by metric."""
    mine, peer = added[name], added[PEER]
    return {
        "added_c1_p50": _ratio(peer["c1_p50_ms"], mine["c1_p50_ms"]),
        "added_agent_c1_p50": _ratio(peer["agent_c1_p50_ms"], mine["agent_c1_p50_ms"]),
        "added_toolloop_c1_p50": _ratio(peer["toolloop_c1_p50_ms"], mine["toolloop_c1_p50_ms"]),
        "added_c1_p99": _ratio(peer["c1_p99_ms"], mine["c1_p99_ms"]),
        "added_stream_ttfb_p50": _ratio(peer["stream_ttfb_p50_ms"], mine["stream_ttfb_p50_ms"]),
        "c64_rps": _ratio(_get(ours, "c64", "rps"), _get(theirs, "c64", "rps")),
        "cpu_per_request": _ratio(theirs.get("cpu_ms_per_request"), ours.get("cpu_ms_per_request")),
        "idle_rss": _ratio(theirs.get("idle_rss_mib"), ours.get("idle_rss_mib")),
        "startup": _ratio(theirs.get("startup_s"), ours.get("startup_s")),
    }


def targets(
    system: dict[str, Any],
    added: dict[str, Any],
    peer: dict[str, Any] | None,
    result: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    """The issues' targets: value, limit and whether it is met (None: not measured). Issue 18's
    are relative to the same run: the agent request against the short prompt, the CPU per
    request against the bare proxy's."""
    rps = _get(system, "c64", "rps")
    floor = result["systems"].get(FLOOR, {})
    checks: dict[str, tuple[float | None, float, Callable[[float, float], bool]]] = {
        "added_c1_p50_ms": (added["c1_p50_ms"], 1.0, _le),
        "added_c1_p99_ms": (added["c1_p99_ms"], 3.0, _le),
        "c64_rps": (rps, 1500.0, _ge),
        "cpu_ms_per_request": (system.get("cpu_ms_per_request"), 0.6, _le),
        "added_stream_ttfb_p50_ms": (added["stream_ttfb_p50_ms"], 1.0, _le),
        "startup_s": (system.get("startup_s"), 1.5, _le),
        "idle_rss_mib": (system.get("idle_rss_mib"), 80.0, _le),
        "rss_growth_mib": (system.get("rss_growth", {}).get("growth_mib"), 5.0, _le),
        "route_cold_s": (result.get("route_cold_s", {}).get("median"), 0.5, _le),
        "added_agent_c1_p50_ms": (added["agent_c1_p50_ms"], 1.0, _le),
        "agent_minus_short_added_c1_p50_ms": (
            _minus(added["agent_c1_p50_ms"], added["c1_p50_ms"]),
            0.3,
            _le,
        ),
        "cpu_per_request_vs_floor": (
            _ratio(system.get("cpu_ms_per_request"), floor.get("cpu_ms_per_request")),
            2.5,
            _le,
        ),
        "added_c32_p50_ms": (added["c32_p50_ms"], 10.0, _le),
    }
    if peer is not None:
        checks["c64_rps_vs_peer"] = (_ratio(rps, _get(peer, "c64", "rps")), 15.0, _ge)
    return {
        key: {"value": value, "limit": limit, "met": None if value is None else ok(value, limit)}
        for key, (value, limit, ok) in checks.items()
    }


def _le(value: float, limit: float) -> bool:
    return value <= limit


def _ge(value: float, limit: float) -> bool:
    return value >= limit


# -- the table -------------------------------------------------------------------------------


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


ROWS: list[tuple[str, Callable[[dict[str, Any], dict[str, Any]], str]]] = [
    ("start to healthy (s)", lambda s, a: _f(s.get("startup_s"))),
    ("idle RSS (MiB)", lambda s, a: _f(s.get("idle_rss_mib"), 1)),
    ("loaded RSS (MiB)", lambda s, a: _f(s.get("loaded_rss_mib"), 1)),
    (
        "RSS growth (MiB / requests)",
        lambda s, a: (
            f"{_f(s['rss_growth']['growth_mib'], 1)} / {s['rss_growth']['requests']:,}"
            if "rss_growth" in s
            else "-"
        ),
    ),
    ("c=1 p50 / p99 (ms)", lambda s, a: _pair(s, "c1", "p50_ms", "p99_ms")),
    ("  added p50 / p99 (ms)", lambda s, a: _added(a, "c1_p50_ms", "c1_p99_ms")),
    ("c=32 p50 / p99 (ms)", lambda s, a: _pair(s, "c32", "p50_ms", "p99_ms")),
    ("  added p50 / p99 (ms)", lambda s, a: _added(a, "c32_p50_ms", "c32_p99_ms")),
    ("c=64 throughput (req/s)", lambda s, a: _f(_get(s, "c64", "rps"), 0)),
    ("CPU per request (ms)", lambda s, a: _f(s.get("cpu_ms_per_request"), 3)),
    ("stream TTFB p50 / p99 (ms)", lambda s, a: _pair(s, "stream", "ttfb_p50_ms", "ttfb_p99_ms")),
    (
        "  added TTFB p50 / p99 (ms)",
        lambda s, a: _added(a, "stream_ttfb_p50_ms", "stream_ttfb_p99_ms"),
    ),
    ("stream total p50 (ms)", lambda s, a: _f(_get(s, "stream", "total_p50_ms"))),
    ("stream first→last read p50 (ms)", lambda s, a: _f(_get(s, "stream", "spread_p50_ms"))),
    ("anthropic c=1 p50 / p99 (ms)", lambda s, a: _pair(s, "anthropic_c1", "p50_ms", "p99_ms")),
    (
        "  added p50 / p99 (ms)",
        lambda s, a: _added(a, "anthropic_c1_p50_ms", "anthropic_c1_p99_ms"),
    ),
    ("anthropic stream TTFB p50 (ms)", lambda s, a: _f(_get(s, "anthropic_stream", "ttfb_p50_ms"))),
    ("agent c=1 p50 / p99 (ms)", lambda s, a: _pair(s, "agent_c1", "p50_ms", "p99_ms")),
    ("  added p50 / p99 (ms)", lambda s, a: _added(a, "agent_c1_p50_ms", "agent_c1_p99_ms")),
    ("agent stream TTFB p50 (ms)", lambda s, a: _f(_get(s, "agent_stream", "ttfb_p50_ms"))),
    ("  added TTFB p50 (ms)", lambda s, a: _added(a, "agent_ttfb_p50_ms", "")),
    ("agent anthropic c=1 p50 (ms)", lambda s, a: _f(_get(s, "agent_anthropic_c1", "p50_ms"))),
    ("  added p50 (ms)", lambda s, a: _added(a, "agent_anthropic_c1_p50_ms", "")),
    (
        "agent anthropic TTFB p50 (ms)",
        lambda s, a: _f(_get(s, "agent_anthropic_stream", "ttfb_p50_ms")),
    ),
    ("tool-loop c=1 p50 (ms)", lambda s, a: _f(_get(s, "toolloop_c1", "p50_ms"))),
    ("  added p50 (ms)", lambda s, a: _added(a, "toolloop_c1_p50_ms", "")),
    ("heartbeat c=1 p50 (ms)", lambda s, a: _f(_get(s, "heartbeat_c1", "p50_ms"))),
    ("  added p50 (ms)", lambda s, a: _added(a, "heartbeat_c1_p50_ms", "")),
    ("errors", lambda s, a: str(_errors(s))),
]


def _pair(system: dict[str, Any], phase: str, a: str, b: str) -> str:
    first, second = _get(system, phase, a), _get(system, phase, b)
    return "-" if first is None else f"{_f(first)} / {_f(second)}"


def _added(added: dict[str, Any], a: str, b: str) -> str:
    if not added or added.get(a) is None:
        return "-"
    return f"{_f(added[a])} / {_f(added.get(b))}" if b else _f(added[a])


def _errors(system: dict[str, Any]) -> int:
    return sum(v.get("errors", 0) for v in system.values() if isinstance(v, dict))


def table(result: dict[str, Any]) -> str:
    """The results as a plain-text table, then the ratios and the target checks."""
    systems, derived = result["systems"], result["derived"]
    names = list(systems)
    header = ["", *names]
    rows = [header]
    for label, cell in ROWS:
        rows.append([label, *(cell(systems[n], derived["added"].get(n, {})) for n in names)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines += _ratios(derived) + _target_lines(derived) + _extra(result)
    return "\n".join(lines)


def _ratios(derived: dict[str, Any]) -> list[str]:
    lines = ["", "ratios"]
    for name, ratios in derived["vs_direct"].items():
        lines.append(f"  {name}: throughput {_f(ratios['c64_rps'])}× direct")
    for name, extra in derived.get("above_floor", {}).items():
        shown = ", ".join(f"{k} {_f(v, 3)}" for k, v in extra.items())
        lines.append(f"  {name} above the bare proxy ({FLOOR}): {shown}")
    for name, ratios in derived["vs_peer"].items():
        shown = ", ".join(f"{k} {_f(v, 1)}×" for k, v in ratios.items())
        lines.append(f"  {name} vs {PEER} (above 1: better): {shown}")
    return lines


def _target_lines(derived: dict[str, Any]) -> list[str]:
    lines = []
    for name, checks in derived["targets"].items():
        lines += ["", f"targets ({name})"]
        for key, check in checks.items():
            mark = {True: "ok  ", False: "MISS", None: "n/a "}[check["met"]]
            lines.append(f"  {mark} {key}: {_f(check['value'], 3)} (limit {_f(check['limit'])})")
    return lines


def _extra(result: dict[str, Any]) -> list[str]:
    lines = []
    if cold := result.get("route_cold_s"):
        runs = cold["runs"]
        lines += ["", f"stellwerk route (cold): median {_f(cold['median'], 3)} s over {runs} runs"]
    work = result["settings"].get("routing_work")
    if work:
        lines.append(f"routing work on: {', '.join(work['on']) or 'none'}")
        lines += [f"  not available here: {r}" for r in work["not_available"]]
    if version := result["settings"].get("peer_version"):
        lines.append(f"peer: litellm {version}")
    if skipped := result.get("agent_phases_skipped"):
        lines.append(skipped)
    if error := result.get("peer_error"):
        lines.append(f"peer failed: {error.splitlines()[0]}")
    return lines
