// One app: components, builds (live steps), packages, deploy, instances, metrics, alerts,
// timeline. Live through the event stream, with polling while something is in progress.

import { api, qs } from "./api.js";
import { alertsTable } from "./alerts.js";
import { renderCharts } from "./charts.js";
import {
  FINAL, compareVersions, deploymentAction, instanceOf, launchFor, rememberLaunch, renderDeployment, upgradeLaunch,
} from "./deploy.js";
import { badge, busy, fill, h, panel, table, timeEl } from "./dom.js";
import { follow } from "./sse.js";

const BUILDING = new Set(["QUEUED", "RUNNING"]);

export function appView(root, name, { showError }) {
  const path = `/v1/apps/${encodeURIComponent(name)}`;
  const timers = new Set();
  let stopped = false;
  const state = { app: null, packages: [], launchEdited: false };
  const box = (id, text = "Loading…") => h("div", { id }, h("p", { class: "loading" }, text));

  const overview = box("overview");
  const healthBox = h("span", { id: "health" });
  const buildBox = box("build", "No build started here yet.");
  const buildsBox = box("builds");
  const packagesBox = box("packages");
  const launch = h("textarea", { id: "launch", spellcheck: "false", oninput: () => { state.launchEdited = true; } });
  const deployButton = h("button", { type: "button", id: "deploy" }, "Deploy");
  const deploymentBox = h("div", { id: "deployment" });
  const instancesBox = box("instances");
  const logsBox = h("div", { id: "instance-logs" });
  const chartsBox = box("charts");
  const alertsBox = box("app-alerts");
  const timelineBox = box("timeline");
  const buildButton = h("button", { type: "button", id: "build-start" }, "Build");
  const buildVersion = h("input", { id: "build-version", placeholder: "version (default: next patch)", size: 22 });
  const range = h("select", { id: "metrics-range" }, ["15m", "1h", "6h", "24h"].map((r) => h("option", { value: r }, r)));
  const kind = h("select", { id: "timeline-kind" }, h("option", { value: "" }, "all"), ["build", "deploy", "app", "alert", "ops"].map((k) => h("option", { value: k }, k)));

  const guard = (promise) => promise.catch((err) => { if (!stopped) showError(err); });
  const later = (fn, ms) => { const t = setTimeout(() => { timers.delete(t); if (!stopped) fn(); }, ms); timers.add(t); return t; };
  const pending = new Map();
  const soon = (fn) => { if (!pending.has(fn)) pending.set(fn, later(() => { pending.delete(fn); guard(fn()); }, 250)); };

  async function loadApp() {
    const app = await api("GET", path);
    state.app = app;
    const rows = app.components.map((c) => h("tr", {}, h("td", {}, h("code", {}, c.name)), h("td", {}, c.type),
      h("td", { class: "muted" }, Object.entries(c.source || {}).filter(([, v]) => v).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`).join(", ")),
      h("td", { class: "muted" }, Object.keys(c.traits || {}).join(", "))));
    fill(overview,
      h("div", { class: "head" }, h("h1", {}, app.name), h("span", { class: "muted" }, `team ${app.team}`),
        healthBox),
      app.description ? h("p", {}, app.description) : null,
      table(["Component", "Type", "Source", "Traits"], rows, "No components."));
    if (!state.launchEdited) launch.value = launchFor(app, { version: state.packages[0]?.version || "latest" });
  }

  async function loadBuilds() {
    const { builds: recent } = await api("GET", `${path}/builds`);
    fill(buildsBox, table(["Version", "Status", "Started", ""], recent.slice(0, 8).map((b) => h("tr", {},
      h("td", {}, b.version), h("td", {}, badge(b.status)), h("td", {}, timeEl(b.created_at)),
      h("td", {}, h("button", { type: "button", class: "quiet", onclick: () => guard(builds.show(b.id)) }, "Steps")))), "No builds yet."));
    if (!builds.id() && recent[0] && BUILDING.has(recent[0].status)) await builds.show(recent[0].id);
  }

  /** Show one item (a build, a deployment), polled until done; showing another replaces it. */
  function tracker(load, render, done) {
    let current = null;
    async function refresh(id) {
      if (!id || current !== id) return;
      const item = await load(id);
      if (current !== id) return;
      render(item, id);
      if (!done(item)) later(() => guard(refresh(id)), 1000);
    }
    return { show: (id) => { current = id; return refresh(id); }, refresh: () => refresh(current), id: () => current };
  }

  const builds = tracker((id) => api("GET", `/v1/builds/${encodeURIComponent(id)}`), renderBuild, (b) => !BUILDING.has(b.status));
  const deployments = tracker((id) => api("GET", `/v1/deployments/${encodeURIComponent(id)}`), (d) => {
    renderDeployment(deploymentBox, d, {
      onAction: (button, action, dep) => busy(button, async () => { await deploymentAction(action, dep); await deployments.refresh(); }, showError),
    });
    if (FINAL.has(d.state)) soon(loadInstances);
  }, (d) => FINAL.has(d.state));

  function renderBuild(b, id) {
    Object.assign(buildBox.dataset, { id, version: b.version, status: b.status });
    const steps = (b.steps || []).map((s) => h("li", { dataset: { step: `${s.component}/${s.step}` } },
      h("code", {}, `${s.component} · ${s.step}`), " ", badge(s.status),
      (s.log || []).length ? h("pre", { class: "log" }, s.log.join("\n")) : null));
    fill(buildBox,
      h("div", { class: "row" }, h("strong", {}, `Build ${b.version}`), badge(b.status),
        BUILDING.has(b.status) ? h("span", { class: "loading" }, "building…") : null,
        BUILDING.has(b.status) ? h("button", { type: "button", class: "danger", onclick: (e) => busy(e.target, () => api("POST", `/v1/builds/${encodeURIComponent(id)}/cancel`, { json: {} }), showError) }, "Cancel") : null),
      b.reason ? h("div", { class: "error" }, h("span", { class: "msg" }, b.reason)) : null,
      steps.length ? h("ol", { class: "steps", id: "build-steps" }, steps) : h("p", { class: "loading" }, "Waiting for a build worker…"),
      (b.artifacts || []).map((a) => h("div", { class: "muted digest" }, `${a.component}: ${a.kind} ${a.digest}`)));
  }

  async function loadPackages() {
    const { packages } = await api("GET", `${path}/packages`);
    state.packages = packages;
    fill(packagesBox, table(["Version", "Built", "Artifacts", ""], packages.slice(0, 10).map((p) => h("tr", { dataset: { version: p.version } },
      h("td", {}, h("strong", {}, p.version)), h("td", {}, timeEl(p.created_at)),
      h("td", { class: "muted" }, (p.artifacts || []).map((a) => h("div", {}, `${a.component}: ${String(a.digest).slice(0, 19)}…`))),
      h("td", {}, h("button", { type: "button", class: "quiet", onclick: () => useLaunch(launch.value.replace(/^version:.*$/m, `version: ${JSON.stringify(p.version)}`)) }, "Deploy…")))), "No packages yet: build the app."));
    if (state.app && !state.launchEdited) launch.value = launchFor(state.app, { version: packages[0]?.version || "latest" });
  }

  function useLaunch(text, note) {
    launch.value = text;
    state.launchEdited = true;
    document.getElementById("launch-note").textContent = note || "";
    launch.scrollIntoView({ block: "center" });
    launch.focus();
  }

  async function instanceAction(button, method, suffix, body) {
    const answer = await busy(button, () => api(method, `/v1/instances/${encodeURIComponent(suffix)}`, body ? { json: body } : {}), showError);
    if (answer?.id) await deployments.show(answer.id);
    soon(loadInstances);
  }

  async function loadInstances() {
    const { instances } = await api("GET", "/v1/instances");
    const mine = instances.filter((i) => i.app === name);
    fill(instancesBox, table(["Instance", "Target", "State", "Version", "Revision", "Updated", ""], mine.map((i) => {
      const newer = state.packages.filter((p) => compareVersions(p.version, i.version) > 0);
      const pick = h("select", { "aria-label": `upgrade ${i.id} to`, class: "upgrade-version" }, newer.map((p) => h("option", { value: p.version }, p.version)));
      const upgrade = h("button", { type: "button", class: "quiet", disabled: !newer.length, onclick: () => {
        const { text, known } = upgradeLaunch(state.app, i, pick.value);
        useLaunch(text, known ? `Upgrade ${i.id} to ${pick.value}: the launch this tab last sent, with the new version.` : `Upgrade ${i.id} to ${pick.value}: parameters are the app's defaults (the API does not return an instance's launch); check them.`);
      } }, "Upgrade…");
      return h("tr", { dataset: { instance: i.id } },
        h("td", {}, h("strong", {}, i.id)), h("td", { class: "muted" }, `${i.cluster}/${i.namespace}/${i.stage}`),
        h("td", {}, badge(i.state)), h("td", { class: "version" }, i.version), h("td", { class: "revision" }, String(i.revision)),
        h("td", {}, timeEl(i.updated_at)),
        h("td", { class: "actions" }, newer.length ? pick : null, upgrade,
          i.last_deployment ? h("button", { type: "button", class: "quiet", onclick: () => guard(deployments.show(i.last_deployment)) }, "Progress") : null,
          i.cluster === "local" ? h("button", { type: "button", class: "quiet", onclick: (e) => busy(e.target, () => showLogs(i.id), showError) }, "Logs") : null,
          h("button", { type: "button", class: "quiet", onclick: (e) => instanceAction(e.target, "POST", `${i.id}/rollback`, {}) }, "Roll back"),
          h("button", { type: "button", class: "danger", onclick: (e) => { if (confirm(`Uninstall ${i.id}? Its components are removed.`)) instanceAction(e.target, "DELETE", i.id); } }, "Uninstall")));
    }), "Not deployed anywhere."));
  }

  async function loadHealth() {
    const health = await api("GET", `${path}/health`);
    fill(healthBox, badge(health.status), ` score ${health.score}`);
  }
  const loadAlerts = () => Promise.all([alertsTable(alertsBox, { state: "firing", app: name }), loadHealth()]);
  async function showLogs(id) {
    const { components } = await api("GET", `/v1/instances/${encodeURIComponent(id)}/logs${qs([["tail", 200]])}`);
    fill(logsBox, h("div", { class: "row" }, h("strong", {}, `Output of ${id}`), h("span", { class: "muted" }, "last 200 lines per component"),
      h("button", { type: "button", class: "quiet", onclick: (e) => busy(e.target, () => showLogs(id), showError) }, "Refresh"),
      h("button", { type: "button", class: "quiet", onclick: () => logsBox.replaceChildren() }, "Close")),
    Object.entries(components || {}).map(([component, lines]) => [h("h3", {}, component), h("pre", { class: "log", dataset: { component } }, lines.join("\n") || "(nothing printed yet)")]));
  }

  const loadCharts = () => renderCharts(chartsBox, name, range.value);

  async function loadTimeline() {
    const { events, total } = await api("GET", `${path}/timeline${qs([["limit", 60], ["kind", kind.value]])}`);
    fill(timelineBox, events.length ? h("ul", { class: "timeline" }, events.map((e) => h("li", { dataset: { kind: e.kind, type: e.type } },
      timeEl(e.ts), h("span", {}, badge(e.kind)), h("span", {}, e.summary || e.type)))) : h("p", { class: "muted" }, "Nothing happened yet."),
      total > events.length ? h("p", { class: "muted" }, `${events.length} of ${total}`) : null);
  }

  buildButton.addEventListener("click", () => busy(buildButton, async () => {
    const started = await api("POST", `${path}/builds`, { json: buildVersion.value.trim() ? { version: buildVersion.value.trim() } : {} });
    buildVersion.value = "";
    await builds.show(started.build_id);
    soon(loadBuilds);
  }, showError));
  deployButton.addEventListener("click", () => busy(deployButton, async () => {
    const d = await api("POST", "/v1/deployments", { text: launch.value });
    rememberLaunch(instanceOf(launch.value) || d.instance, launch.value);
    state.launchEdited = false;
    document.getElementById("launch-note").textContent = "";
    await deployments.show(d.id);
    soon(loadInstances);
  }, showError));
  range.addEventListener("change", () => guard(loadCharts()));
  kind.addEventListener("change", () => guard(loadTimeline()));

  function onEvent({ event: type, data }) {
    if (type === "missed") { // the gateway could not replay everything since the last id
      for (const load of [loadApp, loadBuilds, loadPackages, loadInstances, loadAlerts, loadTimeline]) soon(load);
      return;
    }
    const d = (data && data.data) || {};
    if (type.startsWith("io.opsline.build.")) {
      if (d.build_id && d.build_id === builds.id()) soon(builds.refresh);
      soon(loadBuilds);
    } else if (type.startsWith("io.opsline.package.")) soon(loadPackages);
    else if (type.startsWith("io.opsline.deploy.")) {
      if (d.deployment_id && d.deployment_id === deployments.id()) soon(deployments.refresh);
      soon(loadInstances);
    } else if (type.startsWith("io.opsline.alert.") || type.startsWith("io.opsline.incident.")) soon(loadAlerts);
    else if (type.startsWith("io.opsline.app.")) soon(loadApp);
    soon(loadTimeline);
  }
  const live = document.getElementById("live");
  live.hidden = false;
  const stopStream = follow(`/v1/events/stream${qs([["app", name]])}`, onEvent, (s, why) => {
    live.className = `live ${s === "live" ? "on" : "off"}`;
    live.textContent = s === "live" ? "live" : s;
    live.title = why || "live events";
  });

  fill(root, h("div", { class: "grid" },
    h("div", {},
      h("section", { class: "panel" }, overview),
      panel("Build", { id: "build-panel", tools: h("span", { class: "row" }, buildVersion, buildButton) }, buildBox, h("h3", {}, "Recent builds"), buildsBox),
      panel("Packages", { id: "packages-panel" }, packagesBox),
      panel("Deploy", { id: "deploy-panel" }, h("p", { class: "muted", id: "launch-note" }), launch, h("div", { class: "row" }, deployButton), deploymentBox),
      panel("Instances", { id: "instances-panel" }, instancesBox, logsBox),
      panel("Metrics", { id: "metrics-panel", tools: range }, chartsBox)),
    h("div", {},
      panel("Firing alerts", { id: "alerts-panel" }, alertsBox),
      panel("Timeline", { id: "timeline-panel", tools: kind }, timelineBox))));

  guard(loadApp().then(async () => {
    await loadPackages();
    await Promise.all([loadBuilds(), loadInstances()]);
  }));
  guard(loadAlerts());
  guard(loadTimeline());
  guard(loadCharts());
  const every = setInterval(() => { guard(loadAlerts()); guard(loadInstances()); }, 10000);
  const chartsEvery = setInterval(() => guard(loadCharts()), 30000);

  return () => {
    stopped = true;
    stopStream();
    clearInterval(every);
    clearInterval(chartsEvery);
    for (const t of timers) clearTimeout(t);
    live.hidden = true;
  };
}
