// The Freepik AI Orchestrator SDK (seed 000, "SDKs / JavaScript SDK") over an imagemesh gateway.
// No runtime dependencies: Node 20's fetch. Answers 429/503 and network failures are retried with capped
// exponential backoff, waiting at least what Retry-After says; submits carry an Idempotency-Key so a retried
// submit is the same task.

const DEFAULT_URL = 'http://127.0.0.1:8080';
const TERMINAL = new Set(['completed', 'failed', 'cancelled', 'partial']);

export class FreepikError extends Error {
  constructor(message, { status = 0, code = '', details = {}, retryAfter = null } = {}) {
    super(message);
    this.name = 'FreepikError';
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfter = retryAfter;
  }
}

function retryAfterSeconds(value) {
  if (!value) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, (date - Date.now()) / 1000);
}

function errorFrom(status, body, retryAfter) {
  let code = '';
  let message = '';
  let details = {};
  if (body && typeof body === 'object') {
    const error = body.error;
    if (error && typeof error === 'object') {
      code = error.code || error.type || '';
      message = error.message || '';
      details = error.details || {};
    } else if (typeof error === 'string') {
      message = error;
    } else if (typeof body.detail === 'string') {
      message = body.detail;
    } else if (typeof body.message === 'string') {
      message = body.message;
    }
  } else if (typeof body === 'string') {
    message = body.slice(0, 300);
  }
  return new FreepikError(message || `HTTP ${status}`, { status, code, details, retryAfter });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function defaultBaseUrl() {
  const fromEnv = typeof process !== 'undefined' ? process.env.IMAGEMESH_URL : undefined;
  return fromEnv || DEFAULT_URL;
}

export class FreepikClient {
  /**
   * @param {string} [apiKey] sent as `Authorization: Bearer <apiKey>` (defaults to IMAGEMESH_API_KEY)
   * @param {{baseUrl?: string, maxRetries?: number, backoffMs?: number, maxBackoffMs?: number,
   *          pollIntervalMs?: number, fetch?: typeof fetch}} [options]
   */
  constructor(apiKey, options = {}) {
    this.apiKey = apiKey ?? (typeof process !== 'undefined' ? process.env.IMAGEMESH_API_KEY : undefined);
    this.baseUrl = (options.baseUrl || defaultBaseUrl()).replace(/\/+$/, '');
    this.maxRetries = options.maxRetries ?? 4;
    this.backoffMs = options.backoffMs ?? 500;
    this.maxBackoffMs = options.maxBackoffMs ?? 30000;
    this.pollIntervalMs = options.pollIntervalMs ?? 500;
    this.fetch = options.fetch || globalThis.fetch;
  }

  delay(attempt, retryAfter) {
    const backoff = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** attempt) * (0.5 + Math.random() / 2);
    return Math.max(backoff, (retryAfter ?? 0) * 1000);
  }

  async request(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (this.apiKey) headers.Authorization = `Bearer ${this.apiKey}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (method === 'POST') headers['Idempotency-Key'] = crypto.randomUUID();
    const url = path.startsWith('http') ? path : `${this.baseUrl}${path}`;
    for (let attempt = 0; ; attempt += 1) {
      let reply;
      try {
        reply = await this.fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      } catch (error) {
        if (attempt >= this.maxRetries) {
          throw new FreepikError(`cannot reach the gateway at ${this.baseUrl}: ${error.cause?.code || error.message}`);
        }
        await sleep(this.delay(attempt, null));
        continue;
      }
      if (reply.ok) {
        const type = reply.headers.get('content-type') || '';
        return type.includes('application/json') ? reply.json() : Buffer.from(await reply.arrayBuffer());
      }
      const retryAfter = retryAfterSeconds(reply.headers.get('retry-after'));
      if ((reply.status === 429 || reply.status === 503) && attempt < this.maxRetries) {
        await reply.arrayBuffer();
        await sleep(this.delay(attempt, retryAfter));
        continue;
      }
      const text = await reply.text();
      let parsed = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON: keep the text
      }
      throw errorFrom(reply.status, parsed, retryAfter);
    }
  }

  /** POST /v1/generate: {task_id, model_used, status, estimated_completion, webhook_callback}. */
  async generate({ prompt, model = 'auto', ...options } = {}) {
    return this.request('POST', '/v1/generate', { prompt, model, ...options });
  }

  /** POST /v1/workflows/{id}/execute: {workflow_execution_id, workflow_name, status, estimated_completion, steps}. */
  async executeWorkflow(workflowId, { prompt, image_url, imageUrl, custom_params, customParams, webhook_url } = {}) {
    const body = { custom_params: custom_params || customParams || {} };
    if (prompt !== undefined) body.prompt = prompt;
    if (image_url || imageUrl) body.image_url = image_url || imageUrl;
    if (webhook_url) body.webhook_url = webhook_url;
    return this.request('POST', `/v1/workflows/${encodeURIComponent(workflowId)}/execute`, body);
  }

  /** GET /v1/workflows: the workflow list. */
  async listWorkflows() {
    return (await this.request('GET', '/v1/workflows')).workflows;
  }

  /** GET /v1/generate/{task_id}: a task's status (any job: generation, workflow, post-processing). */
  async getStatus(taskId) {
    return this.request('GET', `/v1/generate/${encodeURIComponent(taskId)}`);
  }

  /** POST /v1/jobs/{id}/cancel (imagemesh extension). */
  async cancel(taskId) {
    return this.request('POST', `/v1/jobs/${encodeURIComponent(taskId)}/cancel`);
  }

  /**
   * Poll a task until it is terminal; `onProgress(task)` is called on every poll.
   * @returns the terminal task
   */
  async waitForCompletion(taskId, { intervalMs = this.pollIntervalMs, timeoutMs = 600000, onProgress } = {}) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const task = await this.getStatus(taskId);
      if (onProgress) onProgress(task);
      if (TERMINAL.has(task.status)) return task;
      if (Date.now() > deadline) throw new FreepikError(`task ${taskId} did not finish in ${timeoutMs} ms`);
      await sleep(intervalMs);
    }
  }

  /** A result image's bytes (a gateway URL or a data URI). */
  async download(url) {
    if (url.startsWith('data:')) return Buffer.from(url.slice(url.indexOf(',') + 1), 'base64');
    return this.request('GET', url);
  }
}

export default FreepikClient;
