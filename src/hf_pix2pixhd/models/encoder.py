"""pix2pixHD feature encoder ``E`` with instance-wise average pooling."""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from .layers import (
    NormType,
    check_input_channels,
    check_trunk_config,
    init_weights_normal,
    resnet_trunk_layers,
    trunk_min_size,
)

# Above this many possible ids per image, compact the ids with a sort (torch.unique) instead of
# indexing a dense table of sums; dense is faster for ordinary maps such as Cityscapes' (< 34000).
_DENSE_ID_LIMIT = 1 << 20


def _id_planes(instance_map: torch.Tensor) -> torch.Tensor:
    """``(N, 1, H, W)`` or ``(N, H, W)`` instance ids as ``(N, H, W)``; a clear error otherwise."""
    if instance_map.ndim == 4:
        if instance_map.shape[1] != 1:
            raise ValueError(
                f"instance_map must have one channel, got shape {tuple(instance_map.shape)}."
            )
        instance_map = instance_map[:, 0]
    if instance_map.ndim != 3:
        raise ValueError(
            f"instance_map must be (N, 1, H, W) or (N, H, W), got {tuple(instance_map.shape)}."
        )
    return instance_map


def instance_segment_ids(instance_map: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Map every pixel to a segment index unique per (image, instance id).

    Args:
        instance_map: ``(N, 1, H, W)`` or ``(N, H, W)`` holding whole-number instance ids (any
            numeric dtype; the official code passes floats).

    Returns:
        ``(N*H*W,)`` int64 segment index and the number of segments (an upper bound when
        dense: unused segments are simply empty).
    """
    instance_map = _id_planes(instance_map)
    ids = instance_map.long() if instance_map.is_floating_point() else instance_map.to(torch.long)
    batch = ids.shape[0]
    low, high = int(ids.min()), int(ids.max())
    span = high - low + 1
    if span * batch <= _DENSE_ID_LIMIT:
        offsets = torch.arange(batch, device=ids.device).view(batch, 1, 1) * span
        return (ids - low + offsets).reshape(-1), span * batch
    keys = ids - low + torch.arange(batch, device=ids.device).view(batch, 1, 1) * span
    unique, inverse = torch.unique(keys.reshape(-1), return_inverse=True)
    return inverse, unique.numel()


def instance_ranks(instance_map: torch.Tensor) -> torch.Tensor:
    """Number the distinct ids of each image ``0, 1, ...`` in increasing order.

    Built from a sort, a cumulative sum and a scatter only: no ``.item()``, no ``bincount``,
    nothing whose size depends on the ids' values, so ``torch.export`` / ONNX can trace it
    with dynamic batch, height and width.

    Args:
        instance_map: ``(N, 1, H, W)`` or ``(N, H, W)`` whole-number ids (any numeric dtype).

    Returns:
        ``(N, H*W)`` int64 ranks in ``[0, H*W)``, row-major per image.
    """
    instance_map = _id_planes(instance_map)
    ids = instance_map.reshape(instance_map.shape[0], -1).to(torch.long)
    ordered, order = torch.sort(ids, dim=1)
    # A new rank starts wherever the sorted id changes.
    starts = (ordered[:, 1:] != ordered[:, :-1]).to(torch.long)
    # The first pixel's rank is 0 (an explicit column: ``starts`` is empty for one pixel).
    first = torch.zeros_like(ordered[:, :1])
    ranks = torch.cat([first, starts.cumsum(1)], 1)
    return torch.zeros_like(ranks).scatter(1, order, ranks)


def instance_average_pool(features: torch.Tensor, instance_map: torch.Tensor) -> torch.Tensor:
    """Replace every pixel's feature by the mean over its instance, per image and channel.

    Vectorised segment means (:func:`instance_ranks`, then ``scatter_add`` and ``gather``): no
    loop over instances and no data-dependent sizes, so it exports to ONNX. Sums accumulate in
    float32 for half-precision features. Differentiable with respect to ``features``.

    Args:
        features: ``(N, C, H, W)``.
        instance_map: ``(N, 1, H, W)`` or ``(N, H, W)`` whole-number ids, same N, H, W.

    Returns:
        ``(N, C, H, W)``, constant inside each instance.
    """
    n, c, h, w = features.shape
    if instance_map.shape[0] != n or tuple(instance_map.shape[-2:]) != (h, w):
        raise ValueError(
            f"instance_map {tuple(instance_map.shape)} does not match features "
            f"{tuple(features.shape)}: batch size and H x W must agree."
        )
    segments = instance_ranks(instance_map).unsqueeze(1)  # (N, 1, HW), each < HW
    flat = features.reshape(n, c, h * w)
    accumulate = flat.float() if flat.dtype in (torch.float16, torch.bfloat16) else flat
    index = segments.expand(-1, c, -1)
    sums = torch.zeros_like(accumulate).scatter_add(2, index, accumulate)
    ones = torch.ones_like(accumulate[:, :1])
    sizes = torch.zeros_like(ones).scatter_add(2, segments, ones).clamp(min=1)
    means = (sums / sizes).to(features.dtype)
    return means.gather(2, index).reshape(n, c, h, w)


class FeatureEncoder(ModelMixin, ConfigMixin):
    """pix2pixHD feature encoder: a conv encoder-decoder (no ResNet blocks) + instance pooling.

    Input: ``image`` ``(N, in_channels, H, W)`` in ``[-1, 1]`` and ``instance_map``
    ``(N, 1, H, W)`` whole-number ids; H, W multiples of ``2**n_downsampling``.
    Output: ``(N, out_channels, H, W)`` in ``[-1, 1]``, constant within each instance.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 16,
        n_downsampling: int = 4,
        norm: NormType = "instance",
    ) -> None:
        super().__init__()
        check_trunk_config(type(self).__name__, in_channels, out_channels, ngf, n_downsampling, 0)
        self.model = nn.Sequential(
            *resnet_trunk_layers(
                in_channels, out_channels, ngf, n_downsampling, 0, norm, use_bias=True
            )
        )
        init_weights_normal(self)

    @property
    def size_multiple(self) -> int:
        return 2**self.config.n_downsampling

    @property
    def min_size(self) -> int:
        """Smallest height / width it runs on (callers pad smaller photos)."""
        return trunk_min_size(self.size_multiple)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Per-pixel features before pooling, ``(N, out_channels, H, W)``."""
        check_input_channels(image, self.config.in_channels, type(self).__name__)
        return self.model(image)

    def forward(self, image: torch.Tensor, instance_map: torch.Tensor) -> torch.Tensor:
        return instance_average_pool(self.encode(image), instance_map)
