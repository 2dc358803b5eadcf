"""The app in a real headless Chromium (Debian's), driven by Playwright: draw, style, generate."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = [
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason="Debian chromium is not installed (apt-get install chromium); .ci/run installs it",
    ),
]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    from app_fixtures import make_label_model, make_sketch_model

    from hf_pix2pixhd.app import create_demo

    root = tmp_path_factory.mktemp("browser-models")
    demo = create_demo(
        [str(make_label_model(root / "facades")), str(make_sketch_model(root / "shoes"))]
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@contextlib.contextmanager
def chromium(url: str):
    """A page of the app at ``url`` in headless Chromium, once the editor is drawn."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_selector("#editor canvas", timeout=60_000)
            yield page
        finally:
            browser.close()


def test_draw_pick_a_style_generate_in_a_real_browser(app_url, tmp_path):
    screenshot = Path(os.environ.get("HF_PIX2PIXHD_SCREENSHOT", tmp_path / "app.png"))
    with chromium(app_url) as page:
        # The brush is limited to the model's palette: pick "door" (174, 0, 0).
        page.click("#editor button[aria-label='Color']")
        swatch = page.locator("#editor button[style*='background-color: rgb(174, 0, 0)']")
        assert swatch.count() == 1, "the palette brush does not offer the model's colours"
        swatch.first.click()
        box = page.locator("#editor canvas").first.bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(cx - 60, cy - 10)
        page.mouse.down()
        for step in range(1, 13):
            page.mouse.move(cx - 60 + 10 * step, cy - 10 + 2 * step)
        page.mouse.up()
        page.get_by_label("random").check()
        page.fill("#seed input", "3")
        page.click("#generate")
        result = page.locator("#result img")
        result.wait_for(state="visible", timeout=60_000)
        assert result.get_attribute("src")
        legend = page.inner_text("#legend")
        assert "door" in legend and "window" in legend
        page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000


@pytest.mark.slow
def test_bad_uploads_and_the_untouched_canvas_are_explained_in_the_page(app_url, tmp_path):
    """The page's own check stops unreadable and oversized files before the editor blanks or
    freezes; the untouched canvas is 'empty' like a cleared one; a good upload still works."""
    import PIL.Image

    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    big = tmp_path / "big.png"
    PIL.Image.new("RGB", (8000, 6000), (0, 0, 170)).save(big)  # 8000x6000 froze the page once
    facade = tmp_path / "facade.png"
    PIL.Image.new("RGB", (64, 64), (0, 48, 255)).save(facade)
    with chromium(app_url) as page:
        page.click("#generate")
        toast = page.locator("[data-testid='toast-body']")
        toast.filter(has_text="The canvas is empty").first.wait_for(timeout=30_000)
        upload = page.locator("#editor input[type=file]").first
        message = page.locator("#upload-error")
        upload.set_input_files(str(notes))
        message.filter(has_text="notes.png is not an image").wait_for(timeout=30_000)
        upload.set_input_files(str(big))
        message.filter(has_text="big.png is 8000x6000 pixels").wait_for(timeout=30_000)
        upload.set_input_files(str(facade))
        page.wait_for_function("!document.querySelector('#upload-error').textContent")
        page.click("#generate")
        page.locator("#result img").wait_for(state="visible", timeout=60_000)
        page.get_by_label("reference photo").check()
        page.locator("#reference input[type=file]").first.set_input_files(str(notes))
        message.filter(has_text="notes.png is not an image").wait_for(timeout=30_000)
