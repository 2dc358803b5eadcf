"""Reading images and converting between PIL / numpy / torch, with clear errors.

Conventions: photos and sketches are float ``(N, C, H, W)`` in ``[-1, 1]``; label and instance
maps are int64 ``(N, 1, H, W)``.

Every input passes :func:`as_pil_or_array`: files are checked against the pixel limit from
their header before anything is decoded, EXIF orientation is applied, and arrays / tensors
are checked for size, dtype and NaN / infinity before any conversion.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
import torch.nn.functional as F

from .labels import Palette, label_image_ids

ImageInput = str | os.PathLike | PIL.Image.Image | np.ndarray | torch.Tensor

#: Default pixel limit (width x height) of any input, 4096 x 4096: far above what the
#: networks were trained on, low enough that the float tensors of one input stay in the GB range.
MAX_PIXELS = 4096 * 4096
#: Environment variable that overrides :data:`MAX_PIXELS` (a positive integer).
MAX_PIXELS_ENV = "HF_PIX2PIXHD_MAX_PIXELS"

_EXIF_ORIENTATION = 0x0112


class ImageReadError(ValueError):
    """A file that is missing, not an image, or truncated."""


class ImageSizeError(ImageReadError):
    """An image with no pixels, or more pixels than the limit (:func:`max_pixels`). A kind of
    :class:`ImageReadError`: callers that report unreadable files report these too."""


def max_pixels() -> int:
    """The pixel limit: ``$HF_PIX2PIXHD_MAX_PIXELS`` if set, else :data:`MAX_PIXELS`."""
    value = os.environ.get(MAX_PIXELS_ENV)
    if value is None or not value.strip():
        return MAX_PIXELS
    try:
        limit = int(value.strip().replace("_", ""))
    except ValueError:
        limit = 0
    if limit < 1:
        raise ValueError(f"{MAX_PIXELS_ENV} must be a positive integer (pixels), got {value!r}.")
    return limit


def check_image_size(width: int, height: int, what: str = "The image") -> None:
    """Refuse an image with no pixels or with more than :func:`max_pixels` pixels."""
    if width < 1 or height < 1:
        raise ImageSizeError(f"{what} is {width}x{height} (WxH): it has no pixels.")
    limit = max_pixels()
    if width * height > limit:
        raise ImageSizeError(
            f"{what} is {width}x{height} (WxH) = {width * height:,} pixels, more than the limit "
            f"of {limit:,}. Downscale it, or raise the limit with the environment variable "
            f"{MAX_PIXELS_ENV}=N (pixels) if you have the memory."
        )


def _allow_pil_up_to(limit: int) -> None:
    # Our limit is the one that counts: PIL's own bomb check (an error at twice its
    # MAX_IMAGE_PIXELS) must not refuse what the user allowed. It is only ever raised.
    if PIL.Image.MAX_IMAGE_PIXELS is not None and limit > PIL.Image.MAX_IMAGE_PIXELS:
        PIL.Image.MAX_IMAGE_PIXELS = limit


def _open_checked(path: Path) -> PIL.Image.Image:
    """Open ``path`` lazily (header only) and check its size; the caller closes it."""
    if not path.is_file():
        what = "is a folder, not an image file" if path.is_dir() else "does not exist"
        raise ImageReadError(f"Image file {path} {what}.")
    if path.stat().st_size == 0:
        raise ImageReadError(f"Image file {path} is empty (0 bytes).")
    _allow_pil_up_to(max_pixels())
    try:
        with warnings.catch_warnings():
            # PIL warns past its own limit; ours is checked right below, with a better message.
            warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
            image = PIL.Image.open(path)
    except PIL.Image.DecompressionBombError as error:
        # PIL refuses past twice its own limit, which is never below ours: ours is exceeded.
        found = re.search(r"\((\d+) pixels\)", str(error))
        count = f"{int(found.group(1)):,}" if found else "too many"
        raise ImageSizeError(
            f"The image {path} has {count} pixels, more than the limit of {max_pixels():,}. "
            f"Downscale it, or raise the limit with the environment variable {MAX_PIXELS_ENV}=N "
            "(pixels) if you have the memory."
        ) from error
    except (PIL.UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(
            f"Could not read {path} as an image ({type(error).__name__}: {error}). Is it a "
            "PNG/JPEG file, and complete (not truncated)?"
        ) from error
    try:
        check_image_size(*image.size, what=f"The image {path}")
    except ImageSizeError:
        image.close()
        raise
    return image


def check_image_file(path: str | os.PathLike) -> None:
    """Check that ``path`` is an image within the pixel limit, reading only its header."""
    _open_checked(Path(path)).close()


def load_image(path: str | os.PathLike) -> PIL.Image.Image:
    """Open and fully decode an image file, so that truncation is found here, not later.

    The size is checked from the header first (:func:`check_image_size`), so a decompression
    bomb is refused without being decoded. EXIF orientation is applied.
    """
    path = Path(path)
    with _open_checked(path) as image:
        try:
            image.load()
            loaded = image.copy()
        except (OSError, SyntaxError, ValueError) as error:
            raise ImageReadError(
                f"Could not read {path} as an image ({type(error).__name__}: {error}). Is it a "
                "PNG/JPEG file, and complete (not truncated)?"
            ) from error
    return apply_exif_orientation(loaded)


def apply_exif_orientation(image: PIL.Image.Image) -> PIL.Image.Image:
    """Rotate / flip a photo as its EXIF orientation tag says (cameras store it sideways)."""
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except (OSError, SyntaxError, ValueError):  # a damaged EXIF block: keep the pixels as stored
        return image
    if orientation in (None, 1):
        return image
    return PIL.ImageOps.exif_transpose(image)


def as_pil_or_array(item: ImageInput) -> PIL.Image.Image | np.ndarray | torch.Tensor:
    """Load paths; check PIL images, arrays and tensors and pass them through.

    PIL images are checked from their size (before anything is decoded) and turned upright
    (EXIF). Arrays and tensors are checked for empty or oversized shapes (the last two axes of
    a tensor, the first two of an array, are H and W), dtypes that are not numbers, and
    NaN / infinity.
    """
    if isinstance(item, str | os.PathLike):
        return load_image(item)
    if isinstance(item, PIL.Image.Image):
        check_image_size(*item.size)
        return apply_exif_orientation(item)
    if isinstance(item, np.ndarray):
        _check_values(item, item.dtype.kind, "array", item.shape[:2] if item.ndim >= 2 else None)
        return item
    if isinstance(item, torch.Tensor):
        kind = "b" if item.dtype == torch.bool else "c" if item.is_complex() else "f"
        kind = kind if kind != "f" or item.is_floating_point() else "i"
        _check_values(item, kind, "tensor", tuple(item.shape[-2:]) if item.ndim >= 2 else None)
        return item
    raise TypeError(
        f"Expected a path, PIL image, numpy array or torch tensor, got {type(item).__name__}."
    )


def _check_values(
    item: np.ndarray | torch.Tensor, kind: str, name: str, spatial: tuple[int, int] | None
) -> None:
    shape = tuple(item.shape)
    if kind == "b":
        raise ValueError(
            f"Got a bool {name} {shape}: say what it means with a number type, e.g. "
            ".astype(np.uint8) for ids 0/1 or (mask * 255).astype(np.uint8) for a black/white "
            "image."
        )
    if kind not in "iuf":
        article = "an" if name == "array" else "a"
        raise ValueError(
            f"Got {article} {name} of dtype {item.dtype}: images are uint8 / uint16 / float, "
            "label maps integer ids."
        )
    if spatial is not None:
        check_image_size(spatial[1], spatial[0], what=f"The {name} of shape {shape}")
    elif 0 in shape:
        raise ImageSizeError(f"The {name} of shape {shape} has no pixels.")
    if kind == "f":
        finite = np.isfinite(item).all() if name == "array" else bool(torch.isfinite(item).all())
        if not finite:
            raise ValueError(
                f"The {name} of shape {shape} contains NaN or infinite values; inputs must be "
                "finite (check the code that produced it, e.g. a division by zero)."
            )


def flatten_alpha(
    image: PIL.Image.Image, background: tuple[int, int, int] = (255, 255, 255)
) -> PIL.Image.Image:
    """Composite transparent pixels onto ``background`` (white by default): drawn sketches and
    label maps come as RGBA. Images without transparency are returned unchanged."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        base = PIL.Image.new("RGBA", rgba.size, (*background, 255))
        return PIL.Image.alpha_composite(base, rgba).convert("RGB")
    return image


def image_to_tensor(item: ImageInput, channels: int) -> torch.Tensor:
    """A photo or sketch as ``(1, channels, H, W)`` float32 in ``[-1, 1]``.

    Accepts PIL images of any mode (alpha is composited on white; 16-bit greyscale is scaled
    from 0..65535), ``uint8`` (0..255) or ``uint16`` (0..65535) arrays ``(H, W)``,
    ``(H, W, 3)`` or ``(H, W, 4)``, float arrays in ``[0, 1]``, float tensors ``(C, H, W)`` /
    ``(1, C, H, W)`` in ``[-1, 1]`` and uint8 tensors of that shape in 0..255.
    """
    if channels not in (1, 3):
        raise ValueError(f"Photo/sketch inputs need a 1- or 3-channel model, not {channels}.")
    item = as_pil_or_array(item)
    if isinstance(item, torch.Tensor):
        return _tensor_image(item, channels)
    image = _to_8bit_pil(item)
    image = flatten_alpha(image)
    array = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.float32)
    if channels == 1:
        array = array[:, :, None]
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0)
    return tensor / 127.5 - 1.0


def _tensor_image(item: torch.Tensor, channels: int) -> torch.Tensor:
    tensor = item if item.ndim == 4 else item.unsqueeze(0)
    if tensor.ndim != 4 or tensor.shape[0] != 1:
        raise ValueError(
            f"An image tensor must be (C, H, W) or (1, C, H, W), got {tuple(item.shape)}; pass "
            "several images as a list."
        )
    if tensor.shape[1] != channels:
        raise ValueError(
            f"This model takes {channels}-channel images, got a tensor with "
            f"{tensor.shape[1]} channels."
        )
    if tensor.dtype == torch.uint8:
        return tensor.float() / 127.5 - 1.0
    if not tensor.is_floating_point():
        raise ValueError(
            f"An image tensor must be float in [-1, 1] (or uint8 0..255), got {tensor.dtype}."
        )
    if tensor.abs().max() > 1.0 + 1e-3:
        raise ValueError(
            f"Image tensors must be in [-1, 1], got values in [{float(tensor.min()):g}, "
            f"{float(tensor.max()):g}]; for 0..255 data pass a uint8 tensor / array or a PIL "
            "image, for [0, 1] data pass tensor * 2 - 1."
        )
    return tensor.float().clamp(-1, 1).cpu()


def _to_8bit_pil(item: PIL.Image.Image | np.ndarray) -> PIL.Image.Image:
    """A PIL image in a mode that converts to L / RGB faithfully (8 bits per channel)."""
    if isinstance(item, np.ndarray):
        return _array_to_pil(item)
    # PIL converts 16-bit and float greyscale to L by clipping at 255: scale them instead.
    if item.mode.startswith("I") or item.mode == "F":
        return _array_to_pil(np.asarray(item), f"{item.mode} image")
    return item


def _array_to_pil(array: np.ndarray, what: str = "image array") -> PIL.Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        hint = ""
        if array.ndim == 3 and array.shape[0] in (1, 3, 4):
            hint = " It looks channels-first: pass array.transpose(1, 2, 0)."
        raise ValueError(
            f"Image arrays must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got "
            f"{array.shape}.{hint}"
        )
    if array.dtype.kind == "f":
        low, high = float(array.min()), float(array.max())
        if low < -1e-3 or high > 1 + 1e-3:
            raise ValueError(
                f"A float {what} must be in [0, 1], got values in [{low:g}, {high:g}]; use uint8 "
                "for 0..255."
            )
        array = np.round(np.clip(array, 0, 1) * 255).astype(np.uint8)
    elif array.dtype.kind in "iu" and array.dtype != np.uint8:
        # 16-bit images (PNG, TIFF): 0..65535; PIL's 32-bit mode "I" holds such values too.
        if what == "image array" and array.dtype != np.uint16:
            raise ValueError(
                f"Image arrays must be uint8 (0..255), uint16 (0..65535) or float in [0, 1], "
                f"got {array.dtype}; use .astype(np.uint8) for 0..255 values."
            )
        if array.min() < 0 or array.max() > 65535:
            raise ValueError(
                f"A {what} must hold 16-bit values 0..65535, got {array.min()}..{array.max()}."
            )
        array = np.round(array.astype(np.float32) / 257.0).astype(np.uint8)
    return PIL.Image.fromarray(array)


def ids_to_tensor(
    item: ImageInput, what: str = "label map", palette: Palette | None = None
) -> torch.Tensor | None:
    """An id map (label or instance) as ``(1, 1, H, W)`` int64, or ``None`` if ``item`` is colour.

    Integer arrays/tensors, and float ones holding whole numbers, are ids; so are
    single-channel PIL images (see :func:`~hf_pix2pixhd.labels.label_image_ids`: a palette
    ("P") image holds ids only when its palette is ``palette``). RGB(A) images, palette
    images in other colours and ``(H, W, 3)`` / ``(H, W, 4)`` arrays return ``None`` (they
    need a palette).
    """
    item = as_pil_or_array(item)
    if isinstance(item, PIL.Image.Image):
        array = label_image_ids(item, palette, what)
        if array is None:
            return None
    elif isinstance(item, torch.Tensor):
        tensor = item
        while tensor.ndim < 4:
            tensor = tensor.unsqueeze(0)
        if tensor.ndim != 4 or tensor.shape[:2] != (1, 1):
            raise ValueError(
                f"A {what} tensor must be (H, W) or (1, 1, H, W), got {tuple(item.shape)}."
            )
        if tensor.is_floating_point() and not torch.equal(tensor, tensor.round()):
            raise ValueError(f"A {what} tensor must hold whole-number ids, got fractional values.")
        return _as_int64(tensor.cpu(), what)
    else:
        array = item
        if array.ndim == 3 and array.shape[2] in (3, 4):
            return None
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
    if array.ndim != 2:
        raise ValueError(
            f"A {what} must be a 2-D id map (H, W), or colours (H, W, 3), got shape {array.shape}."
        )
    if array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
        raise ValueError(f"A {what} array must hold whole-number ids, got fractional values.")
    return _as_int64(torch.from_numpy(np.ascontiguousarray(array)), what).view(1, 1, *array.shape)


def _as_int64(tensor: torch.Tensor, what: str) -> torch.Tensor:
    # uint64 / float values past int64 would wrap around into valid-looking ids.
    wide = (torch.uint64, torch.float64, torch.float32, torch.float16, torch.bfloat16)
    if tensor.dtype in wide and tensor.numel() and float(tensor.double().abs().max()) >= 2**62:
        raise ValueError(f"A {what} holds ids too large to be class ids (>= 2**62).")
    return tensor.long()


def pad_to_multiple(
    tensor: torch.Tensor, multiple: int, min_size: int = 1
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the bottom/right edges of an NCHW tensor up to multiples of ``multiple``, and to at
    least ``min_size`` per side (a network's ``min_size``: what its innermost layers need).

    Edge replication: it keeps label ids valid and works for any size, even 1x1 (reflection
    needs the pad to be smaller than the image). Returns the padded tensor and the original
    ``(H, W)``. Refuses an input that ``min_size`` would pad past the pixel limit
    (:func:`max_pixels`): a 1-pixel-high strip grows ``min_size`` times.
    """
    height, width = tensor.shape[-2:]
    if height < 1 or width < 1:
        raise ImageSizeError(f"The input is {width}x{height} (WxH): it has no pixels.")
    least = max(multiple, min_size)
    rounded_h, rounded_w = (math.ceil(side / multiple) * multiple for side in (height, width))
    target_h, target_w = max(least, rounded_h), max(least, rounded_w)
    if (target_h, target_w) == (height, width):
        return tensor, (height, width)
    if target_h * target_w > max(rounded_h * rounded_w, max_pixels()):
        check_image_size(
            target_w,
            target_h,
            f"The {width}x{height} input, padded to the {least}-pixel sides the network needs,",
        )
    padding = (0, target_w - width, 0, target_h - height)
    if tensor.is_floating_point():
        return F.pad(tensor, padding, mode="replicate"), (height, width)
    # replicate padding is not implemented for integer tensors
    return F.pad(tensor.double(), padding, mode="replicate").long(), (height, width)


def tensor_to_pil(images: torch.Tensor) -> list[PIL.Image.Image]:
    """``(N, C, H, W)`` in ``[-1, 1]`` to a list of RGB (or L) PIL images."""
    array = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    array = array.permute(0, 2, 3, 1).cpu().numpy()
    if array.shape[-1] == 1:
        return [PIL.Image.fromarray(a[:, :, 0]) for a in array]
    return [PIL.Image.fromarray(a) for a in array]
