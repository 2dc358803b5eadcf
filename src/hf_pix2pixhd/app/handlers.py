"""The demo's logic, free of UI code: loading models, reading the editor, generating.

Handlers raise ``gradio.Error`` with a readable message for anything a user can get wrong,
so the page shows it and the server keeps serving.
"""

from __future__ import annotations

import io
import math
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch

from ..imaging import flatten_alpha
from ..labels import NotAPaletteImageError, Palette
from ..pipeline import Pix2PixHDPipeline

#: Inputs larger than this (longest side, pixels) are scaled down before translation.
MAX_SIDE = 1024
#: Smaller inputs are refused: nothing meaningful can be drawn in them.
MIN_SIDE = 8
#: Uploads are refused above this many pixels, checked from the file header before decoding.
MAX_UPLOAD_SIDE = 4096
MAX_UPLOAD_PIXELS = MAX_UPLOAD_SIDE * MAX_UPLOAD_SIDE
#: Seeds are whole numbers in 0..MAX_SEED (what ``torch.Generator.manual_seed`` and numpy take).
MAX_SEED = 2**32 - 1
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
    #: bundled reference looks: (photo, its label map or None for sketch models)
    references: list[tuple[Path, Path | None]] = field(default_factory=list)

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
    folder = Path(source)
    examples = sorted((folder / "examples").glob("*.png")) if folder.is_dir() else []
    references = find_references(folder) if folder.is_dir() else []
    return ServedModel(name or folder.name or source, source, pipeline, examples, references)


def find_references(folder: Path) -> list[tuple[Path, Path | None]]:
    """``references/<name>.png`` photos with their ``<name>_labels.png`` label maps, if any."""
    photos = sorted(
        p for p in (folder / "references").glob("*.png") if not p.stem.endswith("_labels")
    )
    pairs = []
    for photo in photos:
        labels = photo.with_name(f"{photo.stem}_labels.png")
        pairs.append((photo, labels if labels.is_file() else None))
    return pairs


def read_upload(source: str | os.PathLike | bytes, what: str) -> PIL.Image.Image:
    """Decode an uploaded file (a path, or the bytes the browser editor sends).

    The pixel count is checked from the header before decoding; EXIF orientation is applied.
    Every failure is a ``UserInputError`` that names the file and the problem.
    """
    is_path = isinstance(source, str | os.PathLike)
    name = f"{what} ({Path(source).name})" if is_path else what
    if is_path and not Path(source).is_file():
        raise UserInputError(f"The {name} was not received: upload it again.")
    data = Path(source).read_bytes() if is_path else bytes(source)
    if not data:
        raise UserInputError(f"The {name} is an empty file (0 bytes): upload a PNG or JPEG image.")
    try:
        image = PIL.Image.open(io.BytesIO(data))
    except PIL.Image.DecompressionBombError as error:
        raise UserInputError(
            f"The {name} has too many pixels to decode safely ({error}). Upload an image of at "
            f"most {MAX_UPLOAD_SIDE}x{MAX_UPLOAD_SIDE} pixels."
        ) from error
    except (PIL.UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise UserInputError(
            f"The {name} is not an image this demo can read (not PNG, JPEG, WebP, GIF, BMP or "
            "another format Pillow knows). Upload a PNG or JPEG image."
        ) from error
    check_pixels(image.size, name)  # from the header: nothing decoded yet
    try:
        image.load()  # a truncated file fails here, not later
    except (OSError, SyntaxError, ValueError) as error:
        reason = "the file is incomplete (truncated)" if "truncated" in str(error) else error
        raise UserInputError(
            f"The {name} could not be decoded: {reason}. Upload a complete PNG or JPEG image."
        ) from error
    return PIL.ImageOps.exif_transpose(image)


def check_pixels(size: tuple[int, int], name: str) -> None:
    """Refuse images over ``MAX_UPLOAD_PIXELS`` (from the header: nothing decoded yet)."""
    width, height = size
    if width * height > MAX_UPLOAD_PIXELS:
        raise UserInputError(
            f"The {name} is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels): "
            f"this demo takes at most {MAX_UPLOAD_SIDE}x{MAX_UPLOAD_SIDE} "
            f"({MAX_UPLOAD_PIXELS / 1e6:.1f} megapixels). Scale it down and upload it again; "
            f"it is translated at up to {MAX_SIDE} pixels a side anyway."
        )


def as_image(value: Any, what: str) -> PIL.Image.Image | None:
    """A PIL image from a path, uploaded bytes, an array or an image (``None`` stays ``None``)."""
    if value is None:
        return None
    if isinstance(value, str | os.PathLike | bytes | bytearray | memoryview):
        return read_upload(value, what)
    if isinstance(value, np.ndarray):
        value = PIL.Image.fromarray(value)
    if not isinstance(value, PIL.Image.Image):
        raise UserInputError(f"The {what} must be an image, got {type(value).__name__}.")
    return value


def editor_image(value: Any, model: ServedModel | None = None) -> PIL.Image.Image | None:
    """The picture in a ``gr.ImageEditor`` value (composite, else background), or ``None``.

    ``None`` also stands for an untouched canvas: the editor's blank background (one colour,
    ``model.blank_colour``) with nothing drawn on it. An untouched editor sends
    ``composite=None``: fall back to the background.
    """
    if isinstance(value, dict):
        image = value.get("composite")
        if image is None:
            image = value.get("background")
    else:
        image = value
    image = as_image(image, "uploaded image")
    if image is not None and model is not None and is_blank(image, model.blank_colour):
        return None
    return image


def is_blank(image: PIL.Image.Image, colour: tuple[int, int, int], tolerance: int = 8) -> bool:
    """True for a canvas of one colour, ``colour`` (transparent counts as ``colour``).

    ``tolerance`` per channel: the browser's canvas sends the blank colour back off by a few
    levels here and there (0, 0, 170 comes back as 1, 0, 171 and 2, 1, 172).
    """
    extrema = flatten_alpha(image, colour).convert("RGB").getextrema()
    return all(
        c - tolerance <= low and high <= c + tolerance
        for (low, high), c in zip(extrema, colour, strict=True)
    )


def check_and_fit(image: PIL.Image.Image | None, model: ServedModel) -> PIL.Image.Image:
    """Validate the size and scale huge inputs down (nearest for label maps)."""
    if image is None:
        raise UserInputError("The canvas is empty: draw something or upload an image first.")
    width, height = image.size
    check_pixels(image.size, "image")
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
        # Keep the measured part (how many pixels, an example colour); the rest of the library
        # message is about Python arguments a page user cannot set.
        details = str(error).partition(" This does not look like")[0]
        raise UserInputError(
            "This does not look like a label map in this model's colours: "
            f"{details} Draw with the palette brush, or upload a label map drawn in the colours "
            "of the legend."
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


def parse_seed(value: Any) -> int:
    """A seed from the page or the API: a whole number in ``0..MAX_SEED`` (empty means 0)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return 0
    problem = f"Seed {str(value)[:40]!r} is not a whole number"
    if isinstance(value, bool):
        raise UserInputError(f"{problem}: use 0 to {MAX_SEED}.")
    if isinstance(value, str):
        text = value.strip()
        if not text.lstrip("+-").isdigit():
            raise UserInputError(f"{problem}: use 0 to {MAX_SEED}.")
        value = int(text)
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise UserInputError(f"{problem}: use 0 to {MAX_SEED}.")
        value = int(value)
    if not isinstance(value, int | np.integer):
        raise UserInputError(f"{problem}: use 0 to {MAX_SEED}.")
    if not 0 <= value <= MAX_SEED:
        shown = (
            str(value)
            if len(str(value)) <= 24
            else f"{str(value)[:12]}... ({len(str(value))} digits)"
        )
        raise UserInputError(
            f"Seed {shown} is out of range: use a whole number from 0 to {MAX_SEED}."
        )
    return int(value)


def save_result(image: PIL.Image.Image, folder: str | os.PathLike) -> str:
    """Write a result as a lossless PNG in ``folder`` (Gradio's cache, which ages files out).

    One file serves both the result image and the download button.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"hf-pix2pixhd-{uuid.uuid4().hex}.png"
    image.save(path, format="PNG")
    return str(path)


def style_arguments(
    model: ServedModel,
    mode: str,
    code: str,
    seed: int,
    reference: Any,
    reference_labels: Any = None,
) -> dict[str, Any]:
    """Pipeline keyword arguments for the chosen style mode."""
    if mode not in STYLE_MODES:
        raise UserInputError(f"Unknown style mode {mode!r}.")
    if mode == "default" or (model.style_bank is None and mode in ("pick per class", "random")):
        return {}
    if mode == "pick per class":
        return {"style": parse_style_code(code, model)}
    if mode == "random":
        return {"style": "random", "generator": torch.Generator().manual_seed(parse_seed(seed))}
    # The reference is read only here: a bad upload cannot break the other style modes.
    photo = as_image(reference, "reference photo")
    if photo is None:
        raise UserInputError("Upload a reference photo for the 'reference photo' style.")
    if model.pipeline.encoder is None:
        raise UserInputError("This model has no style encoder, so it cannot copy a photo's style.")
    photo = photo.convert("RGB")
    if model.kind != "labels":
        return {"style_image": photo}  # one global look: the photo alone
    # A label model takes each class's look from the photo's own regions of that class: the
    # photo's label map is needed (the user's layout would paint the wrong regions' codes).
    label_map = as_image(reference_labels, "reference label map")
    if label_map is None:
        raise UserInputError(
            "A reference photo for a label-map model needs its own label map, to know which of "
            "its regions are windows, walls and so on: upload it as 'Reference label map', or "
            "pick a reference from the gallery."
        )
    if label_map.size != photo.size:
        raise UserInputError(
            f"The reference label map is {label_map.size[0]}x{label_map.size[1]} but the photo "
            f"is {photo.size[0]}x{photo.size[1]}: they must be the same picture's."
        )
    return {"style_image": (photo, to_model_input(label_map.convert("RGB"), model))}
