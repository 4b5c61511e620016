// Alerts from aiops-detector, through the gateway: GET /v1/alerts?state=firing[&app=].

import { api, qs } from "./api.js";
import { badge, fill, h, table, timeEl } from "./dom.js";

function labelText(labels) {
  return Object.entries(labels || {}).map(([k, v]) => `${k}=${v}`).join(", ");
}

/** Fill `container` with the alerts; answers how many there are. */
export async function alertsTable(container, { state = "firing", app } = {}) {
  const { alerts } = await api("GET", `/v1/alerts${qs([["state", state], ["app", app]])}`);
  const rows = alerts.map((alert) => h("tr", { dataset: { fingerprint: alert.fingerprint } },
    h("td", {}, badge(alert.severity)),
    app ? null : h("td", {}, alert.app ? h("a", { href: `#/apps/${encodeURIComponent(alert.app)}` }, alert.app) : "—"),
    h("td", {}, h("strong", {}, alert.rule_name), h("div", { class: "muted" }, alert.summary || "")),
    h("td", {}, typeof alert.value === "number" ? alert.value.toPrecision(4).replace(/\.?0+$/, "") : ""),
    h("td", {}, timeEl(alert.starts_at), alert.ends_at ? h("div", { class: "muted" }, "ended ", timeEl(alert.ends_at)) : null),
    h("td", { class: "muted" }, labelText(alert.labels), (alert.silenced_by || []).length ? h("div", {}, badge("silenced")) : null)));
  const headers = ["Severity", app ? null : "App", "Rule", "Value", "Since", "Labels"].filter(Boolean);
  fill(container, table(headers, rows, state === "firing" ? "Nothing is firing." : "No resolved alerts."));
  return alerts.length;
}
