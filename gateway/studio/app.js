// The studio shell: tabs (arrow keys move between them), the API-key dialog, and the views.
import { apiKey, onUnauthorized, setApiKey } from "./api.js";
import * as enhance from "./enhance.js";
import * as gallery from "./gallery.js";
import * as generate from "./generate.js";
import * as shotgun from "./shotgun.js";
import * as workflows from "./workflows.js";

const VIEWS = { generate, shotgun, enhance, workflows, gallery };
const mounted = {};

const dialog = document.getElementById("key-dialog");
const keyInput = document.getElementById("key-input");
const keyReason = document.getElementById("key-reason");
let pending = null;

function askForKey(reason) {
  if (pending) return pending;
  keyReason.textContent = reason || "";
  keyReason.hidden = !reason;
  keyInput.value = apiKey();
  pending = new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      pending = null;
      resolve(dialog.returnValue === "save" ? keyInput.value.trim() : "");
    }, { once: true });
  });
  dialog.showModal();
  keyInput.focus();
  return pending;
}

onUnauthorized(askForKey);
document.getElementById("key-button").addEventListener("click", async () => {
  const key = await askForKey("");
  if (key) setApiKey(key);
});

const tabs = [...document.querySelectorAll('[role="tab"]')];

function select(tab, focus = false) {
  for (const other of tabs) {
    const on = other === tab;
    other.setAttribute("aria-selected", String(on));
    other.tabIndex = on ? 0 : -1;
    document.getElementById(other.getAttribute("aria-controls")).hidden = !on;
  }
  if (focus) tab.focus();
  const name = tab.id.replace("tab-", "");
  const section = document.getElementById(`view-${name}`);
  mounted[name] ??= VIEWS[name].mount(section);
  mounted[name].show?.();
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
}

for (const tab of tabs) {
  tab.addEventListener("click", () => select(tab));
  tab.addEventListener("keydown", (event) => {
    const at = tabs.indexOf(tab);
    const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: tabs.length - 1 }[event.key];
    if (to === undefined) return;
    event.preventDefault();
    select(tabs[(to + tabs.length) % tabs.length], true);
  });
}

select(document.getElementById(`tab-${location.hash.slice(1)}`) || tabs[0]);
