"""Convert official pix2pix / pix2pixHD checkpoints into hf_pix2pixhd models.

Supported: junyanz/pytorch-CycleGAN-and-pix2pix ``latest_net_G.pth`` (U-Net or ResNet) and
``latest_net_D.pth`` (PatchGAN); NVIDIA/pix2pixHD ``latest_net_G.pth`` (global or local),
``latest_net_D.pth`` (multi-scale, with or without ``getIntermFeat``) and ``latest_net_E.pth``;
the HugGAN sprint's pix2pix U-Net (``pytorch_model.bin`` of huggan/pytorch/pix2pix models).

Files are read with ``torch.load(weights_only=True)``: a pickle that holds anything but tensors
is refused, and nothing in it runs. The architecture is read off the keys and shapes.
"""

from __future__ import annotations

import os
import pickle
import re
import struct
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from diffusers import ModelMixin

from .models import (
    FeatureEncoder,
    GlobalGenerator,
    HugGANUNetGenerator,
    LocalEnhancerGenerator,
    MultiScaleDiscriminator,
    PatchGANDiscriminator,
    ResnetGenerator,
    UNetGenerator,
)
from .models.discriminators import patchgan_blocks

ARCHITECTURES: dict[str, type[ModelMixin]] = {
    "unet": UNetGenerator,
    "huggan_unet": HugGANUNetGenerator,
    "resnet": ResnetGenerator,
    "global": GlobalGenerator,
    "local": LocalEnhancerGenerator,
    "encoder": FeatureEncoder,
    "patchgan": PatchGANDiscriminator,
    "multiscale_d": MultiScaleDiscriminator,
}


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, is unsafe, or does not fit the network."""


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a ``.pth`` / ``.pt`` / ``.safetensors`` state_dict safely.

    Pickles are read with ``weights_only=True``. A ``module.`` prefix (DataParallel) is removed,
    and a ``{"state_dict": ...}`` wrapper is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except SafetensorError as error:
            raise CheckpointError(f"{path} is not a valid safetensors file: {error}") from error
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): the download or copy did not finish.")
    try:
        with warnings.catch_warnings():
            # Raw pickles make torch warn about their protocol before refusing them below.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        with path.open("rb") as handle:
            is_pickle = handle.read(1) == b"\x80"  # the PROTO opcode that opens a pickle
        if is_pickle and "GLOBAL" not in str(error):
            raise CheckpointError(
                f"{path} is a raw pickle, not a torch.save file, so it was refused without "
                "running any of it. Re-save it with torch.save(model.state_dict(), path) from "
                "code you trust."
            ) from error
        if "GLOBAL" not in str(error):  # the restricted unpickler met bytes it cannot parse
            raise CheckpointError(
                f"{path} is not a PyTorch checkpoint: its bytes do not parse as one. Is the "
                "file damaged, or of another format?"
            ) from error
        raise CheckpointError(
            f"{path} holds Python objects other than tensors, so it was refused without running "
            "any of it (torch.load weights_only=True). Only plain state_dicts are supported: "
            "re-save it with torch.save(model.state_dict(), path) from code you trust."
        ) from error
    # A damaged file fails deep inside the unpickler with whatever exception the cut produces.
    except (
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        OSError,
        KeyError,
        IndexError,
        ValueError,
        UnicodeDecodeError,
        struct.error,
    ) as error:
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint ({type(error).__name__}: {error}). "
            "Is the file truncated or of another format?"
        ) from error
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(
            f"{path} does not contain a state_dict (a mapping of names to tensors); got "
            f"{type(obj).__name__}."
        )
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _conv(state: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    """``state[key]``, checked to be a 4-D conv weight ``(out, in, kh, kw)``."""
    if key not in state:
        raise CheckpointError(f"The checkpoint lacks {key!r}, which this network needs.")
    weight = state[key]
    if weight.ndim != 4 or 0 in weight.shape:
        raise CheckpointError(
            f"The checkpoint's {key!r} has shape {tuple(weight.shape)}, but a conv weight is 4-D "
            "(out, in, kh, kw) and not empty: the file is damaged or not a pix2pix / pix2pixHD "
            "checkpoint."
        )
    return weight


def _indices(keys: set[str], pattern: str) -> list[int]:
    """Sorted distinct integers captured by ``pattern`` (one group) over ``keys``."""
    found = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    return sorted(found)


def _conv_weight_keys(state: Mapping[str, torch.Tensor], prefix: str) -> list[str]:
    """Top-level 4-D ``{prefix}N.weight`` keys of a Sequential, in layer order."""
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)\.weight$")
    found = [(int(m.group(1)), k) for k in state if (m := pattern.match(k))]
    return [k for _, k in sorted(found) if state[k].ndim == 4]


def _norm_of(keys: set[str], bias_key: str) -> str:
    if any(k.endswith("running_mean") for k in keys):
        return "batch"
    return "instance" if bias_key in keys else "none"


def detect_architecture(state: Mapping[str, torch.Tensor]) -> tuple[str, dict]:
    """Return ``(architecture name, constructor config)`` read off a state_dict's keys/shapes.

    Things that leave no trace in the weights (dropout in the U-Net, a Sigmoid in D) keep the
    official training defaults; override them with :func:`convert_official_checkpoint`.
    """
    keys = set(state)
    if "down1.model.0.weight" in keys and "final.2.weight" in keys:
        return "huggan_unet", _huggan_unet_config(state)
    if _indices(keys, r"^scale(\d+)_layer\d+\.") or _indices(keys, r"^layer(\d+)\.\d+\."):
        return "multiscale_d", _multiscale_config(state)
    if "model.model.0.weight" in keys:
        first = _conv(state, "model.model.0.weight")
        num_downs, prefix = 1, "model.model.1"
        while f"{prefix}.model.1.weight" in keys:
            num_downs, prefix = num_downs + 1, f"{prefix}.model.3"
        return "unet", {
            "in_channels": first.shape[1],
            "out_channels": _conv(state, "model.model.3.weight").shape[1],
            "num_downs": num_downs,
            "ngf": first.shape[0],
            "norm": _norm_of(keys, "model.model.0.bias"),
        }
    if enhancers := _indices(keys, r"^model(\d+)_1\."):
        return "local", _local_config(state, len(enhancers))
    if "model.0.weight" in keys and _conv(state, "model.0.weight").shape[-1] == 4:
        first = state["model.0.weight"]
        return "patchgan", {
            "in_channels": first.shape[1],
            "ndf": first.shape[0],
            "n_layers": len(_conv_weight_keys(state, "model.")) - 2,
            "norm": _norm_of(keys, "model.2.bias"),
        }
    if "model.1.weight" in keys and _conv(state, "model.1.weight").shape[-1] == 7:
        return _resnet_like(state)
    raise CheckpointError(
        "Could not recognise this state_dict as an official pix2pix / pix2pixHD network. First "
        f"keys: {sorted(keys)[:6]}. Pass arch= (one of {', '.join(ARCHITECTURES)}) if you know it."
    )


def _huggan_unet_config(state: Mapping[str, torch.Tensor]) -> dict:
    """HugGAN pix2pix ``GeneratorUNet``: ``down{i}.model.0`` convs, ``final.2`` the head conv."""
    first = state["down1.model.0.weight"]
    return {
        "in_channels": first.shape[1],
        "out_channels": state["final.2.weight"].shape[0],
        "num_downs": len(_indices(set(state), r"^down(\d+)\.model\.0\.weight$")),
        "ngf": first.shape[0],
    }


def _resnet_like(state: Mapping[str, torch.Tensor]) -> tuple[str, dict]:
    keys = set(state)
    convs = _conv_weight_keys(state, "model.")
    if len(convs) < 2:
        raise CheckpointError(
            f"The checkpoint has {len(convs)} top-level conv weight(s) (model.N.weight); a "
            "ResNet-style generator or encoder has at least two (first and last)."
        )
    first, last = state[convs[0]], state[convs[-1]]
    n_downsampling = (len(convs) - 2) // 2
    blocks = _indices(keys, r"^model\.(\d+)\.conv_block\.")
    use_bias = "model.1.bias" in keys
    use_dropout = any(".conv_block.6.weight" in k for k in keys)
    norm = _norm_of(keys, "model.1.bias")
    common = {"in_channels": first.shape[1], "out_channels": last.shape[0], "ngf": first.shape[0]}
    if not blocks:
        return "encoder", {**common, "n_downsampling": n_downsampling, "norm": norm}
    # Official pix2pix ResNet: 2 downsamplings, biases only with InstanceNorm. With InstanceNorm,
    # no dropout and 2 downsamplings it is the same network as a pix2pixHD global G.
    if n_downsampling == 2 and (use_dropout or (use_bias == (norm == "instance"))):
        return "resnet", {
            **common,
            "n_blocks": len(blocks),
            "norm": norm,
            "use_dropout": use_dropout,
        }
    return "global", {
        **common,
        "n_downsampling": n_downsampling,
        "n_blocks": len(blocks),
        "norm": "batch" if norm == "batch" else "instance",
    }


def _local_config(state: Mapping[str, torch.Tensor], n_local: int) -> dict:
    keys = set(state)
    trunk_convs = _conv_weight_keys(state, "model.")
    finals = _conv_weight_keys(state, f"model{n_local}_2.")
    if not trunk_convs or not finals:
        raise CheckpointError(
            "The checkpoint has local-enhancer keys (model1_1.*) but no global trunk convs "
            f"(model.N.weight) or no final conv (model{n_local}_2.N.weight): it is incomplete."
        )
    first = state[trunk_convs[0]]
    final = state[finals[-1]]
    return {
        "in_channels": first.shape[1],
        "out_channels": final.shape[0],
        "ngf": first.shape[0] // 2**n_local,
        "n_downsampling_global": (len(trunk_convs) - 1) // 2,
        "n_blocks_global": len(_indices(keys, r"^model\.(\d+)\.conv_block\.")),
        "n_local_enhancers": n_local,
        "n_blocks_local": len(_indices(keys, r"^model1_2\.(\d+)\.conv_block\.")),
        "norm": "batch" if any(k.endswith("running_mean") for k in keys) else "instance",
    }


def _multiscale_config(state: Mapping[str, torch.Tensor]) -> dict:
    keys = set(state)
    if scales := _indices(keys, r"^scale(\d+)_layer\d+\."):
        first = _conv(state, "scale0_layer0.0.weight")
        n_layers = len(_indices(keys, r"^scale0_layer(\d+)\.")) - 2
    else:
        scales = _indices(keys, r"^layer(\d+)\.\d+\.")
        first = _conv(state, "layer0.0.weight")
        n_layers = len(_conv_weight_keys(state, "layer0.")) - 2
    return {
        "in_channels": first.shape[1],
        "ndf": first.shape[0],
        "n_layers": n_layers,
        "norm": "batch" if any(k.endswith("running_mean") for k in keys) else "instance",
        "num_d": len(scales),
    }


def _regroup_multiscale_keys(state: Mapping[str, torch.Tensor], config: dict) -> dict:
    """Map the non-``getIntermFeat`` layout (``layer{i}.{k}``) onto ``scale{i}_layer{j}.{m}``."""
    if not any(re.match(r"^layer\d+\.", k) for k in state):
        return dict(state)
    blocks = patchgan_blocks(
        config["in_channels"], config["ndf"], config["n_layers"], config["norm"], True, 2, 512
    )
    flat_to_block = {}
    position = 0
    for j, block in enumerate(blocks):
        for m in range(len(block)):
            flat_to_block[position] = (j, m)
            position += 1
    regrouped = {}
    for key, value in state.items():
        match = re.match(r"^layer(\d+)\.(\d+)\.(.+)$", key)
        if not match:
            regrouped[key] = value
            continue
        j, m = flat_to_block[int(match.group(2))]
        regrouped[f"scale{match.group(1)}_layer{j}.{m}.{match.group(3)}"] = value
    return regrouped


def load_official_weights(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Strictly load ``state`` into ``model``; on a mismatch, name the keys and shapes."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    for key, value in state.items():
        if key in expected and value.is_floating_point() != expected[key].is_floating_point():
            raise CheckpointError(
                f"The checkpoint's {key!r} is {value.dtype}, but the model's is "
                f"{expected[key].dtype}: the file is damaged or of another network."
            )
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {missing[:8]}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {unexpected[:8]}")
        if wrong_shape:
            parts.append(f"shape mismatches ({len(wrong_shape)}): {wrong_shape[:4]}")
        raise CheckpointError(
            f"The checkpoint does not fit {type(model).__name__}({dict(model.config)}): "
            + "; ".join(parts)
            + ". Check the architecture options (arch=, ngf, n_blocks, norm, ...)."
        )
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(
                f"The checkpoint's {key!r} holds NaN or infinite values: the training run that "
                "wrote it diverged, or the file is damaged. Use an earlier checkpoint."
            )
    model.load_state_dict(state, strict=True)


def convert_official_checkpoint(
    checkpoint: str | os.PathLike | Mapping[str, torch.Tensor],
    arch: str | None = None,
    **config_overrides,
) -> ModelMixin:
    """Build the matching hf_pix2pixhd model and load an official checkpoint into it.

    Args:
        checkpoint: a path to ``latest_net_G.pth`` / ``_D`` / ``_E`` (or a state_dict).
        arch: force the architecture (see ``ARCHITECTURES``) instead of detecting it.
        **config_overrides: constructor options the weights cannot reveal, e.g.
            ``use_dropout=False`` for a U-Net trained with ``--no_dropout``.

    Returns:
        The model in eval mode, fp32, with the official ``forward`` inputs and outputs.
    """
    state = checkpoint if isinstance(checkpoint, Mapping) else load_state_dict_file(checkpoint)
    detected, config = detect_architecture(state)
    if arch is not None:
        if arch not in ARCHITECTURES:
            raise ValueError(f"Unknown arch {arch!r}: choose one of {', '.join(ARCHITECTURES)}.")
        if arch != detected:
            config = _translate_config(detected, arch, config)
        detected = arch
    config.update(config_overrides)
    model_class = ARCHITECTURES[detected]
    try:
        model = model_class(**config)
    except TypeError as error:
        raise ValueError(f"Invalid options for {model_class.__name__}: {error}") from error
    except ValueError as error:
        raise CheckpointError(
            f"The checkpoint's weights describe a {model_class.__name__} that cannot be built "
            f"({error}); the file is damaged or not a pix2pix / pix2pixHD checkpoint."
        ) from error
    if detected == "multiscale_d":
        state = _regroup_multiscale_keys(state, config)
    load_official_weights(model, state)
    return model.eval()


def _translate_config(detected: str, arch: str, config: dict) -> dict:
    """Carry a detected ResNet-family config over to a forced, equivalent architecture."""
    family = {"resnet", "global", "encoder"}
    if detected not in family or arch not in family:
        raise CheckpointError(
            f"The weights look like {detected!r}; they cannot be read as {arch!r}."
        )
    common = {k: config[k] for k in ("in_channels", "out_channels", "ngf")}
    n_down = config.get("n_downsampling", 2)
    if arch == "resnet":
        return {**common, "n_blocks": config.get("n_blocks", 0), "norm": config["norm"]}
    if arch == "global":
        return {**common, "n_downsampling": n_down, "n_blocks": config.get("n_blocks", 0)}
    return {**common, "n_downsampling": n_down, "norm": config["norm"]}
