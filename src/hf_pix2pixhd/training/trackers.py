"""Experiment trackers through Accelerate: availability checks, where runs are written, and
sample images in each tracker's own image type."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
from accelerate import Accelerator
from accelerate.tracking import get_available_trackers
from accelerate.utils import LoggerType

#: The trackers whose image logging is wired and tested (others log scalars only).
IMAGE_TRACKERS = ("tensorboard", "wandb", "trackio")


def check_tracker(tracker: str | None) -> None:
    """Fail early and clearly: Accelerate silently logs nothing for a missing tracker."""
    if tracker is None:
        return
    known = [str(kind.value) for kind in LoggerType]
    if tracker not in known:
        raise ValueError(f"Unknown tracker {tracker!r}: choose one of {known} or none.")
    available = [str(getattr(kind, "value", kind)) for kind in get_available_trackers()]
    if tracker != "all" and tracker not in available:
        raise ValueError(
            f"tracker {tracker!r} needs the {tracker} package: pip install {tracker} (or "
            "pip install 'hf-pix2pixhd[trackers]'), or pass --tracker none to train without "
            "logging."
        )


def tracker_init_kwargs(output_dir: Path) -> dict[str, dict[str, Any]]:
    """Name the run after its folder; wandb writes its run beside the checkpoints (offline:
    ``WANDB_MODE=offline``, then ``wandb sync``) unless WANDB_DIR says where. trackio keeps
    its own store ($TRACKIO_DIR, default ~/.cache/huggingface/trackio) for ``trackio show``."""
    wandb: dict[str, Any] = {"name": output_dir.name}
    if "WANDB_DIR" not in os.environ:
        output_dir.mkdir(parents=True, exist_ok=True)
        wandb["dir"] = str(output_dir)
    return {"wandb": wandb, "trackio": {"name": output_dir.name}}


def log_image(accelerator: Accelerator, key: str, image: PIL.Image.Image, step: int) -> None:
    """Log one RGB image to every tracker that takes images (on the main process)."""
    array = np.asarray(image)  # (H, W, 3) uint8
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.log_images({key: array[None]}, step=step, dataformats="NHWC")
        elif tracker.name == "wandb":
            tracker.log_images({key: [image]}, step=step)  # a list of wandb.Image
        elif tracker.name == "trackio":
            import trackio

            tracker.log({key: trackio.Image(array)}, step=step)
