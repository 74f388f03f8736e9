// Upscale, relight and social crops: before and after, with the sizes the API reports.
import { get, imageUrl, post } from "./api.js";
import { busy, downloadLink, el, imageFrame, imagePicker, requireImage, showError, sizeOf, usd } from "./ui.js";

const TERMINAL = new Set(["completed", "failed", "cancelled", "partial"]);

function beforeAfter(beforeSrc, beforeText, afterSrc, afterText, filename) {
  return el("div", { class: "compare", "data-testid": "before-after" },
    el("figure", { class: "frame" }, el("img", { src: beforeSrc, alt: "Before" }),
      el("figcaption", { "data-testid": "before-size" }, `Before: ${beforeText}`)),
    el("figure", { class: "frame" }, el("img", { src: afterSrc, alt: "After" }),
      el("figcaption", { "data-testid": "after-size" }, `After: ${afterText}`, el("br"),
        downloadLink(afterSrc, filename))));
}

export function mount(section) {
  const picker = imagePicker("enhance");
  const error = el("p", { class: "error", role: "alert", hidden: true, "data-testid": "enhance-error" });
  const out = el("div", { "aria-live": "polite", "data-testid": "enhance-output" });

  const scale = el("select", { id: "upscale-factor" }, el("option", { value: "2" }, "2×"),
    el("option", { value: "4" }, "4×"));
  const upscale = el("button", { type: "button" }, "Upscale");
  const style = el("input", { id: "relight-style", type: "text", value: "professional" });
  const relight = el("button", { type: "button" }, "Relight");
  const platform = el("input", { id: "social-platform", type: "text", list: "social-platforms", value: "instagram" });
  const formatsButton = el("button", { type: "button", class: "secondary" }, "Show formats");
  const formatSelect = el("select", { id: "social-format" });
  const zones = el("input", { id: "social-zones", type: "checkbox", checked: true });
  const crop = el("button", { type: "button", disabled: true }, "Crop for this format");
  const formatList = el("div", { "data-testid": "social-formats" });
  let formats = [];

  section.append(
    el("div", { class: "panel" }, el("h2", {}, "Upscale, relight, social crops"), picker.root, error),
    el("div", { class: "tools" },
      el("div", { class: "panel" }, el("h3", {}, "Upscale"),
        el("div", { class: "field" }, el("label", { for: "upscale-factor" }, "Factor"), scale),
        el("div", { class: "actions" }, upscale)),
      el("div", { class: "panel" }, el("h3", {}, "Relight"),
        el("div", { class: "field" }, el("label", { for: "relight-style" }, "Lighting style"), style),
        el("div", { class: "actions" }, relight)),
      el("div", { class: "panel" }, el("h3", {}, "Social crops"),
        el("div", { class: "field" }, el("label", { for: "social-platform" }, "Platform"), platform,
          el("datalist", { id: "social-platforms" }, ["instagram", "facebook", "linkedin", "twitter", "pinterest",
            "youtube", "tiktok"].map((p) => el("option", { value: p })))),
        el("div", { class: "actions" }, formatsButton),
        el("div", { class: "field" }, el("label", { for: "social-format" }, "Format"), formatSelect),
        el("div", { class: "check" }, zones, el("label", { for: "social-zones" }, "Show safe zones")),
        el("div", { class: "actions" }, crop))),
    formatList, out);

  async function task(button, label, work) {
    showError(error, null);
    busy(button, true, label);
    try {
      await work();
    } catch (err) {
      showError(error, err);
    } finally {
      busy(button, false, label);
    }
  }

  upscale.addEventListener("click", () => task(upscale, "Upscaling…", async () => {
    const reply = await post("/upscale", { ...requireImage(picker), scale_factor: Number(scale.value) });
    const i = reply.input_dimensions;
    const o = reply.output_dimensions;
    out.replaceChildren(beforeAfter(picker.src(), `${i.width} × ${i.height}`,
      `data:image/png;base64,${reply.image_base64}`, `${o.width} × ${o.height} (${reply.scale_factor}×, `
        + `${reply.processing_time_ms} ms, ${usd(reply.cost_usd)})`, `upscaled-${picker.name()}.png`));
  }));

  relight.addEventListener("click", () => task(relight, "Relighting…", async () => {
    const image = requireImage(picker);
    const submitted = await post("/v1/post-process/relight", { ...image, lighting_style: style.value });
    out.replaceChildren(el("p", {}, `Task ${submitted.task_id}: ${submitted.status}…`));
    let job = submitted;
    while (!TERMINAL.has(job.status)) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      job = await get(`/v1/jobs/${encodeURIComponent(submitted.task_id)}`);
    }
    if (job.status !== "completed") throw new Error(job.error?.message || `Relight ${job.status}`);
    const after = await imageUrl(job.image_url);
    const afterImg = el("img", { src: after });
    const beforeImg = el("img", { src: picker.src() });
    const [[bw, bh], [aw, ah]] = await Promise.all([sizeOf(beforeImg), sizeOf(afterImg)]);
    out.replaceChildren(beforeAfter(picker.src(), `${bw} × ${bh}`, after,
      `${aw} × ${ah} (${job.processing_time}s)`, `relit-${picker.name()}.png`));
  }));

  formatsButton.addEventListener("click", () => task(formatsButton, "Loading…", async () => {
    const reply = await get(`/api/image-studio/social/platforms/${encodeURIComponent(platform.value.trim())}/formats`);
    formats = reply.formats;
    formatSelect.replaceChildren(...formats.map((f, n) => el("option", { value: String(n) },
      `${f.name} — ${f.width} × ${f.height} (${f.ratio})`)));
    crop.disabled = formats.length === 0;
    formatList.replaceChildren(el("p", {}, `${formats.length} formats for ${platform.value}; safe zones are the `
      + "part of the frame no platform interface covers."));
  }));

  crop.addEventListener("click", () => task(crop, "Cropping…", async () => {
    const dataUri = picker.dataUri();
    if (!dataUri) throw new Error("Social crops need an uploaded image file (not a URL).");
    const format = formats[Number(formatSelect.value)];
    const name = platform.value.trim();
    const reply = await post("/api/image-studio/social/optimize", { image_base64: dataUri, platforms: [name],
      format_names: { [name]: format.name } });
    const result = reply.results[0];
    if (!result) throw new Error("The API returned no crop for this format.");
    const frame = imageFrame(result.image_base64, `${format.name} crop`, { testid: "social-crop" });
    frame.classList.add("zoned");
    if (zones.checked) {
      const z = format.safe_zone;
      frame.append(el("div", { class: "safe-zone", "data-testid": "safe-zone", "aria-hidden": "true",
        style: `top:${z.top * 100}%;bottom:${z.bottom * 100}%;left:${z.left * 100}%;right:${z.right * 100}%` }));
    }
    const beforeImg = el("img", { src: dataUri });
    const [bw, bh] = await sizeOf(beforeImg);
    out.replaceChildren(el("div", { class: "compare" },
      el("figure", { class: "frame" }, beforeImg, el("figcaption", {}, `Before: ${bw} × ${bh}`)),
      el("div", {}, frame, el("p", { "data-testid": "after-size" },
        `${result.platform} ${result.format}: ${result.width} × ${result.height}`),
      downloadLink(result.image_base64, `${name}-${format.name}.png`))));
  }));

  return {};
}
