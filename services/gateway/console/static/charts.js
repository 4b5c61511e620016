// Metric charts of an app: series names from /v1/metrics/series?match=app=…, values from
// /v1/metrics/query with step and agg, drawn with uPlot (vendor/, loaded by index.html).

import { api, qs } from "./api.js";
import { fill, h } from "./dom.js";

const RANGES = { "15m": [900, "10s"], "1h": [3600, "30s"], "6h": [21600, "3m"], "24h": [86400, "15m"] };
const COLORS = ["#2457c5", "#c62828", "#1a7f37", "#9a6700", "#7b3fb8", "#00838f", "#ad1457", "#5d6878"];
const MAX_CHARTS = 8;
const MAX_LINES = 8;

function labelOf(labels, app) {
  const text = Object.entries(labels || {}).filter(([k, v]) => !(k === "app" && v === app)).map(([k, v]) => `${k}=${v}`).join(", ");
  return text || "value";
}

/** uPlot's columns: the union of timestamps (s), one column per series (null where absent). */
export function columns(series) {
  const times = [...new Set(series.flatMap((s) => s.points.map(([ts]) => Date.parse(ts) / 1000)))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  return [times, ...series.map((s) => {
    const column = new Array(times.length).fill(null);
    for (const [ts, value] of s.points) column[index.get(Date.parse(ts) / 1000)] = value;
    return column;
  })];
}

function draw(el, name, series, app) {
  const shown = series.slice(0, MAX_LINES);
  const width = Math.max(280, el.clientWidth || 420);
  const options = {
    width, height: 180,
    scales: { x: { time: true } },
    series: [{}, ...shown.map((s, i) => ({ label: labelOf(s.labels, app), stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false }))],
    legend: { live: true },
  };
  const plot = new window.uPlot(options, columns(shown), el);
  const observer = new ResizeObserver(() => plot.setSize({ width: Math.max(280, el.clientWidth), height: 180 }));
  observer.observe(el);
  return () => { observer.disconnect(); plot.destroy(); };
}

let destroyers = [];

/** Fill `container` with one chart per metric name of the app over the last `range`. */
export async function renderCharts(container, app, range = "15m") {
  const [seconds, step] = RANGES[range] || RANGES["15m"];
  const end = new Date();
  const start = new Date(end.getTime() - seconds * 1000);
  const when = [["start", start.toISOString()], ["end", end.toISOString()]];
  const { series } = await api("GET", `/v1/metrics/series${qs([["match", `app=${app}`], ...when])}`);
  const names = [...new Set(series.map((s) => s.name))].sort().slice(0, MAX_CHARTS);
  const answers = await Promise.all(names.map((name) =>
    api("GET", `/v1/metrics/query${qs([["name", name], ["match", `app=${app}`], ...when, ["step", step], ["agg", "avg"]])}`)));
  for (const destroy of destroyers) destroy();
  destroyers = [];
  if (!names.length) {
    fill(container, h("p", { class: "muted" }, `No samples labelled app=${app} in the last ${range}.`));
    return;
  }
  const charts = names.map((name) => h("figure", { class: "chart", dataset: { metric: name } }, h("h3", {}, name)));
  fill(container, h("div", { class: "charts" }, charts),
    new Set(series.map((s) => s.name)).size > MAX_CHARTS ? h("p", { class: "muted" }, `First ${MAX_CHARTS} metrics shown.`) : null);
  names.forEach((name, i) => {
    const found = answers[i].series.filter((s) => s.points.length);
    if (!found.length) charts[i].append(h("p", { class: "muted" }, "No points in range."));
    else if (!window.uPlot) charts[i].append(h("p", { class: "muted" }, "Chart library not loaded."));
    else destroyers.push(draw(charts[i], name, found, app));
  });
}
