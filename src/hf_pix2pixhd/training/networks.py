"""Building the networks of a recipe, and turning a data batch into their inputs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from diffusers import ModelMixin
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError
from safetensors.torch import load_file

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
from .checkpoint_state import model_file
from .checkpoints import open_checkpoint
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


# -- fine-tuning: start from a trained model ------------------------------------------------

#: Accelerate's ``save_state`` files in a checkpoint, in the order the Trainer prepares the
#: networks: G, D, then E.
#: Network files of a training checkpoint folder, and of the Accelerate layout of earlier
#: versions (the order the Trainer prepared G, D, E).
CHECKPOINT_FILES = {role: model_file(role) for role in ("generator", "discriminator", "encoder")}
LEGACY_CHECKPOINT_FILES = {
    "generator": "model.safetensors",
    "discriminator": "model_1.safetensors",
    "encoder": "model_2.safetensors",
}
#: Pipeline folders name the networks by their role in inference.
PIPELINE_SUBFOLDERS = {"generator": "translator", "encoder": "encoder"}
_INPUT_DATA_KEYS = ("input_kind", "label_nc", "use_instance_map")
_INPUT_KEYS = "data.input_kind / data.label_nc / data.use_instance_map / model.feature_nc"
#: Constructor argument of each network -> the config key that sets it.
CONFIG_KEYS = {
    "generator": {
        "_class_name": "model.generator", "in_channels": _INPUT_KEYS, "ngf": "model.ngf",
        "num_downs": "model.num_downs", "n_blocks": "model.n_blocks",
        "n_downsampling": "model.n_downsampling", "n_blocks_global": "model.n_blocks",
        "n_downsampling_global": "model.n_downsampling",
        "n_local_enhancers": "model.n_local_enhancers", "n_blocks_local": "model.n_blocks_local",
        "norm": "model.norm_g", "use_dropout": "model.use_dropout",
    },
    "encoder": {
        "in_channels": "(3)", "out_channels": "model.feature_nc", "ngf": "model.nef",
        "n_downsampling": "model.n_downsampling_e", "norm": "model.norm_g",
    },
    "discriminator": {
        "_class_name": "model.discriminator", "in_channels": _INPUT_KEYS, "ndf": "model.ndf",
        "n_layers": "model.n_layers_d", "norm": "model.norm_d", "num_d": "model.num_d",
    },
}  # fmt: skip


class ArchitectureMismatch(ValueError):
    """``init_from`` holds networks of another shape than the config builds."""


def initialize_from(networks: Networks, config: TrainConfig) -> list[str]:
    """Copy trained weights into freshly built ``networks`` (fine-tuning); returns the roles
    loaded (``generator``, ``encoder``, ``discriminator``).

    ``config.init_from`` is a saved pipeline folder or Hub id (G and E, loaded with the components'
    ``from_pretrained``) or a training ``checkpoint-<step>`` folder (G, D and E). The
    architectures must match the config's; :class:`ArchitectureMismatch` names the config
    keys that differ.
    """
    source = str(config.init_from)
    path = Path(source)
    if path.is_dir() and not (path / "model_index.json").is_file():
        generators = (CHECKPOINT_FILES["generator"], LEGACY_CHECKPOINT_FILES["generator"])
        if not any((path / name).is_file() for name in generators):
            raise FileNotFoundError(
                f"init_from={source}: neither a pipeline folder (model_index.json) nor a "
                f"training checkpoint folder ({' or '.join(generators)})."
            )
        return _load_checkpoint(networks, path, config)
    stored = {
        role: _stored_config(source, subfolder) for role, subfolder in PIPELINE_SUBFOLDERS.items()
    }
    if (stored["encoder"] is None) != (networks.encoder is None):
        raise ArchitectureMismatch(
            f"init_from={source} {'has no' if stored['encoder'] is None else 'has an'} encoder "
            f"and this config {'builds' if networks.encoder else 'does not build'} one: set "
            f"model.use_encoder {str(stored['encoder'] is not None).lower()}."
        )
    loaded = []
    for role, subfolder in PIPELINE_SUBFOLDERS.items():
        model = getattr(networks, role)
        if model is None:
            continue
        _check_config(role, source, stored[role], model)
        trained = type(model).from_pretrained(source, subfolder=subfolder)
        model.load_state_dict(trained.state_dict())
        loaded.append(role)
    return loaded


def _stored_config(source: str, subfolder: str) -> dict | None:
    """A component's ``config.json`` from a local folder or the Hub; None if there is none."""
    if Path(source).is_dir():
        file = Path(source) / subfolder / "config.json"
        return json.loads(file.read_text()) if file.is_file() else None
    try:
        file = hf_hub_download(source, "config.json", subfolder=subfolder)
    except (OSError, EntryNotFoundError) as error:
        if subfolder == PIPELINE_SUBFOLDERS["generator"]:
            raise FileNotFoundError(
                f"init_from={source}: not a local folder, and no {subfolder}/ of a Hub model "
                f"of that id could be read ({error})."
            ) from error
        return None
    return json.loads(Path(file).read_text())


def _check_config(role: str, source: str, stored: dict, model: ModelMixin) -> None:
    built = {"_class_name": type(model).__name__, **json.loads(json.dumps(dict(model.config)))}
    differ = [
        key for key, value in built.items()
        if (key == "_class_name" or not key.startswith("_")) and stored.get(key) != value
    ]  # fmt: skip
    if differ:
        raise ArchitectureMismatch(
            f"init_from={source}: its {role} differs from the one this config builds in "
            + "; ".join(
                f"{key} {stored.get(key)!r} vs {built[key]!r} (config: "
                f"{CONFIG_KEYS[role].get(key, key)})"
                for key in differ
            )
            + ". Set those config keys as the model was trained."
        )


def _load_checkpoint(networks: Networks, folder: Path, config: TrainConfig) -> list[str]:
    # Checked like a resume (no pickles, manifest sizes and hashes); the earlier Accelerate
    # layout gives its safetensors model files alone.
    checkpoint = open_checkpoint(folder, option="--init_from", legacy_ok=True)
    names = LEGACY_CHECKPOINT_FILES if checkpoint.legacy else CHECKPOINT_FILES
    loaded = []
    for role, file in names.items():
        model = getattr(networks, role)
        if model is None or not (folder / file).is_file():
            continue
        with checkpoint.reading(file) as path:
            state = load_file(path)
        own = model.state_dict()
        wrong = sorted(
            set(state) ^ set(own)
            | {k for k in set(state) & set(own) if state[k].shape != own[k].shape}
        )
        if wrong:
            raise ArchitectureMismatch(
                f"init_from={folder}: the checkpoint's {role} does not fit the one this config "
                f"builds ({len(wrong)} tensors differ, e.g. {wrong[:3]})."
                + _config_differences(folder, config)
            )
        model.load_state_dict(state)
        loaded.append(role)
    return loaded


def _config_differences(folder: Path, config: TrainConfig) -> str:
    """The config keys in which the checkpoint's run differs, when its config is at hand."""
    run = folder.parent.parent  # <output_dir>/checkpoints/checkpoint-<step>
    for file in (folder / "training_config.json", run / "pipeline" / "training_config.json"):
        if not file.is_file():
            continue
        theirs, ours = json.loads(file.read_text()), config.to_dict()
        differ = [
            f"{section}.{key} {theirs[section].get(key)!r} vs {value!r}"
            for section, keys in (("model", ours["model"]), ("data", _INPUT_DATA_KEYS))
            for key, value in (keys.items() if section == "model" else
                               ((k, ours["data"][k]) for k in keys))
            if key not in ("load_global", "niter_fix_global")
            and theirs.get(section, {}).get(key) != value
        ]  # fmt: skip
        if differ:
            return f" Its run ({file}) differs in: {'; '.join(differ)}."
    return " Set the model.* and data.* keys as in the run that wrote it."
