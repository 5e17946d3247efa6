// Jobs: start a retraining job (POST /v1/jobs, admin), follow it live through its server-sent
// events (progress bar, loss curves, latest samples grid), cancel it (DELETE, admin). Exports
// (POST /v1/exports) are jobs too: watched here by their images and shards.

import { ApiError, getJson, request } from "./api.js";
import { store } from "./store.js";
import { $, fillSelect, formatNumber, h, Notice } from "./ui.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const SVG = "http://www.w3.org/2000/svg";

let root, notice;
let source = null; // the EventSource of the job being watched
let job = null; // its latest record
let points = []; // {step, loss_d, loss_g}
let maxSteps = 0;
let frame = 0;

export function init(section) {
  root = section;
  notice = new Notice(root);
  loadPresets();
  $("#job-form", root).addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  $("#job-cancel", root).addEventListener("click", cancel);
  store.addEventListener("change", () => {
    const m = store.manifest;
    $("#jobs-title", root).textContent = `Retrain ${store.name}`;
    if (m?.training?.preset) $("#preset", root).value = m.training.preset;
    const versions = [...store.detail.versions].reverse();
    fillSelect($("#base-version", root), [
      h("option", { value: "", text: "nothing: from scratch" }),
      ...versions.map((v) => h("option", { value: String(v.version), text: `v${v.version}` })),
    ]);
  });
}

// The select starts with the default preset; the server's list (GET /v1/presets) replaces it.
async function loadPresets() {
  const select = $("#preset", root);
  try {
    const presets = await getJson("/v1/presets");
    const wanted = store.manifest?.training?.preset || select.value;
    fillSelect(
      select,
      presets.map((p) =>
        h("option", {
          value: p.name,
          text: `${p.name} (${p.conditional ? "conditional " : ""}${p.architecture})`,
        }),
      ),
    );
    if (presets.some((p) => p.name === wanted)) select.value = wanted;
  } catch (err) {
    notice.fail(err);
  }
}

export function shown() {
  refreshList();
}

async function submit() {
  let overrides;
  try {
    overrides = JSON.parse($("#overrides", root).value || "{}");
    if (typeof overrides !== "object" || Array.isArray(overrides) || overrides === null)
      throw new Error("not an object");
  } catch (err) {
    notice.fail(
      new ApiError(0, "invalid overrides", `the overrides must be a JSON object (${err.message})`),
    );
    return;
  }
  const base = $("#base-version", root).value;
  const body = {
    model: store.name,
    preset: $("#preset", root).value,
    overrides: { max_steps: Number($("#job-steps", root).value), ...overrides },
    promote: $("#promote", root).value,
    base_version: base ? Number(base) : null,
  };
  notice.busy("Submitting the job…");
  try {
    const created = await (
      await request("/v1/jobs", { method: "POST", json: body, admin: true })
    ).json();
    notice.done(`Job ${created.id} is queued.`);
    watch(created);
    refreshList();
  } catch (err) {
    notice.fail(err);
  }
}

async function cancel() {
  if (!job) return;
  notice.busy(`Cancelling job ${job.id}…`);
  try {
    const record = await (
      await request(`/v1/jobs/${job.id}`, { method: "DELETE", admin: true })
    ).json();
    notice.done(
      record.state === "cancelled"
        ? `Job ${job.id} is cancelled.`
        : `Job ${job.id} will stop at the next step.`,
    );
    update(record);
  } catch (err) {
    notice.fail(err);
  }
}

function watch(record) {
  source?.close();
  points = [];
  maxSteps = record.progress.max_steps;
  $("#job", root).hidden = false;
  $("#job-id", root).textContent = record.id;
  $("#job-log", root).href = `/v1/jobs/${record.id}/log`;
  const samples = $("#job-samples", root);
  samples.hidden = true;
  samples.removeAttribute("src");
  $("#job-samples-caption", root).textContent = "Samples appear at each evaluation.";
  $("#job-outcome", root).textContent = "";
  update(record);
  drawChart();

  source = new EventSource(`/v1/jobs/${record.id}/events`);
  // The stream replays the run from its first event on every (re)connection.
  source.addEventListener("open", () => {
    points = [];
  });
  source.addEventListener("start", (e) => {
    maxSteps = JSON.parse(e.data).max_steps;
  });
  source.addEventListener("progress", (e) => {
    const p = JSON.parse(e.data);
    if (record.kind === "export") return showProgress(p); // images and shards, no losses
    points.push({ step: p.step, loss_d: p.loss_d, loss_g: p.loss_g });
    maxSteps = p.max_steps;
    showProgress(p);
    scheduleChart();
  });
  source.addEventListener("evaluation", (e) => {
    showSamples(record.id, JSON.parse(e.data).step);
    refreshList();
  });
  source.addEventListener("state", (e) => {
    update(JSON.parse(e.data));
    if (TERMINAL.has(job.state)) {
      source.close(); // the server ends the stream here; EventSource would reconnect
      finished();
    } else {
      notice.done(`Job ${job.id} is ${job.state}.`);
      refreshList();
    }
  });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) notice.fail(new Error("the event stream closed"));
  });
}

function update(record) {
  job = record;
  const badge = $("#job-state", root);
  badge.textContent = record.state;
  badge.dataset.state = record.state;
  $("#job-cancel", root).disabled = TERMINAL.has(record.state);
  showProgress({ ...record.progress, max_steps: record.progress.max_steps || maxSteps });
}

// An export (kind "export", POST /v1/exports) counts images and shards where training counts steps.
function counted(kind, p) {
  if (kind !== "export") {
    return { done: p.step, total: p.max_steps, text: `step ${p.step} of ${p.max_steps}` };
  }
  const [done, total] = [p.images ?? 0, p.images_total ?? 0];
  const shards = `${p.shards ?? 0} of ${p.shards_total ?? 0} shards`;
  return { done, total, text: `${done} of ${total} images, ${shards}` };
}

function showProgress(p) {
  const bar = $("#job-progress", root);
  const { done, total, text } = counted(job?.kind, p);
  bar.max = Math.max(1, total);
  bar.value = done;
  const running = job?.state === "running";
  const eta = running && typeof p.eta_s === "number" ? ` · about ${duration(p.eta_s)} left` : "";
  const rate =
    running && typeof p.images_per_s === "number"
      ? ` · ${Math.round(p.images_per_s)} images/s`
      : "";
  $("#job-progress-text", root).textContent = `${text}${rate}${eta}`;
}

function duration(seconds) {
  if (seconds < 90) return `${Math.ceil(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function showSamples(id, step) {
  const img = $("#job-samples", root);
  img.src = `/v1/jobs/${id}/samples.png?step=${step}`; // a new URL per evaluation: no stale cache
  img.alt = `Samples of job ${id} at step ${step}`;
  img.hidden = false;
  $("#job-samples-caption", root).textContent = `Samples at step ${step}`;
}

function finished() {
  const j = job;
  $("#job-outcome", root).textContent = outcome(j);
  notice.done(`Job ${j.id} ${j.state}.`);
  refreshList();
  if (j.published_version) store.refresh().catch((err) => notice.fail(err));
}

function outcome(j) {
  if (j.kind === "export") {
    const kept = "Finished shards are kept: resume it to go on.";
    return {
      succeeded: `Exported ${j.progress.images} images in ${j.progress.shards} shards: /v1/exports/${j.id}/manifest.json.`,
      failed: `Failed: ${j.error || "see the log"}. ${kept}`,
      cancelled: `Cancelled. ${kept}`,
    }[j.state];
  }
  return {
    succeeded: j.published_version
      ? `Published ${j.model} v${j.published_version}; ${j.promoted ? "promoted to production" : "not promoted"}` +
        (j.promotion_reason ? ` (${j.promotion_reason}).` : ".")
      : "Finished.",
    failed: `Failed: ${j.error || "see the training log"}.`,
    cancelled: "Cancelled: nothing was published.",
  }[j.state];
}

function progressCell(j) {
  const { done, total } = counted(j.kind, j.progress);
  return j.kind === "export" ? `${done} / ${total} images` : `${done} / ${total}`;
}

async function refreshList() {
  try {
    const { jobs } = await getJson("/v1/jobs?limit=10");
    const rows = jobs.map((j) => {
      const button = h("button", { type: "button", text: j.id === job?.id ? "Watching" : "Watch" });
      button.addEventListener("click", () => watch(j));
      return h(
        "tr",
        {},
        h("td", {}, h("code", { text: j.id })),
        h("td", { text: j.model }),
        h("td", {}, h("span", { class: "badge", "data-state": j.state, text: j.state })),
        h("td", { class: "num", text: progressCell(j) }),
        h("td", { text: new Date(j.created * 1000).toLocaleString() }),
        h("td", {}, button),
      );
    });
    const empty = h("tr", {}, h("td", { colspan: "6", class: "hint", text: "No jobs yet." }));
    $("#job-list tbody", root).replaceChildren(...(rows.length ? rows : [empty]));
  } catch (err) {
    notice.fail(err);
  }
}

// Redraw at most once a frame, however fast events arrive.
function scheduleChart() {
  if (!frame)
    frame = requestAnimationFrame(() => {
      frame = 0;
      drawChart();
    });
}

function drawChart() {
  const svg = $("#loss-chart", root);
  const [width, height, left, bottom, top] = [480, 200, 44, 22, 8];
  const el = (tag, attrs, text) => {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const values = points.flatMap((p) => [p.loss_d, p.loss_g]).filter(Number.isFinite);
  let lo = Math.min(...values, 0);
  let hi = Math.max(...values, 1);
  if (hi - lo < 1e-6) hi = lo + 1;
  // x spans the steps run so far: the progress bar shows how far that is from the end.
  const first = points.length ? points[0].step : 0;
  const lastStep = points.length ? Math.max(points[points.length - 1].step, first + 1) : maxSteps;
  const x = (step) => left + ((width - left - 8) * (step - first)) / (lastStep - first || 1);
  const y = (v) => top + (height - top - bottom) * (1 - (v - lo) / (hi - lo));
  const children = [
    el("line", { class: "axis", x1: left, y1: y(lo), x2: width - 8, y2: y(lo) }),
    el("line", { class: "axis", x1: left, y1: top, x2: left, y2: y(lo) }),
    el(
      "text",
      { class: "tick", x: left - 4, y: y(hi) + 4, "text-anchor": "end" },
      formatNumber(hi, 2),
    ),
    el("text", { class: "tick", x: left - 4, y: y(lo), "text-anchor": "end" }, formatNumber(lo, 2)),
    el("text", { class: "tick", x: left, y: height - 4 }, `step ${first}`),
    el(
      "text",
      { class: "tick", x: width - 8, y: height - 4, "text-anchor": "end" },
      `step ${lastStep}`,
    ),
  ];
  for (const [key, cls] of [
    ["loss_d", "line-d"],
    ["loss_g", "line-g"],
  ]) {
    const pts = points
      .filter((p) => Number.isFinite(p[key]))
      .map((p) => `${x(p.step).toFixed(1)},${y(p[key]).toFixed(1)}`);
    if (pts.length) children.push(el("polyline", { class: `line ${cls}`, points: pts.join(" ") }));
  }
  const last = points[points.length - 1];
  svg.setAttribute(
    "aria-label",
    last
      ? `Losses up to step ${last.step}: D ${formatNumber(last.loss_d)}, G ${formatNumber(last.loss_g)}`
      : "No losses yet",
  );
  svg.replaceChildren(...children);
}
