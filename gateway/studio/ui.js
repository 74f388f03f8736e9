// Small DOM helpers shared by the views.
import { readFileAsDataUri } from "./api.js";

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);

export function showError(box, err) {
  box.textContent = err ? (err.message || String(err)) : "";
  box.hidden = !err;
}

export function busy(button, on, label) {
  button.disabled = on;
  button.setAttribute("aria-busy", on ? "true" : "false");
  if (label) {
    if (on) {
      button.dataset.label = button.textContent;
      button.textContent = label;
    } else if (button.dataset.label) {
      button.textContent = button.dataset.label;
    }
  }
}

export function downloadLink(href, filename, text = "Download PNG") {
  return el("a", { class: "button secondary", href, download: filename }, text);
}

export function imageFrame(src, alt, { checker = false, testid } = {}) {
  return el("figure", { class: checker ? "frame checker" : "frame", "data-testid": testid },
    el("img", { src, alt }));
}

// A drop zone with a file input and a URL field. value() gives {image} (a data URI) or {image_url}.
export function imagePicker(id, { allowUrl = true } = {}) {
  let dataUri = "";
  let fileName = "";
  const preview = el("img", { class: "picker-preview", alt: "The chosen image", hidden: true });
  const file = el("input", { type: "file", id: `${id}-file`, accept: "image/png,image/jpeg,image/webp" });
  const url = allowUrl ? el("input", { type: "url", id: `${id}-url`, placeholder: "https://…/photo.jpg" }) : null;
  const zone = el("div", { class: "dropzone", tabindex: "0", role: "button",
    "aria-label": "Drop an image here, or press Enter to choose a file" },
  el("p", {}, "Drop an image here or choose one"), preview);
  const root = el("div", { class: "picker" },
    zone,
    el("div", { class: "field" }, el("label", { for: `${id}-file` }, "Image file"), file),
    url && el("div", { class: "field" }, el("label", { for: `${id}-url` }, "…or an image URL"), url));

  async function take(chosen) {
    if (!chosen) return;
    dataUri = await readFileAsDataUri(chosen);
    fileName = chosen.name;
    preview.src = dataUri;
    preview.hidden = false;
    if (url) url.value = "";
    root.dispatchEvent(new CustomEvent("imagechange"));
  }
  file.addEventListener("change", () => take(file.files[0]));
  zone.addEventListener("click", () => file.click());
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      file.click();
    }
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    take(event.dataTransfer.files[0]);
  });
  url?.addEventListener("input", () => {
    if (url.value) {
      dataUri = "";
      preview.hidden = true;
    }
    root.dispatchEvent(new CustomEvent("imagechange"));
  });

  return {
    root,
    value() {
      if (url && url.value.trim()) return { image_url: url.value.trim() };
      if (dataUri) return { image: dataUri };
      return null;
    },
    dataUri: () => dataUri,
    src: () => (url && url.value.trim()) || dataUri,
    name: () => fileName || "image",
  };
}

export function requireImage(picker) {
  const value = picker.value();
  if (!value) throw new Error("Choose an image file, drop one, or paste a URL first.");
  return value;
}

export function sizeOf(img) {
  return new Promise((resolve) => {
    if (img.complete && img.naturalWidth) resolve([img.naturalWidth, img.naturalHeight]);
    else img.addEventListener("load", () => resolve([img.naturalWidth, img.naturalHeight]), { once: true });
  });
}

// Dollars as the API gave them, shortened for reading (the figure itself is the orchestrator's).
export function usd(value) {
  if (typeof value !== "number") return "—";
  return value >= 0.01 || value === 0 ? `$${value.toFixed(2)}` : `$${value.toPrecision(2)}`;
}
