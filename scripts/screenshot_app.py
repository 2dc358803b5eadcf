"""Screenshot the app on the bundled models (for the README): draw, style, generate.

    python scripts/screenshot_app.py [docs/app.png]                  # a facade painted by hand
    python scripts/screenshot_app.py docs/app_shoes.png --model shoes  # a shoe drawn by hand
    python scripts/screenshot_app.py --from-example                  # an example + a window

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


def brush(page, steps: int, pause: float = 0.0):
    """A ``stroke(points)`` that drags the mouse through points given as fractions of the
    paper (256x256 at the editor's zoom, centred in the canvas element)."""
    box = page.locator("#editor canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    side = 270

    def at(point: tuple[float, float]) -> tuple[float, float]:
        return cx + (point[0] - 0.5) * side, cy + (point[1] - 0.5) * side

    def stroke(points: list[tuple[float, float]]) -> None:
        page.mouse.move(*at(points[0]))
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*at(point), steps=steps)
        page.mouse.up()
        time.sleep(pause)

    return stroke


def pick_colour(page, rgb: tuple[int, int, int]) -> None:
    """Choose a class colour from the editor's fixed palette brush."""
    page.click("#editor button[aria-label='Color']")
    r, g, b = rgb
    page.locator(f"#editor button[style*='background-color: rgb({r}, {g}, {b})']").click()


def draw_a_facade(page) -> None:
    """Paint a facade from scratch with the app's palette brush, as a visitor would: the wall,
    a cornice, rows of windows with sills, a door and a shop band."""
    stroke = brush(page, steps=6)

    def fill(x0: float, y0: float, x1: float, y1: float, step: float = 0.035) -> None:
        y = y0
        while y <= y1:
            stroke([(x0, y), (x1, y)])
            y += step

    pick_colour(page, (0, 48, 255))  # facade
    fill(0.08, 0.10, 0.92, 0.97)
    pick_colour(page, (32, 255, 224))  # cornice
    fill(0.08, 0.12, 0.92, 0.15)
    pick_colour(page, (0, 128, 255))  # windows
    for row in (0.25, 0.45, 0.62):
        for col in (0.18, 0.36, 0.64, 0.82):
            fill(col - 0.04, row, col + 0.04, row + 0.1, 0.03)
    pick_colour(page, (112, 255, 144))  # sills
    for row in (0.37, 0.57, 0.74):
        for col in (0.18, 0.36, 0.64, 0.82):
            stroke([(col - 0.05, row), (col + 0.05, row)])
    pick_colour(page, (174, 0, 0))  # shop band
    fill(0.08, 0.82, 0.40, 0.95)
    fill(0.62, 0.82, 0.92, 0.95)
    pick_colour(page, (0, 208, 255))  # door
    fill(0.45, 0.80, 0.56, 0.97, 0.03)


def draw_a_shoe(page) -> None:
    """Draw a shoe on the blank canvas with the app's own brush (its default width), as a
    visitor would: sole, toe, heel, the opening and a few laces."""
    stroke = brush(page, steps=8, pause=0.2)

    outline = [(0.12, 0.70), (0.12, 0.52), (0.22, 0.45), (0.34, 0.44), (0.42, 0.30),
               (0.55, 0.30), (0.62, 0.42), (0.78, 0.50), (0.90, 0.58), (0.90, 0.70),
               (0.12, 0.70)]  # fmt: skip
    stroke(outline)
    stroke([(0.12, 0.64), (0.90, 0.64)])  # the sole
    stroke([(0.42, 0.30), (0.36, 0.40), (0.55, 0.40), (0.55, 0.30)])  # the opening
    for k in range(3):  # laces
        x = 0.58 + 0.05 * k
        stroke([(x, 0.42 + 0.02 * k), (x + 0.05, 0.47 + 0.02 * k)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=Path("docs/app.png"))
    parser.add_argument("--model", default="facades", help="a bundled model's name")
    parser.add_argument(
        "--from-example", action="store_true", help="edit an example instead of drawing"
    )
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
            if args.from_example:
                page.locator("#examples img").first.click()  # start from an example
                time.sleep(2)
                paint_a_window(page)
            elif args.model == "facades":
                draw_a_facade(page)  # by hand on the blank canvas
            else:
                draw_a_shoe(page)
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
