// The one way the studio talks to the gateway: fetch with the kept API key, errors turned into words.
// The studio holds no rule: it sends what the person asked and renders what the API answers.

const KEY_STORAGE = "imagemesh.apiKey";

export class ApiError extends Error {
  constructor(message, status, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

// Each dialect has its own error format; the message is always somewhere in it.
export function messageOf(body, status) {
  if (body && typeof body === "object") {
    if (body.error && typeof body.error === "object" && body.error.message) return body.error.message;
    if (typeof body.error === "string" && body.error) return body.error;
    if (typeof body.detail === "string" && body.detail) return body.detail;
    if (Array.isArray(body.detail) && body.detail.length) return body.detail.map((d) => d.msg || String(d)).join("; ");
    if (typeof body.message === "string" && body.message) return body.message;
  }
  if (typeof body === "string" && body.trim()) return body.trim();
  return `The server answered ${status} with no message`;
}

// Set by the app: shows the key dialog and resolves with the key typed (or "" when dismissed).
let askForKey = async () => "";
export function onUnauthorized(handler) {
  askForKey = handler;
}

function headers(extra = {}) {
  const out = { ...extra };
  const key = apiKey();
  if (key) out["X-API-Key"] = key;
  return out;
}

async function send(method, path, body, retried = false) {
  const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  let reply;
  try {
    reply = await fetch(path, init);
  } catch (err) {
    throw new ApiError(`Could not reach the gateway: ${err.message}`, 0, null);
  }
  if (reply.status === 401 && !retried) {
    const failure = await readBody(reply);
    const key = await askForKey(messageOf(failure, 401));
    if (key) {
      setApiKey(key);
      return send(method, path, body, true);
    }
    throw new ApiError(messageOf(failure, 401), 401, failure);
  }
  return reply;
}

async function readBody(reply) {
  const text = await reply.text();
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export async function call(method, path, body) {
  const reply = await send(method, path, body);
  const parsed = await readBody(reply);
  if (!reply.ok) throw new ApiError(messageOf(parsed, reply.status), reply.status, parsed);
  return parsed;
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body ?? {});
export const del = (path) => call("DELETE", path);

// An image the API serves behind the key: <img src> cannot send a header, so it comes as an object URL.
export async function imageUrl(path) {
  if (path.startsWith("data:")) return path;
  const reply = await send("GET", path);
  if (!reply.ok) throw new ApiError(messageOf(await readBody(reply), reply.status), reply.status, null);
  return URL.createObjectURL(await reply.blob());
}

// Server-Sent Events over fetch (EventSource cannot send X-API-Key). Calls onEvent(name, data) per event.
export async function events(path, onEvent, signal) {
  const reply = await send("GET", path);
  if (!reply.ok) {
    const parsed = await readBody(reply);
    throw new ApiError(messageOf(parsed, reply.status), reply.status, parsed);
  }
  const reader = reply.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    if (signal?.aborted) {
      await reader.cancel();
      return;
    }
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const chunk = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of chunk.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trim());
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

export function readFileAsDataUri(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new ApiError(`Could not read ${file.name}`, 0, null));
    reader.readAsDataURL(file);
  });
}
