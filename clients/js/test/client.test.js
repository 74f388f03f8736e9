// The SDK beyond the seed's snippet: status polling with progress, errors, cancel, retries on 429.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { FreepikClient, FreepikError } from '@freepik/orchestrator-js';

const KEY = 'your-api-key';

test('the base URL comes from IMAGEMESH_URL', () => {
  assert.equal(new FreepikClient(KEY).baseUrl, process.env.IMAGEMESH_URL.replace(/\/+$/, ''));
  assert.equal(new FreepikClient(KEY, { baseUrl: 'http://example.test/' }).baseUrl, 'http://example.test');
});

test('waitForCompletion polls with progress until the task is terminal', async () => {
  const client = new FreepikClient(KEY);
  const submitted = await client.generate({ prompt: 'a red kite', model: 'auto', width: 64, height: 64, steps: 4 });
  const seen = [];
  const task = await client.waitForCompletion(submitted.task_id, {
    intervalMs: 50, onProgress: (t) => seen.push(t.status),
  });
  assert.equal(task.status, 'completed');
  assert.equal(seen.at(-1), 'completed');
  assert.equal(task.images.length, 1);
});

test('errors carry the dialect\'s code and status', async () => {
  const client = new FreepikClient(KEY);
  await assert.rejects(client.generate({ prompt: 'x', model: 'no-such-model' }), (error) => {
    assert.ok(error instanceof FreepikError);
    assert.equal(error.status, 400);
    assert.equal(error.code, 'INVALID_MODEL');
    assert.ok(error.details.supported_models.length > 0);
    return true;
  });
  await assert.rejects(client.getStatus('no-such-task'), { status: 404, code: 'TASK_NOT_FOUND' });
  await assert.rejects(new FreepikClient('wrong-key').listWorkflows(), { status: 401, code: 'INVALID_API_KEY' });
});

test('cancel stops a task', async () => {
  const client = new FreepikClient(KEY);
  const submitted = await client.generate({ prompt: 'slow', width: 256, height: 256, steps: 50 });
  const cancelled = await client.cancel(submitted.task_id);
  assert.equal(cancelled.status, 'cancelled');
});

test('429 answers are retried after Retry-After', async () => {
  const baseUrl = process.env.IMAGEMESH_THROTTLED_URL;
  const impatient = new FreepikClient(undefined, { baseUrl, maxRetries: 0 });
  await assert.rejects(async () => {
    for (let i = 0; i < 5; i += 1) await impatient.listWorkflows();
  }, (error) => error.status === 429 && error.retryAfter !== null);
  const patient = new FreepikClient(undefined, { baseUrl, maxRetries: 5, backoffMs: 10 });
  for (let i = 0; i < 5; i += 1) assert.ok((await patient.listWorkflows()).length > 0);
});
