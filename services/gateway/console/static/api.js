// The /v1 API with the signed-in bearer token. The token lives in sessionStorage only
// (gone when the tab closes or on sign-out); it never goes into a URL or a log line.

const KEY = "opsline.token";
let unauthorized = () => {};

export const session = {
  token: () => sessionStorage.getItem(KEY),
  signIn: (token) => sessionStorage.setItem(KEY, token),
  signOut: () => sessionStorage.clear(),
  /** Called with the error when the gateway answers 401 (revoked or expired token). */
  onUnauthorized: (callback) => { unauthorized = callback; },
};

export class ApiError extends Error {
  constructor(status, reason) {
    super(reason);
    this.status = status;
  }
}

/** The API's reason text, whatever shape its error body has. */
export function reasonOf(body, response) {
  const detail = body && typeof body === "object" ? body.detail ?? body.message ?? body.error : null;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    // FastAPI validation errors: [{loc: ["query", "step"], msg: "..."}]
    return detail.map((e) => `${(e.loc || []).filter((x) => x !== "body").join(".")}: ${e.msg}`).join("; ");
  }
  if (detail && typeof detail === "object") {
    const errors = Array.isArray(detail.errors) ? detail.errors : [];
    return [detail.message || detail.reason || JSON.stringify(detail), ...errors].join("\n  • ");
  }
  return `${response.status} ${response.statusText || "error"}`;
}

function authHeaders(extra = {}) {
  const token = session.token();
  if (!token) throw new ApiError(401, "sign in first: no token in this tab");
  return { Authorization: `Bearer ${token}`, ...extra };
}

/**
 * Call the API: `json` (an object) or `text` (YAML by default) as the body.
 * Answers the parsed JSON (null for an empty answer); throws ApiError with the reason.
 */
export async function api(method, path, { json, text, type = "application/yaml", headers = {}, signal } = {}) {
  const all = authHeaders({ Accept: "application/json", ...headers });
  let body;
  if (json !== undefined) {
    body = JSON.stringify(json);
    all["Content-Type"] = "application/json";
  } else if (text !== undefined) {
    body = text;
    all["Content-Type"] = type;
  }
  let response;
  try {
    response = await fetch(path, { method, headers: all, body, signal, cache: "no-store" });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, `the gateway cannot be reached (${err.message})`);
  }
  const raw = await response.text();
  let data = null;
  try {
    data = raw ? JSON.parse(raw) : null;
  } catch {
    data = { detail: raw.slice(0, 500) };
  }
  if (!response.ok) {
    const error = new ApiError(response.status, `${method} ${path.split("?")[0]}: ${reasonOf(data, response)}`);
    if (response.status === 401) unauthorized(error);
    throw error;
  }
  return data;
}

/** Query string from [key, value] pairs (keys may repeat, e.g. match=). */
export function qs(pairs) {
  const params = new URLSearchParams();
  for (const [key, value] of pairs) if (value !== undefined && value !== null && value !== "") params.append(key, value);
  const text = params.toString();
  return text ? `?${text}` : "";
}

export { authHeaders };
