"""Rebuild a bundled model (models/facades, models/shoes) from a training run.

    python scripts/bundle_model.py facades [--checkpoint latest] [--wall-time "64 min"]
    python scripts/bundle_model.py shoes --wall-time "85 min"
    # the L1-only ablation: the same preset, with the run's overrides after the options
    python scripts/bundle_model.py facades --out outputs/facades_l1_bundle -- \\
        --model.recipe pix2pix --lambda_gan 0 --lambda_feat 0 --lambda_vgg 0 \\
        --output_dir outputs/facades_l1

Steps: export the checkpoint as an fp16 pipeline, encode the style bank (K-means), draw the
example inputs (procedurally: no dataset content), render the legend swatches and a gallery of
reference looks from them, evaluate on the held-out 10% of the training folder (style bank's
default style), and render the model card with the metrics.
Needs ../shared (data, VGG/LPIPS weights) and the `eval` extra.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "hf_pix2pixhd.cli"]


@dataclass(frozen=True)
class Bundle:
    config: str
    examples_script: str
    datasets: list[str]
    data_license: str
    baselines: dict[str, str]  # card row -> JSON of a baseline's evaluation in docs/results


BUNDLES = {
    "facades": Bundle(
        config="configs/facades_pix2pixhd_demo.yaml",
        examples_script="scripts/make_facade_examples.py",
        datasets=["huggan/facades"],
        data_license="CMP Facade Database (Tyleček and Šára, 2013): research use; "
        "see https://cmp.felk.cvut.cz/~tylecr1/facade/ for its terms.",
        baselines={
            "baseline: same G, L1 only, same steps": "docs/results/facades_l1_baseline.json",
            "baseline: nearest training photo": "docs/results/facades_nearest_baseline.json",
        },
    ),
    "shoes": Bundle(
        config="configs/shoes_pix2pixhd_demo.yaml",
        examples_script="scripts/make_shoe_examples.py",
        datasets=["huggan/edges2shoes"],
        data_license="UT Zappos50K (Yu and Grauman, 2014), edges by HED as in pix2pix: "
        "academic, non-commercial use; see https://vision.cs.utexas.edu/projects/finegrained/"
        "utzap50k/ for its terms.",
        baselines={},
    ),
}


def run(command: list[str]) -> None:
    print("+", shlex.join(command), flush=True)
    subprocess.run(command, cwd=REPO, check=True)


def describe_cpu() -> str:
    """e.g. "CPU: 2 cores of an AMD EPYC (AVX-512 BF16, no AMX), bf16 autocast"."""
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.is_file() else ""
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines()
                 if ln.startswith("model name")), "unknown")  # fmt: skip
    flags = set(text.split())
    if "amx_bf16" in flags:
        matrix = "AMX"
    elif "avx512_bf16" in flags:
        matrix = "AVX-512 BF16, no AMX"
    else:
        matrix = "no bf16 matrix instructions"
    return f"CPU: {os.cpu_count()} cores of an {name} ({matrix}), bf16 autocast"


def summary(metrics: dict) -> str:
    return (
        f"FID {metrics['fid']:.1f}, KID {metrics['kid_mean']:.4f}, "
        f"LPIPS-vgg {metrics['lpips_vgg']:.3f}, SSIM {metrics['ssim']:.3f}, "
        f"PSNR {metrics['psnr']:.2f}, L1 {metrics['l1']:.3f}"
    )


def epochs_done(config, step: int) -> str:
    """Passes over the training pairs after ``step`` optimizer steps (one process)."""
    from hf_pix2pixhd.data import build_dataset

    pairs = len(build_dataset(config.data))
    accumulation = config.gradient_accumulation_steps or 1  # None: as launched (1 here)
    return f"{step * config.batch_size * accumulation / pairs:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(BUNDLES))
    parser.add_argument("--checkpoint", default="latest")
    parser.add_argument("--out", type=Path, help="default: models/<name>")
    parser.add_argument("--wall-time", default=None, help="training wall time, for the card")
    parser.add_argument("--hardware", default=describe_cpu(), help="default: this machine")
    parser.add_argument(
        "overrides", nargs="*", help="the training run's config overrides, after --"
    )
    args = parser.parse_intermixed_args()  # the name, then options, then -- overrides
    bundle = BUNDLES[args.name]
    out = args.out or REPO / "models" / args.name
    staging = out.with_name(out.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    export = [*CLI, "export-pipeline", "--config", bundle.config, "--checkpoint", args.checkpoint]
    run([*export, "--out", str(staging), "--dtype", "float16", *args.overrides])
    run([*CLI, "encode-styles", "--model", str(staging), "--bf16"])
    run([sys.executable, bundle.examples_script, str(staging / "examples")])
    # Legend swatches as the model paints them, and a gallery of reference looks.
    run([sys.executable, "scripts/render_swatches.py", str(staging)])
    run([sys.executable, "scripts/make_references.py", str(staging)])

    from hf_pix2pixhd.training import load_config
    from hf_pix2pixhd.training.checkpoints import checkpoint_step, resolve_resume
    from hf_pix2pixhd.training.model_card import render_model_card

    config = load_config(bundle.config, args.overrides)
    evaluation = staging / "evaluation"
    run(
        [
            *CLI, "evaluate", "--model", str(staging), "--data", config.data.source,
            "--holdout-fraction", str(config.data.holdout_fraction), "--subset", "holdout",
            "--features", "default-style", "--lpips-weights", "../shared/weights",
            "--out", str(evaluation), "--no-progress",
        ]
    )  # fmt: skip
    report = json.loads((evaluation / "metrics.json").read_text())
    metrics = {
        k: (round(v, 4) if isinstance(v, float) else v) for k, v in report["metrics"].items()
    }
    metrics["images (held-out)"] = report["n_images"]
    metrics["setting"] = (
        f"{config.data.holdout_fraction:.0%} of {Path(config.data.source).name}/"
        f"{config.data.subset} held out by file-name hash, {config.data.crop_size}x"
        f"{config.data.crop_size}, default style"
    )
    for row, path in bundle.baselines.items():
        if (REPO / path).is_file():
            metrics[row] = summary(json.loads((REPO / path).read_text())["metrics"])
    checkpoints = REPO / config.output_dir / "checkpoints"
    step = checkpoint_step(resolve_resume(args.checkpoint, checkpoints))
    command = shlex.join(
        ["accelerate", "launch", "--num_processes", "1", "--mixed_precision", "bf16",
         "train_accelerate.py", "--config", bundle.config, *args.overrides]
    ) + f" (then: python scripts/bundle_model.py {args.name})"  # fmt: skip
    # The held-out grid is the card's sample image; keep one copy.
    (evaluation / "samples.png").replace(staging / "samples.png")
    hardware = args.hardware + (f"; {args.wall_time} of training" if args.wall_time else "")
    render_model_card(
        config,
        staging,
        metrics,
        extra={
            "steps": step,
            "epochs": epochs_done(config, step),
            "repo_id": f"models/{args.name}",
            "datasets": bundle.datasets,
            "keep_samples": True,
            "command": command,
            "hardware": hardware,
            "data_license": bundle.data_license,
        },
    )
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    print(f"bundled {out} ({size:.1f} MiB): {json.dumps(metrics)}")


if __name__ == "__main__":
    main()
