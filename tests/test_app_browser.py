"""The app in a real browser (Playwright + Debian's chromium): upload, run and read the results on every tab, draw a
mask in the Inpaint editor, and see a bad upload's error. A screenshot of each tab is saved.

Tiny untrained models (conftest.TINY_APP_MODELS) keep it fast, and the screenshots go to a temp folder. `make
screenshots` runs the same tests on the shipped weights (CNNIMG_TEST_WEIGHTS=weights) and saves the README's
screenshots (CNNIMG_SCREENSHOTS=docs/screenshots).
"""
import os
import tempfile

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
os.environ.setdefault("GRADIO_TEMP_DIR", tempfile.mkdtemp(prefix="cnnimg-gradio-"))

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from PIL import Image  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")

import app  # noqa: E402
from cnnimg_hub.models.classifier import CIFAR10_LABELS  # noqa: E402
from tabs.common import EXAMPLES_DIR, MAX_FILE_SIZE  # noqa: E402

SCREENSHOTS = Path(os.environ.get("CNNIMG_SCREENSHOTS") or tempfile.mkdtemp(prefix="cnnimg-screenshots-"))
SHIPPED_WEIGHTS = os.environ.get("CNNIMG_TEST_WEIGHTS")  # e.g. "weights": run on real models instead of tiny ones
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]  # nothing leaves the machine
RESULT_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def page(tmp_path_factory, make_weights, free_port):
    weights = Path(SHIPPED_WEIGHTS) if SHIPPED_WEIGHTS else make_weights(tmp_path_factory.mktemp("weights"))
    demo = app.build_demo(weights, "cpu")
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                max_file_size=MAX_FILE_SIZE, css=app.CSS)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#classify-image", timeout=30_000)
            yield page
            browser.close()
    finally:
        demo.close()


@pytest.fixture(scope="module")
def small_photo(tmp_path_factory) -> Path:
    """160x106: BM3D stays around a second on it."""
    path = tmp_path_factory.mktemp("images") / "coffee-small.png"
    Image.open(EXAMPLES_DIR / "coffee.jpg").convert("RGB").resize((160, 106), Image.LANCZOS).save(path)
    return path


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    try:  # the queue keeps a connection open, so "network idle" may never come: a short wait is enough
        page.wait_for_load_state("networkidle", timeout=2000)
    except sync_api.TimeoutError:
        pass


def upload(page, elem_id: str, path) -> None:
    page.locator(f"#{elem_id} input[type=file]").first.set_input_files(str(path))


def natural_width(page, selector: str) -> int:
    """Wait for an <img> under `selector` to load; its natural (served) width."""
    img = page.locator(f"{selector} img").first
    img.wait_for(state="attached", timeout=RESULT_TIMEOUT_MS)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle(),
                           timeout=RESULT_TIMEOUT_MS)
    return img.evaluate("img => img.naturalWidth")


def screenshot(page, tab: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{tab}.png"), full_page=True)


def test_classify_lists_labels(page):
    open_tab(page, "Classify")
    upload(page, "classify-image", EXAMPLES_DIR / "chelsea.jpg")
    page.locator("#classify-run").click()
    labels = page.locator("#classify-labels")
    page.wait_for_function("el => (el.innerText.match(/%/g) || []).length >= 5", arg=labels.element_handle(),
                           timeout=RESULT_TIMEOUT_MS)  # the rows render one after another
    text = labels.inner_text()
    assert sum(name in text for name in CIFAR10_LABELS) >= 5, text
    screenshot(page, "classify")


def test_generate_fills_the_gallery(page):
    open_tab(page, "Generate")
    page.locator("#generate-run").click()
    page.locator("#generate-gallery img").nth(15).wait_for(timeout=RESULT_TIMEOUT_MS)
    assert natural_width(page, "#generate-gallery") == 28
    screenshot(page, "generate")


def test_super_resolve_cnn_first_then_bicubic_in_the_slider(page):
    open_tab(page, "Super-resolve")
    page.get_by_label("2", exact=True).check()
    upload(page, "upscale-image", EXAMPLES_DIR / "chelsea.jpg")
    page.locator("#upscale-run").click()
    assert natural_width(page, "#upscale-slider") == 384 * 2
    page.locator("#upscale-table").get_by_text("PIL bicubic").wait_for(timeout=RESULT_TIMEOUT_MS)
    page.locator("#upscale-against").get_by_label("PIL bicubic").wait_for(timeout=RESULT_TIMEOUT_MS)
    assert page.locator("#upscale-gallery img").count() == 3  # input, CNN, bicubic: full size on click
    assert page.locator("#upscale-download").is_visible()
    screenshot(page, "super-resolve")


def test_inpaint_with_a_drawn_stroke(page):
    open_tab(page, "Inpaint")
    zoom = page.locator("#inpaint-editor .zoom-number")
    before = zoom.inner_text()
    upload(page, "inpaint-editor", EXAMPLES_DIR / "chelsea.jpg")
    # drawing before the editor has sized the canvas to the image is lost: wait for its zoom to change
    page.wait_for_function("([el, z]) => el.innerText !== z", arg=[zoom.element_handle(), before], timeout=20_000)
    box = page.locator("#inpaint-editor canvas").first.bounding_box()
    x, y = box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.5
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 60, y + 10, steps=3)  # each step is slow (~170 ms) in the editor: keep strokes short
    page.mouse.up()
    page.locator("#inpaint-run").click()
    assert natural_width(page, "#inpaint-slider") == 384  # the full-resolution upload, not the canvas
    page.locator("#inpaint-table").get_by_text("OpenCV Telea").wait_for(timeout=RESULT_TIMEOUT_MS)
    screenshot(page, "inpaint")


def test_denoise_with_degrade_then_restore(page, small_photo):
    open_tab(page, "Denoise")
    upload(page, "denoise-image", small_photo)
    page.get_by_label("Degrade, then restore (add noise").check()
    page.locator("#denoise-run").click()
    assert natural_width(page, "#denoise-slider") == 160
    table = page.locator("#denoise-table")
    table.get_by_text("BM3D").wait_for(timeout=RESULT_TIMEOUT_MS)  # the CNN, then NLM, then BM3D
    assert "PSNR" in table.inner_text() and "non-local means" in table.inner_text()
    screenshot(page, "denoise")


def test_bad_upload_shows_the_error(page, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is text, not a PNG")
    open_tab(page, "Super-resolve")
    upload(page, "upscale-image", bad)
    page.locator("#upscale-run").click()
    page.get_by_text("not an image PIL can read").first.wait_for(timeout=RESULT_TIMEOUT_MS)
