"""Building blocks shared by the networks: norm layers, ResNet blocks, the ResNet trunk, init.

The layer order inside each ``nn.Sequential`` follows the official implementations exactly, so
that official state_dict keys (``model.1.weight``, ``model.10.conv_block.5.weight``, ...) load
into our modules unchanged.
"""

from __future__ import annotations

import numbers
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

NormType = Literal["batch", "instance", "none"]
NORM_TYPES: tuple[str, ...] = ("batch", "instance", "none")
UpsampleType = Literal["transpose", "resize_conv"]
UPSAMPLE_TYPES: tuple[str, ...] = ("transpose", "resize_conv")

#: Networks above this many parameters are refused before anything is allocated (a config with
#: ``ngf: 1000000`` would otherwise ask for terabytes). The pix2pixHD global G has 183 M, the
#: paper's local enhancer about 190 M: ten times that is still far from a plausible config.
MAX_PARAMETERS = 2_000_000_000


def check_int_options(model: str, **options: tuple[object, int, int]) -> None:
    """Raise a clear error unless each ``name=(value, low, high)`` is an int in ``[low, high]``.

    Called first thing in the networks' constructors, so a bad config (from a
    ``config.json`` or a converted checkpoint) fails before any layer is built.
    """
    for name, (value, low, high) in options.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{model}: {name} must be an integer, got {value!r}.")
        if not low <= value <= high:
            raise ValueError(
                f"{model}: {name}={value} is out of range; it must be in [{low}, {high}]. Is "
                "the config right?"
            )


def check_parameter_count(model: str, count: int) -> None:
    """Refuse a network estimated at more than :data:`MAX_PARAMETERS` parameters."""
    if count > MAX_PARAMETERS:
        raise ValueError(
            f"{model} with this config would have about {count:,} parameters "
            f"({count * 4 / 2**30:,.0f} GiB in float32), more than the limit of "
            f"{MAX_PARAMETERS:,}. Is the config right (ngf, n_blocks, ...)? To build it anyway, "
            "raise hf_pix2pixhd.models.layers.MAX_PARAMETERS."
        )


def resnet_trunk_parameters(
    in_channels: int, out_channels: int, ngf: int, n_downsampling: int, n_blocks: int
) -> int:
    """Conv weights of :func:`resnet_trunk_layers` (biases and norms are negligible)."""
    count = 49 * ngf * (in_channels + out_channels)
    count += 2 * sum(9 * 2 * (ngf * 2**i) ** 2 for i in range(n_downsampling))
    return count + n_blocks * 2 * 9 * (ngf * 2**n_downsampling) ** 2


MAX_CHANNELS = 1 << 20
MAX_DOWNSAMPLING = 10
MAX_BLOCKS = 1000


def check_trunk_config(
    model: str,
    in_channels: int,
    out_channels: int,
    ngf: int,
    n_downsampling: int,
    n_blocks: int,
    extra_parameters: int = 0,
) -> None:
    """Validate the sizes of a ResNet-trunk network before it is built (see
    :func:`check_int_options`); ``extra_parameters`` counts layers outside the trunk."""
    check_int_options(
        model,
        in_channels=(in_channels, 1, MAX_CHANNELS),
        out_channels=(out_channels, 1, MAX_CHANNELS),
        ngf=(ngf, 1, MAX_CHANNELS),
        n_downsampling=(n_downsampling, 0, MAX_DOWNSAMPLING),
        n_blocks=(n_blocks, 0, MAX_BLOCKS),
    )
    trunk = resnet_trunk_parameters(in_channels, out_channels, ngf, n_downsampling, n_blocks)
    check_parameter_count(model, trunk + extra_parameters)


def trunk_min_size(size_multiple: int) -> int:
    """Smallest side a ResNet-trunk network runs on: its innermost (bottleneck) feature map,
    ``side / size_multiple``, needs 2 pixels (reflection padding by 1 and instance norm need
    more than one), and the outer ReflectionPad2d(3) needs 4."""
    return max(4, 2 * size_multiple)


def check_norm(norm: str) -> None:
    """Raise a clear error for an unknown norm name."""
    if norm not in NORM_TYPES:
        raise ValueError(f"Unknown norm {norm!r}: choose one of {', '.join(NORM_TYPES)}.")


class InstanceNorm2d(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d`` (no affine, no running statistics) that stays fast on channels_last.

    PyTorch computes instance norm as a reshaped batch norm, which copies a channels_last input
    to contiguous and back: a third of the bf16 inference time of the pix2pixHD global G.
    ``group_norm`` with one group per channel is the same function and has a native
    channels_last CPU kernel, but that kernel is slow when ``H * W < C`` (the small, wide ResNet
    stage), where the copies are cheap anyway, and its backward is 3-10x slower than the stock
    one, so training keeps the stock path. Contiguous inputs take the stock path too, so fp32
    results stay identical to the official code's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            not (torch.is_grad_enabled() and x.requires_grad)
            and x.dim() == 4
            and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last)
            and x.shape[-2] * x.shape[-1] >= x.shape[1]
        ):
            return F.group_norm(x, x.shape[1], eps=self.eps)
        return super().forward(x)


def make_norm(norm: NormType, channels: int) -> nn.Module:
    """The norm layer both official codes use.

    BatchNorm is affine with running statistics; InstanceNorm has neither (``affine=False``), so
    it adds no keys to a state_dict. ``"none"`` is an ``Identity`` that still takes a slot in the
    ``Sequential``, as in the official code, so layer indices do not shift.
    """
    check_norm(norm)
    if norm == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    if norm == "instance":
        return InstanceNorm2d(channels, affine=False, track_running_stats=False)
    return nn.Identity()


class ResizeConv2d(nn.Conv2d):
    """2x nearest-neighbour upsampling, then a padded Conv3: the decoder step that cannot make
    checkerboard artefacts (Odena et al. 2016), unlike a stride-2 transposed conv whose kernel
    overlaps unevenly.

    One module in the slot of the ``ConvTranspose2d`` it replaces, so the other layers keep
    their official indices. Input ``(N, C_in, H, W)`` -> ``(N, C_out, 2H, 2W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, 3, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return super().forward(F.pad(x, (1, 1, 1, 1), mode="replicate"))


def make_upsample(
    upsample: UpsampleType, in_channels: int, out_channels: int, bias: bool = True
) -> nn.Module:
    """The 2x decoder step of the ResNet-style generators: the official ``ConvTranspose3``
    (stride 2, output_padding 1) or :class:`ResizeConv2d`."""
    if upsample == "transpose":
        return nn.ConvTranspose2d(
            in_channels, out_channels, 3, stride=2, padding=1, output_padding=1, bias=bias
        )
    if upsample == "resize_conv":
        return ResizeConv2d(in_channels, out_channels, bias=bias)
    raise ValueError(
        f"Unknown upsample {upsample!r}: choose one of {', '.join(UPSAMPLE_TYPES)} "
        "(resize_conv avoids checkerboard artefacts; transpose loads official checkpoints)."
    )


class ResnetBlock(nn.Module):
    """Residual block ``x + conv_block(x)``: pad-conv3-norm-ReLU[-dropout]-pad-conv3-norm.

    Keys match both official ``ResnetBlock`` classes (``conv_block.1`` and ``conv_block.5``, or
    ``conv_block.6`` with dropout).
    """

    def __init__(
        self,
        dim: int,
        norm: NormType,
        use_bias: bool,
        use_dropout: bool = False,
        padding_type: Literal["reflect", "replicate", "zero"] = "reflect",
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            *self._conv(dim, norm, use_bias, padding_type),
            nn.ReLU(True),
            *([nn.Dropout(0.5)] if use_dropout else []),
            *self._conv(dim, norm, use_bias, padding_type),
        )

    @staticmethod
    def _conv(dim: int, norm: NormType, use_bias: bool, padding_type: str) -> list[nn.Module]:
        if padding_type == "reflect":
            return [
                nn.ReflectionPad2d(1),
                nn.Conv2d(dim, dim, 3, bias=use_bias),
                make_norm(norm, dim),
            ]
        if padding_type == "replicate":
            return [
                nn.ReplicationPad2d(1),
                nn.Conv2d(dim, dim, 3, bias=use_bias),
                make_norm(norm, dim),
            ]
        if padding_type == "zero":
            return [nn.Conv2d(dim, dim, 3, padding=1, bias=use_bias), make_norm(norm, dim)]
        raise ValueError(f"Unknown padding_type {padding_type!r}: use reflect, replicate or zero.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


def resnet_trunk_layers(
    in_channels: int,
    out_channels: int,
    ngf: int,
    n_downsampling: int,
    n_blocks: int,
    norm: NormType,
    use_bias: bool,
    use_dropout: bool = False,
    padding_type: Literal["reflect", "replicate", "zero"] = "reflect",
    upsample: UpsampleType = "transpose",
) -> list[nn.Module]:
    """The encoder-ResNet-decoder stack of the pix2pix ResNet G and the pix2pixHD global G.

    ReflectionPad3 + Conv7 (ngf), ``n_downsampling`` x (Conv3 stride 2, channels x2),
    ``n_blocks`` ResNet blocks, ``n_downsampling`` x (ConvTranspose3 stride 2, output_padding 1,
    or with ``upsample="resize_conv"`` a :class:`ResizeConv2d`), ReflectionPad3 + Conv7 + Tanh.
    The last conv always has a bias, as in both official codes.
    With ``n_blocks=0`` this is also the pix2pixHD feature encoder's body.
    """
    check_norm(norm)
    layers: list[nn.Module] = [
        nn.ReflectionPad2d(3),
        nn.Conv2d(in_channels, ngf, kernel_size=7, bias=use_bias),
        make_norm(norm, ngf),
        nn.ReLU(True),
    ]
    for i in range(n_downsampling):
        channels = ngf * 2**i
        layers += [
            nn.Conv2d(channels, channels * 2, 3, stride=2, padding=1, bias=use_bias),
            make_norm(norm, channels * 2),
            nn.ReLU(True),
        ]
    width = ngf * 2**n_downsampling
    layers += [
        ResnetBlock(width, norm, use_bias, use_dropout, padding_type) for _ in range(n_blocks)
    ]
    for i in range(n_downsampling):
        channels = ngf * 2 ** (n_downsampling - i)
        layers += [
            make_upsample(upsample, channels, channels // 2, bias=use_bias),
            make_norm(norm, channels // 2),
            nn.ReLU(True),
        ]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, kernel_size=7), nn.Tanh()]
    return layers


@torch.no_grad()
def init_weights_normal(module: nn.Module, std: float = 0.02) -> None:
    """Paper init: conv weights N(0, std), conv bias 0; BatchNorm weight N(1, std), bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def check_input_channels(x: torch.Tensor, expected: int, name: str) -> None:
    """Raise a clear error when an NCHW input has the wrong shape or channel count."""
    if x.ndim != 4:
        raise ValueError(
            f"{name} expects an NCHW tensor, got shape {tuple(x.shape)}; add a batch dimension "
            "with x.unsqueeze(0) for a single image."
        )
    if x.shape[1] != expected:
        raise ValueError(
            f"{name} was built for {expected} input channels but got {x.shape[1]} "
            f"(input shape {tuple(x.shape)}). Check the label count / instance map / feature "
            "channels you feed it, or build the model with the matching in_channels."
        )


def check_spatial_multiple(x: torch.Tensor, multiple: int, name: str) -> None:
    """Raise a clear error when H or W is not a multiple the network needs."""
    height, width = x.shape[-2:]
    if height % multiple or width % multiple:
        raise ValueError(
            f"{name} needs height and width to be multiples of {multiple}, got {height}x{width}. "
            "Pad or resize the input (Pix2PixHDPipeline does this for you)."
        )
