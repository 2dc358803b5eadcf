"""Inference pipeline: inputs of every kind, sizes, dtypes, save/load round trips, bad input."""

from __future__ import annotations

import io
import json

import numpy as np
import PIL.Image
import pytest
import torch

import hf_pix2pixhd
from hf_pix2pixhd import GlobalGenerator, UNetGenerator
from hf_pix2pixhd.imaging import ImageReadError
from hf_pix2pixhd.labels import NotAPaletteImageError
from hf_pix2pixhd.pipeline import Pix2PixHDPipeline

PALETTE = [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]


@pytest.fixture
def label_pipe() -> Pix2PixHDPipeline:
    torch.manual_seed(0)
    translator = GlobalGenerator(in_channels=5, ngf=4, n_downsampling=2, n_blocks=1)
    return Pix2PixHDPipeline(
        translator, input_kind="labels", label_nc=4, palette=PALETTE,
        class_names=["sky", "wall", "tree", "water"], use_instance_map=True,
    )  # fmt: skip


@pytest.fixture
def rgb_pipe() -> Pix2PixHDPipeline:
    torch.manual_seed(0)
    return Pix2PixHDPipeline(UNetGenerator(num_downs=5, ngf=4), input_kind="rgb")


def random_ids(height=24, width=40, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4, (height, width))


def test_round_trip_is_bit_identical(label_pipe, tmp_path):
    ids = random_ids()
    before = label_pipe(ids, output_type="pt").images
    label_pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert getattr(hf_pix2pixhd, index["_class_name"]) is Pix2PixHDPipeline
    assert index["translator"] == ["hf_pix2pixhd.models.hd_generator", "GlobalGenerator"]
    assert index["palette"] == PALETTE and index["class_names"][0] == "sky"
    assert list((tmp_path / "translator").glob("*.safetensors"))
    assert not list(tmp_path.rglob("*.bin")) and not list(tmp_path.rglob("*.pth"))
    loaded = Pix2PixHDPipeline.from_pretrained(tmp_path)
    assert loaded.palette.names == ("sky", "wall", "tree", "water")
    after = loaded(ids, output_type="pt").images
    assert torch.equal(before, after)


def test_bf16_save_loads_as_bf16_when_asked(rgb_pipe, tmp_path):
    rgb_pipe.to(torch.bfloat16).save_pretrained(tmp_path)
    loaded = Pix2PixHDPipeline.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert loaded.translator.dtype == torch.bfloat16
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = loaded(image, output_type="pt").images
    reference = rgb_pipe(image, output_type="pt").images
    assert out.dtype == torch.float32 and torch.equal(out, reference)


@pytest.mark.parametrize("size", [(1, 1), (7, 13), (33, 65), (64, 96)])
def test_any_size_is_padded_and_cropped_back(rgb_pipe, size):
    image = PIL.Image.new("RGB", (size[1], size[0]), (200, 10, 10))
    out = rgb_pipe(image).images[0]
    assert out.size == image.size


def test_resize_mode_returns_the_input_size():
    torch.manual_seed(0)
    pipe = Pix2PixHDPipeline(UNetGenerator(num_downs=5, ngf=4), resize_mode="resize")
    assert pipe(PIL.Image.new("RGB", (50, 20))).images[0].size == (50, 20)


def test_label_inputs_of_every_form_agree(label_pipe, tmp_path):
    ids = random_ids()
    colours = np.asarray(PALETTE, dtype=np.uint8)[ids]
    path = tmp_path / "labels.png"
    PIL.Image.fromarray(colours).save(path)
    forms = [
        ids,
        torch.from_numpy(ids),
        PIL.Image.fromarray(ids.astype(np.uint8)),  # mode L: ids
        colours,  # colours through the palette
        PIL.Image.fromarray(colours),
        str(path),
    ]
    outputs = [label_pipe(form, output_type="pt").images for form in forms]
    for out in outputs[1:]:
        assert torch.equal(out, outputs[0])


def test_jpeg_noisy_colour_labels_are_snapped(label_pipe):
    ids = np.kron(random_ids(6, 10), np.ones((8, 8), dtype=np.int64))
    colours = np.asarray(PALETTE, dtype=np.uint8)[ids]
    buffer = io.BytesIO()
    PIL.Image.fromarray(colours).save(buffer, format="JPEG", quality=80)
    noisy = PIL.Image.open(io.BytesIO(buffer.getvalue()))
    snapped = label_pipe.label_ids(noisy)[0, 0].numpy()
    assert (snapped == ids).mean() > 0.97


def test_batches_and_mixed_sizes(rgb_pipe):
    a = PIL.Image.new("RGB", (32, 32), (255, 0, 0))
    b = PIL.Image.new("RGB", (40, 24), (0, 0, 255))
    out = rgb_pipe([a, a, b]).images
    assert [o.size for o in out] == [(32, 32), (32, 32), (40, 24)]
    single = rgb_pipe(b).images[0]
    assert np.array_equal(np.asarray(single), np.asarray(out[2]))


def test_fast_cpu_mode_stays_close_to_fp32(label_pipe):
    """The benchmarked fast mode (channels_last + bf16 autocast) within the stated tolerance:
    max abs error <= 0.1 and mean <= 0.02 on the [-1, 1] scale (halved here: outputs in [0, 1])."""
    ids = random_ids(64, 64)
    fp32 = label_pipe(ids, output_type="pt").images
    label_pipe.translator.to(memory_format=torch.channels_last)
    fast = label_pipe(ids, output_type="pt", autocast_dtype=torch.bfloat16).images
    error = (fp32 - fast).abs()
    assert error.max() <= 0.05 and error.mean() <= 0.01
    assert error.max() > 0  # bf16 really ran


# The tolerance we state for the fast CPU modes against fp32, on the [-1, 1] output scale:
FAST_MAX_ABS, FAST_MEAN_ABS = 0.2, 0.02


def test_full_size_global_generator_fast_mode_within_tolerance():
    """The paper-size pix2pixHD G1 (36 inputs, ngf 64, 4 down, 9 blocks) in bf16 + channels_last."""
    torch.manual_seed(0)
    pipe = Pix2PixHDPipeline(GlobalGenerator(in_channels=35), input_kind="labels", label_nc=35)
    ids = np.random.default_rng(0).integers(0, 35, (4, 8)).repeat(32, 0).repeat(32, 1)
    fp32 = pipe(ids, output_type="pt").images * 2 - 1
    fast = pipe.enable_fast_cpu_inference()(ids, output_type="pt").images * 2 - 1
    assert pipe.translator.dtype == torch.bfloat16
    error = (fp32 - fast).abs()
    assert 0 < error.max() <= FAST_MAX_ABS and error.mean() <= FAST_MEAN_ABS


def test_compiled_fast_mode_agrees_with_eager(rgb_pipe):
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    fp32 = rgb_pipe(image, output_type="pt").images * 2 - 1
    eager = rgb_pipe.enable_fast_cpu_inference()(image, output_type="pt").images * 2 - 1
    compiled = rgb_pipe.enable_fast_cpu_inference(compile=True)(image, output_type="pt").images
    compiled = compiled * 2 - 1
    assert (eager - compiled).abs().max() <= FAST_MAX_ABS / 4
    assert (fp32 - compiled).abs().mean() <= FAST_MEAN_ABS


def test_instance_map_changes_boundaries(label_pipe):
    ids = np.zeros((32, 32), dtype=np.int64)
    instances = np.zeros((32, 32), dtype=np.int64)
    instances[:, 16:] = 1  # two instances of one class: a boundary appears only with the map
    without = label_pipe(ids, output_type="pt").images
    with_map = label_pipe(ids, instance_map=instances, output_type="pt").images
    assert not torch.equal(without, with_map)
    with pytest.raises(ValueError, match="differs from the label"):
        label_pipe(ids, instance_map=np.zeros((8, 8), dtype=np.int64))


def test_paper_test_mode_uses_dropout_and_leaves_running_stats_alone():
    torch.manual_seed(0)
    pipe = Pix2PixHDPipeline(UNetGenerator(num_downs=6, ngf=4, use_dropout=True))
    before = {k: v.clone() for k, v in pipe.translator.state_dict().items()}
    was_training = pipe.translator.training
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    eval_a = pipe(image, output_type="pt").images
    eval_b = pipe(image, output_type="pt").images
    paper_a = pipe(image, output_type="pt", paper_test_mode=True).images
    paper_b = pipe(image, output_type="pt", paper_test_mode=True).images
    assert torch.equal(eval_a, eval_b)
    assert not torch.equal(paper_a, paper_b)  # dropout is on
    after = pipe.translator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert pipe.translator.training == was_training  # the mode it had is restored


def test_output_types(rgb_pipe):
    image = PIL.Image.new("RGB", (32, 32), (10, 200, 10))
    as_np = rgb_pipe(image, output_type="np").images
    as_pt = rgb_pipe(image, output_type="pt").images
    assert as_np.shape == (1, 32, 32, 3) and as_pt.shape == (1, 3, 32, 32)
    assert as_np.min() >= 0 and as_np.max() <= 1
    np.testing.assert_allclose(as_np[0], as_pt[0].permute(1, 2, 0).numpy())
    with pytest.raises(ValueError, match="output_type"):
        rgb_pipe(image, output_type="latent")


def test_greyscale_and_rgba_inputs(rgb_pipe):
    grey = PIL.Image.new("L", (32, 32), 128)
    rgba = PIL.Image.new("RGBA", (32, 32), (0, 0, 0, 0))  # transparent: composited on white
    white = PIL.Image.new("RGB", (32, 32), (255, 255, 255))
    assert rgb_pipe(grey).images[0].size == (32, 32)
    assert torch.equal(
        rgb_pipe(rgba, output_type="pt").images, rgb_pipe(white, output_type="pt").images
    )


# -- bad input ----------------------------------------------------------------------------


def test_wrong_channel_count(rgb_pipe):
    with pytest.raises(ValueError, match="takes 3-channel images, got a tensor with 4"):
        rgb_pipe(torch.zeros(1, 4, 32, 32))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        rgb_pipe(torch.full((3, 32, 32), 255.0))


def test_non_palette_label_image(label_pipe):
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    with pytest.raises(NotAPaletteImageError):
        label_pipe(photo)


def test_out_of_range_ids_and_no_palette(label_pipe):
    with pytest.raises(ValueError, match=r"must be in \[0, 3\]"):
        label_pipe(np.full((16, 16), 9))
    torch.manual_seed(0)
    no_palette = Pix2PixHDPipeline(
        GlobalGenerator(in_channels=4, ngf=4, n_downsampling=2, n_blocks=1),
        input_kind="labels", label_nc=4,
    )  # fmt: skip
    with pytest.raises(ValueError, match="no palette"):
        no_palette(np.zeros((16, 16, 3), dtype=np.uint8))


def test_truncated_and_non_image_files(rgb_pipe, tmp_path):
    good = tmp_path / "good.png"
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:200])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    for path in (truncated, text):
        with pytest.raises(ImageReadError, match=path.name):
            rgb_pipe(str(path))
    with pytest.raises(ImageReadError, match="does not exist"):
        rgb_pipe(str(tmp_path / "missing.png"))


def test_inconsistent_configuration_is_rejected():
    translator = GlobalGenerator(in_channels=5, ngf=4, n_downsampling=2, n_blocks=1)
    with pytest.raises(ValueError, match="takes 5 input channels"):
        Pix2PixHDPipeline(translator, input_kind="labels", label_nc=4)
    with pytest.raises(ValueError, match="palette has 2 colours"):
        Pix2PixHDPipeline(
            translator, input_kind="labels", label_nc=4, use_instance_map=True,
            palette=[[0, 0, 0], [1, 1, 1]],
        )  # fmt: skip
    with pytest.raises(ValueError, match="input_kind"):
        Pix2PixHDPipeline(translator, input_kind="depth")
    with pytest.raises(ValueError, match="use input_kind='labels'"):
        Pix2PixHDPipeline(translator, input_kind="rgb")
