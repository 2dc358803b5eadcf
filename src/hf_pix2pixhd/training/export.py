"""Export a pipeline from a training checkpoint, without resuming the run (e.g. while it runs)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from .checkpoint_state import read_generator_weights
from .checkpoints import CheckpointError, checkpoint_step, open_checkpoint, resolve_resume
from .config import TrainConfig
from .loop import build_pipeline, write_training_config
from .model_card import render_model_card
from .networks import build_networks


def export_checkpoint(
    config: TrainConfig, checkpoint: str | Path, out: str | Path, dtype: torch.dtype = torch.float32
) -> Path:
    """Write the generator (and encoder) of a checkpoint as a ``Pix2PixHDPipeline`` in ``out``.

    ``checkpoint`` is a ``checkpoint-<step>`` folder or ``"latest"`` (in the run's
    ``output_dir/checkpoints``). Where the run kept an EMA of G (``ema_decay``), the EMA
    weights are exported, as the Trainer's own export does. A checkpoint in the Accelerate
    layout of earlier versions exports from its safetensors model files alone (its pickled
    files are never opened). ``dtype=torch.float16`` halves the size for bundling.
    """
    folder = resolve_resume(str(checkpoint), Path(config.output_dir) / "checkpoints")
    opened = open_checkpoint(folder, option="--checkpoint", legacy_ok=True)
    if opened.legacy and config.ema_decay:
        raise CheckpointError(
            f"Checkpoint {folder} is in the Accelerate layout of earlier versions, where the EMA "
            "weights of G are pickled (custom_checkpoint_*.pkl); opening a pickle can run "
            "arbitrary code, so they are not read. Export its raw weights by leaving out "
            "ema_decay (--ema_decay null), or export a checkpoint written by this version."
        )
    networks = build_networks(config)
    generator, encoder = networks.generator, networks.encoder
    used_ema = read_generator_weights(opened, generator, encoder)
    if config.ema_decay and not used_ema:
        warnings.warn(
            f"Checkpoint {folder} holds no EMA of G although the config sets ema_decay (the run "
            "had none then): exporting G's own weights.",
            stacklevel=2,
        )
    pipeline = build_pipeline(config, generator.eval(), encoder.eval() if encoder else None)
    out = Path(out)
    pipeline.to(dtype).save_pretrained(out)
    write_training_config(config, out)
    step = checkpoint_step(folder)
    render_model_card(config, out, extra={"steps": step, "epochs": None})
    return out
