"""Quickstart: build a pix2pixHD pipeline, save it, load it back, and translate a label map.

The weights are untrained until the bundled demo models land, so the output is noise-like; this
shows the API end to end. With ../shared present, it also converts an official pix2pixHD
checkpoint and checks it against the official output.

    python examples/quickstart.py [--out outputs/quickstart]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from hf_pix2pixhd import GlobalGenerator
from hf_pix2pixhd.labels import FACADES_PALETTE
from hf_pix2pixhd.pipeline import Pix2PixHDPipeline

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def facade_label_map(height: int = 256, width: int = 256) -> np.ndarray:
    """A simple facade drawn in class ids: wall, a grid of windows, a door, a cornice."""
    names = list(FACADES_PALETTE.names)
    ids = np.full((height, width), names.index("facade"), dtype=np.int64)
    ids[: height // 10] = names.index("background")
    ids[height // 10 : height // 10 + 8] = names.index("cornice")
    for top in range(height // 5, height - 80, 48):
        for left in range(24, width - 40, 56):
            ids[top : top + 30, left : left + 28] = names.index("window")
    ids[height - 70 :, width // 2 - 20 : width // 2 + 20] = names.index("door")
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/quickstart"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    palette = FACADES_PALETTE
    translator = GlobalGenerator(
        in_channels=palette.num_classes, ngf=16, n_downsampling=3, n_blocks=3
    )
    pipe = Pix2PixHDPipeline(
        translator, input_kind="labels", label_nc=palette.num_classes, palette=palette
    )
    pipe.save_pretrained(args.out / "pipeline")
    pipe = Pix2PixHDPipeline.from_pretrained(args.out / "pipeline")

    ids = facade_label_map()
    label_image = PIL.Image.fromarray(palette.ids_to_colors(ids))
    label_image.save(args.out / "labels.png")
    # Colour label maps go through the palette; odd sizes are padded and cropped back.
    photo = pipe(label_image.crop((0, 0, 250, 230)), autocast_dtype=torch.bfloat16).images[0]
    photo.save(args.out / "output.png")
    print(f"saved the pipeline to {args.out / 'pipeline'} and a {photo.size} output beside it")

    fixture = SHARED / "fixtures" / "official" / "pix2pixhd_global.pth"
    if fixture.is_file():
        from safetensors.torch import load_file

        from hf_pix2pixhd.convert import convert_official_checkpoint

        model = convert_official_checkpoint(fixture)
        io = load_file(fixture.with_name("pix2pixhd_global.io.safetensors"))
        with torch.no_grad():
            error = (model(io["input_0"]) - io["output_0"]).abs().max().item()
        print(
            f"official pix2pixHD global G converted: max abs error vs official output {error:.1e}"
        )


if __name__ == "__main__":
    main()
