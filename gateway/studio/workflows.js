// Workflows: the orchestrator's list with its estimates; a run's steps update live from the job's events.
import { events, get, imageUrl, post } from "./api.js";
import { busy, downloadLink, el, imageFrame, imagePicker, showError } from "./ui.js";

export function mount(section) {
  const list = el("div", { class: "grid", "data-testid": "workflow-list" });
  const error = el("p", { class: "error", role: "alert", hidden: true, "data-testid": "workflow-error" });
  const chosen = el("select", { id: "workflow-id" });
  const prompt = el("textarea", { id: "workflow-prompt", rows: "2" });
  const params = el("textarea", { id: "workflow-params", rows: "3", placeholder: "{\"scale_factor\": 2}" });
  const picker = imagePicker("workflow", { allowUrl: true });
  const run = el("button", { type: "submit" }, "Run workflow");
  const steps = el("ol", { class: "steps", "data-testid": "workflow-steps", "aria-live": "polite" });
  const status = el("p", { "aria-live": "polite", "data-testid": "workflow-status" });
  const result = el("div", {});

  const form = el("form", { class: "panel", "aria-labelledby": "workflow-run-title" },
    el("h3", { id: "workflow-run-title" }, "Run a workflow"),
    el("div", { class: "field" }, el("label", { for: "workflow-id" }, "Workflow"), chosen),
    el("div", { class: "field" }, el("label", { for: "workflow-prompt" }, "Prompt (for workflows that generate)"),
      prompt),
    el("p", { class: "hint" }, "Input image, for workflows that start from one:"), picker.root,
    el("div", { class: "field" }, el("label", { for: "workflow-params" }, "Parameters (JSON, optional)"), params),
    el("div", { class: "actions" }, run), error);
  section.append(el("div", { class: "panel" }, el("h2", {}, "Workflows"), list), form, status, steps, result);

  async function load() {
    try {
      const reply = await get("/v1/workflows");
      list.replaceChildren(...reply.workflows.map((w) => el("article", { class: "card", "data-testid": "workflow" },
        el("h3", {}, w.name), el("p", {}, w.description),
        el("p", { class: "meta" }, `${w.steps_count} steps · ${w.estimated_time} · ${w.estimated_cost}`))));
      chosen.replaceChildren(...reply.workflows.map((w) => el("option", { value: w.id }, w.name)));
    } catch (err) {
      showError(error, err);
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(error, null);
    result.replaceChildren();
    busy(run, true, "Running…");
    try {
      let custom = {};
      if (params.value.trim()) {
        try {
          custom = JSON.parse(params.value);
        } catch (err) {
          throw new Error(`Parameters are not valid JSON: ${err.message}`);
        }
      }
      const image = picker.value();
      const body = { prompt: prompt.value || undefined, custom_params: custom,
        image_url: image ? image.image_url || image.image : undefined };
      const started = await post(`/v1/workflows/${encodeURIComponent(chosen.value)}/execute`, body);
      const items = new Map();
      steps.replaceChildren(...started.steps.map((s) => {
        const item = el("li", { "data-status": s.status }, `${s.action}: ${s.status}`);
        items.set(s.action, item);
        return item;
      }));
      status.textContent = `${started.workflow_name}: ${started.status} (about ${started.estimated_completion})`;
      let failure = null;
      await events(`/v1/jobs/${encodeURIComponent(started.workflow_execution_id)}/events`, (name, data) => {
        status.textContent = `${started.workflow_name}: ${data.status} — ${data.progress.message || ""}`;
        if (data.step) {
          const item = items.get(data.step) || steps.appendChild(el("li", {}));
          items.set(data.step, item);
          item.textContent = `${data.step}: ${name === "step" ? "done" : data.status}`;
        }
        if (data.error) failure = data.error.message;
        if (name === "error") failure = data.message;
      });
      const job = await get(`/v1/jobs/${encodeURIComponent(started.workflow_execution_id)}`);
      if (failure || job.status !== "completed") throw new Error(failure || job.error?.message || job.status);
      status.textContent = `${started.workflow_name}: completed in ${job.processing_time}s`;
      for (const item of items.values()) item.dataset.status = "completed";
      if (job.image_url) {
        const src = await imageUrl(job.image_url);
        result.replaceChildren(imageFrame(src, "Workflow result", { testid: "workflow-result" }),
          downloadLink(src, `${started.workflow_execution_id}.png`));
      }
    } catch (err) {
      showError(error, err);
    } finally {
      busy(run, false, "Running…");
    }
  });

  return { show: () => (chosen.options.length ? null : load()) };
}
