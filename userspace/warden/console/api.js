// The API as the console uses it: the bearer token from this tab's sessionStorage on
// every request (no cookie), JSON in and out, errors as thrown ApiError.

const KEY = "warden.token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

async function call(method, path, body, accept) {
  const headers = { Accept: accept };
  const t = token();
  if (t) headers.Authorization = "Bearer " + t;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  if (!r.ok) {
    let message = r.status + " " + r.statusText;
    try {
      const e = await r.json();
      if (e && e.error) message = e.error;
    } catch (_) {
      // not JSON: keep the status line
    }
    throw new ApiError(r.status, message);
  }
  return r;
}

export async function get(path) {
  return (await call("GET", path, undefined, "application/json")).json();
}

export async function post(path, body) {
  return (await call("POST", path, body, "application/json")).json();
}

export async function bytes(path) {
  return (await call("GET", path, undefined, "*/*")).arrayBuffer();
}

// A query string from the set fields of `params`.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? "?" + s : "";
}
