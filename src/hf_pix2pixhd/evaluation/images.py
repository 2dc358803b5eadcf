"""Image sets as the metrics take them: :data:`ImageSet` (an ``(N, 3, H, W)`` batch or a list
of ``(3, H, W)`` float tensors in ``[-1, 1]``), its validation into a list of images, batching of
consecutive same-size images, the check that real and generated images pair up, and
:func:`quantize` to the 8-bit levels a saved image holds."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from .errors import EvaluationError

ImageSet = torch.Tensor | Sequence[torch.Tensor]


def _as_image_list(images: ImageSet, what: str) -> list[torch.Tensor]:
    """A batch ``(N, 3, H, W)`` or a list of ``(3, H, W)`` / ``(1, 3, H, W)`` as (3, H, W) list."""
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise EvaluationError(
                f"{what} must be an (N, 3, H, W) tensor or a list of (3, H, W) tensors, got "
                f"shape {tuple(images.shape)}"
            )
        items = list(images.unbind(0))
    else:
        items = [t[0] if isinstance(t, torch.Tensor) and t.ndim == 4 else t for t in images]
    for index, item in enumerate(items):
        if not isinstance(item, torch.Tensor) or not item.is_floating_point():
            raise EvaluationError(
                f"{what}[{index}] must be a float tensor in [-1, 1], got "
                f"{type(item).__name__}{'' if not isinstance(item, torch.Tensor) else item.dtype}"
            )
        if item.ndim != 3 or item.shape[0] != 3:
            raise EvaluationError(
                f"{what}[{index}] must be a (3, H, W) RGB image, got shape {tuple(item.shape)}"
            )
        if item.numel() and float(item.detach().abs().max()) > 1.0 + 1e-3:
            raise EvaluationError(
                f"{what}[{index}] has values beyond [-1, 1]; map 0..255 images with x / 127.5 - 1"
            )
    return [item.detach() for item in items]


def _batches(images: list[torch.Tensor], batch_size: int) -> Iterator[torch.Tensor]:
    """Stacks of up to ``batch_size`` consecutive images of one size (sizes may vary)."""
    group: list[torch.Tensor] = []
    for image in images:
        if group and (len(group) == batch_size or image.shape != group[0].shape):
            yield torch.stack(group)
            group = []
        group.append(image)
    if group:
        yield torch.stack(group)


def _check_pairs(real: list[torch.Tensor], fake: list[torch.Tensor]) -> None:
    if len(real) != len(fake):
        raise EvaluationError(
            f"got {len(real)} real and {len(fake)} generated images; paired metrics need one "
            "generated image per real one, in the same order (for unpaired sets use "
            "compute_fid_kid on their inception_features)"
        )
    if not real:
        raise EvaluationError("no images to evaluate")
    for index, (r, f) in enumerate(zip(real, fake, strict=True)):
        if r.shape != f.shape:
            raise EvaluationError(
                f"pair {index}: the real image is {tuple(r.shape)} but the generated one is "
                f"{tuple(f.shape)}; a pair must have the same size"
            )


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Round ``[-1, 1]`` images to 8-bit levels (what a saved PNG holds), still in ``[-1, 1]``."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1
