"""Screenshot the app on the bundled models (for the README): example, stroke, style, generate.

    python scripts/screenshot_app.py [docs/app.png]

Needs Debian's chromium and the playwright package (the `dev` extra).
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from hf_pix2pixhd.app import create_demo


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/app.png")
    demo = create_demo()
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
            page.locator("#examples img").first.click()  # start from an example facade
            time.sleep(2)
            page.click("#editor button[aria-label='Color']")
            # Paint a window onto the wall: the semantic-editing workflow.
            page.locator("#editor button[style*='background-color: rgb(0, 128, 255)']").click()
            box = page.locator("#editor canvas").first.bounding_box()
            cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(cx - 40, cy + 60)
            page.mouse.down()
            for step in range(1, 9):
                page.mouse.move(cx - 40 + 8 * step, cy + 60)
            page.mouse.up()
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
