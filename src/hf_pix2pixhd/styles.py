"""Styles: per-instance encoder features, K-means per class, and choosing a style at inference.

In pix2pixHD the label map fixes the layout and a few feature channels from the encoder ``E``
(constant within each instance) fix texture and colour. To offer styles at inference:

1. :func:`encode_dataset` runs ``E`` over a dataset and keeps one feature vector per instance
   (the official "centre pixel" of the instance-pooled map, or the instance mean) with its
   class, area and mean photo colour. Without instance maps, each connected region of a class
   is an instance.
2. :func:`cluster_styles` runs K-means per class on the instances larger than a minimum area
   and stores the centres in a :class:`StyleBank`, a model component that the pipeline saves
   and loads with its other weights.
3. At inference a style is a cluster index per class (:meth:`StyleBank.lookup`), random
   indices (:meth:`StyleBank.random_indices`), or the class means of a reference photo
   (:func:`encode_reference`); :func:`paint_features` paints the chosen per-class vectors over
   the label map, as the official test code does.

:func:`build_style_bank` does 1 and 2 in one call; ``hf-pix2pixhd encode-styles`` wraps it.

Sketch and rgb models have no classes: the whole image is one instance of a single pseudo-class
(:data:`GLOBAL_STYLE_CLASS`, id 0), so their styles are global colour and texture codes and
their style bank has ``num_classes=1``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from .imaging import pad_to_multiple
from .models.encoder import FeatureEncoder, instance_average_pool, instance_segment_ids
from .models.modes import eval_mode

__all__ = [
    "FEATURE_MODES",
    "GLOBAL_STYLE_CLASS",
    "InstanceFeatures",
    "StyleBank",
    "build_style_bank",
    "centre_pixels",
    "class_id",
    "cluster_styles",
    "encode_dataset",
    "encode_instances",
    "encode_reference",
    "instance_regions",
    "paint_features",
    "style_indices",
]

#: ``"centre"``: the instance-pooled feature at the instance's centre pixel (official);
#: ``"mean"``: the mean of the encoder's per-pixel (unpooled) features over the instance.
FEATURE_MODES = ("centre", "mean")

#: The official threshold: an instance is kept when its area exceeds 1/64 of the image
#: (``num / (h * w // 32) > 0.5`` in pix2pixHD's encode_features.py).
MIN_AREA_FRACTION = 1 / 64
#: Whole-image style swatches leave out near-white background (all channels at or above this,
#: in [0, 1]) unless less than MIN_OBJECT_FRACTION of the photo is anything else.
BACKGROUND_WHITE = 0.92
MIN_OBJECT_FRACTION = 0.02

#: The name of the single style class of sketch / rgb models (id 0): the whole image.
GLOBAL_STYLE_CLASS = "style"


class StyleBank(ModelMixin, ConfigMixin):
    """Per-class K-means centres of encoder features: the styles a user can pick from.

    Clusters of each class are sorted by size (number of member instances), largest first, so
    cluster 0, the default style, is the most common look of the class.

    Buffers (saved as safetensors with the pipeline):
        centers: ``(num_classes, max_clusters, feature_nc)`` float, in the encoder's output
            range (``[-1, 1]``); rows past a class's cluster count are 0.
        num_clusters: ``(num_classes,)`` int64, how many clusters each class really has (0 for
            classes never seen when encoding).
        cluster_sizes: ``(num_classes, max_clusters)`` int64, member instances per cluster.
        swatches: ``(num_classes, max_clusters, 3)`` uint8 RGB, the mean colour of the member
            instances' pixels in the training photos (for whole-image styles, of the photos'
            objects: see :func:`object_colors`): a preview of each style for UIs.

    Args:
        num_classes: the pipeline's ``label_nc``; 1 for sketch / rgb models (one global style
            class, :data:`GLOBAL_STYLE_CLASS`).
        feature_nc: encoder feature channels (the pipeline's ``feature_nc``).
        max_clusters: clusters per class at most (K-means ``n_clusters``).
        feature: how instance features were taken (one of :data:`FEATURE_MODES`); a record.
        min_area_fraction: the area threshold used when clustering; a record.
        seed: the K-means seed used; a record.
    """

    @register_to_config
    def __init__(
        self,
        num_classes: int,
        feature_nc: int,
        max_clusters: int = 10,
        feature: str = "centre",
        min_area_fraction: float = MIN_AREA_FRACTION,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_classes", num_classes),
            ("feature_nc", feature_nc),
            ("max_clusters", max_clusters),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"StyleBank {name} must be a positive int, got {value!r}.")
        if num_classes * max_clusters * feature_nc > 1 << 28:  # refused before allocating
            raise ValueError(
                f"StyleBank of {num_classes} classes x {max_clusters} clusters x {feature_nc} "
                "features is implausibly large (over 2**28 values); is the config right?"
            )
        if feature not in FEATURE_MODES:
            raise ValueError(f"feature must be one of {FEATURE_MODES}, got {feature!r}.")
        self.register_buffer("centers", torch.zeros(num_classes, max_clusters, feature_nc))
        self.register_buffer("num_clusters", torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer(
            "cluster_sizes", torch.zeros(num_classes, max_clusters, dtype=torch.long)
        )
        self.register_buffer(
            "swatches", torch.zeros(num_classes, max_clusters, 3, dtype=torch.uint8)
        )

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Per-class feature tables for cluster choices.

        Args:
            indices: ``(S, num_classes)`` int64 cluster index per class (checked by the caller,
                e.g. :func:`style_indices`; classes without clusters may hold anything).

        Returns:
            ``(S, num_classes, feature_nc)`` float32; 0 for classes without clusters.
        """
        counts = self.num_clusters.to(indices.device)
        safe = indices.clamp(min=0).minimum((counts - 1).clamp(min=0))
        classes = torch.arange(self.config.num_classes, device=indices.device)
        tables = self.centers.to(indices.device, torch.float32)[classes, safe]
        return tables * (counts > 0).view(1, -1, 1)

    def default_indices(self, count: int = 1) -> torch.Tensor:
        """``(count, num_classes)`` zeros: every class at its largest cluster."""
        return torch.zeros(count, self.config.num_classes, dtype=torch.long)

    def random_indices(
        self, count: int = 1, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``(count, num_classes)`` cluster indices drawn uniformly per class (reproducible with
        ``generator``; one draw per class whether or not a label map shows it)."""
        uniform = torch.rand(count, self.config.num_classes, generator=generator)
        counts = self.num_clusters.cpu().clamp(min=1)
        return (uniform * counts).long().minimum(counts - 1)

    def swatches_for(self, class_index: int) -> np.ndarray:
        """``(num_clusters[class], 3)`` uint8 preview colours of a class's styles, in index
        order."""
        count = int(self.num_clusters[class_index])
        return self.swatches[class_index, :count].cpu().numpy()


# -- resolving user choices ----------------------------------------------------------------


def class_id(key: int | str, num_classes: int, class_names: Sequence[str] | None = None) -> int:
    """A class given by id or name as its id; a clear error listing the valid names otherwise."""
    if isinstance(key, bool):
        raise ValueError(f"A class must be an id or a name, got {key!r}.")
    if isinstance(key, int | np.integer):
        if not 0 <= int(key) < num_classes:
            raise ValueError(f"Class id {key} is out of range: ids are 0..{num_classes - 1}.")
        return int(key)
    if isinstance(key, str):
        names = list(class_names or [])
        if key in names:
            return names.index(key)
        folded = [n.casefold() for n in names]
        if key.casefold() in folded:
            return folded.index(key.casefold())
        if key.strip().isdigit():
            return class_id(int(key), num_classes, class_names)
        valid = ", ".join(repr(n) for n in names) if names else "(this model has no class names)"
        raise ValueError(f"Unknown class name {key!r}. Valid names: {valid}; or use an id.")
    raise ValueError(f"A class must be an id (int) or a name (str), got {type(key).__name__}.")


def style_indices(
    choice: Mapping[int | str, int], bank: StyleBank, class_names: Sequence[str] | None = None
) -> torch.Tensor:
    """``{class id or name: cluster index}`` as ``(num_classes,)`` int64 indices; classes not
    named stay at 0, the largest cluster. Out-of-range indices raise, saying how many clusters
    the class has."""
    indices = bank.default_indices(1)[0]
    counts = bank.num_clusters.cpu()
    for key, index in choice.items():
        cls = class_id(key, bank.config.num_classes, class_names)
        name = f"{class_names[cls]!r} (id {cls})" if class_names else f"id {cls}"
        count = int(counts[cls])
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise ValueError(
                f"The style of class {name} must be a cluster index (int), got {index!r}."
            )
        if count == 0:
            raise ValueError(
                f"Class {name} has no styles in this style bank: no instance of it was found "
                "when the styles were encoded."
            )
        if not 0 <= int(index) < count:
            raise ValueError(
                f"Cluster index {index} is out of range for class {name}: it has {count} "
                f"cluster{'s' if count != 1 else ''} (indices 0..{count - 1})."
            )
        indices[cls] = int(index)
    return indices


# -- encoding --------------------------------------------------------------------------------


@dataclass
class InstanceFeatures:
    """One row per instance of an encoded dataset (what :func:`cluster_styles` clusters).

    Attributes:
        features: ``(M, F)`` float32 encoder features.
        classes: ``(M,)`` int64 class ids.
        areas: ``(M,)`` int64 instance areas in pixels.
        image_pixels: ``(M,)`` int64 pixel count of each instance's image.
        colors: ``(M, 3)`` float32 mean RGB of the instance's photo pixels, in ``[0, 1]``.
    """

    features: torch.Tensor
    classes: torch.Tensor
    areas: torch.Tensor
    image_pixels: torch.Tensor
    colors: torch.Tensor

    def __len__(self) -> int:
        return int(self.classes.numel())

    @classmethod
    def concat(cls, parts: Sequence[InstanceFeatures], feature_nc: int) -> InstanceFeatures:
        """Rows of ``parts`` in order (an empty set with ``feature_nc`` columns if none)."""
        if not parts:
            empty = torch.zeros(0, dtype=torch.long)
            return cls(torch.zeros(0, feature_nc), empty, empty, empty, torch.zeros(0, 3))
        return cls(
            *(
                torch.cat([getattr(p, f) for p in parts])
                for f in ("features", "classes", "areas", "image_pixels", "colors")
            )
        )


def object_colors(photos: torch.Tensor) -> torch.Tensor:
    """``(N, 3)`` mean RGB in ``[0, 1]`` of each photo's object: its pixels that are not
    near-white background (some channel below :data:`BACKGROUND_WHITE`).

    The swatch of a whole-image style: a shoe or handbag photo is mostly white background,
    whose plain mean turns every style's swatch pale grey. Photos with less than
    :data:`MIN_OBJECT_FRACTION` of such pixels (a white object on white) use all pixels.

    Args:
        photos: ``(N, 3, H, W)`` float in ``[-1, 1]``.
    """
    rgb = _unit_rgb(photos).flatten(2)  # (N, 3, H*W)
    is_object = (rgb.amin(1) < BACKGROUND_WHITE).float()  # (N, H*W)
    is_object[is_object.sum(1) < MIN_OBJECT_FRACTION * rgb.shape[-1]] = 1.0
    return (rgb * is_object[:, None]).sum(2) / is_object.sum(1, keepdim=True)


def _unit_rgb(photos: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` photos in ``[-1, 1]`` as float32 RGB in ``[0, 1]`` on the CPU."""
    return (photos.detach().float().cpu().clamp(-1, 1) + 1) / 2


def _as_batch_map(tensor: torch.Tensor, what: str) -> torch.Tensor:
    """``(N, 1, H, W)`` or ``(N, H, W)`` ids as ``(N, H, W)`` int64."""
    if tensor.ndim == 4 and tensor.shape[1] == 1:
        tensor = tensor[:, 0]
    if tensor.ndim != 3:
        raise ValueError(f"{what} must be (N, 1, H, W) or (N, H, W), got {tuple(tensor.shape)}.")
    return tensor.long()


def instance_regions(
    labels: torch.Tensor, instances: torch.Tensor | None = None
) -> tuple[torch.Tensor, int]:
    """A region index per pixel: one region per (image, instance id, class), or, without an
    instance map, per connected region (4-connectivity) of a class in an image.

    Splitting instances by the label map makes every region single-class. On Cityscapes-style
    maps (instance id = class id below 1000, class * 1000 + k above) this is exactly the
    official ``id if id < 1000 else id // 1000``, and it stays right for maps that do not
    follow that convention.

    Args:
        labels: ``(N, 1, H, W)`` or ``(N, H, W)`` class ids.
        instances: the same shape of instance ids, or None.

    Returns:
        ``(N*H*W,)`` int64 region index (row-major per image, images in order) and the number
        of regions (some may be empty).
    """
    labels = _as_batch_map(labels, "labels")
    if instances is not None:
        instances = _as_batch_map(instances, "instances")
        if instances.shape != labels.shape:
            raise ValueError(
                f"Instance map shape {tuple(instances.shape)} differs from the label map's "
                f"{tuple(labels.shape)}."
            )
        keys = (instances - instances.min()) * (int(labels.max()) + 1) + labels
        return instance_segment_ids(keys)
    from scipy import ndimage

    ids = labels.cpu().numpy()
    regions = np.empty(ids.shape, dtype=np.int64)
    # In-plane 4-connectivity only: regions never join across the images of a batch.
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    total = 0
    for value in np.unique(ids):  # one labelling per class, not per pixel or per region
        mask = ids == value
        components, count = ndimage.label(mask, structure=structure)
        regions[mask] = components[mask] + (total - 1)
        total += count
    return torch.from_numpy(regions).reshape(-1).to(labels.device), total


def centre_pixels(
    regions: torch.Tensor, count: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The official centre pixel of every region: the middle entry (``idx[num // 2]``) of the
    region's pixel list in row-major order.

    Args:
        regions: ``(P,)`` int64 region index per pixel (flattened row-major), in ``[0, count)``.
        count: number of regions.

    Returns:
        ``(R,)`` flat pixel index of each non-empty region's centre, ``(count,)`` region sizes,
        and the ``(count,)`` bool mask of non-empty regions (R of them, in region order).
    """
    sizes = torch.bincount(regions, minlength=count)
    # A stable sort keeps each region's pixels in row-major order.
    order = torch.argsort(regions, stable=True)
    starts = torch.cumsum(sizes, 0) - sizes
    present = sizes > 0
    return order[starts[present] + sizes[present] // 2], sizes, present


def _encode_pixels(
    encoder: FeatureEncoder, photos: torch.Tensor, autocast_dtype: torch.dtype | None
) -> torch.Tensor:
    """``E``'s per-pixel (unpooled) features, ``(N, F, H, W)`` float32 on ``photos``' device.

    Padded (edge replication) to the encoder's size multiple and cropped back, so any size
    works; channels_last under autocast, where oneDNN's bf16 kernels want it.
    """
    height, width = photos.shape[-2:]
    padded, _ = pad_to_multiple(photos, encoder.size_multiple, encoder.min_size)
    param = next(encoder.parameters())
    padded = padded.to(param.device, param.dtype)
    autocast = contextlib.nullcontext()
    if autocast_dtype is not None:
        autocast = torch.autocast(param.device.type, dtype=autocast_dtype)
    if autocast_dtype is not None or param.dtype in (torch.bfloat16, torch.float16):
        padded = padded.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), eval_mode(encoder), autocast:
        raw = encoder.encode(padded)
    return raw[..., :height, :width].float().contiguous().to(photos.device)


def encode_instances(
    encoder: FeatureEncoder,
    photos: torch.Tensor,
    labels: torch.Tensor,
    instances: torch.Tensor | None = None,
    feature: str = "centre",
    autocast_dtype: torch.dtype | None = None,
) -> InstanceFeatures:
    """One feature vector per instance of a batch (no Python loop over instances).

    Args:
        encoder: the trained feature encoder.
        photos: ``(N, 3, H, W)`` float in ``[-1, 1]``.
        labels: ``(N, 1, H, W)`` class ids.
        instances: ``(N, 1, H, W)`` instance ids, or None: connected regions of a class are
            the instances, and the encoder pools over the label map as it did in training.
        feature: ``"centre"`` (official: the pooled feature at the middle pixel of the
            instance's pixel list in row-major order, ``idx[num // 2]``) or ``"mean"`` (the
            per-pixel features averaged over the instance).
        autocast_dtype: e.g. ``torch.bfloat16`` to run the encoder under autocast.

    Returns:
        :class:`InstanceFeatures` with one row per non-empty instance.
    """
    if feature not in FEATURE_MODES:
        raise ValueError(f"feature must be one of {FEATURE_MODES}, got {feature!r}.")
    if photos.ndim != 4 or photos.shape[1] != 3:
        raise ValueError(f"photos must be (N, 3, H, W), got {tuple(photos.shape)}.")
    n, _, height, width = photos.shape
    labels = _as_batch_map(labels, "labels")
    if labels.shape != (n, height, width):
        raise ValueError(
            f"Label maps {tuple(labels.shape)} do not match the photos {tuple(photos.shape)}."
        )
    regions, count = instance_regions(labels, instances)
    raw = _encode_pixels(encoder, photos, autocast_dtype)
    # "centre": pool over what training pooled over (instance map, else label map);
    # "mean": pool over the instances themselves. Either way read one pixel per instance.
    pool_map = (
        regions.view(n, height, width)
        if feature == "mean"
        else (labels if instances is None else instances)
    )
    pooled = instance_average_pool(raw, pool_map.to(raw.device)).cpu()
    regions = regions.cpu()
    centre, sizes, present = centre_pixels(regions, count)
    flat_features = pooled.permute(0, 2, 3, 1).reshape(-1, pooled.shape[1])
    rgb = _unit_rgb(photos).permute(0, 2, 3, 1)
    color_sums = torch.zeros(count, 3).index_add_(0, regions, rgb.reshape(-1, 3))
    areas = sizes[present]
    return InstanceFeatures(
        features=flat_features[centre],
        classes=labels.cpu().reshape(-1)[centre],
        areas=areas,
        image_pixels=torch.full_like(areas, height * width),
        colors=color_sums[present] / areas.unsqueeze(1).float(),
    )


def _has_instance_map(item: Mapping[str, Any]) -> bool:
    # The data layer copies the label map into "instance" when a sample has no instance file;
    # that is not an instance map, and connected regions are the instances then.
    instance = item.get("instance")
    return instance is not None and not torch.equal(instance, item["label"])


def _group_items(items: Iterable[Mapping[str, Any]]) -> Iterator[list[Mapping[str, Any]]]:
    """Consecutive runs of items that can share one batch (same size, same instance source)."""
    group: list[Mapping[str, Any]] = []
    key = None
    for item in items:
        item_key = (tuple(item["target"].shape), _has_instance_map(item))
        if group and item_key != key:
            yield group
            group = []
        group.append(item)
        key = item_key
    if group:
        yield group


def encode_dataset(
    encoder: FeatureEncoder,
    dataset: Iterable[Mapping[str, Any]],
    feature: str = "centre",
    batch_size: int = 8,
    num_workers: int = 0,
    autocast_dtype: torch.dtype | None = None,
    progress: bool = True,
) -> InstanceFeatures:
    """Encode every instance of a dataset (see :func:`encode_instances`).

    Args:
        encoder: the trained feature encoder (any device; instances are gathered on CPU).
        dataset: items with ``"target"`` ``(3, H, W)`` photos in ``[-1, 1]``, ``"label"``
            ``(1, H, W)`` int64 and optionally ``"instance"`` ``(1, H, W)`` int64, e.g.
            :func:`hf_pix2pixhd.data.build_dataset` with ``input_kind="labels"`` and no flip.
            Items without ``"label"`` (sketch / rgb data) are one instance of class 0 each,
            the whole image, as the encoder pooled in training: one global code per photo.
        feature: ``"centre"`` or ``"mean"``.
        batch_size: images per encoder forward pass (items of one size are batched).
        num_workers: DataLoader workers that decode images while the encoder runs.
        autocast_dtype: e.g. ``torch.bfloat16`` (several times faster on CPUs with AMX).
        progress: show a tqdm progress bar.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    total = len(dataset) if hasattr(dataset, "__len__") else None
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, collate_fn=list, num_workers=num_workers
    )
    parts = []
    with tqdm(total=total, desc="encoding styles", unit="img", disable=not progress) as bar:
        for items in loader:
            for group in _group_items(items):
                if "target" not in group[0]:
                    raise ValueError(
                        "Encoding styles needs data with photos: items with 'target' (and "
                        "'label' for label-map models)."
                    )
                photos = torch.stack([item["target"] for item in group])
                if "label" in group[0]:
                    labels = torch.stack([item["label"] for item in group])
                    instances = None
                    if _has_instance_map(group[0]):
                        instances = torch.stack([item["instance"] for item in group])
                else:  # sketch / rgb: the whole image is one instance of class 0
                    labels = torch.zeros(len(group), 1, *photos.shape[-2:], dtype=torch.long)
                    instances = labels
                part = encode_instances(encoder, photos, labels, instances, feature, autocast_dtype)
                if "label" not in group[0]:
                    part = replace(part, colors=object_colors(photos))
                parts.append(part)
                bar.update(len(group))
    return InstanceFeatures.concat(parts, encoder.config.out_channels)


# -- clustering ------------------------------------------------------------------------------


def _kmeans(points: np.ndarray, n_clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres and member labels; fewer clusters when there are fewer distinct points."""
    from sklearn.cluster import KMeans

    distinct = len(np.unique(points, axis=0))
    k = min(n_clusters, distinct)
    if k == 1:
        return points.mean(0, keepdims=True), np.zeros(len(points), dtype=np.int64)
    # n_init=10: the official code's (scikit-learn's old default); cheap for these sizes.
    kmeans = KMeans(n_clusters=k, random_state=seed, n_init=10).fit(points)
    return kmeans.cluster_centers_, kmeans.labels_.astype(np.int64)


def cluster_styles(
    instances: InstanceFeatures,
    num_classes: int,
    n_clusters: int = 10,
    min_area_fraction: float = MIN_AREA_FRACTION,
    seed: int = 0,
    feature: str = "centre",
) -> StyleBank:
    """K-means per class on the instances larger than ``min_area_fraction`` of their image.

    As the official code, except that a class whose instances are all small is clustered on
    those small instances instead of being left without any style. Clusters are sorted by
    size, largest first. Each cluster's swatch is the pixel-weighted mean colour of its
    members.

    Args:
        instances: from :func:`encode_dataset`.
        num_classes: the pipeline's ``label_nc`` (1 for sketch / rgb models).
        n_clusters: clusters per class at most (fewer when a class has fewer distinct points).
        min_area_fraction: keep instances with ``area > min_area_fraction * H * W``.
        seed: K-means seed.
        feature: how the features were taken (recorded in the bank's config).
    """
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be >= 1, got {n_clusters}.")
    if len(instances) and int(instances.classes.max()) >= num_classes:
        raise ValueError(
            f"Instances of class {int(instances.classes.max())} found, but num_classes is "
            f"{num_classes}."
        )
    feature_nc = instances.features.shape[1]
    bank = StyleBank(num_classes, feature_nc, n_clusters, feature, float(min_area_fraction), seed)
    features = instances.features.double().numpy()
    classes = instances.classes.numpy()
    areas = instances.areas.numpy().astype(np.float64)
    large = areas > min_area_fraction * instances.image_pixels.numpy()
    weighted_colors = instances.colors.double().numpy() * areas[:, None]
    for cls in range(num_classes):
        of_class = classes == cls
        chosen = of_class & large
        if not chosen.any():
            chosen = of_class
        if not chosen.any():
            continue
        centres, members = _kmeans(features[chosen], n_clusters, seed)
        k = len(centres)
        sizes = np.bincount(members, minlength=k)
        pixels = np.bincount(members, weights=areas[chosen], minlength=k)
        colors = (
            np.stack(
                [
                    np.bincount(members, weights=weighted_colors[chosen, c], minlength=k)
                    for c in range(3)
                ],
                1,
            )
            / pixels[:, None]
        )
        order = np.argsort(-sizes, kind="stable")
        bank.centers[cls, :k] = torch.from_numpy(centres[order]).float()
        bank.num_clusters[cls] = k
        bank.cluster_sizes[cls, :k] = torch.from_numpy(sizes[order])
        bank.swatches[cls, :k] = torch.from_numpy(np.round(colors[order] * 255).astype(np.uint8))
    return bank


def build_style_bank(
    encoder: FeatureEncoder,
    dataset: Iterable[Mapping[str, Any]],
    num_classes: int,
    n_clusters: int = 10,
    feature: str = "centre",
    min_area_fraction: float = MIN_AREA_FRACTION,
    seed: int = 0,
    batch_size: int = 8,
    num_workers: int = 0,
    autocast_dtype: torch.dtype | None = None,
    progress: bool = True,
) -> StyleBank:
    """:func:`encode_dataset` then :func:`cluster_styles`; attach the result with
    :meth:`Pix2PixHDPipeline.set_style_bank`."""
    instances = encode_dataset(
        encoder, dataset, feature, batch_size, num_workers, autocast_dtype, progress
    )
    if not len(instances):
        raise ValueError("The dataset holds no instances to cluster (is it empty?).")
    return cluster_styles(instances, num_classes, n_clusters, min_area_fraction, seed, feature)


# -- inference -------------------------------------------------------------------------------


def encode_reference(
    encoder: FeatureEncoder,
    photo: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class features of a reference photo: the mean encoder feature over each class.

    Args:
        photo: ``(1, 3, H, W)`` in ``[-1, 1]``.
        labels: ``(1, 1, H, W)`` class ids of the photo, ids in ``[0, num_classes)``.

    Returns:
        ``(num_classes, F)`` float32 table (0 for absent classes) and a ``(num_classes,)`` bool
        mask of the classes the reference shows.
    """
    if photo.shape[0] != 1 or tuple(photo.shape[-2:]) != tuple(labels.shape[-2:]):
        raise ValueError(
            f"The reference photo {tuple(photo.shape)} and its label map "
            f"{tuple(labels.shape)} must be one image of the same size."
        )
    raw = _encode_pixels(encoder, photo, autocast_dtype)
    ids = _as_batch_map(labels, "labels").to(raw.device)
    pooled = instance_average_pool(raw, ids)  # class means, painted per pixel
    flat_ids = ids.reshape(-1)
    pixels = flat_ids.numel()
    first = torch.full((num_classes,), pixels, dtype=torch.long, device=raw.device)
    first.scatter_reduce_(0, flat_ids, torch.arange(pixels, device=raw.device), "amin")
    present = first < pixels
    table = torch.zeros(num_classes, raw.shape[1], device=raw.device)
    table[present] = pooled.flatten(2)[0][:, first[present]].T
    return table.cpu(), present.cpu()


def paint_features(tables: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Paint per-class feature vectors over a label map (every instance of a class alike).

    Args:
        tables: ``(S, num_classes, F)`` one table per style.
        labels: ``(1, 1, H, W)`` or ``(H, W)`` class ids.

    Returns:
        ``(S, F, H, W)`` on ``tables``' device and dtype.
    """
    height, width = labels.shape[-2:]
    flat = labels.reshape(-1).to(tables.device, torch.long)
    painted = tables.index_select(1, flat)  # (S, H*W, F)
    return painted.view(tables.shape[0], height, width, -1).permute(0, 3, 1, 2).contiguous()
