"""Robustness of a bundled model to inputs as people draw them: held-out FID / KID with the
sketches redrawn at 1, 3 and 5 px (or the label maps simplified to boxes), and the style spread.

    python bench/robustness.py --model models/shoes   [--widths 1 3 5] [--max-samples N]
    python bench/robustness.py --model models/facades

The held-out split is the model's own (``training_config.json``: data source, direction,
``holdout_fraction``), at 256x256, with the style bank's default style, as `hf-pix2pixhd
evaluate --features default-style`. Each redrawn sketch is thinned to its centre lines and drawn
``w`` px wide (at 256 px); the pipeline then does what it does for any input (sketch models that
record a ``stroke_width`` redraw it again at that width). "boxes" turns every label region
between 0.1% and 25% of the image into its bounding box (:func:`hf_pix2pixhd.drawn.label_boxes`).
The style spread is :func:`hf_pix2pixhd.evaluation.style_spread` over the model's examples.
Peak RSS is the process's high-water mark after each row (it only grows).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from hf_pix2pixhd.data import DataConfig, build_dataset
from hf_pix2pixhd.drawn import (
    coverage_to_sketch,
    ink_mask,
    label_boxes,
    render_strokes,
    stroke_skeleton,
)
from hf_pix2pixhd.evaluation import evaluate_pipeline, style_spread
from hf_pix2pixhd.evaluation.command import default_style_features
from hf_pix2pixhd.pipeline import Pix2PixHDPipeline

REPO = Path(__file__).resolve().parents[1]


class Redrawn(torch.utils.data.Dataset):
    """A dataset whose items' inputs pass through ``change`` (an item dict -> item dict)."""

    def __init__(self, base, change: Callable[[dict], dict]) -> None:
        self.base, self.change = base, change

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        return self.change(dict(self.base[index]))


def redraw_at(width: float) -> Callable[[dict], dict]:
    def change(item: dict) -> dict:
        sketch = item["input"].numpy()
        scale = min(sketch.shape[-2:]) / 256.0
        skeleton = stroke_skeleton(ink_mask(sketch))
        redrawn = coverage_to_sketch(render_strokes(skeleton, max(1.0, width * scale)))
        item["input"] = torch.from_numpy(redrawn)
        return item

    return change


def boxes(item: dict) -> dict:
    item["label"] = torch.from_numpy(label_boxes(item["label"][0].numpy()))[None]
    return item


def describe_cpu() -> str:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in flags.splitlines()
                  if line.startswith("model name")), platform.processor())  # fmt: skip
    kind = "AMX" if "amx_bf16" in flags else "AVX-512 BF16" if "avx512_bf16" in flags else "no bf16"
    return f"{model} ({kind}), {torch.get_num_threads()} threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/shoes")
    parser.add_argument("--widths", type=float, nargs="+", default=[1.0, 3.0, 5.0])
    parser.add_argument("--max-samples", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()

    folder = Path(args.model)
    pipe = Pix2PixHDPipeline.from_pretrained(folder)
    trained = json.loads((folder / "training_config.json").read_text())["data"]
    source = Path(trained["source"])
    if not source.is_absolute() and not source.exists():
        source = REPO / source
    kind = pipe.config.input_kind
    data = DataConfig(
        source=str(source), direction=trained["direction"], input_kind=kind,
        label_nc=trained["label_nc"], palette=trained["palette"], preprocess="resize",
        load_size=256, crop_size=256, flip=False, holdout_fraction=trained["holdout_fraction"],
        subset="holdout", max_samples=args.max_samples,
    )  # fmt: skip
    held_out = build_dataset(data)
    conditions: list[tuple[str, Callable[[dict], dict] | None]] = [("as in the data", None)]
    if kind == "sketch":
        conditions += [(f"redrawn at {w:g} px", redraw_at(w)) for w in args.widths]
    elif kind == "labels":
        conditions += [("boxes", boxes)]
    features = default_style_features(pipe) if pipe.config.feature_nc else None
    print(f"{folder} on {len(held_out)} held-out images; CPU: {describe_cpu()}")
    rows = []
    for name, change in conditions:
        start = time.perf_counter()
        dataset = held_out if change is None else Redrawn(held_out, change)
        report = evaluate_pipeline(
            pipe, dataset, metrics=["fid", "kid"], batch_size=args.batch_size,
            features_fn=features,
        )  # fmt: skip
        rows.append({
            "condition": name, "fid": report["metrics"]["fid"],
            "kid": report["metrics"]["kid_mean"], "seconds": time.perf_counter() - start,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        })  # fmt: skip
        print(rows[-1], flush=True)
    spread = None
    if pipe.style_bank is not None:
        examples = [str(p) for p in sorted((folder / "examples").glob("*.png"))]
        spread = style_spread(pipe, examples, autocast_dtype=torch.bfloat16).score
    base = rows[0]["fid"]
    print("\n| condition | FID | vs data | KID | s | peak RSS MiB |\n|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['condition']} | {row['fid']:.1f} | {row['fid'] / base - 1:+.0%} | "
              f"{row['kid']:.4f} | {row['seconds']:.0f} | {row['peak_rss_mib']:.0f} |")  # fmt: skip
    if spread is not None:
        print(f"\nstyle spread over the {folder.name} examples: {spread:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "style_spread": spread}, indent=2))


if __name__ == "__main__":
    main()
