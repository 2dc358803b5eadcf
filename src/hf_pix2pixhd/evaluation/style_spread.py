"""Style spread: how visibly a model's styles change its output, class by class.

For each example and each class covering at least ``min_share`` of it (for sketch / rgb models,
the object: the convex hull of the strokes), the class is rendered in every cluster of the style
bank (the other classes at their default), and the mean absolute difference inside the class's
region ([0, 1] scale) is averaged over all pairs of clusters. An example scores its least
visible class; the spread is the mean over the examples. 0 means the styles change nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..imaging import ImageInput, image_to_tensor


@dataclass
class StyleSpread:
    """``score``: the mean over examples of each example's least visible class;
    ``per_example``: ``{class name: spread}`` for every scored class of each example."""

    score: float
    per_example: list[dict[str, float]] = field(default_factory=list)


def _object_region(sketch: ImageInput) -> np.ndarray:
    """``(H, W)`` bool: the convex hull of a sketch's strokes (the whole image if blank)."""
    from skimage.morphology import convex_hull_image

    pixels = image_to_tensor(sketch, 3)[0].mean(0).numpy()
    ink = pixels < 0.0
    return convex_hull_image(ink) if ink.any() else np.ones_like(ink)


def _pairwise_spread(images: np.ndarray, region: np.ndarray) -> float:
    """Mean over cluster pairs of the mean |difference| inside ``region``; images (K, H, W, 3)."""
    inside = images[:, region]  # (K, pixels, 3)
    pairs = itertools.combinations(range(len(inside)), 2)
    return float(np.mean([np.abs(inside[a] - inside[b]).mean() for a, b in pairs]))


def style_spread(
    pipeline,
    examples: Sequence[ImageInput],
    min_share: float = 0.05,
    autocast_dtype: torch.dtype | None = None,
) -> StyleSpread:
    """The style spread of a ``Pix2PixHDPipeline`` with a style bank over ``examples`` (label
    maps or sketches, as the pipeline takes them). See the module docstring."""
    bank = pipeline.style_bank
    if bank is None:
        raise ValueError("style_spread needs a pipeline with a style bank (encode-styles).")
    counts = bank.num_clusters.cpu().tolist()
    names = pipeline.style_class_names or [str(c) for c in range(len(counts))]
    per_example = []
    for example in examples:
        if pipeline.config.input_kind == "labels":
            ids = pipeline.label_ids(example)[0, 0].numpy()
            regions = {c: ids == c for c in np.unique(ids).tolist()}
        else:
            regions = {0: _object_region(example)}
        scores = {}
        for cls, region in regions.items():
            if region.mean() < min_share or counts[cls] < 2:
                continue
            styles = [{cls: k} for k in range(counts[cls])]
            images = pipeline(
                example, style=styles, output_type="np", autocast_dtype=autocast_dtype
            ).images
            scores[names[cls]] = _pairwise_spread(np.asarray(images, np.float32), region)
        if scores:
            per_example.append(scores)
    if not per_example:
        raise ValueError(
            f"No example has a class covering {min_share:.0%} of it with two or more styles."
        )
    return StyleSpread(float(np.mean([min(s.values()) for s in per_example])), per_example)
