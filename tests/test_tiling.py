"""Tiled inference (models/tiling.py): equal to the untiled forward, used by the pipeline above
its threshold, and never holding a full-resolution activation wider than a few channels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hf_pix2pixhd import GlobalGenerator, LocalEnhancerGenerator, ResnetGenerator, UNetGenerator
from hf_pix2pixhd.models import tiling
from hf_pix2pixhd.models.modes import pix2pix_test_mode
from hf_pix2pixhd.models.tiling import TILED_TOLERANCE, LabelInput, tiled_forward
from hf_pix2pixhd.pipeline import Pix2PixHDPipeline

pytestmark = pytest.mark.usefixtures("one_thread")


def _randomize_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial running statistics, so eval-mode BatchNorm does something visible."""
    generator = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
    return model


# Tiny networks at small sizes; tile sizes of a few pixels give many tiles and seams per layer,
# tiles that do not divide the sizes, and tiles narrower than the conv halos.
CASES = {
    "global": (lambda: GlobalGenerator(5, 3, ngf=4, n_downsampling=2, n_blocks=2), 5, (40, 56)),
    "local": (
        lambda: LocalEnhancerGenerator(
            5, 3, ngf=4, n_downsampling_global=2, n_blocks_global=1, n_blocks_local=2
        ),
        5,
        (48, 72),
    ),
    "local-2-enhancers": (
        lambda: LocalEnhancerGenerator(
            5,
            3,
            ngf=4,
            n_downsampling_global=1,
            n_local_enhancers=2,
            n_blocks_global=1,
            n_blocks_local=1,
        ),
        5,
        (32, 48),
    ),
    "resnet-instance": (
        lambda: ResnetGenerator(3, 3, ngf=4, n_blocks=2, norm="instance"),
        3,
        (36, 44),
    ),
    "resnet-batch": (
        lambda: _randomize_batchnorm(ResnetGenerator(3, 3, ngf=4, n_blocks=2, norm="batch")),
        3,
        (36, 44),
    ),
    "resnet-zero-pad": (
        lambda: ResnetGenerator(3, 3, ngf=4, n_blocks=1, norm="instance", padding_type="zero"),
        3,
        (28, 20),
    ),
    "global-resize-conv": (
        lambda: GlobalGenerator(5, 3, ngf=4, n_downsampling=2, n_blocks=1, upsample="resize_conv"),
        5,
        (40, 56),
    ),
    "local-resize-conv": (
        lambda: LocalEnhancerGenerator(
            5,
            3,
            ngf=4,
            n_downsampling_global=2,
            n_blocks_global=1,
            n_blocks_local=1,
            upsample="resize_conv",
        ),
        5,
        (48, 72),
    ),
    "unet-batch": (
        lambda: _randomize_batchnorm(UNetGenerator(3, 3, num_downs=5, ngf=4)),
        3,
        (64, 96),
    ),
    "unet-instance": (
        lambda: UNetGenerator(3, 3, num_downs=6, ngf=4, norm="instance"),
        3,
        (64, 128),
    ),
}


@pytest.mark.parametrize("tile_size", [5, 16])
@pytest.mark.parametrize("name", list(CASES))
def test_tiled_equals_untiled(name, tile_size):
    build, channels, (height, width) = CASES[name]
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(2, channels, height, width)
    with torch.no_grad():
        expected = model(x)
        tiled = tiled_forward(model, x.clone(), tile_size)
    assert tiled.shape == expected.shape
    assert expected.std() > 1e-3  # a network that does something
    assert (tiled - expected).abs().max() <= TILED_TOLERANCE


def test_tiled_keeps_the_input_unchanged():
    torch.manual_seed(0)
    model = UNetGenerator(3, 3, num_downs=5, ngf=4).eval()
    x = torch.randn(1, 3, 32, 64)
    copy = x.clone()
    tiled_forward(model, x, 7)
    assert torch.equal(x, copy)


def test_batch_statistics_mode_matches():
    """pix2pix's test mode: BatchNorm on batch statistics (over N, H, W), without dropout."""
    torch.manual_seed(0)
    model = UNetGenerator(3, 3, num_downs=5, ngf=4, use_dropout=False)
    x = torch.randn(2, 3, 32, 64)
    with pix2pix_test_mode(model), torch.no_grad():
        expected = model(x)
        tiled = tiled_forward(model, x, 6)
    assert (tiled - expected).abs().max() <= TILED_TOLERANCE


def test_label_input_builds_the_one_hot_per_tile():
    torch.manual_seed(0)
    model = LocalEnhancerGenerator(
        6, 3, ngf=4, n_downsampling_global=2, n_blocks_global=1, n_blocks_local=1
    ).eval()
    ids = torch.randint(0, 4, (1, 1, 32, 48))
    instances = torch.randint(0, 3, (1, 1, 32, 48))
    features = torch.randn(1, 1, 32, 48)
    compact = LabelInput.from_maps(ids, 4, instances, features)
    assert compact.ids.dtype == torch.uint8
    from hf_pix2pixhd.labels import assemble_generator_input

    full = assemble_generator_input(ids, 4, instances, features)
    assert torch.equal(compact.materialize(), full)
    with torch.no_grad():
        assert (tiled_forward(model, compact, 8) - model(full)).abs().max() <= TILED_TOLERANCE


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor any op produces (a deterministic stand-in for peak memory)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_tiled_local_enhancer_never_holds_a_wide_full_resolution_tensor():
    """The untiled local enhancer makes ngf-channel full-resolution activations (and the
    one-hot input); the tiled one stores at most ngf*2 channels at half resolution (ngf/2
    per full-resolution pixel) and a few channels at full resolution."""
    torch.manual_seed(0)
    ngf, height, width = 8, 64, 128
    model = LocalEnhancerGenerator(
        13, 3, ngf=ngf, n_downsampling_global=2, n_blocks_global=1, n_blocks_local=1
    ).eval()
    compact = LabelInput.from_maps(torch.randint(0, 12, (1, 1, height, width)), 12,
                                   torch.randint(0, 4, (1, 1, height, width)))  # fmt: skip
    untiled, tiled = _LargestTensor(), _LargestTensor()
    with torch.no_grad():
        full = compact.materialize()
        with untiled:
            model(full)
        with tiled:
            tiled_forward(model, compact, 16)
    pixels = height * width
    assert untiled.largest >= 13 * pixels  # the one-hot, and ngf channels at full res
    assert tiled.largest <= ngf // 2 * pixels
    assert tiled.largest * 2 <= untiled.largest


def test_unsupported_model_and_bad_tile_size():
    with pytest.raises(NotImplementedError, match="No tiled path"):
        tiled_forward(torch.nn.Conv2d(3, 3, 3), torch.zeros(1, 3, 8, 8))
    model = ResnetGenerator(3, 3, ngf=4, n_blocks=1)
    with pytest.raises(ValueError, match="tile_size"):
        tiled_forward(model, torch.zeros(1, 3, 8, 8), 0)
    with pytest.raises(ValueError, match="input channels"):
        tiled_forward(model, torch.zeros(1, 4, 8, 8))


@pytest.fixture
def label_pipe() -> Pix2PixHDPipeline:
    torch.manual_seed(0)
    translator = LocalEnhancerGenerator(
        5, 3, ngf=4, n_downsampling_global=2, n_blocks_global=1, n_blocks_local=1
    )
    return Pix2PixHDPipeline(translator, input_kind="labels", label_nc=4, use_instance_map=True)


def _count_tiled_calls(monkeypatch) -> list:
    calls = []
    original = tiling.tiled_forward

    def spy(model, x, tile_size=tiling.DEFAULT_TILE_SIZE):
        calls.append((tuple(x.shape), tile_size))
        return original(model, x, tile_size)

    monkeypatch.setattr("hf_pix2pixhd.pipeline.tiled_forward", spy)
    return calls


def test_pipeline_tiles_above_the_threshold_only(label_pipe, monkeypatch):
    calls = _count_tiled_calls(monkeypatch)
    monkeypatch.setattr("hf_pix2pixhd.pipeline.TILING_MIN_PIXELS", 37 * 50)
    ids = np.random.default_rng(0).integers(0, 4, (37, 50))
    small = np.random.default_rng(0).integers(0, 4, (30, 50))
    label_pipe(small, output_type="pt")
    assert calls == []
    label_pipe(ids, output_type="pt")
    assert calls == [((1, 5, 40, 56), tiling.DEFAULT_TILE_SIZE)]  # padded to multiples of 8


@pytest.mark.parametrize("resize_mode", ["pad", "resize"])
def test_pipeline_tiled_output_matches_untiled(label_pipe, monkeypatch, resize_mode):
    calls = _count_tiled_calls(monkeypatch)
    label_pipe.register_to_config(resize_mode=resize_mode)
    ids = np.random.default_rng(0).integers(0, 4, (37, 61))
    instances = np.random.default_rng(1).integers(0, 3, (37, 61))
    untiled = label_pipe.disable_tiling()(ids, instances, output_type="pt").images
    assert calls == []
    tiled = label_pipe.enable_tiling(tile_size=8)(ids, instances, output_type="pt").images
    assert len(calls) == 1 and calls[0][1] == 8
    assert untiled.shape == tiled.shape == (1, 3, 37, 61)
    # outputs in [0, 1] here: half the [-1, 1] tolerance
    assert (tiled - untiled).abs().max() <= TILED_TOLERANCE / 2


def test_pipeline_tiling_with_rgb_and_bf16(monkeypatch):
    calls = _count_tiled_calls(monkeypatch)
    torch.manual_seed(0)
    pipe = Pix2PixHDPipeline(ResnetGenerator(3, 3, ngf=4, n_blocks=1, norm="instance"))
    image = np.random.default_rng(0).integers(0, 256, (30, 42, 3)).astype(np.uint8)
    untiled = pipe.disable_tiling()(image, output_type="pt").images
    pipe.enable_tiling(tile_size=6, min_pixels=100)
    tiled = pipe(image, output_type="pt").images
    assert (tiled - untiled).abs().max() <= TILED_TOLERANCE / 2
    fast = pipe(image, output_type="pt", autocast_dtype=torch.bfloat16).images
    assert len(calls) == 2
    assert (fast - untiled).abs().max() < 0.05  # bf16 rounding, as for the untiled fast mode
    with pytest.raises(ValueError, match="tile_size"):
        pipe.enable_tiling(tile_size=0)


def test_pipeline_tiling_in_fast_cpu_mode(label_pipe, monkeypatch):
    """bf16 channels_last weights (enable_fast_cpu_inference) run tiled too."""
    calls = _count_tiled_calls(monkeypatch)
    ids = np.random.default_rng(0).integers(0, 4, (40, 48))
    untiled = label_pipe.disable_tiling()(ids, output_type="pt").images
    label_pipe.enable_fast_cpu_inference().enable_tiling(tile_size=8)
    fast = label_pipe(ids, output_type="pt").images
    assert len(calls) == 1
    assert (fast - untiled).abs().max() < 0.05  # bf16 rounding, as for the untiled fast mode
