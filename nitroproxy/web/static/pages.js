// The read-only pages: overview, usage, live feed, deployments, privacy, audit log.

import { chart } from "./charts.js";
import {
  announce, api, badge, field, fmtAxis, fmtInt, fmtMs, fmtSec, fmtTime, fmtUsd, h, query, rangePicker,
  state, table,
} from "./core.js";

const sum = (points, name) => points.reduce((acc, p) => acc + (p[name] || 0), 0);
const isAdmin = () => state.session && state.session.role === "admin";

function heading(text, intro) {
  return [h("h1", { tabindex: "-1" }, text), intro ? h("p", { class: "hint" }, intro) : null];
}

function errorBox(err) {
  return h("p", { class: "error", role: "alert" }, err.message);
}

// -- overview --------------------------------------------------------------------------------

export function overview(view) {
  const out = h("div", { "aria-live": "off" });
  const picker = rangePicker(load);
  view.append(...heading("Overview", isAdmin() ? "Every call through this proxy."
    : "The calls made with your key."), picker.form, out);

  async function load(range) {
    out.replaceChildren(h("p", { class: "hint" }, "Loading…"));
    let data;
    try {
      data = await api(`/ui/api/overview?${query(range)}`);
    } catch (err) {
      out.replaceChildren(errorBox(err));
      return;
    }
    const pts = data.points;
    const requests = sum(pts, "requests");
    const tokens = sum(pts, "prompt_tokens") + sum(pts, "completion_tokens");
    const tiles = h("dl", { class: "tiles", id: "totals" },
      tile("Requests", fmtInt(requests), "total-requests"),
      tile("Tokens", fmtInt(tokens), "total-tokens"),
      tile("Cost", fmtUsd(sum(pts, "cost_usd")), "total-cost"),
      tile("Errors", fmtInt(sum(pts, "errors")), "total-errors"));
    const base = { points: pts, step: data.step, from: data.from, to: data.to };
    const charts = h("div", { class: "charts" },
      chart({ ...base, title: "Requests and errors", kind: "bar", format: fmtInt, axis: fmtAxis, series: [
        { label: "Requests", get: (p) => p.requests }, { label: "Errors", get: (p) => p.errors }] }),
      chart({ ...base, title: "Tokens", kind: "bar", format: fmtInt, axis: fmtAxis, series: [
        { label: "Prompt", get: (p) => p.prompt_tokens },
        { label: "Completion", get: (p) => p.completion_tokens }] }),
      chart({ ...base, title: "Cost", kind: "bar", format: fmtUsd, axis: (v) => `$${fmtAxis(v)}`, series: [
        { label: "Cost (USD)", get: (p) => p.cost_usd }] }),
      chart({ ...base, title: "Latency", format: fmtMs, axis: (v) => `${fmtAxis(v)} ms`, series: [
        { label: "p50", get: (p) => p.latency_p50_ms }, { label: "p99", get: (p) => p.latency_p99_ms }] }),
      chart({ ...base, title: "Time to first token", format: fmtMs, axis: (v) => `${fmtAxis(v)} ms`, series: [
        { label: "p50", get: (p) => p.ttft_p50_ms }, { label: "p99", get: (p) => p.ttft_p99_ms }] }));
    out.replaceChildren(tiles, charts,
      h("p", { class: "hint" }, `One point per ${stepName(data.step)}. Charts read the raw ` +
        "records (kept for the requests retention window); the Usage page adds older daily totals."));
    announce(`Overview loaded: ${fmtInt(requests)} requests.`);
  }
  load(picker.current());
}

function tile(label, value, id) {
  return h("div", { class: "tile" }, h("dt", {}, label), h("dd", { id }, value));
}

function stepName(step) {
  if (step % 86400 === 0) return step === 86400 ? "day" : `${step / 86400} days`;
  if (step % 3600 === 0) return step === 3600 ? "hour" : `${step / 3600} hours`;
  return `${step / 60} minutes`;
}

// -- usage -----------------------------------------------------------------------------------

const GROUP_LABELS = { day: "Day", model: "Model", provider: "Provider", deployment: "Deployment",
  key: "Key", user: "User", end_user: "End user" };

export function usage(view) {
  const groups = state.session.group_by;
  const groupSelect = h("select", {}, groups.map((g) =>
    h("option", { value: g, selected: g === "model" }, GROUP_LABELS[g] || g)));
  const out = h("div");
  const csv = h("a", { class: "button secondary", download: "" }, "Download CSV");
  const picker = rangePicker(load, "604800");
  picker.form.insertBefore(field("Group by", groupSelect), picker.form.lastChild);
  groupSelect.addEventListener("change", () => load(picker.current()));
  view.append(...heading("Usage", "Totals per group over the period, raw records and daily " +
    "roll-ups together."), picker.form, out);

  async function load(range) {
    const q = query({ ...range, group_by: groupSelect.value });
    csv.href = `/ui/api/usage.csv?${q}`;
    out.replaceChildren(h("p", { class: "hint" }, "Loading…"));
    try {
      const data = await api(`/ui/api/usage?${q}`);
      const label = GROUP_LABELS[data.group_by] || data.group_by;
      const note = data.group_by === "deployment" ? h("p", { class: "hint" }, "By deployment " +
        "from the raw records only: daily roll-ups keep no deployment.") : null;
      out.replaceChildren(note,
        table(`Usage by ${label.toLowerCase()}`, [
          { label, value: (r) => r.group || "(none)" },
          { label: "Requests", num: true, value: (r) => fmtInt(r.requests) },
          { label: "Errors", num: true, value: (r) => fmtInt(r.errors) },
          { label: "Prompt tokens", num: true, value: (r) => fmtInt(r.prompt_tokens) },
          { label: "Completion tokens", num: true, value: (r) => fmtInt(r.completion_tokens) },
          { label: "Cached tokens", num: true, value: (r) => fmtInt(r.cached_tokens) },
          { label: "Cost", num: true, value: (r) => fmtUsd(r.cost_usd) },
        ], data.rows, { empty: "No usage in this period." }),
        h("p", { class: "row" }, csv));
      announce(`Usage loaded: ${data.rows.length} rows.`);
    } catch (err) {
      out.replaceChildren(errorBox(err));
    }
  }
  load(picker.current());
}

// -- live feed -------------------------------------------------------------------------------

const MAX_LIVE_ROWS = 200;

export function live(view) {
  const status = h("span", { class: "badge warn", id: "live-status" }, "connecting");
  const count = h("span", { id: "live-count", "aria-live": "polite" }, "0 calls");
  const pause = h("button", { type: "button", class: "secondary", "aria-pressed": "false" }, "Pause");
  const body = h("tbody", { id: "live-rows" });
  const rows = [];
  let paused = false;
  let seen = 0;
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume" : "Pause";
  });
  view.append(...heading("Live", "Calls as they finish: metadata only, newest first."),
    h("div", { class: "row card" }, h("span", {}, "Feed: ", status), count, pause),
    h("div", { class: "scroll", role: "region", "aria-label": "Live calls", tabindex: "0" },
      h("table", {}, h("caption", {}, "Finished calls"),
        h("thead", {}, h("tr", {}, ["Time", "Model", "Deployment", "Key", "Status", "Tokens",
          "Latency", "Cost"].map((t, i) => h("th", { scope: "col", class: i >= 5 ? "num" : null }, t)))),
        body)));

  const source = new EventSource("/ui/api/feed");
  source.addEventListener("open", () => { status.textContent = "connected"; status.className = "badge good"; });
  source.addEventListener("error", () => { status.textContent = "reconnecting"; status.className = "badge warn"; });
  source.addEventListener("missed", (e) => {
    const { missed } = JSON.parse(e.data);
    rows.unshift(h("tr", {}, h("td", { colspan: 8, class: "hint" }, `${missed} calls not shown (the page fell behind)`)));
  });
  source.addEventListener("call", (e) => {
    const c = JSON.parse(e.data);
    seen += 1;
    count.textContent = `${seen} ${seen === 1 ? "call" : "calls"}`;
    if (paused) return;
    const ok = c.outcome === "ok" || c.outcome === "cache_hit";
    body.prepend(h("tr", {},
      h("td", {}, fmtTime(c.ts)), h("td", {}, c.model), h("td", {}, c.deployment || "–"),
      h("td", {}, c.key_id || "–"),
      h("td", {}, badge(`${c.status} ${c.outcome}`, ok ? "good" : "bad")),
      h("td", { class: "num" }, fmtInt(c.prompt_tokens + c.completion_tokens)),
      h("td", { class: "num" }, fmtMs(c.latency_ms)),
      h("td", { class: "num" }, fmtUsd(c.cost_usd))));
    while (body.children.length > MAX_LIVE_ROWS) body.lastChild.remove();
  });
  return () => source.close();
}

// -- deployments -----------------------------------------------------------------------------

export async function deployments(view) {
  view.append(...heading("Deployments", "Health as this process measures it: cool-downs after " +
    "failures, time to first token, throughput and latency."));
  try {
    const status = await api("/ui/api/admin/status");
    const rows = state.session.deployments.map((d) => ({ ...d, health: status.deployments[d.name] }));
    const stateBadge = (hl) => {
      if (!hl) return badge("no calls yet", "warn");
      if (hl.state === "cooling_down") return badge(`cooling down ${Math.ceil(hl.cooldown_remaining_s)} s`, "bad");
      return badge(hl.state.replace("_", " "), hl.state === "healthy" ? "good" : "warn");
    };
    view.append(table("Deployments", [
      { label: "Deployment", value: (d) => d.name },
      { label: "Model", value: (d) => d.model },
      { label: "Provider", value: (d) => d.provider },
      { label: "State", value: (d) => stateBadge(d.health) },
      { label: "Time to first token", num: true, value: (d) => fmtSec(d.health && d.health.ttft_s) },
      { label: "Tokens/s", num: true, value: (d) => (d.health && d.health.tokens_per_s !== null ? d.health.tokens_per_s.toFixed(1) : "–") },
      { label: "Latency", num: true, value: (d) => fmtSec(d.health && d.health.latency_s) },
      { label: "Samples", num: true, value: (d) => fmtInt(d.health ? d.health.samples : 0) },
      { label: "Failures in a row", num: true, value: (d) => fmtInt(d.health ? d.health.failure_streak : 0) },
      { label: "Cool-downs", num: true, value: (d) => fmtInt(d.health ? d.health.cooldowns : 0) },
    ], rows));
    view.append(h("p", { class: "hint" }, `Usage queue: ${fmtInt(status.usage_queue_depth)} waiting, ` +
      `${fmtInt(status.usage_written)} written, ${fmtInt(status.usage_dropped)} dropped.`));
    for (const w of status.warnings || []) view.append(h("p", { class: "error" }, w));
  } catch (err) {
    view.append(errorBox(err));
  }
}

// -- privacy ---------------------------------------------------------------------------------

export async function privacy(view) {
  view.append(...heading("Privacy", "The data map, generated from the running configuration: " +
    "what is stored, where, for how long, and who can read it."));
  try {
    const map = await api("/privacy");
    view.append(table("Stored data", [
      { label: "Data", value: (t) => t.data },
      { label: "Table", value: (t) => t.table },
      { label: "Kept for", wrap: true, value: (t) => t.kept_for },
      { label: "Encrypted", value: (t) => (t.encrypted ? "encrypted columns" : "no") },
      { label: "Readable by", wrap: true, value: (t) => t.readable_by.join(", ") },
    ], map.tables));
    view.append(table("Who can read what", [
      { label: "Who", value: (r) => r[0] },
      { label: "Routes", wrap: true, value: (r) => (r[1].routes || []).join(", ") || "–" },
      { label: "Reads", wrap: true, value: (r) => r[1].reads },
    ], Object.entries(map.readers)));
    view.append(h("details", {}, h("summary", {}, "The whole data map (JSON)"),
      h("pre", {}, JSON.stringify(map, null, 2))));
  } catch (err) {
    view.append(errorBox(err));
  }
}

// -- audit log -------------------------------------------------------------------------------

export function audit(view) {
  const out = h("div");
  const more = h("button", { type: "button", class: "secondary" }, "Older entries");
  let before = null;
  const entries = [];
  view.append(...heading("Audit log", "Every change to users and keys, newest first."), out, more);
  async function load() {
    try {
      const page = await api(`/ui/api/admin/audit?${query({ limit: 50, before })}`);
      entries.push(...page.data);
      before = page.data.length ? page.data[page.data.length - 1].seq : before;
      more.hidden = !page.has_more;
      out.replaceChildren(table("Audit entries", [
        { label: "#", num: true, value: (e) => e.seq },
        { label: "Time", value: (e) => fmtTime(e.ts) },
        { label: "Actor", value: (e) => e.actor },
        { label: "Action", value: (e) => e.action },
        { label: "Target", value: (e) => e.target || "–" },
        { label: "User", value: (e) => e.user_id || "–" },
        { label: "Detail", wrap: true, value: (e) => h("code", {}, JSON.stringify(e.detail)) },
      ], entries, { empty: "No entries yet." }));
    } catch (err) {
      out.replaceChildren(errorBox(err));
    }
  }
  more.addEventListener("click", load);
  load();
}
