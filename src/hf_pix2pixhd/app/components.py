"""Gradio inputs that hand the raw upload to the handlers instead of decoding it themselves.

Gradio's own image components decode uploads in ``preprocess``, before any handler runs: a
non-image file then fails there with a bare "Error" badge, and a bad file left in a hidden
component breaks every later request. These keep the browser side (``is_template`` reuses the
parent's frontend) and pass paths / raw values on, so ``handlers`` reads them only when needed
and explains any problem in a ``gr.Error``.
"""

from __future__ import annotations

from typing import Any

import gradio as gr


class EditorInput(gr.ImageEditor):
    """``gr.ImageEditor`` whose value reaches the handler as file paths (or browser blobs)."""

    is_template = True

    def preprocess(self, payload: Any) -> dict[str, Any] | None:
        if payload is None:
            return None
        if payload.id is not None:  # the browser editor sent its canvases as blobs
            cached = self.blob_storage.pop(payload.id, None)
            if cached is not None:
                return {
                    "background": cached.background,
                    "layers": [layer for layer in cached.layers if layer is not None],
                    "composite": cached.composite,
                }
        return {
            "background": _path(payload.background),
            "layers": [_path(layer) for layer in payload.layers],
            "composite": _path(payload.composite),
        }


class ImagePathInput(gr.Image):
    """``gr.Image`` whose value reaches the handler as a file path, unread."""

    is_template = True

    def preprocess(self, payload: Any) -> str | None:
        return _path(payload)


class RawNumberInput(gr.Number):
    """``gr.Number`` passing the value on as sent: the handler checks it with a clear message
    (Gradio's own check fails on ``'abc'`` with a generic error)."""

    is_template = True

    def preprocess(self, payload: Any) -> Any:
        return payload


def _path(file: Any) -> str | None:
    return None if file is None else file.path
