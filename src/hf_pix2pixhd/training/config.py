"""Training configuration: YAML presets in ``configs/`` plus command-line overrides."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..data import DataConfig
from ..models.layers import UPSAMPLE_TYPES
from .diffaugment import parse_policy
from .options import ConfigError, add_arguments, typed_tree

RECIPES = ("pix2pix", "pix2pixhd")
GENERATORS = ("unet", "resnet", "global", "local")
DISCRIMINATORS = ("patchgan", "multiscale")


def setting(default: Any = None, help: str = "", **kwargs: Any) -> Any:
    """A config field with its ``--help`` line (the one place it is written)."""
    return field(default=default, metadata={"help": help}, **kwargs)


@dataclass
class ModelConfig:
    """Which networks to build, with the papers' option names where they exist."""

    recipe: str = setting(
        "pix2pix", "pix2pix (cGAN + L1) | pix2pixhd (LSGAN + feature matching + VGG)"
    )
    generator: str = setting("unet", "unet (pix2pix) | resnet | global | local (pix2pixHD)")
    ngf: int = setting(64, "generator filters in the first layer")
    norm_g: str = setting("batch", "generator norm: batch | instance | none")
    use_dropout: bool = setting(True, "dropout in the generator (unet / resnet)")
    num_downs: int = setting(8, "unet downsamplings (8 for 256x256)")
    n_blocks: int = setting(9, "ResNet blocks of resnet / global / the local enhancer's trunk")
    n_downsampling: int = setting(4, "downsamplings of the global generator (trunk)")
    n_local_enhancers: int = setting(1, "local enhancers (each doubles the resolution)")
    n_blocks_local: int = setting(3, "ResNet blocks per local enhancer")
    upsample: str = setting(
        "transpose", "ResNet-style G decoders: transpose (official) | resize_conv (no checkerboard)"
    )
    discriminator: str = setting("patchgan", "patchgan (pix2pix) | multiscale (pix2pixHD)")
    ndf: int = setting(64, "discriminator filters in the first layer")
    n_layers_d: int = setting(3, "discriminator conv layers (3: the 70x70 PatchGAN)")
    norm_d: str = setting("batch", "discriminator norm: batch | instance | none")
    num_d: int = setting(2, "discriminators of the multiscale D (one per scale)")
    # pix2pixHD feature encoder, trained jointly with G; it pools per instance for label maps,
    # over the whole image for sketch / rgb inputs (global style codes)
    use_encoder: bool = setting(False, "train the pix2pixHD feature encoder E with G (styles)")
    feature_nc: int = setting(3, "channels of the encoder's feature map")
    nef: int = setting(16, "encoder filters in the first layer")
    n_downsampling_e: int = setting(4, "encoder downsamplings")
    spectral_norm_d: bool = setting(False, "spectral normalisation on every conv of D")
    load_global: str | None = setting(
        None, "a trained global G (model or pipeline folder) as the local enhancer's trunk"
    )
    niter_fix_global: int = setting(0, "epochs during which only the local enhancer trains")


@dataclass
class TrainConfig:
    """Everything a run needs. ``data`` and ``model`` are nested sections in YAML."""

    data: DataConfig = field(default_factory=lambda: DataConfig(source=""))
    model: ModelConfig = field(default_factory=ModelConfig)
    output_dir: str = setting("outputs/run", "run folder: checkpoints, samples, logs, pipeline")
    seed: int = setting(0, "random seed (per process: seed + rank)")
    init_from: str | None = setting(
        None,
        "start G (and E, and D from a checkpoint) from a pipeline folder, a Hub id or a "
        "checkpoint-<step> folder: fine-tuning",
    )
    # objective
    gan_mode: str = setting("vanilla", "adversarial loss: vanilla | lsgan | hinge")
    lambda_gan: float = setting(1.0, "weight of the adversarial loss (0: the L1-only ablation)")
    lambda_l1: float = setting(100.0, "weight of the L1 loss (pix2pix)")
    lambda_feat: float = setting(10.0, "weight of feature matching (pix2pixHD)")
    lambda_vgg: float = setting(10.0, "weight of the VGG perceptual loss (pix2pixHD)")
    lambda_diversity: float = setting(
        0.0, "mode seeking: reward outputs that follow the style code (0: off; needs the encoder)"
    )
    diversity_cap: float = setting(1.0, "cap of the rewarded output / code difference ratio")
    diffaugment: str = setting(
        "", "DiffAugment for D: a subset of color,translation,cutout (empty: off)"
    )
    vgg_weights: str | None = setting(
        None, "VGG weights: path or URL; none: $HF_PIX2PIXHD_VGG_WEIGHTS or the torchvision URL"
    )
    vgg_variant: str = setting("vgg19", "vgg19 (the paper) | vgg16")
    # optimisation and schedule (epochs at constant LR, then epochs of linear decay to 0)
    lr: float = setting(2e-4, "Adam learning rate of G and D")
    beta1: float = setting(0.5, "Adam beta1")
    beta2: float = setting(0.999, "Adam beta2")
    n_epochs: int = setting(100, "epochs at the initial learning rate (official: niter)")
    n_epochs_decay: int = setting(100, "epochs of linear decay to 0 (official: niter_decay)")
    batch_size: int = setting(1, "images per process and micro-batch")
    gradient_accumulation_steps: int | None = setting(
        None,
        "micro-batches per optimizer step; none: $ACCELERATE_GRADIENT_ACCUMULATION_STEPS or 1",
    )
    max_steps: int | None = setting(None, "stop after this many optimizer steps (same schedule)")
    num_workers: int = setting(0, "DataLoader worker processes")
    ema_decay: float | None = setting(None, "keep an EMA of G's weights and export it")
    # precision and speed
    mixed_precision: str | None = setting(
        None,
        "no | bf16 | fp16 (GPU); none: what `accelerate launch --mixed_precision` or the "
        "accelerate config says",
    )
    channels_last: bool = setting(False, "channels_last activations (weights keep their layout)")
    reuse_cpu_memory: bool = setting(
        True, "keep freed buffers mapped (glibc): no page faults per step"
    )
    # checkpoints, logging, samples
    checkpoint_every: int = setting(500, "optimizer steps between checkpoints (and one at the end)")
    keep_checkpoints: int = setting(3, "checkpoints kept (the newest)")
    resume: str | None = setting(None, "latest, or a checkpoint-<step> folder to resume from")
    log_every: int = setting(10, "optimizer steps between logged losses")
    num_samples: int = setting(4, "rows of the sample grid saved every epoch")
    tracker: str | None = setting(
        "tensorboard", "tensorboard | wandb | trackio | another Accelerate tracker | none"
    )
    export_best: bool = setting(False, "also export the G with the lowest validation L1")
    validation_fraction: float = setting(
        0.0, "hold out this part of the training split for validation"
    )
    push_to_hub: bool = setting(False, "upload the exported pipeline to hub_model_id")
    hub_model_id: str | None = setting(None, "Hub repo for push_to_hub, e.g. you/facades-pix2pixhd")

    def __post_init__(self) -> None:
        if isinstance(self.tracker, str) and self.tracker.lower() in ("none", "no", ""):
            self.tracker = None
        if self.model.recipe not in RECIPES:
            raise ValueError(f"model.recipe must be one of {RECIPES}, got {self.model.recipe!r}.")
        if self.model.generator not in GENERATORS:
            raise ValueError(
                f"model.generator must be one of {GENERATORS}, got {self.model.generator!r}."
            )
        if self.model.discriminator not in DISCRIMINATORS:
            raise ValueError(
                f"model.discriminator must be one of {DISCRIMINATORS}, got "
                f"{self.model.discriminator!r}."
            )
        if self.model.upsample not in UPSAMPLE_TYPES:
            raise ValueError(
                f"model.upsample must be one of {UPSAMPLE_TYPES}, got {self.model.upsample!r}."
            )
        if self.model.upsample != "transpose" and self.model.generator == "unet":
            raise ValueError(
                "model.upsample resize_conv is for the resnet, global and local generators; the "
                "unet keeps its transposed convs."
            )
        parse_policy(self.diffaugment)
        if self.lambda_diversity and not self.model.use_encoder:
            raise ValueError(
                "lambda_diversity rewards outputs that follow the style code: it needs "
                "model.use_encoder true (or set lambda_diversity 0)."
            )
        if self.mixed_precision not in (None, "no", "bf16", "fp16"):
            raise ValueError("mixed_precision must be no, bf16, fp16 or none (the launcher's).")
        if self.gradient_accumulation_steps is not None and self.gradient_accumulation_steps < 1:
            raise ValueError("gradient_accumulation_steps must be >= 1 (or none).")
        self._check_global_style_code()
        if self.export_best and self.validation_fraction <= 0:
            raise ValueError("export_best needs validation_fraction > 0 to have a validation set.")

    def _check_global_style_code(self) -> None:
        """Reject encoder setups where G provably cannot see the style code.

        For sketch / rgb inputs the encoder's code is global: a spatially constant map. The
        ResNet-style generators (resnet, global, local) normalise right after their first
        convolution, and a per-sample norm (instance norm, or batch norm over one sample)
        subtracts a constant map exactly: G would ignore the styles and E get no gradient.
        """
        m = self.model
        if not m.use_encoder or self.data.input_kind == "labels" or m.generator == "unet":
            return
        if m.norm_g == "instance" or (m.norm_g == "batch" and self.batch_size < 2):
            raise ValueError(
                f"model.use_encoder with data.input_kind {self.data.input_kind!r} gives G one "
                f"global style code (a constant map), and the {m.norm_g} norm after the first "
                f"convolution of the {m.generator!r} generator removes it exactly"
                f"{' at batch_size 1' if m.norm_g == 'batch' else ''}: G would ignore the "
                "styles. Use model.norm_g batch with batch_size >= 2 (or model.generator unet)."
            )

    @property
    def total_epochs(self) -> int:
        return self.n_epochs + self.n_epochs_decay

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: The official pix2pix / pix2pixHD option names people know -> ours.
OFFICIAL_NAMES = {
    "dataroot": "--data.source (a folder or a Hub dataset id)",
    "label_nc": "--data.label_nc (with --data.input_kind labels)",
    "no_instance": "--data.use_instance_map false",
    "netG": "--model.generator: unet | resnet | global | local (unet_256: unet with "
    "--model.num_downs 8)",
    "netD": "--model.discriminator: patchgan | multiscale",
    "num_D": "--model.num_d",
    "n_layers_D": "--model.n_layers_d",
    "norm": "--model.norm_g and --model.norm_d",
    "n_downsample_global": "--model.n_downsampling",
    "n_blocks_global": "--model.n_blocks",
    "niter": "--n_epochs (epochs at the initial learning rate)",
    "niter_decay": "--n_epochs_decay (epochs of linear decay)",
    "continue_train": "--resume latest (or --resume checkpoint-<step>)",
    "load_pretrain": "--init_from PIPELINE_OR_CHECKPOINT_DIR (or a Hub id)",
    "which_epoch": "--resume checkpoint-<step> (checkpoints are named by step), or --init_from "
    "a checkpoint-<step> folder to fine-tune",
    "loadSize": "--data.load_size",
    "fineSize": "--data.crop_size",
    "resize_or_crop": "--data.preprocess",
    "no_flip": "--data.flip false",
    "fp16": "--mixed_precision fp16 (a GPU; bf16 on a CPU), or `accelerate launch "
    "--mixed_precision fp16`",
    "batchSize": "--batch_size",
    "name": "--output_dir (the run folder)",
    "checkpoints_dir": "--output_dir (the run folder)",
    "no_lsgan": "--gan_mode vanilla",
    "no_ganFeat_loss": "--lambda_feat 0",
    "no_vgg_loss": "--lambda_vgg 0",
    "feat_num": "--model.feature_nc",
    "n_downsample_E": "--model.n_downsampling_e",
    "no_dropout": "--model.use_dropout false",
}


def _build(cls: type, values: dict[str, Any]) -> Any:
    """Instantiate a (possibly nested) dataclass from an already typed dict."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if dataclasses.is_dataclass(hints[key]) and isinstance(value, dict):
            value = _build(hints[key], value)
        kwargs[key] = value
    return cls(**kwargs)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"Cannot set {dotted}: {part} is not a section.")
    node[leaf] = value


def parse_overrides(arguments: list[str]) -> dict[str, Any]:
    """``["--model.ngf", "32", "lr=1e-4", "--flip"]`` -> ``{"model": {"ngf": "32"}, ...}``.

    Values stay strings; :func:`load_config` parses them by the field's type.
    """
    tree: dict[str, Any] = {}
    items = list(arguments)
    while items:
        token = items.pop(0)
        if token.startswith("--"):
            key = token[2:]
            if "=" in key:
                key, raw = key.split("=", 1)
            elif items and not items[0].startswith("--"):
                raw = items.pop(0)
            else:
                raw = "true"  # a bare flag
        elif "=" in token:
            key, raw = token.split("=", 1)
        else:
            raise ConfigError(f"Cannot parse override {token!r}: use --key value or key=value.")
        _set_dotted(tree, key.replace("-", "_"), raw)
    return tree


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML preset (optional) and apply command-line overrides, each typed by its field.

    Raises :class:`ConfigError` for an unknown key (with a "did you mean" hint, also for the
    official pix2pix / pix2pixHD option names) or a value of the wrong type.
    """
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            presets = sorted(p.name for p in Path("configs").glob("*.yaml"))
            raise FileNotFoundError(f"Config {path} not found. Presets in configs/: {presets}")
        raw = yaml.safe_load(path.read_text()) or {}
        try:
            values = typed_tree(TrainConfig, raw, str, OFFICIAL_NAMES)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None
    flags = typed_tree(TrainConfig, parse_overrides(overrides or []), "--{}".format, OFFICIAL_NAMES)
    values = _merge(values, flags)
    if not values.get("data", {}).get("source"):
        raise ConfigError("No data source: set data.source in the config or --data.source PATH.")
    return _build(TrainConfig, values)


def argument_parser(description: str) -> argparse.ArgumentParser:
    """``--config`` plus every config key, with its type, default and help, for ``--help``."""
    parser = argparse.ArgumentParser(
        description=description, allow_abbrev=False,
        usage="%(prog)s [--config YAML] [--KEY VALUE ...]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--config", help="YAML preset, e.g. configs/facades_pix2pix.yaml")
    add_arguments(parser, TrainConfig)
    return parser


def parse_command_line(
    parser: argparse.ArgumentParser, argv: list[str] | None = None
) -> TrainConfig:
    """The config for ``argv``; a bad key or value exits through ``parser.error``."""
    namespace, rest = parser.parse_known_args(argv)
    given = {k: v for k, v in vars(namespace).items() if k != "config"}
    overrides = [item for key, value in given.items() for item in (f"--{key}", value)]
    try:
        return load_config(namespace.config, overrides + rest)
    except (ValueError, FileNotFoundError) as error:  # ours name the problem and the fix
        parser.error(str(error))
