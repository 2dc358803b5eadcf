"""The Gradio demo (a Hugging Face Space): ``python app.py`` at the repo root (or in a Space
folder made by ``hf-pix2pixhd make-space``) starts it with :func:`main`."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import gradio as gr

from .handlers import ServedModel, load_model
from .ui import build_demo, make_handlers

#: In a models folder: Hub ids to serve besides the folders, one a line (``make-space``).
HUB_LIST = "hub.txt"


def default_model_sources(models_dir: str | os.PathLike) -> list[str]:
    """Pipeline folders in ``models_dir`` (``<name>/model_index.json``), facades first, then
    the Hub ids listed in ``models_dir/hub.txt``."""
    models_dir = Path(models_dir)
    found = sorted(p.parent for p in models_dir.glob("*/model_index.json"))
    found.sort(key=lambda p: (p.name != "facades", p.name))
    hub_list = models_dir / HUB_LIST
    hub_ids = hub_list.read_text().split() if hub_list.is_file() else []
    return [str(p) for p in found] + hub_ids


def create_demo(
    sources: Sequence[str] | None = None,
    fast: bool = True,
    models_dir: str | os.PathLike | None = None,
) -> gr.Blocks:
    """Load ``sources`` (folders or Hub ids; default: the pipelines in ``models_dir``) and build
    the page. ``fast=False`` keeps fp32 instead of bf16 + channels_last on CPU."""
    sources = list(sources or (default_model_sources(models_dir) if models_dir else []))
    if not sources:
        where = f"none found in {models_dir}" if models_dir else "no models folder given"
        raise FileNotFoundError(f"No models to serve ({where}); pass --model DIR_OR_HUB_ID.")
    models: dict[str, ServedModel] = {}
    for source in sources:
        model = load_model(source, fast=fast)
        models[model.name] = model
    generate, variations = make_handlers(models)
    demo = build_demo(models, generate, variations)
    # Bounded: a flood of requests queues (up to 32) instead of exhausting memory.
    demo.queue(max_size=32, default_concurrency_limit=2)
    return demo


def main(argv: Sequence[str] | None = None, models_dir: str | os.PathLike | None = None) -> None:
    """``python app.py [--model DIR_OR_HUB_ID ...] [--host H] [--port P] [--fp32]``.

    ``models_dir``: the folder of bundled pipelines served without ``--model`` (the caller's
    own, e.g. ``models/`` beside ``app.py``). Host and port default to Gradio's
    ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` (what Spaces set), else 127.0.0.1:7860.
    """
    parser = argparse.ArgumentParser(description="hf-pix2pixhd demo")
    parser.add_argument("--model", action="append", help="pipeline folder or Hub id (repeatable)")
    parser.add_argument("--host", help="default: $GRADIO_SERVER_NAME, else 127.0.0.1")
    parser.add_argument("--port", type=int, help="default: $GRADIO_SERVER_PORT, else 7860")
    parser.add_argument("--fp32", action="store_true", help="fp32 instead of bf16 on CPU")
    args = parser.parse_args(argv)
    demo = create_demo(args.model, fast=not args.fp32, models_dir=models_dir)
    # None lets Gradio read its environment variables; an explicit value would override them.
    demo.launch(server_name=args.host, server_port=args.port)


__all__ = ["HUB_LIST", "create_demo", "default_model_sources", "main"]
