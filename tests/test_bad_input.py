"""A generated bad-input corpus: every case gives a correct result or an error naming the problem.

Covers the pipeline (Python API), ``from_pretrained``, ``convert`` and the CLI. Every file is
made here, in ``tmp_path``: truncated and zero-byte images, a text file named ``.png``, huge
dimensions in a tiny file, palette / 16-bit / CMYK / LA images, rotated JPEGs, pickles with
code. Tiny random networks keep it cheap; the bundled models check the cases first reported on
them.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F
from diffusers.pipelines import pipeline_utils

from hf_pix2pixhd import GlobalGenerator, ResnetGenerator, UNetGenerator
from hf_pix2pixhd.cli import main as cli_main
from hf_pix2pixhd.components import PipelineFolderError
from hf_pix2pixhd.convert import CheckpointError, convert_official_checkpoint
from hf_pix2pixhd.imaging import (
    MAX_PIXELS,
    MAX_PIXELS_ENV,
    ImageReadError,
    ImageSizeError,
    image_to_tensor,
    load_image,
)
from hf_pix2pixhd.labels import FACADES_PALETTE
from hf_pix2pixhd.pipeline import Pix2PixHDPipeline

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
PALETTE = [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]


# -- builders -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def label_pipe() -> Pix2PixHDPipeline:
    torch.manual_seed(0)
    translator = GlobalGenerator(in_channels=5, ngf=4, n_downsampling=2, n_blocks=1)
    return Pix2PixHDPipeline(
        translator, input_kind="labels", label_nc=4, palette=PALETTE, use_instance_map=True
    )


@pytest.fixture(scope="module")
def sketch_pipe() -> Pix2PixHDPipeline:
    torch.manual_seed(1)
    return Pix2PixHDPipeline(
        ResnetGenerator(ngf=4, n_blocks=1, norm="instance"), input_kind="sketch"
    )


@pytest.fixture(scope="module")
def facades() -> Pix2PixHDPipeline:
    return Pix2PixHDPipeline.from_pretrained(REPO / "models" / "facades", dtype=torch.float32)


@pytest.fixture(scope="module")
def shoes() -> Pix2PixHDPipeline:
    return Pix2PixHDPipeline.from_pretrained(REPO / "models" / "shoes", dtype=torch.float32)


def png_bytes(width: int, height: int, rows: np.ndarray | None, depth: int = 8, kind: int = 0):
    """A PNG written by hand: any header (``rows`` None: one row of data, a bomb's header
    over a tiny file), 16-bit RGB (which PIL cannot write)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    if rows is None:
        raw = b"\x00" * (width + 1)
    else:
        dtype = ">u2" if depth == 16 else "u1"
        raw = b"".join(b"\x00" + row.astype(dtype).tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", width, height, depth, kind, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def random_ids(height=24, width=40, seed=0, classes=4) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, (height, width))


def padded_reference(pipe: Pix2PixHDPipeline, inputs: torch.Tensor) -> torch.Tensor:
    """The translator run by hand on ``inputs`` edge-padded to its min_size, cropped back: what
    the pipeline must return for an input smaller than the network's minimum."""
    height, width = inputs.shape[-2:]
    least, multiple = pipe.translator.min_size, pipe.size_multiple
    target = [max(least, -(-side // multiple) * multiple) for side in (height, width)]
    padded = F.pad(inputs.double(), (0, target[1] - width, 0, target[0] - height), "replicate")
    with torch.inference_mode():
        out = pipe.translator.eval()(padded.float())
    return ((out[..., :height, :width].clamp(-1, 1) + 1) / 2)[0]


# -- the pixel limit ----------------------------------------------------------------------


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_a_huge_header_in_a_tiny_file_is_refused_before_decoding(tmp_path, label_pipe):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bytes(13000, 13000, None))
    assert bomb.stat().st_size < 1000
    start = time.perf_counter()
    for call in (lambda: load_image(bomb), lambda: label_pipe(str(bomb))):
        with pytest.raises(ImageSizeError) as error:
            call()
        message = str(error.value)
        assert "13000x13000" in message and f"{MAX_PIXELS:,}" in message
        assert MAX_PIXELS_ENV in message
    assert time.perf_counter() - start < 2.0  # nothing was decoded


@pytest.mark.parametrize(
    "make",
    [
        lambda: PIL.Image.new("RGB", (40, 30)),
        lambda: np.zeros((30, 40), np.int64),
        lambda: np.zeros((30, 40, 3), np.uint8),
        lambda: torch.zeros(30, 40, dtype=torch.long),
    ],
    ids=["pil", "int-array", "rgb-array", "tensor"],
)
def test_the_limit_holds_for_every_input_type_and_can_be_raised(make, label_pipe, monkeypatch):
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000")
    with pytest.raises(ImageSizeError, match=r"1,200 pixels, more than the limit of 1,000"):
        label_pipe(make())
    monkeypatch.setenv(MAX_PIXELS_ENV, "1200")
    assert label_pipe(make()).images[0].size == (40, 30)


def test_the_limit_covers_files_photos_instance_maps_and_references(tmp_path, monkeypatch):
    monkeypatch.setenv(MAX_PIXELS_ENV, "500")
    path = tmp_path / "photo.png"
    PIL.Image.new("RGB", (30, 20)).save(path)
    with pytest.raises(ImageSizeError, match=r"photo\.png is 30x20"):
        image_to_tensor(str(path), 3)
    torch.manual_seed(0)
    pipe = Pix2PixHDPipeline(
        GlobalGenerator(in_channels=5, ngf=4, n_downsampling=2, n_blocks=1),
        input_kind="labels", label_nc=4, use_instance_map=True,
    )  # fmt: skip
    with pytest.raises(ImageSizeError, match="600 pixels"):
        pipe(np.zeros((10, 10), np.int64), instance_map=np.zeros((20, 30), np.int64))


def test_pils_own_bomb_limit_follows_ours(tmp_path, monkeypatch):
    """Raising our limit above twice PIL's must let a large image through PIL's check too."""
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1000)
    big = tmp_path / "big.png"
    PIL.Image.new("L", (60, 60), 7).save(big)
    monkeypatch.setenv(MAX_PIXELS_ENV, "5000")
    assert np.asarray(load_image(big)).mean() == 7


def test_a_strip_that_padding_would_inflate_past_the_limit_is_refused(label_pipe, monkeypatch):
    monkeypatch.setenv(MAX_PIXELS_ENV, "2000")
    with pytest.raises(ImageSizeError, match="padded to the 8-pixel sides the network needs"):
        label_pipe(np.zeros((1, 1000), np.int64))


@pytest.mark.parametrize("value", ["abc", "0", "-5"])
def test_a_bad_limit_setting_is_named(value, monkeypatch):
    monkeypatch.setenv(MAX_PIXELS_ENV, value)
    with pytest.raises(ValueError, match=f"{MAX_PIXELS_ENV} must be a positive integer"):
        image_to_tensor(np.zeros((4, 4), np.uint8), 3)


# -- small, empty and extreme sizes -------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (8, 8), (3, 50), (50, 3), (1, 33), (5, 7)])
def test_small_label_maps_are_padded_and_cropped_back(label_pipe, size):
    ids = random_ids(*size, seed=sum(size))
    out = label_pipe(ids, output_type="pt").images[0]
    assert out.shape == (3, *size)
    inputs = label_pipe.prepare_inputs(ids)
    torch.testing.assert_close(out, padded_reference(label_pipe, inputs), atol=1e-6, rtol=0)


@pytest.mark.parametrize("size", [(1, 1), (8, 8), (2, 100)])
def test_small_sketches_are_padded_and_cropped_back(sketch_pipe, size):
    image = np.full((*size, 3), 255, np.uint8)
    image[0, 0] = 0
    out = sketch_pipe(image, output_type="pt").images[0]
    reference = padded_reference(sketch_pipe, sketch_pipe.prepare_inputs(image))
    torch.testing.assert_close(out, reference, atol=1e-6, rtol=0)


def test_small_inputs_in_resize_mode():
    torch.manual_seed(2)
    pipe = Pix2PixHDPipeline(
        GlobalGenerator(in_channels=3, ngf=4, n_downsampling=2, n_blocks=1), resize_mode="resize"
    )
    for size in ((1, 1), (3, 40)):
        out = pipe(np.full((*size, 3), 0.25, np.float32), output_type="np").images[0]
        assert out.shape == (*size, 3) and np.isfinite(out).all()


def test_an_extreme_aspect_ratio_runs(sketch_pipe):
    out = sketch_pipe(PIL.Image.new("RGB", (100000, 3), "white"), output_type="np").images
    assert out.shape == (1, 3, 100000, 3) and np.isfinite(out).all()
    # One white sketch all along: away from the ends the output repeats with the period of
    # the network's strides (4 px), as a fully convolutional network's must.
    middle = out[0, :, 1000:-1000]
    assert np.abs(middle[:, 4:] - middle[:, :-4]).max() < 1e-5


def test_the_reported_small_inputs_of_the_bundled_models(facades, shoes):
    """np.zeros((8, 8)) on facades and an 8x8 white sketch on shoes crashed; 1x1 too."""
    for pipe, image in (
        (facades, np.zeros((8, 8), np.int64)),
        (facades, np.zeros((1, 1), np.int64)),
        (shoes, PIL.Image.new("RGB", (8, 8), "white")),
        (shoes, PIL.Image.new("RGB", (1, 1), "white")),
        (shoes, PIL.Image.new("RGB", (2000, 3), "white")),
    ):
        out = pipe(image, output_type="pt", seed=0).images[0]
        inputs = pipe.prepare_inputs(image, style_tables=pipe.style_tables(seed=0))
        torch.testing.assert_close(out, padded_reference(pipe, inputs), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "empty",
    [
        np.zeros((0, 0), np.int64),
        np.zeros((0, 5), np.int64),
        np.zeros((5, 0, 3), np.uint8),
        torch.zeros(1, 1, 0, 4, dtype=torch.long),
        PIL.Image.new("RGB", (0, 0)),
    ],
    ids=["0x0", "0x5", "5x0x3", "tensor", "pil"],
)
def test_empty_inputs_are_refused(label_pipe, sketch_pipe, empty):
    for pipe in (label_pipe, sketch_pipe):
        with pytest.raises(ImageSizeError, match="no pixels"):
            pipe(empty)


# -- values: NaN, ranges, dtypes, shapes --------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values_are_refused_everywhere(label_pipe, sketch_pipe, bad):
    photo = np.full((16, 16, 3), 0.5, np.float32)
    photo[3, 4, 1] = bad
    for call in (
        lambda: sketch_pipe(photo),
        lambda: sketch_pipe(torch.from_numpy(photo).permute(2, 0, 1) * 2 - 1),
        lambda: sketch_pipe(photo.astype(np.float16)),
        lambda: label_pipe(np.where(np.isfinite(photo[..., 1]), 1.0, photo[..., 1])),
        lambda: label_pipe(torch.from_numpy(photo[..., 1])),
        lambda: label_pipe(np.ones((16, 16), np.int64), instance_map=photo[..., 1]),
    ):
        with pytest.raises(ValueError, match="NaN or infinite"):
            call()


def test_the_reported_nan_sketch_on_shoes_is_refused(shoes):
    image = np.full((32, 32, 3), 0.5, np.float32)
    image[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        shoes(image)
    with pytest.raises(ValueError, match="NaN or infinite"):
        shoes(np.ones((32, 32, 3), np.uint8), style=torch.full((1, 3), float("nan")))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.ones((8, 8), bool), "bool array"),
        (np.ones((8, 8), np.complex64), "dtype complex64"),
        (np.array([[object()] * 8] * 8), "dtype object"),
        (np.full((8, 8), "a"), "dtype <U1"),
        (torch.ones(8, 8, dtype=torch.bool), "bool tensor"),
        (torch.ones(8, 8, dtype=torch.complex64), "dtype torch.complex64"),
        (np.zeros(8, np.int64), "2-D id map"),
        (torch.zeros(1, 1, 1, 8, 8, dtype=torch.long), r"\(H, W\) or \(1, 1, H, W\)"),
        (np.zeros((8, 8, 2), np.int64), r"got shape \(8, 8, 2\)"),
        (np.full((8, 8), -1), "negative|found -1"),
        (np.full((8, 8), 4), r"must be in \[0, 3\]"),
        (np.full((8, 8), 2**63 - 1, np.uint64), "too large|must be in"),
        (np.full((8, 8), 1.5), "whole-number ids"),
        (np.full((8, 8, 3), 0.5), "uint8 colours"),
        (None, "Expected a path, PIL image"),
        (12, "Expected a path, PIL image"),
    ],
)
def test_bad_label_maps_are_named(label_pipe, bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        label_pipe(bad)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.full((8, 8, 3), 1.5, np.float32), r"\[0, 1\], got values in \[1.5, 1.5\]"),
        (np.full((8, 8, 3), -0.2, np.float32), r"\[0, 1\]"),
        (torch.full((3, 8, 8), 2.0), r"\[-1, 1\], got values in \[2, 2\]"),
        (torch.zeros(1, 1, 3, 8, 8), r"\(C, H, W\) or \(1, C, H, W\)"),
        (torch.zeros(2, 3, 8, 8), "as a list"),
        (torch.zeros(1, 8, 8), "3-channel images, got a tensor with 1"),
        (torch.zeros(3, 8, 8, dtype=torch.int32), "float in"),
        (np.zeros((8, 8, 3), np.int64), r"uint8 \(0..255\), uint16"),
        (np.zeros((8, 8, 2), np.uint8), r"\(H, W, 4\), got \(8, 8, 2\)"),
        (np.zeros((2, 8, 8, 3), np.uint8), r"got \(2, 8, 8, 3\)"),
        (np.zeros((3, 8, 8), np.uint8), "channels-first"),
    ],
)
def test_bad_photos_and_sketches_are_named(sketch_pipe, bad, message):
    with pytest.raises(ValueError, match=message):
        sketch_pipe(bad)


def test_photo_forms_that_are_accepted_agree(sketch_pipe):
    image = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    reference = image_to_tensor(image, 3)
    same = [
        torch.from_numpy(image).permute(2, 0, 1),  # uint8 tensor, 0..255
        image.astype(np.uint16) * 257,  # 16-bit
        image.astype(np.float64) / 255,
        PIL.Image.fromarray(image).convert("CMYK").convert("RGB"),
    ]
    for form in same:
        torch.testing.assert_close(image_to_tensor(form, 3), reference, atol=1e-6, rtol=0)
    opaque = np.concatenate([image, np.full((16, 24, 1), 255, np.uint8)], axis=2)
    torch.testing.assert_close(image_to_tensor(opaque, 3), reference)
    clear = opaque.copy()
    clear[..., 3] = 0  # transparent pixels are white paper
    assert bool((image_to_tensor(clear, 3) == 1).all())
    grey = image[..., 0]
    torch.testing.assert_close(
        image_to_tensor(grey, 3), image_to_tensor(np.stack([grey] * 3, 2), 3)
    )


# -- file formats and modes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"hello, I am text", "Could not read"),
        ("truncate", "truncated"),
        ("folder", "is a folder"),
        ("missing", "does not exist"),
    ],
)
def test_broken_files_are_named(tmp_path, label_pipe, content, message):
    path = tmp_path / "labels.png"
    if content == "truncate":
        buffer = io.BytesIO()
        PIL.Image.fromarray(random_ids(64, 64).astype(np.uint8)).save(buffer, format="PNG")
        path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    elif content == "folder":
        path.mkdir()
    elif content != "missing":
        path.write_bytes(content)
    with pytest.raises(ImageReadError, match=message):
        label_pipe(str(path))


def _quantized(ids: np.ndarray, palette: list[list[int]]) -> PIL.Image.Image:
    return PIL.Image.fromarray(np.asarray(palette, np.uint8)[ids]).quantize(16)


def test_palette_images_of_colour_labels_are_read_by_colour(tmp_path, facades):
    """Image.quantize and GIF: the indices are not class ids (0% right before the fix)."""
    ids = np.kron(random_ids(8, 8, classes=12), np.ones((4, 4), np.int64))
    quantized = _quantized(ids, FACADES_PALETTE.colors.tolist())
    assert quantized.mode == "P" and not np.array_equal(np.asarray(quantized), ids)
    quantized.save(tmp_path / "labels.gif")
    for form in (quantized, str(tmp_path / "labels.gif")):
        assert np.array_equal(facades.label_ids(form)[0, 0].numpy(), ids)


def test_training_reads_palette_labels_the_same_way(tmp_path):
    """The dataset shares the rule: a quantized colour label map gives its colours' classes."""
    from hf_pix2pixhd.data import DataConfig, build_dataset

    ids = np.kron(random_ids(4, 4, classes=12), np.ones((8, 8), np.int64))
    for sub in ("train_label", "train_img"):
        (tmp_path / sub).mkdir()
    _quantized(ids, FACADES_PALETTE.colors.tolist()).save(tmp_path / "train_label" / "a.png")
    PIL.Image.new("RGB", (32, 32)).save(tmp_path / "train_img" / "a.png")
    config = DataConfig(
        str(tmp_path), input_kind="labels", label_nc=12, palette="facades", preprocess="none",
        flip=False,
    )  # fmt: skip
    assert np.array_equal(build_dataset(config)[0]["label"][0].numpy(), ids)


def test_palette_images_in_our_palette_keep_their_indices(label_pipe):
    ids = random_ids()
    image = PIL.Image.fromarray(ids.astype(np.uint8), "P")
    image.putpalette(np.ravel(PALETTE).tolist())
    assert np.array_equal(label_pipe.label_ids(image)[0, 0].numpy(), ids)
    # Our colours in another order: the colours decide.
    shuffled = PIL.Image.fromarray((3 - ids).astype(np.uint8), "P")
    shuffled.putpalette(np.ravel(PALETTE[::-1]).tolist())
    assert np.array_equal(label_pipe.label_ids(shuffled)[0, 0].numpy(), ids)
    # A palette image in foreign colours is refused, not read as ids.
    foreign = PIL.Image.fromarray(ids.astype(np.uint8), "P")
    foreign.putpalette([17, 99, 180] * 4)
    with pytest.raises(ValueError, match="farther than"):
        label_pipe.label_ids(foreign)


def test_palette_indices_are_ids_for_a_model_without_palette():
    torch.manual_seed(0)
    pipe = Pix2PixHDPipeline(
        GlobalGenerator(in_channels=4, ngf=4, n_downsampling=2, n_blocks=1),
        input_kind="labels", label_nc=4,
    )  # fmt: skip
    ids = random_ids()
    image = PIL.Image.fromarray(ids.astype(np.uint8), "P")
    image.putpalette([200, 10, 10, 10, 200, 10, 10, 10, 200, 90, 90, 90])
    assert np.array_equal(pipe.label_ids(image)[0, 0].numpy(), ids)


def test_label_maps_in_other_modes(tmp_path, label_pipe):
    ids = random_ids()
    colours = np.asarray(PALETTE, np.uint8)[ids]
    path16 = tmp_path / "ids16.png"
    PIL.Image.fromarray(ids.astype(np.uint16)).save(path16)
    forms = {
        "16-bit": str(path16),
        "LA": PIL.Image.fromarray(ids.astype(np.uint8)).convert("LA"),
        "RGBA": PIL.Image.fromarray(colours).convert("RGBA"),
        "CMYK": PIL.Image.fromarray(colours).convert("CMYK"),
        "F": PIL.Image.fromarray(ids.astype(np.float32)),
        "(H,W,1)": ids[:, :, None],
        "int8": ids.astype(np.int8),
    }
    for name, form in forms.items():
        assert np.array_equal(label_pipe.label_ids(form)[0, 0].numpy(), ids), name
    with pytest.raises(ValueError, match="whole-number ids"):
        label_pipe.label_ids(PIL.Image.fromarray(ids.astype(np.float32) + 0.5))


def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    grey = np.full((8, 8), 128 * 257, np.uint16)
    path = tmp_path / "grey16.png"
    PIL.Image.fromarray(grey).save(path)
    assert PIL.Image.open(path).mode == "I;16"
    # Before: PIL clipped 32896 to 255, white instead of mid-grey.
    torch.testing.assert_close(
        image_to_tensor(str(path), 3), image_to_tensor(np.uint8(grey // 257), 3)
    )
    rgb16 = np.zeros((4, 6, 3), np.uint16)
    rgb16[..., 0], rgb16[..., 1] = 65535, 128 * 257
    (tmp_path / "rgb16.png").write_bytes(png_bytes(6, 4, rgb16.reshape(4, -1), 16, 2))
    expected = image_to_tensor(np.broadcast_to(np.uint8([255, 128, 0]), (4, 6, 3)).copy(), 3)
    torch.testing.assert_close(image_to_tensor(str(tmp_path / "rgb16.png"), 3), expected)
    with pytest.raises(ValueError, match=r"float F image must be in \[0, 1\]"):
        image_to_tensor(PIL.Image.fromarray(np.full((4, 4), 3.0, np.float32)), 3)


def test_exif_orientation_is_applied(tmp_path, sketch_pipe):
    stored = np.zeros((64, 128, 3), np.uint8)
    stored[:, :64] = (255, 0, 0)  # left half red as stored
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # the camera was turned: display rotated 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    PIL.Image.fromarray(stored).save(path, exif=exif, quality=95)
    upright = PIL.Image.fromarray(stored).transpose(PIL.Image.Transpose.ROTATE_270)
    for form in (str(path), PIL.Image.open(path)):
        tensor = image_to_tensor(form, 3)
        assert tensor.shape[-2:] == (128, 64)
        assert (tensor - image_to_tensor(upright, 3)).abs().mean() < 0.05  # JPEG noise only
    assert sketch_pipe(str(path)).images[0].size == (64, 128)


# -- styles -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"style": {"balcony_typo": 1}}, "balcony_typo"),
        ({"style": {99: 0}}, "99"),
        ({"style": {"window": 999}}, "999"),
        ({"style": {"window": -1}}, "-1"),
        ({"style": "randm"}, "Unknown style 'randm'"),
        ({"style": "random", "num_styles": -1}, "num_styles must be a positive int"),
        ({"style": "random", "num_styles": 0}, "num_styles must be a positive int"),
        ({"style": ["random", "default"], "style_mix": 1.5}, r"style_mix must be a number in"),
        ({"style": ["random", "default"], "style_mix": float("nan")}, "style_mix"),
        ({"style": torch.zeros(5, 3)}, r"\(num_style_classes, feature_nc\) = \(12, 3\)"),
        ({"style": 3}, "style must be"),
        ({"style": {"window": "a"}, "seed": 0}, "must be a cluster index"),
        ({"style": "random", "seed": 10**30}, "seed must fit in 64 bits"),
        ({"style": "random", "seed": "abc"}, "seed must be an integer"),
        ({"style": "random", "seed": 1.5}, "seed must be an integer"),
        ({"style": "random", "generator": 7}, "generator must be a torch.Generator"),
        ({"style_image": (np.full((8, 8, 3), np.nan), np.zeros((8, 8)))}, "NaN"),
        ({"style_image": (np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8)))}, "same size"),
        ({"style_image": np.zeros((8, 8, 3), np.uint8)}, r"\(photo, label_map\) tuple"),
    ],
)
def test_bad_styles_are_named(facades, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        facades(np.zeros((16, 16), np.int64), **kwargs)


def test_a_tiny_reference_photo_works(facades):
    table = facades.encode_style_image(np.full((1, 1, 3), 200, np.uint8), np.ones((1, 1)))
    assert table.shape == (12, 3) and torch.isfinite(table).all()


# -- from_pretrained ----------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path, label_pipe) -> Path:
    label_pipe.save_pretrained(tmp_path / "pipe")
    return tmp_path / "pipe"


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"translator": ["diffusers", "UNet2DModel"]}, "diffusers.UNet2DModel as the translator"),
        ({"translator": ["os", "system"]}, "os.system as the translator"),
        ({"translator": ["hf_pix2pixhd.models.vgg", "VGGFeatures"]}, "VGGFeatures"),
        ({"encoder": ["hf_pix2pixhd.models", "GlobalGenerator"]}, "as the encoder"),
        ({"translator": [None, None]}, "has no translator"),
        ({"translator": "GlobalGenerator"}, r"must be \[module, class\]"),
        ({"_class_name": ["pipeline", "Evil"]}, "custom pipeline code is never loaded"),
        ({"_class_name": "StableDiffusionPipeline"}, "not a Pix2PixHDPipeline"),
        ({"scheduler": ["diffusers", "DDPMScheduler"]}, "component 'scheduler'"),
    ],
)
def test_foreign_components_fail_before_anything_loads(saved, monkeypatch, changes, message):
    def never(*args, **kwargs):
        raise AssertionError("a component was loaded")

    monkeypatch.setattr(pipeline_utils, "load_sub_model", never)
    _edit_json(saved / "model_index.json", **changes)
    with pytest.raises(PipelineFolderError, match=message) as error:
        Pix2PixHDPipeline.from_pretrained(saved)
    assert "model_index.json" in str(error.value)


def test_two_class_names_are_not_mistaken_for_a_component(tmp_path):
    torch.manual_seed(0)
    pipe = Pix2PixHDPipeline(
        GlobalGenerator(in_channels=2, ngf=4, n_downsampling=2, n_blocks=1),
        input_kind="labels", label_nc=2, class_names=["sky", "ground"],
    )  # fmt: skip
    pipe.save_pretrained(tmp_path)
    assert Pix2PixHDPipeline.from_pretrained(tmp_path).config.class_names == ["sky", "ground"]


def test_the_expected_classes_are_named(saved):
    _edit_json(saved / "model_index.json", translator=["diffusers", "UNet2DModel"])
    with pytest.raises(PipelineFolderError) as error:
        Pix2PixHDPipeline.from_pretrained(saved)
    for name in ("UNetGenerator", "ResnetGenerator", "GlobalGenerator", "LocalEnhancerGenerator"):
        assert name in str(error.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ngf": 1000000}, r"about [\d,]+ parameters"),
        ({"ngf": 60000}, r"about [\d,]+ parameters"),
        ({"n_blocks": 10**6}, r"n_blocks=1000000 is out of range"),
        ({"ngf": -4}, "ngf=-4 is out of range"),
        ({"ngf": "4"}, "ngf must be an integer"),
        ({"n_downsampling": 40}, "n_downsampling=40 is out of range"),
        ({"in_channels": 0}, "in_channels=0 is out of range"),
    ],
)
def test_absurd_network_sizes_are_refused_before_allocating(saved, changes, message):
    _edit_json(saved / "translator" / "config.json", **changes)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        Pix2PixHDPipeline.from_pretrained(saved)
    assert time.perf_counter() - start < 5.0


def test_the_reported_folders_on_the_bundled_model(tmp_path, monkeypatch):
    folder = tmp_path / "shoes"
    # Weights linked, not copied; the two edited JSON files are real copies.
    shutil.copytree(REPO / "models" / "shoes", folder, copy_function=os.symlink)
    for part in ("model_index.json", "translator/config.json"):
        (folder / part).unlink()
        (folder / part).write_text((REPO / "models" / "shoes" / part).read_text())
    _edit_json(folder / "translator" / "config.json", ngf=1000000)
    with pytest.raises(ValueError, match="GlobalGenerator with this config would have about"):
        Pix2PixHDPipeline.from_pretrained(folder)
    _edit_json(folder / "model_index.json", translator=["diffusers", "UNet2DModel"])
    with pytest.raises(PipelineFolderError, match="UNet2DModel as the translator"):
        Pix2PixHDPipeline.from_pretrained(folder)


def test_a_style_bank_config_of_absurd_size_is_refused(tmp_path):
    from hf_pix2pixhd.styles import StyleBank

    with pytest.raises(ValueError, match="implausibly large"):
        StyleBank(num_classes=10**6, feature_nc=1000, max_clusters=10)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_a_non_generator_translator_is_refused_when_built_directly():
    from diffusers import UNet2DModel

    with pytest.raises(PipelineFolderError, match="translator component is a diffusers"):
        Pix2PixHDPipeline(
            UNet2DModel(
                sample_size=8,
                block_out_channels=(4,),
                norm_num_groups=4,
                down_block_types=("DownBlock2D",),
                up_block_types=("UpBlock2D",),
                layers_per_block=1,
            )
        )


# -- convert ------------------------------------------------------------------------------


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['BAD_INPUT_MARKER']}",))


def _checkpoints(folder: Path) -> dict[str, tuple[Path, str]]:
    """Bad checkpoint files and the words their error must contain."""
    state = GlobalGenerator(in_channels=4, ngf=4, n_downsampling=2, n_blocks=1).state_dict()
    unet = UNetGenerator(num_downs=5, ngf=2).state_dict()
    cases: dict[str, tuple[object, str]] = {
        "first conv 1-D": ({**state, "model.1.weight": torch.zeros(10)}, "shape (10,)"),
        "unet first conv 1-D": ({**unet, "model.model.0.weight": torch.zeros(3)}, "4-D"),
        "empty conv": ({**state, "model.1.weight": torch.zeros(0, 4, 7, 7)}, "not empty"),
        "integer weights": (
            {k: v.long() if k == "model.1.weight" else v for k, v in state.items()},
            "torch.int64",
        ),
        "nan weights": ({**state, "model.4.weight": state["model.4.weight"] * np.nan}, "NaN"),
        "other architecture": ({"fc.weight": torch.zeros(3, 4)}, "Could not recognise"),
        "empty state dict": ({}, "Could not recognise"),
        "a list": ([1, 2], "does not contain a state_dict"),
        "one conv only": ({"model.1.weight": torch.zeros(4, 3, 7, 7)}, "at least two"),
        "code": ({"model.1.weight": _Payload()}, "refused without running"),
    }
    files = {}
    for name, (obj, message) in cases.items():
        path = folder / f"{name.replace(' ', '_')}.pth"
        torch.save(obj, path)
        files[name] = (path, message)
    good = folder / "good.pth"
    torch.save(state, good)
    raw = [
        ("empty file", b"", "empty (0 bytes)"),
        ("truncated", good.read_bytes()[: good.stat().st_size // 2], "truncated"),
        ("garbage", bytes(range(1, 250)) * 8, "not a PyTorch checkpoint"),
        ("text", b"hello world\n", "not a readable PyTorch checkpoint"),
        ("raw pickle with code", pickle.dumps({"w": _Payload()}), "raw pickle"),
    ]
    for name, data, message in raw:
        path = folder / f"{name.replace(' ', '_')}.pth"
        path.write_bytes(data)
        files[name] = (path, message)
    return files


def test_bad_checkpoints_are_named_and_never_run(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    monkeypatch.setenv("BAD_INPUT_MARKER", str(marker))
    for name, (path, message) in _checkpoints(tmp_path).items():
        with pytest.raises(CheckpointError, match=re.escape(message)):
            convert_official_checkpoint(path)
        assert not marker.exists(), name


def test_cli_convert_gives_one_line_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BAD_INPUT_MARKER", str(tmp_path / "ran"))
    for name, (path, message) in _checkpoints(tmp_path).items():
        assert cli_main(["convert", str(path), "--out", str(tmp_path / "out")]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, (name, err)
        assert message in err, (name, err)
    assert not (tmp_path / "ran").exists() and not (tmp_path / "out").exists()
    good = tmp_path / "good.pth"
    assert cli_main(["convert", str(good), "--out", str(good)]) == 2  # --out is a file
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is a file" in err and err.count("\n") == 1, err


# -- the CLI ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sketch_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sketch")
    torch.manual_seed(1)
    Pix2PixHDPipeline(UNetGenerator(num_downs=5, ngf=4), input_kind="sketch").save_pretrained(
        folder
    )
    return folder


def _translate_cases(folder: Path) -> list[tuple[list[str], str]]:
    good = folder / "good.png"
    PIL.Image.new("RGB", (16, 16), "white").save(good)
    (folder / "text.png").write_text("not an image")
    (folder / "empty.png").write_bytes(b"")
    (folder / "bomb.png").write_bytes(png_bytes(20000, 20000, None))
    (folder / "no_images").mkdir()
    (folder / "no_images" / "notes.txt").write_text("hi")
    (folder / "a_file").write_text("x")
    buffer = io.BytesIO()
    PIL.Image.new("RGB", (64, 64), "red").save(buffer, format="PNG")
    (folder / "truncated.png").write_bytes(buffer.getvalue()[:60])
    (folder / "foreign").mkdir()
    index = {"_class_name": "Pix2PixHDPipeline", "translator": ["diffusers", "UNet2DModel"]}
    (folder / "foreign" / "model_index.json").write_text(json.dumps(index))
    out = str(folder / "out")
    return [
        ([str(folder / "missing.png"), "--out", out], "does not exist"),
        ([str(folder / "no_images"), "--out", out], "holds no images"),
        ([str(folder / "text.png"), "--out", out], "Could not read"),
        ([str(good), str(folder / "empty.png"), "--out", out], "empty (0 bytes)"),
        ([str(folder / "bomb.png"), "--out", out], "pixels, more than the limit"),
        ([str(folder / "truncated.png"), "--out", out], "Could not read"),
        ([str(good), "--out", str(folder / "a_file")], "is a file"),
        ([str(good), "--out", str(folder / "a_file" / "sub")], "Cannot write"),
        ([str(good), "--out", out, "--style", "random"], "feature_nc=0"),
        ([str(good), "--out", out, "--style-image", str(folder / "text.png")], "Could not read"),
        ([str(good), "--out", out, "--model", str(folder / "foreign")], "UNet2DModel"),
        (
            [str(good), "--out", out, "--model", str(folder / "missing_model")],
            "neither a valid local path",
        ),
    ]


def test_cli_translate_gives_one_line_errors(tmp_path, sketch_model, capsys):
    for args, message in _translate_cases(tmp_path):
        code = cli_main(["translate", "--model", str(sketch_model), *args])
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        # The last line is the error, whole; before it at most diffusers' loading bar.
        last = err.rstrip("\n").split("\n")[-1]
        assert last.startswith("error: ") and message in last, (args, err)
        assert "Traceback" not in err
    assert not list(tmp_path.glob("out/**/*.png"))


@pytest.mark.slow
def test_the_console_script_exits_with_one_line(tmp_path, sketch_model):
    """The installed ``hf-pix2pixhd`` entry point, in a real process (slow: it imports torch)."""
    script = Path(sys.executable).with_name("hf-pix2pixhd")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "hf_pix2pixhd.cli"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cases = _translate_cases(tmp_path)
    for args, message in cases[4:5]:  # the bomb: header check, one line, exit status 2
        result = subprocess.run(
            [*command, "translate", "--model", str(sketch_model), *args],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        last = result.stderr.rstrip("\n").split("\n")[-1]
        assert last.startswith("error: ") and message in last, result.stderr
