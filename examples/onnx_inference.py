"""Run an exported model with numpy + onnxruntime only (no torch, no hf_pix2pixhd).

Export first, then translate a label map (colours are snapped to the palette), a sketch or an
image:

    hf-pix2pixhd export-onnx models/facades --out onnx/facades
    python examples/onnx_inference.py onnx/facades models/facades/examples/facade_0.png \\
        --out facade_0_onnx.png

It does what ``Pix2PixHDPipeline`` does before and after the network: palette snapping,
one-hot, the instance boundary map (models with instance maps; the label map stands in for the
instance map unless ``--instance-map`` is given), the style's feature map (the default style,
painted per class, from ``default_style.npy``), edge padding to the size the network needs,
and the conversion back to 8-bit RGB. Needs: numpy, pillow, onnxruntime.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime
from PIL import Image


def snap_to_palette(rgb: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 colours -> ``(H, W)`` int64 ids of the nearest palette colour.

    Nearest in RGB absorbs JPEG noise and anti-aliasing; ties go to the lowest id.
    """
    colors, inverse = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
    distances = ((colors[:, None, :].astype(np.int64) - palette[None].astype(np.int64)) ** 2).sum(
        -1
    )
    return distances.argmin(1)[inverse.reshape(-1)].reshape(rgb.shape[:2]).astype(np.int64)


def read_ids(path: Path, palette: np.ndarray | None) -> np.ndarray:
    """A label map as ``(H, W)`` int64 ids: single-channel images hold ids, colour ones are
    snapped to the palette."""
    image = Image.open(path)
    if image.mode in ("L", "P", "I", "I;16"):
        return np.asarray(image).astype(np.int64)
    if palette is None:
        raise SystemExit(f"{path} is a colour image but the model has no palette: pass ids.")
    return snap_to_palette(np.asarray(image.convert("RGB")), palette)


def one_hot(ids: np.ndarray, num_classes: int) -> np.ndarray:
    """``(H, W)`` ids -> ``(num_classes, H, W)`` float32 in {0, 1}."""
    if ids.min() < 0 or ids.max() >= num_classes:
        raise SystemExit(f"Label ids must be in [0, {num_classes - 1}], got {ids.max()}.")
    return (np.arange(num_classes)[:, None, None] == ids[None]).astype(np.float32)


def instance_boundaries(instances: np.ndarray) -> np.ndarray:
    """``(H, W)`` ids -> ``(1, H, W)`` float32: 1 where a 4-neighbour has another id (both
    sides of each border), as pix2pixHD's ``get_edges``."""
    edge = np.zeros(instances.shape, dtype=bool)
    horizontal = instances[:, 1:] != instances[:, :-1]
    vertical = instances[1:, :] != instances[:-1, :]
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    return edge[None].astype(np.float32)


def read_image(path: Path, channels: int) -> np.ndarray:
    """A photo or sketch as ``(channels, H, W)`` float32 in ``[-1, 1]`` (alpha on white)."""
    image = Image.open(path)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    array = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.float32)
    array = array[None] if channels == 1 else array.transpose(2, 0, 1)
    return array / 127.5 - 1.0


def generator_input(
    manifest: dict, folder: Path, source: Path, instance_map: Path | None
) -> np.ndarray:
    """The translator's ``(1, C, H, W)`` float32 input, as the pipeline assembles it."""
    feature_nc = manifest.get("feature_nc", 0)
    table = None
    if feature_nc:
        style = manifest["files"].get("default_style")
        if style is None:
            raise SystemExit("This model takes style features but the export has no style bank.")
        table = np.load(folder / style)  # (num_style_classes, feature_nc)
    if manifest["input_kind"] != "labels":
        pixels = read_image(source, manifest["image_channels"])
        parts = [pixels]
        if table is not None:  # one global style painted over the whole image
            parts.append(np.broadcast_to(table[0][:, None, None], (feature_nc, *pixels.shape[1:])))
        return np.concatenate(parts)[None].astype(np.float32)
    palette = manifest.get("palette")
    ids = read_ids(source, np.asarray(palette, dtype=np.int64) if palette else None)
    parts = [one_hot(ids, manifest["label_nc"])]
    if manifest.get("use_instance_map"):
        instances = ids if instance_map is None else np.asarray(Image.open(instance_map))
        if instances.shape != ids.shape:
            raise SystemExit(f"Instance map {instances.shape} and label map {ids.shape} differ.")
        parts.append(instance_boundaries(instances.astype(np.int64)))
    if table is not None:  # each class painted with its feature
        parts.append(table[ids].transpose(2, 0, 1))
    return np.concatenate(parts)[None].astype(np.float32)


def translate(folder: Path, source: Path, instance_map: Path | None = None) -> Image.Image:
    """Run ``folder``'s exported translator on one input file; returns the RGB (or L) image."""
    manifest = json.loads((folder / "pipeline.json").read_text())
    inputs = generator_input(manifest, folder, source, instance_map)
    height, width = inputs.shape[-2:]
    multiple = manifest["size_multiple"]
    target_h = max(multiple, -(-height // multiple) * multiple)
    target_w = max(multiple, -(-width // multiple) * multiple)
    if manifest.get("resize_mode", "pad") != "pad":
        print("note: this example pads (resize_mode 'pad'); the pipeline would resize.")
    # Edge replication keeps one-hot and feature channels valid, as the pipeline pads.
    padded = np.pad(inputs, ((0, 0), (0, 0), (0, target_h - height), (0, target_w - width)),
                    mode="edge")  # fmt: skip
    session = onnxruntime.InferenceSession(
        str(folder / manifest["files"]["translator"]), providers=["CPUExecutionProvider"]
    )
    (output,) = session.run(None, {"input": padded})
    output = output[0, :, :height, :width]
    pixels = np.round((np.clip(output, -1, 1) + 1) * 127.5).astype(np.uint8).transpose(1, 2, 0)
    return Image.fromarray(pixels[:, :, 0] if pixels.shape[-1] == 1 else pixels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the export-onnx output folder")
    parser.add_argument("input", type=Path, help="label map, sketch or image")
    parser.add_argument("--instance-map", type=Path, help="instance ids (models with them)")
    parser.add_argument("--out", type=Path, default=Path("onnx_output.png"))
    args = parser.parse_args()
    translate(args.folder, args.input, args.instance_map).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
