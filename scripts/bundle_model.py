"""Rebuild the bundled models/facades from a run of configs/facades_pix2pixhd_demo.yaml.

    python scripts/bundle_facades.py [--checkpoint latest] [--wall-time "62 min"]

Steps: export the checkpoint as an fp16 pipeline, encode the style bank (K-means per class),
draw the example label maps, evaluate on the held-out 10% of facades/train (style bank's default
style), and render the model card with the metrics. Needs ../shared (data, VGG/LPIPS weights)
and the `eval` extra.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "facades_pix2pixhd_demo.yaml"
CLI = [sys.executable, "-m", "hf_pix2pixhd.cli"]


def run(command: list[str]) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, cwd=REPO, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=CONFIG, help="the run's YAML preset")
    parser.add_argument("--checkpoint", default="latest")
    parser.add_argument("--out", type=Path, default=REPO / "models" / "facades")
    parser.add_argument("--wall-time", default=None, help="training wall time, for the card")
    parser.add_argument("--hardware", default="CPU, 2 cores with AMX, bf16 autocast")
    args = parser.parse_args()
    staging = args.out.with_name(args.out.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    run(
        [
            *CLI,
            "export",
            "--config",
            str(args.config),
            "--checkpoint",
            args.checkpoint,
            "--out",
            str(staging),
            "--dtype",
            "float16",
        ]
    )
    run([*CLI, "encode-styles", "--model", str(staging), "--bf16"])
    run([sys.executable, "scripts/make_facade_examples.py", str(staging / "examples")])
    evaluation = staging / "evaluation"
    run(
        [
            *CLI,
            "evaluate",
            "--model",
            str(staging),
            "--data",
            "../shared/data/facades",
            "--holdout-fraction",
            "0.1",
            "--subset",
            "holdout",
            "--features",
            "default-style",
            "--lpips-weights",
            "../shared/weights",
            "--out",
            str(evaluation),
            "--no-progress",
        ]
    )

    from hf_pix2pixhd.training import load_config
    from hf_pix2pixhd.training.model_card import render_model_card

    report = json.loads((evaluation / "metrics.json").read_text())
    metrics = {
        k: (round(v, 4) if isinstance(v, float) else v) for k, v in report["metrics"].items()
    }
    metrics["images (held-out)"] = report["n_images"]
    metrics["setting"] = "10% of facades/train held out by file-name hash, 256x256, default style"
    baseline = REPO / "docs" / "results" / "facades_nearest_baseline.json"
    if baseline.is_file():
        b = json.loads(baseline.read_text())["metrics"]
        metrics["baseline: nearest training photo"] = (
            f"FID {b['fid']:.1f}, KID {b['kid_mean']:.4f}, LPIPS-vgg {b['lpips_vgg']:.3f}, "
            f"SSIM {b['ssim']:.3f}, PSNR {b['psnr']:.2f}, L1 {b['l1']:.3f}"
        )
    training = json.loads((staging / "training_config.json").read_text())
    steps = sorted((REPO / training["output_dir"] / "checkpoints").glob("checkpoint-*"))
    step = (args.checkpoint if args.checkpoint != "latest" else steps[-1].name).split("-")[-1]
    command = (
        "accelerate launch --num_processes 1 --mixed_precision bf16 train_accelerate.py "
        "--config configs/facades_pix2pixhd_demo.yaml (then: python scripts/bundle_facades.py)"
    )
    # The held-out grid is the card's sample image; keep one copy.
    (evaluation / "samples.png").replace(staging / "samples.png")
    hardware = args.hardware + (f"; {args.wall_time} of training" if args.wall_time else "")
    render_model_card(
        load_config(args.config),
        staging,
        metrics,
        extra={
            "steps": step,
            "epochs": int(step) // 360 if str(step).isdigit() else None,  # 360 images, batch 1
            "repo_id": "models/facades",
            "datasets": ["huggan/facades"],
            "keep_samples": True,
            "command": command,
            "hardware": hardware,
            "data_license": "CMP Facade Database (Tyleček and Šára, 2013): research use; "
            "see https://cmp.felk.cvut.cz/~tylecr1/facade/ for its terms.",
        },
    )

    shutil.rmtree(args.out, ignore_errors=True)
    staging.rename(args.out)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file()) / 2**20
    print(f"bundled {args.out} ({size:.1f} MiB): {json.dumps(metrics)}")


if __name__ == "__main__":
    main()
