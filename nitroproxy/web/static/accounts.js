// Keys and users: create, revoke, rotate, suspend, export and erase, through the admin API
// (served under /ui/api/admin by the same handlers as /admin).

import {
  announce, api, badge, confirmAction, field, fmtTime, fmtUsd, h, nextId, query, table,
} from "./core.js";

const LIMITS = [["rpm", "Requests per minute"], ["tpm", "Tokens per minute"],
  ["max_concurrent", "Concurrent streams"], ["budget_day_usd", "Daily budget (USD)"],
  ["budget_month_usd", "Monthly budget (USD)"]];

function heading(text, intro) {
  return [h("h1", { tabindex: "-1" }, text), h("p", { class: "hint" }, intro)];
}

function message() {
  return h("p", { class: "error", role: "alert" });
}

function limitsText(k) {
  const parts = [];
  if (k.rpm) parts.push(`${k.rpm} rpm`);
  if (k.tpm) parts.push(`${k.tpm} tpm`);
  if (k.max_concurrent) parts.push(`${k.max_concurrent} streams`);
  if (k.budget_day_usd) parts.push(`${fmtUsd(k.budget_day_usd)}/day`);
  if (k.budget_month_usd) parts.push(`${fmtUsd(k.budget_month_usd)}/month`);
  return parts.join(", ") || "tier default";
}

function download(name, data) {
  const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// -- keys ------------------------------------------------------------------------------------

export function keys(view) {
  const inputs = {
    name: h("input", { required: true, maxlength: 200, autocomplete: "off" }),
    user_id: h("input", { maxlength: 100, autocomplete: "off", spellcheck: "false" }),
    models: h("input", { autocomplete: "off", spellcheck: "false" }),
  };
  for (const [name] of LIMITS) inputs[name] = h("input", { type: "number", min: "0", step: "any", inputmode: "decimal" });
  const error = message();
  const secretBox = h("div", { id: "new-secret", "aria-live": "polite" });
  const form = h("form", { class: "card stack", "aria-labelledby": "new-key-title" },
    h("h2", { id: "new-key-title" }, "New key"),
    h("div", { class: "grid" },
      field("Name", inputs.name),
      field("User id", inputs.user_id, "Optional: bills the key to a user."),
      field("Models", inputs.models, "Optional, comma separated; empty means every model."),
      LIMITS.map(([name, label]) => field(label, inputs[name], "Empty: the tier's default."))),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Create key")), error);
  const list = h("div");
  view.append(...heading("Keys", "API keys in the store. A key's secret is shown once, when it " +
    "is created or rotated."), form, secretBox, list);

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    const body = { name: inputs.name.value.trim() };
    if (inputs.user_id.value.trim()) body.user_id = inputs.user_id.value.trim();
    const models = inputs.models.value.split(",").map((m) => m.trim()).filter(Boolean);
    if (models.length) body.models = models;
    for (const [name] of LIMITS) {
      const v = inputs[name].value;
      if (v !== "") body[name] = name.startsWith("budget") ? Number(v) : Math.round(Number(v));
    }
    try {
      const issued = await api("/ui/api/admin/keys", { method: "POST", body });
      form.reset();
      showSecret(issued, "created");
      await load();
    } catch (err) {
      error.textContent = err.message;
    }
  });

  function showSecret(issued, verb) {
    const id = nextId("secret");
    secretBox.replaceChildren(h("div", { class: "secret stack", role: "group", "aria-labelledby": id },
      h("strong", { id }, `Key “${issued.name}” ${verb}. Copy its secret now: it is not shown again.`),
      h("code", { id: "new-secret-value" }, issued.secret),
      h("div", { class: "row" },
        h("button", { type: "button", class: "secondary", onclick: async (ev) => {
          try {
            await navigator.clipboard.writeText(issued.secret);
            ev.target.textContent = "Copied";
          } catch {
            ev.target.textContent = "Select the text to copy";
          }
        } }, "Copy secret"),
        h("button", { type: "button", class: "secondary", onclick: () => secretBox.replaceChildren() }, "Hide"))));
    announce(`Key ${issued.name} ${verb}.`);
  }

  async function act(k, action) {
    const verbs = { revoke: ["Revoke", "Calls with this key are refused at once. This cannot be undone."],
      rotate: ["Rotate", "A new secret replaces the old one, which stops working at once."] };
    const [verb, text] = verbs[action];
    if (!await confirmAction({ title: `${verb} key “${k.name}”?`, text, action: `${verb} key` })) return;
    try {
      const out = await api(`/ui/api/admin/keys/${encodeURIComponent(k.id)}/${action}`, { method: "POST" });
      if (action === "rotate") showSecret(out, "rotated");
      else announce(`Key ${k.name} revoked.`);
      await load();
    } catch (err) {
      list.prepend(h("p", { class: "error", role: "alert" }, err.message));
    }
  }

  async function load() {
    try {
      const page = await api(`/ui/api/admin/keys?${query({ limit: 200 })}`);
      list.replaceChildren(table("Keys", [
        { label: "Name", value: (k) => k.name },
        { label: "Id", value: (k) => h("code", {}, k.id) },
        { label: "Starts with", value: (k) => h("code", {}, k.prefix) },
        { label: "User", value: (k) => k.user_id || "–" },
        { label: "Models", value: (k) => (k.models ? k.models.join(", ") : "all") },
        { label: "Limits and budgets", value: limitsText },
        { label: "Status", value: (k) => (k.revoked ? badge("revoked", "bad") : badge("active", "good")) },
        { label: "Created", value: (k) => fmtTime(k.created) },
        { label: "Actions", value: (k) => (k.revoked ? "–" : h("div", { class: "actions" },
          h("button", { type: "button", class: "small secondary", "aria-label": `Rotate key ${k.name}`, onclick: () => act(k, "rotate") }, "Rotate"),
          h("button", { type: "button", class: "small danger", "aria-label": `Revoke key ${k.name}`, onclick: () => act(k, "revoke") }, "Revoke"))) },
      ], page.data, { empty: "No keys in the store yet." }));
    } catch (err) {
      list.replaceChildren(h("p", { class: "error", role: "alert" }, err.message));
    }
  }
  load();
}

// -- users -----------------------------------------------------------------------------------

export function users(view) {
  const name = h("input", { maxlength: 200, autocomplete: "off" });
  const email = h("input", { type: "email", maxlength: 254, autocomplete: "off" });
  const tier = h("input", { maxlength: 100, autocomplete: "off", placeholder: "default" });
  const error = message();
  const form = h("form", { class: "card stack", "aria-labelledby": "new-user-title" },
    h("h2", { id: "new-user-title" }, "New user"),
    h("div", { class: "grid" }, field("Name", name), field("Email", email), field("Tier", tier)),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Create user")), error);
  const list = h("div");
  view.append(...heading("Users", "People or teams that keys are billed to. Names and emails are " +
    "stored encrypted."), form, list);

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    const body = {};
    if (name.value.trim()) body.name = name.value.trim();
    if (email.value.trim()) body.email = email.value.trim();
    if (tier.value.trim()) body.tier = tier.value.trim();
    try {
      const user = await api("/ui/api/admin/users", { method: "POST", body });
      form.reset();
      announce(`User ${user.id} created.`);
      await load();
    } catch (err) {
      error.textContent = err.message;
    }
  });

  async function setStatus(u, status) {
    const verb = status === "suspended" ? "Suspend" : "Reactivate";
    const text = status === "suspended" ? "Every key of this user is refused until reactivated."
      : "This user's keys work again.";
    if (!await confirmAction({ title: `${verb} ${u.name || u.id}?`, text, action: verb })) return;
    await run(() => api(`/ui/api/admin/users/${encodeURIComponent(u.id)}`, { method: "PATCH", body: { status } }),
      `User ${u.id} ${status}.`);
  }

  async function erase(u) {
    const ok = await confirmAction({ title: `Erase ${u.name || u.id}?`, typed: u.id, action: "Erase user",
      text: "Deletes the user's personal data and usage records and revokes every key. " +
        "Billing totals stay under a pseudonym. This cannot be undone." });
    if (!ok) return;
    await run(() => api(`/ui/api/admin/users/${encodeURIComponent(u.id)}`, { method: "DELETE" }),
      `User ${u.id} erased.`);
  }

  async function exportUser(u) {
    try {
      download(`nitroproxy-export-${u.id}.json`, await api(`/ui/api/admin/users/${encodeURIComponent(u.id)}/export`));
      announce(`Export of ${u.id} downloaded.`);
    } catch (err) {
      list.prepend(h("p", { class: "error", role: "alert" }, err.message));
    }
  }

  async function run(call, done) {
    try {
      await call();
      announce(done);
      await load();
    } catch (err) {
      list.prepend(h("p", { class: "error", role: "alert" }, err.message));
    }
  }

  async function load() {
    try {
      const page = await api(`/ui/api/admin/users?${query({ limit: 200 })}`);
      list.replaceChildren(table("Users", [
        { label: "Id", value: (u) => h("code", {}, u.id) },
        { label: "Name", value: (u) => u.name || "–" },
        { label: "Email", value: (u) => u.email || "–" },
        { label: "Tier", value: (u) => u.tier },
        { label: "Status", value: (u) => badge(u.status, u.status === "active" ? "good" : "bad") },
        { label: "Created", value: (u) => fmtTime(u.created) },
        { label: "Actions", value: (u) => (u.status === "erased" ? "–" : h("div", { class: "actions" },
          u.status === "active"
            ? h("button", { type: "button", class: "small secondary", "aria-label": `Suspend ${u.id}`, onclick: () => setStatus(u, "suspended") }, "Suspend")
            : h("button", { type: "button", class: "small secondary", "aria-label": `Reactivate ${u.id}`, onclick: () => setStatus(u, "active") }, "Reactivate"),
          h("button", { type: "button", class: "small secondary", "aria-label": `Export ${u.id}`, onclick: () => exportUser(u) }, "Export"),
          h("button", { type: "button", class: "small danger", "aria-label": `Erase ${u.id}`, onclick: () => erase(u) }, "Erase"))) },
      ], page.data, { empty: "No users yet." }));
    } catch (err) {
      list.replaceChildren(h("p", { class: "error", role: "alert" }, err.message));
    }
  }
  load();
}
