// Interpolation: POST /v1/interpolate twice, as JSON frames for the slider and as an
// animated GIF or WebP to keep.

import { request } from "./api.js";
import { store } from "./store.js";
import { $, fillLabels, Notice, parseSeed, showConditional } from "./ui.js";

let root, notice;
let frames = [];
let animUrl = null;

export function init(section) {
  root = section;
  notice = new Notice(root);
  $("#interp-form", root).addEventListener("submit", (event) => {
    event.preventDefault();
    run();
  });
  $("#frame", root).addEventListener("input", showFrame);
  store.addEventListener("change", () => {
    fillLabels($("#interp-label", root), store.classNames);
    showConditional(root, store.conditional);
  });
  store.addEventListener("endpoint", ({ detail }) => {
    $(detail.which === "from" ? "#from-seed" : "#to-seed", root).value = detail.seed;
    if (detail.label !== null) $("#interp-label", root).value = String(detail.label);
  });
}

async function run() {
  const from = parseSeed($("#from-seed", root).value);
  const to = parseSeed($("#to-seed", root).value);
  if (from === null || to === null) {
    notice.fail(new Error("both seeds must be whole numbers from 0 to 2^63 - 1"));
    return;
  }
  const method = root.querySelector('input[name="method"]:checked').value;
  const format = $("#anim-format", root).value;
  // Seeds go in as text and come out as JSON numbers: exact whatever their size.
  const body = (fmt) =>
    JSON.stringify({
      model: store.name,
      version: store.version,
      from: { seed: "FROM" },
      to: { seed: "TO" },
      steps: Number($("#steps", root).value),
      method,
      label: store.conditional ? Number($("#interp-label", root).value) : null,
      format: fmt,
      duration_ms: Number($("#frame-ms", root).value),
    })
      .replace('"FROM"', String(from))
      .replace('"TO"', String(to));
  notice.busy("Walking through latent space…");
  try {
    const post = (fmt) => request("/v1/interpolate", { method: "POST", json: body(fmt) });
    const [json, anim] = await Promise.all([post("json"), post(format)]);
    const result = await json.json();
    frames = result.frames;
    const slider = $("#frame", root);
    slider.max = String(frames.length - 1);
    slider.value = "0";
    showFrame();
    if (animUrl) URL.revokeObjectURL(animUrl);
    animUrl = URL.createObjectURL(await anim.blob());
    const name = `${result.model}-v${result.version}-${from}-to-${to}-${method}.${format}`;
    const animImg = $("#anim-img", root);
    animImg.src = animUrl;
    animImg.alt = `Animation: ${frames.length} frames from seed ${from} to seed ${to} (${method})`;
    const link = $("#anim-link", root);
    link.href = animUrl;
    link.download = name;
    link.textContent = `Download ${name}`;
    $("#interp-out", root).hidden = false;
    notice.done(
      `${frames.length} frames from seed ${from} to ${to} by ${method}, ${result.model} v${result.version}.`,
    );
  } catch (err) {
    notice.fail(err);
  }
}

function showFrame() {
  const i = Number($("#frame", root).value);
  const frame = frames[i];
  if (!frame) return;
  const img = $("#frame-img", root);
  img.src = `data:image/png;base64,${frame.png}`;
  img.alt = `Frame ${i + 1} of ${frames.length}, t = ${frame.t.toFixed(3)}`;
  $("#frame-t", root).textContent = `${i + 1} / ${frames.length} · t = ${frame.t.toFixed(3)}`;
}
