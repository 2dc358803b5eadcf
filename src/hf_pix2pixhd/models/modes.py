"""Running modes for networks: eval, pix2pix's test mode, and compiled inference."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn


def compile_for_inference(module: nn.Module) -> Callable[..., torch.Tensor]:
    """``torch.compile`` with inductor weight freezing (weights prepacked once: no per-call
    reordering). Compilation is lazy, so every call, which may recompile for a new size, runs
    under the freezing flag; the global inductor config is left untouched. Inference only."""
    import torch._inductor.config as inductor_config

    compiled = torch.compile(module)

    def run(*args: torch.Tensor) -> torch.Tensor:
        with inductor_config.patch(freezing=True):
            return compiled(*args)

    return run


@contextlib.contextmanager
def eval_mode(*modules: nn.Module | None) -> Iterator[None]:
    """Eval mode for ``modules`` (``None`` entries are skipped) inside the block; their modes
    are restored after."""
    present = [m for m in modules if m is not None]
    modes = [m.training for m in present]
    for module in present:
        module.eval()
    try:
        yield
    finally:
        for module, mode in zip(present, modes, strict=True):
            module.train(mode)


@contextlib.contextmanager
def pix2pix_test_mode(module: nn.Module) -> Iterator[None]:
    """Dropout on and BatchNorm on batch statistics, without touching the running statistics."""
    was_training = module.training
    module.eval()
    saved = []
    for layer in module.modules():
        if isinstance(layer, nn.Dropout | nn.BatchNorm2d):
            layer.train()
        if isinstance(layer, nn.BatchNorm2d):
            saved.append((layer, layer.momentum, layer.num_batches_tracked.clone()))
            layer.momentum = 0.0  # running stats stay as they are
    try:
        yield
    finally:
        for layer, momentum, tracked in saved:
            layer.momentum = momentum
            layer.num_batches_tracked.copy_(tracked)
        module.train(was_training)
