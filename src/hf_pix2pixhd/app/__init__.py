"""The Gradio demo (a Hugging Face Space): ``python app.py`` at the repo root starts it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import gradio as gr

from .handlers import ServedModel, load_model
from .ui import build_demo, make_handlers

#: Models bundled in the repository, served by default.
BUNDLED_MODELS = Path(__file__).resolve().parents[3] / "models"


def default_model_sources() -> list[str]:
    """Bundled pipeline folders (``models/<name>/model_index.json``), facades first."""
    found = sorted(p.parent for p in BUNDLED_MODELS.glob("*/model_index.json"))
    found.sort(key=lambda p: (p.name != "facades", p.name))
    return [str(p) for p in found]


def create_demo(sources: Sequence[str] | None = None, fast: bool = True) -> gr.Blocks:
    """Load ``sources`` (folders or Hub ids; default: the bundled models) and build the page.

    ``fast=False`` keeps fp32 instead of bf16 + channels_last on CPU.
    """
    sources = list(sources or default_model_sources())
    if not sources:
        raise FileNotFoundError(
            f"No models to serve: none bundled in {BUNDLED_MODELS}; pass --model DIR_OR_HUB_ID."
        )
    models: dict[str, ServedModel] = {}
    for source in sources:
        model = load_model(source, fast=fast)
        models[model.name] = model
    generate, variations = make_handlers(models)
    demo = build_demo(models, generate, variations)
    # Bounded: a flood of requests queues (up to 32) instead of exhausting memory.
    demo.queue(max_size=32, default_concurrency_limit=2)
    return demo


__all__ = ["BUNDLED_MODELS", "create_demo", "default_model_sources"]
