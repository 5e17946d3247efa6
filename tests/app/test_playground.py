"""The web playground at /: its files, and every view driven in a real browser.

The browser test runs Debian's Chromium (``make browser`` installs it; Playwright's own
browser download is never used) against the real server on loopback, under the page's strict
Content-Security-Policy. Without the browser it skips, except under ``CI=true``, where it fails.

``make screenshots`` (``pytest -m screenshots``; deselected otherwise) remakes
docs/playground-*.png from the committed models.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from core.repository import Repository
from tests.conftest import ROOT, app_settings

from .helpers import TINY_JOB

if TYPE_CHECKING:
    from playwright.sync_api import Browser, FilePayload, Locator, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEY = "playground-key"
# Collects what the page's Content-Security-Policy refused: it must stay empty.
CSP_PROBE = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
"""
# The red channel of an <img> as the browser decoded it: what the user sees, pixel for pixel.
PIXELS = """
(img) => {
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const rgba = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  return [canvas.height, canvas.width, Array.from(rgba.filter((_, i) => i % 4 === 0))];
}
"""
# Drops files on an element as a drag and drop from the desktop would.
DROP = """
([selector, files]) => {
  const transfer = new DataTransfer();
  for (const [name, b64] of files) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], name, { type: "image/png" }));
  }
  const zone = document.querySelector(selector);
  const init = { dataTransfer: transfer, bubbles: true, cancelable: true };
  zone.dispatchEvent(new DragEvent("dragover", init));
  zone.dispatchEvent(new DragEvent("drop", init));
}
"""


def test_the_page_and_its_assets_are_served(models_dir: Path) -> None:
    with TestClient(create_app(app_settings(models_dir))) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="/static/main.js">' in page.text
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe" not in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        types = {
            "/static/style.css": "text/css",
            "/static/main.js": "text/javascript",
            "/static/gallery.js": "text/javascript",
            "/static/favicon.svg": "image/svg+xml",
        }
        for path, ctype in types.items():
            r = client.get(path)
            assert r.status_code == 200 and r.headers["content-type"].startswith(ctype), path
            assert r.headers["x-content-type-options"] == "nosniff"
        missing = client.get("/static/nope.js")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        paths = client.get("/openapi.json").json()["paths"]
        assert "/" not in paths and not any(p.startswith("/static") for p in paths)


def test_no_inline_script_style_or_handler() -> None:
    """What a strict CSP refuses is not in the page: checked in the source as well."""
    static = ROOT / "app" / "static"
    html = (static / "index.html").read_text()
    assert not re.search(r"<style|\sstyle\s*=|\son[a-z]+\s*=|javascript:", html)
    assert re.findall(r"<script[^>]*>", html) == ['<script type="module" src="/static/main.js">']
    for js in static.glob("*.js"):
        text = js.read_text()
        for banned in ("eval(", "new Function", "innerHTML", "outerHTML", "insertAdjacentHTML"):
            assert banned not in text, (js.name, banned)


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed: pip install -e '.[test]'"
    if not CHROMIUM.is_file():
        return f"no browser at {CHROMIUM}: `make browser` installs Debian's chromium"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    missing = _browser_missing()
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser test: {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def open_page(browser: Browser, url: str, errors: list[str], **options: Any) -> Page:
    """The playground in a new tab; uncaught script errors are appended to ``errors``."""
    page = browser.new_page(**{"viewport": {"width": 1280, "height": 900}, **options})
    page.set_default_timeout(15_000)
    page.add_init_script(CSP_PROBE)
    page.on("pageerror", lambda e: errors.append(str(e)))
    response = page.goto(url)
    assert response is not None and response.ok
    assert "script-src 'self'" in response.headers["content-security-policy"]
    return page


def pixels(page: Page, selector: str) -> np.ndarray:
    height, width, red = page.locator(selector).evaluate(PIXELS)
    return np.array(red, dtype=np.uint8).reshape(height, width)


def png_pixels(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)).convert("L"))


def png_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def b64png(array: np.ndarray) -> str:
    return base64.b64encode(png_bytes(array)).decode()


def wait_for_new_src(page: Page, selector: str, old: str | None) -> str:
    page.wait_for_function(
        "([s, old]) => { const i = document.querySelector(s);"
        " return i.src && i.src !== old && i.complete && i.naturalWidth > 0; }",
        arg=[selector, old],
    )
    src = page.locator(selector).get_attribute("src")
    assert src is not None
    return src


@pytest.mark.slow
def test_every_view_in_a_real_browser(
    browser: Browser, models_dir: Path, start_server: Callable[..., Any]
) -> None:
    server = start_server(GAN_MODELS_DIR=str(models_dir), GAN_API_KEY=KEY)
    errors: list[str] = []
    page = open_page(browser, f"{server.url}/", errors)
    with httpx.Client(base_url=server.url, timeout=30) as api:
        start_a_job(page)  # it trains while the other views are checked
        digit, label = gallery(page, api)
        interpolation(page, api, label)
        discriminator(page, api, digit)
        projection(page, api, digit)
        job_finishes(page)
        promote_and_roll_back(page, api)
        an_export_is_watched(page, api)
    on_a_phone(page)
    assert page.evaluate("window.cspViolations") == []
    assert errors == []


def start_a_job(page: Page) -> None:
    """A wrong key first: the page shows the server's problem title and detail."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Jobs").click()
    page.fill("#api-key", "wrong-key")
    page.get_by_text("More overrides").click()
    page.fill("#overrides", json.dumps({**TINY_JOB, "select": "best"}))
    page.select_option("#promote", "never")
    page.get_by_role("button", name="Start job").click()
    problem = page.locator("#jobs .problem")
    expect(problem.locator(".problem-title")).to_have_text("unauthorized (401)")
    expect(problem.locator(".problem-detail")).to_contain_text("Authorization: Bearer")
    page.fill("#api-key", KEY)
    page.get_by_role("button", name="Start job").click()
    expect(page.locator("#job-state")).not_to_have_text("")
    expect(problem).to_be_hidden()


def gallery(page: Page, api: httpx.Client) -> tuple[np.ndarray, str]:
    """The grid is exactly the server's; a picked image (seed 23) is reproducible alone."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Gallery").click()  # tiny-cgan: first by name, conditional
    src = wait_for_new_src(page, "#grid-img", None)
    query: dict[str, str | int] = {"model": "tiny-cgan", "n": 16, "cols": 4}
    first = png_pixels(api.get("/v1/sample.png", params={**query, "seed": 0}).content)
    np.testing.assert_array_equal(pixels(page, "#grid-img"), first)
    page.get_by_role("button", name="Next seeds").click()
    expect(page.locator("#seed")).to_have_value("16")
    wait_for_new_src(page, "#grid-img", src)
    grid = pixels(page, "#grid-img")
    assert not np.array_equal(grid, first)
    served = api.get("/v1/sample.png", params={**query, "seed": 16})
    np.testing.assert_array_equal(grid, png_pixels(served.content))
    expect(page.locator("#grid-caption")).to_have_text("tiny-cgan v1 · seeds 16 to 31")

    # Image 6 (row 1, column 2) by mouse, then the next one by keyboard.
    box = page.locator("#grid-img").bounding_box()
    assert box is not None
    tile = box["width"] / 4
    page.mouse.click(box["x"] + 2.5 * tile, box["y"] + 1.5 * tile)
    labels = served.headers["x-labels"].split(",")
    expect(page.locator("#pick-title")).to_have_text(f"Seed 22, label {labels[6]}")
    page.locator("#grid-wrap").focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    expect(page.locator("#pick-title")).to_have_text(f"Seed 23, label {labels[7]}")
    curl = page.locator("#pick-curl").inner_text()
    assert '"seed": 23' in curl and f'"labels": {labels[7]}' in curl and '"version": 1' in curl
    link = page.locator("#pick-link").get_attribute("href")
    assert link is not None
    alone = png_pixels(api.get(link).content)
    np.testing.assert_array_equal(alone, grid[32:60, 92:120])  # tile 7: row 1, column 3
    page.get_by_role("button", name="Interpolate from it").click()
    return alone, labels[7]


def interpolation(page: Page, api: httpx.Client, label: str) -> None:
    """From the picked seed 23 to seed 40 by lerp: the last frame is seed 40's image."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Interpolation").click()
    expect(page.locator("#from-seed")).to_have_value("23")
    page.fill("#to-seed", "40")
    page.fill("#steps", "6")
    page.get_by_label("lerp", exact=True).check()
    page.get_by_role("button", name="Interpolate").click()
    expect(page.locator("#interp-out")).to_be_visible()
    expect(page.locator("#frame-t")).to_have_text("1 / 6 · t = 0.000")
    page.locator("#frame").fill("5")
    expect(page.locator("#frame-t")).to_have_text("6 / 6 · t = 1.000")
    download = page.locator("#anim-link")
    expect(download).to_have_attribute("download", "tiny-cgan-v1-23-to-40-lerp.gif")
    wait_for_new_src(page, "#anim-img", None)
    last = api.get("/v1/sample.png", params={"model": "tiny-cgan", "seed": 40, "label": label})
    np.testing.assert_array_equal(pixels(page, "#frame-img"), png_pixels(last.content))


def discriminator(page: Page, api: httpx.Client, digit: np.ndarray) -> None:
    """Two images dropped, then one chosen with the file input: the server's own scores."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Discriminator").click()
    noise = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    page.evaluate(DROP, ["#dropzone", [["digit.png", b64png(digit)], ["noise.png", b64png(noise)]]])
    rows = page.locator("#scores tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(1).locator(".file")).to_have_text("noise.png")
    shown = [float(m.get_attribute("value") or "nan") for m in page.locator("#scores meter").all()]
    assert shown == pytest.approx(probabilities(api, [digit, noise]))
    chosen: FilePayload = {"name": "one.png", "mimeType": "image/png", "buffer": png_bytes(noise)}
    page.locator("#files").set_input_files(files=[chosen])
    expect(rows).to_have_count(1)
    expect(rows.nth(0).locator(".file")).to_have_text("one.png")


def projection(page: Page, api: httpx.Client, digit: np.ndarray) -> None:
    """A dropped digit comes back as the server's reconstruction; the walk from its latent
    starts on that reconstruction and ends on the seed's image."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Projection").click()
    page.fill("#project-steps", "3")
    # Leave the field now: its change event (which projects again) must not come later, when
    # the walk's fields take the focus, and hide the walk it made.
    page.press("#project-steps", "Tab")
    page.evaluate(DROP, ["#project-drop", [["digit.png", b64png(digit)]]])
    expect(page.locator("#project-out")).to_be_visible()
    wait_for_new_src(page, "#project-recon", None)
    form = {"model": "tiny-cgan", "version": "production", "steps": "3", "resize": "true"}
    files = {"images": ("digit.png", png_bytes(digit), "image/png")}
    served = api.post("/v1/project", data=form, files=files).json()["results"][0]
    recon = png_pixels(base64.b64decode(served["png"]))
    np.testing.assert_array_equal(pixels(page, "#project-recon"), recon)
    expect(page.locator("#project-caption")).to_contain_text("after 3 steps")
    page.fill("#walk-seed", "40")
    page.fill("#walk-steps", "4")
    page.get_by_role("button", name="Walk").click()
    expect(page.locator("#walk-t")).to_have_text("1 / 4 · t = 0.000")
    np.testing.assert_array_equal(pixels(page, "#walk-img"), recon)
    page.locator("#walk-frame").fill("3")
    expect(page.locator("#walk-t")).to_have_text("4 / 4 · t = 1.000")
    label = served["label"]
    end = api.get("/v1/sample.png", params={"model": "tiny-cgan", "seed": 40, "label": label})
    np.testing.assert_array_equal(pixels(page, "#walk-img"), png_pixels(end.content))


def job_finishes(page: Page) -> None:
    """Live progress, loss curves and samples from the events, then the outcome."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Jobs").click()
    expect(page.locator("#job-state")).to_have_text("succeeded", timeout=120_000)
    expect(page.locator("#job-progress")).to_have_attribute("value", "12")
    expect(page.locator("#loss-chart polyline")).to_have_count(2)
    expect(page.locator("#job-samples")).to_be_visible()
    outcome = "Published tiny-cgan v2; not promoted (policy is never)."
    expect(page.locator("#job-outcome")).to_have_text(outcome)
    expect(page.locator("#job-list tbody tr")).to_have_count(1)


def an_export_is_watched(page: Page, api: httpx.Client) -> None:
    """An export job in the jobs view: counted in images and shards, its manifest named."""
    from playwright.sync_api import expect

    body = {"model": "tiny-cgan", "n": 30, "shard_size": 10}
    r = api.post("/v1/exports", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 202, r.text
    export = r.json()["id"]
    page.get_by_role("tab", name="Jobs").click()
    row = page.locator("#job-list tbody tr").filter(has_text=export)
    row.get_by_role("button", name="Watch").click()
    outcome = f"Exported 30 images in 3 shards: /v1/exports/{export}/manifest.json."
    expect(page.locator("#job-outcome")).to_have_text(outcome, timeout=60_000)
    expect(page.locator("#job-progress")).to_have_attribute("value", "30")
    expect(page.locator("#job-progress-text")).to_have_text("30 of 30 images, 3 of 3 shards")
    page.get_by_role("tab", name="Jobs").click()  # the list again, the export's row counted
    expect(row.locator("td.num")).to_have_text("30 / 30 images")


def promote_and_roll_back(page: Page, api: httpx.Client) -> None:
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Models").click()
    expect(page.locator("#versions article")).to_have_count(2)
    # The job kept its best evaluation (step 6 or 12): the card says which it published.
    kept = re.compile(r"12 steps \([^)]*\), step (6|12) kept")
    v2 = page.locator("#versions article").filter(has_text="v2")
    expect(v2).to_contain_text(kept)
    # Its usefulness scores, measured at export: CAS beside the real bar, PRDC in pairs.
    scores = api.get("/v1/models/tiny-cgan").json()["versions"][1]["metrics"]["usefulness"]

    def fact(version: int, name: str) -> Locator:
        card = page.locator(f"#versions article[aria-labelledby=version-{version}]")
        return card.locator("dt", has_text=name).locator("xpath=following-sibling::dd[1]")

    cas = f"{scores['cas']:.1%} (real {scores['cas_real']:.1%})"
    expect(fact(2, "CAS ↑")).to_have_text(cas)
    expect(fact(2, "Precision / recall ↑")).to_have_text(re.compile(r"^\d\.\d{3} / \d\.\d{3}$"))
    expect(fact(1, "CAS ↑")).to_have_text("—")  # v1 was published unevaluated
    page.get_by_role("button", name="Promote v2").click()
    expect(page.locator("#models .status")).to_have_text("tiny-cgan: production → v2 (was v1).")
    assert api.get("/v1/models/tiny-cgan").json()["aliases"] == {"production": 2}
    page.get_by_role("button", name="Roll back to v1").click()
    expect(page.locator("#models .status")).to_have_text("tiny-cgan: production → v1 (was v2).")
    expect(page.get_by_role("button", name="Promote v2")).to_be_enabled()
    assert api.get("/v1/models/tiny-cgan").json()["aliases"] == {"production": 1}
    sheet = page.locator("#versions article img").first
    expect(sheet).to_have_js_property("complete", True)
    assert sheet.evaluate("(img) => img.naturalWidth") > 0


def on_a_phone(page: Page) -> None:
    """Every view fits a phone's width: no sideways scrolling."""
    from playwright.sync_api import expect

    page.set_viewport_size({"width": 375, "height": 740})
    for view in ("Gallery", "Interpolation", "Discriminator", "Models", "Jobs"):
        tab = page.get_by_role("tab", name=view)
        tab.click()
        expect(tab).to_have_attribute("aria-selected", "true")  # shown on hashchange, later
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth"), view


def probabilities(api: httpx.Client, images: list[np.ndarray]) -> list[float]:
    """The server's own scores for images, as the page asks for them (label 0, resized)."""
    r = api.post(
        "/v1/discriminate",
        data={"model": "tiny-cgan", "labels": ",".join("0" * len(images)), "resize": "true"},
        files=[("images", (f"{i}.png", png_bytes(a), "image/png")) for i, a in enumerate(images)],
    )
    return [x["probability_real"] for x in r.json()["results"]]


@pytest.mark.screenshots
def test_screenshots(browser: Browser, start_server: Callable[..., Any]) -> None:
    """docs/playground-*.png: every view serving the committed models (models/).

    The job is cancelled once its curves and samples show, so nothing is published into the
    committed repository, and no alias is moved.
    """
    from playwright.sync_api import expect

    out = ROOT / "docs"
    out.mkdir(parents=True, exist_ok=True)
    models = ROOT / "models"
    versions = Repository(models).versions("mnist-cdcgan")
    production = Repository(models).resolve("mnist-cdcgan", None)
    serving = f"mnist-cdcgan v{production}"
    server = start_server(GAN_MODELS_DIR=str(models), GAN_API_KEY=KEY)
    errors: list[str] = []
    url = f"{server.url}/?model=mnist-cdcgan"
    page = open_page(browser, url, errors, viewport={"width": 1200, "height": 800})

    def shoot(name: str, target: Page = page) -> None:
        target.wait_for_load_state("networkidle")
        target.screenshot(path=out / f"playground-{name}.png", full_page=True)

    # Gallery, with an image picked.
    expect(page.locator("#grid-caption")).to_contain_text(serving)
    page.select_option("#grid", "6")
    page.fill("#seed", "2026")
    expect(page.locator("#grid-caption")).to_contain_text("seeds 2026 to 2061")
    box = page.locator("#grid-img").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] * 3.5 / 6, box["y"] + box["height"] * 1.5 / 6)
    expect(page.locator("#pick-title")).to_contain_text("Seed 2035")
    expect(page.locator("#pick-img")).to_have_js_property("complete", True)
    shoot("gallery")

    # Interpolation from the picked image to seed 7.
    page.get_by_role("button", name="Interpolate from it").click()
    page.get_by_role("tab", name="Interpolation").click()
    page.fill("#to-seed", "7")
    page.get_by_role("button", name="Interpolate").click()
    expect(page.locator("#interp-out")).to_be_visible()
    page.locator("#frame").fill("6")
    wait_for_new_src(page, "#anim-img", None)
    shoot("interpolation")

    # Discriminator: real threes, generated threes, a seven and noise, all scored as threes.
    page.get_by_role("tab", name="Discriminator").click()
    page.select_option("#disc-label", "3")
    data = np.load(ROOT / "core" / "data" / "mnist_5k.npz")
    threes = data["images"][data["labels"] == 3]
    seven = data["images"][data["labels"] == 7][0]
    generated = [
        httpx.get(
            f"{server.url}/v1/sample.png",
            params={"model": "mnist-cdcgan", "seed": seed, "label": 3},
        ).content
        for seed in (11, 12)
    ]
    noise = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    files = [
        ["real-three-1.png", b64png(threes[0])],
        ["real-three-2.png", b64png(threes[1])],
        ["generated-three-seed-11.png", base64.b64encode(generated[0]).decode()],
        ["generated-three-seed-12.png", base64.b64encode(generated[1]).decode()],
        ["real-seven.png", b64png(seven)],
        ["noise.png", b64png(noise)],
    ]
    page.evaluate(DROP, ["#dropzone", files])
    expect(page.locator("#scores tbody tr")).to_have_count(len(files))
    shoot("discriminator")

    page.get_by_role("tab", name="Models").click()
    expect(page.locator("#versions article img").first).to_have_js_property("complete", True)
    shoot("models")

    # A job fine-tuning production, caught mid-run (a few CPU steps a second), then cancelled.
    page.get_by_role("tab", name="Jobs").click()
    page.fill("#api-key", KEY)
    page.fill("#job-steps", "2000")
    page.select_option("#promote", "never")
    page.select_option("#base-version", str(production))
    page.get_by_text("More overrides").click()
    page.fill("#overrides", json.dumps({"log_every": 2, "eval_every": 20, "eval_samples": 100}))
    page.get_by_role("button", name="Start job").click()
    expect(page.locator("#job-samples")).to_be_visible(timeout=300_000)
    page.wait_for_function(
        "() => document.querySelector('#loss-chart polyline').points.numberOfItems >= 20",
        timeout=300_000,
    )
    shoot("jobs")
    page.get_by_role("button", name="Cancel job").click()
    expect(page.locator("#job-state")).to_have_text("cancelled", timeout=60_000)

    # A phone, and the dark scheme.
    looks: dict[str, dict[str, Any]] = {
        "phone": {"viewport": {"width": 390, "height": 844}},
        "dark": {"viewport": {"width": 1200, "height": 800}, "color_scheme": "dark"},
    }
    for name, options in looks.items():
        other = open_page(browser, url, errors, **options)
        expect(other.locator("#grid-caption")).to_contain_text(serving)
        shoot(name, other)
        other.close()

    assert page.evaluate("window.cspViolations") == []
    assert errors == []
    assert Repository(models).versions("mnist-cdcgan") == versions  # nothing published
