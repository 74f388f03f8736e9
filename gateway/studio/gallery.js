// Gallery (CyberImage's stored images), queue figures and the caller's jobs with progress and cancel.
import { del, get, imageUrl, post } from "./api.js";
import { busy, downloadLink, el, showError } from "./ui.js";

const ACTIVE = new Set(["pending", "running"]);

export function mount(section) {
  const search = el("input", { type: "search", id: "gallery-search" });
  const model = el("input", { type: "text", id: "gallery-model", placeholder: "any" });
  const limit = el("select", { id: "gallery-limit" }, ["12", "24", "48", "2"].map((n) => el("option", { value: n }, n)));
  const go = el("button", { type: "submit" }, "Show");
  const prev = el("button", { type: "button", class: "secondary" }, "Previous page");
  const next = el("button", { type: "button", class: "secondary" }, "Next page");
  const pageInfo = el("p", { "aria-live": "polite", "data-testid": "gallery-page" });
  const grid = el("div", { class: "grid", "data-testid": "gallery" });
  const error = el("p", { class: "error", role: "alert", hidden: true, "data-testid": "gallery-error" });
  const queue = el("dl", { class: "stats", "data-testid": "queue" });
  const jobs = el("tbody", { "data-testid": "jobs" });
  const refresh = el("button", { type: "button", class: "secondary" }, "Refresh jobs");
  let page = 1;
  let timer = null;

  const form = el("form", { class: "panel", role: "search", "aria-labelledby": "gallery-title" },
    el("h2", { id: "gallery-title" }, "Gallery"),
    el("div", { class: "row" },
      el("div", { class: "field" }, el("label", { for: "gallery-search" }, "Search prompts"), search),
      el("div", { class: "field" }, el("label", { for: "gallery-model" }, "Model"), model),
      el("div", { class: "field" }, el("label", { for: "gallery-limit" }, "Per page"), limit)),
    el("div", { class: "actions" }, go), error);
  section.append(form, el("nav", { class: "pager", "aria-label": "Gallery pages" }, prev, pageInfo, next), grid,
    el("div", { class: "panel" }, el("h2", {}, "Queue"), queue),
    el("div", { class: "panel" }, el("h2", {}, "Jobs"), el("div", { class: "actions" }, refresh),
      el("div", { class: "scroll" }, el("table", {},
        el("thead", {}, el("tr", {}, ["Job", "Kind", "Status", "Progress", "Model", "Created", ""].map((h) =>
          el("th", { scope: "col" }, h)))), jobs))));

  // Only the newest gallery request may render: the first view's load can answer after a search the person
  // made meanwhile, and must not overwrite it.
  let latest = 0;

  async function loadGallery() {
    const mine = ++latest;
    showError(error, null);
    const query = new URLSearchParams({ page: String(page), limit: limit.value });
    if (search.value) query.set("search", search.value);
    if (model.value) query.set("model", model.value);
    try {
      const reply = await get(`/api/gallery?${query}`);
      if (mine !== latest) return;
      if (!reply.images.length && page > 1) {
        // The last image of a page was deleted: show the page before it.
        page -= 1;
        return loadGallery();
      }
      pageInfo.textContent = `Page ${reply.page} · ${reply.images.length} shown of ${reply.total}`;
      prev.disabled = reply.page <= 1;
      next.disabled = !reply.has_more;
      grid.replaceChildren(...reply.images.map(card));
    } catch (err) {
      if (mine === latest) showError(error, err);
    }
  }

  function card(image) {
    const img = el("img", { alt: image.prompt || "Generated image" });
    const details = el("dl", { class: "meta", hidden: true });
    const remove = el("button", { type: "button", class: "danger" }, "Delete");
    const info = el("button", { type: "button", class: "secondary", "aria-expanded": "false" }, "Details");
    const links = el("span", {});
    const figure = el("figure", { class: "card", "data-testid": "gallery-item", "data-id": image.id },
      el("div", { class: "frame" }, img),
      el("figcaption", {}, el("strong", {}, image.prompt), el("span", { class: "meta" },
        `${image.model_id} · ${image.created_at || ""}`)),
      el("div", { class: "actions" }, info, links, remove), details);
    imageUrl(`/api/get_image/${encodeURIComponent(image.id)}`).then((src) => {
      img.src = src;
      links.append(downloadLink(src, `${image.id}.png`));
    }).catch((err) => figure.append(el("p", { class: "error" }, err.message)));
    info.addEventListener("click", async () => {
      if (!details.hidden) {
        details.hidden = true;
        info.setAttribute("aria-expanded", "false");
        return;
      }
      try {
        const meta = await get(`/api/image/${encodeURIComponent(image.id)}/metadata`);
        const rows = { Model: meta.model_id, Prompt: meta.prompt, "Negative prompt": meta.negative_prompt || "—",
          ...Object.fromEntries(Object.entries(meta.settings).map(([k, v]) => [k.replaceAll("_", " "), v])),
          Image: meta.image_number ? `${meta.image_number} of ${meta.total_images}` : "—" };
        details.replaceChildren(...Object.entries(rows).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
        details.hidden = false;
        info.setAttribute("aria-expanded", "true");
      } catch (err) {
        showError(error, err);
      }
    });
    remove.addEventListener("click", async () => {
      if (!window.confirm("Delete this image?")) return;
      busy(remove, true, "Deleting…");
      try {
        await del(`/api/image/${encodeURIComponent(image.id)}`);
        await loadGallery();
      } catch (err) {
        showError(error, err);
        busy(remove, false, "Deleting…");
      }
    });
    return figure;
  }

  async function loadQueue() {
    try {
      const q = await get("/api/queue?detailed=true");
      const rows = { Pending: q.pending, Processing: q.processing, Completed: q.completed, Failed: q.failed,
        "Queue size": q.queue_size, "Average time": `${q.avg_processing_time_seconds ?? 0}s`,
        "Failure rate": `${q.failure_rate ?? 0}%` };
      queue.replaceChildren(...Object.entries(rows).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
    } catch (err) {
      showError(error, err);
    }
  }

  async function loadJobs() {
    clearTimeout(timer);
    try {
      const reply = await get("/v1/jobs?page_size=20");
      jobs.replaceChildren(...reply.jobs.map((job) => {
        const cancel = ACTIVE.has(job.status)
          ? el("button", { type: "button", class: "danger", "aria-label": `Cancel job ${job.task_id}` }, "Cancel")
          : "";
        if (cancel) {
          cancel.addEventListener("click", async () => {
            busy(cancel, true, "Cancelling…");
            try {
              await post(`/v1/jobs/${encodeURIComponent(job.task_id)}/cancel`);
            } catch (err) {
              showError(error, err);
            }
            loadJobs();
          });
        }
        return el("tr", { "data-testid": "job", "data-id": job.task_id, "data-status": job.status },
          el("td", {}, el("code", { title: job.task_id }, job.task_id.slice(0, 12))), el("td", {}, job.kind),
          el("td", {}, job.error ? `${job.status}: ${job.error.message}` : job.status),
          el("td", {}, el("progress", { max: "100", value: String(job.progress ?? 0),
            "aria-label": `Progress of job ${job.task_id}` }), ` ${job.progress ?? 0}% ${job.message || ""}`),
          el("td", {}, job.model_used || ""), el("td", {}, job.created_at || ""), el("td", {}, cancel));
      }));
      if (reply.jobs.some((job) => ACTIVE.has(job.status)) && !section.hidden) timer = setTimeout(loadJobs, 1500);
    } catch (err) {
      showError(error, err);
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    page = 1;
    loadGallery();
  });
  prev.addEventListener("click", () => {
    page = Math.max(1, page - 1);
    loadGallery();
  });
  next.addEventListener("click", () => {
    page += 1;
    loadGallery();
  });
  refresh.addEventListener("click", () => {
    loadJobs();
    loadQueue();
  });

  return { show: () => Promise.all([loadGallery(), loadQueue(), loadJobs()]) };
}
