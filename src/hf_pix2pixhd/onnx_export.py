"""Export a pipeline's networks to ONNX, for inference with onnxruntime (no torch needed).

``export_onnx(model, out)`` writes:

- ``translator.onnx``: input ``input`` ``(batch, C, H, W)`` float32, the generator input the
  pipeline assembles (one-hot labels, instance boundaries, feature channels; or the image in
  ``[-1, 1]``), H and W multiples of ``size_multiple``; output ``image`` ``(batch, 3, H, W)`` in
  ``[-1, 1]``.
- ``encoder.onnx`` (pipelines with a feature encoder): inputs ``image`` ``(batch, 3, H, W)``
  float32 in ``[-1, 1]`` and ``instance_map`` ``(batch, 1, H, W)`` int64; output ``features``
  ``(batch, feature_nc, H, W)``, constant inside each instance.
- ``pipeline.json``: the input conventions (input kind, palette, class names, instance map,
  feature channels, size multiples) and the file names.
- ``default_style.npy`` ``(num_style_classes, feature_nc)`` float32 (pipelines with a style
  bank): the per-class features of the default style, to paint over the label map; and
  ``style_bank.npz`` with every cluster centre (``centers``, ``num_clusters``).

Batch, height and width are dynamic. Networks are exported in fp32 and eval mode (dropout off,
BatchNorm running statistics), with the ``torch.export``-based exporter (``dynamo=True``, the
default of ``torch.onnx.export`` since torch 2.9; it needs ``onnxscript``, a pure-Python
package: install the ``onnx`` extra).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import ModelMixin

MANIFEST_NAME = "pipeline.json"
TRANSLATOR_FILE = "translator.onnx"
ENCODER_FILE = "encoder.onnx"
DEFAULT_STYLE_FILE = "default_style.npy"
STYLE_BANK_FILE = "style_bank.npz"
#: Above this many weight bytes the weights go to a ``.onnx.data`` file beside the graph
#: (protobuf files cannot exceed 2 GiB).
_EXTERNAL_DATA_BYTES = 1_500_000_000
#: The pipeline's input conventions that ``pipeline.json`` carries.
_PIPELINE_SETTINGS = ("input_kind", "label_nc", "palette", "class_names", "use_instance_map",
                      "feature_nc", "resize_mode")  # fmt: skip
# Whole-program export warnings that say nothing about our networks (torchvision ops absent).
_QUIET_LOGGERS = ("torch.onnx._internal.exporter._registration",)


@dataclass
class OnnxExport:
    """Paths written by :func:`export_onnx` (``encoder`` / style files None when absent)."""

    directory: Path
    translator: Path
    manifest: Path
    encoder: Path | None = None
    default_style: Path | None = None
    style_bank: Path | None = None


def _require_exporter() -> None:
    try:
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "ONNX export needs the onnx and onnxscript packages: pip install 'hf-pix2pixhd[onnx]'."
        ) from error


def _fp32_eval_copy(model: torch.nn.Module) -> torch.nn.Module:
    """An fp32, contiguous-format, eval-mode CPU copy (the caller's model is left as it is)."""
    # .float(), not .to(dtype): diffusers warns on ModelMixin.to(dtype) of a loaded model.
    model = copy.deepcopy(model).cpu().float()
    return model.to(memory_format=torch.contiguous_format).eval()


def _export(
    model: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_shapes: tuple[dict, ...],
    opset: int | None,
) -> Path:
    weight_bytes = sum(p.numel() * 4 for p in model.parameters())
    levels = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # Notes from the exporter about its own internals, not about the exported network.
            warnings.filterwarnings("ignore", message=".*shares the same shape constraints.*")
            warnings.filterwarnings("ignore", message=".*treespec.*", category=FutureWarning)
            program = torch.onnx.export(
                model,
                args,
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=dynamic_shapes,
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            program.save(str(path), external_data=weight_bytes > _EXTERNAL_DATA_BYTES)
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    return path


def _spatial_dims(multiple: int) -> tuple[torch.export.Dim, object, object]:
    from torch.export import Dim

    # Derived dims: H and W are declared multiples of what the network needs, so the exported
    # graph carries e.g. '8*h' and never specialises to the sample size.
    return Dim("batch", min=1), multiple * Dim("h", min=1), multiple * Dim("w", min=1)


def export_translator(
    translator: ModelMixin, path: str | os.PathLike, opset: int | None = None
) -> Path:
    """Export a generator to ONNX: ``input`` ``(batch, C, H, W)`` -> ``image``; see module doc."""
    _require_exporter()
    model = _fp32_eval_copy(translator)
    multiple = int(translator.size_multiple)
    batch, height, width = _spatial_dims(multiple)
    # Two strides of the multiple in each direction: big enough for every norm and reflection
    # pad, and distinct H and W so that no dimension is mistaken for another.
    sample = torch.zeros(2, translator.config.in_channels, 2 * multiple, 3 * multiple)
    return _export(
        model,
        (sample,),
        Path(path),
        ["input"],
        ["image"],
        ({0: batch, 2: height, 3: width},),
        opset,
    )


def export_encoder(encoder: ModelMixin, path: str | os.PathLike, opset: int | None = None) -> Path:
    """Export a :class:`FeatureEncoder`: ``image``, ``instance_map`` (int64) -> ``features``."""
    _require_exporter()
    model = _fp32_eval_copy(encoder)
    multiple = int(encoder.size_multiple)
    batch, height, width = _spatial_dims(multiple)
    size = (2 * multiple, 3 * multiple)
    image = torch.zeros(2, encoder.config.in_channels, *size)
    instances = torch.zeros(2, 1, *size, dtype=torch.long)
    instances[:, :, :multiple, :] = 1  # more than one instance, so pooling is really traced
    dims = {0: batch, 2: height, 3: width}
    return _export(
        model, (image, instances), Path(path), ["image", "instance_map"], ["features"],
        (dims, dims), opset,
    )  # fmt: skip


def load_exportable(source: str | os.PathLike) -> ModelMixin:
    """A pipeline folder (``model_index.json``) or a single model folder (``config.json``)."""
    path = Path(source)
    if (path / "model_index.json").is_file() or not path.exists():
        from .pipeline import Pix2PixHDPipeline

        try:
            return Pix2PixHDPipeline.from_pretrained(source)
        except OSError as error:
            raise ValueError(f"Could not load a pipeline from {str(source)!r}: {error}") from error
    config = path / "config.json"
    if not config.is_file():
        raise FileNotFoundError(
            f"{path} is neither a pipeline folder (model_index.json) nor a model folder "
            "(config.json, e.g. from `hf-pix2pixhd convert`)."
        )
    import hf_pix2pixhd

    name = json.loads(config.read_text()).get("_class_name")
    model_class = getattr(hf_pix2pixhd, str(name), None)
    if not (isinstance(model_class, type) and issubclass(model_class, ModelMixin)):
        raise ValueError(f"{config} names {name!r}, which is not a hf_pix2pixhd model class.")
    return model_class.from_pretrained(path)


def export_onnx(
    source: str | os.PathLike | ModelMixin,
    out: str | os.PathLike,
    opset: int | None = None,
    include_encoder: bool = True,
) -> OnnxExport:
    """Export a pipeline (or a lone generator) to ``out``; see the module doc for the files.

    Args:
        source: a :class:`~hf_pix2pixhd.pipeline.Pix2PixHDPipeline`, a generator model, or a
            folder / Hub id holding either.
        out: output folder (created).
        opset: ONNX opset (default: the exporter's).
        include_encoder: also export the feature encoder when the pipeline has one.
    """
    from .pipeline import Pix2PixHDPipeline

    if isinstance(source, str | os.PathLike):
        source = load_exportable(source)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(source, Pix2PixHDPipeline):
        translator, encoder, bank = source.translator, source.encoder, source.style_bank
        settings = {key: source.config[key] for key in _PIPELINE_SETTINGS}
        settings["num_style_classes"] = source.num_style_classes
        settings["image_channels"] = source.image_channels
    elif isinstance(source, ModelMixin) and hasattr(source, "size_multiple"):
        translator, encoder, bank = source, None, None
        settings = {"input_kind": "rgb", "image_channels": source.config.in_channels}
    else:
        raise TypeError(
            f"Cannot export {type(source).__name__}: pass a Pix2PixHDPipeline, a generator or a "
            "folder holding one."
        )
    result = OnnxExport(
        directory=out,
        translator=export_translator(translator, out / TRANSLATOR_FILE, opset),
        manifest=out / MANIFEST_NAME,
    )
    files = {"translator": TRANSLATOR_FILE}
    if encoder is not None and include_encoder:
        result.encoder = export_encoder(encoder, out / ENCODER_FILE, opset)
        files["encoder"] = ENCODER_FILE
        settings["encoder_size_multiple"] = int(encoder.size_multiple)
    if bank is not None:
        default = bank.lookup(bank.default_indices(1))[0].float().cpu().numpy()
        result.default_style = out / DEFAULT_STYLE_FILE
        np.save(result.default_style, default.astype(np.float32))
        result.style_bank = out / STYLE_BANK_FILE
        np.savez(
            result.style_bank,
            centers=bank.centers.float().cpu().numpy(),
            num_clusters=bank.num_clusters.cpu().numpy(),
        )
        files.update(default_style=DEFAULT_STYLE_FILE, style_bank=STYLE_BANK_FILE)
    manifest = {
        "format": "hf-pix2pixhd-onnx/1",
        "translator_class": type(translator).__name__,
        "size_multiple": int(translator.size_multiple),
        "in_channels": int(translator.config.in_channels),
        "out_channels": int(translator.config.out_channels),
        **settings,
        "files": files,
        "value_range": [-1.0, 1.0],
    }
    result.manifest.write_text(json.dumps(manifest, indent=2) + "\n")
    return result


def onnx_max_abs_error(
    onnx_path: str | os.PathLike,
    model: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
) -> float:
    """Largest absolute difference between onnxruntime and the fp32 PyTorch model on
    ``inputs`` (passed to both by name, in order)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feeds = {name: tensor.cpu().numpy() for name, tensor in inputs.items()}
    (ours,) = session.run(None, feeds)
    with torch.no_grad():
        reference = _fp32_eval_copy(model)(*inputs.values()).numpy()
    return float(np.abs(ours - reference).max())
