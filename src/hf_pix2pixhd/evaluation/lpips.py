"""LPIPS v0.1 (Zhang et al. 2018) without the ``lpips`` package: the VGG16 and AlexNet
trunks rebuilt as torchvision's ``features``, the :class:`LPIPS` module with the official
scaling, channel normalisation and 1x1 linear heads, and the loading of its weights from a
folder of safetensors files (``--lpips-weights``, ``$HF_PIX2PIXHD_LPIPS_WEIGHTS`` or
``../shared/weights``) or, when there is none, from the official URLs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..models.vgg import _CONFIGS as _VGG_CONFIGS
from ..models.vgg import VGG16_URL, _read_state_dict
from .errors import EvaluationError, MissingWeightsError

#: A folder with the LPIPS weight files (see :func:`find_lpips_weights_dir`).
LPIPS_WEIGHTS_ENV = "HF_PIX2PIXHD_LPIPS_WEIGHTS"
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
LPIPS_HEAD_URL = (
    "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/{net}.pth"
)
#: LPIPS weight files by trunk: (torchvision ``features`` weights, v0.1 linear heads).
LPIPS_FILES = {
    "vgg": ("vgg16_features.safetensors", "lpips_vgg_lin_v0.1.safetensors"),
    "alex": ("alexnet_features.safetensors", "lpips_alex_lin_v0.1.safetensors"),
}


def _vgg16_layers() -> list[nn.Module]:
    """torchvision's VGG16 ``features`` 0..29 (through relu5_3), from vgg.py's layer table."""
    layers: list[nn.Module] = []
    in_channels = 3
    for item in _VGG_CONFIGS["vgg16"]:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        layers += [nn.Conv2d(in_channels, int(item), 3, padding=1), nn.ReLU(inplace=True)]
        in_channels = int(item)
    return layers


def _alexnet_layers() -> list[nn.Module]:
    """torchvision's AlexNet ``features`` 0..11 (through relu5; the last max-pool is unused)."""
    return [
        nn.Conv2d(3, 64, 11, stride=4, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1),
        nn.ReLU(inplace=True),
    ]


# Per trunk: the layers, the ``features`` indices LPIPS taps (after each ReLU stage: vgg
# relu1_2, relu2_2, relu3_3, relu4_3, relu5_3; alex relu1..relu5) and their channels.
_TRUNKS: dict[str, tuple[Callable[[], list[nn.Module]], tuple[int, ...], tuple[int, ...]]] = {
    "vgg": (_vgg16_layers, (3, 8, 15, 22, 29), (64, 128, 256, 512, 512)),
    "alex": (_alexnet_layers, (1, 4, 7, 9, 11), (64, 192, 384, 256, 256)),
}


def _working_dir_shared_weights() -> Path:
    # A convention of the working directory (a checkout beside ../shared), never of where the
    # package is installed: a wheel install looks in the same place relative to where it runs.
    return Path.cwd().parent / "shared" / "weights"


def find_lpips_weights_dir(weights_dir: str | os.PathLike | None = None) -> Path | None:
    """The folder holding the LPIPS weight files (:data:`LPIPS_FILES`), or None for the URLs.

    Order: ``weights_dir`` (must exist), ``$HF_PIX2PIXHD_LPIPS_WEIGHTS`` (must exist), then a
    ``../shared/weights`` folder beside the working directory.
    """
    given = (
        (weights_dir, "--lpips-weights"),
        (os.environ.get(LPIPS_WEIGHTS_ENV), LPIPS_WEIGHTS_ENV),
    )
    for source, name in given:
        if source:
            folder = Path(source).expanduser()
            if not folder.is_dir():
                raise MissingWeightsError(
                    f"LPIPS weights folder {folder} ({name}) does not exist; it must hold "
                    f"{_lpips_file_list()}"
                )
            return folder
    folder = _working_dir_shared_weights()
    if any((folder / name).is_file() for files in LPIPS_FILES.values() for name in files):
        return folder
    return None


def _lpips_file_list() -> str:
    return ", ".join(name for files in LPIPS_FILES.values() for name in files)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def _read_lpips_weights(
    net: str, weights_dir: Path | None
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(trunk state dict with ``features.N.*`` keys, heads with ``linK.model.1.weight``)."""
    trunk_file, head_file = LPIPS_FILES[net]
    if weights_dir is not None:
        missing = [n for n in (trunk_file, head_file) if not (weights_dir / n).is_file()]
        if missing:
            raise MissingWeightsError(
                f"LPIPS ({net}) needs {', '.join(missing)} in {weights_dir}: the torchvision "
                f"ImageNet {'VGG16' if net == 'vgg' else 'AlexNet'} features and the LPIPS v0.1 "
                f"linear heads ({LPIPS_HEAD_URL.format(net=net)}), as safetensors"
            )
        return (
            _read_state_dict(str(weights_dir / trunk_file)),
            _read_state_dict(str(weights_dir / head_file)),
        )
    trunk_url = VGG16_URL if net == "vgg" else ALEXNET_URL
    head_url = LPIPS_HEAD_URL.format(net=net)
    where = (
        f"pass --lpips-weights DIR (or set ${LPIPS_WEIGHTS_ENV}) to a folder holding "
        f"{trunk_file} and {head_file}"
    )
    if _offline():
        raise MissingWeightsError(
            f"LPIPS ({net}) weights not found and HF_HUB_OFFLINE is set: {where}"
        )
    try:
        return _read_state_dict(trunk_url), _read_state_dict(head_url)
    except OSError as error:  # URLError, HTTPError and socket errors are all OSErrors
        raise MissingWeightsError(
            f"could not download the LPIPS ({net}) weights ({trunk_url}, {head_url}): {error}. "
            f"Offline, {where}"
        ) from error


class LPIPS(nn.Module):
    """LPIPS v0.1 (Zhang et al. 2018), as ``lpips.LPIPS(net=..., version="0.1")``.

    The input is shifted and scaled (the official ScalingLayer), fed to the frozen trunk, and
    at each tap the channel-unit-normalised features of the two images are subtracted, squared,
    weighted by the 1x1 linear head, averaged over space and summed over the taps.

    Args:
        net: ``"vgg"`` (VGG16, relu1_2 .. relu5_3) or ``"alex"`` (AlexNet, relu1 .. relu5).

    Call: ``lpips(x, y)`` with ``(N, 3, H, W)`` in ``[-1, 1]`` -> ``(N,)`` distances (0 for
    identical images; about 0.1-0.7 between different natural images).
    """

    def __init__(self, net: str = "vgg") -> None:
        super().__init__()
        if net not in _TRUNKS:
            raise EvaluationError(f"LPIPS net must be one of {sorted(_TRUNKS)}, got {net!r}")
        build, taps, channels = _TRUNKS[net]
        self.net = net
        self.taps = taps
        self.features = nn.Sequential(*build())
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in channels)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_pretrained(
        cls, net: str = "vgg", weights_dir: str | os.PathLike | None = None
    ) -> LPIPS:
        """Build and load the trunk and the v0.1 heads from a folder (see
        :func:`find_lpips_weights_dir`), or from the official URLs when there is none."""
        model = cls(net)
        trunk, heads = _read_lpips_weights(net, find_lpips_weights_dir(weights_dir))
        model.load_weights(trunk, heads)
        return model

    def load_weights(self, trunk: dict[str, torch.Tensor], heads: dict[str, torch.Tensor]) -> None:
        """Load torchvision ``features.N.*`` trunk weights and official ``linK.model.1.weight``
        heads (extra keys, such as a full classifier's, are ignored)."""
        wanted = {f"features.{k}": v for k, v in self.features.state_dict().items()}
        wanted.update({f"lin{k}.model.1.weight": h.weight for k, h in enumerate(self.heads)})
        given = {**trunk, **heads}
        missing = [key for key in wanted if key not in given]
        if missing:
            raise MissingWeightsError(
                f"the LPIPS ({self.net}) weights lack {missing[:4]}; give torchvision "
                f"{'VGG16' if self.net == 'vgg' else 'AlexNet'} features and the LPIPS v0.1 "
                f"{self.net} linear heads"
            )
        for key, value in wanted.items():
            if given[key].shape != value.shape:
                raise MissingWeightsError(
                    f"LPIPS ({self.net}) weight {key} has shape {tuple(given[key].shape)}, "
                    f"expected {tuple(value.shape)}: wrong trunk or heads file?"
                )
        prefix = "features."
        self.features.load_state_dict(
            {key[len(prefix) :]: given[key] for key in wanted if key.startswith(prefix)}
        )
        for k, head in enumerate(self.heads):
            head.weight.copy_(given[f"lin{k}.model.1.weight"])

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs, start = [], 0
        for tap in self.taps:
            x = self.features[start : tap + 1](x)
            outputs.append(x)
            start = tap + 1
        return outputs

    @torch.inference_mode()
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise EvaluationError(
                f"LPIPS needs two (N, 3, H, W) batches of one shape, got {tuple(x.shape)} and "
                f"{tuple(y.shape)}"
            )
        dtype = self.shift.dtype
        feats_x = self._taps((x.to(dtype) - self.shift) / self.scale)
        feats_y = self._taps((y.to(dtype) - self.shift) / self.scale)
        total = x.new_zeros(x.shape[0], dtype=dtype)
        for head, fx, fy in zip(self.heads, feats_x, feats_y, strict=True):
            # The official normalize_tensor: x / (||x||_channels + 1e-10).
            fx = fx / (fx.square().sum(1, keepdim=True).sqrt() + 1e-10)
            fy = fy / (fy.square().sum(1, keepdim=True).sqrt() + 1e-10)
            total += head((fx - fy).square()).mean((1, 2, 3))
        return total
