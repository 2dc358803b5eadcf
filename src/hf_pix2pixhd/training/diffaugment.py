"""Differentiable augmentation for the discriminator (DiffAugment, Zhao et al. 2020).

With a few hundred training pairs D memorises the real photos and its gradients stop helping G.
DiffAugment shows D only augmented pairs, real and fake alike, and keeps every transform
differentiable so G learns through it. Here one draw of parameters per step is shared by the
real and the fake pair (and by D's and G's passes), so pix2pixHD's feature matching still
compares like with like. Colour transforms touch the photo channels only; translation and
cutout move or blank the condition and the photo together, so the pair stays aligned.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str | None) -> tuple[str, ...]:
    """``"color,translation,cutout"`` -> the tuple of transforms; empty or None: none."""
    names = tuple(p.strip() for p in (policy or "").split(",") if p.strip())
    unknown = [name for name in names if name not in POLICIES]
    if unknown:
        raise ValueError(
            f"Unknown diffaugment transform(s) {unknown}: use a comma-separated subset of "
            f"{', '.join(POLICIES)} (e.g. 'color,translation,cutout'), or '' for none."
        )
    return names


@dataclass
class AugmentParams:
    """One draw of DiffAugment parameters for a batch of ``N`` pairs of size ``H x W``."""

    brightness: torch.Tensor | None = None  # (N, 1, 1, 1) added, in [-0.5, 0.5]
    saturation: torch.Tensor | None = None  # (N, 1, 1, 1) factor in [0, 2]
    contrast: torch.Tensor | None = None  # (N, 1, 1, 1) factor in [0.5, 1.5]
    grid: torch.Tensor | None = None  # (N, H, W, 2) sampling grid of the translation
    cutout: torch.Tensor | None = None  # (N, 1, H, W) 0 inside the cut square, 1 elsewhere


class DiffAugment:
    """Sample and apply DiffAugment's transforms to ``cat(condition, image)`` pairs.

    Args:
        policy: comma-separated transforms from :data:`POLICIES`.
        image_channels: the photo's channels at the end of each pair (3).
        translation_ratio: largest shift as a share of each side (DiffAugment: 1/8).
        cutout_ratio: side of the cut square as a share of each side (DiffAugment: 1/2).
    """

    def __init__(
        self,
        policy: str,
        image_channels: int = 3,
        translation_ratio: float = 0.125,
        cutout_ratio: float = 0.5,
    ) -> None:
        self.transforms = parse_policy(policy)
        self.image_channels = image_channels
        self.translation_ratio = translation_ratio
        self.cutout_ratio = cutout_ratio

    def __bool__(self) -> bool:
        return bool(self.transforms)

    def sample(self, batch: int, height: int, width: int, device: torch.device) -> AugmentParams:
        """Draw parameters from torch's global RNG (seeded and checkpointed by the trainer)."""
        params = AugmentParams()

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.rand(batch, 1, 1, 1, device=device) * (high - low) + low

        if "color" in self.transforms:
            params.brightness = uniform(-0.5, 0.5)
            params.saturation = uniform(0.0, 2.0)
            params.contrast = uniform(0.5, 1.5)
        if "translation" in self.transforms:
            params.grid = self._translation_grid(batch, height, width).to(device)
        if "cutout" in self.transforms:
            cut_h = int(height * self.cutout_ratio + 0.5)
            cut_w = int(width * self.cutout_ratio + 0.5)
            top = torch.randint(0, height + (1 - cut_h % 2), (batch, 1, 1)) - cut_h // 2
            left = torch.randint(0, width + (1 - cut_w % 2), (batch, 1, 1)) - cut_w // 2
            rows = torch.arange(height)[None, :, None]
            cols = torch.arange(width)[None, None, :]
            inside = (rows >= top) & (rows < top + cut_h) & (cols >= left) & (cols < left + cut_w)
            params.cutout = (~inside).float()[:, None].to(device)
        return params

    def _translation_grid(self, batch: int, height: int, width: int) -> torch.Tensor:
        """``(N, H, W, 2)`` grid_sample grid shifting each pair by whole pixels (zeros in)."""

        def shifted(size: int) -> torch.Tensor:
            reach = int(size * self.translation_ratio + 0.5)
            shift = torch.randint(-reach, reach + 1, (batch, 1))
            # normalised coordinates of the source pixel centres (align_corners=False)
            return (2 * (torch.arange(size, dtype=torch.float32)[None] - shift) + 1) / size - 1

        ys, xs = shifted(height), shifted(width)
        return torch.stack(
            [
                xs[:, None, :].expand(batch, height, width),
                ys[:, :, None].expand(batch, height, width),
            ],
            dim=-1,
        )

    def apply(self, pair: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """Augment ``(N, C, H, W)`` pairs (photo in the last ``image_channels``, in [-1, 1])."""
        if params.brightness is not None:
            condition, image = pair[:, : -self.image_channels], pair[:, -self.image_channels :]
            image = image + params.brightness.to(image.dtype)
            mean = image.mean(dim=1, keepdim=True)
            image = (image - mean) * params.saturation.to(image.dtype) + mean
            mean = image.mean(dim=(1, 2, 3), keepdim=True)
            image = (image - mean) * params.contrast.to(image.dtype) + mean
            pair = torch.cat([condition, image], 1)
        if params.grid is not None:
            pair = F.grid_sample(
                pair, params.grid.to(pair.dtype), mode="nearest", padding_mode="zeros",
                align_corners=False,
            )  # fmt: skip
        if params.cutout is not None:
            pair = pair * params.cutout.to(pair.dtype)
        return pair
