// The model and version picked in the header, shared by every view. Views listen for
// "change" (a new model, version or repository state) and "endpoint" (a gallery image picked
// as an end of an interpolation).

import { getJson } from "./api.js";

class Store extends EventTarget {
  models = []; // GET /v1/models
  detail = null; // GET /v1/models/{name}: aliases and every version's manifest
  version = "production"; // a number, an alias or "latest", as the API takes it

  get name() {
    return this.detail ? this.detail.name : null;
  }

  // The manifest of the version the picker names (what the server will serve for it).
  get manifest() {
    if (!this.detail || this.detail.versions.length === 0) return null;
    const versions = this.detail.versions;
    const wanted = this.resolve(this.version);
    return versions.find((m) => m.version === wanted) || versions[versions.length - 1];
  }

  get conditional() {
    return Boolean(this.manifest && this.manifest.num_classes > 0);
  }

  get classNames() {
    return this.manifest ? this.manifest.class_names : [];
  }

  resolve(ref) {
    const versions = this.detail ? this.detail.versions.map((m) => m.version) : [];
    if (/^\d+$/.test(String(ref))) return Number(ref);
    if (ref in (this.detail?.aliases || {})) return this.detail.aliases[ref];
    return versions[versions.length - 1];
  }

  async loadModels() {
    this.models = await getJson("/v1/models");
    return this.models;
  }

  async select(name, version = this.version) {
    this.detail = await getJson(`/v1/models/${encodeURIComponent(name)}`);
    const known = [...Object.keys(this.detail.aliases), "latest"];
    const numbers = this.detail.versions.map((m) => String(m.version));
    this.version =
      known.includes(version) || numbers.includes(String(version))
        ? String(version)
        : "production" in this.detail.aliases
          ? "production"
          : "latest";
    this.dispatchEvent(new Event("change"));
  }

  // Re-read the model after a promotion or a finished job.
  async refresh() {
    if (this.name) await this.select(this.name, this.version);
  }

  setVersion(version) {
    this.version = String(version);
    this.dispatchEvent(new Event("change"));
  }

  pickEndpoint(which, seed, label) {
    this.dispatchEvent(new CustomEvent("endpoint", { detail: { which, seed, label } }));
  }
}

export const store = new Store();
