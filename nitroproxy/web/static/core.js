// Shared by every page: the API client, DOM building (text only, never HTML strings from
// data), formatting, tables, the confirmation dialog and the screen-reader announcer.

export const state = { session: null };

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// Every call goes to this origin only. Writes carry the session's CSRF token.
export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && state.session) headers["X-CSRF-Token"] = state.session.csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const err = (data && data.error) || {};
    if (response.status === 401 && state.onSignedOut && path !== "/ui/api/session") {
      state.onSignedOut();
    }
    throw new ApiError(response.status, err.message || `request failed (${response.status})`,
      err.code);
  }
  return data;
}

// h("td", {class: "num"}, "12"): attributes, then children (strings become text nodes).
export function h(tag, attrs = {}, ...children) {
  const svg = ["svg", "path", "rect", "line", "text", "g", "title", "desc", "circle"]
    .includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function announce(text) {
  const region = document.getElementById("announce");
  region.textContent = "";
  window.setTimeout(() => { region.textContent = text; }, 50);
}

let uid = 0;
export const nextId = (prefix) => `${prefix}-${++uid}`;

// -- formatting ------------------------------------------------------------------------------

const integer = new Intl.NumberFormat("en", { maximumFractionDigits: 0 });
export const fmtInt = (n) => (n === null || n === undefined ? "–" : integer.format(n));
export function fmtUsd(n) {
  if (n === null || n === undefined) return "–";
  const digits = Math.abs(n) >= 1 ? 2 : 6;
  return "$" + n.toFixed(digits);
}
const compact = new Intl.NumberFormat("en", { notation: "compact", maximumSignificantDigits: 3 });
export const fmtAxis = (v) => compact.format(v);
export const fmtMs = (n) => (n === null || n === undefined ? "–" : `${Math.round(n)} ms`);
export const fmtSec = (s) => (s === null || s === undefined ? "–" : `${Math.round(s * 1000)} ms`);
export function fmtTime(ts) {
  if (ts === null || ts === undefined) return "–";
  return new Date(ts * 1000).toLocaleString("en-GB", { dateStyle: "short", timeStyle: "medium" });
}
// An axis label: the date for long ranges, the time (with the date past a day) otherwise.
export function fmtShortTime(ts, step, span = 0) {
  const d = new Date(ts * 1000);
  const day = d.toLocaleDateString("en-GB", { day: "2-digit", month: "short" });
  if (step >= 86400) return day;
  const time = d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
  return span >= 86400 ? `${day} ${time}` : time;
}

// -- tables ----------------------------------------------------------------------------------

// columns: [{label, value: row => text|Node, num: bool, wrap: bool}]
export function table(caption, columns, rows, { empty = "Nothing to show." } = {}) {
  const id = nextId("tbl");
  const body = rows.length
    ? rows.map((row) => h("tr", {}, columns.map((c) =>
      h("td", { class: c.num ? "num" : (c.wrap ? "wrap" : null) }, c.value(row)))))
    : [h("tr", {}, h("td", { colspan: columns.length }, empty))];
  return h("div", { class: "scroll", role: "region", "aria-labelledby": id, tabindex: "0" },
    h("table", {},
      h("caption", { id }, caption),
      h("thead", {}, h("tr", {}, columns.map((c) =>
        h("th", { scope: "col", class: c.num ? "num" : null }, c.label)))),
      h("tbody", {}, body)));
}

export function badge(text, kind) {
  return h("span", { class: `badge ${kind}` }, text);
}

export function field(label, input, hint) {
  const id = input.id || nextId("f");
  input.id = id;
  const hintEl = hint ? h("span", { class: "hint", id: `${id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hintEl);
}

// -- the confirmation dialog -----------------------------------------------------------------

// Resolves true when confirmed. With `typed`, the user must type that text first.
export function confirmAction({ title, text, action, typed }) {
  const dialog = document.getElementById("confirm");
  const ok = document.getElementById("confirm-ok");
  const input = document.getElementById("confirm-input");
  const typedBox = document.getElementById("confirm-typed");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  ok.textContent = action;
  typedBox.hidden = !typed;
  input.value = "";
  if (typed) {
    document.getElementById("confirm-label").textContent = `Type ${typed} to confirm`;
    ok.disabled = true;
    input.oninput = () => { ok.disabled = input.value.trim() !== typed; };
  } else {
    ok.disabled = false;
    input.oninput = null;
  }
  const opener = document.activeElement;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      if (opener && opener.isConnected) opener.focus();
      resolve(dialog.returnValue === "ok");
    }, { once: true });
    dialog.returnValue = "cancel";
    dialog.showModal();
    (typed ? input : document.getElementById("confirm-cancel")).focus();
  });
}

// -- date ranges -----------------------------------------------------------------------------

const PRESETS = [["3600", "Last hour"], ["86400", "Last 24 hours"], ["604800", "Last 7 days"],
  ["2592000", "Last 30 days"], ["custom", "Custom range"]];

function localInput(ts) {
  const d = new Date(ts * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:` +
    pad(d.getMinutes());
}

// A period picker; onChange({from, to}) with ISO strings (UTC) for the API.
export function rangePicker(onChange, preset = "86400") {
  const select = h("select", {}, PRESETS.map(([v, label]) =>
    h("option", { value: v, selected: v === preset }, label)));
  const from = h("input", { type: "datetime-local" });
  const to = h("input", { type: "datetime-local" });
  const custom = h("div", { class: "row" }, field("From", from), field("To", to));
  const apply = h("button", { type: "submit" }, "Show");
  const form = h("form", { class: "row card", "aria-label": "Period" },
    field("Period", select), custom, apply);
  const current = () => {
    if (select.value === "custom" && from.value && to.value) {
      return { from: new Date(from.value).toISOString(), to: new Date(to.value).toISOString() };
    }
    const now = Date.now() / 1000;
    const span = Number(select.value === "custom" ? 86400 : select.value);
    return { from: new Date((now - span) * 1000).toISOString(),
      to: new Date((now + 60) * 1000).toISOString() };
  };
  const sync = () => {
    custom.hidden = select.value !== "custom";
    if (select.value === "custom" && !from.value) {
      const now = Date.now() / 1000;
      from.value = localInput(now - 86400);
      to.value = localInput(now);
    }
  };
  select.addEventListener("change", () => { sync(); if (select.value !== "custom") onChange(current()); });
  form.addEventListener("submit", (e) => { e.preventDefault(); onChange(current()); });
  sync();
  return { form, current };
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  return q.toString();
}
