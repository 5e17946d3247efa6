// Every call to the service goes through request(): one place that adds the admin key and
// turns a failed response into the problem+json title and detail the user is shown.

export class ApiError extends Error {
  constructor(status, title, detail, field = null) {
    super(detail ? `${title}: ${detail}` : title);
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.field = field;
  }
}

let apiKey = "";

export function setApiKey(key) {
  apiKey = key.trim();
}

// json: an object, or JSON text written already (to carry seeds past 2**53 exactly).
export async function request(path, { method = "GET", json, form, admin = false, signal } = {}) {
  const headers = {};
  let body;
  if (json !== undefined) {
    headers["content-type"] = "application/json";
    body = typeof json === "string" ? json : JSON.stringify(json);
  } else if (form !== undefined) {
    body = form; // the browser writes the multipart boundary
  }
  if (admin && apiKey) headers.authorization = `Bearer ${apiKey}`;
  let response;
  try {
    response = await fetch(path, { method, headers, body, signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "network error", `the service did not answer (${err.message})`);
  }
  if (!response.ok) throw await toError(response);
  return response;
}

export async function getJson(path, options) {
  return (await request(path, options)).json();
}

async function toError(response) {
  if ((response.headers.get("content-type") || "").includes("json")) {
    try {
      const p = await response.json();
      return new ApiError(response.status, p.title || response.statusText, p.detail || "", p.field);
    } catch {
      // not JSON after all: fall through to the status line
    }
  }
  return new ApiError(response.status, response.statusText || "error", `HTTP ${response.status}`);
}

// Query strings without empty values: an unset field is left to the server's default.
export function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") q.set(key, String(value));
  }
  return q.toString();
}
