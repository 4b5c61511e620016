// The console's shell: sign-in, the router (#/apps, #/apps/NAME, #/alerts), errors.

import { api, session } from "./api.js";
import { appView } from "./app-view.js";
import { alertsTable } from "./alerts.js";
import { busy, fill, h, panel, table } from "./dom.js";

const view = document.getElementById("view");
const errors = document.getElementById("errors");
let cleanup = () => {};

/** Show an error with the API's reason until dismissed (or the next view). */
export function showError(err) {
  if (err && err.name === "AbortError") return;
  const text = err instanceof Error ? err.message : String(err);
  console.warn("opsline console:", text);
  const close = h("button", { type: "button", class: "quiet", "aria-label": "dismiss" }, "×");
  const box = h("div", { class: "error" }, h("span", { class: "msg" }, text), close);
  close.addEventListener("click", () => box.remove());
  errors.prepend(box);
  while (errors.children.length > 4) errors.lastElementChild.remove();
}

let signingIn = false;

function signInView(reason) {
  signingIn = true;
  const input = h("input", { id: "token", type: "password", autocomplete: "off", required: true, placeholder: "opl_…", spellcheck: "false" });
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { class: "panel signin", id: "signin" },
    h("h1", {}, "Sign in to opsline"),
    h("p", { class: "muted" }, "Paste an API token (", h("code", {}, "opsline login"), ", ", h("code", {}, ".opsline/admin-token"), " or ", h("code", {}, "POST /v1/tokens"), "). It is kept in this tab only."),
    reason ? h("p", { class: "notice" }, reason) : null,
    h("label", { for: "token" }, "API token"), input, button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    session.signIn(input.value.trim());
    const me = await busy(button, () => api("GET", "/v1/whoami"), (err) => {
      session.signOut();
      showError(err);
    });
    if (me) {
      signingIn = false;
      input.value = "";
      const next = location.hash && location.hash !== "#/signin" ? location.hash : "#/apps";
      if (location.hash === next) route();
      else location.hash = next; // hashchange routes
    }
  });
  fill(view, form);
  input.focus();
  return () => {};
}

async function appsView() {
  const body = h("div", {}, h("p", { class: "loading" }, "Loading apps…"));
  const yaml = h("textarea", { id: "apply-yaml", placeholder: "apiVersion: opsline.io/v1\nkind: App\nmeta: {name: …, team: …}\ncomponents: …", spellcheck: "false" });
  const base = h("input", { id: "apply-base", placeholder: "base directory for relative source paths (optional)", size: 48 });
  const apply = h("button", { type: "button", id: "apply" }, "Apply");
  const result = h("div", { id: "apply-result" });
  apply.addEventListener("click", () => busy(apply, async () => {
    const headers = base.value.trim() ? { "X-Opsline-Base-Dir": base.value.trim() } : {};
    const out = await api("POST", "/v1/apps:apply", { text: yaml.value, headers });
    const changes = (out.changes || []).map((c) => h("li", {}, typeof c === "string" ? c : JSON.stringify(c)));
    fill(result, h("p", { class: "notice" }, `App `, h("a", { href: `#/apps/${encodeURIComponent(out.app)}` }, out.app), `: ${out.action}`), changes.length ? h("ul", {}, changes) : null);
    await load();
  }, showError));

  async function load() {
    const { apps } = await api("GET", "/v1/apps");
    const rows = apps.map((app) => h("tr", { dataset: { app: app.name } },
      h("td", {}, h("a", { href: `#/apps/${encodeURIComponent(app.name)}` }, app.name)),
      h("td", {}, app.team),
      h("td", {}, app.components.map((c) => h("div", {}, h("code", {}, c.name), " ", h("span", { class: "muted" }, c.type)))),
      h("td", { class: "muted" }, app.description || "")));
    fill(body, table(["App", "Team", "Components", "Description"], rows, "No apps yet: apply one below."));
  }
  fill(view,
    panel("Apps", { id: "apps" }, body),
    panel("Apply an app", { id: "apply-panel" }, h("p", { class: "muted" }, "An opsline.yaml: created, or updated with the changes listed."), yaml, h("div", { class: "row" }, base, apply), result));
  load().catch((err) => { fill(body, h("p", { class: "muted" }, "Apps could not be loaded.")); showError(err); });
  return () => {};
}

function alertsView() {
  const body = h("div", {}, h("p", { class: "loading" }, "Loading alerts…"));
  const state = h("select", { id: "alert-state" }, h("option", { value: "firing" }, "firing"), h("option", { value: "resolved" }, "resolved"));
  const load = () => alertsTable(body, { state: state.value }).catch(showError);
  state.addEventListener("change", load);
  fill(view, panel("Alerts", { id: "alerts", tools: state }, body));
  load();
  const timer = setInterval(load, 5000);
  return () => clearInterval(timer);
}

function markNav(name) {
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function showWho() {
  try {
    const me = await api("GET", "/v1/whoami");
    const teams = Object.entries(me.teams || {}).map(([team, role]) => `${team} (${role})`).join(", ");
    document.getElementById("who").textContent = `${me.user}${me.platform_admin ? " · platform admin" : ""}${teams ? ` · ${teams}` : ""}`;
  } catch (err) {
    if (err.status !== 401) showError(err);
  }
}

function route() {
  cleanup();
  cleanup = () => {};
  errors.replaceChildren();
  const signedIn = Boolean(session.token());
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("signout").hidden = !signedIn;
  if (!signedIn) {
    document.getElementById("who").textContent = "";
    document.getElementById("live").hidden = true;
    cleanup = signInView();
    return;
  }
  if (!document.getElementById("who").textContent) showWho();
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "apps" && parts[1]) {
    markNav("apps");
    cleanup = appView(view, parts[1], { showError });
  } else if (parts[0] === "alerts") {
    markNav("alerts");
    cleanup = alertsView();
  } else {
    markNav("apps");
    appsView().then((stop) => { cleanup = stop; });
  }
}

document.getElementById("signout").addEventListener("click", () => {
  session.signOut();
  document.getElementById("who").textContent = "";
  location.hash = "#/signin";
  route();
});
session.onUnauthorized((err) => {
  session.signOut();
  if (signingIn) return; // the sign-in form shows the reason itself
  cleanup();
  cleanup = () => {};
  document.getElementById("who").textContent = "";
  document.getElementById("nav").hidden = true;
  document.getElementById("signout").hidden = true;
  cleanup = signInView(`Signed out: ${err.message}`);
});
window.addEventListener("hashchange", route);
route();

