"""Replace a bundled model's style swatches with the colours the model really paints, and print
its style spread.

    python scripts/render_swatches.py models/facades

For each class and cluster of the style bank, the swatch becomes the mean output colour inside
the class's regions of the model's examples (``examples/*.png``) when that cluster is chosen
(:func:`hf_pix2pixhd.evaluation.rendered_swatches`); classes the examples lack keep the training
photos' mean colour. The app's legend shows these swatches. Prints the style spread
(:func:`hf_pix2pixhd.evaluation.style_spread`) as JSON on the last line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors import safe_open

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from hf_pix2pixhd.evaluation import rendered_swatches, style_spread
from hf_pix2pixhd.hub import drop_load_paths
from hf_pix2pixhd.pipeline import Pix2PixHDPipeline

WEIGHTS = "diffusion_pytorch_model.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a pipeline folder with examples/*.png")
    args = parser.parse_args()
    pipe = Pix2PixHDPipeline.from_pretrained(args.model)
    if pipe.style_bank is None:
        raise SystemExit(f"error: {args.model} has no style bank (run encode-styles first)")
    examples = [str(p) for p in sorted((args.model / "examples").glob("*.png"))]
    if not examples:
        raise SystemExit(f"error: {args.model}/examples holds no PNG examples to render")
    bank = pipe.style_bank
    swatches = rendered_swatches(pipe, examples, autocast_dtype=torch.bfloat16)
    with torch.no_grad():
        bank.swatches.copy_(swatches)
    # Keep the stored precision (bundles are fp16; from_pretrained loads them as fp32).
    with safe_open(args.model / "style_bank" / WEIGHTS, "pt") as stored:
        dtype = stored.get_slice("centers").get_dtype()
    bank.to({"F16": torch.float16, "BF16": torch.bfloat16}.get(dtype, torch.float32))
    bank.save_pretrained(args.model / "style_bank")
    drop_load_paths(args.model)
    spread = style_spread(pipe, examples, autocast_dtype=torch.bfloat16)
    print(json.dumps({"style_spread": round(spread.score, 4), "per_example": spread.per_example}))


if __name__ == "__main__":
    main()
