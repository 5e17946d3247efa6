// Models: every version of the picked model with its metrics and samples grid; promote or
// roll back by pointing an alias (PUT /v1/models/{name}/aliases/{alias}, admin).

import { request } from "./api.js";
import { store } from "./store.js";
import { $, fillSelect, formatNumber, h, Notice } from "./ui.js";

let root, notice;

export function init(section) {
  root = section;
  notice = new Notice(root);
  $("#alias-form", root).addEventListener("submit", (event) => {
    event.preventDefault();
    pointAlias($("#alias-name", root).value.trim(), Number($("#alias-version", root).value));
  });
  store.addEventListener("change", render);
}

async function pointAlias(alias, version) {
  const name = store.name;
  const before = store.detail.aliases[alias];
  notice.busy(`Pointing ${alias} at v${version}…`);
  try {
    await request(`/v1/models/${encodeURIComponent(name)}/aliases/${encodeURIComponent(alias)}`, {
      method: "PUT",
      json: { version },
      admin: true,
    });
    await store.refresh();
    const was = before === undefined ? "new alias" : `was v${before}`;
    notice.done(`${name}: ${alias} → v${version} (${was}).`);
  } catch (err) {
    notice.fail(err);
  }
}

function render() {
  const { detail } = store;
  if (!detail) return;
  $("#models-title", root).textContent = `${detail.name}: versions`;
  const versions = [...detail.versions].reverse();
  fillSelect(
    $("#alias-version", root),
    versions.map((m) => h("option", { value: String(m.version), text: `v${m.version}` })),
  );
  const production = detail.aliases.production;
  $("#versions", root).replaceChildren(...versions.map((m) => card(m, detail, production)));
}

function aliasesOf(detail, version) {
  return Object.entries(detail.aliases)
    .filter(([, v]) => v === version)
    .map(([a]) => a);
}

// "14000 steps (mlp-hinge), step 11000 kept" when the run published its best evaluation.
function trained(training) {
  if (!training?.steps) return "—";
  const kept = training.selected ? `, step ${training.selected.step} kept` : "";
  return `${training.steps} steps (${training.preset ?? "custom"})${kept}`;
}

const percent = (x) => (typeof x === "number" ? `${(x * 100).toFixed(1)}%` : "—");

// metrics.usefulness (training/usefulness.py): CAS beside its real-data bar, NAS as its two
// accuracies, PRDC as pairs. An unconditional model has no CAS or NAS.
function usefulness(u) {
  const prdc = u?.prdc;
  const pair = (a, b) => (prdc ? `${formatNumber(prdc[a], 3)} / ${formatNumber(prdc[b], 3)}` : "—");
  return [
    ["CAS ↑", u?.cas === undefined ? "—" : `${percent(u.cas)} (real ${percent(u.cas_real)})`],
    ["NAS ↑", u?.nas ? `${percent(u.nas.real_only)} → ${percent(u.nas.with_synthetic)}` : "—"],
    ["Precision / recall ↑", pair("precision", "recall")],
    ["Density → 1 / coverage ↑", pair("density", "coverage")],
  ];
}

function card(m, detail, production) {
  const generated = m.metrics?.generated || {};
  const coverage = generated.mode_coverage;
  const facts = [
    ["Created", m.created ? new Date(m.created).toLocaleString() : "—"],
    ["Architecture", `${m.architecture}${m.num_classes ? `, ${m.num_classes} classes` : ""}`],
    ["Trained", trained(m.training)],
    ["Parent", m.parent_version ? `v${m.parent_version}` : "—"],
    ["FID ↓", formatNumber(generated.fid, 2)],
    [
      "Classes covered",
      coverage ? `${coverage.classes_covered} / ${coverage.histogram?.length ?? "?"}` : "—",
    ],
    ["Label accuracy", percent(generated.label_accuracy)],
    ["Parzen log-lik. ↑", formatNumber(generated.parzen?.mean, 0)],
    ...usefulness(m.metrics?.usefulness),
  ];
  const badges = aliasesOf(detail, m.version).map((a) => h("span", { class: "badge", text: a }));
  if (detail.serving_version === m.version)
    badges.push(h("span", { class: "badge live", text: "serving" }));
  const isProduction = production === m.version;
  const verb = production !== undefined && m.version < production ? "Roll back to" : "Promote";
  const button = h("button", {
    type: "button",
    class: "primary",
    text: isProduction ? "In production" : `${verb} v${m.version}`,
    disabled: isProduction,
  });
  button.addEventListener("click", () => pointAlias("production", m.version));
  const src = `/v1/models/${encodeURIComponent(detail.name)}/versions/${m.version}/samples.png`;
  return h(
    "article",
    { class: "card version", "aria-labelledby": `version-${m.version}` },
    h("h3", { id: `version-${m.version}` }, `v${m.version} `, ...badges),
    h("img", {
      class: "frame",
      src,
      loading: "lazy",
      alt: `Samples grid of ${detail.name} v${m.version}, made when it was published`,
    }),
    h(
      "dl",
      { class: "facts" },
      ...facts.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })]),
    ),
    button,
  );
}
