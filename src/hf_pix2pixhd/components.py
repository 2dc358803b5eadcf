"""What a :class:`~hf_pix2pixhd.pipeline.Pix2PixHDPipeline` may be made of.

A pipeline folder's ``model_index.json`` names a module and a class per component, and
diffusers imports and builds whatever it names. :func:`check_model_index` checks those names
before anything is imported or loaded, so a folder naming another library's model fails at
once, with a message, instead of loading random weights and failing later; the pipeline's
constructor checks the objects themselves with :func:`check_component`.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection, Mapping

# Module by module, not from the models package: the Hub remote code (hub.remote_modules)
# carries exactly the modules imported here.
from .models.encoder import FeatureEncoder
from .models.hd_generator import GlobalGenerator, LocalEnhancerGenerator
from .models.pix2pix_generators import HugGANUNetGenerator, ResnetGenerator, UNetGenerator
from .styles import StyleBank

PIPELINE_CLASS_NAME = "Pix2PixHDPipeline"
#: Our package: the only library a component may come from.
LIBRARY = "hf_pix2pixhd"

#: The classes each component may be; ``translator`` is required, the others optional.
COMPONENT_CLASSES: dict[str, tuple[type, ...]] = {
    "translator": (
        UNetGenerator,
        ResnetGenerator,
        GlobalGenerator,
        LocalEnhancerGenerator,
        HugGANUNetGenerator,
    ),
    "encoder": (FeatureEncoder,),
    "style_bank": (StyleBank,),
}
REQUIRED_COMPONENTS = ("translator",)


class PipelineFolderError(ValueError):
    """A ``model_index.json`` that does not describe a :class:`Pix2PixHDPipeline`."""


def _expected(name: str) -> str:
    return ", ".join(cls.__name__ for cls in COMPONENT_CLASSES[name])


def check_component(name: str, value: object) -> None:
    """Raise a clear error unless ``value`` is a valid ``name`` component (or None when
    optional)."""
    if value is None:
        if name in REQUIRED_COMPONENTS:
            raise PipelineFolderError(f"The pipeline needs a {name} ({_expected(name)}).")
        return
    if not isinstance(value, COMPONENT_CLASSES[name]):
        raise PipelineFolderError(
            f"The {name} component is a {type(value).__module__}.{type(value).__name__}, but a "
            f"Pix2PixHDPipeline's {name} must be one of: {_expected(name)}."
        )


def check_model_index(
    index: Mapping, where: str = "model_index.json", settings: Collection[str] = ()
) -> None:
    """Check a ``model_index.json`` before diffusers imports or loads anything it names.

    ``settings`` are the pipeline's other constructor arguments (e.g. ``class_names``, which
    may look like a ``[module, class]`` pair); any other key holding a pair of strings is a
    component the pipeline does not have.

    Raises:
        PipelineFolderError: the pipeline class is not ours, a component names a module outside
            ``hf_pix2pixhd`` or a class other than the expected ones, or the translator is
            missing.
    """
    class_name = index.get("_class_name")
    if class_name != PIPELINE_CLASS_NAME:
        raise PipelineFolderError(
            f"{where} describes a {class_name!r} pipeline, not a {PIPELINE_CLASS_NAME}; custom "
            "pipeline code is never loaded from a folder."
        )
    for name, entry in index.items():
        if name.startswith("_") or name in COMPONENT_CLASSES or name in settings:
            continue
        if _is_component_entry(entry):
            raise PipelineFolderError(
                f"{where} names a component {name!r} ({entry[0]}.{entry[1]}), but a "
                f"{PIPELINE_CLASS_NAME} has only {', '.join(COMPONENT_CLASSES)}."
            )
    for name in COMPONENT_CLASSES:
        entry = index.get(name)
        if entry is None or (_is_pair(entry) and list(entry) == [None, None]):
            if name in REQUIRED_COMPONENTS:
                raise PipelineFolderError(
                    f"{where} has no {name}; a {PIPELINE_CLASS_NAME} needs one ({_expected(name)})."
                )
            continue
        if not _is_component_entry(entry):
            raise PipelineFolderError(
                f"{where}: the {name} entry must be [module, class], got {entry!r}."
            )
        _resolve(name, entry[0], entry[1], where)


def _is_pair(entry: object) -> bool:
    return isinstance(entry, list | tuple) and len(entry) == 2


def _is_component_entry(entry: object) -> bool:
    return _is_pair(entry) and all(isinstance(part, str) for part in entry)


def _resolve(name: str, module: str, class_name: str, where: str) -> None:
    expected = COMPONENT_CLASSES[name]
    problem = f"{where} names {module}.{class_name} as the {name}, but it must be one of: "
    problem += f"{_expected(name)} (from {LIBRARY})."
    # Importing runs a module's code: never import anything outside our own package.
    if module != LIBRARY and not module.startswith(f"{LIBRARY}."):
        raise PipelineFolderError(problem)
    try:
        found = getattr(importlib.import_module(module), class_name, None)
    except ImportError:
        found = None
    if found not in expected:
        raise PipelineFolderError(problem)
