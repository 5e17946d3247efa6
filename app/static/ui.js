// Small DOM helpers shared by the views.

import { ApiError } from "./api.js";

export const $ = (selector, root = document) => root.querySelector(selector);

// h("td", { class: "num", text: "0.71" }, child...): an element built node by node, never
// parsed from a string, so nothing the server or a file name says can become markup.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") el.textContent = value;
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  el.append(...children.filter((c) => c !== null && c !== undefined));
  return el;
}

// One status line (aria-live) and one problem box (role=alert) per view.
export class Notice {
  constructor(root) {
    this.status = $(".status", root);
    this.problem = $(".problem", root);
  }

  busy(text) {
    this.problem.hidden = true;
    this.status.textContent = text;
    this.status.classList.add("busy");
  }

  done(text = "") {
    this.problem.hidden = true;
    this.status.textContent = text;
    this.status.classList.remove("busy");
  }

  fail(err) {
    this.status.classList.remove("busy");
    this.status.textContent = "";
    const title = err instanceof ApiError ? err.title : "error";
    const detail = err instanceof ApiError ? err.detail : String(err.message || err);
    const code = err instanceof ApiError && err.status ? ` (${err.status})` : "";
    this.problem.replaceChildren(
      h("strong", { class: "problem-title", text: title + code }),
      h("span", { class: "problem-detail", text: detail }),
    );
    this.problem.hidden = false;
  }
}

// New options for a <select>, keeping its choice when it is still one of them.
export function fillSelect(select, options) {
  const keep = select.value;
  select.replaceChildren(...options);
  if (options.some((o) => o.value === keep)) select.value = keep;
}

// The options of a label <select>: the model's class names, with an optional first entry.
export function fillLabels(select, classNames, first = null) {
  const options = classNames.map((name, i) => h("option", { value: String(i), text: name }));
  if (first) options.unshift(h("option", { value: "", text: first }));
  fillSelect(select, options);
}

// Conditional-only controls are shown for conditional models alone.
export function showConditional(root, conditional) {
  for (const el of root.querySelectorAll(".conditional")) el.hidden = !conditional;
}

export function formatNumber(value, digits = 3) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "—";
}

// Seeds reach 2**63 - 1: BigInt keeps "seed + i" exact past 2**53.
export const MAX_SEED = 2n ** 63n - 1n;

export function parseSeed(text) {
  if (!/^\d+$/.test(text.trim())) return null;
  const seed = BigInt(text.trim());
  return seed <= MAX_SEED ? seed : null;
}

export function randomSeed() {
  return BigInt(crypto.getRandomValues(new Uint32Array(1))[0]);
}

// A drop target: files dropped on it go to onFiles; it shows "over" while something hovers.
export function dropZone(zone, onFiles) {
  zone.addEventListener("dragover", (event) => {
    event.preventDefault(); // allows the drop
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    onFiles([...event.dataTransfer.files]);
  });
}
