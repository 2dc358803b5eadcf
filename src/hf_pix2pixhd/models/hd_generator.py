"""pix2pixHD generators (Wang et al. 2018): the global generator and the local enhancer.

Module names follow NVIDIA/pix2pixHD (``model.*`` for the global net, ``model{n}_1`` /
``model{n}_2`` for each enhancer), so official checkpoints load as is.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from .layers import (
    MAX_BLOCKS,
    MAX_CHANNELS,
    NormType,
    ResnetBlock,
    UpsampleType,
    check_input_channels,
    check_int_options,
    check_spatial_multiple,
    check_trunk_config,
    init_weights_normal,
    make_norm,
    make_upsample,
    resnet_trunk_layers,
    trunk_min_size,
)


def make_input_pyramid_pool() -> nn.AvgPool2d:
    """The 2x downsampler pix2pixHD uses between scales (no padding in the average)."""
    return nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)


class GlobalGenerator(ModelMixin, ConfigMixin):
    """pix2pixHD global generator ``G1``.

    Conv7 (ngf) + ``n_downsampling`` stride-2 convs + ``n_blocks`` ResNet blocks + as many
    transposed convs + Conv7 + Tanh. All convs have biases.

    Args:
        in_channels: ``label_nc`` (+1 with instance boundaries, + encoder feature channels).
        n_downsampling: 4 in the paper's 1024x512 setting.
        upsample: "transpose" (official) or "resize_conv" (no checkerboard artefacts).

    Input: ``(N, in_channels, H, W)``, usually a one-hot label map in ``{0, 1}`` (plus boundary
    and feature channels); H and W multiples of ``2**n_downsampling``.
    Output: ``(N, out_channels, H, W)`` in ``[-1, 1]``.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 36,
        out_channels: int = 3,
        ngf: int = 64,
        n_downsampling: int = 4,
        n_blocks: int = 9,
        norm: NormType = "instance",
        padding_type: str = "reflect",
        upsample: UpsampleType = "transpose",
    ) -> None:
        super().__init__()
        check_trunk_config(
            type(self).__name__, in_channels, out_channels, ngf, n_downsampling, n_blocks
        )
        self.model = nn.Sequential(
            *resnet_trunk_layers(
                in_channels,
                out_channels,
                ngf,
                n_downsampling,
                n_blocks,
                norm,
                use_bias=True,
                padding_type=padding_type,
                upsample=upsample,
            )
        )
        init_weights_normal(self)

    @property
    def size_multiple(self) -> int:
        return 2**self.config.n_downsampling

    @property
    def min_size(self) -> int:
        """Smallest height / width it runs on (the pipeline pads smaller inputs)."""
        return trunk_min_size(self.size_multiple)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_channels(x, self.config.in_channels, type(self).__name__)
        return self.model(x)


class LocalEnhancerGenerator(ModelMixin, ConfigMixin):
    """pix2pixHD generator with ``n_local_enhancers`` local enhancers ``G2`` around a global trunk.

    The trunk is a :class:`GlobalGenerator` of width ``ngf * 2**n_local_enhancers`` without its
    last three layers (pad, Conv7, Tanh). It runs on the input downsampled
    ``n_local_enhancers`` times. Each enhancer has a front half (Conv7 + Conv3 stride 2 on its
    own resolution) whose output is summed with the coarser result, then a back half (ResNet
    blocks, ConvTranspose3, and for the finest one Conv7 + Tanh).

    Input: ``(N, in_channels, H, W)``; H and W multiples of
    ``2**(n_downsampling_global + n_local_enhancers)``. Output: ``(N, out_channels, H, W)`` in
    ``[-1, 1]``.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 36,
        out_channels: int = 3,
        ngf: int = 32,
        n_downsampling_global: int = 4,
        n_blocks_global: int = 9,
        n_local_enhancers: int = 1,
        n_blocks_local: int = 3,
        norm: NormType = "instance",
        padding_type: str = "reflect",
        upsample: UpsampleType = "transpose",
    ) -> None:
        super().__init__()
        name = type(self).__name__
        check_int_options(
            name,
            n_local_enhancers=(n_local_enhancers, 1, 4),
            n_blocks_local=(n_blocks_local, 0, MAX_BLOCKS),
            in_channels=(in_channels, 1, MAX_CHANNELS),
            out_channels=(out_channels, 1, MAX_CHANNELS),
            ngf=(ngf, 1, MAX_CHANNELS),
        )
        # Per enhancer of width w: Conv7 + Conv3 s2 in front, ResNet blocks + ConvT3 behind.
        widths = [ngf * 2 ** (n_local_enhancers - n) for n in range(1, n_local_enhancers + 1)]
        enhancers = 49 * ngf * out_channels + sum(
            49 * in_channels * w + 36 * w * w + 72 * n_blocks_local * w * w for w in widths
        )
        check_trunk_config(
            name,
            in_channels,
            out_channels,
            ngf * 2**n_local_enhancers,
            n_downsampling_global,
            n_blocks_global,
            extra_parameters=enhancers,
        )
        trunk = resnet_trunk_layers(
            in_channels,
            out_channels,
            ngf * 2**n_local_enhancers,
            n_downsampling_global,
            n_blocks_global,
            norm,
            use_bias=True,
            padding_type=padding_type,
            upsample=upsample,
        )
        self.model = nn.Sequential(*trunk[:-3])
        for n in range(1, n_local_enhancers + 1):
            width = ngf * 2 ** (n_local_enhancers - n)
            front = [
                nn.ReflectionPad2d(3),
                nn.Conv2d(in_channels, width, 7),
                make_norm(norm, width),
                nn.ReLU(True),
                nn.Conv2d(width, width * 2, 3, stride=2, padding=1),
                make_norm(norm, width * 2),
                nn.ReLU(True),
            ]
            back: list[nn.Module] = [
                ResnetBlock(width * 2, norm, use_bias=True, padding_type=padding_type)
                for _ in range(n_blocks_local)
            ]
            back += [
                make_upsample(upsample, width * 2, width),
                make_norm(norm, width),
                nn.ReLU(True),
            ]
            if n == n_local_enhancers:
                back += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
            setattr(self, f"model{n}_1", nn.Sequential(*front))
            setattr(self, f"model{n}_2", nn.Sequential(*back))
        self.downsample = make_input_pyramid_pool()
        init_weights_normal(self)

    @property
    def size_multiple(self) -> int:
        return 2 ** (self.config.n_downsampling_global + self.config.n_local_enhancers)

    @property
    def min_size(self) -> int:
        """Smallest height / width it runs on: the trunk sees the input downsampled
        ``2**n_local_enhancers`` times (the pipeline pads smaller inputs)."""
        return trunk_min_size(self.size_multiple)

    def enhancer_parameters(self) -> list[nn.Parameter]:
        """Parameters of the local enhancers only (trained alone for ``niter_fix_global``)."""
        return [p for name, p in self.named_parameters() if not name.startswith("model.")]

    @torch.no_grad()
    def load_global_generator(self, global_generator: GlobalGenerator | Mapping) -> None:
        """Copy a trained :class:`GlobalGenerator` (or its state_dict) into the trunk.

        This is the paper's coarse-to-fine step. The global net must have been built with
        ``ngf * 2**n_local_enhancers`` filters and the same depth; its last conv is dropped.
        """
        source = (
            global_generator.state_dict()
            if isinstance(global_generator, nn.Module)
            else dict(global_generator)
        )
        trunk = self.model.state_dict()
        missing = sorted(set(trunk) - {k.removeprefix("model.") for k in source})
        if missing:
            raise ValueError(
                f"The global generator lacks {len(missing)} trunk weights (e.g. {missing[:3]}); "
                "build it with ngf = local ngf * 2**n_local_enhancers and the same "
                "n_downsampling / n_blocks."
            )
        for key, value in trunk.items():
            incoming = source[f"model.{key}"]
            if incoming.shape != value.shape:
                raise ValueError(
                    f"Shape mismatch for trunk weight model.{key}: global generator has "
                    f"{tuple(incoming.shape)}, trunk expects {tuple(value.shape)}. Check ngf and "
                    "in_channels."
                )
            value.copy_(incoming)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_channels(x, self.config.in_channels, type(self).__name__)
        check_spatial_multiple(x, self.size_multiple, type(self).__name__)
        pyramid = [x]
        for _ in range(self.config.n_local_enhancers):
            pyramid.append(self.downsample(pyramid[-1]))
        output = self.model(pyramid[-1])
        for n in range(1, self.config.n_local_enhancers + 1):
            front = getattr(self, f"model{n}_1")
            back = getattr(self, f"model{n}_2")
            output = back(front(pyramid[self.config.n_local_enhancers - n]) + output)
        return output
