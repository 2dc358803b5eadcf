"""Label maps: colour palettes, colour <-> class id, one-hot encoding and instance boundaries.

pix2pix datasets store semantic labels as *colour* images (often JPEG-compressed, so colours are
blurred and noisy); pix2pixHD feeds its generator a one-hot label map plus a 1-channel instance
boundary map. Everything here is vectorised: no Python loops over pixels or instances.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

__all__ = [
    "CITYSCAPES_PALETTE",
    "FACADES_PALETTE",
    "NotAPaletteImageError",
    "Palette",
    "assemble_generator_input",
    "instance_boundaries",
    "label_image_ids",
    "one_hot",
    "repair_blended_labels",
]

# Entries of the (unique colours, K) distance matrix computed at once: bounds memory to 16 MB
# even for a noise image, where nearly every pixel has its own colour.
_DISTANCE_BLOCK_ENTRIES = 1 << 22


class NotAPaletteImageError(ValueError):
    """An image given as a colour label map is not drawn in the expected palette."""


def _to_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """Return `image` as an (H, W, 3) uint8 array; TypeError / ValueError for anything else."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"expected a PIL.Image or an (H, W, 3) uint8 numpy array, got {type(image).__name__}"
        )
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"expected an RGB image of shape (H, W, 3), got shape {image.shape}; "
            "drop an alpha channel with image[..., :3], or pass a PIL image"
        )
    if image.dtype == np.uint8:
        return image
    if not np.issubdtype(image.dtype, np.integer):
        raise ValueError(
            f"expected uint8 colours 0..255, got dtype {image.dtype}; a float image in [0, 1] "
            "must be converted with (image * 255).round().astype(np.uint8)"
        )
    if image.size and (image.min() < 0 or image.max() > 255):
        raise ValueError(
            f"colour values must be in 0..255, got {image.min()}..{image.max()}; "
            "pass an 8-bit RGB image"
        )
    return image.astype(np.uint8)


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of a (H, W) mask with a (2r+1)x(2r+1) square, via box sums (O(HW))."""
    if radius == 0:
        return mask.copy()
    out = mask.astype(np.int32)
    for axis in (0, 1):
        # A running sum turns "any set pixel within r" into one subtraction, whatever r is.
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius + 1, radius)
        csum = np.cumsum(np.pad(out, pad), axis=axis)
        n = out.shape[axis]
        upper = np.take(csum, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
        lower = np.take(csum, np.arange(n), axis=axis)
        out = upper - lower
    return out > 0


def _uniform_neighbourhood(ids: np.ndarray) -> np.ndarray:
    """(H, W) bool: True where a pixel's id equals all its (in-image) 4-neighbours' ids."""
    same = np.ones(ids.shape, dtype=bool)
    vertical = ids[1:, :] == ids[:-1, :]
    horizontal = ids[:, 1:] == ids[:, :-1]
    same[1:, :] &= vertical
    same[:-1, :] &= vertical
    same[:, 1:] &= horizontal
    same[:, :-1] &= horizontal
    return same


@dataclass(frozen=True, eq=False, repr=False)
class Palette:
    """A fixed colour per class id: class ``i`` is drawn in ``colors[i]``.

    Args:
        colors: (K, 3) RGB colours, values 0..255 (any nested sequence or array). Stored as a
            read-only uint8 array. Several classes may share a colour; the lowest id wins when
            mapping colours back to ids.
        names: K class names, or None.
    """

    colors: np.ndarray
    names: tuple[str, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        try:
            raw = np.asarray(self.colors)
        except ValueError as err:  # ragged nesting
            raise ValueError(f"palette colors must be a (K, 3) array of RGB values: {err}") from err
        if raw.ndim != 2 or raw.shape[1] != 3 or raw.shape[0] == 0:
            raise ValueError(
                f"palette colors must have shape (K, 3) with K >= 1, got shape {raw.shape}; "
                "give one [r, g, b] triple per class"
            )
        if not (np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.floating)):
            raise ValueError(f"palette colors must be numbers 0..255, got dtype {raw.dtype}")
        if np.issubdtype(raw.dtype, np.floating) and not np.all(np.isfinite(raw)):
            raise ValueError("palette colors contain NaN or infinity; give integers 0..255")
        if raw.min() < 0 or raw.max() > 255:
            raise ValueError(
                f"palette colors must be in 0..255, got values {raw.min()}..{raw.max()}; "
                "give 8-bit RGB values"
            )
        if np.issubdtype(raw.dtype, np.floating) and np.any(raw != np.round(raw)):
            raise ValueError(
                "palette colors must be whole numbers 0..255; colours in [0, 1] must be "
                "scaled with np.round(colors * 255)"
            )
        colors = raw.astype(np.uint8)
        # Frozen means frozen: a shared palette must not be mutated through its array.
        colors.setflags(write=False)
        object.__setattr__(self, "colors", colors)

        if self.names is not None:
            # A bare string is iterable too, and would silently become K one-letter names.
            if isinstance(self.names, str) or not isinstance(self.names, Iterable):
                raise ValueError(
                    "palette names must be a sequence of K strings, "
                    f"got {type(self.names).__name__}"
                )
            names = tuple(self.names)
            if len(names) != len(colors):
                raise ValueError(
                    f"palette has {len(colors)} colors but {len(names)} names; "
                    "give exactly one name per colour, or names=None"
                )
            if not all(isinstance(n, str) for n in names):
                raise ValueError("palette names must all be strings")
            object.__setattr__(self, "names", names)

    @property
    def num_classes(self) -> int:
        """Number of classes K (the generator's ``label_nc``)."""
        return int(self.colors.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Palette):
            return NotImplemented
        return np.array_equal(self.colors, other.colors) and self.names == other.names

    def __hash__(self) -> int:
        return hash((self.colors.tobytes(), self.names))

    def __reduce__(self) -> tuple[type[Palette], tuple[np.ndarray, tuple[str, ...] | None]]:
        # Rebuild through __init__ so an unpickled palette is validated and read-only too.
        return (type(self), (self.colors, self.names))

    def __repr__(self) -> str:
        names = "None" if self.names is None else f"({', '.join(map(repr, self.names))})"
        return f"Palette(num_classes={self.num_classes}, names={names})"

    def to_config(self) -> dict[str, Any]:
        """JSON-serialisable form: ``{"colors": [[r, g, b], ...], "names": [...] or None}``."""
        return {
            "colors": self.colors.tolist(),
            "names": None if self.names is None else list(self.names),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Palette:
        """Inverse of :meth:`to_config`."""
        if not isinstance(config, dict) or "colors" not in config:
            raise ValueError(
                "a palette config must be a dict with a 'colors' key (and optionally 'names'), "
                "as written by Palette.to_config()"
            )
        unknown = set(config) - {"colors", "names"}
        if unknown:
            raise ValueError(
                f"unknown palette config keys {sorted(unknown)}; expected 'colors' and 'names'"
            )
        return cls(colors=config["colors"], names=config.get("names"))

    def _nearest(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nearest palette id for each pixel of an (H, W, 3) uint8 image.

        Returns (ids, squared distances, unique-colour inverse), all per pixel except the
        distances, which are per unique colour, so callers can look up colours cheaply.
        """
        flat = pixels.reshape(-1, 3).astype(np.int32)
        packed = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
        # Label maps hold few distinct colours, so snapping the unique ones is far cheaper than
        # snapping every pixel.
        unique, inverse = np.unique(packed, return_inverse=True)
        rgb = np.stack([unique >> 16, (unique >> 8) & 255, unique & 255], axis=1)
        rgb = rgb.astype(np.float32)
        palette = self.colors.astype(np.float32)
        # |u - p|^2 = |u|^2 - 2 u.p + |p|^2; |u|^2 does not change the argmin, so it is added
        # back for the winner only. Every term is an integer below 2^24, so float32 is exact
        # (exact ties too, which the lowest-id rule relies on).
        minus_2pt = -2.0 * palette.T
        palette_sq = (palette**2).sum(axis=1)
        best = np.empty(len(unique), dtype=np.int64)
        best_d2 = np.empty(len(unique), dtype=np.int64)
        block_rows = max(1, _DISTANCE_BLOCK_ENTRIES // self.num_classes)
        for start in range(0, len(unique), block_rows):
            block = rgb[start : start + block_rows]
            scores = block @ minus_2pt
            scores += palette_sq
            # argmin returns the first minimum, so the lowest id wins among equal colours.
            idx = scores.argmin(axis=1)
            rows = slice(start, start + len(block))
            best[rows] = idx
            best_d2[rows] = scores[np.arange(len(block)), idx] + (block**2).sum(axis=1)
        ids = best[inverse].reshape(pixels.shape[:2])
        return ids, best_d2, inverse.reshape(pixels.shape[:2])

    def colors_to_ids(
        self,
        image: Image.Image | np.ndarray,
        max_distance: float | None = 60.0,
        max_outlier_fraction: float = 0.1,
        blend_radius: int = 5,
    ) -> np.ndarray:
        """Map a colour label map to class ids by the nearest palette colour (Euclidean RGB).

        Nearest-colour snapping absorbs JPEG noise. Ids sharing a colour resolve to the lowest.

        Args:
            image: PIL image (converted to RGB) or (H, W, 3) uint8 array.
            max_distance: a pixel farther than this from every palette colour is *off-palette*.
                None disables the sanity check.
            max_outlier_fraction: raise if more than this fraction (0..1) of the pixels are
                outliers.
            blend_radius: off-palette pixels within this many pixels of a solid on-palette
                region are not outliers: blurred or JPEG-compressed label maps blend the two
                colours along every boundary (up to ~40% of a pix2pix facades label). 0 counts
                every off-palette pixel.

        Returns:
            (H, W) int64 class ids in 0..K-1.

        Raises:
            NotAPaletteImageError: the image does not look like a label map in this palette.
        """
        pixels = _to_rgb_array(image)
        ids, best_d2, inverse = self._nearest(pixels)
        if max_distance is not None:
            self._check_outliers(
                pixels, ids, best_d2, inverse, max_distance, max_outlier_fraction, blend_radius
            )
        return ids

    def _check_outliers(
        self,
        pixels: np.ndarray,
        ids: np.ndarray,
        best_d2: np.ndarray,
        inverse: np.ndarray,
        max_distance: float,
        max_outlier_fraction: float,
        blend_radius: int,
    ) -> None:
        if not max_distance > 0:
            raise ValueError(f"max_distance must be positive (or None), got {max_distance}")
        if not 0.0 <= max_outlier_fraction <= 1.0:
            raise ValueError(f"max_outlier_fraction must be in [0, 1], got {max_outlier_fraction}")
        if not (isinstance(blend_radius, int) and blend_radius >= 0):
            raise ValueError(f"blend_radius must be an int >= 0, got {blend_radius!r}")
        if ids.size == 0:
            return
        far_unique = best_d2 > max_distance**2
        far = far_unique[inverse]
        limit = max_outlier_fraction * ids.size
        if far.sum() <= limit:  # fast path: clean label maps never need the spatial test
            return
        if blend_radius > 0:
            # Seeds must sit in a uniform patch: in noise, isolated pixels land near some palette
            # colour by chance and would otherwise excuse everything around them.
            solid = ~far & _uniform_neighbourhood(ids)
            outliers = far & ~_dilate(solid, blend_radius)
        else:
            outliers = far
        n_out = int(outliers.sum())
        if n_out <= limit:
            return
        # The most frequent offending colour is the most telling example.
        counts = np.bincount(inverse[outliers], minlength=len(best_d2))
        example = int(np.argmax(counts))
        y, x = (int(v[0]) for v in np.nonzero(outliers & (inverse == example)))
        rgb = tuple(int(c) for c in pixels[y, x])
        raise NotAPaletteImageError(
            f"{n_out / ids.size:.1%} of the pixels (allowed: {max_outlier_fraction:.1%}) are "
            f"farther than {max_distance:g} from every colour of this {self.num_classes}-class "
            f"palette, e.g. RGB {rgb} at (y={y}, x={x}). This does not look like a colour label "
            "map drawn in this palette. Pass the palette the labels were drawn with; if the "
            "image already holds class ids (a label-id image), use its values directly instead "
            "of colors_to_ids. To accept it anyway, raise max_distance / max_outlier_fraction "
            "or pass max_distance=None."
        )

    def ids_to_colors(self, ids: np.ndarray) -> np.ndarray:
        """Render class ids as colours: (H, W) integer ids in 0..K-1 -> (H, W, 3) uint8."""
        ids = np.asarray(ids)
        if ids.dtype == bool or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"class ids must be an integer array, got dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_classes):
            raise ValueError(
                f"class ids must be in 0..{self.num_classes - 1} for this {self.num_classes}-class "
                f"palette, got {ids.min()}..{ids.max()}; use the palette the ids came from"
            )
        return self.colors[ids]

    def snap(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """Replace every pixel by its nearest palette colour: (H, W, 3) uint8 -> same shape.

        No sanity check: snapping is meant for anything, e.g. anti-aliased user strokes.
        """
        return self.colors[self.colors_to_ids(image, max_distance=None)]


#: PIL modes that hold one value per pixel: ids, not colours. "P" / "PA" only with the model's
#: own palette (see :func:`label_image_ids`).
ID_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
PALETTE_MODES = ("P", "PA")


def label_image_ids(
    image: Image.Image, palette: Palette | None, what: str = "label map"
) -> np.ndarray | None:
    """The class ids a PIL label image holds directly, ``(H, W)`` int64; ``None`` when it is
    drawn in colours (map those with ``palette.colors_to_ids`` or :func:`repair_blended_labels`).

    - ``L``, ``I``, ``I;16`` (16-bit PNG), ``F`` (whole numbers), ``1``; ``LA``: its ``L``
      channel (transparency means nothing in a label map).
    - ``P`` / ``PA`` (palette PNG, GIF): its indices are the ids when its palette gives every
      index used the colour ``palette`` gives that class, and when there is no ``palette`` to
      read colours with (VOC-style label PNGs); otherwise (e.g. ``Image.quantize`` of a colour
      label map, or our colours in another order) it is a colour image: ``None``.
    - Everything else (``RGB``, ``RGBA``, ``CMYK``, ...): ``None``.
    """
    if image.mode in PALETTE_MODES:
        indices = np.asarray(image)
        indices = indices[..., 0] if indices.ndim == 3 else indices
        if palette is None or _palette_matches(image, indices, palette):
            return indices.astype(np.int64)
        return None
    if image.mode not in ID_MODES:
        return None
    values = np.asarray(image)
    values = values[..., 0] if values.ndim == 3 else values
    if values.dtype.kind == "f" and not (
        np.isfinite(values).all() and np.array_equal(values, np.round(values))
    ):
        raise ValueError(
            f"The {what} is a float ('F') image that does not hold whole-number ids (found "
            "fractions, NaN or infinity)."
        )
    return values.astype(np.int64)


def _palette_matches(image: Image.Image, indices: np.ndarray, palette: Palette) -> bool:
    """Whether a "P" image's palette gives every index it uses ``palette``'s colour for it."""
    raw = image.getpalette("RGB")
    if raw is None:
        return False
    colors = np.asarray(raw, dtype=np.uint8).reshape(-1, 3)
    used = np.flatnonzero(np.bincount(indices.ravel(), minlength=256))
    if used.size == 0 or used[-1] >= min(len(colors), palette.num_classes):
        return False
    return bool(np.array_equal(colors[used], palette.colors[used]))


def _validate_num_classes(num_classes: int, what: str) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{what} must be a positive int, got {num_classes!r}")


def _label_ids_as_index(label_ids: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Validate (N, H, W) / (N, 1, H, W) class ids and return them as (N, 1, H, W) int64."""
    if not isinstance(label_ids, torch.Tensor):
        raise TypeError(f"label_ids must be a torch.Tensor, got {type(label_ids).__name__}")
    if label_ids.dim() == 3:
        label_ids = label_ids.unsqueeze(1)
    if label_ids.dim() != 4 or label_ids.shape[1] != 1:
        raise ValueError(
            f"label_ids must have shape (N, H, W) or (N, 1, H, W), got {tuple(label_ids.shape)}; "
            "pass class ids, not an already one-hot or RGB map"
        )
    if label_ids.is_complex():
        raise ValueError("label_ids must be real integer class ids, got a complex tensor")
    # Label maps are often loaded as float images; only finite whole numbers are ids.
    if label_ids.is_floating_point() and label_ids.numel():
        not_id = ~torch.isfinite(label_ids) | (label_ids != label_ids.round())
        if not_id.any():
            bad = label_ids[not_id][0].item()
            raise ValueError(
                f"label_ids must hold whole-number class ids, found {bad}; load label maps "
                "without normalisation and resize them with nearest-neighbour interpolation"
            )
    if label_ids.numel():
        low, high = int(label_ids.min().item()), int(label_ids.max().item())
        if low < 0:
            raise ValueError(
                f"label_ids contain negative id {low}; ids must be in 0..{num_classes - 1}. "
                "Map ignore/void pixels to a real class id first"
            )
        if high >= num_classes:
            raise ValueError(
                f"label_ids contain id {high} but num_classes is {num_classes} (ids must be in "
                f"0..{num_classes - 1}); set label_nc to at least {high + 1}, or map ignore "
                "values such as 255 to a real class first"
            )
    return label_ids.long()


def one_hot(
    label_ids: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """One-hot encode class ids: (N, H, W) or (N, 1, H, W) -> (N, num_classes, H, W) in {0, 1}.

    ``label_ids`` may be any integer tensor, or a float tensor holding whole numbers.
    """
    _validate_num_classes(num_classes, "num_classes")
    index = _label_ids_as_index(label_ids, num_classes)
    n, _, h, w = index.shape
    out = torch.zeros(n, num_classes, h, w, dtype=dtype, device=index.device)
    return out.scatter_(1, index, 1)


def _as_instance_map(instance_map: torch.Tensor) -> torch.Tensor:
    if not isinstance(instance_map, torch.Tensor):
        raise TypeError(f"instance_map must be a torch.Tensor, got {type(instance_map).__name__}")
    if instance_map.dim() == 3:
        instance_map = instance_map.unsqueeze(1)
    if instance_map.dim() != 4 or instance_map.shape[1] != 1:
        raise ValueError(
            f"instance_map must have shape (N, H, W) or (N, 1, H, W), got "
            f"{tuple(instance_map.shape)}"
        )
    return instance_map


def instance_boundaries(instance_map: torch.Tensor) -> torch.Tensor:
    """Instance boundary map, exactly as pix2pixHD's ``get_edges``.

    A pixel is a boundary (1) where its instance id differs from a 4-neighbour; both pixels of
    each differing pair are marked.

    Args:
        instance_map: (N, 1, H, W) or (N, H, W), any numeric dtype. Compare ids in their own
            dtype: large ids (e.g. Cityscapes' 26001) are exact in integers and float32.

    Returns:
        (N, 1, H, W) float32 in {0, 1}.
    """
    t = _as_instance_map(instance_map)
    edge = torch.zeros(t.shape, dtype=torch.bool, device=t.device)
    horizontal = t[:, :, :, 1:] != t[:, :, :, :-1]
    vertical = t[:, :, 1:, :] != t[:, :, :-1, :]
    edge[:, :, :, 1:] |= horizontal
    edge[:, :, :, :-1] |= horizontal
    edge[:, :, 1:, :] |= vertical
    edge[:, :, :-1, :] |= vertical
    return edge.float()


def assemble_generator_input(
    label_ids: torch.Tensor,
    label_nc: int,
    instance_map: torch.Tensor | None = None,
    features: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Build the pix2pixHD generator input.

    Channels, in order: ``one_hot(label_ids, label_nc)``, then ``instance_boundaries(instance_map)``
    if given, then ``features`` if given.

    Args:
        label_ids: (N, H, W) or (N, 1, H, W) class ids in 0..label_nc-1.
        label_nc: number of label classes.
        instance_map: optional (N, H, W) or (N, 1, H, W) instance ids.
        features: optional (N, F, H, W) encoder features (e.g. pix2pixHD's feat_num=3).
        dtype: output dtype.

    Returns:
        (N, label_nc [+ 1] [+ F], H, W) tensor on ``label_ids``' device.
    """
    _validate_num_classes(label_nc, "label_nc")
    parts = [one_hot(label_ids, label_nc, dtype=dtype)]
    n, _, h, w = parts[0].shape
    device = parts[0].device

    def check(name: str, tensor: torch.Tensor) -> None:
        if tensor.shape[0] != n or tuple(tensor.shape[2:]) != (h, w):
            raise ValueError(
                f"{name} has batch x spatial size {tensor.shape[0]} x {tuple(tensor.shape[2:])} "
                f"but label_ids has {n} x {(h, w)}; resize both with the same transform "
                "(nearest-neighbour for ids)"
            )
        if tensor.device != device:
            raise ValueError(
                f"{name} is on {tensor.device} but label_ids is on {device}; move them together"
            )

    if instance_map is not None:
        inst = _as_instance_map(instance_map)
        check("instance_map", inst)
        parts.append(instance_boundaries(inst).to(dtype))
    if features is not None:
        if not isinstance(features, torch.Tensor) or features.dim() != 4:
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else None
            raise ValueError(f"features must be an (N, F, H, W) tensor, got shape {shape}")
        check("features", features)
        parts.append(features.to(dtype))
    return torch.cat(parts, dim=1)


# Measured from the 400 pix2pix facades labels (/work/shared/data/facades, modal colour of each
# of the 12 colour clusters): a jet-like ramp, but NOT MATLAB's jet(12) ((0,0,170), (0,0,255),
# ...), which is off by up to ~50 per channel. Ids follow the CMP facade database order, which
# matches the ramp order and the classes' layout in the images (shop and door at the bottom,
# sill right under window, background along the borders).
FACADES_PALETTE = Palette(
    colors=[
        (0, 0, 222),
        (0, 48, 255),
        (0, 128, 255),
        (0, 208, 255),
        (32, 255, 224),
        (112, 255, 144),
        (192, 255, 64),
        (255, 240, 0),
        (255, 160, 0),
        (255, 80, 0),
        (255, 0, 0),
        (174, 0, 0),
    ],
    names=(
        "background",
        "facade",
        "window",
        "door",
        "cornice",
        "sill",
        "balcony",
        "blind",
        "deco",
        "molding",
        "pillar",
        "shop",
    ),
)

# Cityscapes labelIds 0..33 with cityscapesScripts' colours (helpers/labels.py), plus
# "license plate" (id -1 there) as 34, giving pix2pixHD's label_nc of 35. Colours repeat
# (ids 0-4 black, pole/polegroup, car/license plate), so colour -> id gives the lowest id.
CITYSCAPES_PALETTE = Palette(
    colors=[
        (0, 0, 0),
        (0, 0, 0),
        (0, 0, 0),
        (0, 0, 0),
        (0, 0, 0),
        (111, 74, 0),
        (81, 0, 81),
        (128, 64, 128),
        (244, 35, 232),
        (250, 170, 160),
        (230, 150, 140),
        (70, 70, 70),
        (102, 102, 156),
        (190, 153, 153),
        (180, 165, 180),
        (150, 100, 100),
        (150, 120, 90),
        (153, 153, 153),
        (153, 153, 153),
        (250, 170, 30),
        (220, 220, 0),
        (107, 142, 35),
        (152, 251, 152),
        (70, 130, 180),
        (220, 20, 60),
        (255, 0, 0),
        (0, 0, 142),
        (0, 0, 70),
        (0, 60, 100),
        (0, 0, 90),
        (0, 0, 110),
        (0, 80, 100),
        (0, 0, 230),
        (119, 11, 32),
        (0, 0, 142),
    ],
    names=(
        "unlabeled",
        "ego vehicle",
        "rectification border",
        "out of roi",
        "static",
        "dynamic",
        "ground",
        "road",
        "sidewalk",
        "parking",
        "rail track",
        "building",
        "wall",
        "fence",
        "guard rail",
        "bridge",
        "tunnel",
        "pole",
        "polegroup",
        "traffic light",
        "traffic sign",
        "vegetation",
        "terrain",
        "sky",
        "person",
        "rider",
        "car",
        "truck",
        "bus",
        "caravan",
        "trailer",
        "train",
        "motorcycle",
        "bicycle",
        "license plate",
    ),
)


def repair_blended_labels(
    image: Image.Image | np.ndarray, palette: Palette, max_distance: float = 30.0
) -> np.ndarray:
    """Colour label map -> class ids, giving blurred boundary pixels a neighbouring real class.

    JPEG-compressed or blurred label maps blend the colours of two regions along every boundary
    (about 27% of a pix2pix facades label is farther than 30 from every palette colour). Plain
    nearest-colour snapping maps such a blend to whatever palette colour happens to lie between
    the two, inventing thin fake regions (e.g. facade blue + pillar red -> "shop"). Here a pixel
    farther than ``max_distance`` from every palette colour instead takes the id of the nearest
    pixel (Euclidean, in the image plane) whose colour is within ``max_distance`` of the palette.

    Args:
        image: PIL image (converted to RGB) or (H, W, 3) uint8 array.
        palette: the palette the labels were drawn with.
        max_distance: RGB distance (0..441) under which a pixel's colour counts as a clean
            palette colour. If no pixel is that close, plain nearest-colour ids are returned.

    Returns:
        (H, W) int64 class ids in 0..K-1. No outlier check: call ``palette.colors_to_ids``
        first to reject images that are not drawn in this palette at all.
    """
    # Imported here: scipy is only needed for this function, keep `import labels` light.
    from scipy.ndimage import distance_transform_edt

    if not max_distance > 0:
        raise ValueError(f"max_distance must be positive, got {max_distance}")
    pixels = _to_rgb_array(image)
    ids, best_d2, inverse = palette._nearest(pixels)
    far = best_d2[inverse] > max_distance**2
    if ids.size == 0 or not far.any() or far.all():
        return ids
    # For every pixel, the coordinates of the nearest clean (non-far) pixel.
    _, (near_y, near_x) = distance_transform_edt(far, return_indices=True)
    return ids[near_y, near_x]
