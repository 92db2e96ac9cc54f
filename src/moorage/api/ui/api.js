// The public moorage API, called with the signed-in user's token. The dashboard
// has no privileges and no server-side session of its own: the token lives in this
// tab's sessionStorage and goes only in the Authorization header, never in a URL.

const TOKEN_KEY = "moorage.token";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function signIn(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
}

function headers(extra) {
  return { Authorization: `Bearer ${token() || ""}`, ...extra };
}

async function failure(response) {
  let code = "http_error";
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && typeof body.message === "string") message = body.message;
    if (body && typeof body.code === "string") code = body.code;
  } catch {
    // Not JSON: the status line says it.
  }
  return new ApiError(response.status, code, message);
}

/** One JSON call: resolves to the body, rejects with an ApiError carrying the message. */
export async function call(method, path, body, signal) {
  const init = { method, headers: headers({ Accept: "application/json" }), signal };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  init.credentials = "omit";
  init.cache = "no-store";
  init.referrerPolicy = "no-referrer";
  const response = await fetch(path, init);
  if (!response.ok) throw await failure(response);
  return response.json();
}

export const get = (path, signal) => call("GET", path, undefined, signal);

/**
 * Follows a text stream (the logs): calls onText with each decoded piece until the
 * server ends it or `signal` aborts. Rejects with an ApiError on an error answer.
 */
export async function stream(path, signal, onText) {
  const response = await fetch(path, {
    headers: headers({ Accept: "text/plain" }),
    signal,
    credentials: "omit",
    cache: "no-store",
    referrerPolicy: "no-referrer",
  });
  if (!response.ok) throw await failure(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      onText(decoder.decode(value, { stream: true }));
    }
    onText(decoder.decode());
  } finally {
    reader.releaseLock();
  }
}

const SERVICES = "/v1/inference-service";
export const paths = {
  services: SERVICES,
  flavors: `${SERVICES}/flavor`,
  service: (id) => `${SERVICES}/${encodeURIComponent(id)}`,
  action: (id, what) => `${SERVICES}/${encodeURIComponent(id)}/${what}`,
  usageByDay: "/v1/usage?group_by=day",
};
