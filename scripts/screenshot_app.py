"""Screenshot the app on the bundled models (for the README): example, stroke, style, generate.

    python scripts/screenshot_app.py [docs/app.png]                  # facades: paint a window
    python scripts/screenshot_app.py docs/app_shoes.png --model shoes  # a sketch, random styles

Needs Debian's chromium and the playwright package (the `dev` extra).
"""

from __future__ import annotations

import argparse
import socket
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from hf_pix2pixhd.app import create_demo


def paint_a_window(page) -> None:
    """Paint a window onto the wall: the semantic-editing workflow."""
    page.click("#editor button[aria-label='Color']")
    page.locator("#editor button[style*='background-color: rgb(0, 128, 255)']").click()
    box = page.locator("#editor canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 40, cy + 60)
    page.mouse.down()
    for step in range(1, 9):
        page.mouse.move(cx - 40 + 8 * step, cy + 60)
    page.mouse.up()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=Path("docs/app.png"))
    parser.add_argument("--model", default="facades", help="a bundled model's name")
    args = parser.parse_args()
    out = args.out
    demo = create_demo(models_dir=Path(__file__).resolve().parents[1] / "models")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                ],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1150})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#editor canvas", timeout=60_000)
            if args.model != "facades":
                page.get_by_label("Model").click()
                page.get_by_role("option", name=args.model).click()
                time.sleep(2)
            page.locator("#examples img").first.click()  # start from an example
            time.sleep(2)
            if args.model == "facades":
                paint_a_window(page)
            page.get_by_label("random").check()
            page.fill("#seed input", "4")
            page.click("#generate")
            page.locator("#result img").wait_for(state="visible", timeout=60_000)
            page.click("#variations")
            page.locator("#gallery img").first.wait_for(state="visible", timeout=120_000)
            time.sleep(2)
            page.screenshot(path=str(out), full_page=True)
            browser.close()
    finally:
        demo.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
