"""HugGAN sprint pix2pix checkpoints (huggingface/community-events, huggan/pytorch/pix2pix).

The reference network below is re-implemented here from the layout of HugGAN's
``modeling_pix2pix.GeneratorUNet`` (module names, layer order, widths), with the width 64 made a
parameter so that a tiny copy is cheap; its random weights are the "checkpoint" we convert.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from hf_pix2pixhd import HugGANUNetGenerator
from hf_pix2pixhd.convert import convert_official_checkpoint, detect_architecture
from hf_pix2pixhd.pipeline import Pix2PixHDPipeline


class UNetDown(nn.Module):
    def __init__(self, in_size, out_size, normalize=True, dropout=0.0):
        super().__init__()
        layers = [nn.Conv2d(in_size, out_size, 4, 2, 1, bias=False)]
        if normalize:
            layers.append(nn.InstanceNorm2d(out_size))
        layers.append(nn.LeakyReLU(0.2))
        if dropout:
            layers.append(nn.Dropout(dropout))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class UNetUp(nn.Module):
    def __init__(self, in_size, out_size, dropout=0.0):
        super().__init__()
        layers = [
            nn.ConvTranspose2d(in_size, out_size, 4, 2, 1, bias=False),
            nn.InstanceNorm2d(out_size),
            nn.ReLU(inplace=True),
        ]
        if dropout:
            layers.append(nn.Dropout(dropout))
        self.model = nn.Sequential(*layers)

    def forward(self, x, skip_input):
        return torch.cat((self.model(x), skip_input), 1)


class GeneratorUNet(nn.Module):
    """HugGAN's GeneratorUNet; ``ngf=64`` is theirs."""

    def __init__(self, in_channels=3, out_channels=3, ngf=64):
        super().__init__()
        a, b, c, d = ngf, 2 * ngf, 4 * ngf, 8 * ngf
        self.down1 = UNetDown(in_channels, a, normalize=False)
        self.down2 = UNetDown(a, b)
        self.down3 = UNetDown(b, c)
        self.down4 = UNetDown(c, d, dropout=0.5)
        self.down5 = UNetDown(d, d, dropout=0.5)
        self.down6 = UNetDown(d, d, dropout=0.5)
        self.down7 = UNetDown(d, d, dropout=0.5)
        self.down8 = UNetDown(d, d, normalize=False, dropout=0.5)
        self.up1 = UNetUp(d, d, dropout=0.5)
        self.up2 = UNetUp(2 * d, d, dropout=0.5)
        self.up3 = UNetUp(2 * d, d, dropout=0.5)
        self.up4 = UNetUp(2 * d, d, dropout=0.5)
        self.up5 = UNetUp(2 * d, c)
        self.up6 = UNetUp(2 * c, b)
        self.up7 = UNetUp(2 * b, a)
        self.final = nn.Sequential(
            nn.Upsample(scale_factor=2),
            nn.ZeroPad2d((1, 0, 1, 0)),
            nn.Conv2d(2 * a, out_channels, 4, padding=1),
            nn.Tanh(),
        )

    def forward(self, x):
        d1 = self.down1(x)
        d2 = self.down2(d1)
        d3 = self.down3(d2)
        d4 = self.down4(d3)
        d5 = self.down5(d4)
        d6 = self.down6(d5)
        d7 = self.down7(d6)
        d8 = self.down8(d7)
        u1 = self.up1(d8, d7)
        u2 = self.up2(u1, d6)
        u3 = self.up3(u2, d5)
        u4 = self.up4(u3, d4)
        u5 = self.up5(u4, d3)
        u6 = self.up6(u5, d2)
        u7 = self.up7(u6, d1)
        return self.final(u7)


def huggan_checkpoint(path, in_channels=3, out_channels=3, ngf=4, seed=0) -> GeneratorUNet:
    """Save a randomly initialised reference generator as HugGAN's hub mixin does (a plain
    state_dict in pytorch_model.bin); return it in eval mode."""
    torch.manual_seed(seed)
    reference = GeneratorUNet(in_channels, out_channels, ngf).eval()
    torch.save(reference.state_dict(), path)
    return reference


def test_huggan_generator_is_detected_and_converts_with_parity(tmp_path, one_thread):
    reference = huggan_checkpoint(tmp_path / "pytorch_model.bin", in_channels=1, out_channels=3)
    state = torch.load(tmp_path / "pytorch_model.bin", weights_only=True)
    assert "down1.model.0.weight" in state
    arch, config = detect_architecture(state)
    assert arch == "huggan_unet"
    assert config == {"in_channels": 1, "out_channels": 3, "num_downs": 8, "ngf": 4}
    model = convert_official_checkpoint(tmp_path / "pytorch_model.bin")
    assert isinstance(model, HugGANUNetGenerator) and not model.training
    count = sum(p.numel() for p in model.parameters())
    assert count == sum(p.numel() for p in reference.parameters())
    x = torch.rand(2, 1, 256, 512) * 2 - 1
    with torch.no_grad():
        ours, theirs = model(x), reference(x)
    assert ours.shape == theirs.shape == (2, 3, 256, 512)
    assert (ours - theirs).abs().max() <= 1e-5
    assert theirs.std() > 0.01  # a real picture, not a constant


def test_cli_converts_a_huggan_checkpoint_to_a_working_pipeline(tmp_path, one_thread):
    reference = huggan_checkpoint(tmp_path / "pytorch_model.bin", seed=1)
    result = subprocess.run(
        [sys.executable, "-m", "hf_pix2pixhd.cli", "convert", str(tmp_path / "pytorch_model.bin"),
         "--out", str(tmp_path / "pipe"), "--pipeline", "--input-kind", "rgb"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "HugGANUNetGenerator" in result.stdout
    pipe = Pix2PixHDPipeline.from_pretrained(tmp_path / "pipe")
    photo = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    ours = pipe(photo, output_type="pt").images
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        theirs = (reference(x).clamp(-1, 1) + 1) / 2
    assert (ours - theirs).abs().max() <= 1e-5


@pytest.mark.slow
def test_full_size_huggan_generator_converts_with_parity(tmp_path, one_thread):
    reference = huggan_checkpoint(tmp_path / "pytorch_model.bin", ngf=64)
    model = convert_official_checkpoint(tmp_path / "pytorch_model.bin")
    assert model.config.ngf == 64 and model.config.num_downs == 8
    count = sum(p.numel() for p in model.parameters())
    assert count == sum(p.numel() for p in reference.parameters())
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        assert (model(x) - reference(x)).abs().max() <= 1e-5
