// Posthorn's dashboard: a page over the /v1 API. Everything it shows of events, requests and
// responses is untrusted text: it is put in the page with textContent, never as HTML.
"use strict";

const S = { bearer: null, csrf: null, who: null, portal: false };
const $main = () => document.getElementById("main");

// h("tag.class", {attrs}, ...children): an element; strings become text nodes.
function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || "HTTP " + status);
    this.status = status;
    this.problem = problem;
  }
}

async function api(method, path, body) {
  const headers = {};
  if (S.bearer) headers["Authorization"] = "Bearer " + S.bearer;
  else if (method !== "GET" && S.csrf) headers["X-CSRF-Token"] = S.csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  if (!r.ok) {
    if (r.status === 401 && !path.startsWith("/ui/")) { if (S.portal) portalEnded(); else signedOut(); }
    throw new ApiError(r.status, json);
  }
  return json;
}

function toast(msg) {
  const t = h("div", { text: msg });
  t.dataset.at = Date.now();
  document.getElementById("toast").append(t);
  setTimeout(() => t.remove(), 5000);
}

// An error where it happened: the problem's detail and each field at fault.
function problem(e) {
  const p = e.problem || {};
  return h("div.card.error", { role: "alert" },
    h("strong", { text: (p.title || "Error") + (e.status ? " (" + e.status + ")" : "") }),
    h("div", { text: p.detail || e.message }),
    p.errors && p.errors.length ? h("ul", {}, p.errors.map((f) => h("li", { text: (f.field ? f.field + ": " : "") + f.message }))) : null);
}

function badge(s) { return h("span.badge." + String(s).replace(/[^a-z_]/g, ""), { text: s }); }
// A time as people read it: how long ago (or how soon), then the date and time with its zone.
function when(t) {
  if (!t) return "—";
  const d = new Date(t);
  const exact = d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short" });
  return relative(d.getTime() - Date.now()) + " · " + exact;
}
function relative(ms) {
  const s = Math.round(Math.abs(ms) / 1000);
  const [n, unit] = s < 60 ? [s, "s"] : s < 3600 ? [Math.round(s / 60), "min"] : s < 86400 ? [Math.round(s / 3600), "h"] : [Math.round(s / 86400), "d"];
  if (s < 5) return "just now";
  return ms < 0 ? n + " " + unit + " ago" : "in " + n + " " + unit;
}
// A time in a table: how long ago, the full zoned time on hover (rows stay one line high).
function ago(t) {
  if (!t) return "—";
  const d = new Date(t);
  return h("time", { datetime: d.toISOString(), title: when(t).split(" · ")[1], text: relative(d.getTime() - Date.now()) });
}
function cut(s, n) { s = String(s ?? ""); return s.length > n ? s.slice(0, n - 1) + "…" : s; }
function link(href, text) { return h("a", { href, text }); }

// A body as logged: pretty JSON when it is JSON, bounded.
function pretty(body) {
  if (body === null || body === undefined) return h("p.muted", { text: "(no body)" });
  let text = typeof body === "string" ? body : JSON.stringify(body, null, 2);
  if (typeof body === "string") {
    try { text = JSON.stringify(JSON.parse(body), null, 2); } catch (_) { /* as it is */ }
  }
  const limit = 64 * 1024;
  return h("pre", { text: text.length > limit ? text.slice(0, limit) + "\n… (" + text.length + " characters, cut)" : text });
}

function headersTable(headers) {
  const rows = Array.isArray(headers) ? headers : Object.entries(headers || {});
  if (!rows.length) return null;
  return h("div.scroll", {}, h("table", {}, h("tbody", {}, rows.map(([k, v]) => h("tr", {}, h("td.mono", { text: k }), h("td.mono", { text: Array.isArray(v) ? v.join(", ") : v }))))));
}

function page(title, ...children) {
  const m = draw(title, children);
  // Focus for screen readers and the keyboard, without scrolling the header away.
  m.focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

// The page drawn again where the reader is (a page that follows what it shows): no scroll, no
// focus moved.
function redraw(title, ...children) { draw(title, children); }

function draw(title, children) {
  const m = $main();
  m.replaceChildren(h("h1", { text: title }), ...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  document.title = title + " · Posthorn";
  return m;
}

// ---- sign-in ---------------------------------------------------------------------------------

// The portal's session outlives a reload of its tab, not the tab: it is kept in sessionStorage
// (which a browser may refuse a third-party frame; then it is in memory only, as before).
const PORTAL_KEY = "posthorn.portal";
function keepPortal() {
  try { sessionStorage.setItem(PORTAL_KEY, JSON.stringify({ bearer: S.bearer, who: S.who })); } catch (_) { /* memory only */ }
}
function keptPortal() {
  try { return JSON.parse(sessionStorage.getItem(PORTAL_KEY) || "null"); } catch (_) { return null; }
}
function forgetPortal() {
  try { sessionStorage.removeItem(PORTAL_KEY); } catch (_) { /* nothing kept */ }
}

// The portal's token expired or was revoked: there is no sign-in form to offer (the platform
// opens the portal), so say so.
function portalEnded() {
  forgetPortal();
  S.bearer = null; S.who = null; S.portal = false;
  document.getElementById("nav").hidden = true;
  $main().replaceChildren(h("div.card.error", { role: "alert", id: "portal-ended" },
    h("h1", { text: "This session has ended" }),
    h("p", { text: "The portal's session has expired. Open the page again from the platform." })));
  document.title = "Session ended · Posthorn";
}

function signedOut(message) {
  S.csrf = null; S.who = null;
  document.getElementById("nav").hidden = true;
  const err = h("div");
  if (message) err.append(problem(new ApiError(0, { title: message })));
  const token = h("input", { type: "password", name: "token", id: "token", autocomplete: "off" });
  const cid = h("input", { name: "client_id", id: "client_id", autocomplete: "username" });
  const secret = h("input", { type: "password", name: "client_secret", id: "client_secret", autocomplete: "current-password" });
  const submit = async (ev) => {
    ev.preventDefault();
    err.replaceChildren();
    const body = token.value ? { token: token.value } : { client_id: cid.value, client_secret: secret.value };
    try { await api("POST", "/ui/login", body); await start(); }
    catch (e) { err.replaceChildren(problem(e)); }
  };
  $main().replaceChildren(h("div.login.card", {},
    h("h1", { text: "Sign in" }),
    err,
    h("form.stack", { onsubmit: submit },
      h("label", {}, "Admin token or access token", token),
      h("p.muted", { text: "or an application's client credentials:" }),
      h("label", {}, "Client id", cid),
      h("label", {}, "Client secret", secret),
      h("button", { type: "submit", id: "signin" }, "Sign in"))));
  document.title = "Sign in · Posthorn";
}

async function start() {
  const hash = location.hash;
  const kept = keptPortal();
  if (hash.startsWith("#portal=")) {
    const ticket = decodeURIComponent(hash.slice("#portal=".length));
    history.replaceState(null, "", location.pathname + "#/subscriptions");
    try {
      const r = await api("POST", "/ui/portal", { ticket });
      S.bearer = r.access_token; S.portal = true;
      S.who = { admin: false, owner: r.application.id, name: r.application.name };
      keepPortal();
    } catch (e) {
      forgetPortal();
      $main().replaceChildren(h("div.card.error", { role: "alert", id: "portal-refused" },
        h("h1", { text: "This link cannot be opened" }),
        h("p", { text: "The portal link is invalid or has expired. Ask for a new one." })));
      return;
    }
  } else if (kept && kept.bearer) {
    S.bearer = kept.bearer; S.portal = true; S.who = kept.who;
  } else {
    const who = await api("GET", "/ui/session");
    if (!who.signed_in) return signedOut();
    S.csrf = who.csrf; S.who = who;
  }
  const nav = document.getElementById("nav");
  nav.hidden = false;
  document.getElementById("who").textContent = S.who.admin ? "admin" : (S.who.name || S.who.owner);
  document.getElementById("signout").hidden = S.portal;
  if (!location.hash || location.hash === "#") location.hash = "#/subscriptions";
  route();
}

// ---- pages -----------------------------------------------------------------------------------

// Subscriptions' names by id, for lists that name a subscription (the first 1,000 the caller
// sees; an id not among them is shown as it is).
async function subscriptionNames() {
  const names = new Map();
  try {
    const list = await api("GET", "/v1/subscriptions?limit=1000");
    for (const s of list.items) names.set(s.id, s.name);
  } catch (_) { /* ids then */ }
  return names;
}
function subscriptionLink(names, id) {
  return link("#/subscriptions/" + encodeURIComponent(id), names.get(id) || id);
}

async function subscriptionsPage() {
  const list = await api("GET", "/v1/subscriptions?limit=100");
  const rate = (id, cell) => api("GET", "/v1/stats/deliveries?window=day&subscription_id=" + encodeURIComponent(id))
    .then((s) => {
      const t = s.totals, n = t.success + t.retry + t.final;
      cell.textContent = n ? Math.round((100 * t.success) / n) + " % of " + n : "—";
    }).catch(() => { cell.textContent = "?"; });
  const rows = list.items.map((s) => {
    const rateCell = h("td", { text: "…" });
    rate(s.id, rateCell);
    const failing = [
      s.failing_since ? "failing since " + relative(Date.parse(s.failing_since) - Date.now()) : null,
      s.circuit.state === "closed" ? null : s.circuit.failures + " failed in a row" + (s.circuit.until ? ", next probe " + relative(Date.parse(s.circuit.until) - Date.now()) : ""),
    ].filter(Boolean).join("; ") || "—";
    return h("tr", { "data-id": s.id },
      h("td", {}, link("#/subscriptions/" + encodeURIComponent(s.id), s.name)),
      h("td", {}, badge(s.status), s.disabled_reason ? h("span.muted", { text: " " + s.disabled_reason }) : null),
      h("td.mono", { text: cut(s.events.join(", "), 40) }),
      h("td.mono.hide-narrow", { text: cut(s.filter || "—", 40) }),
      h("td.hide-narrow", { text: s.service }),
      h("td", {}, badge(s.circuit.state), " ", h("span.muted", { text: failing })),
      rateCell);
  });
  page("Subscriptions",
    h("div.actions", {}, h("button", { type: "button", text: "New subscription", onclick: () => { location.hash = "#/subscriptions/new"; } })),
    list.items.length ? h("div.scroll", {}, h("table", { id: "subscriptions" },
      h("thead", {}, h("tr", {}, ["Name", "Status", "Events", "Filter", "Service", "Failing", "Success (24 h)"].map((c, i) => h("th" + (i === 3 || i === 4 ? ".hide-narrow" : ""), { text: c })))),
      h("tbody", {}, rows))) : firstSteps());
}

// The empty state: what makes the first subscription, from here or from a shell.
function firstSteps() {
  const origin = location.origin;
  return h("div.card.empty", { id: "first-steps" },
    h("p", { text: "No subscriptions yet. Make the first one with the button above, or from a shell:" }),
    h("pre", { text: "curl -s " + origin + "/v1/subscriptions -H \"authorization: Bearer $POSTHORN_TOKEN\" \\\n" +
      "  -H 'content-type: application/json' -d '{\"name\": \"My first hook\", \"service\": \"http\",\n" +
      "  \"config\": {\"url\": \"http://127.0.0.1:9000/hook\"}, \"events\": [\"new_feed_entry\"]}'" }),
    h("p", {}, "Then publish an event to it: ", h("code", { text: "POST /v1/events" }), " (", link("/docs", "the API"), ")."));
}

// The endpoint's access of an `http` subscription (OAuth2, a client certificate, a proxy): fields
// of their own, kept out of the JSON config and merged back into it on save. Secrets are
// write-only: their field starts empty, and left empty keeps the one stored (the masked value
// the server showed goes back, which it reads as "unchanged").
const ACCESS_KEYS = ["oauth2", "client_certificate", "proxy"];

function accessFields(config) {
  const o = config.oauth2 || {};
  const c = config.client_certificate || {};
  const unchanged = "unchanged (write-only)";
  const f = {
    token_url: h("input", { name: "oauth2_token_url", type: "url", value: o.token_url || "", placeholder: "https://sso.example.com/oauth2/token" }),
    client_id: h("input", { name: "oauth2_client_id", value: o.client_id || "" }),
    client_secret: h("input", { name: "oauth2_client_secret", type: "password", autocomplete: "new-password", placeholder: o.client_secret ? unchanged : "" }),
    scope: h("input", { name: "oauth2_scope", value: o.scope || "" }),
    audience: h("input", { name: "oauth2_audience", value: o.audience || "" }),
    client_auth: h("select", { name: "oauth2_client_auth" }, [["basic", "HTTP Basic"], ["form", "form fields"]].map(([v, t]) => h("option", { value: v, selected: (o.client_auth || "basic") === v, text: t }))),
    certificate: h("textarea", { name: "client_certificate", placeholder: "-----BEGIN CERTIFICATE-----" }),
    private_key: h("textarea", { name: "client_key", placeholder: c.private_key ? unchanged : "-----BEGIN PRIVATE KEY-----" }),
    proxy: h("input", { name: "proxy", value: config.proxy || "", placeholder: "http://proxy.internal:3128 or socks5://…" }),
  };
  f.certificate.value = c.certificate || "";
  // What goes into the config: each part set, or null to remove one that was there.
  f.read = () => {
    const out = {};
    const v = (el) => el.value.trim();
    if (v(f.token_url) || v(f.client_id) || v(f.client_secret)) {
      out.oauth2 = { token_url: v(f.token_url), client_id: v(f.client_id), client_secret: v(f.client_secret) || o.client_secret || "", client_auth: f.client_auth.value };
      if (v(f.scope)) out.oauth2.scope = v(f.scope);
      if (v(f.audience)) out.oauth2.audience = v(f.audience);
    } else if (config.oauth2) out.oauth2 = null;
    if (v(f.certificate)) out.client_certificate = { certificate: f.certificate.value, private_key: f.private_key.value.trim() ? f.private_key.value : (c.private_key || "") };
    else if (config.client_certificate) out.client_certificate = null;
    if (v(f.proxy)) out.proxy = v(f.proxy);
    else if (config.proxy) out.proxy = null;
    return out;
  };
  f.fieldset = h("fieldset.card", { id: "endpoint-access" },
    h("legend", { text: "Endpoint access (http)" }),
    h("p.muted", { text: "For receivers behind OAuth2, mutual TLS or a proxy (docs/delivery.md says how each works). Secrets are write-only: left empty, the stored one is kept." }),
    h("h3", { text: "OAuth2 client credentials" }),
    h("label", {}, "Token URL", f.token_url), h("label", {}, "Client id", f.client_id),
    h("label", {}, "Client secret", f.client_secret), h("label", {}, "Scope (optional)", f.scope),
    h("label", {}, "Audience (optional)", f.audience), h("label", {}, "Client authentication", f.client_auth),
    h("h3", { text: "Client certificate (mutual TLS)" }),
    h("label", {}, "Certificate (PEM, the leaf first)", f.certificate), h("label", {}, "Private key (PEM)", f.private_key),
    h("h3", { text: "Proxy" }),
    h("label", {}, "Proxy URL (instead of the server's --egress-proxy)", f.proxy));
  return f;
}

async function subscriptionForm(id) {
  const existing = id ? await api("GET", "/v1/subscriptions/" + encodeURIComponent(id)) : null;
  const services = await api("GET", "/v1/services").catch(() => ({ items: [{ name: "http" }] }));
  const f = {
    name: h("input", { name: "name", required: true, value: existing ? existing.name : "" }),
    service: h("select", { name: "service" }, (services.items || []).map((s) => h("option", { value: s.name, selected: existing ? existing.service === s.name : s.name === "http", text: s.name }))),
    config: h("textarea", { name: "config" }),
    events: h("input", { name: "events", required: true, value: existing ? existing.events.join(", ") : "", placeholder: "order.paid, invoice.*" }),
    filter: h("input", { name: "filter", value: existing && existing.filter ? existing.filter : "", placeholder: "amount > 100 and currency = \"EUR\"" }),
    ordered: h("select", { name: "ordered" }, [["false", "in parallel"], ["true", "one at a time, in publish order"], ["key", "in publish order per key, keys in parallel"]]
      .map(([v, t]) => h("option", { value: v, selected: String(existing ? existing.ordered : false) === v, text: t }))),
    order_key: h("input", { name: "order_key", value: existing && existing.order_key ? existing.order_key : "", placeholder: "order.id (empty: the event's ordering_key)" }),
  };
  const keyLabel = h("label", {}, "Order key (a path of the filter language)", f.order_key);
  const showKey = () => { keyLabel.hidden = f.ordered.value !== "key"; };
  f.ordered.addEventListener("change", showKey);
  showKey();
  const stored = existing ? existing.config : {};
  const shown = existing ? { ...existing.config } : { url: "https://" };
  for (const k of ACCESS_KEYS) delete shown[k];
  f.config.value = JSON.stringify(shown, null, 2);
  const access = accessFields(existing && existing.service === "http" ? stored : {});
  const fresh = f.config.value;
  const showAccess = () => {
    access.fieldset.hidden = f.service.value !== "http";
    // A poll subscription takes no config: the untouched default becomes {}.
    if (f.service.value === "poll" && f.config.value === fresh && !existing) f.config.value = "{}";
  };
  f.service.addEventListener("change", showAccess);
  showAccess();
  const err = h("div");
  const submit = async (ev) => {
    ev.preventDefault();
    err.replaceChildren();
    let config;
    try { config = JSON.parse(f.config.value); } catch (e) { err.replaceChildren(problem(new ApiError(0, { title: "The config is not JSON", detail: e.message }))); return; }
    if (f.service.value === "http" && config && typeof config === "object") {
      for (const [k, v] of Object.entries(access.read())) {
        if (v === null) { if (existing) config[k] = null; } else config[k] = v;
      }
    }
    const body = {
      name: f.name.value, service: f.service.value, config,
      events: f.events.value.split(",").map((s) => s.trim()).filter(Boolean),
      filter: f.filter.value.trim() || null,
      ordered: f.ordered.value === "key" ? "key" : f.ordered.value === "true",
      order_key: f.ordered.value === "key" && f.order_key.value.trim() ? f.order_key.value.trim() : null,
    };
    try {
      const saved = existing
        ? await api("PATCH", "/v1/subscriptions/" + encodeURIComponent(id), body)
        : await api("POST", "/v1/subscriptions", body);
      if (saved.secret) sessionStorage.setItem("secret:" + saved.id, saved.secret);
      location.hash = "#/subscriptions/" + encodeURIComponent(saved.id);
    } catch (e) { err.replaceChildren(problem(e)); }
  };
  page(existing ? "Edit " + existing.name : "New subscription", err,
    h("form.stack.card", { onsubmit: submit },
      h("label", {}, "Name", f.name),
      h("label", {}, "Service", f.service),
      h("label", {}, "Config (JSON; for http: url, method, headers, content_type, body…)", f.config),
      access.fieldset,
      h("label", {}, "Events (names or patterns, comma-separated)", f.events),
      h("label", {}, "Filter (optional)", f.filter),
      h("label", {}, "Order", f.ordered), keyLabel,
      h("div.actions", {}, h("button", { type: "submit", text: existing ? "Save" : "Create" }), link(existing ? "#/subscriptions/" + encodeURIComponent(id) : "#/subscriptions", "Cancel"))));
}

// What gets the subscription past a locked-down receiver, in words (secrets never shown).
function accessSummary(s) {
  const c = s.config || {};
  const parts = [];
  if (c.oauth2) parts.push("OAuth2 client " + c.oauth2.client_id + " at " + c.oauth2.token_url);
  if (c.client_certificate) parts.push("client certificate" + (s.credential_expires_at ? " (expires " + new Date(s.credential_expires_at).toLocaleDateString() + ")" : ""));
  if (c.proxy) parts.push("through the proxy " + c.proxy);
  return parts.join("; ");
}

async function subscriptionPage(id, params) {
  const s = await api("GET", "/v1/subscriptions/" + encodeURIComponent(id));
  const path = "/v1/subscriptions/" + encodeURIComponent(id);
  const act = (label, fn, cls) => h("button" + (cls ? "." + cls : ""), { type: "button", onclick: async (ev) => {
    ev.target.disabled = true;
    try { await fn(); } catch (e) { $main().prepend(problem(e)); ev.target.disabled = false; }
  }, text: label });
  const secret = sessionStorage.getItem("secret:" + id);
  sessionStorage.removeItem("secret:" + id);
  const since = h("input", { type: "datetime-local", name: "recover-since", "aria-label": "Recover dead deliveries since" });
  const status = h("select", { name: "status", "aria-label": "Status" }, ["", "pending", "succeeded", "dead", "cancelled"].map((v) => h("option", { value: v, selected: params.get("status") === v, text: v || "any status" })));
  const from = h("input", { type: "datetime-local", name: "since", "aria-label": "Since", value: params.get("since") || "" });
  const q = new URLSearchParams({ limit: "50" });
  if (params.get("status")) q.set("status", params.get("status"));
  if (params.get("since")) q.set("since", new Date(params.get("since")).toISOString());
  const deliveries = await api("GET", path + "/deliveries?" + q);
  page(s.name,
    secret ? h("div.card", { role: "status" }, h("strong", { text: "Signing secret (shown once): " }), h("code", { text: secret })) : null,
    h("div.card", {}, h("dl", {},
      h("dt", { text: "Id" }), h("dd.mono", { text: s.id }),
      h("dt", { text: "Status" }), h("dd", {}, badge(s.status), s.disabled_reason ? " " + s.disabled_reason : ""),
      h("dt", { text: "Events" }), h("dd.mono", { text: s.events.join(", ") }),
      h("dt", { text: "Filter" }), h("dd.mono", { text: s.filter || "—" }),
      h("dt", { text: "Service" }), h("dd", { text: s.service }),
      h("dt", { text: "Config" }), h("dd", {}, pretty(s.config)),
      h("dt", { text: "Circuit" }), h("dd", {}, badge(s.circuit.state), s.circuit.state !== "closed" ? " " + s.circuit.failures + " failed in a row; next probe " + when(s.circuit.until) : ""),
      h("dt", { text: "Failing since" }), h("dd", { id: "failing-since", text: s.failing_since ? when(s.failing_since) : "—" }),
      h("dt", { text: "Order" }), h("dd", { id: "order", text: s.ordered === "key" ? "per key (" + (s.order_key || "the event's ordering_key") + ")" : s.ordered ? "one at a time" : "in parallel" }),
      ...(s.service === "poll" ? [h("dt", { text: "Feed" }), h("dd", { id: "feed" }, "Pulled by its consumer: ", h("code", { text: "GET /v1/subscriptions/" + s.id + "/feed" }), " (scope consume) or ", h("code", { text: "posthorn feed " + s.id }), "; its pending deliveries are what waits to be acknowledged.")] : []),
      ...(accessSummary(s) ? [h("dt", { text: "Endpoint access" }), h("dd", { id: "access-summary", text: accessSummary(s) })] : []),
      ...(s.credential_expires_at ? [h("dt", { text: "Certificate expires" }), h("dd", { id: "credential-expires", text: when(s.credential_expires_at) })] : []))),
    h("div.actions", {},
      s.status === "active"
        ? act("Disable", async () => { await api("POST", path + "/disable"); toast("Disabled"); route(); }, "secondary")
        : act("Enable", async () => { await api("POST", path + "/enable"); toast("Enabled"); route(); }),
      act("Send test event", async () => { await api("POST", path + "/test"); toast("posthorn.ping sent"); setTimeout(route, 800); }, "secondary"),
      act("Rotate secret", async () => {
        if (!confirm("A new signing secret; the current one keeps signing for 24 hours. Go on?")) return;
        const r = await api("POST", path + "/rotate-secret");
        sessionStorage.setItem("secret:" + id, r.secret); route();
      }, "secondary"),
      link("#/subscriptions/" + encodeURIComponent(id) + "/edit", "Edit"),
      act("Delete", async () => {
        if (!confirm("Delete this subscription? Its pending deliveries are cancelled.")) return;
        await api("DELETE", path); toast("Deleted"); location.hash = "#/subscriptions";
      }, "danger")),
    h("h2", { text: "Deliveries" }),
    h("form.row", { onsubmit: (ev) => {
      ev.preventDefault();
      const p = new URLSearchParams();
      if (status.value) p.set("status", status.value);
      if (from.value) p.set("since", from.value);
      location.hash = "#/subscriptions/" + encodeURIComponent(id) + (p.toString() ? "?" + p : "");
    } }, h("label", {}, "Status", status), h("label", {}, "Since", from), h("button.secondary", { type: "submit", text: "Show" })),
    deliveryTable(deliveries.items, false),
    h("form.row", { onsubmit: async (ev) => {
      ev.preventDefault();
      if (!since.value) return;
      try {
        const r = await api("POST", path + "/recover", { since: new Date(since.value).toISOString() });
        toast("Requeued " + r.requeued + " dead deliveries"); route();
      } catch (e) { $main().prepend(problem(e)); }
    } }, h("label", {}, "Recover dead deliveries since", since), h("button.secondary", { type: "submit", text: "Recover" })));
}

// Why a pending delivery waits, in a few words (`long`: with until when and behind what).
function heldText(held, long) {
  const why = {
    circuit_open: "circuit open", ordered: "ordered", subscription_disabled: "subscription disabled",
    pulled: "waits for its consumer to pull it",
  }[held.reason] || held.reason;
  if (!long) return " held: " + why;
  let text = " held (" + why + ")";
  if (held.behind) text += " behind " + held.behind;
  if (held.until) text += ", until " + when(held.until);
  return text;
}

function deliveryTable(items, names) {
  if (!items.length) return h("p.muted", { text: "No deliveries." });
  // The event first (its name links to the delivery), then how it went; ids last.
  const last = (d) => d.last_attempt ? String(d.last_attempt.status ?? d.last_attempt.outcome) : "—";
  const took = (d) => d.last_attempt ? d.last_attempt.duration_ms + " ms" : "—";
  const cols = ["Event", "Status", "Last answer", "Took", "Attempts", "Created", "Next attempt", names ? "Subscription" : null, "Delivery"].filter(Boolean);
  const narrow = ["Took", "Attempts", "Created", "Next attempt", "Delivery"];
  return h("div.scroll", {}, h("table", { id: "deliveries" },
    h("thead", {}, h("tr", {}, cols.map((c) => h("th" + (narrow.includes(c) ? ".hide-narrow" : ""), { text: c })))),
    h("tbody", {}, items.map((d) => h("tr", { "data-id": d.id },
      h("td", {}, link("#/deliveries/" + encodeURIComponent(d.id), d.event_name)),
      h("td", {}, badge(d.status), d.held ? h("span.muted.held", { text: heldText(d.held, false) }) : null),
      h("td.last-answer", { text: last(d) }),
      h("td.hide-narrow", { text: took(d) }),
      h("td.hide-narrow", { text: d.attempts }),
      h("td.hide-narrow", {}, ago(d.created_at)),
      h("td.hide-narrow", {}, d.next_attempt_at ? ago(d.next_attempt_at) : "—"),
      names ? h("td.subscription", {}, subscriptionLink(names, d.subscription_id)) : null,
      h("td.mono.hide-narrow", {}, link("#/deliveries/" + encodeURIComponent(d.id), d.id)))))));
}

// Deliveries, searched: a delivery's or an event's id opens it; any other text is an event name.
// The subscription, the status and a time window narrow the list; "Older" pages on.
async function deliveriesPage(params) {
  const names = await subscriptionNames();
  const search = h("input", { type: "search", name: "q", value: params.get("q") || "", placeholder: "event name, dlv_… or evt_…", "aria-label": "Search" });
  const status = h("select", { name: "status", "aria-label": "Status" }, ["", "pending", "succeeded", "dead", "cancelled"].map((v) => h("option", { value: v, selected: params.get("status") === v, text: v || "any status" })));
  const subscription = h("select", { name: "subscription", "aria-label": "Subscription" },
    h("option", { value: "", text: "any subscription" }),
    [...names].map(([id, name]) => h("option", { value: id, selected: params.get("subscription") === id, text: name })));
  const since = h("input", { type: "datetime-local", name: "since", value: params.get("since") || "", "aria-label": "Since" });
  const q = new URLSearchParams({ limit: "100" });
  if (params.get("status")) q.set("status", params.get("status"));
  if (params.get("q")) q.set("event_name", params.get("q"));
  if (params.get("subscription")) q.set("subscription_id", params.get("subscription"));
  if (params.get("since")) q.set("since", new Date(params.get("since")).toISOString());
  if (params.get("cursor")) q.set("cursor", params.get("cursor"));
  const list = await api("GET", "/v1/deliveries?" + q);
  const here = (extra) => {
    const p = new URLSearchParams();
    const text = search.value.trim();
    if (text) p.set("q", text);
    if (status.value) p.set("status", status.value);
    if (subscription.value) p.set("subscription", subscription.value);
    if (since.value) p.set("since", since.value);
    for (const [k, v] of Object.entries(extra || {})) p.set(k, v);
    return "#/deliveries" + (p.toString() ? "?" + p : "");
  };
  page("Deliveries",
    h("form.row", { id: "delivery-search", onsubmit: (ev) => {
      ev.preventDefault();
      const text = search.value.trim();
      if (/^dlv_/.test(text)) location.hash = "#/deliveries/" + encodeURIComponent(text);
      else if (/^evt_/.test(text)) location.hash = "#/events/" + encodeURIComponent(text);
      else location.hash = here();
    } },
      h("label.grow", {}, "Search", search), h("label", {}, "Subscription", subscription),
      h("label", {}, "Status", status), h("label", {}, "Since", since),
      h("button.secondary", { type: "submit", text: "Search" })),
    deliveryTable(list.items, names),
    list.next_cursor ? h("div.actions", {}, link(here({ cursor: list.next_cursor }), "Older deliveries")) : null);
}

// What an attempt sent and got, as its service logs it: an HTTP request and response, a plugin's
// command and its exit or answer with its output, a mail and the SMTP reply, a broker message and
// the broker's confirmation.
function exchange(req, resp) {
  req = req || {};
  if (Array.isArray(req.command)) {
    const got = !resp ? h("p.muted", { text: "No answer." })
      : [h("p", {}, "exit_code" in resp ? "Exit " : "Answer ", h("strong.response-status", { text: "exit_code" in resp ? (resp.exit_code === null ? "killed" : String(resp.exit_code)) : String(resp.outcome) })),
        ...["output", "stdout", "stderr"].filter((k) => resp[k] !== undefined && resp[k] !== null && resp[k] !== "")
          .map((k) => [h("h4", { text: k }), pretty(resp[k])])];
    return [h("h3", { text: "Command" }), h("p.mono", { text: req.command.join(" ") }), pretty(req.config), h("h3", { text: "Result" }), got];
  }
  if (req.envelope) {
    const to = Array.isArray(req.envelope.to) ? req.envelope.to.join(", ") : String(req.envelope.to);
    return [h("h3", { text: "Mail" }), h("p.mono", { text: "to " + to + " via " + (req.server || "") }), headersTable(req.headers), pretty(req.body),
      h("h3", { text: "SMTP reply" }), resp ? h("p", {}, h("strong.response-status", { text: String(resp.code) }), " ", [].concat(resp.message || []).join(" ")) : h("p.muted", { text: "No reply." })];
  }
  if (req.method) {
    return [h("h3", { text: "Request" }), h("p.mono", { text: req.method + " " + (req.url || "") }), headersTable(req.headers), pretty(req.body),
      h("h3", { text: "Response" }),
      resp ? [h("p", {}, "Status ", h("strong.response-status", { text: resp.status })), headersTable(resp.headers), pretty(resp.body)] : h("p.muted", { text: "No response." })];
  }
  const { body, ...to } = req;
  return [h("h3", { text: "Message" }), pretty(to), pretty(body), h("h3", { text: "Confirmation" }), resp ? pretty(resp) : h("p.muted", { text: "No confirmation." })];
}

// A pending delivery's page follows it: read again every 2 s while it is shown (and the tab is
// seen), and drawn again in place when an attempt was made or its status changed. A failed read
// is said on the page (what is shown may be stale) and tried again at the next turn; leaving the
// page ends it.
const FOLLOW_MS = 2000;
let following = null;

function followDelivery(id, shown) {
  clearTimeout(following);
  const here = location.hash;
  following = setTimeout(async () => {
    if (location.hash !== here) return;
    if (document.hidden) return followDelivery(id, shown);
    const note = document.getElementById("following");
    let d;
    try { d = await api("GET", "/v1/deliveries/" + encodeURIComponent(id)); }
    catch (e) {
      if (note && location.hash === here) {
        note.textContent = "Not up to date: reading it again failed (" + (e.message || e) + "); trying again.";
      }
      return followDelivery(id, shown);
    }
    if (note) note.textContent = "";
    if (location.hash !== here) return;
    if (d.status !== shown.status || d.attempts !== shown.attempts) drawDelivery(d, redraw);
    else followDelivery(id, shown);
  }, FOLLOW_MS);
}

async function deliveryPage(id) {
  drawDelivery(await api("GET", "/v1/deliveries/" + encodeURIComponent(id)), page);
}

function drawDelivery(d, show) {
  const id = d.id;
  if (d.status === "pending") followDelivery(id, d);
  // A pulled delivery is never pushed: its consumer reads it from the feed.
  const pulled = d.held && d.held.reason === "pulled";
  const retry = h("button", { type: "button", id: "retry", text: "Retry now", disabled: pulled,
    title: pulled ? "Its consumer pulls it from the subscription's feed" : undefined, onclick: async () => {
    retry.disabled = true;
    try { await api("POST", "/v1/deliveries/" + encodeURIComponent(id) + "/retry"); toast("Retrying"); setTimeout(route, 1000); }
    catch (e) { $main().prepend(problem(e)); retry.disabled = false; }
  } });
  const attempts = (d.attempt_log || []).slice().reverse().map((a) => h("section.attempt." + a.outcome, { "data-number": a.number },
    h("h2", {}, "Attempt " + a.number + " ", badge(a.outcome)),
    h("p.muted", { text: when(a.started_at) + " · " + a.duration_ms + " ms" }),
    a.error ? h("p.error", { text: a.error }) : null,
    exchange(a.request, a.response)));
  show("Delivery " + d.id,
    h("div.card", {}, h("dl", {},
      h("dt", { text: "Status" }), h("dd", { id: "delivery-status" }, badge(d.status), d.held ? heldText(d.held, true) : ""),
      h("dt", { text: "Event" }), h("dd", {}, link("#/events/" + encodeURIComponent(d.event_id), d.event_name + " · " + d.event_id)),
      h("dt", { text: "Subscription" }), h("dd", {}, link("#/subscriptions/" + encodeURIComponent(d.subscription_id), d.subscription_id)),
      d.order_key ? h("dt", { text: "Ordering key" }) : null, d.order_key ? h("dd.mono", { id: "order-key", text: d.order_key }) : null,
      h("dt", { text: "Attempts" }), h("dd", { text: d.attempts }),
      h("dt", { text: "Next attempt" }), h("dd", { text: d.next_attempt_at ? when(d.next_attempt_at) : "—" }))),
    h("div.actions", {}, retry),
    d.status === "pending" ? h("p.error", { id: "following", role: "status" }) : null,
    attempts.length ? attempts : h("p.muted", { text: "No attempt yet." }));
}

async function eventsPage(params) {
  const name = h("input", { name: "name", value: params.get("name") || "", placeholder: "order.paid", "aria-label": "Event name" });
  const since = h("input", { type: "datetime-local", name: "since", value: params.get("since") || "", "aria-label": "Since" });
  const q = new URLSearchParams({ limit: "100" });
  if (params.get("name")) q.set("name", params.get("name"));
  if (params.get("since")) q.set("since", new Date(params.get("since")).toISOString());
  const list = await api("GET", "/v1/events?" + q);
  page("Events",
    h("form.row", { onsubmit: (ev) => {
      ev.preventDefault();
      const p = new URLSearchParams();
      if (name.value) p.set("name", name.value);
      if (since.value) p.set("since", since.value);
      location.hash = "#/events" + (p.toString() ? "?" + p : "");
    } }, h("label", {}, "Name", name), h("label", {}, "Since", since), h("button.secondary", { type: "submit", text: "Search" })),
    list.items.length ? h("div.scroll", {}, h("table", { id: "events" },
      h("thead", {}, h("tr", {}, ["Name", "Occurred", "Data", "Event"].map((c, i) => h("th" + (i > 1 ? ".hide-narrow" : ""), { text: c })))),
      h("tbody", {}, list.items.map((e) => h("tr", { "data-id": e.id },
        h("td.mono", {}, link("#/events/" + encodeURIComponent(e.id), e.name)),
        h("td", {}, ago(e.occurred_at)),
        h("td.mono.hide-narrow", { text: cut(JSON.stringify(e.data), 80) }),
        h("td.mono.hide-narrow", {}, link("#/events/" + encodeURIComponent(e.id), e.id))))))) : h("p.muted", { text: "No events." }));
}

async function eventPage(id) {
  const [e, names] = await Promise.all([api("GET", "/v1/events/" + encodeURIComponent(id)), subscriptionNames()]);
  page("Event " + e.name,
    h("div.card", {}, h("dl", {},
      h("dt", { text: "Id" }), h("dd.mono", { text: e.id }),
      h("dt", { text: "Occurred" }), h("dd", { text: when(e.occurred_at) }),
      h("dt", { text: "Received" }), h("dd", { text: when(e.received_at) }),
      h("dt", { text: "Origin" }), h("dd", { text: e.origin || "—" }))),
    h("h2", { text: "Data" }), pretty(e.data),
    h("h2", { text: "Deliveries" }),
    (e.deliveries || []).length ? h("div.scroll", {}, h("table", {}, h("tbody", {}, e.deliveries.map((d) => h("tr", {},
      h("td", {}, subscriptionLink(names, d.subscription_id)),
      h("td", {}, badge(d.status)),
      h("td.mono", {}, link("#/deliveries/" + encodeURIComponent(d.id), d.id))))))) : h("p.muted", { text: "No subscription took it." }));
}

async function eventTypesPage() {
  const list = await api("GET", "/v1/event-types?limit=200");
  page("Event types", list.items.length ? h("div.scroll", {}, h("table", {},
    h("thead", {}, h("tr", {}, ["Name", "Description", "Schema"].map((c) => h("th", { text: c })))),
    h("tbody", {}, list.items.map((t) => h("tr", {},
      h("td.mono", { text: t.name }), h("td", { text: t.description || "" }),
      h("td", {}, t.schema ? h("details", {}, h("summary", { text: "schema" }), pretty(t.schema)) : "—")))))) : h("p.muted", { text: "No event types registered." }));
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) if (c) el.append(c);
  return el;
}

// A chart's frame: a value axis on the left with three ticks (0, half, the top) and a time axis
// below with a label every sixth of the window, in the viewer's local time.
const CHART = { W: 720, H: 240, left: 52, right: 8, top: 10, bottom: 26 };
function chartFrame(id, label, buckets, top, unit) {
  const { W, H, left, right, top: t, bottom } = CHART;
  const el = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": label, id });
  const plotH = H - t - bottom, n = buckets.length, bw = (W - left - right) / Math.max(1, n);
  const y = (v) => t + plotH - (v / top) * plotH;
  for (const v of [0, top / 2, top]) {
    const text = (Number.isInteger(v) ? v : v.toFixed(1)) + unit;
    el.append(svg("line", { x1: left, y1: y(v), x2: W - right, y2: y(v), stroke: v ? "#eceff4" : "#b9c0cc" }));
    el.append(svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#5d6778", class: "y-tick" }, document.createTextNode(text)));
  }
  const every = Math.max(1, Math.round(n / 6));
  buckets.forEach((b, i) => {
    if (i % every) return;
    const x = left + i * bw;
    const text = new Date(b.at).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
    el.append(svg("line", { x1: x, y1: t + plotH, x2: x, y2: t + plotH + 4, stroke: "#b9c0cc" }));
    el.append(svg("text", { x, y: H - 6, "text-anchor": "middle", "font-size": 11, fill: "#5d6778", class: "x-tick" }, document.createTextNode(text)));
  });
  return { el, y, bw, x: (i) => left + i * bw, plotH };
}
// The top of a value axis: the largest value rounded up to 1, 2 or 5 times a power of ten.
function niceTop(max) {
  if (max <= 1) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(max)));
  return [1, 2, 5, 10].map((m) => m * p).find((v) => v >= max);
}

async function chartsPage(params) {
  const window = params.get("window") === "day" ? "day" : "hour";
  const s = await api("GET", "/v1/stats/deliveries?window=" + window);
  const per = window === "hour" ? "minute" : "half hour";
  const colors = { success: "#1a7f45", retry: "#d08a00", final: "#b3261e" };
  const top = niceTop(Math.max(0, ...s.buckets.map((b) => b.success + b.retry + b.final)));
  const bars = chartFrame("chart-outcomes", "Attempts per " + per + " by outcome", s.buckets, top, "");
  s.buckets.forEach((b, i) => {
    let base = 0;
    for (const k of ["success", "retry", "final"]) {
      const v = b[k]; if (!v) continue;
      const r = svg("rect", { x: bars.x(i) + 1, y: bars.y(base + v), width: Math.max(1, bars.bw - 2), height: bars.y(base) - bars.y(base + v), fill: colors[k] });
      r.append(svg("title", {}, document.createTextNode(`${new Date(b.at).toLocaleTimeString()}: ${v} ${k}`)));
      bars.el.append(r);
      base += v;
    }
  });
  const lineColors = { p50: "#2456c8", p90: "#7a4cc2", p99: "#b3261e" };
  const ltop = niceTop(Math.max(0, ...s.buckets.map((b) => b.latency_ms.p99 || 0)));
  const lat = chartFrame("chart-latency", "Attempt latency percentiles per " + per, s.buckets, ltop, " ms");
  for (const k of ["p50", "p90", "p99"]) {
    const pts = s.buckets.map((b, i) => b.latency_ms[k] == null ? null : `${lat.x(i) + lat.bw / 2},${lat.y(b.latency_ms[k])}`).filter(Boolean);
    if (pts.length) lat.el.append(svg("polyline", { points: pts.join(" "), fill: "none", stroke: lineColors[k], "stroke-width": 2 }));
  }
  const t = s.totals, L = s.latency_ms;
  page("Charts",
    h("div.actions", {}, link("#/charts?window=hour", "Last hour"), link("#/charts?window=day", "Last day")),
    h("p", { id: "totals" }, `${t.success} succeeded, ${t.retry} failed and retried, ${t.final} failed for good, over the last ${window}. Latency p50 ${L.p50 ?? "—"} ms, p90 ${L.p90 ?? "—"} ms, p99 ${L.p99 ?? "—"} ms.`),
    h("h2", { text: "Attempts per " + per }),
    h("div.legend", {}, Object.keys(colors).map((k) => h("span", {}, h("span.swatch." + k), k))),
    bars.el,
    h("h2", { text: "Attempt latency" }),
    h("div.legend", {}, Object.keys(lineColors).map((k) => h("span", {}, h("span.swatch." + k), k))),
    lat.el);
}

// ---- routing ---------------------------------------------------------------------------------

async function route() {
  if (!S.who) return;
  const [path, query] = (location.hash.slice(1) || "/subscriptions").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", path.startsWith(a.getAttribute("href").slice(1)));
  try {
    if (parts[0] === "subscriptions" && parts[1] === "new") await subscriptionForm(null);
    else if (parts[0] === "subscriptions" && parts[2] === "edit") await subscriptionForm(parts[1]);
    else if (parts[0] === "subscriptions" && parts[1]) await subscriptionPage(parts[1], params);
    else if (parts[0] === "deliveries" && parts[1]) await deliveryPage(parts[1]);
    else if (parts[0] === "deliveries") await deliveriesPage(params);
    else if (parts[0] === "events" && parts[1]) await eventPage(parts[1]);
    else if (parts[0] === "events") await eventsPage(params);
    else if (parts[0] === "event-types") await eventTypesPage();
    else if (parts[0] === "charts") await chartsPage(params);
    else await subscriptionsPage();
  } catch (e) {
    if (S.who) page("Error", problem(e));
  }
}

window.addEventListener("hashchange", () => {
  // A page's messages ("Retrying") end with it; one said on the way here ("Deleted") stays.
  for (const t of document.querySelectorAll("#toast > div")) {
    if (Date.now() - Number(t.dataset.at) > 500) t.remove();
  }
  route();
});
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("signout").addEventListener("click", async () => {
    try { await api("POST", "/ui/logout"); } catch (_) { /* signed out anyway */ }
    S.who = null; signedOut();
  });
  start().catch((e) => $main().replaceChildren(problem(e)));
});
