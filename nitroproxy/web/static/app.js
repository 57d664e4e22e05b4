// The dashboard's entry point: sign-in, sign-out, and a hash router over the pages.

import { keys, users } from "./accounts.js";
import { announce, api, state } from "./core.js";
import { audit, deployments, live, overview, privacy, usage } from "./pages.js";

const PAGES = {
  overview: { title: "Overview", render: overview },
  usage: { title: "Usage", render: usage, storage: true },
  live: { title: "Live", render: live },
  keys: { title: "Keys", render: keys, admin: true, storage: true },
  users: { title: "Users", render: users, admin: true, storage: true },
  deployments: { title: "Deployments", render: deployments, admin: true },
  privacy: { title: "Privacy", render: privacy },
  audit: { title: "Audit log", render: audit, admin: true, storage: true },
};

const $ = (id) => document.getElementById(id);
let leave = null;

function allowed(name) {
  const page = PAGES[name];
  const s = state.session;
  if (!page || !s) return false;
  if (page.admin && s.role !== "admin") return false;
  if ((page.storage || name === "overview") && !s.storage) return false;
  return true;
}

function showSignIn(message) {
  state.session = null;
  if (leave) { leave(); leave = null; }
  $("nav").hidden = true;
  $("view").hidden = true;
  $("view").replaceChildren();
  $("signout").hidden = true;
  $("who").textContent = "";
  $("signin-view").hidden = false;
  $("signin-error").textContent = message || "";
  document.title = "Sign in · NitroProxy";
  $("signin-key").focus();
}

function showApp(session) {
  state.session = session;
  $("signin-view").hidden = true;
  $("signin").reset();
  $("nav").hidden = false;
  $("view").hidden = false;
  $("signout").hidden = false;
  $("who").textContent = session.role === "admin" ? "Signed in with the admin key"
    : `Signed in with key “${session.name}” (read-only)`;
  for (const li of document.querySelectorAll("#nav li")) {
    const name = li.querySelector("a").getAttribute("href").slice(1);
    li.hidden = !allowed(name);
  }
  route();
}

function route() {
  if (!state.session) return;
  let name = location.hash.slice(1);
  if (!allowed(name)) {
    name = allowed("overview") ? "overview" : "live";
    history.replaceState(null, "", `#${name}`);
  }
  if (leave) { leave(); leave = null; }
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.getAttribute("href") === `#${name}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const view = $("view");
  view.replaceChildren();
  const page = PAGES[name];
  document.title = `${page.title} · NitroProxy`;
  const done = page.render(view);
  if (typeof done === "function") leave = done;
  // Move focus to the new page's heading, so keyboard and screen-reader users land on it.
  const h1 = view.querySelector("h1");
  if (h1) h1.focus();
  announce(`${page.title} page`);
}

async function signIn(event) {
  event.preventDefault();
  const input = $("signin-key");
  const button = event.target.querySelector("button");
  button.disabled = true;
  $("signin-error").textContent = "";
  try {
    const session = await api("/ui/api/session", { method: "POST", body: { key: input.value } });
    input.value = "";
    showApp(session);
  } catch (err) {
    $("signin-error").textContent = err.status === 401 ? "That key is not valid here." : err.message;
    input.select();
  } finally {
    button.disabled = false;
  }
}

async function signOut() {
  try {
    await api("/ui/api/session", { method: "DELETE" });
  } finally {
    history.replaceState(null, "", "#");
    showSignIn("Signed out.");
  }
}

state.onSignedOut = () => showSignIn("Your session ended; sign in again.");

async function start() {
  $("signin").addEventListener("submit", signIn);
  $("signout").addEventListener("click", signOut);
  window.addEventListener("hashchange", route);
  try {
    showApp(await api("/ui/api/session"));
  } catch {
    showSignIn();
  }
}

start();
