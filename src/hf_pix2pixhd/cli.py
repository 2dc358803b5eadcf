"""The ``hf-pix2pixhd`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
          "bfloat16": "bfloat16", "bf16": "bfloat16"}  # fmt: skip


def _add_convert(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="Convert an official pix2pix / pix2pixHD checkpoint (.pth) to a model directory.",
        description=(
            "Detect the network from the checkpoint's keys and write a save_pretrained model "
            "directory (config.json + safetensors). With --pipeline, write a whole inference "
            "pipeline around a converted generator instead."
        ),
    )
    parser.add_argument("checkpoint", type=Path, help="latest_net_G.pth, _D.pth or _E.pth")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--arch", help="force the architecture instead of detecting it")
    parser.add_argument(
        "--no-dropout",
        action="store_true",
        help="the U-Net / ResNet was trained with --no_dropout (weights cannot tell)",
    )
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    group = parser.add_argument_group("pipeline (generators only)")
    group.add_argument("--pipeline", action="store_true", help="write a Pix2PixHDPipeline")
    group.add_argument("--input-kind", default="rgb", choices=["rgb", "sketch", "labels"])
    group.add_argument("--label-nc", type=int, default=0, help="classes, for --input-kind labels")
    group.add_argument("--instance-map", action="store_true", help="G takes instance boundaries")
    group.add_argument("--encoder", type=Path, help="latest_net_E.pth, for feature channels")
    group.add_argument("--feature-nc", type=int, default=0, help="encoder feature channels in G")


def _run_convert(args: argparse.Namespace) -> int:
    import torch

    from .convert import convert_official_checkpoint

    overrides = {"use_dropout": False} if args.no_dropout else {}
    model = convert_official_checkpoint(args.checkpoint, arch=args.arch, **overrides)
    dtype = getattr(torch, DTYPES[args.dtype])
    model = model.to(dtype)
    if not args.pipeline:
        model.save_pretrained(args.out)
        print(f"{type(model).__name__} {json.dumps(dict(model.config))}")
        print(f"wrote {args.out}")
        return 0

    from .models import FeatureEncoder
    from .pipeline import Pix2PixHDPipeline

    encoder = None
    if args.encoder is not None:
        encoder = convert_official_checkpoint(args.encoder, arch="encoder").to(dtype)
        if not isinstance(encoder, FeatureEncoder):
            raise SystemExit(f"{args.encoder} is not a feature encoder checkpoint.")
    pipe = Pix2PixHDPipeline(
        translator=model,
        encoder=encoder,
        input_kind=args.input_kind,
        label_nc=args.label_nc,
        use_instance_map=args.instance_map,
        feature_nc=args.feature_nc,
    )
    pipe.save_pretrained(args.out)
    print(f"Pix2PixHDPipeline with {type(model).__name__} {json.dumps(dict(model.config))}")
    print(f"wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-pix2pixhd", description="pix2pix and pix2pixHD, the Hugging Face way."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_convert(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"convert": _run_convert}
    try:
        return handlers[args.command](args)
    except (ValueError, FileNotFoundError) as error:
        # Our errors already say what is wrong and how to fix it: no traceback for users.
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
