"""Draw example shoe sketches (procedurally: no dataset content) for a bundled sketch model.

python scripts/make_shoe_examples.py models/shoes/examples

Like edges2shoes' edge maps: thin black strokes on white, 256x256, a shoe seen from the side
with the toe to the right: outline, sole, heel, collar opening, a vamp seam, and laces or a
strap, with some jitter in every stroke.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw


def _smooth(points: np.ndarray, samples: int = 200) -> list[tuple[float, float]]:
    """A closed Catmull-Rom curve through ``points`` (N, 2), as a polyline."""
    n = len(points)
    out = []
    for i in range(n):
        p0, p1, p2, p3 = (points[(i + k) % n] for k in (-1, 0, 1, 2))
        for t in np.linspace(0, 1, samples // n, endpoint=False):
            t2, t3 = t * t, t * t * t
            q = 0.5 * (
                2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2
                + (-p0 + 3 * p1 - 3 * p2 + p3) * t3
            )  # fmt: skip
            out.append((float(q[0]), float(q[1])))
    out.append(out[0])
    return out


def shoe(seed: int, size: int = 256) -> PIL.Image.Image:
    """One sketch: an RGB image, black strokes on white."""
    rng = np.random.default_rng(seed)
    s = size / 256
    top = rng.uniform(60, 100)  # collar height: sneaker / boot-ish vs. low shoe
    toe = rng.uniform(200, 235)
    sole = rng.uniform(185, 200)
    outline = np.array(
        [
            (22, sole - 10), (20, top + 20), (45, top), (95, top + 12),  # heel and collar
            (130, top + 35), (175, sole - 70), (toe, sole - 40),  # vamp down to the toe
            (toe + 10, sole - 12), (toe - 15, sole), (110, sole + 2), (40, sole),  # sole
        ]
    ) + rng.normal(0, 2.0, (11, 2))  # fmt: skip
    image = PIL.Image.new("RGB", (size, size), "white")
    draw = PIL.ImageDraw.Draw(image)
    ink, width = (0, 0, 0), max(1, round(s))  # edge maps are ~1 px thin
    draw.line([(x * s, y * s) for x, y in _smooth(outline)], fill=ink, width=width)
    # The sole's upper edge and the heel block.
    sole_top = sole - rng.uniform(8, 16)
    draw.line([(24 * s, sole_top * s), ((toe - 5) * s, (sole_top - 4) * s)], fill=ink, width=width)
    if rng.random() < 0.6:
        draw.line([(55 * s, sole_top * s), (55 * s, sole * s)], fill=ink, width=width)
    # The collar opening, and the seam where the vamp meets the quarter.
    collar = np.array([(35, top + 8), (80, top + 14), (92, top + 26), (45, top + 22)])
    draw.line([(x * s, y * s) for x, y in _smooth(collar, 80)], fill=ink, width=width)
    seam_x = rng.uniform(95, 120)
    draw.line(
        [(seam_x * s, (top + 25) * s), ((seam_x + 10) * s, (sole_top - 5) * s)],
        fill=ink, width=width,
    )  # fmt: skip
    if rng.random() < 0.65:  # laces: crossing strokes down the instep
        for k in range(int(rng.integers(3, 6))):
            x, y = 105 + 13 * k, top + 25 + 12 * k
            draw.line([(x * s, y * s), ((x + 14) * s, (y - 8) * s)], fill=ink, width=width)
            draw.ellipse([(x - 2) * s, (y - 2) * s, (x + 2) * s, (y + 2) * s], outline=ink)
    else:  # a strap across the instep
        y = top + rng.uniform(35, 50)
        draw.line([(100 * s, y * s), (150 * s, (y + 18) * s)], fill=ink, width=width)
        draw.line([(104 * s, (y + 9) * s), (146 * s, (y + 27) * s)], fill=ink, width=width)
    if rng.random() < 0.5:  # a toe cap
        draw.arc([(toe - 55) * s, (sole - 70) * s, (toe + 5) * s, (sole - 5) * s], 200, 300,
                 fill=ink, width=width)  # fmt: skip
    return image


def main(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for seed in range(4):
        shoe(seed).save(out / f"shoe_{seed}.png")
    print(f"wrote 4 sketches to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "models/shoes/examples")
