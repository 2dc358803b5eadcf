"""The objectives against hand-computed values (official pix2pix / pix2pixHD definitions)."""

from __future__ import annotations

import pytest
import torch

from hf_pix2pixhd.data import DataConfig
from hf_pix2pixhd.losses import GANLoss, VGGPerceptualLoss, feature_matching_loss
from hf_pix2pixhd.training.config import ModelConfig, TrainConfig
from hf_pix2pixhd.training.objective import Objective


def test_lsgan_vanilla_and_hinge_by_hand():
    logits = torch.tensor([[[[0.5, -1.0], [2.0, 0.0]]]])
    lsgan = GANLoss("lsgan")
    assert lsgan(logits, True).item() == pytest.approx((0.25 + 4 + 1 + 1) / 4)
    assert lsgan(logits, False).item() == pytest.approx((0.25 + 1 + 4 + 0) / 4)
    vanilla = GANLoss("vanilla")
    expected = torch.nn.functional.softplus(-logits).mean()  # -log(sigmoid(x))
    assert vanilla(logits, True).item() == pytest.approx(expected.item())
    hinge = GANLoss("hinge")
    assert hinge(logits, True).item() == pytest.approx((0.5 + 2 + 0 + 1) / 4)
    assert hinge(logits, False).item() == pytest.approx((1.5 + 0 + 3 + 1) / 4)
    assert hinge(logits, True, for_discriminator=False).item() == pytest.approx(-0.375)
    with pytest.raises(ValueError, match="gan_mode"):
        GANLoss("wgan")


def test_gan_loss_sums_over_scales_on_the_last_output():
    lsgan = GANLoss("lsgan")
    scale = [torch.full((1, 2, 4, 4), 99.0), torch.zeros(1, 1, 3, 3)]  # features, then logits
    assert lsgan([scale, scale], True).item() == pytest.approx(2.0)


def test_feature_matching_weights_official():
    # num_D = 2, n_layers = 3: weight 1/2 * 4/4 = 0.5 on each of the 4 non-logit features.
    real = [[torch.zeros(1, 2, 4, 4) for _ in range(5)] for _ in range(2)]
    fake = [[torch.ones(1, 2, 4, 4) for _ in range(4)] + [torch.full((1, 1, 2, 2), 100.0)]
            for _ in range(2)]  # fmt: skip
    assert feature_matching_loss(fake, real, n_layers=3).item() == pytest.approx(2 * 4 * 0.5)
    # num_D = 3, n_layers = 2: 1/3 * 4/3 per feature, 3 non-logit features per scale.
    real3 = [[torch.zeros(1, 1, 2, 2) for _ in range(4)] for _ in range(3)]
    fake3 = [[torch.full((1, 1, 2, 2), 2.0) for _ in range(4)] for _ in range(3)]
    expected = 3 * 3 * (1 / 3) * (4 / 3) * 2.0
    assert feature_matching_loss(fake3, real3, n_layers=2).item() == pytest.approx(expected)


class _FixedFeatures(torch.nn.Module):
    """A stand-in VGG: its i-th feature is the input scaled by (i + 1)."""

    def forward(self, x):
        return [x * (i + 1) for i in range(5)]


def test_vgg_loss_weights_official():
    loss = VGGPerceptualLoss(_FixedFeatures())
    fake, real = torch.ones(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    expected = sum(w * (i + 1) for i, w in enumerate([1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0]))
    assert loss(fake, real).item() == pytest.approx(expected)


def _mean_discriminator(x):
    """Logits = the image channels' mean, with one intermediate feature."""
    image = x[:, -3:]
    return [[image * 2, image.mean(dim=1, keepdim=True)]]


def _config(recipe: str, **kw) -> TrainConfig:
    data = DataConfig(source="unused")
    return TrainConfig(data=data, model=ModelConfig(recipe=recipe, n_layers_d=3), **kw)


def test_discriminator_loss_is_half_the_sum_and_generator_terms():
    condition = torch.zeros(1, 3, 4, 4)
    real, fake = torch.full((1, 3, 4, 4), 0.5), torch.full((1, 3, 4, 4), -0.5)
    objective = Objective(_config("pix2pix", gan_mode="lsgan", lambda_l1=100.0))
    loss_d, logs, _ = objective.discriminator_loss(_mean_discriminator, condition, real, fake)
    # D(real) = 0.5 -> (0.5 - 1)^2; D(fake) = -0.5 -> (-0.5)^2; loss_D = 0.5 * (0.25 + 0.25)
    assert logs["D_real"] == pytest.approx(0.25) and logs["D_fake"] == pytest.approx(0.25)
    assert loss_d.item() == pytest.approx(0.25)
    loss_g, logs = objective.generator_loss(_mean_discriminator, condition, real, fake)
    # GAN: (-0.5 - 1)^2 = 2.25; L1: |(-0.5) - 0.5| * 100 = 100
    assert logs["G_GAN"] == pytest.approx(2.25) and logs["G_L1"] == pytest.approx(100.0)
    assert loss_g.item() == pytest.approx(102.25)


def test_lambda_gan_zero_is_the_l1_only_ablation():
    condition = torch.zeros(1, 3, 4, 4)
    real, fake = torch.full((1, 3, 4, 4), 0.5), torch.full((1, 3, 4, 4), -0.5)
    objective = Objective(_config("pix2pix", gan_mode="lsgan", lambda_gan=0.0))
    assert not objective.uses_discriminator

    def no_discriminator(x):
        raise AssertionError("the L1-only ablation must not run D")

    loss_g, logs = objective.generator_loss(no_discriminator, condition, real, fake)
    assert "G_GAN" not in logs and loss_g.item() == pytest.approx(100.0)
    assert Objective(_config("pix2pixhd", lambda_gan=0.0, lambda_vgg=0)).uses_discriminator


def test_pix2pixhd_generator_loss_uses_feature_matching(monkeypatch):
    condition = torch.zeros(1, 3, 4, 4)
    real, fake = torch.full((1, 3, 4, 4), 0.5), torch.full((1, 3, 4, 4), -0.5)
    objective = Objective(_config("pix2pixhd", gan_mode="lsgan", lambda_feat=10.0, lambda_vgg=0))
    _, logs = objective.generator_loss(_mean_discriminator, condition, real, fake)
    # One scale, feature image * 2: L1 = |(-1) - 1| = 2; weight 1/1 * 4/(3 + 1) = 1; x 10.
    assert logs["G_GAN_Feat"] == pytest.approx(20.0)
    assert "G_L1" not in logs and logs["G"] == pytest.approx(2.25 + 20.0)
