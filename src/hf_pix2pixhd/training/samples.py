"""Sample grids: one row per example, input | output | target."""

from __future__ import annotations

import numpy as np
import PIL.Image
import torch

from ..labels import Palette


def _default_palette(num_classes: int) -> Palette:
    """Distinct colours for label maps that come without a palette (golden-angle hues)."""
    hues = (np.arange(num_classes) * 0.618033988749895) % 1.0
    colours = []
    for hue in hues:
        h = hue * 6
        x = 1 - abs(h % 2 - 1)
        rgb = [(1, x, 0), (x, 1, 0), (0, 1, x), (0, x, 1), (x, 0, 1), (1, 0, x)][int(h) % 6]
        colours.append([round(c * 220 + 20) for c in rgb])
    return Palette(colours)


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(N, 3, H, W)`` in ``[-1, 1]`` -> ``(N, H, W, 3)`` uint8."""
    array = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return array.permute(0, 2, 3, 1).cpu().numpy()


def visualise_input(batch: dict, label_nc: int, palette: Palette | None) -> np.ndarray:
    """The conditioning input of a batch as ``(N, H, W, 3)`` uint8 (label maps in colour)."""
    if "label" not in batch:
        return _to_uint8(batch["input"])
    palette = palette if palette is not None else _default_palette(max(label_nc, 1))
    ids = batch["label"][:, 0].cpu().numpy()
    return np.stack([palette.ids_to_colors(i) for i in ids])


def sample_grid(
    batch: dict, outputs: torch.Tensor, label_nc: int = 0, palette: Palette | None = None
) -> PIL.Image.Image:
    """A PNG-ready grid with rows ``input | output | target`` for every example in ``batch``."""
    inputs = visualise_input(batch, label_nc, palette)
    rows = [
        np.concatenate([inp, out, tgt], axis=1)
        for inp, out, tgt in zip(
            inputs, _to_uint8(outputs), _to_uint8(batch["target"]), strict=True
        )
    ]
    return PIL.Image.fromarray(np.concatenate(rows, axis=0))
