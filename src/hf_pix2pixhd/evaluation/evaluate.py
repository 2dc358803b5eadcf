"""Whole evaluations: the metric names (:data:`METRICS`) and their parsing,
:func:`evaluate_image_sets`, which scores paired real and generated images with every chosen
metric (FID/KID, LPIPS, SSIM/PSNR/L1) and reports means and timings, and
:func:`evaluate_pipeline`, which checks the needed weights first, generates from a dataset and
then scores. This module ties the metric modules together; the command line sits on top."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .errors import EvaluationError
from .fid import frechet_distance, kernel_inception_distance
from .generate import generate_images, save_sample_grid
from .images import ImageSet, _as_image_list, _batches, _check_pairs
from .inception import find_inception_weights, inception_features, load_inception
from .lpips import LPIPS, LPIPS_FILES, _read_lpips_weights, find_lpips_weights_dir
from .pixels import pixel_metrics

#: Every metric the evaluation can compute, in report order.
METRICS = ("fid", "kid", "lpips_vgg", "lpips_alex", "ssim", "psnr", "l1")


def _parse_metrics(metrics: Iterable[str] | None) -> tuple[str, ...]:
    if metrics is None:
        return METRICS
    chosen: list[str] = []
    for name in metrics:
        name = name.strip().lower()
        expanded = ("lpips_vgg", "lpips_alex") if name == "lpips" else (name,)
        for item in expanded:
            if item not in METRICS:
                raise EvaluationError(
                    f"unknown metric {item!r}; choose from {', '.join(METRICS)} (or 'lpips' for "
                    "both LPIPS trunks)"
                )
            if item not in chosen:
                chosen.append(item)
    if not chosen:
        raise EvaluationError("no metric chosen")
    return tuple(m for m in METRICS if m in chosen)


def evaluate_image_sets(
    real_images: ImageSet,
    fake_images: ImageSet,
    metrics: Iterable[str] | None = None,
    inception: str | os.PathLike | nn.Module | None = None,
    lpips_weights: str | os.PathLike | None = None,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Score generated images against their real counterparts.

    Args:
        real_images, fake_images: ``(N, 3, H, W)`` or lists of ``(3, H, W)`` float tensors in
            ``[-1, 1]``, paired by position (same count, same size per pair; sizes may vary
            between pairs). For FID/KID of unpaired sets use :func:`compute_fid_kid`.
        metrics: a subset of :data:`METRICS` ("lpips" = both trunks); default all.
        inception: a TorchScript file or a loaded feature extractor (default: fid-helper's).
        lpips_weights: folder of the LPIPS weight files (see :func:`find_lpips_weights_dir`).
        device: where the Inception and LPIPS networks run.

    Returns:
        ``{"n_images": N, "metrics": {name: float}, "timings_s": {stage: seconds}}``; the
        metrics are "fid", "kid_mean", "kid_std", "lpips_vgg", "lpips_alex", "ssim", "psnr"
        and "l1" (the chosen ones), each a mean over images where per-image.
    """
    chosen = _parse_metrics(metrics)
    real = _as_image_list(real_images, "real_images")
    fake = _as_image_list(fake_images, "fake_images")
    _check_pairs(real, fake)
    if batch_size < 1:
        raise EvaluationError(f"batch_size must be >= 1, got {batch_size}")
    if ("fid" in chosen or "kid" in chosen) and len(real) < 2:
        raise EvaluationError(
            f"FID and KID need at least 2 images, got {len(real)}; choose other metrics"
        )
    device = torch.device(device)
    results: dict[str, float | None] = {}
    timings: dict[str, float] = {}

    if "fid" in chosen or "kid" in chosen:
        start = time.perf_counter()
        model = inception if isinstance(inception, nn.Module) else load_inception(inception, device)
        real_features = inception_features(real, model, batch_size, progress)
        fake_features = inception_features(fake, model, batch_size, progress)
        timings["inception_features"] = time.perf_counter() - start
        start = time.perf_counter()
        if "fid" in chosen:
            results["fid"] = frechet_distance(real_features, fake_features)
        if "kid" in chosen:
            results["kid_mean"], results["kid_std"] = kernel_inception_distance(
                real_features, fake_features, kid_subsets, kid_subset_size, seed
            )
        timings["fid_kid"] = time.perf_counter() - start

    for net in ("vgg", "alex"):
        if f"lpips_{net}" not in chosen:
            continue
        start = time.perf_counter()
        lpips = LPIPS.from_pretrained(net, lpips_weights).to(device)
        distances = []
        pairs = list(zip(_batches(real, batch_size), _batches(fake, batch_size), strict=True))
        for r, f in tqdm(pairs, desc=f"lpips {net}", disable=not progress):
            distances.append(lpips(r.to(device), f.to(device)).double().cpu())
        results[f"lpips_{net}"] = float(torch.cat(distances).mean())
        timings[f"lpips_{net}"] = time.perf_counter() - start

    pixel = [m for m in ("ssim", "psnr", "l1") if m in chosen]
    if pixel:
        start = time.perf_counter()
        values: dict[str, list[torch.Tensor]] = {m: [] for m in pixel}
        for r, f in zip(_batches(real, batch_size), _batches(fake, batch_size), strict=True):
            scores = pixel_metrics(r, f)
            for m in pixel:
                values[m].append(scores[m])
        for m in pixel:
            # Identical pairs have infinite PSNR; JSON has no infinity, so report it as None.
            mean = float(torch.cat(values[m]).mean())
            results[m] = mean if np.isfinite(mean) else None
        timings["pixel_metrics"] = time.perf_counter() - start
    order = ["fid", "kid_mean", "kid_std", "lpips_vgg", "lpips_alex", "ssim", "psnr", "l1"]
    return {
        "n_images": len(real),
        "metrics": {k: results[k] for k in order if k in results},
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }


def _check_weights(
    chosen: tuple[str, ...],
    inception: str | os.PathLike | nn.Module | None,
    lpips_weights: str | os.PathLike | None,
) -> None:
    """Raise :class:`MissingWeightsError` now for weights the chosen metrics will need: before
    minutes of generation, not after."""
    if ("fid" in chosen or "kid" in chosen) and not isinstance(inception, nn.Module):
        find_inception_weights(inception)
    folder = (
        find_lpips_weights_dir(lpips_weights)
        if "lpips_vgg" in chosen or "lpips_alex" in chosen
        else None
    )
    for net in ("vgg", "alex"):
        needed = folder is not None and f"lpips_{net}" in chosen
        if needed and any(not (folder / name).is_file() for name in LPIPS_FILES[net]):
            _read_lpips_weights(net, folder)  # raises, naming the missing files


def evaluate_pipeline(
    pipeline: Any,
    dataset: Iterable[dict[str, Any]],
    metrics: Iterable[str] | None = None,
    inception: str | os.PathLike | nn.Module | None = None,
    lpips_weights: str | os.PathLike | None = None,
    batch_size: int = 8,
    grid_path: str | os.PathLike | None = None,
    grid_rows: int = 8,
    features_fn: Callable[[list[dict[str, Any]]], torch.Tensor] | None = None,
    paper_test_mode: bool = False,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Generate an output for every item of ``dataset`` and score it against the item's target.

    ``pipeline``: a :class:`~hf_pix2pixhd.pipeline.Pix2PixHDPipeline`; the metric networks run
    on its device. See :func:`generate_images` and :func:`evaluate_image_sets` for the options.
    Returns :func:`evaluate_image_sets`'s dict, with the generation time in ``timings_s`` and
    ``grid`` (the PNG path) when ``grid_path`` is given.
    """
    chosen = _parse_metrics(metrics)
    _check_weights(chosen, inception, lpips_weights)
    generated = generate_images(
        pipeline, dataset, batch_size, grid_rows, features_fn, paper_test_mode, progress
    )
    report = evaluate_image_sets(
        generated.real,
        generated.fake,
        metrics=chosen,
        inception=inception,
        lpips_weights=lpips_weights,
        batch_size=batch_size,
        device=pipeline.device,
        kid_subsets=kid_subsets,
        kid_subset_size=kid_subset_size,
        seed=seed,
        progress=progress,
    )
    report["timings_s"] = {
        "generate": round(generated.seconds, 3),
        "generate_per_image": round(generated.seconds / len(generated.real), 4),
        **report["timings_s"],
    }
    if grid_path is not None:
        report["grid"] = str(save_sample_grid(pipeline, generated, grid_path))
    return report
