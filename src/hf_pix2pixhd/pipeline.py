"""Inference: label map / sketch / image in, photo out, as a diffusers ``DiffusionPipeline``.

The pipeline bundles the generator (``translator``), an optional feature ``encoder``, an
optional :class:`~hf_pix2pixhd.styles.StyleBank` (per-class styles), and the input conventions
(input kind, palette, class names, instance maps) in ``model_index.json``, so
``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` carry everything.

Styles work for every input kind: label-map models pick a style per class; sketch and rgb
models have one global style (the whole image is one instance of the single class
``"style"``), a colour and texture code for the whole picture.
"""

from __future__ import annotations

import contextlib
import inspect
import numbers
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline, ModelMixin
from diffusers.utils import BaseOutput

from .components import check_component, check_model_index
from .drawn import normalize_strokes as redraw_at_width
from .imaging import (
    ImageInput,
    as_pil_or_array,
    ids_to_tensor,
    image_to_tensor,
    pad_to_multiple,
    tensor_to_pil,
)
from .labels import Palette, assemble_generator_input
from .models.modes import compile_for_inference, eval_mode, pix2pix_test_mode
from .models.tiling import (
    DEFAULT_TILE_SIZE,
    TILING_MIN_PIXELS,
    LabelInput,
    concat_inputs,
    map_spatial,
    tiled_forward,
)
from .styles import (
    GLOBAL_STYLE_CLASS,
    StyleBank,
    class_id,
    encode_reference,
    paint_features,
    style_indices,
)

INPUT_KINDS = ("rgb", "sketch", "labels")
OUTPUT_TYPES = ("pil", "np", "pt")

#: One style: ``{class id or name: cluster index}`` (other classes at cluster 0, the largest;
#: ``{"style": k}`` or ``{0: k}`` for sketch / rgb models), ``"random"`` or ``"default"``,
#: or a ``(num_style_classes, feature_nc)`` table from :meth:`Pix2PixHDPipeline.style_tables`.
StyleSpec = Mapping[int | str, int] | str | torch.Tensor

#: A reference photo for ``style_image``: ``(photo, label_map)`` for label-map models; the photo
#: alone, or ``(photo, None)``, for sketch / rgb models.
StyleReference = ImageInput | tuple[ImageInput, ImageInput | None]


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
        style_bank: optional :class:`~hf_pix2pixhd.styles.StyleBank`, the per-class styles to
            pick from (``hf-pix2pixhd encode-styles`` or :meth:`set_style_bank` adds one); one
            global class, ``"style"``, for sketch / rgb models.
        input_kind: ``"rgb"`` (an image in, e.g. a colour label rendering for pix2pix),
            ``"sketch"`` (black strokes on white) or ``"labels"`` (class ids, one-hot encoded).
        label_nc: number of classes for ``"labels"``.
        palette: ``(label_nc, 3)`` RGB colours, so colour label images can be passed (JPEG noise
            is snapped to the nearest colour). Stored in ``model_index.json``.
        class_names: names of the classes, for UIs.
        use_instance_map: the generator takes an instance-boundary channel after the one-hot.
        feature_nc: encoder feature channels the generator takes after those (after the image
            channels for ``"sketch"`` / ``"rgb"``, whose styles are global).
        resize_mode: ``"pad"`` (edge-pad to the size the network needs, crop back) or
            ``"resize"`` (resize to the nearest valid size and back).
        stroke_width: for sketch models, the stroke width (px at a 256 px shorter side) the
            model was trained on: incoming strokes are thinned and redrawn at it (scaled to the
            input's size), so a thick brush and a thin pen both work. None: sketches go in as
            they are.
    """

    _optional_components: ClassVar[list[str]] = ["encoder", "style_bank"]
    model_cpu_offload_seq = "encoder->translator"
    # Only its buffers are read (never its forward): offload hooks would never move it.
    _exclude_from_cpu_offload: ClassVar[list[str]] = ["style_bank"]

    def __init__(
        self,
        translator: ModelMixin,
        encoder: ModelMixin | None = None,
        style_bank: StyleBank | None = None,
        input_kind: str = "rgb",
        label_nc: int = 0,
        palette: list[list[int]] | None = None,
        class_names: list[str] | None = None,
        use_instance_map: bool = False,
        feature_nc: int = 0,
        resize_mode: str = "pad",
        stroke_width: float | None = None,
    ) -> None:
        super().__init__()
        for name, component in (("translator", translator), ("encoder", encoder)):
            check_component(name, component)
        if input_kind not in INPUT_KINDS:
            raise ValueError(f"input_kind must be one of {INPUT_KINDS}, got {input_kind!r}.")
        if resize_mode not in ("pad", "resize"):
            raise ValueError(f"resize_mode must be 'pad' or 'resize', got {resize_mode!r}.")
        if isinstance(palette, Palette):
            class_names = class_names or (list(palette.names) if palette.names else None)
            palette = palette.to_config()["colors"]
        elif palette is not None:
            palette = Palette(palette).to_config()["colors"]
        self.register_modules(translator=translator, encoder=encoder, style_bank=style_bank)
        self.register_to_config(
            input_kind=input_kind,
            label_nc=int(label_nc),
            palette=palette,
            class_names=list(class_names) if class_names is not None else None,
            use_instance_map=bool(use_instance_map),
            feature_nc=int(feature_nc),
            resize_mode=resize_mode,
            stroke_width=float(stroke_width) if stroke_width is not None else None,
        )
        self._check_consistency()

    @classmethod
    def load_config(cls, *args, **kwargs):
        """``ConfigMixin.load_config``, plus a check of the component classes a pipeline
        folder's ``model_index.json`` names: ``from_pretrained`` reads it here, before it
        imports or loads any component (see :mod:`hf_pix2pixhd.components`)."""
        result = super().load_config(*args, **kwargs)
        source = Path(args[0] if args else kwargs.get("pretrained_model_name_or_path", "."))
        where = source / cls.config_name if source.is_dir() else source
        settings = inspect.signature(cls.__init__).parameters
        config = result[0] if isinstance(result, tuple) else result
        check_model_index(config, str(where), settings)
        return result

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
        elif cfg.feature_nc:
            if self.image_channels not in (1, 3):
                raise ValueError(
                    f"The translator takes {expected} input channels, but input_kind="
                    f"{cfg.input_kind!r} feeds 3 (or 1) image channels + feature_nc="
                    f"{cfg.feature_nc} = {3 + cfg.feature_nc} (or {1 + cfg.feature_nc}). Make "
                    "them agree."
                )
        elif expected not in (1, 3):
            raise ValueError(
                f"input_kind={cfg.input_kind!r} feeds 1 or 3 channels, but the translator takes "
                f"{expected}; use input_kind='labels' with label_nc for label-map models, or "
                "set feature_nc for a model trained with a feature encoder."
            )
        if cfg.feature_nc and self.encoder is not None:
            encoded = self.encoder.config.out_channels
            if encoded != cfg.feature_nc:
                raise ValueError(
                    f"The encoder gives {encoded} feature channels, but feature_nc is "
                    f"{cfg.feature_nc}."
                )
        if cfg.class_names is not None and cfg.label_nc and len(cfg.class_names) != cfg.label_nc:
            raise ValueError(
                f"{len(cfg.class_names)} class names given for label_nc={cfg.label_nc}."
            )
        self._check_style_bank(self.style_bank)

    def _check_style_bank(self, bank: StyleBank | None) -> None:
        if bank is None:
            return
        if not isinstance(bank, StyleBank):
            raise TypeError(f"style_bank must be a StyleBank, got {type(bank).__name__}.")
        cfg = self.config
        expected = (self.num_style_classes, cfg.feature_nc)
        if (bank.config.num_classes, bank.config.feature_nc) != expected:
            classes = (
                f"label_nc={cfg.label_nc}"
                if cfg.input_kind == "labels"
                else f"1 global style class (input_kind={cfg.input_kind!r})"
            )
            raise ValueError(
                f"The style bank has {bank.config.num_classes} classes x "
                f"{bank.config.feature_nc} features, but this pipeline has {classes} and "
                f"feature_nc={cfg.feature_nc}."
            )

    def set_style_bank(self, bank: StyleBank | None) -> Pix2PixHDPipeline:
        """Attach (or, with None, remove) a style bank; ``save_pretrained`` then carries it.
        Returns the pipeline."""
        self._check_style_bank(bank)
        self.register_modules(style_bank=bank)
        return self

    @property
    def image_channels(self) -> int:
        """Channels of a sketch / rgb input: the translator's inputs less ``feature_nc``."""
        return self.translator.config.in_channels - self.config.feature_nc

    @property
    def num_style_classes(self) -> int:
        """Classes that styles are chosen per: ``label_nc``, or 1 (the whole image) for
        sketch / rgb models."""
        return self.config.label_nc if self.config.input_kind == "labels" else 1

    @property
    def style_class_names(self) -> list[str] | None:
        """Names of the style classes: the class names of a label-map model (None without), or
        ``["style"]``, the one global class of a sketch / rgb model."""
        if self.config.input_kind != "labels":
            return [GLOBAL_STYLE_CLASS]
        return list(self.config.class_names) if self.config.class_names else None

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

    # -- saving and publishing -------------------------------------------------------------

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        variant: str | None = None,
        push_to_hub: bool = False,
        **kwargs,
    ) -> None:
        """Save as diffusers does, plus the remote code (``pipeline.py`` and the flat
        ``hf_pix2pixhd_*.py`` modules) so diffusers alone can load the folder with
        ``custom_pipeline="pipeline", trust_remote_code=True``; the configs keep no
        ``_name_or_path``. ``push_to_hub=True`` then publishes it with :meth:`push_to_hub`
        (``repo_id``, ``token``, ``private``, ``commit_message``, ``create_pr`` in kwargs)."""
        from .hub import drop_load_paths, write_remote_code

        push_kwargs = {
            k: kwargs.pop(k) for k in ("token", "private", "commit_message", "create_pr")
            if k in kwargs
        }  # fmt: skip
        repo_id = kwargs.pop("repo_id", None) or Path(save_directory).name
        super().save_pretrained(
            save_directory, safe_serialization=safe_serialization, variant=variant, **kwargs
        )
        drop_load_paths(save_directory)
        write_remote_code(save_directory)
        if push_to_hub:
            self.push_to_hub(
                repo_id, safe_serialization=safe_serialization, variant=variant,
                source=save_directory, **push_kwargs,
            )  # fmt: skip

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | None = None,
        create_pr: bool = False,
        safe_serialization: bool = True,
        variant: str | None = None,
        source: str | os.PathLike | None = None,
    ) -> str:
        """Upload the pipeline to ``repo_id`` with our model card, the training configuration,
        samples, examples, the evaluation report and the style bank, and no local paths.

        ``source``: the exported folder whose card and extras to publish (default: the folder
        the pipeline was loaded from, if it was loaded from one). Without a card there, a
        short one is written. Returns the commit URL.
        """
        from .hub import publish_folder

        if source is None and self.name_or_path and Path(self.name_or_path).is_dir():
            source = self.name_or_path
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "pipeline"
            self.save_pretrained(folder, safe_serialization=safe_serialization, variant=variant)
            return publish_folder(
                folder, repo_id, Path(source) if source is not None else None,
                token=token, private=private, commit_message=commit_message,
                create_pr=create_pr,
            )  # fmt: skip

    # -- preprocessing ---------------------------------------------------------------------

    def label_ids(self, item: ImageInput) -> torch.Tensor:
        """A label map (ids, or colours with the palette) as ``(1, 1, H, W)`` int64."""
        item = as_pil_or_array(item)
        ids = ids_to_tensor(item, "label map", self.palette)
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
        style_tables: torch.Tensor | None = None,
        normalize_strokes: bool = True,
        compact: bool = False,
    ) -> torch.Tensor | LabelInput:
        """One input as the translator's ``(S, C, H, W)`` float tensor (before padding).

        ``S`` is 1, or the number of styles: ``features`` ``(S, feature_nc, H, W)``, or
        ``style_tables`` ``(S, num_style_classes, feature_nc)`` per-class features painted over
        the label map, or over the whole image for sketch / rgb models (see
        :meth:`style_tables`). ``compact=True`` returns a label map as a
        :class:`~hf_pix2pixhd.models.tiling.LabelInput` (ids, one-hot built per tile) instead.
        """
        cfg = self.config
        if cfg.input_kind != "labels":
            pixels = image_to_tensor(image, self.image_channels)
            if normalize_strokes and cfg.input_kind == "sketch":
                pixels = self.normalize_strokes(pixels)
            if not cfg.feature_nc:
                return pixels
            # The whole image is one instance of the single style class.
            whole = torch.zeros(1, 1, *pixels.shape[-2:], dtype=torch.long)
            features = self._feature_input(whole, features, style_tables)
            pixels = pixels.expand(features.shape[0], -1, -1, -1)
            return torch.cat([pixels, features.to(pixels.device, pixels.dtype)], 1)
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
            features = self._feature_input(ids, features, style_tables)
            if features.shape[0] > 1:  # several styles of one label map
                count = features.shape[0]
                ids = ids.expand(count, -1, -1, -1)
                instances = instances.expand(count, -1, -1, -1) if instances is not None else None
        if compact:  # a label map as ids: the one-hot is built per tile
            return LabelInput.from_maps(ids, cfg.label_nc, instances, features)
        return assemble_generator_input(ids, cfg.label_nc, instances, features)

    def normalize_strokes(self, sketch: torch.Tensor) -> torch.Tensor:
        """Redraw the strokes of a ``(1, C, H, W)`` sketch in ``[-1, 1]`` at the width the
        model was trained on (``stroke_width``, px at a 256 px shorter side); unchanged when
        the model records none."""
        width = self.config.get("stroke_width")
        if not width:
            return sketch
        scaled = max(1.0, width * min(sketch.shape[-2:]) / 256.0)
        redrawn = redraw_at_width(sketch[0].float().cpu().numpy(), scaled)
        return torch.from_numpy(np.ascontiguousarray(redrawn))[None].to(sketch)

    def _feature_input(
        self,
        ids: torch.Tensor,
        features: torch.Tensor | None,
        style_tables: torch.Tensor | None,
    ) -> torch.Tensor:
        """``(S, feature_nc, H, W)`` feature channels for a ``(1, 1, H, W)`` map of style class
        ids: ``features`` as given, or ``style_tables`` painted over ``ids``."""
        cfg = self.config
        if style_tables is not None:
            features = paint_features(style_tables.float().cpu(), ids)
        if features is None:
            raise ValueError(
                f"This model takes {cfg.feature_nc} encoder feature channels: pass "
                "features=(1, feature_nc, H, W), style=... (with a style bank) or "
                f"{self._reference_hint}."
            )
        features = features if features.ndim == 4 else features.unsqueeze(0)
        if not torch.isfinite(features).all():
            raise ValueError("The style features contain NaN or infinite values.")
        expected = (cfg.feature_nc, *ids.shape[-2:])
        if features.ndim != 4 or tuple(features.shape[1:]) != expected:
            raise ValueError(
                f"features must be (S, feature_nc, H, W) = (S, {', '.join(map(str, expected))})"
                f" for this input, got {tuple(features.shape)}."
            )
        return features

    # -- styles ----------------------------------------------------------------------------

    @property
    def _reference_hint(self) -> str:
        if self.config.input_kind == "labels":
            return "style_image=(photo, label_map)"
        return "style_image=photo"

    def _require_style_bank(self, what: str) -> StyleBank:
        if self.style_bank is None:
            raise ValueError(
                f"{what} needs a style bank, and this pipeline has none: run `hf-pix2pixhd "
                "encode-styles --model DIR --data PATH` (or styles.build_style_bank + "
                f"set_style_bank) first, or use {self._reference_hint}."
            )
        return self.style_bank

    def encode_style_image(
        self,
        photo: ImageInput,
        label_map: ImageInput | None = None,
        autocast_dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """The per-class features of a reference photo, ``(num_style_classes, feature_nc)``
        float32.

        Label-map models: ``label_map`` holds the photo's class ids (or colours with the
        palette), the same size as the photo; classes the reference does not show get the
        default style (cluster 0 of the style bank), or 0 without a bank. Sketch / rgb models
        take the photo alone (``label_map`` None): its mean feature over the whole image, the
        one global style.
        """
        if self.encoder is None:
            raise ValueError(
                "This pipeline has no feature encoder, so it cannot encode a reference photo "
                "(style_image). Use a pipeline exported with its encoder, or style=... with a "
                "style bank."
            )
        pixels = image_to_tensor(photo, 3)
        kind = self.config.input_kind
        if kind != "labels":
            if label_map is not None:
                raise ValueError(
                    f"This {kind} model has one global style, taken from the whole reference "
                    "photo: pass style_image=photo (or (photo, None)), without a label map."
                )
            ids = torch.zeros(1, 1, *pixels.shape[-2:], dtype=torch.long)
        elif label_map is None:
            raise ValueError(
                "A label-map model needs the reference photo's label map: "
                "style_image=(photo, label_map)."
            )
        else:
            ids = self.label_ids(label_map)
        if pixels.shape[-2:] != ids.shape[-2:]:
            raise ValueError(
                f"The reference photo is {pixels.shape[-1]}x{pixels.shape[-2]} (WxH) but its "
                f"label map is {ids.shape[-1]}x{ids.shape[-2]}: they must be the same size."
            )
        table, present = encode_reference(
            self.encoder,
            pixels.to(self.device),
            ids.to(self.device),
            self.num_style_classes,
            autocast_dtype,
        )
        if self.style_bank is not None:
            fallback = self.style_bank.lookup(self.style_bank.default_indices(1))[0]
            table = torch.where(present.unsqueeze(1), table, fallback)
        return table

    def style_tables(
        self,
        style: StyleSpec | Sequence[StyleSpec] | None = None,
        style_image: StyleReference | Sequence[StyleReference] | None = None,
        style_mix: float | Sequence[float] | None = None,
        num_styles: int = 1,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        autocast_dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Resolve style arguments (see :meth:`__call__`) to ``(S, num_style_classes,
        feature_nc)`` float32 per-class feature tables, one per output style."""
        cfg = self.config
        if not cfg.feature_nc:
            raise ValueError(
                "This model takes no encoder feature channels (feature_nc=0), so it has no "
                "styles: styles need a pix2pixHD model trained with a feature encoder "
                "(model.use_encoder=true)."
            )
        if generator is not None and seed is not None:
            raise ValueError("Pass generator= or seed=, not both.")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}.")
        if seed is not None:
            # torch takes any 64-bit value (negative ones as two's complement).
            if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
                raise ValueError(f"seed must be an integer, got {seed!r}.")
            if not -(2**63) <= seed < 2**64:
                raise ValueError(f"seed must fit in 64 bits (-2**63 <= seed < 2**64), got {seed}.")
            generator = torch.Generator().manual_seed(int(seed))
        specs = _style_specs(style, num_styles, style_image)
        references = _reference_pairs(style_image, photo_alone=cfg.input_kind != "labels")
        if not specs and not references:
            specs = ["default"]
        tables = [self._style_table(spec, generator) for spec in specs]
        for photo, label_map in references:
            tables.append(self.encode_style_image(photo, label_map, autocast_dtype))
        if style_mix is None:
            return torch.stack(tables)
        if len(tables) != 2:
            raise ValueError(
                "style_mix interpolates between exactly two styles (style=[a, b], or one style "
                f"and one style_image); got {len(tables)}."
            )
        alphas = [style_mix] if isinstance(style_mix, int | float) else list(style_mix)
        if not alphas or not all(
            isinstance(a, int | float) and not isinstance(a, bool) and 0 <= a <= 1 for a in alphas
        ):
            raise ValueError(
                f"style_mix must be a number in [0, 1] or a list of them, got {style_mix!r}."
            )
        weights = torch.tensor(alphas, dtype=torch.float32).view(-1, 1, 1)
        return (1 - weights) * tables[0] + weights * tables[1]

    def _style_table(self, spec: StyleSpec, generator: torch.Generator | None) -> torch.Tensor:
        """One style as a ``(num_style_classes, feature_nc)`` float32 table."""
        cfg = self.config
        if isinstance(spec, torch.Tensor):
            if tuple(spec.shape) != (self.num_style_classes, cfg.feature_nc):
                raise ValueError(
                    f"A style table must be (num_style_classes, feature_nc) = "
                    f"({self.num_style_classes}, {cfg.feature_nc}), or a stack of them; got "
                    f"{tuple(spec.shape)}."
                )
            return spec.detach().float().cpu()
        if isinstance(spec, Mapping):
            bank = self._require_style_bank("Choosing cluster indices (style={...})")
            names = self.style_class_names
            if cfg.input_kind != "labels":
                for key in spec:
                    try:
                        class_id(key, 1, names)
                    except ValueError:
                        raise ValueError(
                            f"This {cfg.input_kind} model has one global style class: choose "
                            f"its cluster with {{{GLOBAL_STYLE_CLASS!r}: k}} (or {{0: k}}); got "
                            f"the key {key!r}."
                        ) from None
            indices = style_indices(spec, bank, names)
        elif isinstance(spec, str):
            if spec not in ("random", "default"):
                raise ValueError(
                    f"Unknown style {spec!r}: use 'random', 'default', or a dict "
                    "{class id or name: cluster index}."
                )
            bank = self._require_style_bank(f"style={spec!r}")
            indices = (
                bank.random_indices(1, generator)[0]
                if spec == "random"
                else bank.default_indices(1)[0]
            )
        else:
            raise ValueError(
                "Each style must be a dict {class: cluster}, 'random', 'default' or a table "
                f"from style_tables(); got {type(spec).__name__}."
            )
        return bank.lookup(indices.unsqueeze(0))[0]

    def _run_translator(self, inputs: torch.Tensor | LabelInput) -> torch.Tensor:
        height, width = inputs.shape[-2:]
        multiple, least = self.size_multiple, self.translator.min_size
        tiled = self._tile_size_for(height, width) is not None
        if isinstance(inputs, LabelInput) and not tiled:
            inputs = inputs.materialize()
        if self.config.resize_mode == "resize":
            size = (max(least, round(height / multiple) * multiple),
                    max(least, round(width / multiple) * multiple))  # fmt: skip
            mode = "nearest" if self.config.input_kind == "labels" else "bilinear"
            resized = map_spatial(
                inputs, lambda t: torch.nn.functional.interpolate(t, size=size, mode=mode)
            )
            output = self._translate(resized)
            return torch.nn.functional.interpolate(
                output.float(), size=(height, width), mode="bilinear", align_corners=False
            )
        padded = map_spatial(inputs, lambda t: pad_to_multiple(t, multiple, least)[0])
        return self._translate(padded)[..., :height, :width]

    def _translate(self, inputs: torch.Tensor | LabelInput) -> torch.Tensor:
        tile_size = self._tile_size_for(*inputs.shape[-2:])
        if tile_size is not None:
            return tiled_forward(self.translator, inputs, tile_size)
        if getattr(self, "_channels_last", False):
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        compiled = getattr(self, "_compiled_translator", None)
        return (compiled or self.translator)(inputs)

    def enable_tiling(
        self, tile_size: int = DEFAULT_TILE_SIZE, min_pixels: int = 0
    ) -> Pix2PixHDPipeline:
        """Run the generator in tiles for inputs of at least ``min_pixels`` pixels (all, by
        default), ``tile_size`` x ``tile_size`` output pixels per layer at a time.

        Peak memory then stays near the weights plus two activations instead of the whole
        stack (see :mod:`hf_pix2pixhd.models.tiling`; ``bench/highres.py``). Outputs equal the
        untiled ones within ``TILED_TOLERANCE``. Without this call, inputs of
        ``TILING_MIN_PIXELS`` or more are tiled. Returns the pipeline.
        """
        if tile_size < 1 or min_pixels < 0:
            raise ValueError(
                f"tile_size must be >= 1 and min_pixels >= 0, got {tile_size}, {min_pixels}."
            )
        self._tiling = (int(tile_size), int(min_pixels))
        return self

    def disable_tiling(self) -> Pix2PixHDPipeline:
        """Never tile (the whole activation stack in memory at once). Returns the pipeline."""
        self._tiling = None
        return self

    @property
    def _tiling_possible(self) -> bool:
        return getattr(self, "_tiling", ()) is not None

    def _tile_size_for(self, height: int, width: int) -> int | None:
        tiling = getattr(self, "_tiling", (DEFAULT_TILE_SIZE, TILING_MIN_PIXELS))
        if tiling is None or height * width < tiling[1]:
            return None
        return tiling[0]

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
        style: StyleSpec | Sequence[StyleSpec] | None = None,
        style_image: StyleReference | Sequence[StyleReference] | None = None,
        style_mix: float | Sequence[float] | None = None,
        num_styles: int = 1,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        normalize_strokes: bool = True,
    ) -> Pix2PixHDPipelineOutput | tuple:
        """Translate one input or a list of inputs, in one or several styles.

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
            style: for models with encoder features: ``{class id or name: cluster index}``
                (other classes at cluster 0, the largest cluster of the style bank; sketch /
                rgb models have one global class, ``{"style": k}`` or ``{0: k}``),
                ``"random"`` (a random cluster per class), ``"default"``, tables from
                :meth:`style_tables` (to reuse a resolved style), or a list of those (one
                output per style). Without ``features``/``style``/``style_image``, a
                model with a style bank uses ``"default"``.
            style_image: ``(photo, label_map)``: use the per-class features of a reference
                photo (classes it lacks take the default style); a list of pairs for several.
                Sketch / rgb models take the photo alone (or ``(photo, None)``), or a list of
                photos: its whole-image feature. Its styles come after those of ``style``.
            style_mix: ``alpha`` in ``[0, 1]`` (or a list of them) to interpolate between
                exactly two styles, ``(1 - alpha) * first + alpha * second``: one output per
                alpha.
            num_styles: with ``style="random"``, how many random styles to draw.
            generator, seed: make ``"random"`` reproducible (give one of them).
            normalize_strokes: sketch models that record a ``stroke_width`` redraw the input's
                strokes at that width first (thin, then redraw); False feeds them as they are.

        Every input comes out once per style, inputs first: output ``i * S + s`` is input
        ``i`` in style ``s``. The chosen per-class feature is painted over every instance of
        the class (the official test-time behaviour); over the whole image for sketch / rgb
        models.
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
        tables = None
        styled = style is not None or style_image is not None or style_mix is not None
        if styled or num_styles != 1:
            if features is not None:
                raise ValueError("Pass either features= or style arguments, not both.")
            tables = self.style_tables(
                style, style_image, style_mix, num_styles, generator, seed, autocast_dtype
            )
        elif features is None and self.config.feature_nc and self.style_bank is not None:
            tables = self.style_tables()

        inputs = [
            self.prepare_inputs(
                img, inst, feat, tables, normalize_strokes, compact=self._tiling_possible
            )
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
                batch = concat_inputs(group).to(self.device, dtype)
                outputs.extend(self._run_translator(batch).float().unbind(0))
        result = _format_outputs(outputs, output_type)
        return Pix2PixHDPipelineOutput(images=result) if return_dict else (result,)


def _style_specs(style: object, num_styles: int, style_image: object) -> list:
    """``style`` as a list of single styles (``num_styles`` random draws for "random")."""
    if style is None:
        specs: list = []
    elif isinstance(style, str | Mapping):
        specs = [style]
    elif isinstance(style, torch.Tensor):
        specs = list(style.unbind(0)) if style.ndim == 3 else [style]
    elif isinstance(style, Sequence):
        specs = list(style)
    else:
        raise ValueError(
            "style must be a dict {class: cluster}, 'random', 'default', or a list of them; "
            f"got {type(style).__name__}."
        )
    if isinstance(num_styles, bool) or not isinstance(num_styles, int) or num_styles < 1:
        raise ValueError(f"num_styles must be a positive int, got {num_styles!r}.")
    if num_styles > 1:
        if specs != ["random"] or style_image is not None:
            raise ValueError(
                "num_styles draws several random styles: use it with style='random' only "
                "(for other styles pass a list, style=[...])."
            )
        specs = ["random"] * num_styles
    return specs


def _reference_pairs(
    style_image: object, photo_alone: bool = False
) -> list[tuple[ImageInput, ImageInput | None]]:
    """``style_image`` as a list of ``(photo, label_map)`` pairs (a tuple is one pair). With
    ``photo_alone`` (sketch / rgb models) a photo may also stand alone: ``(photo, None)``."""
    if style_image is None:
        return []
    items = style_image if isinstance(style_image, list) else [style_image]
    pairs = []
    for item in items:
        if isinstance(item, tuple | list) and len(item) == 2:
            pairs.append(tuple(item))
        elif photo_alone and not isinstance(item, tuple | list):
            pairs.append((item, None))
        else:
            raise ValueError(
                "style_image must be a photo (or a (photo, None) tuple), or a list of them."
                if photo_alone
                else "style_image must be a (photo, label_map) tuple, or a list of such tuples."
            )
    return pairs


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


def _register_with_diffusers() -> None:
    """``DiffusionPipeline.from_pretrained`` looks ``_class_name`` up in the ``diffusers``
    module: make ours findable there once the package is imported."""
    import diffusers

    if getattr(diffusers, Pix2PixHDPipeline.__name__, None) is None:
        setattr(diffusers, Pix2PixHDPipeline.__name__, Pix2PixHDPipeline)


_register_with_diffusers()
