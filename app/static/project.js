// Projection: a dropped image goes to POST /v1/project (multipart) for the latent whose
// image is closest; POST /v1/interpolate then walks from that latent to any seed.

import { request } from "./api.js";
import { store } from "./store.js";
import { $, dropZone, fillLabels, formatNumber, Notice, parseSeed, showConditional } from "./ui.js";

let root, notice;
let file = null; // the last image, projected again when the model, version or options change
let originalUrl = null;
let projected = null; // { latent, label } of the last answer
let frames = [];
let projectedBy = null; // the model and version the last projection was asked of

// A refresh of the repository (a job published a version) that leaves the picked model and
// version serving the same weights keeps the projection and its walk as they are.
function servedBy() {
  return `${store.name} v${store.resolve(store.version)}`;
}

export function init(section) {
  root = section;
  notice = new Notice(root);
  dropZone($("#project-drop", root), (dropped) => project(dropped[0]));
  $("#project-file", root).addEventListener("change", (event) => project(event.target.files[0]));
  const form = $("#project-form", root);
  form.addEventListener("submit", (event) => event.preventDefault());
  form.addEventListener("change", () => project(file));
  $("#walk-form", root).addEventListener("submit", (event) => {
    event.preventDefault();
    walk();
  });
  $("#walk-frame", root).addEventListener("input", showFrame);
  store.addEventListener("change", () => {
    fillLabels($("#project-label", root), store.classNames, "search");
    showConditional(root, store.conditional);
    if (servedBy() !== projectedBy) project(file);
  });
}

async function project(chosen) {
  if (!chosen || !store.name) return;
  projectedBy = servedBy();
  if (chosen !== file) {
    file = chosen;
    if (originalUrl) URL.revokeObjectURL(originalUrl);
    originalUrl = URL.createObjectURL(file);
  }
  const form = new FormData();
  form.append("model", store.name);
  form.append("version", store.version);
  form.append("resize", $("#project-resize", root).checked ? "true" : "false");
  form.append("steps", $("#project-steps", root).value);
  form.append("restarts", $("#project-restarts", root).value);
  form.append("distance", $("#project-distance", root).value);
  const label = $("#project-label", root).value;
  if (store.conditional && label !== "") form.append("labels", label);
  form.append("images", file, file.name);
  notice.busy(`Searching the latent space of ${store.name} for ${file.name}…`);
  try {
    const result = await (await request("/v1/project", { method: "POST", form })).json();
    const r = result.results[0];
    projected = { latent: r.latent, label: r.label };
    $("#project-original", root).src = originalUrl;
    $("#project-original", root).alt = `The image: ${file.name}`;
    $("#project-recon", root).src = `data:image/png;base64,${r.png}`;
    const labelText = r.label === null ? "" : `, label ${store.classNames[r.label] ?? r.label}`;
    $("#project-recon", root).alt = `Its reconstruction by ${result.model} v${result.version}`;
    $("#project-caption", root).textContent =
      `Reconstruction${labelText}: ${result.distance} distance ${formatNumber(r.distance, 4)} after ${r.steps} steps`;
    $("#walk-out", root).hidden = true;
    $("#project-out", root).hidden = false;
    notice.done(`Projected ${file.name} onto ${result.model} v${result.version}.`);
  } catch (err) {
    notice.fail(err);
  }
}

async function walk() {
  const seed = parseSeed($("#walk-seed", root).value);
  if (seed === null || projected === null) {
    notice.fail(new Error("the seed must be a whole number from 0 to 2^63 - 1"));
    return;
  }
  // The seed goes in as text and comes out as a JSON number: exact whatever its size.
  const body = JSON.stringify({
    model: store.name,
    version: store.version,
    from: { latent: projected.latent },
    to: { seed: "TO" },
    steps: Number($("#walk-steps", root).value),
    label: projected.label,
    format: "json",
  }).replace('"TO"', String(seed));
  notice.busy(`Walking to seed ${seed}…`);
  try {
    frames = (await (await request("/v1/interpolate", { method: "POST", json: body })).json())
      .frames;
    const slider = $("#walk-frame", root);
    slider.max = String(frames.length - 1);
    slider.value = "0";
    showFrame();
    $("#walk-out", root).hidden = false;
    notice.done(`${frames.length} frames from the reconstruction to seed ${seed}.`);
  } catch (err) {
    notice.fail(err);
  }
}

function showFrame() {
  const i = Number($("#walk-frame", root).value);
  const frame = frames[i];
  if (!frame) return;
  const img = $("#walk-img", root);
  img.src = `data:image/png;base64,${frame.png}`;
  img.alt = `Frame ${i + 1} of ${frames.length}, t = ${frame.t.toFixed(3)}`;
  $("#walk-t", root).textContent = `${i + 1} / ${frames.length} · t = ${frame.t.toFixed(3)}`;
}
