// Gallery: a grid from GET /v1/sample.png. Image i of a request with seed s has seed s + i
// (core/latent.py), so any image can be picked out of the grid and reproduced alone.

import { query, request } from "./api.js";
import { store } from "./store.js";
import { $, fillLabels, h, Notice, parseSeed, randomSeed, showConditional } from "./ui.js";

const PAD = 2; // core/imaging.py grid(): pixels around every tile, borders included

let root, notice, img, cursor;
let shown = null; // what the grid on screen is: {model, version, seed, n, cols, labels, truncation}
let cursorIndex = 0;
let drawn = ""; // the query of the grid on screen (or on its way)
let controller = null;
let objectUrl = null;
let timer = 0;

export function init(section) {
  root = section;
  notice = new Notice(root);
  img = $("#grid-img", root);
  cursor = $(".cursor", root);
  const form = $("#gallery-form", root);
  form.addEventListener("submit", (event) => event.preventDefault());
  form.addEventListener("change", () => draw());
  $("#seed", root).addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(draw, 300); // typing a seed: draw once it pauses
  });
  for (const button of root.querySelectorAll("[data-step]")) {
    button.addEventListener("click", () => stepSeed(Number(button.dataset.step)));
  }
  $("#seed-random", root).addEventListener("click", () => {
    $("#seed", root).value = String(randomSeed());
    draw();
  });
  img.addEventListener("click", (event) => pick(cellAt(event)));
  $("#grid-wrap", root).addEventListener("keydown", onGridKey);
  $("#pick-copy", root).addEventListener("click", copyCurl);
  $("#pick-from", root).addEventListener("click", () => sendEndpoint("from"));
  $("#pick-to", root).addEventListener("click", () => sendEndpoint("to"));
  store.addEventListener("change", () => {
    fillLabels($("#gallery-label", root), store.classNames, "seed mod classes");
    showConditional(root, store.conditional);
    draw(true); // an alias may have moved: the same query may now draw another version
  });
}

function stepSeed(direction) {
  const seed = parseSeed($("#seed", root).value) ?? 0n;
  const n = BigInt(gridCols() ** 2);
  const next = seed + BigInt(direction) * n;
  $("#seed", root).value = String(next < 0n ? 0n : next);
  draw();
}

function gridCols() {
  return Number($("#grid", root).value);
}

async function draw(force = false) {
  if (!store.name) return;
  clearTimeout(timer);
  const seed = parseSeed($("#seed", root).value);
  if (seed === null) {
    notice.fail(new Error("the seed must be a whole number from 0 to 2^63 - 1"));
    return;
  }
  const cols = gridCols();
  const want = {
    model: store.name,
    version: store.version,
    seed: String(seed),
    n: cols * cols,
    cols,
    label: store.conditional ? $("#gallery-label", root).value : "",
    truncation: $("#truncation", root).value,
  };
  const q = query(want);
  if (q === drawn && !force) return; // a change event that changed nothing (a blur)
  drawn = q;
  controller?.abort();
  controller = new AbortController();
  notice.busy("Drawing…");
  try {
    const response = await request(`/v1/sample.png?${q}`, { signal: controller.signal });
    const blob = await response.blob();
    const labels = response.headers.get("x-labels");
    shown = {
      ...want,
      seed,
      version: Number(response.headers.get("x-model-version")),
      labels: labels ? labels.split(",").map(Number) : null,
    };
    if (objectUrl) URL.revokeObjectURL(objectUrl);
    objectUrl = URL.createObjectURL(blob);
    img.src = objectUrl;
    const last = seed + BigInt(want.n - 1);
    const range = want.n === 1 ? `seed ${seed}` : `seeds ${seed} to ${last}`;
    img.alt = `${want.n} ${want.n === 1 ? "sample" : "samples"} from ${shown.model} v${shown.version}, ${range}`;
    $("#grid-caption", root).textContent =
      `${shown.model} v${shown.version} · ${range}` +
      (want.truncation ? ` · truncation ${want.truncation}` : "");
    cursorIndex = Math.min(cursorIndex, want.n - 1);
    cursor.hidden = true;
    notice.done(`Drew ${range} from ${shown.model} v${shown.version}.`);
  } catch (err) {
    if (err.name === "AbortError") return;
    drawn = ""; // the same request may be tried again
    notice.fail(err);
  }
}

// Which tile a click landed on: the PNG is cols tiles of (size + PAD) plus a PAD border;
// a single image has no border at all.
function cellAt(event) {
  if (!shown || shown.n === 1) return 0;
  const rect = img.getBoundingClientRect();
  const scale = img.naturalWidth / rect.width;
  const tile = (img.naturalWidth - PAD) / shown.cols;
  const clamp = (v) => Math.max(0, Math.min(shown.cols - 1, Math.floor(v)));
  const col = clamp(((event.clientX - rect.left) * scale - PAD / 2) / tile);
  const row = clamp(((event.clientY - rect.top) * scale - PAD / 2) / tile);
  return row * shown.cols + col;
}

function onGridKey(event) {
  if (!shown) return;
  const { cols, n } = shown;
  const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols };
  if (event.key in moves) {
    event.preventDefault();
    const next = cursorIndex + (cursor.hidden ? 0 : moves[event.key]);
    cursorIndex = Math.max(0, Math.min(n - 1, next));
    placeCursor(cursorIndex);
    notice.done(`Image ${cursorIndex + 1} of ${n}: seed ${shown.seed + BigInt(cursorIndex)}`);
  } else if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    pick(cursorIndex);
  }
}

// The focus ring of one tile, in percentages of the grid so it follows any zoom.
function placeCursor(i) {
  const { cols, n } = shown;
  const rows = Math.ceil(n / cols);
  if (n === 1) {
    Object.assign(cursor.style, { left: "0", top: "0", width: "100%", height: "100%" });
  } else {
    const tile = (img.naturalWidth - PAD) / cols;
    const size = img.naturalWidth;
    const height = img.naturalHeight || size;
    Object.assign(cursor.style, {
      left: `${((PAD / 2 + (i % cols) * tile) / size) * 100}%`,
      top: `${((PAD / 2 + Math.floor(i / cols) * tile) / height) * 100}%`,
      width: `${(tile / size) * 100}%`,
      height: `${(tile / height) * 100}%`,
    });
  }
  cursor.hidden = rows < 1;
}

function pick(i) {
  if (!shown || i >= shown.n) return;
  cursorIndex = i;
  placeCursor(i);
  const seed = shown.seed + BigInt(i);
  const label = shown.labels ? shown.labels[i] : null;
  const one = {
    model: shown.model,
    version: shown.version,
    seed: String(seed),
    label,
    truncation: shown.truncation,
  };
  const url = `/v1/sample.png?${query(one)}`;
  const body = [
    `"model": ${JSON.stringify(shown.model)}`,
    `"version": ${shown.version}`,
    `"seed": ${seed}`, // a BigInt: written out by hand, JSON.stringify refuses it
    label === null ? null : `"labels": ${label}`,
    shown.truncation ? `"truncation": ${Number(shown.truncation)}` : null,
  ]
    .filter(Boolean)
    .join(", ");
  const curl = [
    `curl -s ${location.origin}/v1/sample`,
    "  -H 'content-type: application/json'",
    `  -d '{${body}}'`,
    `  -o seed-${seed}.png`,
  ].join(" \\\n");

  $("#pick-title", root).textContent = `Seed ${seed}` + (label === null ? "" : `, label ${label}`);
  $("#pick-hint", root).hidden = true;
  $("#pick-body", root).hidden = false;
  const pickImg = $("#pick-img", root);
  pickImg.src = url;
  pickImg.alt = `The image of seed ${seed}` + (label === null ? "" : ` with label ${label}`);
  const facts = [
    ["Model", `${shown.model} v${shown.version}`],
    ["Seed", `${seed} (image ${i + 1} of the grid: ${shown.seed} + ${i})`],
    label === null ? null : ["Label", className(label)],
    ["Truncation", shown.truncation || "off"],
  ].filter(Boolean);
  $("#pick-facts", root).replaceChildren(
    ...facts.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })]),
  );
  $("#pick-link", root).href = url;
  $("#pick-curl", root).textContent = curl;
  root.dataset.pickSeed = String(seed);
  root.dataset.pickLabel = label === null ? "" : String(label);
  notice.done(`Picked seed ${seed}${label === null ? "" : `, label ${label}`}.`);
}

function className(label) {
  const name = store.classNames[label];
  return name === undefined || name === String(label) ? String(label) : `${label} (${name})`;
}

async function copyCurl() {
  try {
    await navigator.clipboard.writeText($("#pick-curl", root).textContent);
    notice.done("The curl command is on the clipboard.");
  } catch {
    notice.fail(new Error("the browser refused the clipboard: select the command and copy it"));
  }
}

function sendEndpoint(which) {
  const seed = root.dataset.pickSeed;
  const label = root.dataset.pickLabel;
  store.pickEndpoint(which, seed, label === "" ? null : Number(label));
  notice.done(`Seed ${seed} is the interpolation's ${which === "from" ? "start" : "end"}.`);
}
