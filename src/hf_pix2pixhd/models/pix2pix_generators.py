"""pix2pix generators (Isola et al. 2017): the U-Net and the ResNet generator.

Both keep the module layout of junyanz/pytorch-CycleGAN-and-pix2pix, so an official
``latest_net_G.pth`` loads with ``load_state_dict`` as is. :class:`HugGANUNetGenerator` keeps
the layout of the HugGAN sprint's pix2pix U-Net (huggingface/community-events) in the same way.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from .layers import (
    MAX_CHANNELS,
    NormType,
    UpsampleType,
    check_input_channels,
    check_int_options,
    check_norm,
    check_parameter_count,
    check_spatial_multiple,
    check_trunk_config,
    init_weights_normal,
    make_norm,
    resnet_trunk_layers,
    trunk_min_size,
)


class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: down (Conv4 s2), the inner levels, up (ConvTranspose4 s2), skip concat."""

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
        norm: NormType = "batch",
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        # The official code turns the conv bias on only with InstanceNorm.
        use_bias = norm == "instance"
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=use_bias)
        downrelu = nn.LeakyReLU(0.2, True)
        uprelu = nn.ReLU(True)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1)
            layers = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1, bias=use_bias)
            layers = [downrelu, downconv, uprelu, upconv, make_norm(norm, outer_nc)]
        else:
            upconv = nn.ConvTranspose2d(
                inner_nc * 2, outer_nc, 4, stride=2, padding=1, bias=use_bias
            )
            layers = [downrelu, downconv, make_norm(norm, inner_nc), submodule]
            layers += [uprelu, upconv, make_norm(norm, outer_nc)]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UNetGenerator(ModelMixin, ConfigMixin):
    """pix2pix U-Net generator.

    Args:
        in_channels: input channels (3 for an RGB label/sketch image).
        out_channels: output channels (3 for RGB).
        num_downs: number of stride-2 downsamplings; 8 is ``unet_256``, 7 is ``unet_128``.
            Input height and width must be multiples of ``2**num_downs`` (the pipeline pads).
        ngf: filters in the outermost layer; inner layers use up to ``8 * ngf``.
        norm: ``"batch"`` (paper), ``"instance"`` or ``"none"``.
        use_dropout: dropout 0.5 in the ``num_downs - 5`` innermost ``8 * ngf`` levels (paper).

    Input: ``(N, in_channels, H, W)`` in ``[-1, 1]``. Output: ``(N, out_channels, H, W)`` in
    ``[-1, 1]`` (Tanh).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        num_downs: int = 8,
        ngf: int = 64,
        norm: NormType = "batch",
        use_dropout: bool = True,
    ) -> None:
        super().__init__()
        check_norm(norm)
        if isinstance(num_downs, int) and num_downs < 5:
            raise ValueError(
                f"num_downs must be at least 5 (the U-Net has 5 fixed levels), got {num_downs}."
            )
        name = type(self).__name__
        check_int_options(
            name,
            in_channels=(in_channels, 1, MAX_CHANNELS),
            out_channels=(out_channels, 1, MAX_CHANNELS),
            ngf=(ngf, 1, MAX_CHANNELS),
            num_downs=(num_downs, 5, 12),
        )
        # Conv4 down + ConvTranspose4 up per level: (in, out) channel pairs, 16 weights each.
        levels = [(in_channels, ngf, 2 * ngf, out_channels), (ngf, 2 * ngf, 4 * ngf, ngf)]
        levels += [(2 * ngf, 4 * ngf, 8 * ngf, 2 * ngf), (4 * ngf, 8 * ngf, 16 * ngf, 4 * ngf)]
        levels += [(8 * ngf, 8 * ngf, 16 * ngf, 8 * ngf)] * (num_downs - 5)
        levels += [(8 * ngf, 8 * ngf, 8 * ngf, 8 * ngf)]
        check_parameter_count(name, sum(16 * (a * b + c * d) for a, b, c, d in levels))
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(
                ngf * 8, ngf * 8, submodule=block, norm=norm, use_dropout=use_dropout
            )
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = UnetSkipConnectionBlock(
            out_channels, ngf, input_nc=in_channels, submodule=block, outermost=True, norm=norm
        )
        init_weights_normal(self)

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this."""
        return 2**self.config.num_downs

    @property
    def min_size(self) -> int:
        """Smallest height / width it runs on: one multiple (its 1x1 innermost level has no
        norm layer)."""
        return self.size_multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_channels(x, self.config.in_channels, type(self).__name__)
        check_spatial_multiple(x, self.size_multiple, type(self).__name__)
        return self.model(x)


class ResnetGenerator(ModelMixin, ConfigMixin):
    """pix2pix / CycleGAN ResNet generator (``resnet_9blocks`` / ``resnet_6blocks``).

    Two stride-2 downsamplings, ``n_blocks`` ResNet blocks at 1/4 resolution, two upsamplings.
    Conv biases are on only with InstanceNorm, as in the official code.

    ``upsample="resize_conv"`` replaces the transposed convs with :class:`ResizeConv2d`.

    Input: ``(N, in_channels, H, W)`` in ``[-1, 1]``, H and W multiples of 4.
    Output: ``(N, out_channels, H, W)`` in ``[-1, 1]``.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        norm: NormType = "batch",
        use_dropout: bool = False,
        padding_type: str = "reflect",
        upsample: UpsampleType = "transpose",
    ) -> None:
        super().__init__()
        check_trunk_config(type(self).__name__, in_channels, out_channels, ngf, 2, n_blocks)
        self.model = nn.Sequential(
            *resnet_trunk_layers(
                in_channels,
                out_channels,
                ngf,
                n_downsampling=2,
                n_blocks=n_blocks,
                norm=norm,
                use_bias=norm == "instance",
                use_dropout=use_dropout,
                padding_type=padding_type,
                upsample=upsample,
            )
        )
        init_weights_normal(self)

    @property
    def size_multiple(self) -> int:
        return 4

    @property
    def min_size(self) -> int:
        """Smallest height / width it runs on (the pipeline pads smaller inputs)."""
        return trunk_min_size(self.size_multiple)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_channels(x, self.config.in_channels, type(self).__name__)
        return self.model(x)


class _HugGANDown(nn.Module):
    """HugGAN ``UNetDown``: Conv4 s2 (no bias) [+ InstanceNorm] + LeakyReLU(0.2) [+ Dropout]."""

    def __init__(self, in_nc: int, out_nc: int, normalize: bool, dropout: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_nc, out_nc, 4, 2, 1, bias=False)]
        if normalize:
            layers.append(make_norm("instance", out_nc))
        layers.append(nn.LeakyReLU(0.2))
        if dropout:
            layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class _HugGANUp(nn.Module):
    """HugGAN ``UNetUp``: ConvTranspose4 s2 (no bias) + InstanceNorm + ReLU [+ Dropout], then
    the skip is concatenated *after* the upsampled features."""

    def __init__(self, in_nc: int, out_nc: int, dropout: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(in_nc, out_nc, 4, 2, 1, bias=False),
            make_norm("instance", out_nc),
            nn.ReLU(inplace=True),
        ]
        if dropout:
            layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.model(x), skip), 1)


class HugGANUNetGenerator(ModelMixin, ConfigMixin):
    """The U-Net of the HugGAN sprint's pix2pix (``huggan/pytorch/pix2pix``, after Erik
    Linder-Norén's PyTorch-GAN), with its module names, so its ``pytorch_model.bin`` loads as is.

    Same depth and widths as pix2pix's ``unet_256`` (64-128-256-512x5 for ``ngf=64``,
    ``num_downs=8``), but not the same function:

    - post-activation blocks (Conv -> InstanceNorm -> LeakyReLU going down, ConvTranspose ->
      InstanceNorm -> ReLU going up), so skips carry LeakyReLU outputs into the decoder where
      pix2pix feeds ReLU'd ones, and the bottleneck enters the first up-convolution through a
      LeakyReLU instead of a ReLU;
    - InstanceNorm (no affine) and no conv biases, also in the innermost down block (no norm
      there, as in the outermost one);
    - skips concatenated after the upsampled features (pix2pix: before);
    - dropout 0.5 after the activation of the down blocks from the 4th on and of the first
      ``num_downs - 4`` up blocks (pix2pix: only the three inner up blocks); off in eval mode;
    - the head is nearest ``Upsample(2)`` -> ``ZeroPad2d((1, 0, 1, 0))`` -> Conv4 (bias) ->
      Tanh instead of a ConvTranspose4 s2 + Tanh.

    Input: ``(N, in_channels, H, W)`` in ``[-1, 1]``, H and W multiples of ``2**num_downs``.
    Output: ``(N, out_channels, H, W)`` in ``[-1, 1]``.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        num_downs: int = 8,
        ngf: int = 64,
    ) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs must be at least 5, got {num_downs}.")
        widths = [ngf * min(2**i, 8) for i in range(num_downs)]  # down1 .. downN outputs
        previous = in_channels
        for i, width in enumerate(widths, start=1):
            outer = i in (1, num_downs)
            down = _HugGANDown(previous, width, normalize=not outer, dropout=i >= 4)
            setattr(self, f"down{i}", down)
            previous = width
        for i in range(1, num_downs):
            width = widths[num_downs - 1 - i]  # the skip's width, that of down{num_downs - i}
            setattr(self, f"up{i}", _HugGANUp(previous, width, dropout=num_downs - i >= 4))
            previous = 2 * width
        self.final = nn.Sequential(
            nn.Upsample(scale_factor=2),
            nn.ZeroPad2d((1, 0, 1, 0)),
            nn.Conv2d(previous, out_channels, 4, padding=1),
            nn.Tanh(),
        )
        init_weights_normal(self)  # as HugGAN's weights_init_normal

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this."""
        return 2**self.config.num_downs

    @property
    def min_size(self) -> int:
        """Smallest height / width it runs on: one multiple (its 1x1 innermost level has no
        norm layer)."""
        return self.size_multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_channels(x, self.config.in_channels, type(self).__name__)
        check_spatial_multiple(x, self.size_multiple, type(self).__name__)
        n = self.config.num_downs
        skips = []
        for i in range(1, n + 1):
            x = getattr(self, f"down{i}")(x)
            skips.append(x)
        for i in range(1, n):
            x = getattr(self, f"up{i}")(x, skips[n - 1 - i])
        return self.final(x)
