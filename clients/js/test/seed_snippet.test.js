// Seed 000's "SDKs / JavaScript SDK" snippet, verbatim, at the top of this module (an ES module: top-level await).
// The base URL comes from IMAGEMESH_URL; the gateway under test is configured with the snippet's literal key.
import { test } from 'node:test';
import assert from 'node:assert/strict';

// ---- seed 000, verbatim ----
import { FreepikClient } from '@freepik/orchestrator-js';

const client = new FreepikClient('your-api-key');

// Generate image
const result = await client.generate({
  prompt: 'Professional headshot',
  model: 'auto'
});

// Execute workflow
const workflowResult = await client.executeWorkflow(
  'professional_headshot',
  { prompt: 'Business portrait' }
);
// ---- end of the seed ----

test('generate answers the seed\'s generate response', async () => {
  assert.ok(result.task_id);
  assert.ok(['pending', 'running'].includes(result.status));
  assert.equal(typeof result.model_used, 'string');
  assert.equal(typeof result.estimated_completion, 'string');
  assert.equal(result.webhook_callback, false);
  const task = await client.waitForCompletion(result.task_id, { intervalMs: 200 });
  assert.equal(task.status, 'completed');
  const image = await client.download(task.image_url);
  assert.equal(image.subarray(1, 4).toString(), 'PNG');
});

test('executeWorkflow answers the seed\'s workflow execution', async () => {
  assert.equal(workflowResult.workflow_name, 'professional_headshot');
  assert.ok(workflowResult.workflow_execution_id);
  assert.deepEqual(workflowResult.steps.map((s) => s.action),
    ['generate', 'relight', 'remove_background', 'upscale']);
  const task = await client.waitForCompletion(workflowResult.workflow_execution_id, { intervalMs: 200 });
  assert.equal(task.status, 'completed');
});
