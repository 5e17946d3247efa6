// The playground: header pickers, tabs, and one module per view.

import { setApiKey } from "./api.js";
import * as discriminate from "./discriminate.js";
import * as gallery from "./gallery.js";
import * as interpolate from "./interpolate.js";
import * as jobs from "./jobs.js";
import * as models from "./models.js";
import * as project from "./project.js";
import { store } from "./store.js";
import { $, h, Notice } from "./ui.js";

const VIEWS = { gallery, interpolate, discriminate, project, models, jobs };
const notice = new Notice($(".app-notice"));

function initTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const show = (id) => {
    if (!(id in VIEWS)) id = "gallery";
    for (const tab of tabs) {
      const selected = tab.getAttribute("aria-controls") === id;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
      document.getElementById(tab.getAttribute("aria-controls")).hidden = !selected;
    }
    VIEWS[id].shown?.();
  };
  for (const tab of tabs) {
    tab.addEventListener("click", () => {
      location.hash = tab.getAttribute("aria-controls");
    });
  }
  // The tabs pattern: arrow keys move between tabs, Home and End jump.
  $('[role="tablist"]').addEventListener("keydown", (event) => {
    const i = tabs.indexOf(document.activeElement);
    if (i < 0) return;
    const next = {
      ArrowRight: (i + 1) % tabs.length,
      ArrowLeft: (i - 1 + tabs.length) % tabs.length,
      Home: 0,
      End: tabs.length - 1,
    }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    tabs[next].focus();
    tabs[next].click();
  });
  window.addEventListener("hashchange", () => show(location.hash.slice(1)));
  show(location.hash.slice(1));
}

function fillVersions() {
  const select = $("#version");
  const { aliases, versions } = store.detail;
  const options = [
    ...Object.entries(aliases).map(([alias, v]) =>
      h("option", { value: alias, text: `${alias} (v${v})` }),
    ),
    h("option", {
      value: "latest",
      text: `latest (v${versions[versions.length - 1]?.version ?? "—"})`,
    }),
    ...[...versions]
      .reverse()
      .map((m) => h("option", { value: String(m.version), text: `v${m.version}` })),
  ];
  select.replaceChildren(...options);
  select.value = store.version;
}

async function initPickers() {
  const modelSelect = $("#model");
  $("#pickers").addEventListener("submit", (event) => event.preventDefault());
  $("#api-key").addEventListener("input", (event) => setApiKey(event.target.value));
  modelSelect.addEventListener("change", () => selectModel(modelSelect.value));
  $("#version").addEventListener("change", (event) => store.setVersion(event.target.value));
  store.addEventListener("change", fillVersions);

  const list = await store.loadModels();
  if (list.length === 0) {
    notice.done("This server has no models yet: publish one, or start a job from a preset.");
    return;
  }
  modelSelect.replaceChildren(...list.map((m) => h("option", { value: m.name, text: m.name })));
  const wanted = new URLSearchParams(location.search).get("model");
  await selectModel(list.some((m) => m.name === wanted) ? wanted : list[0].name);
}

async function selectModel(name) {
  notice.busy(`Loading ${name}…`);
  try {
    await store.select(name);
    $("#model").value = name;
    notice.done();
  } catch (err) {
    notice.fail(err);
  }
}

for (const [id, view] of Object.entries(VIEWS)) view.init(document.getElementById(id));
initTabs();
initPickers().catch((err) => notice.fail(err));
