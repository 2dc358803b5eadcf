"""The ``hf-pix2pixhd`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .evaluation.command import add_evaluate_parser, run_evaluate
from .space import add_make_space_parser, run_make_space

if TYPE_CHECKING:  # the heavy imports wait until a command needs them
    from .data import DataConfig
    from .pipeline import Pix2PixHDPipeline

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
    _check_writable(args.out)  # save_pretrained only logs a file in the way, and returns
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


# -- encode-styles --------------------------------------------------------------------------

# Data options of encode-styles: (flag, DataConfig field, type, help).
_DATA_OPTIONS = (
    ("--layout", "layout", str, "auto | hub | aligned | pix2pixhd"),
    ("--split", "split", str, "split name (folder <split>/ or <split>_label/)"),
    ("--direction", "direction", str, "AtoB | BtoA (BtoA: labels are the B images)"),
    ("--column-a", "column_a", str, "hub image column A"),
    ("--column-b", "column_b", str, "hub image column B"),
    ("--palette", "palette", str, "facades | cityscapes (default: the model's palette)"),
    ("--label-nc", "label_nc", int, "number of classes (default: the model's)"),
    ("--preprocess", "preprocess", str, "resize | scale_width | none | ... as in training"),
    ("--load-size", "load_size", int, "resize target"),
    ("--crop-size", "crop_size", int, "crop side, for the *crop preprocess modes"),
    ("--max-samples", "max_samples", int, "encode only the first N samples"),
)


def _add_encode_styles(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "encode-styles",
        help="Encode a dataset with the model's feature encoder and cluster styles per class.",
        description=(
            "Run the pipeline's feature encoder over a label-map dataset, take one feature per "
            "instance (connected regions of a class where there are no instance maps), run "
            "K-means per class and save the pipeline with the resulting style bank. For sketch "
            "and rgb models every photo is one instance of a single class 'style' (the whole "
            "image), so the styles are global colour and texture codes. Data options default "
            "to the training run's (training_config.json in the model folder), without flips."
        ),
    )
    parser.add_argument("--model", type=Path, required=True, help="pipeline folder")
    parser.add_argument("--data", help="folder, data files or Hub id (default: the training's)")
    group = parser.add_argument_group("data")
    for flag, _, kind, text in _DATA_OPTIONS:
        group.add_argument(flag, type=kind, help=text)
    group.add_argument(
        "--instance-map",
        action=argparse.BooleanOptionalAction,
        help="read instance maps (<split>_inst); default: the model's use_instance_map",
    )
    group = parser.add_argument_group("styles")
    group.add_argument("--n-clusters", type=int, default=10, help="clusters per class at most")
    group.add_argument(
        "--feature",
        choices=["centre", "mean"],
        default="centre",
        help="instance feature: centre pixel (official) or instance mean",
    )
    group.add_argument(
        "--min-area",
        type=float,
        default=1 / 64,
        help="keep instances larger than this fraction of the image (official: 1/64)",
    )
    group.add_argument("--seed", type=int, default=0, help="K-means seed")
    group.add_argument("--batch-size", type=int, default=8, help="images per encoder pass")
    group.add_argument("--num-workers", type=int, default=0, help="data loading workers")
    group.add_argument("--bf16", action="store_true", help="encode under bf16 autocast")
    group.add_argument("--device", help="cpu, cuda, ... (default: cuda if available)")
    parser.add_argument("--out", type=Path, help="output pipeline folder (default: --model)")


def _device(name: str | None) -> str:
    import torch

    return name or ("cuda" if torch.cuda.is_available() else "cpu")


def _load_pipeline(model: str | Path, device: str) -> Pix2PixHDPipeline:
    from .pipeline import Pix2PixHDPipeline

    try:
        pipe = Pix2PixHDPipeline.from_pretrained(model)
    except OSError as error:  # missing folder, unknown Hub id, offline
        raise ValueError(f"Could not load a pipeline from {str(model)!r}: {error}") from error
    return pipe.to(device)


def _styles_data_config(
    args: argparse.Namespace, pipe: Pix2PixHDPipeline, multiple: int
) -> DataConfig:
    """The training run's data options (if recorded), then the command line's, for encoding."""
    from .data import DataConfig

    recorded = Path(args.model) / "training_config.json"
    values = json.loads(recorded.read_text()).get("data", {}) if recorded.is_file() else {}
    if "preprocess" not in values:
        values["preprocess"] = "none"  # images at their own size unless told otherwise
    for _, field, _, _ in _DATA_OPTIONS:
        if getattr(args, field) is not None:
            values[field] = getattr(args, field)
    if args.data is not None:
        values["source"] = args.data
    if not values.get("source"):
        raise ValueError("No dataset: pass --data PATH (the model records no training data).")
    if args.instance_map is not None:
        values["use_instance_map"] = args.instance_map
    if pipe.config.input_kind == "labels":
        values.setdefault("use_instance_map", pipe.config.use_instance_map)
        values.setdefault("label_nc", pipe.config.label_nc)
        if values.get("palette") is None:
            values["palette"] = pipe.config.palette
    values.update(
        input_kind=pipe.config.input_kind,
        flip=False,
        streaming=False,
        size_multiple=max(int(values.get("size_multiple", 1)), multiple),
    )
    return DataConfig(**values)


def _stored_dtype(model: Path):
    """The dtype the pipeline's translator weights are stored in (e.g. fp16 for a bundle)."""
    import torch
    from safetensors import safe_open

    names = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}
    weights = sorted((Path(model) / "translator").glob("*.safetensors"))
    if not weights:
        return torch.float32
    with safe_open(weights[0], "pt") as handle:
        first = next(iter(handle.keys()))
        return names.get(handle.get_slice(first).get_dtype(), torch.float32)


def _save_pipeline(pipe: Pix2PixHDPipeline, out: Path, model: Path) -> None:
    """Save in the precision the model was stored in; over the model's own folder, save beside
    it and move the files in one by one, so weights the loaded pipeline may still map from disk
    are never overwritten in place."""
    pipe.to(_stored_dtype(model))
    if out.resolve() != model.resolve():
        pipe.save_pretrained(out)
        return
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as staging:
        pipe.save_pretrained(staging)
        for file in sorted(Path(staging).rglob("*")):
            if file.is_file():
                target = out / file.relative_to(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(file, target)


def _run_encode_styles(args: argparse.Namespace) -> int:
    import torch

    from .data import build_dataset
    from .styles import build_style_bank

    if not (args.model / "model_index.json").is_file():
        raise FileNotFoundError(f"{args.model} is not a pipeline folder (no model_index.json).")
    pipe = _load_pipeline(args.model, _device(args.device))
    if pipe.encoder is None:
        raise ValueError(
            f"The pipeline in {args.model} has no feature encoder: styles need a pix2pixHD "
            "model trained with model.use_encoder=true."
        )
    if not pipe.config.feature_nc:
        raise ValueError("Styles need a pipeline whose generator takes features (feature_nc > 0).")
    multiple = max(pipe.size_multiple, pipe.encoder.size_multiple)
    dataset = build_dataset(_styles_data_config(args, pipe, multiple))
    bank = build_style_bank(
        pipe.encoder,
        dataset,
        pipe.num_style_classes,
        n_clusters=args.n_clusters,
        feature=args.feature,
        min_area_fraction=args.min_area,
        seed=args.seed,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        autocast_dtype=torch.bfloat16 if args.bf16 else None,
    )
    pipe.set_style_bank(bank.to(pipe.device))
    out = args.out or args.model
    _save_pipeline(pipe, out, args.model)
    names = pipe.style_class_names or [str(i) for i in range(pipe.num_style_classes)]
    counts = {n: int(c) for n, c in zip(names, bank.num_clusters, strict=True) if c}
    print(f"styles per class: {json.dumps(counts)}")
    print(f"wrote {out}")
    return 0


# -- translate ------------------------------------------------------------------------------


def _add_translate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "translate",
        help="Translate label maps / sketches / images to photos (PNG), optionally styled.",
        description=(
            "Run a pipeline over files and folders (searched recursively) and write one PNG "
            "per input and style to --out, keeping folder structure. With several styles the "
            "files are named <name>_style<k>.png."
        ),
    )
    parser.add_argument("inputs", nargs="+", type=Path, help="image files or folders")
    parser.add_argument("--model", required=True, help="pipeline folder or Hub id")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    group = parser.add_argument_group("styles (models with a feature encoder)")
    group.add_argument(
        "--style",
        action="append",
        help="random | default | CLASS=IDX,... (class names or ids; style=IDX for sketch / rgb "
        "models); repeat for several styles",
    )
    group.add_argument("--num-styles", type=int, default=1, help="random styles to draw")
    group.add_argument("--seed", type=int, help="seed for --style random")
    group.add_argument("--style-image", type=Path, help="reference photo")
    group.add_argument(
        "--style-labels",
        type=Path,
        help="the reference photo's label map (label-map models; sketch / rgb models take the "
        "photo alone)",
    )
    group.add_argument(
        "--style-mix", help="alpha (or alphas a,b,...) to interpolate between two styles"
    )
    parser.add_argument("--bf16", action="store_true", help="run under bf16 autocast")
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda if available)")


def parse_style(text: str) -> str | dict[str, int]:
    """``"random"``, ``"default"`` or ``"sky=2,building=0,3=1"`` (names or ids) for the pipeline."""
    text = text.strip()
    if text in ("random", "default"):
        return text
    choice: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.rpartition("=")
        if not sep or not key.strip():
            raise ValueError(
                f"Cannot read style {text!r}: use random, default or CLASS=IDX,... "
                "(e.g. sky=2,3=0)."
            )
        try:
            choice[key.strip()] = int(value)
        except ValueError:
            raise ValueError(f"Style {part!r}: the cluster index must be an integer.") from None
    if not choice:
        raise ValueError(f"Cannot read style {text!r}: it names no class.")
    return choice


def _collect_inputs(paths: Sequence[Path]) -> list[tuple[Path, Path]]:
    """``(file, output stem relative to --out)`` for files and the images inside folders."""
    from .data import IMAGE_EXTENSIONS

    found: list[tuple[Path, Path]] = []
    for path in paths:
        if path.is_dir():
            files = sorted(
                f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not files:
                raise ValueError(f"{path} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}).")
            found += [(f, f.relative_to(path).with_suffix("")) for f in files]
        elif path.is_file():
            found.append((path, Path(path.stem)))
        else:
            raise FileNotFoundError(f"Input {path} does not exist.")
    stems: dict[Path, Path] = {}
    for file, stem in found:
        if stem in stems:
            raise ValueError(f"{stems[stem]} and {file} would both be written as {stem}.png.")
        stems[stem] = file
    return found


def _check_writable(folder: Path) -> None:
    """Create ``folder`` and check a file can be written there, before any work is done."""
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"The output folder {folder} is a file; give a folder (--out).")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ValueError(f"Cannot write to the output folder {folder}: {reason}.") from error


def _run_translate(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from .imaging import check_image_file

    if args.style_labels is not None and args.style_image is None:
        raise ValueError("--style-labels goes with --style-image (the reference photo).")
    styles = [parse_style(s) for s in args.style] if args.style else None
    style = styles[0] if styles and len(styles) == 1 else styles
    mix = None
    if args.style_mix is not None:
        try:
            alphas = [float(a) for a in args.style_mix.split(",")]
        except ValueError:
            raise ValueError(f"--style-mix {args.style_mix!r}: give numbers in [0, 1].") from None
        mix = alphas[0] if len(alphas) == 1 else alphas
    inputs = _collect_inputs(args.inputs)
    # Headers only: an unreadable or oversized file fails now, not after an hour of work.
    for file in [f for f, _ in inputs] + [p for p in (args.style_image, args.style_labels) if p]:
        check_image_file(file)
    _check_writable(args.out)
    pipe = _load_pipeline(args.model, _device(args.device))
    reference = None
    if args.style_image is not None:
        if args.style_labels is None and pipe.config.input_kind == "labels":
            raise ValueError(
                "--style-image and --style-labels go together for label-map models (the "
                "reference photo and its label map)."
            )
        labels = str(args.style_labels) if args.style_labels is not None else None
        reference = (str(args.style_image), labels)
    autocast = torch.bfloat16 if args.bf16 else None
    tables = None
    if style is not None or reference is not None or mix is not None or args.num_styles != 1:
        # Resolved once: every input gets the same styles (one draw, one reference encoding).
        tables = pipe.style_tables(
            style, reference, mix, args.num_styles, seed=args.seed, autocast_dtype=autocast
        )
    written = 0
    for file, stem in tqdm(inputs, desc="translating", unit="img"):
        images = pipe(str(file), style=tables, autocast_dtype=autocast).images
        for index, image in enumerate(images):
            name = stem.name if len(images) == 1 else f"{stem.name}_style{index}"
            target = args.out / stem.parent / f"{name}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            image.save(target)
            written += 1
    print(f"wrote {written} image(s) to {args.out}")
    return 0


def _add_export(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export-pipeline",
        aliases=["export"],
        help="Export a pipeline from a training checkpoint (the run may still be going). "
        "'export' is a deprecated alias.",
        description=(
            "Rebuild the networks from the run's config (a YAML preset plus the same overrides "
            "as train_accelerate.py) and write the checkpoint's generator (its EMA weights where "
            "the run keeps an EMA) and encoder as a Pix2PixHDPipeline. Nothing in the checkpoint "
            "is unpickled. (Formerly 'export', which still works.)"
        ),
    )
    parser.add_argument("--config", help="the run's YAML preset")
    parser.add_argument("--checkpoint", default="latest", help="checkpoint-<step> dir or latest")
    parser.add_argument("--out", type=Path, required=True, help="output pipeline directory")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))


def _run_export(args: argparse.Namespace, overrides: list[str]) -> int:
    import torch

    if args.command == "export":
        print("note: 'export' is deprecated; use 'export-pipeline'.", file=sys.stderr)

    from .training import load_config
    from .training.export import export_checkpoint

    config = load_config(args.config, overrides)
    out = export_checkpoint(config, args.checkpoint, args.out, getattr(torch, DTYPES[args.dtype]))
    print(f"wrote {out}")
    return 0


_EXPORT_PIPELINE = ("export-pipeline", "export")


def _add_export_onnx(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export-onnx",
        help="Export a pipeline's translator and encoder to ONNX (for onnxruntime).",
        description=(
            "Write translator.onnx (and encoder.onnx), with dynamic batch, height and width, "
            "plus pipeline.json (input conventions) and the default style as .npy, for "
            "inference without torch (see examples/onnx_inference.py). Needs the onnx extra."
        ),
    )
    parser.add_argument("model", help="pipeline folder, model folder (from convert) or Hub id")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    parser.add_argument("--no-encoder", action="store_true", help="leave the encoder out")
    parser.add_argument(
        "--check", action="store_true", help="compare onnxruntime with PyTorch on a random input"
    )


def _run_export_onnx(args: argparse.Namespace) -> int:
    from .onnx_export import export_onnx, onnx_max_abs_error

    result = export_onnx(
        args.model, args.out, opset=args.opset, include_encoder=not args.no_encoder
    )
    for path in (result.translator, result.encoder, result.default_style, result.manifest):
        if path is not None:
            print(f"wrote {path}")
    if args.check:
        import torch

        from .onnx_export import load_exportable

        source = load_exportable(args.model)
        translator = getattr(source, "translator", source)
        side = translator.size_multiple
        sample = torch.rand(1, translator.config.in_channels, 2 * side, 2 * side) * 2 - 1
        error = onnx_max_abs_error(result.translator, translator, {"input": sample})
        print(f"translator: onnxruntime vs PyTorch fp32 max abs difference {error:.2e}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-pix2pixhd", description="pix2pix and pix2pixHD, the Hugging Face way."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_convert(subparsers)
    _add_encode_styles(subparsers)
    _add_translate(subparsers)
    add_evaluate_parser(subparsers)
    _add_export(subparsers)
    add_make_space_parser(subparsers)
    _add_export_onnx(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    if extra and args.command not in _EXPORT_PIPELINE:
        build_parser().parse_args(argv)  # reports the unknown arguments as argparse does
    handlers = {
        "convert": _run_convert,
        "encode-styles": _run_encode_styles,
        "translate": _run_translate,
        "evaluate": run_evaluate,
        "make-space": run_make_space,
        "export-onnx": _run_export_onnx,
    }
    try:
        if args.command in _EXPORT_PIPELINE:  # takes the training config overrides, like training
            return _run_export(args, extra)
        return handlers[args.command](args)
    except (ValueError, OSError) as error:
        # Our errors already say what is wrong and how to fix it, and OSErrors name the file
        # and the reason: no traceback for users.
        print("error: " + " ".join(str(error).split()), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
