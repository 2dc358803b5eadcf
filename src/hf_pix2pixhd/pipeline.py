"""Inference: label map / sketch / image in, photo out, as a diffusers ``DiffusionPipeline``.

The pipeline bundles the generator (``translator``), an optional feature ``encoder``, and the
input conventions (input kind, palette, class names, instance maps) in ``model_index.json``,
so ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` carry everything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline, ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from .imaging import (
    ImageInput,
    as_pil_or_array,
    ids_to_tensor,
    image_to_tensor,
    pad_to_multiple,
    tensor_to_pil,
)
from .labels import Palette, assemble_generator_input

INPUT_KINDS = ("rgb", "sketch", "labels")
OUTPUT_TYPES = ("pil", "np", "pt")


@dataclass
class Pix2PixHDPipelineOutput(BaseOutput):
    """``images``: a list of PIL images, or ``(N, H, W, 3)`` numpy / ``(N, 3, H, W)`` torch in
    ``[0, 1]`` (the diffusers convention)."""

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor


class Pix2PixHDPipeline(DiffusionPipeline):
    """Image-to-image translation with a pix2pix or pix2pixHD generator.

    Args:
        translator: the generator network (:class:`UNetGenerator`, :class:`ResnetGenerator`,
            :class:`GlobalGenerator` or :class:`LocalEnhancerGenerator`).
        encoder: optional :class:`FeatureEncoder` for pix2pixHD feature (style) channels.
        input_kind: ``"rgb"`` (an image in, e.g. a colour label rendering for pix2pix),
            ``"sketch"`` (black strokes on white) or ``"labels"`` (class ids, one-hot encoded).
        label_nc: number of classes for ``"labels"``.
        palette: ``(label_nc, 3)`` RGB colours, so colour label images can be passed (JPEG noise
            is snapped to the nearest colour). Stored in ``model_index.json``.
        class_names: names of the classes, for UIs.
        use_instance_map: the generator takes an instance-boundary channel after the one-hot.
        feature_nc: encoder feature channels the generator takes after those.
        resize_mode: ``"pad"`` (edge-pad to the size the network needs, crop back) or
            ``"resize"`` (resize to the nearest valid size and back).
    """

    _optional_components: ClassVar[list[str]] = ["encoder"]
    model_cpu_offload_seq = "encoder->translator"

    def __init__(
        self,
        translator: ModelMixin,
        encoder: ModelMixin | None = None,
        input_kind: str = "rgb",
        label_nc: int = 0,
        palette: list[list[int]] | None = None,
        class_names: list[str] | None = None,
        use_instance_map: bool = False,
        feature_nc: int = 0,
        resize_mode: str = "pad",
    ) -> None:
        super().__init__()
        if input_kind not in INPUT_KINDS:
            raise ValueError(f"input_kind must be one of {INPUT_KINDS}, got {input_kind!r}.")
        if resize_mode not in ("pad", "resize"):
            raise ValueError(f"resize_mode must be 'pad' or 'resize', got {resize_mode!r}.")
        if isinstance(palette, Palette):
            class_names = class_names or (list(palette.names) if palette.names else None)
            palette = palette.to_config()["colors"]
        elif palette is not None:
            palette = Palette(palette).to_config()["colors"]
        self.register_modules(translator=translator, encoder=encoder)
        self.register_to_config(
            input_kind=input_kind,
            label_nc=int(label_nc),
            palette=palette,
            class_names=list(class_names) if class_names is not None else None,
            use_instance_map=bool(use_instance_map),
            feature_nc=int(feature_nc),
            resize_mode=resize_mode,
        )
        self._check_consistency()

    def _check_consistency(self) -> None:
        cfg = self.config
        expected = self.translator.config.in_channels
        if cfg.input_kind == "labels":
            if cfg.label_nc <= 0:
                raise ValueError("input_kind='labels' needs label_nc > 0.")
            given = cfg.label_nc + int(cfg.use_instance_map) + cfg.feature_nc
            if given != expected:
                raise ValueError(
                    f"The translator takes {expected} input channels, but label_nc={cfg.label_nc}"
                    f" + instance map {int(cfg.use_instance_map)} + feature_nc={cfg.feature_nc}"
                    f" = {given}. Make them agree."
                )
            if cfg.palette is not None and len(cfg.palette) != cfg.label_nc:
                raise ValueError(
                    f"The palette has {len(cfg.palette)} colours but label_nc is {cfg.label_nc}."
                )
        elif expected not in (1, 3):
            raise ValueError(
                f"input_kind={cfg.input_kind!r} feeds 1 or 3 channels, but the translator takes "
                f"{expected}; use input_kind='labels' with label_nc for label-map models."
            )
        if cfg.class_names is not None and cfg.label_nc and len(cfg.class_names) != cfg.label_nc:
            raise ValueError(
                f"{len(cfg.class_names)} class names given for label_nc={cfg.label_nc}."
            )

    @property
    def palette(self) -> Palette | None:
        """The label palette (with class names), if the pipeline has one."""
        if self.config.palette is None:
            return None
        names = tuple(self.config.class_names) if self.config.class_names else None
        return Palette(self.config.palette, names)

    def enable_fast_cpu_inference(
        self, dtype: torch.dtype = torch.bfloat16, compile: bool = False
    ) -> Pix2PixHDPipeline:
        """Switch to the fastest CPU mode: ``dtype`` weights, channels_last, optionally compiled.

        bf16 matmuls are several times faster than fp32 on CPUs with AMX (see
        ``bench/inference.py``). ``compile=True`` adds ``torch.compile`` with weight freezing:
        a one-time compile of tens of seconds per input size, worth it for a server (the U-Net
        runs about 3x faster again). Outputs stay within the tolerance tested in
        ``tests/test_pipeline.py``. Returns the pipeline.
        """
        for module in (self.translator, self.encoder):
            if module is not None:
                module.to(dtype).to(memory_format=torch.channels_last)
        self._channels_last = True
        self._compiled_translator = compile_for_inference(self.translator) if compile else None
        return self

    @property
    def size_multiple(self) -> int:
        """Height and width the network needs to be multiples of."""
        return self.translator.size_multiple

    # -- preprocessing ---------------------------------------------------------------------

    def label_ids(self, item: ImageInput) -> torch.Tensor:
        """A label map (ids, or colours with the palette) as ``(1, 1, H, W)`` int64."""
        item = as_pil_or_array(item)
        ids = ids_to_tensor(item, "label map")
        if ids is None:
            palette = self.palette
            if palette is None:
                raise ValueError(
                    "Got a colour label image, but this pipeline has no palette: pass class ids "
                    "(an 'L'/'P' image or an integer array), or set palette= on the pipeline."
                )
            rgb = item.convert("RGB") if isinstance(item, PIL.Image.Image) else item[:, :, :3]
            ids = torch.from_numpy(palette.colors_to_ids(rgb))[None, None]
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.config.label_nc):
            raise ValueError(
                f"Label ids must be in [0, {self.config.label_nc - 1}], found "
                f"{int(ids.min())}..{int(ids.max())}. Is this a label map for this model?"
            )
        return ids

    def prepare_inputs(
        self,
        image: ImageInput,
        instance_map: ImageInput | None = None,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One input as the translator's ``(1, C, H, W)`` float tensor (before padding)."""
        cfg = self.config
        if cfg.input_kind != "labels":
            return image_to_tensor(image, self.translator.config.in_channels)
        ids = self.label_ids(image)
        instances = None
        if cfg.use_instance_map:
            instances = ids if instance_map is None else ids_to_tensor(instance_map, "instance map")
            if instances is None:
                raise ValueError("An instance map must hold ids (integers), not colours.")
            if instances.shape[-2:] != ids.shape[-2:]:
                raise ValueError(
                    f"Instance map size {tuple(instances.shape[-2:])} differs from the label "
                    f"map's {tuple(ids.shape[-2:])}."
                )
        if cfg.feature_nc:
            if features is None:
                raise ValueError(
                    f"This model takes {cfg.feature_nc} encoder feature channels: pass "
                    "features=(1, feature_nc, H, W)."
                )
            features = features if features.ndim == 4 else features.unsqueeze(0)
        return assemble_generator_input(ids, cfg.label_nc, instances, features)

    def _run_translator(self, inputs: torch.Tensor) -> torch.Tensor:
        height, width = inputs.shape[-2:]
        multiple = self.size_multiple
        if self.config.resize_mode == "resize":
            size = (max(multiple, round(height / multiple) * multiple),
                    max(multiple, round(width / multiple) * multiple))  # fmt: skip
            mode = "nearest" if self.config.input_kind == "labels" else "bilinear"
            resized = torch.nn.functional.interpolate(inputs, size=size, mode=mode)
            output = self._translate(resized)
            return torch.nn.functional.interpolate(
                output.float(), size=(height, width), mode="bilinear", align_corners=False
            )
        padded, _ = pad_to_multiple(inputs, multiple)
        return self._translate(padded)[..., :height, :width]

    def _translate(self, inputs: torch.Tensor) -> torch.Tensor:
        if getattr(self, "_channels_last", False):
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        compiled = getattr(self, "_compiled_translator", None)
        return (compiled or self.translator)(inputs)

    # -- call ------------------------------------------------------------------------------

    @torch.inference_mode()
    def __call__(
        self,
        image: ImageInput | Sequence[ImageInput],
        instance_map: ImageInput | Sequence[ImageInput] | None = None,
        features: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        autocast_dtype: torch.dtype | None = None,
        paper_test_mode: bool = False,
    ) -> Pix2PixHDPipelineOutput | tuple:
        """Translate one input or a list of inputs.

        Args:
            image: a path, PIL image, numpy array or tensor (see :mod:`hf_pix2pixhd.imaging`),
                or a list of them. For ``input_kind="labels"``: class ids, or colours when the
                pipeline has a palette. Any size: it is padded or resized and cropped back.
            instance_map: instance ids for models with ``use_instance_map`` (default: the label
                map itself, so class borders become boundaries).
            features: ``(N, feature_nc, H, W)`` feature channels for models that take them.
            output_type: ``"pil"``, ``"np"`` or ``"pt"``.
            autocast_dtype: e.g. ``torch.bfloat16`` to run under autocast (fast on CPUs with AMX).
            paper_test_mode: pix2pix's test-time behaviour (dropout on, BatchNorm with batch
                statistics) instead of eval mode. Running statistics are left untouched.
        """
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}.")
        images = list(image) if isinstance(image, list | tuple) else [image]
        if not images:
            raise ValueError("No input image given.")
        instances = list(instance_map) if isinstance(instance_map, list | tuple) else [instance_map]
        if instance_map is not None and len(instances) != len(images):
            raise ValueError(f"{len(instances)} instance maps for {len(images)} images.")
        if instance_map is None:
            instances = [None] * len(images)
        feature_list = [None] * len(images) if features is None else list(features.unbind(0))

        inputs = [
            self.prepare_inputs(img, inst, feat)
            for img, inst, feat in zip(images, instances, feature_list, strict=True)
        ]
        dtype = self.translator.dtype
        autocast = (
            torch.autocast(self.device.type, dtype=autocast_dtype)
            if autocast_dtype is not None
            else contextlib.nullcontext()
        )
        test_mode = pix2pix_test_mode if paper_test_mode else eval_mode
        mode = test_mode(self.translator)
        outputs = []
        with mode, autocast:
            # Inputs of one size go through as one batch.
            for group in _group_by_size(inputs):
                batch = torch.cat(group).to(self.device, dtype)
                outputs.extend(self._run_translator(batch).float().unbind(0))
        result = _format_outputs(outputs, output_type)
        return Pix2PixHDPipelineOutput(images=result) if return_dict else (result,)


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


def _group_by_size(tensors: list[torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    """Consecutive runs of equally sized tensors (keeps the output order)."""
    group: list[torch.Tensor] = []
    for tensor in tensors:
        if group and tensor.shape != group[0].shape:
            yield group
            group = []
        group.append(tensor)
    yield group


def _format_outputs(outputs: list[torch.Tensor], output_type: str):
    if output_type == "pil":
        return [tensor_to_pil(o.unsqueeze(0))[0] for o in outputs]
    unit = [((o.clamp(-1, 1) + 1) / 2).cpu() for o in outputs]
    if output_type == "pt":
        return torch.stack(unit) if len({u.shape for u in unit}) == 1 else unit
    arrays = [u.permute(1, 2, 0).numpy() for u in unit]
    return np.stack(arrays) if len({a.shape for a in arrays}) == 1 else arrays


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
