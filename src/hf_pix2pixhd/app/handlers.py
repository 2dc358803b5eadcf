"""The demo's logic, free of UI code: loading models, reading the editor, generating.

Handlers raise ``gradio.Error`` with a readable message for anything a user can get wrong,
so the page shows it and the server keeps serving.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch

from ..imaging import ImageReadError, flatten_alpha, load_image
from ..labels import NotAPaletteImageError, Palette
from ..pipeline import Pix2PixHDPipeline

#: Inputs larger than this (longest side, pixels) are scaled down before translation.
MAX_SIDE = 1024
#: Smaller inputs are refused: nothing meaningful can be drawn in them.
MIN_SIDE = 8
STYLE_MODES = ("default", "pick per class", "random", "reference photo")


class UserInputError(ValueError):
    """Something the user can fix; shown in the page as is."""


@dataclass
class ServedModel:
    """A loaded pipeline plus what the UI needs to present it."""

    name: str
    source: str
    pipeline: Pix2PixHDPipeline
    examples: list[Path] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.pipeline.config.input_kind

    @property
    def palette(self) -> Palette | None:
        return self.pipeline.palette

    @property
    def class_names(self) -> list[str]:
        palette = self.palette
        if palette is not None and palette.names:
            return list(palette.names)
        return [f"class {i}" for i in range(self.pipeline.config.label_nc)]

    @property
    def style_bank(self) -> Any | None:
        return getattr(self.pipeline, "style_bank", None)

    @property
    def blank_colour(self) -> tuple[int, int, int]:
        """What an empty canvas is filled with: white paper, or the first class's colour."""
        if self.kind == "labels" and self.palette is not None:
            return tuple(int(c) for c in self.palette.colors[0])
        return (255, 255, 255)


def load_model(source: str, name: str | None = None, fast: bool = True) -> ServedModel:
    """Load a pipeline folder or Hub id, with the example inputs found beside it.

    ``fast``: bf16 + channels_last on CPU (about 1.5-2x faster; within the tested tolerance).
    """
    try:
        pipeline = Pix2PixHDPipeline.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise FileNotFoundError(
            f"Could not load a Pix2PixHDPipeline from {source!r}: {error}"
        ) from error
    pipeline.set_progress_bar_config(disable=True)
    if fast and pipeline.device.type == "cpu":
        pipeline.enable_fast_cpu_inference()
    examples = sorted((Path(source) / "examples").glob("*.png")) if Path(source).is_dir() else []
    return ServedModel(name or Path(source).name or source, source, pipeline, examples)


def editor_image(value: Any) -> PIL.Image.Image | None:
    """The picture in a ``gr.ImageEditor`` value (composite, else background), or ``None``.

    An untouched editor sends ``composite=None``: fall back to the background.
    """
    if value is None:
        return None
    if isinstance(value, dict):
        image = value.get("composite")
        if image is None:
            image = value.get("background")
    else:
        image = value
    if image is None:
        return None
    if isinstance(image, str | os.PathLike):
        try:
            image = load_image(image)
        except ImageReadError as error:
            raise UserInputError(f"That file is not an image I can read ({error}).") from error
    if isinstance(image, np.ndarray):
        image = PIL.Image.fromarray(image)
    return image


def check_and_fit(image: PIL.Image.Image | None, model: ServedModel) -> PIL.Image.Image:
    """Validate the size and scale huge inputs down (nearest for label maps)."""
    if image is None:
        raise UserInputError("The canvas is empty: draw something or upload an image first.")
    width, height = image.size
    if min(width, height) < MIN_SIDE:
        raise UserInputError(
            f"The image is {width}x{height} pixels: too small to translate. Use at least "
            f"{MIN_SIDE}x{MIN_SIDE} (the models were trained at 256x256)."
        )
    # Unpainted (transparent) canvas takes the blank colour: the first class, or white paper.
    image = flatten_alpha(image, model.blank_colour).convert("RGB")
    if max(width, height) > MAX_SIDE:
        scale = MAX_SIDE / max(width, height)
        size = (max(MIN_SIDE, round(width * scale)), max(MIN_SIDE, round(height * scale)))
        resample = PIL.Image.NEAREST if model.kind == "labels" else PIL.Image.BICUBIC
        image = image.resize(size, resample)
    return image


def to_model_input(image: PIL.Image.Image, model: ServedModel) -> np.ndarray | PIL.Image.Image:
    """Label-map models get class ids (strokes snapped to the palette); others the image."""
    if model.kind != "labels":
        return image
    palette = model.palette
    if palette is None:
        return np.asarray(image.convert("L")).astype(np.int64)
    try:
        return palette.colors_to_ids(image)
    except NotAPaletteImageError as error:
        raise UserInputError(
            "This does not look like a label map in this model's colours. Draw with the palette "
            "brush, or upload a label map drawn in the colours of the legend. "
            f"({str(error).split('. ')[0]}.)"
        ) from error


def parse_style_code(code: str, model: ServedModel) -> dict[str, int]:
    """``"window=3, door=1"`` -> ``{"window": 3, "door": 1}`` (names or class ids)."""
    choices: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in (code or "").split(","))):
        if "=" not in part:
            raise UserInputError(f"Style code {part!r}: write CLASS=INDEX, e.g. window=3.")
        name, index = (s.strip() for s in part.split("=", 1))
        if not index.lstrip("-").isdigit():
            raise UserInputError(f"Style code {part!r}: the cluster index must be a number.")
        choices[name] = int(index)
    return choices


def save_for_download(image: PIL.Image.Image) -> str:
    """Write the result to a temporary PNG for the download button."""
    handle, path = tempfile.mkstemp(prefix="hf-pix2pixhd-", suffix=".png")
    os.close(handle)
    image.save(path)
    return path


def style_arguments(
    model: ServedModel,
    mode: str,
    code: str,
    seed: int,
    reference: Any,
    reference_labels: np.ndarray | None,
) -> dict[str, Any]:
    """Pipeline keyword arguments for the chosen style mode."""
    if mode not in STYLE_MODES:
        raise UserInputError(f"Unknown style mode {mode!r}.")
    if mode == "default" or (model.style_bank is None and mode in ("pick per class", "random")):
        return {}
    if mode == "pick per class":
        return {"style": parse_style_code(code, model)}
    if mode == "random":
        return {"style": "random", "generator": torch.Generator().manual_seed(int(seed))}
    photo = editor_image(reference)
    if photo is None:
        raise UserInputError("Upload a reference photo for the 'reference photo' style.")
    if model.pipeline.encoder is None:
        raise UserInputError("This model has no style encoder, so it cannot copy a photo's style.")
    labels = reference_labels
    photo = photo.convert("RGB")
    if labels is not None and photo.size != (labels.shape[1], labels.shape[0]):
        photo = photo.resize((labels.shape[1], labels.shape[0]), PIL.Image.BICUBIC)
    return {"style_image": (photo, labels)}
