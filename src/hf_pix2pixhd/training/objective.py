"""The recipes' objectives: pix2pix (cGAN + lambda * L1) and pix2pixHD (GAN + FM + VGG)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import GANLoss, VGGPerceptualLoss, feature_matching_loss
from ..models import VGGFeatures
from .config import TrainConfig
from .diffaugment import AugmentParams, DiffAugment

Discriminate = Callable[[torch.Tensor], object]


class Objective(nn.Module):
    """Generator and discriminator losses for one batch.

    Both are computed against the same D parameters (pix2pixHD's order), so that gradient
    accumulation over micro-batches equals one large batch. D sees ``cat(condition, image)``,
    through DiffAugment when ``config.diffaugment`` names transforms: one draw per step, made in
    :meth:`discriminator_loss` and reused by :meth:`generator_loss` and
    :meth:`diversity_loss` (call them in that order).
    """

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        self.recipe = config.model.recipe
        self.gan = GANLoss(config.gan_mode)
        self.lambda_gan = config.lambda_gan
        self.lambda_l1 = config.lambda_l1
        self.lambda_feat = config.lambda_feat
        self.lambda_vgg = config.lambda_vgg
        self.n_layers_d = config.model.n_layers_d
        self.lambda_diversity = config.lambda_diversity
        self.diversity_cap = config.diversity_cap
        self.augment = DiffAugment(config.diffaugment)
        self._augment_params: AugmentParams | None = None
        self.vgg: VGGPerceptualLoss | None = None
        if self.recipe == "pix2pixhd" and self.lambda_vgg > 0:
            if config.vgg_weights == "random":  # plumbing tests only: no pretrained features
                vgg = VGGFeatures(config.vgg_variant)
            else:
                vgg = VGGFeatures.from_torchvision_weights(
                    config.vgg_weights, variant=config.vgg_variant
                )
            if config.mixed_precision == "bf16":
                # Frozen: keeping it in bf16 saves casting ~20M weights on every forward.
                vgg = vgg.to(torch.bfloat16)
            self.vgg = VGGPerceptualLoss(vgg)

    def _discriminate(self, discriminate: Discriminate, pair: torch.Tensor, fresh: bool) -> object:
        """D on a ``cat(condition, image)`` pair, augmented with this step's parameters."""
        if not self.augment:
            return discriminate(pair)
        if fresh or self._augment_params is None:
            self._augment_params = self.augment.sample(pair.shape[0], *pair.shape[-2:], pair.device)
        return discriminate(self.augment.apply(pair, self._augment_params))

    @property
    def uses_discriminator(self) -> bool:
        """False for the L1-only ablation (``lambda_gan`` 0, no feature matching): D is
        then neither run nor trained."""
        return self.lambda_gan > 0 or (self.recipe == "pix2pixhd" and self.lambda_feat > 0)

    def generator_loss(
        self,
        discriminate: Discriminate,
        condition: torch.Tensor,
        real: torch.Tensor,
        fake: torch.Tensor,
        pred_real: object | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss for G (and E). ``discriminate`` must not build gradients into D's weights.

        ``pred_real``: D's output on the real pair from :meth:`discriminator_loss`, reused
        (detached) for feature matching as the official code does; computed if not given.
        """
        logs: dict[str, float] = {}
        total = fake.new_zeros((), dtype=torch.float32)
        pred_fake = None
        if self.uses_discriminator:
            pred_fake = self._discriminate(discriminate, torch.cat([condition, fake], 1), False)
        if self.lambda_gan > 0:
            loss_gan = self.gan(pred_fake, True, for_discriminator=False) * self.lambda_gan
            logs["G_GAN"] = loss_gan.item()
            total = total + loss_gan
        if self.recipe == "pix2pix":
            loss_l1 = F.l1_loss(fake.float(), real.float()) * self.lambda_l1
            logs["G_L1"] = loss_l1.item()
            total = total + loss_l1
        else:
            if self.lambda_feat > 0:
                if pred_real is None:
                    with torch.no_grad():
                        pair = torch.cat([condition, real], 1)
                        pred_real = self._discriminate(discriminate, pair, False)
                loss_fm = feature_matching_loss(pred_fake, pred_real, self.n_layers_d)
                loss_fm = loss_fm * self.lambda_feat
                logs["G_GAN_Feat"] = loss_fm.item()
                total = total + loss_fm
            if self.vgg is not None:
                loss_vgg = self.vgg(fake, real) * self.lambda_vgg
                logs["G_VGG"] = loss_vgg.item()
                total = total + loss_vgg
        logs["G"] = total.item()
        return total, logs

    def discriminator_loss(
        self,
        discriminate: Discriminate,
        condition: torch.Tensor,
        real: torch.Tensor,
        fake: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, float], object]:
        """``0.5 * (loss(D(real), real) + loss(D(fake), fake))``; ``fake`` is detached here.

        Returns the loss, its logs, and D's output on the real pair (for feature matching).
        """
        pred_fake = self._discriminate(discriminate, torch.cat([condition, fake.detach()], 1), True)
        pred_real = self._discriminate(discriminate, torch.cat([condition, real], 1), False)
        loss_fake = self.gan(pred_fake, False)
        loss_real = self.gan(pred_real, True)
        total = 0.5 * (loss_fake + loss_real)
        logs = {"D_fake": loss_fake.item(), "D_real": loss_real.item(), "D": total.item()}
        return total, logs, pred_real

    def diversity_loss(
        self,
        discriminate: Discriminate,
        condition: torch.Tensor,
        fake: torch.Tensor,
        fake_alt: torch.Tensor,
        codes: torch.Tensor,
        codes_alt: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Mode seeking (Mao et al. 2019): reward G for outputs that differ as much as their
        style codes do, so the encoder's codes, and the styles clustered from them, show.

        ``-lambda_diversity * min(mean|fake - fake_alt| / mean|codes - codes_alt|, cap)``: the
        cap keeps the reward bounded. ``fake_alt`` (G's output for the same condition with other
        codes, ``codes_alt``) must look real too: it gets G's adversarial term.
        """
        ratio = (fake.float() - fake_alt.float()).abs().mean() / (
            (codes.float() - codes_alt.float()).abs().mean() + 1e-5
        )
        total = -self.lambda_diversity * ratio.clamp(max=self.diversity_cap)
        logs = {"G_div_ratio": ratio.item()}
        if self.lambda_gan > 0:
            pred = self._discriminate(discriminate, torch.cat([condition, fake_alt], 1), False)
            loss_gan = self.gan(pred, True, for_discriminator=False) * self.lambda_gan
            logs["G_GAN_alt"] = loss_gan.item()
            total = total + loss_gan
        logs["G_div"] = total.item()
        return total, logs
