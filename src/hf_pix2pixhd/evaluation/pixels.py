"""Per-image pixel metrics of paired batches: SSIM and PSNR (torchmetrics, on ``[0, 1]``
with data range 1) and the mean absolute difference L1, computed in float64 so that swapping
the real and generated sets gives the same numbers."""

from __future__ import annotations

import torch

from .errors import EvaluationError


def pixel_metrics(real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image SSIM, PSNR (dB) and L1 of a batch pair ``(N, 3, H, W)`` in ``[-1, 1]``.

    SSIM and PSNR by torchmetrics on ``[0, 1]`` (data range 1; SSIM with the standard 11x11
    Gaussian window, sigma 1.5). L1 is the mean absolute difference on ``[0, 1]`` (x255 for
    8-bit levels; the training loss on ``[-1, 1]`` is twice this). Returns ``(N,)`` tensors.
    """
    from torchmetrics.functional.image import (
        peak_signal_noise_ratio,
        structural_similarity_index_measure,
    )

    # float64: a swap of the two sets must give the same numbers to well below display precision.
    real01 = (real.double().clamp(-1, 1) + 1) / 2
    fake01 = (fake.double().clamp(-1, 1) + 1) / 2
    if min(real01.shape[-2:]) < 11:
        raise EvaluationError(
            f"SSIM needs images of at least 11x11 pixels, got {tuple(real01.shape[-2:])}"
        )
    ssim = structural_similarity_index_measure(fake01, real01, data_range=1.0, reduction="none")
    psnr = peak_signal_noise_ratio(fake01, real01, data_range=1.0, reduction="none", dim=(1, 2, 3))
    l1 = (fake01 - real01).abs().mean((1, 2, 3))
    return {"ssim": ssim, "psnr": psnr, "l1": l1}
