"""Distances between two sets of (Inception) features: the Fréchet distance (FID, with an
exact ``n x n`` Gram form for sets smaller than the feature size), the Kernel Inception Distance
(KID, torchmetrics' unbiased MMD^2 over random subsets) and :func:`compute_fid_kid` for both.
The sets are ``(N, D)`` tensors or arrays and need not have the same number of images."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch
from torch import nn

from .errors import EvaluationError


def _features_array(features: torch.Tensor | np.ndarray, what: str) -> np.ndarray:
    array = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else features
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2:
        raise EvaluationError(f"{what} must be (N, D) features, got shape {array.shape}")
    if array.shape[0] < 2:
        raise EvaluationError(
            f"{what}: FID and KID need at least 2 images per set, got {array.shape[0]}"
        )
    if not np.isfinite(array).all():
        raise EvaluationError(f"{what} holds NaN or infinite values")
    return array


def frechet_distance(
    real_features: torch.Tensor | np.ndarray,
    fake_features: torch.Tensor | np.ndarray,
    method: str = "auto",
) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID on Inception features).

    ``|mu_r - mu_f|^2 + tr(S_r) + tr(S_f) - 2 tr(sqrtm(S_r S_f))``, the matrix square root by
    ``scipy.linalg.sqrtm``. ``method``:

    - ``"full"``: sqrtm of the ``D x D`` product, as pytorch-fid (with its ``1e-6`` diagonal
      offset when the result is not finite).
    - ``"gram"``: with centred features ``A_r``, ``A_f`` (``S = A^T A / (n - 1)``), the nonzero
      eigenvalues of ``S_r S_f`` are those of ``K K^T`` with ``K = A_r A_f^T / sqrt((n_r - 1)
      (n_f - 1))``, so the trace term is ``tr(sqrtm(K K^T))``: the same number from an
      ``n x n`` matrix. Far faster and better conditioned when n < D (a 2048 x 2048 sqrtm of a
      rank-deficient product takes tens of seconds on a CPU and is only approximately real).
    - ``"auto"``: "gram" when a set has fewer images than feature dimensions, else "full".

    Returns a float >= 0 (round-off below 0 is clipped).
    """
    real = _features_array(real_features, "real features")
    fake = _features_array(fake_features, "generated features")
    if real.shape[1] != fake.shape[1]:
        raise EvaluationError(
            f"feature sizes differ: {real.shape[1]} (real) vs {fake.shape[1]} (generated)"
        )
    if method not in ("auto", "full", "gram"):
        raise EvaluationError(f"method must be 'auto', 'full' or 'gram', got {method!r}")
    n_real, n_fake, dims = real.shape[0], fake.shape[0], real.shape[1]
    if method == "auto":
        method = "gram" if min(n_real, n_fake) < dims else "full"
    mu_real, mu_fake = real.mean(0), fake.mean(0)
    diff = mu_real - mu_fake
    with warnings.catch_warnings():
        # Covariances of n < D samples are singular; that is expected, not a failure.
        warnings.filterwarnings("ignore", message=".*singular.*")
        if method == "full":
            sigma_real = np.cov(real, rowvar=False)
            sigma_fake = np.cov(fake, rowvar=False)
            covmean = scipy.linalg.sqrtm(sigma_real @ sigma_fake)
            if not np.isfinite(covmean).all():
                offset = np.eye(dims) * 1e-6
                covmean = scipy.linalg.sqrtm((sigma_real + offset) @ (sigma_fake + offset))
            trace_real, trace_fake = np.trace(sigma_real), np.trace(sigma_fake)
        else:
            centred_real, centred_fake = real - mu_real, fake - mu_fake
            cross = centred_real @ centred_fake.T / np.sqrt((n_real - 1) * (n_fake - 1))
            gram = cross @ cross.T if n_real <= n_fake else cross.T @ cross
            covmean = scipy.linalg.sqrtm(gram)
            trace_real = np.square(centred_real).sum() / (n_real - 1)
            trace_fake = np.square(centred_fake).sum() / (n_fake - 1)
    trace_covmean = np.trace(covmean)
    if abs(trace_covmean.imag) > 1e-3 * max(1.0, abs(trace_covmean.real)):
        warnings.warn(
            f"FID: sqrtm has a large imaginary trace ({trace_covmean.imag:.3g}); the result may "
            "be inaccurate",
            RuntimeWarning,
            stacklevel=2,
        )
    fid = float(diff @ diff + trace_real + trace_fake - 2 * trace_covmean.real)
    return max(fid, 0.0)


def kernel_inception_distance(
    real_features: torch.Tensor | np.ndarray,
    fake_features: torch.Tensor | np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID: the unbiased MMD^2 with the cubic polynomial kernel ``(x.y / D + 1)^3``, averaged
    over random subsets (torchmetrics' ``KernelInceptionDistance`` on precomputed features).

    ``subset_size`` is capped at the smaller set's size; subsets are drawn with ``seed`` without
    touching the global RNG. Note the unbiased estimator of a set against *itself* is not 0 but
    ``-2 (mean k(x, x) - mean k(x, y)) / m``: it is about 0 only against an independent sample.

    Returns ``(mean, std)`` over the subsets.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    real = torch.from_numpy(_features_array(real_features, "real features"))
    fake = torch.from_numpy(_features_array(fake_features, "generated features"))
    if real.shape[1] != fake.shape[1]:
        raise EvaluationError(
            f"feature sizes differ: {real.shape[1]} (real) vs {fake.shape[1]} (generated)"
        )
    size = min(subset_size, real.shape[0], fake.shape[0])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        # An identity "feature extractor": torchmetrics computes KID on our features as they are.
        metric = KernelInceptionDistance(
            feature=nn.Identity(), subsets=subsets, subset_size=size, reset_real_features=True
        )
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def compute_fid_kid(
    real_features: torch.Tensor | np.ndarray,
    fake_features: torch.Tensor | np.ndarray,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """FID and KID of two feature sets ``(N_r, D)`` and ``(N_f, D)`` (counts may differ).

    Returns ``{"fid", "kid_mean", "kid_std"}``.
    """
    fid = frechet_distance(real_features, fake_features)
    kid_mean, kid_std = kernel_inception_distance(
        real_features, fake_features, kid_subsets, kid_subset_size, seed
    )
    return {"fid": fid, "kid_mean": kid_mean, "kid_std": kid_std}
