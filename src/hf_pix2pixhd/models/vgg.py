"""VGG feature extractor for the perceptual loss, with torchvision's key layout.

We do not depend on torchvision (its PyPI wheels are CUDA-only); the layers are defined here
with the same ``features.N`` numbering, so torchvision weight files load as they are.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
#: Point this at a local weight file to use instead of the download (e.g. in offline setups).
VGG_WEIGHTS_ENV = "HF_PIX2PIXHD_VGG_WEIGHTS"

_CONFIGS: dict[str, list[int | str]] = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    "vgg19": [
        *(64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"),
        *(512, 512, 512, 512, "M", 512, 512, 512, 512),
    ],
}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGFeatures(ModelMixin, ConfigMixin):
    """Frozen VGG16/19 ``features`` returning relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1.

    Layers after relu5_1 are not built. Keys are torchvision's (``features.0.weight``, ...).

    Input: ``(N, 3, H, W)`` RGB in ``[-1, 1]``. With ``normalize_input`` it is mapped to
    ImageNet statistics first (more correct; the official pix2pixHD skips this).
    Output: a list of 5 feature maps, finest first.
    """

    @register_to_config
    def __init__(self, variant: str = "vgg19", normalize_input: bool = True) -> None:
        super().__init__()
        if variant not in _CONFIGS:
            raise ValueError(f"Unknown VGG variant {variant!r}: use one of {sorted(_CONFIGS)}.")
        layers: list[nn.Module] = []
        taps: list[int] = []
        in_channels, block_start = 3, True
        for item in _CONFIGS[variant]:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
                block_start = True
                continue
            layers += [nn.Conv2d(in_channels, int(item), 3, padding=1), nn.ReLU(inplace=True)]
            if block_start:
                taps.append(len(layers) - 1)
            in_channels, block_start = int(item), False
        self.features = nn.Sequential(*layers[: taps[-1] + 1])
        self.tap_indices = tuple(taps)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), False)
        self.requires_grad_(False)

    @classmethod
    def from_torchvision_weights(
        cls, source: str | os.PathLike | None = None, variant: str = "vgg19", **config
    ) -> VGGFeatures:
        """Build and load torchvision VGG weights from a URL or a local file.

        ``source`` may be a ``.pth`` or ``.safetensors`` file (full VGG or ``features`` only)
        or an http(s) URL (fetched with ``torch.hub``). Without it, ``$HF_PIX2PIXHD_VGG_WEIGHTS``
        is used, then the torchvision URL for the variant.
        """
        source = source or os.environ.get(VGG_WEIGHTS_ENV)
        source = source or (VGG19_URL if variant == "vgg19" else VGG16_URL)
        model = cls(variant=variant, **config)
        state = _read_state_dict(str(source))
        wanted = model.features.state_dict()
        missing = [f"features.{k}" for k in wanted if f"features.{k}" not in state]
        if missing:
            raise ValueError(
                f"{source} does not hold {variant} features weights: missing {missing[:4]}. "
                f"Pass a torchvision {variant} weight file (keys 'features.N.weight') and the "
                "matching variant."
            )
        for key, value in wanted.items():
            incoming = state[f"features.{key}"]
            if incoming.shape != value.shape:
                raise ValueError(
                    f"features.{key} in {source} has shape {tuple(incoming.shape)}, expected "
                    f"{tuple(value.shape)}: is it really a {variant} file?"
                )
        model.features.load_state_dict({k: state[f"features.{k}"] for k in wanted})
        return model.eval()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = x.to(self.features[0].weight.dtype)
        if self.config.normalize_input:
            x = ((x + 1) / 2 - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        outputs, start = [], 0
        for tap in self.tap_indices:
            x = self.features[start : tap + 1](x)
            outputs.append(x)
            start = tap + 1
        return outputs


def _read_state_dict(source: str) -> dict[str, torch.Tensor]:
    if source.startswith(("http://", "https://")):
        return torch.hub.load_state_dict_from_url(source, map_location="cpu", weights_only=True)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"VGG weight file {path} not found; pass a path or set ${VGG_WEIGHTS_ENV}."
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)
