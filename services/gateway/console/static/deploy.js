// Launch files and deployments: the prefilled launch, its memory per instance, progress.

import { api } from "./api.js";
import { badge, fill, h, timeEl } from "./dom.js";

export const FINAL = new Set(["SUCCESS", "FAILURE", "WAIT_FOR_OP", "ROLLED_BACK", "TERMINATED", "SUPERSEDED"]);
const FAILED = new Set(["FAILURE", "WAIT_FOR_OP", "ROLLED_BACK", "TERMINATED"]);
const LAUNCH_KEY = (instance) => `opsline.launch.${instance}`;

/** Compare dotted versions numerically (1.10.0 > 1.9.0); non-numeric parts as text. */
export function compareVersions(a, b) {
  const x = String(a).split(/[.+-]/), y = String(b).split(/[.+-]/);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const p = x[i] ?? "0", q = y[i] ?? "0";
    const diff = /^\d+$/.test(p) && /^\d+$/.test(q) ? Number(p) - Number(q) : p.localeCompare(q);
    if (diff) return Math.sign(diff);
  }
  return 0;
}

const flow = (value) => JSON.stringify(value); // JSON is YAML flow style

/** A launch file for the app: its parameters' defaults, the given instance and target. */
export function launchFor(app, { version = "latest", instance, target } = {}) {
  const params = Object.fromEntries((app.parameters || []).map((p) => [p.name, p.default ?? null]));
  const where = target || { cluster: "local", namespace: app.team, stage: "dev" };
  return [
    "apiVersion: opsline.io/v1",
    "kind: Launch",
    `app: ${app.name}`,
    `version: ${flow(version)}`,
    `instance: ${instance || `${app.name}-dev`}`,
    `target: {cluster: ${flow(where.cluster)}, namespace: ${flow(where.namespace)}, stage: ${flow(where.stage)}}`,
    `parameters: ${flow(params)}`,
    "",
  ].join("\n");
}

/** What this tab last launched to the instance (the API does not answer an instance's launch). */
export function rememberLaunch(instance, text) {
  sessionStorage.setItem(LAUNCH_KEY(instance), text);
}

/** The launch to upgrade an instance to `version`: the remembered one with the version changed. */
export function upgradeLaunch(app, instance, version) {
  const known = sessionStorage.getItem(LAUNCH_KEY(instance.id));
  if (known && /^version:.*$/m.test(known)) return { text: known.replace(/^version:.*$/m, `version: ${flow(version)}`), known: true };
  const target = { cluster: instance.cluster, namespace: instance.namespace, stage: instance.stage };
  return { text: launchFor(app, { version, instance: instance.id, target }), known: false };
}

/** The instance a launch file names (to remember it), or "". */
export function instanceOf(text) {
  const found = /^instance:\s*["']?([^"'\s#]+)/m.exec(text);
  return found ? found[1] : "";
}

/** Render a deployment: state, revision, each component's state and reason; Retry/Terminate. */
export function renderDeployment(container, d, { onAction }) {
  const actions = [];
  if (d.state === "WAIT_FOR_OP" || d.state === "FAILURE") {
    actions.push(h("button", { type: "button", class: "quiet", onclick: (e) => onAction(e.target, "retry", d) }, "Retry"));
  }
  if (!FINAL.has(d.state)) {
    actions.push(h("button", { type: "button", class: "danger", onclick: (e) => onAction(e.target, "terminate", d) }, "Terminate"));
  }
  const components = (d.components || []).map((c) => h("li", { dataset: { component: c.name } },
    h("code", {}, c.name), " ", badge(c.state), c.reason ? h("div", { class: "muted" }, c.reason) : null));
  Object.assign(container.dataset, { id: d.id, kind: d.kind, state: d.state, revision: d.revision });
  fill(container,
    h("div", { class: "row" },
      h("strong", {}, `${d.kind}${d.version ? ` ${d.version}` : ""} → ${d.instance}`), badge(d.state),
      h("span", { class: "muted", id: "deployment-revision" }, `revision ${d.revision}`),
      FINAL.has(d.state) ? null : h("span", { class: "loading" }, "in progress…"), actions),
    d.reason && FAILED.has(d.state) ? h("div", { class: "error" }, h("span", { class: "msg" }, d.reason)) : null,
    d.reason && !FAILED.has(d.state) ? h("p", { class: "notice" }, d.reason) : null,
    components.length ? h("ul", { class: "steps" }, components) : h("p", { class: "muted" }, FINAL.has(d.state) ? "No components." : "No component applied yet."),
    h("p", { class: "muted" }, "Deployment ", h("code", {}, d.id), ", updated ", timeEl(d.updated_at)));
}

export async function deploymentAction(action, d) {
  return api("POST", `/v1/deployments/${encodeURIComponent(d.id)}/${action}`, { json: {} });
}
