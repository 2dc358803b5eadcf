"""Paired image datasets (label map / sketch / photo -> photo) through Hugging Face ``datasets``.

One entry point, :func:`build_dataset`, reads three kinds of source:

- ``"hub"``: a Hub dataset id, or local files / a folder ``datasets.load_dataset`` understands
  (e.g. parquet), with two image columns (``huggan/facades``: ``imageA`` / ``imageB``).
- ``"aligned"``: pix2pix's AB folders, ``<source>/<split>/*.jpg``, each image holding A on the
  left half and B on the right half.
- ``"pix2pixhd"``: pix2pixHD's folders ``<split>_label`` (ids, 8-bit), ``<split>_inst``
  (instance ids, 16-bit) and ``<split>_img`` (photos), paired by file name.

Items are dicts of tensors: ``"target"`` (3, H, W) float32 in [-1, 1]; ``"input"`` (3, H, W)
float32 in [-1, 1] for rgb / sketch inputs, or ``"label"`` (1, H, W) int64 class ids (and
``"instance"`` (1, H, W) int64) for label inputs; ``"name"`` (str). Augmentation is joint (the
same resize, crop and flip for every map of a pair) and depends on (seed, epoch, row index) only,
so a run can be reproduced or resumed exactly, whatever the worker layout.
"""

from __future__ import annotations

import functools
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import PIL.Image
import torch
from datasets.distributed import split_dataset_by_node

from .drawn import DEFAULT_STROKE_WIDTHS, redraw_labels, redraw_sketch
from .imaging import ImageReadError, load_image
from .labels import (
    CITYSCAPES_PALETTE,
    FACADES_PALETTE,
    NotAPaletteImageError,
    Palette,
    label_image_ids,
    repair_blended_labels,
)

__all__ = [
    "DataConfig",
    "DataError",
    "PairedImageDataset",
    "StreamingPairedDataset",
    "build_dataset",
    "collate_pairs",
]

LAYOUTS = ("auto", "hub", "aligned", "pix2pixhd")
PREPROCESS_MODES = (
    "resize_and_crop",
    "scale_width_and_crop",
    "scale_width",
    "resize",
    "crop",
    "none",
)
INPUT_KINDS = ("rgb", "sketch", "labels")
DIRECTIONS = ("AtoB", "BtoA")
SUBSETS = ("all", "train", "holdout")
NAMED_PALETTES = {"facades": FACADES_PALETTE, "cityscapes": CITYSCAPES_PALETTE}
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp"}
)

# File-name endings that tell the maps of one pix2pixHD sample apart (Cityscapes naming and
# generic ones); the rest of the stem pairs label, instance map and photo.
_PAIR_SUFFIXES = tuple(
    sorted(
        (
            "_gtFine_labelIds",
            "_gtFine_instanceIds",
            "_gtFine_color",
            "_gtCoarse_labelIds",
            "_gtCoarse_instanceIds",
            "_leftImg8bit",
            "_labelIds",
            "_instanceIds",
            "_label",
            "_labels",
            "_inst",
            "_instance",
            "_img",
            "_image",
            "_photo",
        ),
        key=len,
        reverse=True,
    )
)
_ID_MODES = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N")
_ROW = "__row__"  # original row index in the source split (names, augmentation, holdout)
_NAME = "__name__"


class DataError(ValueError):
    """A dataset source, row or file that cannot be turned into training pairs."""


@dataclass
class DataConfig:
    """Where paired images come from and how they are augmented.

    Args:
        source: Hub dataset id, local data files / folder for ``datasets.load_dataset``, or a
            local folder in the "aligned" or "pix2pixhd" layout.
        layout: "auto" | "hub" | "aligned" | "pix2pixhd". "auto": a folder with
            ``<split>_label/`` (or ``train_label/``, ``<split>_A/``) is pix2pixhd, a folder
            whose subfolders hold images is aligned, anything else goes to ``load_dataset``.
        split: split name (folder ``<split>/`` or ``<split>_label/`` for local layouts).
        direction: "AtoB" | "BtoA". Aligned images: A = left half, B = right half; hub: A =
            ``column_a``, B = ``column_b``. "BtoA" means input = B, target = A.
        column_a, column_b: hub image columns.
        input_kind: "rgb" | "sketch" (3-channel images) | "labels" (class id maps).
        label_nc: number of classes for "labels" inputs; ids must be in [0, label_nc).
        palette: colour of each class id, to read colour label maps (RGB images): a list of
            [r, g, b], a :class:`Palette`, or "facades" / "cityscapes". Single-channel label
            images always hold ids; None: every label image must hold ids.
        use_instance_map: also return "instance" ids (pix2pixhd ``<split>_inst``; otherwise the
            label map itself).
        preprocess: "resize_and_crop" | "scale_width_and_crop" | "scale_width" | "resize" |
            "crop" | "none", as in the official code.
        load_size: resize target (load_size x load_size), or target width for scale_width.
        crop_size: side of the random square crop of the *crop modes.
        size_multiple: modes without a crop round H and W to a multiple of this (the official
            ``__make_power_2``), so the networks' downsamplings divide them.
        flip: random horizontal flip.
        streaming: iterate with ``datasets`` streaming (an IterableDataset).
        max_samples: keep only the first max_samples rows (after the holdout split).
        holdout_fraction: in [0, 1): share of rows put into the holdout part, chosen by a hash
            of the file name (or "row <i>"), so the split is stable across runs and seeds.
        subset: "all" | "train" | "holdout": which part of the split to use.
        seed: augmentation seed (>= 0).
        drawn_sketches: redraw "sketch" inputs as a brush would draw them (thinned, random
            stroke width from ``stroke_widths``, small breaks, wobble, sometimes unfinished:
            :func:`hf_pix2pixhd.drawn.redraw_sketch`). For demo models people draw for.
        stroke_widths: ``[min, max]`` stroke width in px at 256x256 for ``drawn_sketches``.
        drawn_labels: redraw "labels" inputs as painted in an app (small regions dropped,
            regions as boxes or simplified polygons, ragged edges, JPEG-noisy colours:
            :func:`hf_pix2pixhd.drawn.redraw_labels`).
    """

    source: str
    layout: str = "auto"
    split: str = "train"
    direction: str = "BtoA"
    column_a: str = "imageA"
    column_b: str = "imageB"
    input_kind: str = "rgb"
    label_nc: int = 0
    palette: list[list[int]] | Palette | str | None = None
    use_instance_map: bool = False
    preprocess: str = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    size_multiple: int = 4
    flip: bool = True
    streaming: bool = False
    max_samples: int | None = None
    holdout_fraction: float = 0.0
    subset: str = "all"
    seed: int = 0
    drawn_sketches: bool = False
    stroke_widths: tuple[float, float] | list[float] = DEFAULT_STROKE_WIDTHS
    drawn_labels: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check option values and combinations; DataError naming the option and the fix."""
        choices = {
            "layout": LAYOUTS,
            "preprocess": PREPROCESS_MODES,
            "input_kind": INPUT_KINDS,
            "direction": DIRECTIONS,
            "subset": SUBSETS,
        }
        for option, allowed in choices.items():
            value = getattr(self, option)
            if value not in allowed:
                raise DataError(f"unknown {option} {value!r}; choose one of {', '.join(allowed)}")
        # An empty source is a placeholder (e.g. a training config's default); building fails.
        if not isinstance(self.source, str | Path):
            raise DataError(f"source must be a Hub dataset id or a path, got {self.source!r}")
        for option in ("load_size", "crop_size", "size_multiple"):
            value = getattr(self, option)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DataError(f"{option} must be a positive int, got {value!r}")
        if "crop" in self.preprocess and self.crop_size % self.size_multiple:
            raise DataError(
                f"crop_size {self.crop_size} is not a multiple of size_multiple "
                f"{self.size_multiple}; the networks' downsamplings need it (e.g. crop_size 256)"
            )
        if self.preprocess in ("resize_and_crop", "scale_width_and_crop") and (
            self.crop_size > self.load_size
        ):
            raise DataError(
                f"crop_size {self.crop_size} is larger than load_size {self.load_size}; "
                "the crop must fit in the resized image (pix2pix uses 286 / 256)"
            )
        if self.input_kind == "labels":
            if isinstance(self.label_nc, bool) or not isinstance(self.label_nc, int):
                raise DataError(f"label_nc must be an int, got {self.label_nc!r}")
            if self.label_nc < 1:
                raise DataError(
                    "input_kind 'labels' needs label_nc, the number of classes (e.g. 12 for "
                    "facades, 35 for Cityscapes)"
                )
            palette = resolve_palette(self.palette)
            if palette is not None and palette.num_classes > self.label_nc:
                raise DataError(
                    f"the palette has {palette.num_classes} classes but label_nc is "
                    f"{self.label_nc}; set label_nc to at least {palette.num_classes}"
                )
        elif self.palette is not None:
            raise DataError(
                f"palette is only used with input_kind 'labels', got input_kind "
                f"{self.input_kind!r}; drop the palette or set input_kind='labels'"
            )
        elif self.use_instance_map:
            raise DataError(
                "use_instance_map needs input_kind 'labels' (instance maps go with ids)"
            )
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise DataError(f"holdout_fraction must be in [0, 1), got {self.holdout_fraction}")
        if self.subset != "all" and self.holdout_fraction == 0.0:
            raise DataError(
                f"subset {self.subset!r} needs holdout_fraction > 0 (e.g. 0.1); with 0 there is "
                "no holdout part"
            )
        if self.max_samples is not None and (
            isinstance(self.max_samples, bool)
            or not isinstance(self.max_samples, int)
            or self.max_samples < 1
        ):
            raise DataError(f"max_samples must be None or a positive int, got {self.max_samples!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise DataError(f"seed must be an int >= 0, got {self.seed!r}")
        if self.drawn_sketches and self.input_kind != "sketch":
            raise DataError(
                f"drawn_sketches redraws sketch inputs, but input_kind is {self.input_kind!r}; "
                "use drawn_labels for label maps"
            )
        if self.drawn_labels and (self.input_kind != "labels" or self.use_instance_map):
            raise DataError(
                "drawn_labels redraws label maps (input_kind 'labels') and cannot keep separate "
                "instance maps in step: turn off use_instance_map or drawn_labels"
            )
        widths = self.stroke_widths
        if (
            len(widths) != 2
            or not all(isinstance(w, int | float) and not isinstance(w, bool) for w in widths)
            or not 1 <= widths[0] <= widths[1]
        ):
            raise DataError(
                f"stroke_widths must be [min, max] px with 1 <= min <= max, got {widths!r}"
            )


def resolve_palette(palette: list[list[int]] | Palette | str | None) -> Palette | None:
    """A palette given as a name (``facades``, ``cityscapes``), colours or a Palette."""
    if palette is None or isinstance(palette, Palette):
        return palette
    if isinstance(palette, str):
        if palette not in NAMED_PALETTES:
            raise DataError(
                f"unknown palette name {palette!r}; use one of {', '.join(NAMED_PALETTES)} or "
                "a list of [r, g, b] colours, one per class id"
            )
        return NAMED_PALETTES[palette]
    try:
        return Palette(colors=palette)
    except (TypeError, ValueError) as err:
        raise DataError(f"invalid palette: {err}") from err


# --------------------------------------------------------------------------------------------
# Sources -> datasets.Dataset / IterableDataset
# --------------------------------------------------------------------------------------------


def _subfolders(root: Path) -> str:
    names = sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
    return ", ".join(names) if names else "(no subfolders)"


def _has_images(folder: Path, recursive: bool = False) -> bool:
    files = folder.rglob("*") if recursive else folder.iterdir()
    return any(f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file() for f in files)


def _resolve_layout(config: DataConfig) -> str:
    if not str(config.source):
        raise DataError("DataConfig.source is empty; give a Hub dataset id or a local path")
    root = Path(config.source).expanduser()
    if config.layout != "auto":
        if config.layout != "hub" and not root.is_dir():
            raise DataError(
                f"layout {config.layout!r} reads a local folder, but {config.source!r} is not a "
                "folder; give the dataset folder, or layout='hub' for a Hub id / data files"
            )
        return config.layout
    if not root.is_dir():
        return "hub"
    split = config.split
    if any((root / name).is_dir() for name in (f"{split}_label", "train_label", f"{split}_A")):
        return "pix2pixhd"
    if (root / split).is_dir() and _has_images(root / split):
        return "aligned"
    # Other split folders with images: still aligned, so the error lists the folders there are.
    if any(_has_images(d) for d in root.iterdir() if d.is_dir()):
        return "aligned"
    return "hub"


def _load_aligned(config: DataConfig) -> datasets.Dataset:
    """AB images of ``<source>/<split>/`` via the imagefolder builder; columns image, __name__."""
    root = Path(config.source).expanduser()
    split_dir = root / config.split
    if not split_dir.is_dir():
        raise DataError(
            f"aligned dataset {root} has no '{config.split}' folder; it has: "
            f"{_subfolders(root)}. Set split to one of them"
        )
    if not _has_images(split_dir, recursive=True):
        raise DataError(
            f"{split_dir} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); its "
            f"subfolders: {_subfolders(split_dir)}"
        )
    # data_dir=<split folder> with split="train": imagefolder's own split names would map
    # "val" to "validation"; drop_labels stops it from inventing classes from subfolders.
    ds = datasets.load_dataset(
        "imagefolder", data_dir=str(split_dir), split="train", drop_labels=True
    )
    ds = ds.cast_column("image", datasets.Image(decode=False))
    names = []
    base = split_dir.resolve()
    for value in ds["image"]:
        path = Path(value["path"]).resolve()
        try:
            names.append(path.relative_to(base).as_posix())
        except ValueError:  # a symlink out of the folder: the bare name still identifies it
            names.append(path.name)
    return ds.add_column(_NAME, names)


def _pair_key(stem: str) -> str:
    for suffix in _PAIR_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def _index_folder(folder: Path) -> dict[str, Path]:
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DataError(f"{folder} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    index: dict[str, Path] = {}
    for file in files:
        key = _pair_key(file.stem)
        if key in index:
            raise DataError(
                f"{index[key].name} and {file.name} in {folder} pair on the same name {key!r}; "
                "keep one file per sample in each folder"
            )
        index[key] = file
    return index


def _load_pix2pixhd(config: DataConfig) -> datasets.Dataset:
    """pix2pixHD folders as a Dataset of file paths; columns label, [instance], image, __name__."""
    root = Path(config.source).expanduser()
    split = config.split
    # pix2pixHD: <split>_label for label maps, <split>_A for rgb inputs (label_nc 0).
    input_dir = root / (f"{split}_label" if config.input_kind == "labels" else f"{split}_A")
    target_dir = next(
        (root / f"{split}{s}" for s in ("_img", "_B") if (root / f"{split}{s}").is_dir()),
        root / f"{split}_img",
    )
    for folder in (input_dir, target_dir):
        if not folder.is_dir():
            raise DataError(
                f"pix2pixHD dataset {root} has no '{folder.name}' folder; it has: "
                f"{_subfolders(root)}. Check split and input_kind"
            )
    folders = {"label": input_dir, "image": target_dir}
    inst_dir = root / f"{split}_inst"
    if config.use_instance_map and inst_dir.is_dir():
        folders["instance"] = inst_dir
    indexed = {column: _index_folder(folder) for column, folder in folders.items()}
    keys = set(indexed["label"])
    if any(set(files) != keys for files in indexed.values()):
        every = set().union(*indexed.values())
        problems = []
        for column, files in indexed.items():
            missing = sorted(every - set(files))
            if missing:
                others = sorted(
                    str(other[k].relative_to(root))
                    for k in missing
                    for other in indexed.values()
                    if k in other
                )
                problems.append(
                    f"{len(missing)} file(s) have no partner in {folders[column].name}/: "
                    f"{', '.join(others[:6])}{' ...' if len(others) > 6 else ''}"
                )
        raise DataError(
            f"unpaired files in {root}: " + "; ".join(problems) + ". Files pair on the name "
            "with suffixes such as _gtFine_labelIds / _gtFine_instanceIds / _leftImg8bit removed"
        )
    order = sorted(keys)
    columns: dict[str, list[str]] = {
        column: [str(files[k]) for k in order] for column, files in indexed.items()
    }
    columns[_NAME] = [indexed["label"][k].name for k in order]
    ds = datasets.Dataset.from_dict(columns)
    for column in folders:
        ds = ds.cast_column(column, datasets.Image(decode=False))
    return ds


def _load_hub(config: DataConfig, streaming: bool) -> datasets.Dataset | datasets.IterableDataset:
    """``datasets.load_dataset`` of a Hub id / local files, with the two image columns undecoded."""
    source = str(config.source)
    path = Path(source).expanduser()
    builders = {".parquet": "parquet", ".arrow": "arrow", ".csv": "csv", ".json": "json"}
    builders[".jsonl"] = "json"
    try:
        if path.is_file() and path.suffix.lower() in builders:
            ds = datasets.load_dataset(
                builders[path.suffix.lower()],
                data_files={config.split: str(path)},
                split=config.split,
                streaming=streaming,
            )
        else:
            ds = datasets.load_dataset(source, split=config.split, streaming=streaming)
    except (OSError, ValueError) as err:  # FileNotFoundError, ConnectionError, unknown split
        raise DataError(
            f"datasets.load_dataset({source!r}, split={config.split!r}) failed: "
            f"{type(err).__name__}: {err}. Check the dataset id / path and the split name; "
            "offline (HF_HUB_OFFLINE=1) only cached or local datasets load"
        ) from err
    columns = ds.column_names
    if columns is not None:
        for column in (config.column_a, config.column_b):
            if column not in columns:
                raise DataError(
                    f"dataset {source!r} split {config.split!r} has no column {column!r}; "
                    f"available columns: {', '.join(columns)}. Set column_a / column_b"
                )
    features = ds.features or {}
    for column in (config.column_a, config.column_b):
        # Decode ourselves: a broken image then raises an error that names its row.
        if isinstance(features.get(column), datasets.Image):
            ds = ds.cast_column(column, datasets.Image(decode=False))
    return ds


def _load_local(config: DataConfig, layout: str) -> datasets.Dataset:
    return _load_aligned(config) if layout == "aligned" else _load_pix2pixhd(config)


def _in_subset(name: str, holdout_fraction: float, subset: str) -> bool:
    """Deterministic train/holdout membership from a hash of the row's name (not the seed)."""
    if subset == "all":
        return True
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    holdout = int.from_bytes(digest, "big") / 2.0**64 < holdout_fraction
    return holdout == (subset == "holdout")


def _select_rows(config: DataConfig, names: list[str]) -> list[int]:
    rows = [
        i
        for i, name in enumerate(names)
        if _in_subset(name, config.holdout_fraction, config.subset)
    ]
    if config.max_samples is not None:
        rows = rows[: config.max_samples]
    if not rows:
        raise DataError(
            f"no rows left in {config.source!r} split {config.split!r} after subset "
            f"{config.subset!r} (holdout_fraction {config.holdout_fraction}, {len(names)} rows)"
        )
    return rows


# --------------------------------------------------------------------------------------------
# One row -> one item
# --------------------------------------------------------------------------------------------


def _decode(value: Any, where: str) -> PIL.Image.Image:
    """A ``datasets.Image`` value (undecoded dict, path or PIL image) as a loaded PIL image."""
    if isinstance(value, PIL.Image.Image):
        return value
    if isinstance(value, dict) and value.get("bytes") is not None:
        try:
            with PIL.Image.open(io.BytesIO(value["bytes"])) as image:
                image.load()
                return image.copy()
        except (PIL.UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise DataError(
                f"{where}: could not decode the image bytes ({type(err).__name__}: {err}); "
                "the row holds a corrupt or non-image file"
            ) from err
    path = value.get("path") if isinstance(value, dict) else value
    if isinstance(path, str | Path):
        try:
            return load_image(path)
        except ImageReadError as err:
            raise DataError(f"{where}: {err}") from err
    raise DataError(f"{where}: expected an image (bytes, path or PIL image), got {value!r:.80}")


def _label_ids(image: PIL.Image.Image, palette: Palette | None, where: str) -> np.ndarray:
    """(H, W) int64 class ids from an id image, or from a colour label map with the palette."""
    # Single-channel images hold ids even when a palette is configured (Cityscapes labelIds
    # PNGs: the palette then only colours the samples); palette images only in our palette.
    if palette is not None and label_image_ids(image, palette) is None:
        rgb = np.asarray(image.convert("RGB"))
        try:
            # The outlier check rejects images that are not drawn in this palette at all.
            palette.colors_to_ids(rgb)
        except NotAPaletteImageError as err:
            raise DataError(f"{where}: {err}") from err
        return repair_blended_labels(rgb, palette)
    return _id_map(image, where, "label map")


def _id_map(image: PIL.Image.Image, where: str, what: str) -> np.ndarray:
    if image.mode not in _ID_MODES:
        hint = (
            " pass palette=... (e.g. 'facades' or 'cityscapes') to map colours to ids"
            if what == "label map"
            else " instance maps must be single-channel (8- or 16-bit) id images"
        )
        raise DataError(
            f"{where}: the {what} is a {image.mode} image, not a single-channel id image;{hint}"
        )
    # np.asarray keeps 16-bit values (mode I;16 -> uint16, I -> int32): no clipping to 255.
    return np.asarray(image).astype(np.int64)


@dataclass
class _Params:
    size: tuple[int, int]  # (W, H) after resizing
    crop: tuple[int, int] | None  # (x, y) top-left of the crop_size square
    flip: bool


def _round_to(value: float, base: int) -> int:
    # As the official __make_power_2: the nearest multiple (Python round), at least one base.
    return max(base, int(round(value / base) * base))


def _transform_params(
    config: DataConfig, width: int, height: int, row: int, epoch: int, where: str
) -> _Params:
    mode = config.preprocess
    if mode.startswith("resize"):
        new_w = new_h = config.load_size
    elif mode.startswith("scale_width"):
        new_w = config.load_size
        new_h = int(config.load_size * height / width)
        if mode.endswith("crop"):
            # As junyanz' __scale_width: a very wide image still leaves room for the crop.
            new_h = max(new_h, config.crop_size)
    else:
        new_w, new_h = width, height
    crop = "crop" in mode
    if not crop:
        new_w, new_h = (
            _round_to(new_w, config.size_multiple),
            _round_to(new_h, config.size_multiple),
        )
    elif min(new_w, new_h) < config.crop_size:
        raise DataError(
            f"{where}: the image is {new_w}x{new_h} after preprocess {mode!r}, smaller than "
            f"crop_size {config.crop_size}; lower crop_size or use a resize mode"
        )
    # Only (seed, epoch, row) seed the draw: no global RNG, no dependence on worker order.
    rng = np.random.default_rng([config.seed, epoch, row])
    x = int(rng.integers(0, new_w - config.crop_size + 1)) if crop else 0
    y = int(rng.integers(0, new_h - config.crop_size + 1)) if crop else 0
    flip = bool(rng.random() < 0.5) and config.flip
    return _Params(size=(new_w, new_h), crop=(x, y) if crop else None, flip=flip)


def _apply_photo(image: PIL.Image.Image, params: _Params, crop_size: int) -> torch.Tensor:
    """PIL image -> (3, H, W) float32 in [-1, 1], bicubic resize, crop, flip."""
    image = image.convert("RGB")
    if image.size != params.size:
        image = image.resize(params.size, PIL.Image.Resampling.BICUBIC)
    array = np.asarray(image, dtype=np.float32)
    if params.crop is not None:
        x, y = params.crop
        array = array[y : y + crop_size, x : x + crop_size]
    if params.flip:
        array = array[:, ::-1]
    tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
    return tensor / 127.5 - 1.0


def _apply_ids(ids: np.ndarray, params: _Params, crop_size: int) -> torch.Tensor:
    """(H, W) ids -> (1, H', W') int64, nearest resize (no new ids), crop, flip."""
    if (ids.shape[1], ids.shape[0]) != params.size:
        # PIL's 32-bit mode "I" resizes exactly like the official code's PIL NEAREST, and holds
        # 16-bit instance ids (up to 33999) unchanged.
        image = PIL.Image.fromarray(ids.astype(np.int32))
        ids = np.asarray(image.resize(params.size, PIL.Image.Resampling.NEAREST), dtype=np.int64)
    if params.crop is not None:
        x, y = params.crop
        ids = ids[y : y + crop_size, x : x + crop_size]
    if params.flip:
        ids = ids[:, ::-1]
    return torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64))[None]


class _PairBuilder:
    """Turns one dataset row into one item; shared by the map-style and streaming datasets."""

    def __init__(self, config: DataConfig, layout: str) -> None:
        self.config = config
        self.layout = layout
        self.palette = resolve_palette(config.palette)

    def _where(self, row: dict[str, Any], column: str, name: str) -> str:
        if self.layout == "hub":
            return f"{name}, column {column!r} of {self.config.source!r}/{self.config.split}"
        value = row.get(column)
        path = value.get("path") if isinstance(value, dict) else None
        return str(path) if path else name

    def _column(self, row: dict[str, Any], column: str, name: str) -> PIL.Image.Image:
        if column not in row:
            available = ", ".join(k for k in row if k not in (_ROW, _NAME))
            raise DataError(
                f"{name} of {self.config.source!r} has no column {column!r}; available columns: "
                f"{available}. Set column_a / column_b"
            )
        return _decode(row[column], self._where(row, column, name))

    def _raw(self, row: dict[str, Any], name: str) -> dict[str, tuple[Any, str]]:
        """Undecoded maps of one pair: {"input" | "target" | "instance": (PIL image, where)}."""
        config = self.config
        b_to_a = config.direction == "BtoA"
        if self.layout == "aligned":
            where = self._where(row, "image", name)
            ab = self._column(row, "image", name)
            width, height = ab.size
            if width % 2:
                raise DataError(
                    f"{where}: an aligned AB image must have an even width (A left, B right "
                    f"halves), got {width}x{height}; is this a single image rather than a pair?"
                )
            half = width // 2
            a = ab.crop((0, 0, half, height))
            b = ab.crop((half, 0, width, height))
            return {
                "input": (
                    b if b_to_a else a,
                    f"{where} ({'right half B' if b_to_a else 'left half A'})",
                ),
                "target": (
                    a if b_to_a else b,
                    f"{where} ({'left half A' if b_to_a else 'right half B'})",
                ),
            }
        if self.layout == "pix2pixhd":
            raw = {
                "input": (self._column(row, "label", name), self._where(row, "label", name)),
                "target": (self._column(row, "image", name), self._where(row, "image", name)),
            }
            if "instance" in row:
                raw["instance"] = (
                    self._column(row, "instance", name),
                    self._where(row, "instance", name),
                )
            return raw
        col_in, col_out = (
            (config.column_b, config.column_a) if b_to_a else (config.column_a, config.column_b)
        )
        return {
            "input": (self._column(row, col_in, name), self._where(row, col_in, name)),
            "target": (self._column(row, col_out, name), self._where(row, col_out, name)),
        }

    def build(self, row: dict[str, Any], row_index: int, name: str, epoch: int) -> dict[str, Any]:
        config = self.config
        raw = self._raw(row, name)
        target, target_where = raw["target"]
        source, source_where = raw["input"]
        maps: dict[str, tuple[np.ndarray, str]] = {}  # id maps: key -> ((H, W) ids, where)
        sizes = [("input", source.size, source_where)]
        if config.input_kind == "labels":
            ids = _label_ids(source, self.palette, source_where)
            maps["label"] = (ids, source_where)
            if config.use_instance_map:
                if "instance" in raw:
                    image, where = raw["instance"]
                    maps["instance"] = (_id_map(image, where, "instance map"), where)
                    sizes.append(("instance map", image.size, where))
                else:  # no instance file: pix2pixHD's boundaries then follow the label map
                    maps["instance"] = (ids, source_where)
        for what, (width, height), where in sizes:
            if (width, height) != target.size:
                raise DataError(
                    f"size mismatch in {name}: {what} {where} is {width}x{height} but the photo "
                    f"{target_where} is {target.size[0]}x{target.size[1]}; the maps of a pair "
                    "must have the same size"
                )
        if "label" in maps:
            top = int(maps["label"][0].max()) if maps["label"][0].size else 0
            if top >= config.label_nc:
                raise DataError(
                    f"{source_where}: label id {top} found but label_nc is {config.label_nc} "
                    f"(ids must be in 0..{config.label_nc - 1}); set label_nc to at least "
                    f"{top + 1}, or map ignore values such as 255 to a real class"
                )
        params = _transform_params(config, *target.size, row_index, epoch, target_where)
        item: dict[str, Any] = {"target": _apply_photo(target, params, config.crop_size)}
        if config.input_kind == "labels":
            for key, (array, _) in maps.items():
                item[key] = _apply_ids(array, params, config.crop_size)
        else:
            item["input"] = _apply_photo(source, params, config.crop_size)
        if config.drawn_sketches or config.drawn_labels:
            self._redraw(item, np.random.default_rng([config.seed, epoch, row_index, 1]))
        item["name"] = name
        return item

    def _redraw(self, item: dict[str, Any], rng: np.random.Generator) -> None:
        """Make the input look drawn by hand (see :mod:`hf_pix2pixhd.drawn`), in place."""
        if self.config.drawn_sketches:
            sketch = redraw_sketch(item["input"].numpy(), rng, tuple(self.config.stroke_widths))
            item["input"] = torch.from_numpy(np.ascontiguousarray(sketch, dtype=np.float32))
        if self.config.drawn_labels:
            ids = redraw_labels(item["label"][0].numpy(), rng, self.palette)
            item["label"] = torch.from_numpy(ids)[None]


# --------------------------------------------------------------------------------------------
# Public datasets
# --------------------------------------------------------------------------------------------


class PairedImageDataset(torch.utils.data.Dataset):
    """Map-style paired dataset over a ``datasets.Dataset`` (see :func:`build_dataset`).

    Items: ``"target"`` (3, H, W) float32 in [-1, 1]; ``"input"`` (3, H, W) float32 in [-1, 1]
    (rgb / sketch) or ``"label"`` (1, H, W) int64 in [0, label_nc) and optionally
    ``"instance"`` (1, H, W) int64 (labels); ``"name"`` str. Augmentation depends only on
    (config.seed, epoch, the row's index in the source split): call :meth:`set_epoch` each epoch.
    """

    def __init__(self, config: DataConfig) -> None:
        config.validate()
        self.config = config
        self.layout = _resolve_layout(config)
        if self.layout == "hub":
            ds = _load_hub(config, streaming=False)
            names = [f"row {i}" for i in range(len(ds))]
        else:
            ds = _load_local(config, self.layout)
            names = list(ds[_NAME])
        self._rows = _select_rows(config, names)
        self._names = [names[i] for i in self._rows]
        self.dataset = ds if len(self._rows) == len(ds) else ds.select(self._rows)
        self._builder = _PairBuilder(config, self.layout)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} pairs")
        index %= len(self)
        return self._builder.build(
            self.dataset[index], self._rows[index], self._names[index], self.epoch
        )

    @property
    def names(self) -> list[str]:
        """Item names in order (file names, or "row <i>" for hub rows)."""
        return list(self._names)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation of this epoch (random crops and flips change per epoch)."""
        self.epoch = int(epoch)


def _add_row_index(_: dict[str, Any], index: int) -> dict[str, Any]:
    return {_ROW: index, _NAME: f"row {index}"}


def _row_in_subset(row: dict[str, Any], holdout_fraction: float, subset: str) -> bool:
    return _in_subset(row[_NAME], holdout_fraction, subset)


class StreamingPairedDataset(torch.utils.data.IterableDataset):
    """Iterable paired dataset over a streaming ``datasets.IterableDataset``.

    Yields the same items as :class:`PairedImageDataset`, in source order. This process (rank
    of world_size) sees every world_size-th row, split with ``split_dataset_by_node``; inside a
    DataLoader, workers further take every num_workers-th of those rows. Rows keep their index in
    the whole source split, so names, holdout membership and augmentation match map-style.
    """

    def __init__(self, config: DataConfig, rank: int = 0, world_size: int = 1) -> None:
        config.validate()
        if not 0 <= rank < world_size:
            raise DataError(f"rank must be in [0, world_size), got rank {rank} of {world_size}")
        self.config = config
        self.layout = _resolve_layout(config)
        self.rank, self.world_size = rank, world_size
        if self.layout == "hub":
            stream = _load_hub(config, streaming=True)
            # Indexed before any split, so that every row keeps its global index.
            stream = stream.map(_add_row_index, with_indices=True)
            if config.subset != "all":
                stream = stream.filter(
                    functools.partial(
                        _row_in_subset,
                        holdout_fraction=config.holdout_fraction,
                        subset=config.subset,
                    )
                )
            if config.max_samples is not None:
                stream = stream.take(config.max_samples)
        else:
            ds = _load_local(config, self.layout)
            rows = _select_rows(config, list(ds[_NAME]))
            ds = ds.select(rows).add_column(_ROW, rows)
            stream = ds.to_iterable_dataset()
        if world_size > 1:
            # "examples": every world_size-th row. Splitting by shards would restart the row
            # index in each shard and give the processes files of unequal length. (The strategy
            # argument needs a recent `datasets`; 5.x has it.)
            stream = split_dataset_by_node(
                stream, rank=rank, world_size=world_size, strategy="examples"
            )
        self.dataset = stream
        self._builder = _PairBuilder(config, self.layout)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation of this epoch."""
        self.epoch = int(epoch)
        self.dataset.set_epoch(self.epoch)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker = torch.utils.data.get_worker_info()
        # `.iter()` rather than `iter(dataset)`: the latter re-shards by file inside DataLoader
        # workers, which would lose the global row indices. Workers take every n-th row instead.
        for position, batch in enumerate(self.dataset.iter(batch_size=1)):
            if worker is not None and position % worker.num_workers != worker.id:
                continue
            row = {key: values[0] for key, values in batch.items()}
            yield self._builder.build(row, int(row[_ROW]), str(row[_NAME]), self.epoch)


def build_dataset(
    config: DataConfig, rank: int = 0, world_size: int = 1
) -> PairedImageDataset | StreamingPairedDataset:
    """The dataset for ``config``: streaming if ``config.streaming``, map-style otherwise.

    ``rank`` / ``world_size`` shard streaming datasets; a map-style dataset is returned whole
    (shard it with a DistributedSampler, or let Accelerate's prepared DataLoader do it).
    """
    if config.streaming:
        return StreamingPairedDataset(config, rank=rank, world_size=world_size)
    if not 0 <= rank < world_size:
        raise DataError(f"rank must be in [0, world_size), got rank {rank} of {world_size}")
    return PairedImageDataset(config)


def collate_pairs(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack item tensors into (N, C, H, W) batches; ``"name"`` becomes a list of N strings."""
    if not items:
        raise DataError("collate_pairs got an empty list of items")
    keys = list(items[0])
    batch: dict[str, Any] = {}
    for item in items:
        if list(item) != keys:
            raise DataError(
                f"items have different keys: {keys} vs {list(item)} ({item.get('name')}); "
                "batch items from one dataset config"
            )
    for key in keys:
        values = [item[key] for item in items]
        if not all(isinstance(v, torch.Tensor) for v in values):
            batch[key] = values
            continue
        shapes = {tuple(v.shape) for v in values}
        if len(shapes) > 1:
            sizes = ", ".join(f"{item.get('name')}: {tuple(item[key].shape)}" for item in items)
            raise DataError(
                f"cannot batch {key!r} tensors of different sizes ({sizes}); use a crop or "
                "resize preprocess so every item has the same size, or batch size 1"
            )
        batch[key] = torch.stack(values)
    return batch
