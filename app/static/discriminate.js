// Discriminator: images dropped (or chosen) are scored by POST /v1/discriminate (multipart).

import { request } from "./api.js";
import { store } from "./store.js";
import { $, dropZone, fillLabels, formatNumber, h, Notice, showConditional } from "./ui.js";

let root, notice;
let files = []; // the last images, scored again when the model, version or label changes
let thumbs = [];

export function init(section) {
  root = section;
  notice = new Notice(root);
  dropZone($("#dropzone", root), score);
  $("#files", root).addEventListener("change", (event) => score([...event.target.files]));
  const form = $("#disc-form", root);
  form.addEventListener("submit", (event) => event.preventDefault());
  form.addEventListener("change", () => score(files));
  store.addEventListener("change", () => {
    fillLabels($("#disc-label", root), store.classNames);
    showConditional(root, store.conditional);
    score(files);
  });
}

async function score(chosen) {
  if (chosen.length === 0 || !store.name) return;
  if (chosen !== files) {
    files = chosen;
    for (const url of thumbs) URL.revokeObjectURL(url);
    thumbs = files.map((f) => URL.createObjectURL(f));
  }
  const form = new FormData();
  form.append("model", store.name);
  form.append("version", store.version);
  form.append("resize", $("#resize", root).checked ? "true" : "false");
  if (store.conditional) {
    form.append("labels", files.map(() => $("#disc-label", root).value).join(","));
  }
  for (const file of files) form.append("images", file, file.name);
  notice.busy(`Scoring ${files.length} ${files.length === 1 ? "image" : "images"}…`);
  try {
    const result = await (await request("/v1/discriminate", { method: "POST", form })).json();
    render(result);
    notice.done(
      `Scored ${files.length} with the discriminator of ${result.model} v${result.version}.`,
    );
  } catch (err) {
    $("#scores", root).hidden = true;
    notice.fail(err);
  }
}

function render(result) {
  const rows = result.results.map((r, i) =>
    h(
      "tr",
      {},
      h("td", {}, h("img", { class: "thumb", src: thumbs[i], alt: "" })),
      h("td", { class: "file", text: files[i].name }),
      h(
        "td",
        { class: "num" },
        h("meter", {
          min: "0",
          max: "1",
          low: "0.5",
          optimum: "1",
          value: String(r.probability_real),
        }),
        ` ${(r.probability_real * 100).toFixed(1)}%`,
      ),
      h("td", { class: "num", text: formatNumber(r.logit) }),
    ),
  );
  $("#scores tbody", root).replaceChildren(...rows);
  const label = store.conditional ? `, as label ${$("#disc-label", root).value}` : "";
  $("#scores-caption", root).textContent =
    `How real the discriminator of ${result.model} v${result.version} finds each image${label}`;
  $("#scores", root).hidden = false;
}
