"""Discriminators: the pix2pix PatchGAN and the pix2pixHD multi-scale discriminator."""

from __future__ import annotations

import itertools

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from .hd_generator import make_input_pyramid_pool
from .layers import (
    MAX_CHANNELS,
    NormType,
    check_input_channels,
    check_int_options,
    check_norm,
    check_parameter_count,
    init_weights_normal,
    make_norm,
)


def check_patchgan_config(
    model: str, in_channels: int, ndf: int, n_layers: int, max_channels: int | None, copies: int
) -> None:
    """Validate a (multi-scale) PatchGAN's sizes before it is built: ``copies`` PatchGANs with
    channels capped at ``max_channels`` (``None``: ``8 * ndf``)."""
    check_int_options(
        model,
        in_channels=(in_channels, 1, MAX_CHANNELS),
        ndf=(ndf, 1, MAX_CHANNELS),
        n_layers=(n_layers, 0, 10),
    )
    cap = 8 * ndf if max_channels is None else max_channels
    widths = [ndf] + [min(ndf * 2**n, cap) for n in range(1, n_layers + 1)]
    convs = sum(a * b for a, b in itertools.pairwise(widths))
    count = 16 * (in_channels * ndf + convs + widths[-1])
    check_parameter_count(model, copies * count)


def patchgan_blocks(
    in_channels: int,
    ndf: int,
    n_layers: int,
    norm: NormType,
    use_bias: bool,
    padding: int,
    max_channels: int,
    use_sigmoid: bool = False,
) -> list[list[nn.Module]]:
    """The PatchGAN layers, grouped into the blocks whose outputs are its features.

    Block 0: Conv4 s2 + LeakyReLU (no norm). Blocks 1..n_layers-1: Conv4 s2 + norm + LeakyReLU,
    doubling channels up to ``max_channels``. Block n_layers: the same with stride 1. Last block:
    Conv4 s1 to 1 channel (plus Sigmoid if asked). The first and last convs always have biases.
    """
    check_norm(norm)
    blocks = [[nn.Conv2d(in_channels, ndf, 4, stride=2, padding=padding), nn.LeakyReLU(0.2, True)]]
    channels = ndf
    for n in range(1, n_layers + 1):
        previous, channels = channels, min(ndf * 2**n, max_channels)
        stride = 2 if n < n_layers else 1
        blocks.append(
            [
                nn.Conv2d(previous, channels, 4, stride=stride, padding=padding, bias=use_bias),
                make_norm(norm, channels),
                nn.LeakyReLU(0.2, True),
            ]
        )
    blocks.append([nn.Conv2d(channels, 1, 4, stride=1, padding=padding)])
    if use_sigmoid:
        blocks.append([nn.Sigmoid()])
    return blocks


class PatchGANDiscriminator(ModelMixin, ConfigMixin):
    """pix2pix PatchGAN ("basic", 70x70 receptive field with ``n_layers=3``).

    Layout and keys (``model.0.weight`` ...) follow junyanz ``NLayerDiscriminator``: kernel 4,
    padding 1, channels capped at ``8 * ndf``, conv biases only with InstanceNorm.

    Input: ``(N, in_channels, H, W)``, the condition and the real/fake image concatenated, in
    ``[-1, 1]``. Output: ``(N, 1, H', W')`` logits (30x30 for 256x256), or with
    ``return_features=True`` the list of every block's output, logits last.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 6,
        ndf: int = 64,
        n_layers: int = 3,
        norm: NormType = "batch",
    ) -> None:
        super().__init__()
        check_patchgan_config(type(self).__name__, in_channels, ndf, n_layers, None, 1)
        blocks = patchgan_blocks(
            in_channels, ndf, n_layers, norm, norm == "instance", padding=1, max_channels=ndf * 8
        )
        self.model = nn.Sequential(*[layer for block in blocks for layer in block])
        # Indices into ``model`` after which a block ends: those outputs are the features.
        ends, position = [], 0
        for block in blocks:
            position += len(block)
            ends.append(position)
        self._feature_ends = tuple(ends)
        init_weights_normal(self)

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | list[torch.Tensor]:
        check_input_channels(x, self.config.in_channels, type(self).__name__)
        if not return_features:
            return self.model(x)
        features, start = [], 0
        for end in self._feature_ends:
            x = self.model[start:end](x)
            features.append(x)
            start = end
        return features


class MultiScaleDiscriminator(ModelMixin, ConfigMixin):
    """pix2pixHD multi-scale discriminator: ``num_d`` PatchGANs on a 2x image pyramid.

    Each PatchGAN has kernel 4, padding 2, channels capped at 512 and conv biases everywhere.
    Modules are named ``scale{i}_layer{j}`` as in the official code with ``getIntermFeat``;
    ``scale{num_d - 1}`` sees the full resolution.

    Input: ``(N, in_channels, H, W)`` (label channels + image channels).
    Output: a list with one entry per scale, full resolution first. With
    ``return_features=True`` (the official ``getIntermFeat``, needed for feature matching) each
    entry is the list of the ``n_layers + 2`` block outputs, logits last; otherwise each entry is
    ``[logits]``.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 39,
        ndf: int = 64,
        n_layers: int = 3,
        norm: NormType = "instance",
        use_sigmoid: bool = False,
        num_d: int = 3,
        return_features: bool = True,
    ) -> None:
        super().__init__()
        check_int_options(type(self).__name__, num_d=(num_d, 1, 10))
        check_patchgan_config(type(self).__name__, in_channels, ndf, n_layers, 512, num_d)
        for i in range(num_d):
            blocks = patchgan_blocks(
                in_channels, ndf, n_layers, norm, True, padding=2, max_channels=512,
                use_sigmoid=use_sigmoid,
            )  # fmt: skip
            for j, block in enumerate(blocks):
                setattr(self, f"scale{i}_layer{j}", nn.Sequential(*block))
        self.num_blocks = len(blocks)
        self.downsample = make_input_pyramid_pool()
        init_weights_normal(self)

    def discriminator_at(self, scale: int) -> list[nn.Module]:
        """The blocks of the PatchGAN applied at pyramid level ``scale`` (0 = full resolution)."""
        index = self.config.num_d - 1 - scale
        return [getattr(self, f"scale{index}_layer{j}") for j in range(self.num_blocks)]

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        check_input_channels(x, self.config.in_channels, type(self).__name__)
        results = []
        for scale in range(self.config.num_d):
            features, h = [], x
            for block in self.discriminator_at(scale):
                h = block(h)
                features.append(h)
            # The official getIntermFeat path leaves out the Sigmoid block; keep that behaviour.
            if self.config.return_features:
                results.append(features[: self.config.n_layers + 2])
            else:
                results.append([features[-1]])
            if scale != self.config.num_d - 1:
                x = self.downsample(x)
        return results
