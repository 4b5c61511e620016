// Tiny DOM helpers: build elements without innerHTML (no injection from API data).

/** h("td", {class: "x", onclick: fn}, "text", child, [more]) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const OK = new Set(["SUCCESS", "SUCCEEDED", "succeeded", "healthy", "resolved", "ROLLED_BACK"]);
const BAD = new Set(["FAILURE", "FAILED", "failed", "WAIT_FOR_OP", "CRITICAL", "firing", "unhealthy", "error"]);
const WARN = new Set(["WARNING", "TERMINATED", "CANCELLED", "cancelled", "degraded", "OutOfSync", "ROLLING_BACK"]);
const IDLE = new Set(["QUEUED", "CREATED", "pending", "UNINSTALLED"]);

/** A coloured state badge; the state text stays the content (screen readers, tests). */
export function badge(state) {
  const text = state ?? "—";
  const kind = OK.has(text) ? "ok" : BAD.has(text) ? "bad" : WARN.has(text) ? "warn" : IDLE.has(text) ? "idle" : "run";
  return h("span", { class: `badge s-${kind}`, dataset: { state: text } }, text);
}

const pad = (n) => String(n).padStart(2, "0");

/** Local time, to the second; epoch ms or RFC 3339 in. */
export function when(value) {
  if (value === null || value === undefined || value === "") return "—";
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function timeEl(value) {
  const d = new Date(value);
  return h("time", { datetime: Number.isNaN(d.getTime()) ? "" : d.toISOString() }, when(value));
}

/** A section: title, optional tools, body. */
export function panel(title, { id, tools } = {}, ...body) {
  return h("section", { class: "panel", id }, h("div", { class: "head" }, h("h2", {}, title), tools), ...body);
}

export function table(headers, rows, empty = "None yet.") {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h("div", { class: "table-wrap" },
    h("table", {}, h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))), h("tbody", {}, rows)));
}

/** Run an async action with its button disabled meanwhile; errors go to `onError`. */
export async function busy(button, action, onError) {
  const label = button.textContent;
  button.disabled = true;
  button.textContent = `${label}…`;
  try {
    return await action();
  } catch (err) {
    onError(err);
    return undefined;
  } finally {
    button.disabled = false;
    button.textContent = label;
  }
}
