"""Reading images and converting between PIL / numpy / torch, with clear errors.

Conventions: photos and sketches are float ``(N, C, H, W)`` in ``[-1, 1]``; label and instance
maps are int64 ``(N, 1, H, W)``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

ImageInput = str | os.PathLike | PIL.Image.Image | np.ndarray | torch.Tensor

#: Refuse decompression bombs, but allow large real photos (about 16k x 16k).
MAX_PIXELS = 268_435_456


class ImageReadError(ValueError):
    """A file that is missing, not an image, or truncated."""


def load_image(path: str | os.PathLike) -> PIL.Image.Image:
    """Open and fully decode an image file, so that truncation is found here, not later."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"Image file {path} does not exist.")
    try:
        with PIL.Image.open(path) as image:
            image.load()
            return image.copy()
    except PIL.Image.DecompressionBombError as error:
        raise ImageReadError(f"{path} is too large to decode safely: {error}") from error
    except (PIL.UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(
            f"Could not read {path} as an image ({type(error).__name__}: {error}). Is it a "
            "PNG/JPEG file, and complete (not truncated)?"
        ) from error


def as_pil_or_array(item: ImageInput) -> PIL.Image.Image | np.ndarray | torch.Tensor:
    """Load paths; pass PIL images, arrays and tensors through."""
    if isinstance(item, str | os.PathLike):
        return load_image(item)
    if isinstance(item, PIL.Image.Image | np.ndarray | torch.Tensor):
        return item
    raise TypeError(
        f"Expected a path, PIL image, numpy array or torch tensor, got {type(item).__name__}."
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

    Accepts PIL images of any mode (alpha is composited on white), ``uint8`` arrays
    ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``, float arrays in ``[0, 1]``, and float tensors
    ``(C, H, W)`` / ``(1, C, H, W)`` already in ``[-1, 1]``.
    """
    item = as_pil_or_array(item)
    if isinstance(item, torch.Tensor):
        tensor = item if item.ndim == 4 else item.unsqueeze(0)
        if tensor.ndim != 4 or tensor.shape[0] != 1:
            raise ValueError(
                f"An image tensor must be (C, H, W) or (1, C, H, W), got {tuple(item.shape)}."
            )
        if not tensor.is_floating_point():
            raise ValueError("An image tensor must be float in [-1, 1]; got an integer tensor.")
        if tensor.shape[1] != channels:
            raise ValueError(
                f"This model takes {channels}-channel images, got a tensor with "
                f"{tensor.shape[1]} channels."
            )
        if tensor.numel() and tensor.abs().max() > 1.0 + 1e-3:
            raise ValueError(
                "Image tensors must be in [-1, 1] (got values beyond); for 0..255 data pass a "
                "uint8 numpy array or a PIL image instead."
            )
        return tensor.float()
    if isinstance(item, np.ndarray):
        item = _array_to_pil(item)
    item = flatten_alpha(item)
    item = item.convert("L" if channels == 1 else "RGB")
    array = np.asarray(item, dtype=np.float32)
    if channels == 1:
        array = array[:, :, None]
    elif channels != 3:
        raise ValueError(f"Photo/sketch inputs need a 1- or 3-channel model, not {channels}.")
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0)
    return tensor / 127.5 - 1.0


def _array_to_pil(array: np.ndarray) -> PIL.Image.Image:
    if array.dtype.kind == "f":
        if array.size and (array.min() < 0 or array.max() > 1):
            raise ValueError("Float image arrays must be in [0, 1]; use uint8 for 0..255.")
        array = np.round(array * 255).astype(np.uint8)
    if array.dtype != np.uint8:
        raise ValueError(f"Image arrays must be uint8 or float in [0, 1], got {array.dtype}.")
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4)):
        return PIL.Image.fromarray(
            array.squeeze(2) if array.ndim == 3 and array.shape[2] == 1 else array
        )
    raise ValueError(f"Image arrays must be (H, W), (H, W, 3) or (H, W, 4), got {array.shape}.")


def ids_to_tensor(item: ImageInput, what: str = "label map") -> torch.Tensor | None:
    """An id map (label or instance) as ``(1, 1, H, W)`` int64, or ``None`` if ``item`` is colour.

    Integer arrays/tensors and single-channel PIL images (modes ``L``, ``P``, ``I``, ``I;16``)
    are ids. RGB(A) images and ``(H, W, 3)`` arrays return ``None`` (they need a palette).
    """
    item = as_pil_or_array(item)
    if isinstance(item, PIL.Image.Image):
        if item.mode in ("RGB", "RGBA", "LA", "CMYK", "YCbCr"):
            return None
        array = np.asarray(item)
    elif isinstance(item, torch.Tensor):
        if item.is_floating_point() and not torch.equal(item, item.round()):
            raise ValueError(f"A {what} tensor must hold whole-number ids, got fractional values.")
        tensor = item.long()
        while tensor.ndim < 4:
            tensor = tensor.unsqueeze(0)
        if tensor.ndim != 4 or tensor.shape[:2] != (1, 1):
            raise ValueError(
                f"A {what} tensor must be (H, W) or (1, 1, H, W), got {tuple(item.shape)}."
            )
        return tensor
    else:
        array = item
        if array.ndim == 3 and array.shape[2] in (3, 4):
            return None
    if array.ndim != 2:
        raise ValueError(f"A {what} must be a 2-D id map, got shape {array.shape}.")
    if array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
        raise ValueError(f"A {what} array must hold whole-number ids, got fractional values.")
    return torch.from_numpy(array.astype(np.int64)).view(1, 1, *array.shape)


def pad_to_multiple(tensor: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the bottom/right edges of an NCHW tensor up to multiples of ``multiple``.

    Edge replication: it keeps label ids valid and works for any size (reflection needs the pad
    to be smaller than the image). Returns the padded tensor and the original ``(H, W)``.
    """
    height, width = tensor.shape[-2:]
    target_h = max(multiple, math.ceil(height / multiple) * multiple)
    target_w = max(multiple, math.ceil(width / multiple) * multiple)
    if (target_h, target_w) == (height, width):
        return tensor, (height, width)
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
