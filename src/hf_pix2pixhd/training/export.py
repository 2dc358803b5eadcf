"""Export a pipeline from a training checkpoint, without resuming the run (e.g. while it runs)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from .checkpoints import checkpoint_step, resolve_resume
from .config import TrainConfig
from .loop import build_pipeline, write_training_config
from .model_card import render_model_card
from .networks import build_networks

#: Accelerate's file names, in the order the Trainer prepares the networks: G, D, then E.
_GENERATOR_FILE, _ENCODER_FILE = "model.safetensors", "model_2.safetensors"


def export_checkpoint(
    config: TrainConfig, checkpoint: str | Path, out: str | Path, dtype: torch.dtype = torch.float32
) -> Path:
    """Write the generator (and encoder) of a checkpoint as a ``Pix2PixHDPipeline`` in ``out``.

    ``checkpoint`` is a ``checkpoint-<step>`` folder or ``"latest"`` (in the run's
    ``output_dir/checkpoints``). ``dtype=torch.float16`` halves the size for bundling.
    """
    folder = resolve_resume(str(checkpoint), Path(config.output_dir) / "checkpoints")
    networks = build_networks(config)
    generator = networks.generator
    generator.load_state_dict(load_file(folder / _GENERATOR_FILE))
    encoder = networks.encoder
    if encoder is not None:
        encoder.load_state_dict(load_file(folder / _ENCODER_FILE))
    pipeline = build_pipeline(config, generator.eval(), encoder.eval() if encoder else None)
    out = Path(out)
    pipeline.to(dtype).save_pretrained(out)
    write_training_config(config, out)
    step = checkpoint_step(folder)
    render_model_card(config, out, extra={"steps": step, "epochs": None})
    return out
