"""Atomic, step-named training checkpoints (Accelerate ``save_state``), keeping the last K.

A checkpoint is written into ``.tmp-checkpoint-<step>`` and renamed to ``checkpoint-<step>``
only once complete, so a crash (even ``kill -9``) mid-save leaves the previous ones intact.
Folders are named by step ourselves: ``load_state`` does not restore Accelerate's own counter.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from accelerate import Accelerator

_PATTERN = re.compile(r"^checkpoint-(\d+)$")
_TMP_PREFIX = ".tmp-checkpoint-"


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Complete checkpoints in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


def checkpoint_step(path: str | Path) -> int:
    match = _PATTERN.match(Path(path).name)
    if not match:
        raise ValueError(f"{path} is not a checkpoint folder (expected checkpoint-<step>).")
    return int(match.group(1))


def resolve_resume(resume: str, folder: str | Path) -> Path:
    """``"latest"`` -> the newest complete checkpoint in ``folder``; a path -> itself; a bare
    ``checkpoint-<step>`` name -> that checkpoint in ``folder``."""
    if resume == "latest":
        checkpoints = list_checkpoints(folder)
        if not checkpoints:
            raise FileNotFoundError(
                f"--resume latest: no checkpoint-<step> folder in {folder}. Start without "
                "--resume, or point --resume at a checkpoint folder."
            )
        return checkpoints[-1]
    path = Path(resume)
    if not path.is_dir() and (Path(folder) / resume).is_dir():
        path = Path(folder) / resume
    if not path.is_dir() or not _PATTERN.match(path.name):
        raise FileNotFoundError(f"--resume {resume}: not a checkpoint-<step> folder.")
    return path


def save_checkpoint(accelerator: Accelerator, folder: str | Path, step: int, keep: int) -> Path:
    """Save the full training state atomically as ``folder/checkpoint-<step>``.

    Every process must call this (Accelerate writes per-process RNG states). Afterwards only
    the newest ``keep`` checkpoints remain.
    """
    folder = Path(folder)
    final = folder / f"checkpoint-{step}"
    temporary = folder / f"{_TMP_PREFIX}{step}"
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(temporary, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _fsync_tree(temporary)
        if final.exists():  # the same step saved again (e.g. final save right after a periodic one)
            shutil.rmtree(final)
        os.replace(temporary, final)
        _fsync_dir(folder)
        for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def remove_stale_temporaries(folder: str | Path) -> None:
    """Delete half-written checkpoints left by a crash."""
    folder = Path(folder)
    if folder.is_dir():
        for path in folder.glob(f"{_TMP_PREFIX}*"):
            shutil.rmtree(path, ignore_errors=True)


def _fsync_tree(path: Path) -> None:
    for file in path.rglob("*"):
        if file.is_file():
            with file.open("rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(path)


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
