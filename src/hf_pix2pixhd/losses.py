"""GAN objectives: adversarial (vanilla / LSGAN / hinge), feature matching, VGG perceptual.

Discriminator outputs are handled in the multi-scale form ``list[list[Tensor]]`` (one list of
block outputs per scale, logits last), which a single PatchGAN also fits as ``[[logits]]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

GAN_MODES = ("vanilla", "lsgan", "hinge")
#: pix2pixHD's VGG layer weights for relu1_1 .. relu5_1.
VGG_LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)

DiscriminatorOutput = Sequence[Sequence[torch.Tensor]]


def as_multiscale(output: torch.Tensor | Sequence) -> list[list[torch.Tensor]]:
    """Bring a discriminator's output to ``[[block outputs..., logits], ...]``."""
    if torch.is_tensor(output):
        return [[output]]
    if output and torch.is_tensor(output[0]):
        return [list(output)]  # one PatchGAN with return_features=True
    return [list(scale) for scale in output]


class GANLoss(nn.Module):
    """Adversarial loss on the last output (logits) of every scale, summed over scales.

    ``"vanilla"``: BCE with logits (pix2pix). ``"lsgan"``: MSE to 1 / 0 (pix2pixHD).
    ``"hinge"``: ``relu(1 - D(real)) + relu(1 + D(fake))`` for D and ``-D(fake)`` for G.
    Each scale's loss is a mean over its patch map; scales are summed, as in the official code.
    """

    def __init__(self, mode: str = "lsgan") -> None:
        super().__init__()
        if mode not in GAN_MODES:
            raise ValueError(f"Unknown gan_mode {mode!r}: choose one of {', '.join(GAN_MODES)}.")
        self.mode = mode

    def forward(
        self,
        output: torch.Tensor | DiscriminatorOutput,
        target_is_real: bool,
        for_discriminator: bool = True,
    ) -> torch.Tensor:
        total = 0.0
        for scale in as_multiscale(output):
            logits = scale[-1].float()
            if self.mode == "hinge":
                if for_discriminator:
                    sign = -1.0 if target_is_real else 1.0
                    total = total + F.relu(1.0 + sign * logits).mean()
                else:
                    total = total - logits.mean()
                continue
            target = torch.full_like(logits, 1.0 if target_is_real else 0.0)
            if self.mode == "lsgan":
                total = total + F.mse_loss(logits, target)
            else:
                total = total + F.binary_cross_entropy_with_logits(logits, target)
        return total


def feature_matching_loss(
    fake: DiscriminatorOutput, real: DiscriminatorOutput, n_layers: int
) -> torch.Tensor:
    """pix2pixHD's discriminator feature matching.

    L1 between the fake's and the (detached) real's intermediate features, on every block but
    the logits, each weighted ``1 / num_D * 4 / (n_layers + 1)``.
    """
    fake, real = as_multiscale(fake), as_multiscale(real)
    weight = (1.0 / len(fake)) * (4.0 / (n_layers + 1))
    total = 0.0
    for fake_scale, real_scale in zip(fake, real, strict=True):
        for fake_feature, real_feature in zip(fake_scale[:-1], real_scale[:-1], strict=True):
            total = total + weight * F.l1_loss(fake_feature.float(), real_feature.detach().float())
    return total


class VGGPerceptualLoss(nn.Module):
    """pix2pixHD's perceptual loss: sum of ``w_i * L1(vgg_i(fake), vgg_i(real).detach())``.

    Args:
        vgg: a frozen :class:`~hf_pix2pixhd.models.VGGFeatures` (5 taps, relu1_1..relu5_1).
        weights: per-tap weights, ``1/32, 1/16, 1/8, 1/4, 1`` by default.

    Inputs: ``(N, 3, H, W)`` images in ``[-1, 1]``.
    """

    def __init__(self, vgg: nn.Module, weights: Sequence[float] = VGG_LAYER_WEIGHTS) -> None:
        super().__init__()
        self.vgg = vgg.eval().requires_grad_(False)
        self.weights = tuple(weights)

    def train(self, mode: bool = True) -> VGGPerceptualLoss:
        # The VGG stays in eval mode whatever the trainer asks.
        super().train(mode)
        self.vgg.eval()
        return self

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        fake_features = self.vgg(fake)
        with torch.no_grad():
            real_features = self.vgg(real)
        if len(fake_features) != len(self.weights):
            raise ValueError(
                f"The VGG gives {len(fake_features)} feature maps but {len(self.weights)} weights "
                "were given."
            )
        total = 0.0
        for weight, fake_feature, real_feature in zip(
            self.weights, fake_features, real_features, strict=True
        ):
            total = total + weight * F.l1_loss(fake_feature.float(), real_feature.float())
        return total
