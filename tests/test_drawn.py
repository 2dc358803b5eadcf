"""Inputs as people draw them: redrawn training sketches and label maps, stroke normalisation,
and the resize-conv decoder against checkerboard artefacts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from hf_pix2pixhd.data import DataConfig, DataError, build_dataset
from hf_pix2pixhd.drawn import (
    coverage_to_sketch,
    estimate_stroke_width,
    ink_mask,
    normalize_strokes,
    redraw_labels,
    redraw_sketch,
    render_strokes,
)
from hf_pix2pixhd.labels import FACADES_PALETTE
from hf_pix2pixhd.models import GlobalGenerator, LocalEnhancerGenerator, ResnetGenerator

SIDE = 128


def _sketch(width: int, side: int = SIDE) -> np.ndarray:
    """A shoe-ish outline drawn with a ``width`` px pen: (3, side, side) in [-1, 1]."""
    image = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(image)
    s = side / 128
    draw.line([(10 * s, 90 * s), (40 * s, 40 * s), (90 * s, 60 * s), (118 * s, 95 * s)],
              fill="black", width=width)  # fmt: skip
    draw.line([(10 * s, 90 * s), (118 * s, 95 * s)], fill="black", width=width)
    draw.ellipse([50 * s, 65 * s, 70 * s, 80 * s], outline="black", width=width)
    array = np.asarray(image, np.float32).transpose(2, 0, 1)
    return array / 127.5 - 1.0


@pytest.mark.parametrize("width", [1, 3, 6, 9])
def test_stroke_width_is_estimated_within_a_pixel(width):
    assert estimate_stroke_width(ink_mask(_sketch(width))) == pytest.approx(width, abs=1.0)
    assert estimate_stroke_width(np.zeros((8, 8), bool)) == 0.0


def test_rendered_strokes_have_the_asked_width_and_soft_edges():
    skeleton = np.zeros((32, 32), bool)
    skeleton[16, 4:28] = True
    coverage = render_strokes(skeleton, 5.0)
    column = coverage[:, 16]
    assert column[14:19].min() == 1.0 and column[:13].max() == 0.0 and column[20:].max() == 0.0
    assert (column > 0).sum() == 5
    one = render_strokes(skeleton, 1.0)
    assert (one > 0).sum() == skeleton.sum()
    soft = render_strokes(skeleton, 4.0)[:, 16]
    assert 0 < soft[14] < 1  # anti-aliased edge, as a browser brush
    sketch = coverage_to_sketch(coverage)
    assert sketch.shape == (3, 32, 32) and sketch.min() == -1.0 and sketch.max() == 1.0


@pytest.mark.parametrize("drawn_width", [1, 3, 6, 9])
def test_normalised_strokes_have_the_trained_width_whatever_the_pen(drawn_width):
    normalised = normalize_strokes(_sketch(drawn_width), 3.0)
    assert normalised.shape == (3, SIDE, SIDE)
    assert estimate_stroke_width(ink_mask(normalised)) == pytest.approx(3.0, abs=1.0)
    # The drawing stays where it was: every stroke pixel lies on the original strokes
    # (dilated by the width difference).
    from scipy.ndimage import binary_dilation

    original = binary_dilation(ink_mask(_sketch(drawn_width)), iterations=2)
    assert ink_mask(normalised)[~original].sum() == 0


def test_normalising_a_blank_sketch_returns_it_unchanged():
    blank = np.ones((3, 16, 16), np.float32)
    assert normalize_strokes(blank, 3.0) is blank


def test_redrawn_sketches_vary_in_width_and_are_deterministic_under_the_seed():
    sketch = _sketch(1, 256)
    widths = []
    for seed in range(12):
        once = redraw_sketch(sketch, np.random.default_rng(seed))
        again = redraw_sketch(sketch, np.random.default_rng(seed))
        assert np.array_equal(once, again)
        assert once.shape == sketch.shape and once.min() >= -1.0 and once.max() <= 1.0
        widths.append(estimate_stroke_width(ink_mask(once)))
    assert min(widths) <= 2.0 and max(widths) >= 5.0, widths
    # the drawing stays a drawing of the same thing: its ink stays near the original lines
    from scipy.ndimage import binary_dilation

    near = binary_dilation(ink_mask(sketch), iterations=6)
    for seed in range(4):
        ink = ink_mask(redraw_sketch(sketch, np.random.default_rng(seed)))
        assert ink[~near].sum() <= 0.02 * ink.sum()


def _facade_ids(side: int = 64) -> np.ndarray:
    ids = np.ones((side, side), np.int64)  # facade
    ids[:, :4] = 0  # background strip
    for top in (8, 30):
        for left in (10, 30, 48):
            ids[top : top + 12, left : left + 8] = 2  # windows
            ids[top + 12 : top + 14, left - 1 : left + 9] = 5  # sills
    ids[50:62, 20:34] = 3  # door
    ids[20, 20] = 10  # a 1-px speck of pillar
    return ids


def test_redrawn_label_maps_keep_their_classes_and_are_deterministic():
    ids = _facade_ids()
    changed = 0
    for seed in range(10):
        once = redraw_labels(ids, np.random.default_rng(seed), FACADES_PALETTE, jpeg_probability=0)
        again = redraw_labels(ids, np.random.default_rng(seed), FACADES_PALETTE, jpeg_probability=0)
        assert np.array_equal(once, again)
        assert once.shape == ids.shape and once.dtype == np.int64
        assert set(np.unique(once)) <= set(np.unique(ids))
        # still the same layout, broadly: most pixels keep their class
        assert (once == ids).mean() > 0.75
        changed += int((once != ids).any())
    assert changed >= 5  # simplify_probability 0.8


def test_redrawn_label_maps_drop_specks_and_roughen_edges():
    ids = _facade_ids()
    rng = np.random.default_rng(3)
    outs = [redraw_labels(ids, rng, None, simplify_probability=1.0) for _ in range(10)]
    assert sum(int((out == 10).any()) for out in outs) < 10  # the speck is dropped sometimes
    # the window edges are no longer all straight: some rows of a window edge moved
    assert any((out[8:20, 9] != ids[8:20, 9]).any() for out in outs)


def test_jpeg_noise_needs_a_palette_and_only_gives_palette_ids():
    ids = _facade_ids()
    out = redraw_labels(ids, np.random.default_rng(0), FACADES_PALETTE, 0.0, jpeg_probability=1.0)
    assert out.max() < FACADES_PALETTE.num_classes
    assert 0.9 < (out == ids).mean() < 1.0  # a few boundary pixels snap to another colour
    same = redraw_labels(ids, np.random.default_rng(0), None, 0.0, jpeg_probability=1.0)
    assert np.array_equal(same, ids)


def _aligned(root: Path, right: np.ndarray, left: np.ndarray | None = None) -> Path:
    (root / "train").mkdir(parents=True)
    left = np.full_like(right, 128) if left is None else left
    for i in range(3):
        Image.fromarray(np.concatenate([left, right], 1)).save(root / "train" / f"{i}.png")
    return root


def test_the_data_layer_redraws_sketches_only_when_asked(tmp_path):
    sketch = ((_sketch(1, 128).transpose(1, 2, 0) + 1) * 127.5).astype(np.uint8)
    root = _aligned(tmp_path / "shoes", sketch)
    common = dict(source=str(root), input_kind="sketch", preprocess="resize", load_size=128,
                  crop_size=128, flip=False)  # fmt: skip
    plain = build_dataset(DataConfig(**common))
    drawn = build_dataset(DataConfig(**common, drawn_sketches=True, stroke_widths=[5.0, 7.0]))
    assert torch.equal(plain[0]["target"], drawn[0]["target"])
    thick = [estimate_stroke_width(ink_mask(drawn[i]["input"].numpy())) for i in range(3)]
    assert estimate_stroke_width(ink_mask(plain[0]["input"].numpy())) < 2
    assert max(thick) >= 2.0  # 5-7 px at 256 is 2.5-3.5 px at 128
    assert torch.equal(drawn[1]["input"], drawn[1]["input"])  # deterministic per item
    drawn.set_epoch(1)
    assert any(not torch.equal(drawn[i]["input"], plain[i]["input"]) for i in range(3))


def test_drawn_options_are_checked():
    with pytest.raises(DataError, match="drawn_sketches redraws sketch inputs"):
        DataConfig(source="x", input_kind="labels", label_nc=3, drawn_sketches=True)
    with pytest.raises(DataError, match="drawn_labels"):
        DataConfig(source="x", input_kind="sketch", drawn_labels=True)
    with pytest.raises(DataError, match="stroke_widths"):
        DataConfig(source="x", input_kind="sketch", stroke_widths=[7, 1])


@pytest.mark.parametrize(
    "factory",
    [
        lambda up: GlobalGenerator(4, 3, ngf=8, n_downsampling=2, n_blocks=1, upsample=up),
        lambda up: LocalEnhancerGenerator(
            4, 3, ngf=4, n_downsampling_global=2, n_blocks_global=1, n_blocks_local=1, upsample=up
        ),
        lambda up: ResnetGenerator(4, 3, ngf=8, n_blocks=1, norm="instance", upsample=up),
    ],
    ids=["global", "local", "resnet"],
)
def test_resize_conv_decoders_make_no_checkerboard_and_round_trip(factory, tmp_path, one_thread):
    """A transposed conv (stride 2) answers a flat input with a periodic pattern; nearest
    upsampling + conv cannot. Measured on the first decoder step: a constant map in gives a
    constant map out for resize_conv, a 2-periodic one for the official transpose."""
    torch.manual_seed(0)
    for upsample, periodic in (("transpose", True), ("resize_conv", False)):
        model = factory(upsample).eval()
        step = next(
            m for m in model.modules() if type(m).__name__ in ("ConvTranspose2d", "ResizeConv2d")
        )
        flat = torch.ones(1, step.in_channels, 8, 8)
        with torch.no_grad():
            out = step(flat)[..., 2:-2, 2:-2]
        spread = (out - out.mean((-1, -2), keepdim=True)).abs().amax().item()
        assert (spread > 1e-3) == periodic, (upsample, spread)
        x = torch.rand(1, 4, 32, 32) * 2 - 1
        with torch.no_grad():
            y = model(x)
        assert y.shape == (1, 3, 32, 32) and y.abs().max() <= 1
        model.save_pretrained(tmp_path / upsample)
        loaded = type(model).from_pretrained(tmp_path / upsample).eval()
        assert loaded.config.upsample == upsample
        with torch.no_grad():
            assert torch.equal(loaded(x), y)


def test_the_pipeline_redraws_sketches_at_the_recorded_width(tmp_path):
    from hf_pix2pixhd.models import UNetGenerator
    from hf_pix2pixhd.pipeline import Pix2PixHDPipeline

    pipe = Pix2PixHDPipeline(UNetGenerator(num_downs=5, ngf=4), input_kind="sketch",
                             stroke_width=4.0)  # fmt: skip
    pipe.save_pretrained(tmp_path / "model")
    loaded = Pix2PixHDPipeline.from_pretrained(tmp_path / "model")
    assert loaded.config.stroke_width == 4.0
    seen: list[torch.Tensor] = []  # what the translator gets; it answers with its input

    def record(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return x[:, :3]

    loaded.translator.forward = record
    thick = _sketch(9, 256)
    image = Image.fromarray(((thick.transpose(1, 2, 0) + 1) * 127.5).astype(np.uint8))
    loaded(image)
    loaded(image, normalize_strokes=False)
    redrawn, raw = (seen[0].numpy() for seen in seen)
    assert estimate_stroke_width(ink_mask(redrawn)) == pytest.approx(4.0, abs=1.0)
    assert estimate_stroke_width(ink_mask(raw)) == pytest.approx(9.0, abs=1.0)
    # At 128 px the width scales with the shorter side: 2 px.
    loaded(image.resize((128, 128)))
    assert estimate_stroke_width(ink_mask(seen[-1][0].numpy())) == pytest.approx(2, abs=1)
    # Models without a recorded width take sketches as they are.
    plain = Pix2PixHDPipeline(UNetGenerator(num_downs=5, ngf=4), input_kind="sketch")
    assert plain.config.stroke_width is None
    assert torch.equal(plain.normalize_strokes(torch.from_numpy(thick)[None]),
                       torch.from_numpy(thick)[None])  # fmt: skip


def test_label_boxes_turn_regions_into_their_bounding_boxes():
    from hf_pix2pixhd.drawn import label_boxes

    ids = np.ones((64, 64), np.int64)
    yy, xx = np.mgrid[0:64, 0:64]
    ids[(yy - 20) ** 2 + (xx - 20) ** 2 <= 64] = 2  # a round window, radius 8
    ids[50, 50] = 3  # a one-pixel speck
    boxes = label_boxes(ids)
    assert np.all(boxes[12:29, 12:29] == 2)  # the circle's bounding box, filled
    assert (boxes == 2).sum() == 17 * 17
    assert boxes[50, 50] == 1  # the speck is gone
    assert np.array_equal(label_boxes(ids), boxes)  # deterministic
