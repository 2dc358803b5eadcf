"""Bundle a small gallery of reference looks with a model: ``references/ref_K.png`` photos,
with ``ref_K_labels.png`` label maps for label-map models.

    python scripts/make_references.py models/facades [--count 4]

The photos are rendered by the model itself from its own examples (``examples/*.png``), each in
a different random style (seeded), so the gallery holds no dataset content. In the app, picking
one encodes the photo with the model's encoder (per class, over its label map; one global code
for sketch models) and paints those looks onto the visitor's drawing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from hf_pix2pixhd.pipeline import Pix2PixHDPipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a pipeline folder with examples/*.png")
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    pipe = Pix2PixHDPipeline.from_pretrained(args.model)
    if pipe.style_bank is None:
        raise SystemExit(f"error: {args.model} has no style bank: nothing to pick a look from")
    examples = sorted((args.model / "examples").glob("*.png"))
    if not examples:
        raise SystemExit(f"error: {args.model}/examples holds no PNG examples")
    out = args.model / "references"
    out.mkdir(exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    for k in range(args.count):
        example = PIL.Image.open(examples[k % len(examples)]).convert("RGB")
        generator = torch.Generator().manual_seed(args.seed + k)
        photo = pipe(example, style="random", generator=generator).images[0]
        photo.save(out / f"ref_{k}.png")
        if pipe.config.input_kind == "labels":
            ids = pipe.label_ids(example)[0, 0].numpy()
            colours = np.asarray(pipe.palette.colors, np.uint8)[ids]
            PIL.Image.fromarray(colours).save(out / f"ref_{k}_labels.png")
    print(f"wrote {args.count} references to {out}")


if __name__ == "__main__":
    main()
