"""What a training checkpoint holds, in files that cannot run code when opened.

- ``<model>.safetensors``: each network's ``state_dict`` (``generator``, ``discriminator``,
  ``encoder``);
- ``optimizer_<name>.safetensors``: an optimizer's tensors (``state.<param>.<key>``), with its
  param groups and non-tensor state in ``training_state.json``;
- ``ema_generator.safetensors``: the EMA shadow weights of G, keyed by G's parameter names;
- ``training_state.json``: progress counters, LR schedulers, EMA settings, the gradient scaler,
  Accelerate's accumulation step counter;
- ``rng_state_<rank>.json``: each process's Python, NumPy and torch RNG states.

Every value read back is checked against what the running trainer holds (keys, types, sizes)
before it is applied: the files are data, never code.
"""

from __future__ import annotations

import json
import math
import random
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file, save_model

from .checkpoints import Checkpoint, CheckpointMismatch

STATE_FILE = "training_state.json"
EMA_FILE = "ema_generator.safetensors"


class Stateful(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> Any: ...


@dataclass
class TrainingParts:
    """The live objects a checkpoint saves and restores. ``models`` are unwrapped (no DDP);
    ``ema`` (a diffusers ``EMAModel``) tracks ``models["generator"].parameters()``."""

    models: dict[str, torch.nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Stateful]
    counters: Stateful  # TrainerState: JSON-able scalars
    ema: Any = None


def model_file(name: str) -> str:
    return f"{name}.safetensors"


def rng_file(rank: int) -> str:
    return f"rng_state_{rank}.json"


# -- writing -----------------------------------------------------------------------------------


def write_training_state(folder: Path, accelerator: Accelerator, parts: TrainingParts) -> None:
    """Write ``parts`` into ``folder``; every process calls this (each writes its RNG state,
    the main process everything else)."""
    _write_json(folder / rng_file(accelerator.process_index), capture_rng_state())
    if not accelerator.is_main_process:
        return
    for name, model in parts.models.items():
        save_model(model, str(folder / model_file(name)), force_contiguous=True)
    optimizers = {}
    for name, optimizer in parts.optimizers.items():
        tensors, optimizers[name] = _split_optimizer_state(optimizer.state_dict())
        save_file(tensors, str(folder / f"optimizer_{name}.safetensors"))
    ema = None
    if parts.ema is not None:
        names = [n for n, _ in parts.models["generator"].named_parameters()]
        shadow = dict(zip(names, parts.ema.shadow_params, strict=True))
        save_file({k: v.detach().contiguous() for k, v in shadow.items()}, str(folder / EMA_FILE))
        ema = {k: v for k, v in parts.ema.state_dict().items() if k != "shadow_params"}
    scaler = accelerator.scaler.state_dict() if accelerator.scaler is not None else None
    state = {
        "counters": _finite_or_none(parts.counters.state_dict()),
        "schedulers": {name: s.state_dict() for name, s in parts.schedulers.items()},
        "optimizers": optimizers,
        "ema": ema,
        "scaler": scaler,
        "accelerator_step": accelerator.step,
        "num_processes": accelerator.num_processes,
    }
    _write_json(folder / STATE_FILE, state)


def _split_optimizer_state(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, rest = {}, {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"state.{index}.{key}"] = value.detach().contiguous()
            else:
                rest.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "state": rest}


def capture_rng_state() -> dict:
    """This process's RNG states as JSON-able values."""
    version, internal, gauss_next = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
        "numpy": {"kind": kind, "keys": keys.tolist(), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state().tolist(),
    }  # fmt: skip
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


# -- reading -----------------------------------------------------------------------------------


def read_training_state(
    checkpoint: Checkpoint, accelerator: Accelerator, parts: TrainingParts
) -> None:
    """Restore ``parts``, the accumulation counter and this process's RNG states from a
    checkpoint that passed ``open_checkpoint``. Every process checks every file (RNG files of
    all ranks included) before applying anything, so all of them fail together, with a
    message naming the file, instead of some waiting forever for the others."""
    with checkpoint.reading(STATE_FILE) as file:
        state = json.loads(file.read_text())
        _expect(state, dict, "the top level")
        for key in ("counters", "schedulers", "optimizers", "accelerator_step", "num_processes"):
            if key not in state:
                raise ValueError(f"no {key!r} entry")
    rng = None
    if state["num_processes"] == accelerator.num_processes:
        states = [_parse_rng(checkpoint, rank) for rank in range(accelerator.num_processes)]
        rng = states[accelerator.process_index]
    else:
        warnings.warn(
            f"{checkpoint.path} was written by {state['num_processes']} process(es) and is "
            f"resumed by {accelerator.num_processes}: the data order and random states differ "
            "from an uninterrupted run.",
            stacklevel=2,
        )
    # Straight onto the training device; safetensors names the CPU "cpu" (DDP on CPU: "cpu:0").
    device = "cpu" if accelerator.device.type == "cpu" else str(accelerator.device)
    weights = {}
    for name, model in parts.models.items():
        with checkpoint.reading(model_file(name)) as file:
            weights[name] = load_file(file, device=device)
            _check_tensors(weights[name], model.state_dict(), "the network")
    optimizers = {}
    for name, optimizer in parts.optimizers.items():
        filename = f"optimizer_{name}.safetensors"
        with checkpoint.reading(filename) as file:
            optimizers[name] = _join_optimizer_state(
                load_file(file, device=device), state["optimizers"].get(name), optimizer
            )
    schedulers = {}
    with checkpoint.reading(STATE_FILE):
        for name, scheduler in parts.schedulers.items():
            schedulers[name] = _conform(
                state["schedulers"].get(name), scheduler.state_dict(), f"scheduler {name}"
            )
            if any(fn is not None for fn in schedulers[name].get("lr_lambdas", [])):
                raise ValueError(f"scheduler {name}: lr_lambdas must all be null")
        counters = _inf_for_none(state["counters"])
        _check_like(counters, parts.counters.state_dict(), "counters")
        if accelerator.scaler is not None:
            _check_like(state.get("scaler"), accelerator.scaler.state_dict(), "scaler")
        _expect(state["accelerator_step"], int, "accelerator_step")
    shadow = None
    if parts.ema is not None and state.get("ema") is not None:
        generator = parts.models["generator"]
        with checkpoint.reading(EMA_FILE) as file:
            ema_weights = load_file(file, device=device)
            _check_tensors(ema_weights, dict(generator.named_parameters()), "G's parameters")
        shadow = [ema_weights[n] for n, _ in generator.named_parameters()]

    # Everything was read and checked: apply.
    for name, model in parts.models.items():
        model.load_state_dict(weights[name])
    for name, optimizer in parts.optimizers.items():
        with checkpoint.reading(f"optimizer_{name}.safetensors"):
            optimizer.load_state_dict(optimizers[name])
    for name, scheduler in parts.schedulers.items():
        scheduler.load_state_dict(schedulers[name])
    parts.counters.load_state_dict(counters)
    if shadow is not None:
        with checkpoint.reading(STATE_FILE):
            parts.ema.load_state_dict({**state["ema"], "shadow_params": shadow})
    elif parts.ema is not None:  # EMA switched on at this resume: it starts from the weights
        warnings.warn(
            f"{checkpoint.path} holds no EMA of G (the run had no ema_decay): the EMA starts "
            "from the resumed weights.",
            stacklevel=2,
        )
        parts.ema.shadow_params = [
            p.detach().clone() for p in parts.models["generator"].parameters()
        ]
    if accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(state["scaler"])
    accelerator.step = state["accelerator_step"]
    if rng is not None:
        _apply_rng(rng)


def read_generator_weights(
    checkpoint: Checkpoint, generator: torch.nn.Module, encoder: torch.nn.Module | None
) -> bool:
    """Load G (with its EMA weights where the checkpoint has them, as the Trainer's own export
    does) and E from a checkpoint. Returns whether EMA weights were used."""
    generator_file, encoder_file = model_file("generator"), model_file("encoder")
    if checkpoint.legacy:  # Accelerate's names, in the order the Trainer prepared G, D, E
        generator_file, encoder_file = "model.safetensors", "model_2.safetensors"
    with checkpoint.reading(generator_file) as file:
        weights = load_file(file)
        _check_tensors(weights, generator.state_dict(), "the generator of this config")
        generator.load_state_dict(weights)
    if encoder is not None:
        with checkpoint.reading(encoder_file) as file:
            weights = load_file(file)
            _check_tensors(weights, encoder.state_dict(), "the encoder of this config")
            encoder.load_state_dict(weights)
    if checkpoint.legacy:
        return False
    with checkpoint.reading(STATE_FILE) as file:
        has_ema = json.loads(file.read_text()).get("ema") is not None
    if not has_ema:
        return False
    with checkpoint.reading(EMA_FILE) as file:
        shadow = load_file(file)
        parameters = dict(generator.named_parameters())
        _check_tensors(shadow, parameters, "the generator's parameters")
        with torch.no_grad():
            for name, parameter in parameters.items():
                parameter.copy_(shadow[name])
    return True


def _join_optimizer_state(tensors: dict, rest: Any, optimizer: torch.optim.Optimizer) -> dict:
    _expect(rest, dict, f"its part in {STATE_FILE}")
    current = optimizer.state_dict()
    groups = rest.get("param_groups")
    _expect(groups, list, "param_groups")
    if len(groups) != len(current["param_groups"]):
        raise ValueError(
            f"{len(groups)} param groups where the optimizer has {len(current['param_groups'])}"
        )
    live_groups = current["param_groups"]
    groups = [_conform(g, live, "param group") for g, live in zip(groups, live_groups, strict=True)]
    for saved, live in zip(groups, live_groups, strict=True):
        if saved["params"] != live["params"]:
            raise ValueError("its param groups list other parameters than the optimizer's")
        for key, value in live.items():  # JSON turned tuples (betas) into lists
            if isinstance(value, tuple):
                saved[key] = tuple(saved[key])
    n_params = sum(len(g["params"]) for g in current["param_groups"])
    state: dict[int, dict] = {}
    for key, tensor in tensors.items():
        _, index, name = key.split(".", 2)
        if not 0 <= int(index) < n_params:
            raise ValueError(f"tensor {key!r} for a parameter the optimizer does not have")
        state.setdefault(int(index), {})[name] = tensor
    for index, entries in rest.get("state", {}).items():
        _expect(entries, dict, f"state {index}")
        for name, value in entries.items():
            _expect(value, int | float | bool | None, f"state {index}.{name}")
            state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": groups}


def _parse_rng(checkpoint: Checkpoint, rank: int) -> dict:
    with checkpoint.reading(rng_file(rank)) as file:
        state = json.loads(file.read_text())
        _expect(state, dict, "the top level")
        python, numpy_state = state["python"], state["numpy"]
        internal = tuple(python["state"])
        if python["version"] != 3 or len(internal) != 625 or not _all_ints(internal, 2**32):
            raise ValueError("the Python RNG state is not 625 32-bit integers")
        if python["gauss_next"] is not None:
            _expect(python["gauss_next"], float, "gauss_next")
        python_tuple = (3, internal, python["gauss_next"])
        keys = numpy_state["keys"]
        if numpy_state["kind"] != "MT19937" or len(keys) != 624 or not _all_ints(keys, 2**32):
            raise ValueError("the NumPy RNG state is not 624 32-bit integers")
        numpy_tuple = (
            "MT19937", np.asarray(keys, dtype=np.uint32), _int(numpy_state["pos"], 625),
            _int(numpy_state["has_gauss"], 2), float(numpy_state["cached_gaussian"]),
        )  # fmt: skip
        torch_state = state["torch"]
        if len(torch_state) != torch.get_rng_state().numel() or not _all_ints(torch_state, 256):
            raise ValueError("the torch RNG state has the wrong size")
        torch_tensor = torch.tensor(torch_state, dtype=torch.uint8)
        # Throwaway generators check what the real ones will accept.
        random.Random().setstate(python_tuple)
        np.random.RandomState().set_state(numpy_tuple)
        torch.Generator().set_state(torch_tensor)
        cuda = None
        if torch.cuda.is_available() and "cuda" in state:
            cuda = [torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]]
            if len(cuda) != torch.cuda.device_count():
                cuda = None  # other hardware: the CUDA generators start from the seed
    return {"python": python_tuple, "numpy": numpy_tuple, "torch": torch_tensor, "cuda": cuda}


def _apply_rng(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None:
        torch.cuda.set_rng_state_all(state["cuda"])


# -- checks ------------------------------------------------------------------------------------


def _check_tensors(saved: Mapping[str, torch.Tensor], live: Mapping, what: str) -> None:
    """The same keys, shapes and dtypes as ``live``: a file from another config or a damaged
    one is caught here, with the difference named."""
    missing, unexpected = sorted(set(live) - set(saved)), sorted(set(saved) - set(live))
    if missing or unexpected:
        raise CheckpointMismatch(
            f"its tensors are not those of {what} (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]})"
        )
    for key, tensor in saved.items():
        if tensor.shape != live[key].shape or tensor.dtype != live[key].dtype:
            raise CheckpointMismatch(
                f"its tensor {key!r} is {tuple(tensor.shape)} {tensor.dtype} where {what} has "
                f"{tuple(live[key].shape)} {live[key].dtype}"
            )


def _check_like(saved: Any, live: Mapping, what: str) -> None:
    """``saved`` (from JSON) has exactly ``live``'s keys, each value of the same kind."""
    _expect(saved, dict, what)
    if set(saved) != set(live):
        raise ValueError(f"{what} has keys {sorted(saved)}, expected {sorted(live)}")
    for key, value in live.items():
        if not _same_kind(saved[key], value):
            raise ValueError(f"{what}: {key} is {saved[key]!r}, expected a value like {value!r}")


def _conform(saved: Any, live: Mapping, what: str) -> dict:
    """``saved`` (from JSON) restricted to ``live``'s keys, each checked as in
    :func:`_check_like`; a key it lacks keeps the live value. Other torch versions add or drop
    settings, and an unknown key must never become an attribute (``load_state_dict`` of an LR
    scheduler sets every key it is given)."""
    _expect(saved, dict, what)
    shared = {k: saved[k] for k in live if k in saved}
    if not shared:
        raise ValueError(f"{what} has none of the keys {sorted(live)}")
    _check_like(shared, {k: live[k] for k in shared}, what)
    return {**live, **shared}


def _same_kind(saved: Any, live: Any) -> bool:
    """JSON's view of ``live``'s type: tuples come back as lists, floats may come back as
    ints; a ``None`` setting (e.g. Adam's ``foreach``) may hold any scalar."""
    if live is None:
        return saved is None or isinstance(saved, bool | int | float | str)
    if isinstance(live, bool) or isinstance(saved, bool):
        return isinstance(live, bool) and isinstance(saved, bool)
    if isinstance(live, float):
        return isinstance(saved, int | float)
    if isinstance(live, list | tuple):
        return (
            isinstance(saved, list)
            and len(saved) == len(live)
            and all(_same_kind(s, v) for s, v in zip(saved, live, strict=True))
        )
    return type(saved) is type(live)


def _expect(value: Any, kind: Any, what: str) -> None:
    if not isinstance(value, kind):
        raise ValueError(f"{what} is {type(value).__name__}, not {kind}")


def _int(value: Any, bound: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < bound:
        raise ValueError(f"{value!r} is not an integer in [0, {bound})")
    return value


def _all_ints(values: Any, bound: int) -> bool:
    return isinstance(values, list | tuple) and all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v < bound for v in values
    )


def _finite_or_none(state: dict) -> dict:
    """JSON has no infinity: ``best_validation = inf`` (no validation yet) is stored as null."""
    return {k: None if isinstance(v, float) and math.isinf(v) else v for k, v in state.items()}


def _inf_for_none(state: Any) -> Any:
    if not isinstance(state, dict):
        return state
    return {k: math.inf if v is None else v for k, v in state.items()}


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, allow_nan=False))


__all__ = [
    "TrainingParts",
    "read_generator_weights",
    "read_training_state",
    "write_training_state",
]
