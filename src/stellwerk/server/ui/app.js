// Stellwerk's dashboard: plain ES modules, no build step, nothing from elsewhere.
//
// Data: GET /api/dashboard (every 5 s, and soon after each decision), GET /api/stats (every
// 30 s and on a window switch), and the decisions as server-sent events from GET /api/events,
// read with fetch() so the Authorization header goes along (EventSource cannot send one).
// The key lives in sessionStorage and is sent as a Bearer token on every request: no cookies,
// so nothing is ambient and another site cannot act with it. Server strings only ever reach the
// page through textContent, never as HTML.

const KEY = "stellwerk.key";
const MAX_ROWS = 200;
const SVG_NS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

const state = {
  dash: null, // the last /api/dashboard answer
  offset: 0, // server clock minus ours, in seconds
  updated: 0, // when the dashboard was last read (our clock, ms)
  window: "24h",
  stats: null,
  seen: new Set(), // decision ids on the page
  lastId: null, // the last SSE id, sent back as Last-Event-ID
  stream: null, // the AbortController of the open event stream
  rendered: {}, // section -> the JSON it was last drawn from
  refreshing: null,
  again: false,
  soonTimer: 0,
  heard: 0, // when the event stream last sent anything (ms)
};

// -- small helpers ------------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = String(value);
    else if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const serverNow = () => Date.now() / 1000 + state.offset;
const number = (n) => (n ?? 0).toLocaleString("en-US");
const percent = (fraction, digits = 1) => `${((fraction ?? 0) * 100).toFixed(digits)}%`;

/** Integer micro-dollars as `$0.0123`: cents above a dollar, more digits for tiny amounts. */
function usd(micros) {
  const m = Math.round(micros ?? 0);
  const sign = m < 0 ? "-" : "";
  const dollars = Math.abs(m) / 1e6;
  if (m === 0) return "$0.00";
  if (dollars >= 100) return `${sign}$${dollars.toLocaleString("en-US", { maximumFractionDigits: 0 })}`;
  if (dollars >= 1) return `${sign}$${dollars.toFixed(2)}`;
  if (dollars >= 0.0001) return `${sign}$${dollars.toFixed(4)}`;
  return `${sign}$${dollars.toFixed(6)}`;
}

/** Seconds as `1h 05m 09s`, `4m 59s`, `12s` (`1h 05m` without seconds); days above 48 h. */
function span(seconds, withSeconds = true) {
  let s = Math.max(0, Math.floor(seconds));
  if (!withSeconds && s >= 60) s = Math.ceil(s / 60) * 60;
  const d = Math.floor(s / 86400);
  if (d >= 2) return `${d}d ${Math.floor((s % 86400) / 3600)}h`;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const pad = (v) => String(v).padStart(2, "0");
  if (h) return withSeconds ? `${h}h ${pad(m)}m ${pad(s)}s` : `${h}h ${pad(m)}m`;
  if (m) return withSeconds ? `${m}m ${pad(s)}s` : `${m}m`;
  return `${s}s`;
}

const plural = (n, word) => `${number(n)} ${word}${n === 1 ? "" : "s"}`;

function compact(n) {
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e4) return `${Math.round(n / 1e3)}k`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(n ?? 0);
}

function clock(ts, seconds = true) {
  const options = { hour: "2-digit", minute: "2-digit", hour12: false };
  if (seconds) options.second = "2-digit";
  return new Date(ts * 1000).toLocaleTimeString("en-GB", options);
}

/** Whether `data` differs from what `section` was last drawn from (then remember it). */
function changed(section, data) {
  const json = JSON.stringify(data);
  if (state.rendered[section] === json) return false;
  state.rendered[section] = json;
  return true;
}

// -- the API ------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function authHeaders(extra = {}) {
  const headers = new Headers(extra);
  const key = sessionStorage.getItem(KEY);
  if (key) headers.set("Authorization", `Bearer ${key}`);
  return headers;
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: authHeaders(options.headers),
    cache: "no-store",
  });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const error = body && body.error ? body.error : {};
    const text = error.message || `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, text, error.code || null);
  }
  return body;
}

const post = (path, data) =>
  api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(data),
  });

// -- toasts and the key dialog -------------------------------------------------------------------

function toast(text, kind = "error") {
  if ([...$("toasts").children].some((t) => t.textContent === text)) return; // shown already
  const node = el("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
  node.addEventListener("click", () => node.remove());
  $("toasts").append(node);
  setTimeout(() => node.remove(), kind === "error" ? 9000 : 5000);
}

function askKey(why) {
  const dialog = $("key-dialog");
  $("key-why").textContent =
    why || "A client key shows the dashboard; an admin key also allows the actions.";
  $("key-input").value = "";
  if (!dialog.open) dialog.showModal();
  $("key-input").focus();
}

function useKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
  state.rendered = {};
  refreshDashboard();
  refreshStats();
  restartStream();
}

function setupKeyDialog() {
  const dialog = $("key-dialog");
  $("key-open").addEventListener("click", () => askKey(null));
  $("key-cancel").addEventListener("click", () => dialog.close());
  $("key-forget").addEventListener("click", () => {
    dialog.close();
    useKey(null);
  });
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) return;
    dialog.close();
    useKey(key);
  });
}

function failed(error, what) {
  if (error instanceof ApiError && error.status === 401) {
    $("access").textContent = "key needed";
    askKey(`This gateway needs a key: ${error.message}`);
  } else {
    toast(`${what}: ${error.message}`);
  }
}

// -- the dashboard ------------------------------------------------------------------------------

async function refreshDashboard() {
  if (state.refreshing) {
    state.again = true; // it may have been read before an action: read once more after it
    return state.refreshing;
  }
  state.refreshing = (async () => {
    try {
      const sent = Date.now();
      const data = await api("/api/dashboard");
      const received = Date.now();
      state.offset = data.now - (sent + received) / 2000;
      state.updated = received;
      state.dash = data;
      renderDashboard(data);
    } catch (error) {
      if (!(error instanceof ApiError)) setLive("offline", "the gateway does not answer");
      else failed(error, "dashboard");
    } finally {
      state.refreshing = null;
      if (state.again) {
        state.again = false;
        refreshDashboard();
      }
    }
  })();
  return state.refreshing;
}

/** A dashboard refresh shortly after a burst of decisions (one per burst). */
function soon(ms = 400) {
  clearTimeout(state.soonTimer);
  state.soonTimer = setTimeout(refreshDashboard, ms);
}

function renderDashboard(d) {
  renderMode(d);
  renderAccess(d.access);
  if (changed("cooldowns", d.cooldowns)) renderCooldowns(d.cooldowns);
  if (changed("budgets", d.budgets)) renderBudgets(d.budgets);
  if (changed("providers", [d.providers, d.cooldowns.map((c) => [c.key, c.reason, c.provider])])) {
    renderProviders(d.providers, d.cooldowns);
  }
  $("version").textContent = `Stellwerk ${d.version}`;
  $("config").textContent = d.config;
  tick();
}

function renderMode(d) {
  const mode = $("mode");
  mode.textContent = d.mode;
  mode.dataset.mode = d.mode;
  mode.title =
    d.mode === "emergency"
      ? `emergency mode (routing.mode underneath: ${d.routing_mode})`
      : "routing.mode: auto routes by class; shadow classifies but routes as off; off uses the default chain";
  const e = d.emergency || {};
  const banner = $("emergency-banner");
  banner.hidden = !e.on;
  if (e.on) {
    const since = e.since_ts ? `since ${clock(e.since_ts)} (${span(serverNow() - e.since_ts)} ago)` : "";
    $("emergency-text").textContent = [since, e.reason].filter(Boolean).join(": ");
  }
  const button = $("emergency");
  button.dataset.on = String(Boolean(e.on));
  button.textContent = e.on ? "Emergency off" : "Emergency on";
  $("degraded-banner").hidden = !d.degraded;
  $("degraded-text").textContent = d.degraded || "";
}

function renderAccess(access) {
  const admin = Boolean(access && access.admin);
  const label = !access.keys_required ? "open" : admin ? "admin" : "read-only";
  $("access").textContent = label;
  $("key-open").dataset.access = label;
  const why = access.admin_keys_configured
    ? "An admin key is needed: enter one with the key button"
    : "An admin key is needed (none is configured: gateway.admin_keys)";
  for (const button of document.querySelectorAll("button.admin")) {
    if (button.getAttribute("aria-busy") === "true") continue;
    button.disabled = !admin;
    if (admin) button.removeAttribute("title");
    else button.title = why;
  }
}

function renderCooldowns(cooldowns) {
  const list = $("cooldowns");
  list.replaceChildren(
    ...cooldowns.map((c) =>
      el("li", { class: "cooldown", dataset: { key: c.key, reason: c.reason } },
        el("div", { class: "row" },
          el("code", { class: "key", title: c.key, text: cooldownLabel(c.key) }),
          el("span", { class: "badge reason", dataset: { reason: c.reason }, text: c.reason.replace("_", " ") }),
          el("span", {
            class: "countdown",
            dataset: c.until_ts === null ? {} : { until: c.until_ts },
            title: c.until ? `until ${c.until}` : "until reset",
            text: c.until_ts === null ? "until reset" : span(c.until_ts - serverNow()),
          }),
        ),
        el("div", { class: "row end" },
          el("span", { class: "text", text: c.strikes > 1 ? `${c.text} · ${c.strikes} strikes` : c.text }),
          el("button", { type: "button", class: "admin small reset", dataset: { target: c.key }, text: "Reset" }),
        ),
        c.detail ? el("p", { class: "detail", title: c.detail, text: c.detail }) : null,
      ),
    ),
  );
  $("cooldowns-empty").hidden = cooldowns.length > 0;
  $("reset-all").hidden = cooldowns.length < 2;
  if (state.dash) renderAccess(state.dash.access);
}

function budgetAmounts(b) {
  const parts = [];
  if (b.tokens) parts.push(`${number(b.tokens.used)} of ${number(b.tokens.limit)} tokens`);
  if (b.micros) parts.push(`${usd(b.micros.used)} of ${usd(b.micros.limit)}`);
  const reserved = [];
  if (b.tokens && b.tokens.reserved) reserved.push(`${number(b.tokens.reserved)} tokens`);
  if (b.micros && b.micros.reserved) reserved.push(usd(b.micros.reserved));
  if (reserved.length) parts.push(`${reserved.join(" + ")} in flight`);
  return parts.join(" · ");
}

/** The percent the reservations in flight make up (of whichever measure is fuller). */
function reservedPercent(b) {
  const shares = [b.tokens, b.micros]
    .filter((m) => m && m.limit > 0)
    .map((m) => [m.used / m.limit, m.reserved / m.limit]);
  if (!shares.length) return 0;
  shares.sort((a, z) => z[0] - a[0]);
  return shares[0][1] * 100;
}

function renderBudgets(budgets) {
  $("budgets").replaceChildren(
    ...budgets.map((b) => {
      const shown = Math.min(b.percent, 100); // used, the reservations in flight included
      const reserved = Math.min(reservedPercent(b), shown);
      const settled = shown - reserved;
      const fill = el("div", { class: "fill" });
      fill.style.setProperty("width", `${settled}%`);
      const pending = el("div", { class: "reserved", title: "reserved by requests in flight" });
      pending.style.setProperty("left", `${settled}%`);
      pending.style.setProperty("width", `${reserved}%`);
      const marks = [
        ["warn", b.warn_percent ?? 80],
        ["downgrade", b.downgrade_percent ?? 90],
      ].map(([kind, at]) => {
        const mark = el("i", { class: `mark ${kind}`, title: `${kind} at ${at}%` });
        mark.style.setProperty("left", `${Math.min(at, 100)}%`);
        return mark;
      });
      const measure = [b.tokens && "tokens", b.micros && "USD"].filter(Boolean).join(" + ");
      return el("li", { class: "budget", dataset: { name: b.name, level: b.level } },
        el("div", { class: "row" },
          el("strong", { title: `${b.window} window, scope ${b.scope}`, text: b.name }),
          el("span", { class: "muted small", text: measure }),
          b.level === "ok" ? null : el("span", { class: "badge level", dataset: { level: b.level }, text: b.level }),
          el("span", { class: "pct", text: `${b.percent}%` }),
        ),
        el("div", {
          class: "gauge",
          role: "meter",
          "aria-valuemin": 0,
          "aria-valuemax": 100,
          "aria-valuenow": shown,
          "aria-label": `${b.name}: ${b.percent}%`,
          dataset: { percent: b.percent },
        }, fill, pending, ...marks),
        el("div", { class: "row small muted" },
          el("span", { text: budgetAmounts(b) }),
          el("span", {
            class: "resets",
            dataset: { resets: b.resets_ts ?? "" },
            title: `resets ${b.resets}`,
            text: `resets in ${b.resets_in}`,
          }),
        ),
      );
    }),
  );
  $("budgets-empty").hidden = budgets.length > 0;
}

/** A key's cooldown: the whole key (`cred:openai#1`) first, else one of its models
 * (`cred:openai#1|openai/gpt-4o-mini`); null when it has none. */
function keyCooldown(cooldowns, credential, whole = false) {
  const key = `cred:${credential.id}`;
  const exact = cooldowns.find((c) => c.key === key);
  if (exact || whole) return exact || null;
  return cooldowns.find((c) => c.key.startsWith(`${key}|`)) || null;
}

/** A cooldown's state key as a person reads it: `openai#1 · openai/gpt-4o-mini`. */
function cooldownLabel(key) {
  const [kind, ...rest] = key.split(":");
  const body = rest.join(":");
  if (kind === "cred") return body.replace("|", " · ");
  if (kind === "model") return `${body} (every key)`;
  if (kind === "health") return `${body} (health)`;
  return key;
}

function providerHealth(p, cooldowns) {
  if (!p.available) return ["off", "no key: unavailable"];
  if (p.local) {
    if (p.healthy === true) return ["ok", "local, answering"];
    if (p.healthy === false) return ["bad", "local, not answering"];
    return ["unknown", "local, not checked yet"];
  }
  const keys = p.credentials.length;
  const cold = p.credentials.filter((c) => keyCooldown(cooldowns, c, true)).length;
  if (keys && cold === keys) return ["bad", keys === 1 ? "its key is in a cooldown" : "every key in a cooldown"];
  if (cold) return ["warn", `${cold} of ${keys} keys in a cooldown`];
  if (cooldowns.some((c) => c.provider === p.name)) return ["warn", "a model of it in a cooldown"];
  return ["ok", "usable"];
}

function renderProviders(providers, cooldowns) {
  $("providers").replaceChildren(
    ...providers.map((p) => {
      const [health, why] = providerHealth(p, cooldowns);
      const keys = p.credentials.map((c) => {
        const cooling = keyCooldown(cooldowns, c);
        return el("li", {},
          el("span", { class: "muted", text: c.id }),
          el("code", { text: c.key }),
          cooling
            ? el("span", {
              class: "badge reason",
              dataset: { reason: cooling.reason },
              title: cooling.key === `cred:${c.id}` ? "this key rests" : `this key rests for ${cooldownLabel(cooling.key).split(" · ")[1]}`,
              text: cooling.reason.replace("_", " "),
            })
            : null,
        );
      });
      return el("li", { class: "provider", dataset: { name: p.name, health } },
        el("div", { class: "row" },
          el("span", { class: "dot", dataset: { health }, title: why, role: "img", "aria-label": why }),
          el("strong", { text: p.name }),
          el("span", { class: "muted small", text: p.type === p.name ? "" : p.type }),
          el("span", { class: "muted small push", title: p.models.join("\n"), text: plural(p.models.length, "model") }),
        ),
        keys.length ? el("ul", { class: "keys" }, keys) : null,
        !keys.length || health !== "ok" ? el("p", { class: "muted small", text: why }) : null,
      );
    }),
  );
}

// -- routing and savings -----------------------------------------------------------------------

async function refreshStats() {
  try {
    const stats = await api(`/api/stats?window=${encodeURIComponent(state.window)}`);
    if (stats.window !== state.window) return; // a switch happened meanwhile
    state.stats = stats;
    renderStats(stats);
  } catch (error) {
    if (error instanceof ApiError) failed(error, "stats");
  }
}

function kpi(label, value, sub, name) {
  return el("div", { class: "kpi", dataset: { kpi: name } },
    el("span", { class: "label", text: label }),
    el("span", { class: "value", text: value }),
    el("span", { class: "sub", text: sub }),
  );
}

function renderStats(data) {
  const s = data.stats;
  const savings = s.savings || {};
  const baseline = (savings.baseline || "").split("/").pop();
  const fb = s.fallbacks || { count: 0, rate: 0, failures: {} };
  const cache = s.cache || {};
  $("kpis").replaceChildren(
    kpi("Requests", number(s.requests), plural(s.errors, "error"), "requests"),
    kpi("Paid", usd(s.cost_micros), `all-premium ${usd(savings.baseline_micros)}`, "cost"),
    kpi("Saved", usd(savings.saved_micros), `${percent(savings.saved_fraction, 0)} less`, "saved"),
    kpi("Fallback rate", percent(fb.rate), `${number(fb.count)} fell back`, "fallbacks"),
    kpi("Cache reads", percent(cache.read_share, 0), `saved ${usd(cache.saved_micros)}`, "cache"),
    kpi("Tokens in", compact(s.tokens.input), `${compact(s.tokens.output)} out`, "tokens"),
  );
  $("baseline-name").textContent = baseline || "baseline";
  $("bucket-label").textContent = data.series.bucket_s >= 86400 ? "day" : data.series.bucket_s > 3600 ? `${data.series.bucket_s / 3600} hours` : "hour";
  bars($("by-task"), s.by_task, "task");
  bars($("by-model"), s.by_model, "model");
  const failures = Object.entries(fb.failures || {}).sort((a, z) => z[1] - a[1]);
  const text = !s.requests ? "No requests in this window." : failures.length ? "" : "No fallbacks in this window.";
  $("fallback-text").textContent = text;
  $("fallback-text").hidden = !text;
  $("fallback-causes").replaceChildren(
    ...failures.map(([name, n]) => el("li", { class: "chip", dataset: { reason: name } }, name.replace("_", " "), el("b", { text: number(n) }))),
  );
  renderShadow(s.shadow);
  drawChart();
}

function bars(list, groups, kind) {
  const rows = [...(groups || [])].sort((a, z) => z.requests - a.requests).slice(0, 5);
  const top = Math.max(1, ...rows.map((g) => g.requests));
  list.replaceChildren(
    ...rows.map((g) => {
      const bar = el("span", { class: "bar", dataset: kind === "task" ? { task: g.name } : {} });
      bar.style.setProperty("width", `${(100 * g.requests) / top}%`);
      return el("li", { dataset: { name: g.name } },
        el("span", { class: "name", title: g.name, text: kind === "model" ? g.name.split("/").pop() : g.name }),
        el("span", { class: "track" }, bar),
        el("span", { class: "count", text: number(g.requests) }),
        el("span", { class: "cost", text: usd(g.cost_micros) }),
      );
    }),
  );
  if (!rows.length) list.replaceChildren(el("li", { class: "muted small", text: "none yet" }));
}

function renderShadow(shadow) {
  const box = $("shadow");
  const inShadow = state.dash && state.dash.routing_mode === "shadow";
  box.hidden = !shadow && !inShadow;
  if (box.hidden) return;
  if (!shadow || !shadow.requests) {
    box.replaceChildren(el("strong", { text: "Shadow mode: " }), "no shadow requests in this window yet.");
    return;
  }
  const share = shadow.answered ? shadow.differs / shadow.answered : 0;
  const saves = shadow.would_save_micros >= 0;
  box.replaceChildren(
    el("strong", { text: "Shadow mode: " }),
    `auto would have chosen another model for ${number(shadow.differs)} of ${number(shadow.answered)} answered requests (${percent(share, 0)}) `,
    `and cost ${usd(shadow.auto_micros)} instead of ${usd(shadow.actual_micros)}: `,
    el("b", {
      class: saves ? "good" : "bad",
      text: saves ? `${usd(shadow.would_save_micros)} saved` : `${usd(-shadow.would_save_micros)} more`,
    }),
    shadow.unpriced ? ` (${plural(shadow.unpriced, "request")} without a known price left out)` : "",
    ".",
  );
}

/** The cost chart: a bar per bucket for what was paid, a step line for the baseline. */
function drawChart() {
  const chart = $("chart");
  const data = state.stats;
  if (!data) return;
  const width = Math.max(chart.clientWidth, 240);
  const height = Math.max(chart.clientHeight, 120);
  const pad = { left: 58, right: 8, top: 10, bottom: 22 };
  const buckets = data.series.buckets;
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const top = niceMax(Math.max(1, ...buckets.map((b) => Math.max(b.cost_micros, b.baseline_micros))));
  const y = (v) => pad.top + plotH - (plotH * v) / top;
  const step = plotW / Math.max(buckets.length, 1);
  const nodes = [];
  chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
  for (let i = 0; i <= 4; i++) {
    const v = (top * i) / 4;
    nodes.push(svg("line", { class: "grid", x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v) }));
    nodes.push(svg("text", { class: "axis", x: pad.left - 6, y: y(v) + 4, "text-anchor": "end" }, usd(v)));
  }
  const every = data.series.bucket_s >= 21600 ? Math.round(86400 / data.series.bucket_s) : 4;
  let baseline = "";
  buckets.forEach((b, i) => {
    const x = pad.left + i * step;
    const h = y(0) - y(b.cost_micros);
    const bar = svg("rect", { class: "bar", x: x + step * 0.15, y: y(b.cost_micros), width: Math.max(step * 0.7, 1), height: Math.max(h, b.cost_micros ? 1 : 0) });
    const end = b.start + data.series.bucket_s;
    const when = data.series.bucket_s >= 21600 ? `${day(b.start)} ${clock(b.start, false)}–${clock(end, false)}` : `${clock(b.start, false)}–${clock(end, false)}`;
    bar.append(svg("title", {}, `${when}: ${number(b.requests)} requests, paid ${usd(b.cost_micros)}, all-premium ${usd(b.baseline_micros)}`));
    nodes.push(bar);
    baseline += `${i ? "L" : "M"}${x},${y(b.baseline_micros)}H${x + step}`;
    if (i % every === 0 && x + 34 < width) {
      const label = data.series.bucket_s >= 21600 ? day(b.start) : clock(b.start, false);
      nodes.push(svg("text", { class: "axis", x: x + 2, y: height - 6 }, label));
    }
  });
  if (baseline) nodes.push(svg("path", { class: "baseline", d: baseline }));
  if (!buckets.some((b) => b.requests)) {
    nodes.push(svg("text", { class: "axis empty", x: pad.left + plotW / 2, y: pad.top + plotH / 2, "text-anchor": "middle" }, "no requests in this window"));
  }
  chart.replaceChildren(...nodes);
}

/** The top of a 4-line axis for values up to `v`: 4 round steps. */
function niceMax(v) {
  const step = v / 4;
  const magnitude = 10 ** Math.floor(Math.log10(step));
  const nice = [1, 2, 2.5, 5, 10].find((f) => f * magnitude >= step) || 10;
  return 4 * nice * magnitude;
}

const day = (ts) => new Date(ts * 1000).toLocaleDateString("en-GB", { weekday: "short", day: "numeric" });

function setupWindowSwitch() {
  for (const button of document.querySelectorAll("[data-window]")) {
    button.addEventListener("click", () => {
      state.window = button.dataset.window;
      for (const b of document.querySelectorAll("[data-window]")) {
        b.setAttribute("aria-pressed", String(b === button));
      }
      refreshStats();
    });
  }
  new ResizeObserver(() => drawChart()).observe($("chart"));
}

// -- live decisions ------------------------------------------------------------------------------

function setLive(kind, why) {
  const live = $("live");
  live.dataset.state = kind;
  live.textContent = kind;
  live.title = `live decisions: ${why || kind}`;
}

function addDecision(d) {
  if (state.seen.has(d.id)) return;
  state.seen.add(d.id);
  const tbody = $("decisions").tBodies[0];
  const fallback = d.status === "error" ? d.error || "failed" : d.fallback;
  const failures = (d.failures || []).map((f) => `${f.target}: ${f.failure}`).join("\n");
  const row = el("tr", { class: "new", dataset: { id: d.id, status: d.status, request: d.request_id } },
    el("td", { "data-label": "time", title: d.time, text: clock(d.ts) }),
    el("td", { "data-label": "client", text: d.client }),
    el("td", { "data-label": "class" },
      el("span", { class: "task", dataset: { task: d.task }, text: d.task }),
      d.mode && d.mode !== "auto" ? el("span", { class: "tag", title: `routing mode: ${d.mode}`, text: d.mode }) : null,
    ),
    el("td", { "data-label": "model", class: "model" },
      d.model ? el("code", { text: d.model }) : el("span", { class: "badge err", text: "no answer" }),
    ),
    el("td", { "data-label": "fallback", class: fallback ? "fallback" : "muted", title: failures || null, text: fallback || "—" }),
    el("td", { "data-label": "tokens", class: "num", text: `${number(d.input_tokens)} / ${number(d.output_tokens)}` }),
    el("td", { "data-label": "cache", class: "num", text: d.cache_share ? percent(d.cache_share, 0) : "—" }),
    el("td", { "data-label": "cost", class: "num", text: usd(d.cost_micros) }),
  );
  // newest first: ids grow, so find the first row older than this one
  const after = [...tbody.rows].find((r) => Number(r.dataset.id) < d.id);
  tbody.insertBefore(row, after || null);
  setTimeout(() => row.classList.remove("new"), 2000);
  while (tbody.rows.length > MAX_ROWS) {
    state.seen.delete(Number(tbody.rows[tbody.rows.length - 1].dataset.id));
    tbody.deleteRow(-1);
  }
  $("decisions-empty").hidden = true;
  $("decisions-count").textContent = `last ${tbody.rows.length}`;
}

/** Parse a server-sent event stream, calling `onEvent(type, data, id)` per event. */
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let type = "";
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    state.heard = Date.now();
    buffer += value;
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).replace(/\r$/, "");
      buffer = buffer.slice(newline + 1);
      if (line === "") {
        if (data.length) onEvent(type || "message", data.join("\n"));
        type = "";
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue; // a ping
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") type = text;
      else if (field === "data") data.push(text);
      else if (field === "id") state.lastId = text;
    }
  }
}

function onEvent(type, data) {
  if (type !== "decision") return;
  try {
    addDecision(JSON.parse(data));
  } catch (error) {
    console.warn("unreadable decision event", error);
    return;
  }
  soon();
}

function restartStream() {
  if (state.stream) state.stream.abort();
}

async function streamEvents() {
  let delay = 1000;
  for (;;) {
    const controller = new AbortController();
    state.stream = controller;
    state.heard = Date.now();
    const watchdog = setInterval(() => {
      if (Date.now() - state.heard > 45000) controller.abort(); // pings come every 15 s
    }, 5000);
    let retry = true;
    try {
      const extra = { Accept: "text/event-stream" };
      if (state.lastId !== null) extra["Last-Event-ID"] = state.lastId;
      const response = await fetch("/api/events", {
        headers: authHeaders(extra),
        cache: "no-store",
        signal: controller.signal,
      });
      if (response.status === 401 || response.status === 403) {
        setLive("offline", "a key is needed");
        retry = false;
      } else if (!response.ok || !response.body) {
        throw new Error(`HTTP ${response.status}`);
      } else {
        setLive("live", "connected");
        delay = 1000;
        await readEvents(response.body, onEvent);
      }
    } catch {
      // a network error or an abort: reconnect below
    } finally {
      clearInterval(watchdog);
    }
    if (controller.signal.aborted) delay = 250; // a new key: reconnect at once
    setLive(retry ? "reconnecting" : "offline", retry ? `again in ${Math.round(delay / 1000)} s` : "a key is needed");
    if (!retry) {
      await waitForRestart();
      continue;
    }
    await Promise.race([sleep(delay + Math.random() * 250), waitForRestart()]);
    delay = Math.min(delay * 2, 30000);
  }
}

/** Resolves when restartStream() is called (a new key was entered). */
function waitForRestart() {
  return new Promise((resolve) => {
    const controller = new AbortController();
    state.stream = controller;
    controller.signal.addEventListener("abort", resolve, { once: true });
  });
}

// -- admin actions -------------------------------------------------------------------------------

async function act(button, work) {
  button.setAttribute("aria-busy", "true");
  button.disabled = true;
  try {
    const message = await work();
    if (message) toast(message, "ok");
  } catch (error) {
    failed(error, button.textContent.trim());
  } finally {
    button.removeAttribute("aria-busy");
    button.disabled = false;
    state.rendered = {};
    await refreshDashboard();
  }
}

async function resetCooldown(target) {
  const r = await post("/api/cooldowns/reset", { target });
  return r.reset === 1 ? `Cooldown of ${target || "every key"} reset` : `${r.reset} cooldowns reset`;
}

function setupActions() {
  $("emergency").addEventListener("click", (event) =>
    act(event.currentTarget, async () => {
      const on = !(state.dash && state.dash.emergency && state.dash.emergency.on);
      const r = await post("/api/emergency", { on });
      if (!r.changed) return `Emergency mode was ${r.emergency ? "on" : "off"} already`;
      return r.emergency ? "Emergency mode on: only local models answer" : "Emergency mode off";
    }),
  );
  $("reload").addEventListener("click", (event) =>
    act(event.currentTarget, async () => {
      const r = await post("/api/config/reload", {});
      refreshStats();
      return `Config reloaded from ${r.config}`;
    }),
  );
  $("probe").addEventListener("click", (event) =>
    act(event.currentTarget, async () => {
      const r = await post("/api/probe", {});
      if (!r.probed.length) return "Nothing to probe: no key is in a probed cooldown";
      return r.probed.map((p) => `${p.key}: ${p.outcome}`).join("; ");
    }),
  );
  $("reset-all").addEventListener("click", (event) => act(event.currentTarget, () => resetCooldown("")));
  $("cooldowns").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-target]");
    if (button) act(button, () => resetCooldown(button.dataset.target));
  });
}

// -- every second --------------------------------------------------------------------------------

function tick() {
  const now = serverNow();
  let ended = false;
  for (const node of document.querySelectorAll("[data-until]")) {
    const left = Number(node.dataset.until) - now;
    node.textContent = left > 0 ? span(left) : "ending…";
    node.dataset.remaining = String(Math.max(0, Math.ceil(left)));
    ended ||= left <= 0;
  }
  for (const node of document.querySelectorAll("[data-resets]")) {
    if (node.dataset.resets) node.textContent = `resets in ${span(Number(node.dataset.resets) - now, false)}`;
  }
  if (ended) soon(1000);
  if (state.updated) {
    const ago = Math.round((Date.now() - state.updated) / 1000);
    $("updated").textContent = ago < 2 ? "updated just now" : `updated ${ago} s ago`;
  }
}

// -- start ---------------------------------------------------------------------------------------

function start() {
  setupKeyDialog();
  setupActions();
  setupWindowSwitch();
  refreshDashboard();
  refreshStats();
  streamEvents();
  setInterval(refreshDashboard, 5000);
  setInterval(refreshStats, 30000);
  setInterval(tick, 1000);
}

start();
