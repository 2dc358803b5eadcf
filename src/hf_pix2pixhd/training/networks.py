"""Building the networks of a recipe, and turning a data batch into their inputs."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from diffusers import ModelMixin

from ..labels import assemble_generator_input
from ..models import (
    FeatureEncoder,
    GlobalGenerator,
    LocalEnhancerGenerator,
    MultiScaleDiscriminator,
    PatchGANDiscriminator,
    ResnetGenerator,
    UNetGenerator,
)
from ..models.encoder import instance_segment_ids
from .config import TrainConfig


def feed_channels_last(module: torch.nn.Module) -> None:
    """Give ``module`` channels_last (NHWC-strided) 4-D inputs; its weights keep their layout.

    oneDNN chooses its channels_last kernels from the input's layout alone; layers after that
    keep whatever layout they produce (training's InstanceNorm returns NCHW; converting before
    every conv measured slower than this). Converting the weights as well
    (``module.to(memory_format=...)``) costs a strided copy of every conv weight's gradient in
    backward and another in the fused Adam step: 1.2 s of a 5 s pix2pixHD bf16 step on CPU.
    Transposed convs get NCHW inputs: on channels_last ones PyTorch converts their weight and
    its gradient anyway (the U-Net's up path; 0.45 vs 0.47-0.52 s per pix2pix bf16 step).
    """
    module.register_forward_pre_hook(partial(_to_layout, layout=torch.channels_last))
    for layer in module.modules():
        if isinstance(layer, torch.nn.ConvTranspose2d):
            layer.register_forward_pre_hook(partial(_to_layout, layout=torch.contiguous_format))


def _to_layout(_module: torch.nn.Module, args: tuple, layout: torch.memory_format) -> tuple:
    return tuple(
        arg.contiguous(memory_format=layout)
        if isinstance(arg, torch.Tensor) and arg.dim() == 4
        else arg
        for arg in args
    )


@dataclass
class Networks:
    generator: ModelMixin
    discriminator: ModelMixin
    encoder: FeatureEncoder | None


def condition_channels(config: TrainConfig) -> int:
    """Channels of the conditioning input (what D sees beside the image)."""
    data = config.data
    if data.input_kind != "labels":
        return 3
    return data.label_nc + int(data.use_instance_map)


def build_networks(config: TrainConfig) -> Networks:
    """G, D and (optionally) E for ``config``, initialised as in the papers."""
    m = config.model
    condition_nc = condition_channels(config)
    g_in = condition_nc + (m.feature_nc if m.use_encoder else 0)
    if m.generator == "unet":
        generator = UNetGenerator(g_in, 3, m.num_downs, m.ngf, m.norm_g, m.use_dropout)
    elif m.generator == "resnet":
        generator = ResnetGenerator(
            g_in, 3, m.ngf, m.n_blocks, m.norm_g, m.use_dropout, upsample=m.upsample
        )
    elif m.generator == "global":
        generator = GlobalGenerator(
            g_in, 3, m.ngf, m.n_downsampling, m.n_blocks, m.norm_g, upsample=m.upsample
        )
    else:
        generator = LocalEnhancerGenerator(
            g_in, 3, m.ngf, m.n_downsampling, m.n_blocks, m.n_local_enhancers, m.n_blocks_local,
            m.norm_g, upsample=m.upsample,
        )  # fmt: skip
        if m.load_global:
            generator.load_global_generator(_load_generator(m.load_global))
    if m.discriminator == "patchgan":
        discriminator = PatchGANDiscriminator(condition_nc + 3, m.ndf, m.n_layers_d, m.norm_d)
    else:
        discriminator = MultiScaleDiscriminator(
            condition_nc + 3, m.ndf, m.n_layers_d, m.norm_d, num_d=m.num_d,
            return_features=config.model.recipe == "pix2pixhd",
        )  # fmt: skip
    if m.spectral_norm_d:
        for layer in list(discriminator.modules()):
            if isinstance(layer, torch.nn.Conv2d):
                torch.nn.utils.parametrizations.spectral_norm(layer)
    encoder = None
    if m.use_encoder:
        encoder = FeatureEncoder(3, m.feature_nc, m.nef, m.n_downsampling_e, m.norm_g)
    return Networks(generator, discriminator, encoder)


def _load_generator(path: str) -> GlobalGenerator:
    """A trained global G from a model dir or a pipeline dir (``translator/``)."""
    folder = Path(path)
    if (folder / "translator").is_dir():
        folder = folder / "translator"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"model.load_global={path} holds no config.json (nor translator/config.json): pass "
            "the exported pipeline or model folder of a trained global generator."
        )
    return GlobalGenerator.from_pretrained(folder)


def random_instance_codes(instances: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Random style codes shaped like the encoder's: one uniform ``[-1, 1]`` code (the range
    of E's tanh) per instance of ``instances`` ``(N, 1, H, W)``, painted over it.

    Returns ``(N, C, H, W)`` like ``codes``, piecewise constant per instance.
    """
    segments, count = instance_segment_ids(instances)
    table = torch.rand(count, codes.shape[1], device=codes.device) * 2 - 1
    batch, channels, height, width = codes.shape
    painted = table[segments.to(codes.device)].view(batch, height, width, channels)
    return painted.permute(0, 3, 1, 2).to(codes.dtype)


@dataclass
class PreparedBatch:
    """Network inputs for one batch: G's input (without encoder features), D's condition,
    the real image, and the instance map the encoder pools over (``(N, 1, H, W)`` int64; for
    sketch / rgb inputs all zeros, one instance per image, so the features are global)."""

    generator_input: torch.Tensor
    condition: torch.Tensor
    real: torch.Tensor
    instances: torch.Tensor | None


def prepare_batch(batch: dict, config: TrainConfig) -> PreparedBatch:
    """Turn a collated data batch into network inputs (one-hot, instance boundaries)."""
    data = config.data
    real = batch["target"]
    if data.input_kind != "labels":
        # The whole image is one instance: the encoder gives one global code per photo.
        whole = None
        if config.model.use_encoder:
            whole = torch.zeros_like(real[:, :1], dtype=torch.long)
        return PreparedBatch(batch["input"], batch["input"], real, whole)
    labels = batch["label"]
    instances = batch.get("instance") if data.use_instance_map else None
    if config.model.use_encoder and instances is None:
        instances = batch.get("instance", labels)
    condition = assemble_generator_input(
        labels, data.label_nc, batch.get("instance") if data.use_instance_map else None
    ).to(real.device)
    return PreparedBatch(condition, condition, real, instances)
