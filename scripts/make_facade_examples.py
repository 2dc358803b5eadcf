"""Draw example facade label maps (procedurally: no dataset content) for a bundled model.

python scripts/make_facade_examples.py models/facades/examples
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import PIL.Image

from hf_pix2pixhd.labels import FACADES_PALETTE

NAMES = list(FACADES_PALETTE.names)


def facade(seed: int, size: int = 256) -> np.ndarray:
    """A facade: sky, wall, storeys of windows with sills (and blinds or balconies), cornice,
    a shop or a door on the ground floor, optional pillars."""
    rng = np.random.default_rng(seed)
    c = {name: NAMES.index(name) for name in NAMES}
    ids = np.full((size, size), c["facade"], dtype=np.int64)
    roof = int(rng.integers(8, 40))
    ids[:roof] = c["background"]
    ids[roof : roof + 6] = c["cornice"]
    storeys = int(rng.integers(3, 6))
    ground = size - int(rng.integers(40, 60))
    height = (ground - roof - 10) // storeys
    columns = int(rng.integers(3, 6))
    pitch = size // columns
    width = int(pitch * rng.uniform(0.35, 0.55))
    extra = rng.choice(["blind", "balcony", "molding", "deco"])
    for s in range(storeys):
        top = roof + 12 + s * height
        window_h = int(height * 0.55)
        for k in range(columns):
            left = k * pitch + (pitch - width) // 2
            ids[top : top + window_h, left : left + width] = c["window"]
            ids[top + window_h : top + window_h + 4, left - 2 : left + width + 2] = c["sill"]
            if extra == "blind":
                ids[top : top + window_h // 3, left : left + width] = c["blind"]
            elif extra == "balcony" and s % 2 == 1:
                ids[top + window_h - 10 : top + window_h + 4, left - 6 : left + width + 6] = c[
                    "balcony"
                ]
            elif extra == "deco":
                ids[top - 6 : top - 2, left : left + width] = c["deco"]
        if extra == "molding":
            ids[top - 4 : top - 1] = c["molding"]
    if rng.random() < 0.5:
        for k in range(columns + 1):
            x = min(size - 4, k * pitch)
            ids[roof + 6 : ground, x : x + 4] = c["pillar"]
    if rng.random() < 0.6:
        ids[ground:] = c["shop"]
    door = int(rng.integers(pitch // 2, size - pitch))
    ids[ground + 8 :, door : door + 24] = c["door"]
    return ids


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "examples")
    out.mkdir(parents=True, exist_ok=True)
    for seed in range(4):
        image = PIL.Image.fromarray(FACADES_PALETTE.ids_to_colors(facade(seed)))
        image.save(out / f"facade_{seed}.png")
    print(f"wrote 4 examples to {out}")


if __name__ == "__main__":
    main()
