"""Style spread: how visibly a model's styles change its output, class by class.

For each example and each class covering at least ``min_share`` of it (for sketch / rgb models,
the object: the convex hull of the strokes), the class is rendered in every cluster of the style
bank (the other classes at their default), and the mean absolute difference inside the class's
region ([0, 1] scale) is averaged over all pairs of clusters. An example scores its least
visible class; the spread is the mean over the examples. 0 means the styles change nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
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


def _renders(
    pipeline, examples: Sequence[ImageInput], min_share: float, autocast_dtype: torch.dtype | None
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """``(example index, class, region (H, W) bool, images (K, H, W, 3) in [0, 1])`` for every
    class covering ``min_share`` of an example, rendered in each of its K >= 2 clusters."""
    bank = pipeline.style_bank
    if bank is None:
        raise ValueError("needs a pipeline with a style bank (hf-pix2pixhd encode-styles).")
    counts = bank.num_clusters.cpu().tolist()
    for index, example in enumerate(examples):
        if pipeline.config.input_kind == "labels":
            ids = pipeline.label_ids(example)[0, 0].numpy()
            regions = {c: ids == c for c in np.unique(ids).tolist()}
        else:
            regions = {0: _object_region(example)}
        for cls, region in regions.items():
            if region.mean() < min_share or counts[cls] < 2:
                continue
            styles = [{cls: k} for k in range(counts[cls])]
            images = pipeline(
                example, style=styles, output_type="np", autocast_dtype=autocast_dtype
            ).images
            yield index, cls, region, np.asarray(images, np.float32)


def style_spread(
    pipeline,
    examples: Sequence[ImageInput],
    min_share: float = 0.05,
    autocast_dtype: torch.dtype | None = None,
) -> StyleSpread:
    """The style spread of a ``Pix2PixHDPipeline`` with a style bank over ``examples`` (label
    maps or sketches, as the pipeline takes them). See the module docstring."""
    names = pipeline.style_class_names or [
        str(c) for c in range(len(pipeline.style_bank.num_clusters))
    ]
    per_example: list[dict[str, float]] = [{} for _ in examples]
    for index, cls, region, images in _renders(pipeline, examples, min_share, autocast_dtype):
        per_example[index][names[cls]] = _pairwise_spread(images, region)
    per_example = [scores for scores in per_example if scores]
    if not per_example:
        raise ValueError(
            f"No example has a class covering {min_share:.0%} of it with two or more styles."
        )
    return StyleSpread(float(np.mean([min(s.values()) for s in per_example])), per_example)


def rendered_swatches(
    pipeline,
    examples: Sequence[ImageInput],
    min_share: float = 0.002,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Style swatches as the model paints them: for each class and cluster, the mean output
    colour inside the class's regions of ``examples`` when that cluster is chosen. Classes the
    examples lack keep their stored swatches (the training photos' mean colour).

    Returns a copy of the bank's ``swatches``, ``(num_classes, max_clusters, 3)`` uint8.
    """
    swatches = pipeline.style_bank.swatches.clone()
    sums: dict[int, tuple[np.ndarray, int]] = {}
    for _, cls, region, images in _renders(pipeline, examples, min_share, autocast_dtype):
        total, count = sums.get(cls, (0.0, 0))
        sums[cls] = (total + images[:, region].sum(1), count + int(region.sum()))
    for cls, (total, count) in sums.items():
        colours = np.round(np.clip(total / count, 0, 1) * 255).astype(np.uint8)
        swatches[cls, : len(colours)] = torch.from_numpy(colours)
    return swatches
