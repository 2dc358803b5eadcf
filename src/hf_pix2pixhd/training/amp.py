"""Stepping two optimizers that share one fp16 loss scaler."""

from __future__ import annotations

from accelerate import Accelerator
from accelerate.optimizer import AcceleratedOptimizer


def step_optimizers(accelerator: Accelerator, *optimizers: AcceleratedOptimizer) -> None:
    """Step ``optimizers`` (prepared by ``accelerator``) on gradients all scaled by one scale.

    A GAN step scales both losses (D's and G's) by the same fp16 loss scale, then steps both
    optimizers. Accelerate's prepared optimizers each call ``scaler.update()`` right after their
    own ``scaler.step()``: when D's gradients overflow, the scale halves before G's gradients,
    scaled by the old value, are unscaled by the new one, and G takes a step on gradients twice
    too large (growth halves them). torch.amp's recipe for several optimizers: ``scaler.step``
    each, then one ``update()`` per iteration. Without a scaler (fp32, bf16) each prepared
    optimizer steps as usual (it skips accumulation micro-steps itself).
    """
    scaler = accelerator.scaler
    if scaler is None:
        for optimizer in optimizers:
            optimizer.step()
        return
    if not accelerator.sync_gradients:  # an accumulation micro-step
        return
    for optimizer in optimizers:
        scaler.step(optimizer.optimizer)  # skipped when its own gradients hold inf / NaN
    scaler.update()
