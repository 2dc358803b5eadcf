"""Recipe options for small datasets on small hardware: DiffAugment for D, spectral norm,
mode seeking for visible styles, resize-conv decoders, EMA, all through the real Trainer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_training import _reset_accelerate_state, hd_overrides, make_hd_dataset

from hf_pix2pixhd.training.diffaugment import DiffAugment, parse_policy
from hf_pix2pixhd.training.networks import random_instance_codes


def _pairs(batch: int = 3, size: int = 16) -> torch.Tensor:
    torch.manual_seed(0)
    condition = torch.zeros(batch, 4, size, size)
    condition[:, 1] = 1.0  # a one-hot map of class 1
    image = torch.rand(batch, 3, size, size) * 2 - 1
    return torch.cat([condition, image], 1)


def test_policies_are_parsed_and_checked():
    assert parse_policy("color, translation,cutout") == ("color", "translation", "cutout")
    assert parse_policy("") == () and not DiffAugment("")
    with pytest.raises(ValueError, match="Unknown diffaugment transform"):
        parse_policy("colour")


def test_colour_changes_only_the_photo_channels():
    pairs = _pairs()
    augment = DiffAugment("color")
    out = augment.apply(pairs, augment.sample(3, 16, 16, pairs.device))
    assert torch.equal(out[:, :4], pairs[:, :4])
    assert not torch.allclose(out[:, 4:], pairs[:, 4:])


def test_translation_moves_condition_and_photo_together_by_whole_pixels():
    pairs = _pairs()
    augment = DiffAugment("translation")
    torch.manual_seed(3)
    params = augment.sample(3, 16, 16, pairs.device)
    out = augment.apply(pairs, params)
    for n in range(3):
        # Find the shift that maps the input onto the output (zeros shifted in).
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(
                out[n, :, max(dy, 0) : 16 + min(dy, 0), max(dx, 0) : 16 + min(dx, 0)],
                pairs[n, :, max(-dy, 0) : 16 + min(-dy, 0), max(-dx, 0) : 16 + min(-dx, 0)],
            )
        ]
        assert matches, f"pair {n} is not a whole-pixel shift of its input"
    assert any(torch.count_nonzero(out[n, 1]) < 256 for n in range(3))  # zeros shifted in


def test_cutout_blanks_one_square_of_the_pair_and_gradients_flow():
    pairs = _pairs().requires_grad_(True)
    augment = DiffAugment("color,translation,cutout")
    params = augment.sample(3, 16, 16, pairs.device)
    out = augment.apply(pairs, params)
    blank = (params.cutout == 0).float()
    assert 0 < blank.mean() < 0.5 and torch.all(out * blank == 0)
    out.sum().backward()
    assert pairs.grad is not None and pairs.grad.abs().sum() > 0
    # One draw reused gives the same augmentation (real and fake see the same transform).
    assert torch.equal(augment.apply(pairs, params), out)


def test_random_codes_are_constant_per_instance_and_in_the_encoder_range():
    instances = torch.zeros(2, 1, 8, 8, dtype=torch.long)
    instances[:, :, :, 4:] = 7
    codes = torch.zeros(2, 3, 8, 8)
    alt = random_instance_codes(instances, codes)
    assert alt.shape == codes.shape and alt.abs().max() <= 1
    for n in range(2):
        for region in (instances[n, 0] == 0, instances[n, 0] == 7):
            values = alt[n][:, region]
            assert torch.all(values == values[:, :1])
    assert not torch.equal(alt[0, :, 0, 0], alt[0, :, 0, 7])  # instances differ
    assert not torch.equal(alt[0], alt[1])  # images differ


def _trainer(tmp_path: Path, *extra: str):
    from hf_pix2pixhd.training import Trainer, load_config

    _reset_accelerate_state()
    data = make_hd_dataset(tmp_path / "data", count=2)
    overrides = hd_overrides(data, tmp_path / "run") + ["--tracker", "null", *extra]
    return Trainer(load_config(None, overrides))


def test_a_step_with_every_option_trains_g_e_and_d(tmp_path, one_thread):
    trainer = _trainer(
        tmp_path, "--diffaugment", "color,translation,cutout", "--lambda_diversity", "1.0",
        "--model.spectral_norm_d", "true", "--model.upsample", "resize_conv",
        "--ema_decay", "0.9",
    )  # fmt: skip
    assert any("parametrizations" in name for name, _ in trainer.discriminator.named_parameters())
    before = {
        name: p.detach().clone()
        for net in (trainer.generator, trainer.encoder, trainer.discriminator)
        for name, p in net.named_parameters()
    }
    from hf_pix2pixhd.data import collate_pairs

    batch = collate_pairs([trainer.dataset[0]])
    logs = trainer.training_step(batch)
    assert {"G_div", "G_div_ratio", "G_GAN_alt", "D"} <= set(logs)
    assert logs["G_div_ratio"] > 0
    for net in (trainer.generator, trainer.encoder, trainer.discriminator):
        changed = [not torch.equal(p, before[n]) for n, p in net.named_parameters()]
        assert any(changed), type(net).__name__


def test_diversity_needs_the_encoder_and_resize_conv_is_not_for_the_unet(tmp_path):
    from hf_pix2pixhd.training import load_config

    with pytest.raises(ValueError, match="lambda_diversity"):
        load_config(None, ["--data.source", "x", "--lambda_diversity", "1"])
    with pytest.raises(ValueError, match="resize_conv"):
        load_config(None, ["--data.source", "x", "--model.upsample", "resize_conv"])
    with pytest.raises(ValueError, match="diffaugment"):
        load_config(None, ["--data.source", "x", "--diffaugment", "flip"])


def test_samples_and_validation_use_the_ema_weights_and_leave_g_as_trained(tmp_path, one_thread):
    from hf_pix2pixhd.data import collate_pairs

    trainer = _trainer(tmp_path, "--ema_decay", "0.5", "--lr", "0.01")
    batch = collate_pairs([trainer.dataset[0]])
    for _ in range(3):
        trainer.training_step(batch)
    generator = trainer._unwrap(trainer.generator)
    trained = [p.detach().clone() for p in generator.parameters()]
    with_ema = trainer.generate(batch)
    assert all(torch.equal(p, t) for p, t in zip(generator.parameters(), trained, strict=True))
    ema, trainer.ema = trainer.ema, None
    raw = trainer.generate(batch)  # G's own weights
    assert not torch.allclose(with_ema, raw)  # the EMA lags the trained weights
    with torch.no_grad():  # G with the EMA weights put in by hand gives the sampled output
        ema.copy_to(generator.parameters())
    assert torch.allclose(trainer.generate(batch), with_ema)
