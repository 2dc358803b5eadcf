"""Generating the images to score: :func:`generate_images` runs a pipeline on every item of
a paired dataset (label maps, sketches or photos, with instance maps and encoder features where
the model takes them) and collects the real and the 8-bit-quantised generated images in a
:class:`GeneratedSet`; :func:`save_sample_grid` writes the ``input | output | target`` grid of
its first items."""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..imaging import pad_to_multiple
from .errors import EvaluationError
from .images import quantize


@dataclasses.dataclass
class GeneratedSet:
    """Outputs of :func:`generate_images`: paired ``(3, H, W)`` images in ``[-1, 1]``."""

    real: list[torch.Tensor]
    fake: list[torch.Tensor]
    names: list[str]
    #: the first items as a collated batch (``sample_grid``'s input), with ``grid_outputs``.
    grid_batch: dict[str, Any]
    grid_outputs: torch.Tensor
    seconds: float


def _model_input(item: dict[str, Any], pipeline: Any) -> Any:
    """What the pipeline takes for one data item: ``(H, W)`` ids or a ``(C, H, W)`` image."""
    if pipeline.config.input_kind == "labels":
        if "label" not in item:
            raise EvaluationError(
                "the model takes label maps but the data gives images; read the data with "
                "--input-kind labels (and --label-nc / --palette)"
            )
        return item["label"][0]
    if "input" not in item:
        raise EvaluationError(
            f"the model takes {pipeline.config.input_kind} images but the data gives label maps; "
            f"read the data with --input-kind {pipeline.config.input_kind}"
        )
    image = item["input"]
    if pipeline.translator.config.in_channels == 1 and image.shape[0] == 3:
        # Grey as PIL's "L" conversion (ITU-R 601-2), what the pipeline does for PIL sketches.
        weights = image.new_tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
        image = (image * weights).sum(0, keepdim=True)
    return image


def _encode_target_features(pipeline: Any, items: list[dict[str, Any]]) -> torch.Tensor:
    """pix2pixHD's reconstruction features: the encoder on the real photo, pooled per instance."""
    encoder = pipeline.encoder
    if encoder is None:
        raise EvaluationError(
            f"the model takes {pipeline.config.feature_nc} feature channels but has no encoder; "
            "pass features_fn to evaluate_pipeline"
        )
    targets = torch.stack([item["target"] for item in items])
    height, width = targets.shape[-2:]
    if "label" in items[0]:
        instances = torch.stack([item.get("instance", item["label"]) for item in items])
    else:  # sketch / rgb models: the whole image is one instance (global style codes)
        instances = torch.zeros(len(items), 1, height, width, dtype=torch.long)
    multiple = encoder.size_multiple
    targets, _ = pad_to_multiple(targets, multiple)
    instances, _ = pad_to_multiple(instances, multiple)
    with torch.inference_mode():
        features = encoder(
            targets.to(pipeline.device, encoder.dtype), instances.to(pipeline.device)
        )
    return features[..., :height, :width].float().cpu()


def generate_images(
    pipeline: Any,
    dataset: Iterable[dict[str, Any]],
    batch_size: int = 8,
    grid_rows: int = 8,
    features_fn: Callable[[list[dict[str, Any]]], torch.Tensor] | None = None,
    paper_test_mode: bool = False,
    progress: bool = False,
) -> GeneratedSet:
    """Run ``pipeline`` on every item of a paired dataset (:func:`hf_pix2pixhd.data.build_dataset`).

    Outputs are quantised to 8-bit levels (as a saved image). For models with encoder feature
    channels, ``features_fn(items) -> (N, feature_nc, H, W)`` supplies them (e.g. from a style
    bank); by default they are encoded from the real photos (pix2pixHD's reconstruction setting,
    which gives the generator the targets' per-instance style).
    """
    if batch_size < 1:
        raise EvaluationError(f"batch_size must be >= 1, got {batch_size}")
    total = len(dataset) if hasattr(dataset, "__len__") else None
    real: list[torch.Tensor] = []
    fake: list[torch.Tensor] = []
    names: list[str] = []
    grid_items: list[dict[str, Any]] = []
    grid_fake: list[torch.Tensor] = []
    start = time.perf_counter()

    def run(items: list[dict[str, Any]]) -> None:
        inputs = [_model_input(item, pipeline) for item in items]
        kwargs: dict[str, Any] = {}
        if pipeline.config.input_kind == "labels" and pipeline.config.use_instance_map:
            kwargs["instance_map"] = [item.get("instance", item["label"])[0] for item in items]
        if pipeline.config.feature_nc:
            encode = features_fn or functools.partial(_encode_target_features, pipeline)
            kwargs["features"] = encode(items)
        outputs = pipeline(
            inputs, output_type="pt", paper_test_mode=paper_test_mode, **kwargs
        ).images
        for item, output in zip(items, outputs, strict=True):
            image = quantize(output.float() * 2 - 1)  # the pipeline's "pt" output is [0, 1]
            real.append(item["target"].float())
            fake.append(image)
            names.append(str(item.get("name", len(names))))
            if len(grid_items) < grid_rows and (
                not grid_items or item["target"].shape == grid_items[0]["target"].shape
            ):
                grid_items.append(item)
                grid_fake.append(image)

    pending: list[dict[str, Any]] = []
    with tqdm(total=total, desc="generate", unit="img", disable=not progress) as bar:
        for item in dataset:
            pending.append(item)
            if len(pending) == batch_size:
                run(pending)
                bar.update(len(pending))
                pending = []
        if pending:
            run(pending)
            bar.update(len(pending))
    if not real:
        raise EvaluationError("the dataset gave no items to evaluate")
    from ..data import collate_pairs

    return GeneratedSet(
        real=real,
        fake=fake,
        names=names,
        grid_batch=collate_pairs(grid_items),
        grid_outputs=torch.stack(grid_fake),
        seconds=time.perf_counter() - start,
    )


def save_sample_grid(pipeline: Any, generated: GeneratedSet, path: str | os.PathLike) -> Path:
    """Write the ``input | output | target`` grid of the first generated items as a PNG."""
    from ..training.samples import sample_grid

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = sample_grid(
        generated.grid_batch,
        generated.grid_outputs,
        label_nc=pipeline.config.label_nc,
        palette=pipeline.palette,
    )
    grid.save(path)
    return path
