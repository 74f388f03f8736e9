// Background removal, the shotgun: every model at once, side by side; the person's pick is logged and the
// ranking the orchestrator then keeps is shown as it answers it.
import { get, post } from "./api.js";
import { busy, downloadLink, el, imagePicker, requireImage, showError, usd } from "./ui.js";

export function mount(section) {
  const picker = imagePicker("shotgun");
  const run = el("button", { type: "submit" }, "Remove background with every model");
  const error = el("p", { class: "error", role: "alert", hidden: true, "data-testid": "shotgun-error" });
  const summary = el("p", { "aria-live": "polite", "data-testid": "shotgun-summary" });
  const cards = el("div", { class: "grid wide", role: "radiogroup", "aria-label": "Cut-outs, one per model",
    "data-testid": "shotgun-results" });
  const category = el("input", { type: "text", id: "shotgun-category", placeholder: "e.g. portrait, product" });
  const notes = el("input", { type: "text", id: "shotgun-notes" });
  const log = el("button", { type: "submit", disabled: true }, "Log my pick");
  const pickError = el("p", { class: "error", role: "alert", hidden: true, "data-testid": "selection-error" });
  const ranking = el("div", { "aria-live": "polite", "data-testid": "selection-ranking" });
  let job = null;

  const form = el("form", { class: "panel", "aria-labelledby": "shotgun-title" },
    el("h2", { id: "shotgun-title" }, "Background removal"), picker.root,
    el("div", { class: "actions" }, run), error);
  const pickForm = el("form", { class: "panel", hidden: true, "aria-labelledby": "pick-title" },
    el("h3", { id: "pick-title" }, "Which cut-out is best?"),
    el("div", { class: "row" },
      el("div", { class: "field" }, el("label", { for: "shotgun-category" }, "Category (optional)"), category),
      el("div", { class: "field" }, el("label", { for: "shotgun-notes" }, "Notes (optional)"), notes)),
    el("div", { class: "actions" }, log), pickError, ranking);
  section.append(form, summary, cards, pickForm);

  cards.addEventListener("change", () => {
    log.disabled = !cards.querySelector("input:checked");
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(error, null);
    showError(pickError, null);
    cards.replaceChildren();
    ranking.replaceChildren();
    summary.textContent = "";
    pickForm.hidden = true;
    busy(run, true, "Running every model…");
    try {
      const reply = await post("/remove-background", { ...requireImage(picker), include_models: ["all"] });
      job = reply.job_id;
      const ok = reply.results.filter((r) => r.status === "success").length;
      summary.textContent = `${ok} of ${reply.results.length} models succeeded in ${reply.processing_time_ms} ms; `
        + `total cost ${usd(reply.total_cost_usd)}`;
      for (const result of reply.results) cards.append(card(result));
      pickForm.hidden = ok === 0;
      log.disabled = true;
    } catch (err) {
      showError(error, err);
    } finally {
      busy(run, false, "Running every model…");
    }
  });

  function card(result) {
    const name = result.model_name || result.model_id;
    const figure = el("figure", { class: "card", "data-testid": "cutout", "data-model": result.model_id,
      "data-status": result.status });
    const meta = el("figcaption", {}, el("strong", {}, name),
      el("span", { class: "meta" }, `${result.processing_time_ms} ms · ${usd(result.cost_usd)}`));
    if (result.status === "success") {
      const src = result.image_url && !result.image_base64 ? result.image_url
        : `data:image/png;base64,${result.image_base64}`;
      const id = `pick-${result.model_id}`;
      figure.append(el("div", { class: "frame checker" }, el("img", { src, alt: `Cut-out by ${name}` })), meta,
        el("div", { class: "pick" },
          el("input", { type: "radio", name: "shotgun-pick", id, value: result.model_id }),
          el("label", { for: id }, `Pick ${name}`)),
        downloadLink(src, `${result.model_id}.png`));
    } else {
      figure.append(el("div", { class: "frame failed" },
        el("p", { class: "error", "data-testid": "cutout-error" }, result.error || "This model failed")), meta);
    }
    return figure;
  }

  pickForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(pickError, null);
    const chosen = cards.querySelector("input:checked");
    if (!chosen || !job) return;
    busy(log, true, "Logging…");
    try {
      const logged = await post("/log-selection", { job_id: job, selected_model_id: chosen.value,
        image_category: category.value || undefined, notes: notes.value || undefined });
      const query = category.value ? `?image_category=${encodeURIComponent(category.value)}` : "";
      const rank = await get(`/selection-ranking${query}`);
      ranking.replaceChildren(
        el("p", { "data-testid": "selection-logged" }, `Logged (selection ${logged.selection_id}).`),
        el("p", {}, `For ${rank.image_category ? `“${rank.image_category}”` : "all categories"}, `
          + "auto now picks ", el("strong", { "data-testid": "auto-model" }, rank.auto_model || "no model yet"), "."),
        el("table", {},
          el("caption", {}, "Picks so far"),
          el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Model"), el("th", { scope: "col" }, "Picks"),
            el("th", { scope: "col" }, "Share"))),
          el("tbody", {}, rank.ranking.map((r) => el("tr", {}, el("td", {}, r.model_id), el("td", {}, r.selections),
            el("td", {}, `${(r.share * 100).toFixed(0)}%`))))));
    } catch (err) {
      showError(pickError, err);
    } finally {
      busy(log, false, "Logging…");
    }
  });

  return {};
}
