"""Tiny served models for the app tests: a label-map model with styles and a sketch model."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from hf_pix2pixhd import FeatureEncoder, GlobalGenerator, UNetGenerator
from hf_pix2pixhd.pipeline import Pix2PixHDPipeline
from hf_pix2pixhd.styles import StyleBank

PALETTE = [[0, 0, 170], [0, 48, 255], [255, 240, 0], [174, 0, 0]]
CLASSES = ["sky", "wall", "window", "door"]


def example_labels(size: int = 64) -> np.ndarray:
    """A facade-like layout: sky on top, wall, a grid of windows, a door."""
    ids = np.full((size, size), 1, dtype=np.int64)
    ids[: size // 8] = 0
    for top in range(size // 4, size - size // 4, size // 4):
        for left in range(size // 8, size - size // 8, size // 4):
            ids[top : top + size // 8, left : left + size // 8] = 2
    ids[size - size // 4 :, size // 2 - size // 16 : size // 2 + size // 16] = 3
    return ids


def make_label_model(folder: Path) -> Path:
    torch.manual_seed(0)
    translator = GlobalGenerator(in_channels=4 + 3, ngf=8, n_downsampling=2, n_blocks=1)
    encoder = FeatureEncoder(ngf=4, n_downsampling=2)
    bank = StyleBank(num_classes=4, feature_nc=3, max_clusters=3)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        bank.centers.copy_(torch.rand(4, 3, 3, generator=generator) * 2 - 1)
        bank.num_clusters.fill_(3)
        bank.cluster_sizes.fill_(1)
        bank.swatches.copy_(
            torch.randint(0, 256, (4, 3, 3), generator=generator, dtype=torch.uint8)
        )
    pipe = Pix2PixHDPipeline(
        translator,
        encoder=encoder,
        style_bank=bank,
        input_kind="labels",
        label_nc=4,
        palette=PALETTE,
        class_names=CLASSES,
        feature_nc=3,
    )
    pipe.save_pretrained(folder)
    (folder / "examples").mkdir()
    colours = np.asarray(PALETTE, dtype=np.uint8)[example_labels()]
    PIL.Image.fromarray(colours).save(folder / "examples" / "facade.png")
    return folder


def make_sketch_model(folder: Path) -> Path:
    torch.manual_seed(1)
    pipe = Pix2PixHDPipeline(UNetGenerator(num_downs=5, ngf=4), input_kind="sketch")
    pipe.save_pretrained(folder)
    (folder / "examples").mkdir()
    sketch = PIL.Image.new("RGB", (64, 64), "white")
    sketch.paste((0, 0, 0), (10, 30, 54, 33))
    sketch.save(folder / "examples" / "line.png")
    return folder


@contextlib.contextmanager
def gradio_temp_dir(folder: Path) -> Iterator[Path]:
    """Point Gradio's cache (uploads, results) at ``folder`` while the block runs."""
    before = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    try:
        yield folder
    finally:
        if before is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = before


def free_port() -> int:
    """A port nobody listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
