"""Training configuration: YAML presets in ``configs/`` plus command-line overrides."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..data import DataConfig
from ..models.layers import UPSAMPLE_TYPES
from .diffaugment import parse_policy

RECIPES = ("pix2pix", "pix2pixhd")
GENERATORS = ("unet", "resnet", "global", "local")
DISCRIMINATORS = ("patchgan", "multiscale")


@dataclass
class ModelConfig:
    """Which networks to build, with the papers' option names where they exist."""

    recipe: str = "pix2pix"  # pix2pix: cGAN + L1; pix2pixhd: LSGAN + feature matching + VGG
    generator: str = "unet"
    ngf: int = 64
    norm_g: str = "batch"
    use_dropout: bool = True
    num_downs: int = 8  # unet
    n_blocks: int = 9  # resnet / global / the local enhancer's global trunk
    n_downsampling: int = 4  # global / local trunk
    n_local_enhancers: int = 1
    n_blocks_local: int = 3
    # ResNet-style G decoders: "transpose" (official) or "resize_conv" (no checkerboard)
    upsample: str = "transpose"
    discriminator: str = "patchgan"
    ndf: int = 64
    n_layers_d: int = 3
    norm_d: str = "batch"
    num_d: int = 2
    # pix2pixHD feature encoder, trained jointly with G; it pools per instance for label maps,
    # over the whole image for sketch / rgb inputs (global style codes)
    use_encoder: bool = False
    feature_nc: int = 3
    nef: int = 16
    n_downsampling_e: int = 4
    spectral_norm_d: bool = False  # spectral normalisation on every conv of D
    load_global: str | None = None  # a trained global G (model or pipeline dir) for the trunk
    niter_fix_global: int = 0  # epochs during which only the local enhancer trains


@dataclass
class TrainConfig:
    """Everything a run needs. ``data`` and ``model`` are nested sections in YAML."""

    data: DataConfig = field(default_factory=lambda: DataConfig(source=""))
    model: ModelConfig = field(default_factory=ModelConfig)
    output_dir: str = "outputs/run"
    seed: int = 0
    # objective
    gan_mode: str = "vanilla"
    lambda_gan: float = 1.0  # 0 gives the L1-only ablation of the pix2pix paper
    lambda_l1: float = 100.0
    lambda_feat: float = 10.0
    lambda_vgg: float = 10.0
    # mode seeking: reward outputs that differ with the style code (0: off; needs the encoder)
    lambda_diversity: float = 0.0
    diversity_cap: float = 1.0  # the rewarded output / code difference ratio is capped here
    diffaugment: str = ""  # DiffAugment for D: e.g. "color,translation,cutout" ("" = off)
    vgg_weights: str | None = None  # path or URL; None: $HF_PIX2PIXHD_VGG_WEIGHTS or the URL
    vgg_variant: str = "vgg19"
    # optimisation and schedule (epochs at constant LR, then epochs of linear decay to 0)
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    n_epochs: int = 100
    n_epochs_decay: int = 100
    batch_size: int = 1
    gradient_accumulation_steps: int = 1
    max_steps: int | None = None  # stop early (optimizer steps); the schedule is unchanged
    num_workers: int = 0
    ema_decay: float | None = None
    # precision and speed
    mixed_precision: str = "no"  # no | bf16 | fp16 (fp16 needs a GPU)
    channels_last: bool = False  # channels_last activations (weights keep their layout)
    reuse_cpu_memory: bool = True  # keep freed buffers mapped (glibc): no page faults per step
    # checkpoints, logging, samples
    checkpoint_every: int = 500  # optimizer steps; a checkpoint is also written at the end
    keep_checkpoints: int = 3
    resume: str | None = None  # "latest" or a checkpoint folder
    log_every: int = 10
    num_samples: int = 4
    tracker: str | None = "tensorboard"  # any Accelerate tracker; null or "none": no tracking
    export_best: bool = False  # also export the generator with the lowest validation L1
    validation_fraction: float = 0.0  # hold out this part of the training split for validation
    push_to_hub: bool = False
    hub_model_id: str | None = None

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
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError("mixed_precision must be no, bf16 or fp16.")
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


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    """Instantiate a (possibly nested) dataclass from a dict, naming unknown keys."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"Unknown config key(s) {unknown} in {where}; valid: {sorted(names)}.")
    kwargs = {}
    for key, value in values.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = _build(hint, value, f"{where}.{key}")
        kwargs[key] = value
    return cls(**kwargs)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"Cannot set {dotted}: {part} is not a section.")
    node[leaf] = value


def parse_overrides(arguments: list[str]) -> dict[str, Any]:
    """``["--model.ngf", "32", "lr=1e-4", "--resume", "latest"]`` -> a nested dict.

    Values are parsed as YAML, so numbers, booleans, null and lists work as expected.
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
            raise ValueError(f"Cannot parse override {token!r}: use --key value or key=value.")
        _set_dotted(tree, key.replace("-", "_"), yaml.safe_load(raw))
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
    """Read a YAML preset (optional) and apply command-line overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            presets = sorted(p.name for p in Path("configs").glob("*.yaml"))
            raise FileNotFoundError(f"Config {path} not found. Presets in configs/: {presets}")
        values = yaml.safe_load(path.read_text()) or {}
    values = _merge(values, parse_overrides(overrides or []))
    if not values.get("data", {}).get("source"):
        raise ValueError("No data source: set data.source in the config or --data.source PATH.")
    return _build(TrainConfig, values, "config")
