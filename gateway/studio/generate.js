// Generate: CyberImage's queued generation (model, negative prompt, size, steps, guidance, seed, count), followed
// live over the job's Server-Sent Events; results are stored by the mesh and shown from the image store.
import { events, get, imageUrl, post } from "./api.js";
import { busy, downloadLink, el, showError } from "./ui.js";

function field(id, label, input, hint) {
  input.id = id;
  return el("div", { class: "field" }, el("label", { for: id }, label), input,
    hint && el("small", { id: `${id}-hint` }, hint));
}

export function mount(section) {
  const model = el("select", { name: "model" });
  const prompt = el("textarea", { rows: "3", required: true, maxlength: "500" });
  const negative = el("textarea", { rows: "2", maxlength: "500" });
  const width = el("input", { type: "number", min: "64", step: "8", placeholder: "model default" });
  const height = el("input", { type: "number", min: "64", step: "8", placeholder: "model default" });
  const steps = el("input", { type: "number", min: "1", placeholder: "model default" });
  const guidance = el("input", { type: "number", min: "0", step: "0.5", placeholder: "model default" });
  const seed = el("input", { type: "number", min: "-1", placeholder: "random" });
  const count = el("input", { type: "number", min: "1", max: "8", value: "1" });
  const submit = el("button", { type: "submit" }, "Generate");
  const error = el("p", { class: "error", role: "alert", hidden: true, "data-testid": "generate-error" });
  const bar = el("progress", { max: "100", value: "0", id: "generate-progress" });
  const status = el("p", { "aria-live": "polite", "data-testid": "generate-status" });
  const steplog = el("ol", { class: "steplog", "data-testid": "generate-steps", "aria-label": "Denoising steps" });
  // The latest live preview (a small PNG data URL on the job's events), while the image denoises.
  const preview = el("img", { class: "preview", alt: "Live preview", hidden: true, "data-testid": "generate-preview" });
  const results = el("div", { class: "grid wide", "data-testid": "generate-results" });

  const form = el("form", { class: "panel", "aria-labelledby": "generate-title" },
    el("h2", { id: "generate-title" }, "Generate"),
    field("gen-prompt", "Prompt", prompt),
    field("gen-negative", "Negative prompt", negative, "Models that ignore it say so in the result's notes."),
    field("gen-model", "Model", model),
    el("div", { class: "row" },
      field("gen-width", "Width (px)", width), field("gen-height", "Height (px)", height),
      field("gen-count", "Number of images", count)),
    el("div", { class: "row" },
      field("gen-steps", "Steps", steps), field("gen-guidance", "Guidance", guidance), field("gen-seed", "Seed", seed)),
    el("div", { class: "actions" }, submit),
    error);

  const progressPanel = el("div", { class: "panel", hidden: true },
    el("h3", {}, "Progress"), el("label", { for: "generate-progress" }, "Denoising"), bar, status, preview, steplog);
  section.append(form, progressPanel, results);

  async function loadModels() {
    try {
      const listing = await get("/api/models");
      model.replaceChildren(...Object.entries(listing.models).map(([name, info]) =>
        el("option", { value: name, selected: name === listing.default },
          `${name} (${info.id})${info.description ? " — " + info.description : ""}`)));
    } catch (err) {
      showError(error, err);
    }
  }

  function number(input) {
    return input.value === "" ? undefined : Number(input.value);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(error, null);
    busy(submit, true, "Generating…");
    steplog.replaceChildren();
    results.replaceChildren();
    preview.hidden = true;
    bar.value = 0;
    status.textContent = "Submitting…";
    progressPanel.hidden = false;
    try {
      const settings = { num_images: number(count) ?? 1, num_inference_steps: number(steps),
        guidance_scale: number(guidance), width: number(width), height: number(height), seed: number(seed) };
      const job = await post("/api/generate", { model_id: model.value, prompt: prompt.value,
        negative_prompt: negative.value || undefined, settings });
      status.textContent = `Job ${job.job_id}: ${job.message}`;
      let failure = null;
      await events(`/v1/jobs/${encodeURIComponent(job.job_id)}/events`, (name, data) => {
        const p = data.progress || {};
        if (p.preview) {
          preview.src = p.preview;
          preview.hidden = false;
        }
        if (p.total_steps && p.step && p.stage === "generating") {
          bar.value = p.percentage;
          const text = `Step ${p.step} of ${p.total_steps}`;
          if (steplog.lastChild?.textContent !== text) steplog.append(el("li", {}, text));
        } else if (typeof p.percentage === "number") {
          bar.value = Math.max(bar.value, p.percentage);
        }
        status.textContent = p.message || data.status;
        if (data.error) failure = data.error.message;
        if (name === "error") failure = data.message;
      });
      if (failure) throw new Error(failure);
      const done = await get(`/api/status/${encodeURIComponent(job.job_id)}`);
      if (done.status !== "completed") throw new Error(done.error_message || done.message);
      bar.value = 100;
      preview.hidden = true;
      status.textContent = done.message;
      for (const image of done.images) {
        const src = await imageUrl(`/api/get_image/${encodeURIComponent(image.id)}`);
        results.append(el("figure", { class: "card", "data-testid": "generated-image" },
          el("div", { class: "frame" }, el("img", { src, alt: `Generated: ${done.prompt}` })),
          el("figcaption", {}, `${image.metadata.model_id} · image ${image.metadata.image_number} of `
            + `${image.metadata.total_images}`), downloadLink(src, `${image.id}.png`)));
      }
    } catch (err) {
      showError(error, err);
      status.textContent = "Stopped.";
    } finally {
      busy(submit, false, "Generating…");
    }
  });

  return { show: () => (model.options.length ? null : loadModels()) };
}
