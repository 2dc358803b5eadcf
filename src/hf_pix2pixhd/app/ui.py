"""The Gradio page: a palette-limited editor, style controls, generate and variations."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import gradio as gr
import gradio.utils
import numpy as np
import PIL.Image

from .components import EditorInput, ImagePathInput, RawNumberInput
from .handlers import (
    MAX_SEED,
    MAX_SIDE,
    MAX_UPLOAD_SIDE,
    STYLE_MODES,
    ServedModel,
    UserInputError,
    as_image,
    check_and_fit,
    editor_image,
    parse_seed,
    save_result,
    style_arguments,
    to_model_input,
)

CANVAS = 256
#: Uploads over this size are refused by the browser before they are sent (and by the server).
MAX_FILE_SIZE = "10mb"
#: Gradio's cache (uploads, results): every 5 minutes, delete files older than 15 minutes.
DELETE_CACHE = (300, 900)
UPLOAD_NOTE = (
    f"Uploads: PNG or JPEG, at most {MAX_FILE_SIZE.upper()} and "
    f"{MAX_UPLOAD_SIDE}x{MAX_UPLOAD_SIDE} pixels; larger images are translated at "
    f"{MAX_SIDE} pixels a side at most."
)
HOW_IT_WORKS = """
**pix2pix / pix2pixHD** are conditional GANs: a generator learns to turn a label map (or a
sketch) into a photo, while a discriminator learns to tell its outputs from real photos of the
same layout. pix2pixHD adds a multi-scale discriminator, feature matching and a perceptual loss,
and a small *feature encoder*: every region of the label map gets a short code that sets its
colour and texture. Clustering the codes of the training photos per class (K-means) gives the
**styles** you can pick here, shown as the average colour of their training regions.

- **Draw** with the palette brush: each colour is a class (see the legend). Strokes are snapped to
  the nearest palette colour. Or **upload** a label map / sketch.
- **Style**: the default, one cluster per class, a random draw (seeded, so reproducible), or the
  codes of a reference photo painted onto your layout.
- **Semantic editing**: start from an example, paint a region with another class and regenerate
  with the same style and seed: only the edited region changes noticeably.
"""


def legend_html(model: ServedModel) -> str:
    """Class names next to their colours, and each class's style swatches."""
    if model.kind != "labels" or model.palette is None:
        text = "<p>Draw black strokes on white: the model turns the sketch into a photo.</p>"
        global_styles = _swatches(model).get(0, [])
        if len(global_styles):  # one global style class ("style=K" in the style code)
            chips = "".join(_chip(rgb, 14, f"style {k}") for k, rgb in enumerate(global_styles))
            text += f"<p>Styles (style=K): {chips}</p>"
        return text
    rows = []
    swatches = _swatches(model)
    names_and_colours = zip(model.class_names, model.palette.colors, strict=True)
    for index, (name, colour) in enumerate(names_and_colours):
        chips = "".join(
            _chip(rgb, 14, f"{name} style {k}") for k, rgb in enumerate(swatches.get(index, []))
        )
        rows.append(
            f"<tr><td>{_chip(colour, 16, name)}</td><td>{index}</td>"
            f"<td>{html.escape(name)}</td><td>{chips}</td></tr>"
        )
    return (
        '<table class="legend"><tr><th></th><th>id</th><th>class</th><th>styles</th></tr>'
        + "".join(rows)
        + "</table>"
    )


def _chip(rgb, size: int, title: str) -> str:
    """A small colour square (HTML)."""
    r, g, b = (int(c) for c in rgb)
    return (
        f'<span title="{html.escape(title)}" style="display:inline-block;width:{size}px;'
        f'height:{size}px;margin-right:2px;border:1px solid #666;background:rgb({r},{g},{b})">'
        "</span>"
    )


def _swatches(model: ServedModel) -> dict[int, list[tuple[int, int, int]]]:
    bank = model.style_bank
    if bank is None or not hasattr(bank, "swatches_for"):
        return {}
    return {i: bank.swatches_for(i) for i in range(int(bank.config.num_classes))}


def style_code_hint(model: ServedModel) -> str:
    """An example for the style-code box that fits the model: class names, or the global style."""
    if model.kind != "labels":
        return "style=3"
    names = model.class_names
    picks = [n for n in ("window", "door") if n in names] or names[1:3]
    return ", ".join(f"{name}={index}" for name, index in zip(picks, (3, 1), strict=False))


def blank_canvas(model: ServedModel) -> PIL.Image.Image:
    return PIL.Image.new("RGB", (CANVAS, CANVAS), model.blank_colour)


def editor_update(model: ServedModel, image: PIL.Image.Image | None = None) -> Any:
    """The editor set up for ``model``: its palette as a fixed brush, a fresh canvas."""
    if model.kind == "labels" and model.palette is not None:
        colours = [f"rgb({r}, {g}, {b})" for r, g, b in model.palette.colors.tolist()]
        brush = gr.Brush(
            colors=colours,
            default_color=colours[min(2, len(colours) - 1)],
            color_mode="fixed",
            default_size=12,
        )
    else:
        brush = gr.Brush(
            colors=["#000000"], default_color="#000000", color_mode="fixed", default_size=3
        )
    background = image if image is not None else blank_canvas(model)
    return gr.ImageEditor(
        value={"background": background, "layers": [], "composite": None}, brush=brush
    )


class Demo(gr.Blocks):
    """``gr.Blocks`` whose ``launch`` limits the upload size by default (``max_file_size`` is a
    ``launch`` option only): the browser refuses larger files before sending them."""

    def launch(self, *args: Any, max_file_size: str | int | None = MAX_FILE_SIZE, **kwargs: Any):
        return super().launch(*args, max_file_size=max_file_size, **kwargs)


def build_demo(
    models: dict[str, ServedModel], generate: Callable[..., Any], variations: Callable[..., Any]
) -> gr.Blocks:
    """The page. ``generate`` / ``variations`` are the handlers (see ``app/__init__.py``)."""
    names = list(models)
    first = models[names[0]]
    with Demo(
        title="hf-pix2pixhd: label maps and sketches to photos", delete_cache=DELETE_CACHE
    ) as demo:
        gr.Markdown(
            "# hf-pix2pixhd\nDraw or upload a label map or a sketch, pick a style, get a photo."
        )
        with gr.Row():
            with gr.Column(scale=1):
                model_name = gr.Dropdown(names, value=names[0], label="Model")
                editor = EditorInput(
                    label="Label map / sketch",
                    type="filepath",
                    image_mode="RGBA",
                    canvas_size=(CANVAS, CANVAS),
                    sources=("upload", "clipboard"),
                    eraser=gr.Eraser(default_size=12),
                    layers=False,
                    elem_id="editor",
                )
                gr.Markdown(UPLOAD_NOTE, elem_id="upload-note")
                legend = gr.HTML(legend_html(first), elem_id="legend")
                examples = gr.Gallery(
                    [str(p) for p in first.examples],
                    label="Examples (click to edit)",
                    columns=4,
                    height=140,
                    allow_preview=False,
                    object_fit="contain",
                    elem_id="examples",
                )
            with gr.Column(scale=1):
                style_mode = gr.Radio(
                    list(STYLE_MODES), value="default", label="Style", elem_id="style-mode"
                )
                style_code = gr.Textbox(
                    label="Style per class (CLASS=cluster, ...)",
                    placeholder=style_code_hint(first),
                    elem_id="style-code",
                )
                seed = RawNumberInput(
                    value=0,
                    precision=0,
                    minimum=0,
                    maximum=MAX_SEED,
                    label=f"Seed (0 to {MAX_SEED})",
                    elem_id="seed",
                )
                reference = ImagePathInput(
                    label="Reference photo", type="filepath", visible=False, elem_id="reference"
                )
                with gr.Row():
                    run = gr.Button("Generate", variant="primary", elem_id="generate")
                    run4 = gr.Button("Generate 4 variations", elem_id="variations")
                # PNG: Gradio's default WebP is lossy (6.7/255 mean difference).
                output = gr.Image(
                    label="Result",
                    type="filepath",
                    format="png",
                    elem_id="result",
                    interactive=False,
                )
                download = gr.DownloadButton("Download PNG", elem_id="download")
                gallery = gr.Gallery(
                    label="Variations", columns=4, height=200, format="png", elem_id="gallery"
                )
        with gr.Accordion("How it works", open=False):
            gr.Markdown(HOW_IT_WORKS)

        def on_model(name: str):
            model = models[name]
            return (
                editor_update(model),
                legend_html(model),
                gr.Gallery(value=[str(p) for p in model.examples]),
                gr.Textbox(value="", placeholder=style_code_hint(model)),
            )

        model_outputs = [editor, legend, examples, style_code]
        model_name.change(on_model, model_name, model_outputs, api_name=False)
        demo.load(on_model, model_name, model_outputs, api_name=False)

        def on_example(name: str, event: gr.SelectData):
            model = models[name]
            path = model.examples[event.index]
            return editor_update(model, PIL.Image.open(path).convert("RGB"))

        examples.select(on_example, model_name, editor, api_name=False)
        style_mode.change(
            lambda m: gr.Image(visible=m == "reference photo"),
            style_mode,
            reference,
            api_name=False,
        )

        def on_upload_reference(path: str | None):
            try:
                as_image(path, "reference photo")
            except UserInputError as error:
                gr.Warning(str(error), duration=20)
                return None  # cleared: a bad reference never lingers in the page
            return gr.skip()

        reference.upload(on_upload_reference, reference, reference, api_name=False)

        def on_upload_editor(name: str, value: Any):
            try:
                editor_image(value)
            except UserInputError as error:
                gr.Warning(str(error), duration=20)
                return editor_update(models[name])
            return gr.skip()

        editor.upload(on_upload_editor, [model_name, editor], editor, api_name=False)
        inputs = [model_name, editor, style_mode, style_code, seed, reference]
        run.click(generate, inputs, [output, download], api_name="generate")
        run4.click(variations, inputs, gallery, api_name="variations")
    return demo


def make_handlers(models: dict[str, ServedModel]) -> tuple[Callable, Callable]:
    """``generate`` and ``variations`` bound to the served models, errors as ``gr.Error``."""

    def prepare(name: str, editor_value: Any, mode: str, code: str, seed: Any, reference: Any):
        if name not in models:
            raise UserInputError(f"Unknown model {name!r}: choose one of {list(models)}.")
        model = models[name]
        seed = parse_seed(seed)
        image = check_and_fit(editor_image(editor_value, model), model)
        model_input = to_model_input(image, model)
        ids = model_input if isinstance(model_input, np.ndarray) else None
        return model, model_input, style_arguments(model, mode, code, seed, reference, ids)

    def generate(name, editor_value, mode, code, seed, reference):
        try:
            model, model_input, kwargs = prepare(name, editor_value, mode, code, seed, reference)
            image = model.pipeline(model_input, **kwargs).images[0]
        except (UserInputError, ValueError) as error:
            raise gr.Error(str(error), print_exception=False) from error
        # Written once, under a name of its own, into Gradio's cache (aged out by DELETE_CACHE)
        # and served as is by both outputs. Gradio's own saving rewrites a file named by its
        # content hash in place: a second identical result truncated the file while the first
        # was being downloaded ("peer closed connection without sending complete message body").
        path = save_result(image, gradio.utils.get_upload_folder())
        return path, path

    def variations(name, editor_value, mode, code, seed, reference):
        try:
            model, model_input, kwargs = prepare(name, editor_value, mode, code, seed, reference)
            if model.style_bank is None:
                raise UserInputError("This model has no style bank, so it has one look only.")
            kwargs = {
                "style": "random",
                "num_styles": 4,
                "generator": kwargs.get("generator") or _generator(parse_seed(seed)),
            }
            images = model.pipeline(model_input, **kwargs).images
        except (UserInputError, ValueError) as error:
            raise gr.Error(str(error), print_exception=False) from error
        return [save_result(image, gradio.utils.get_upload_folder()) for image in images]

    return generate, variations


def _generator(seed: int):
    import torch

    return torch.Generator().manual_seed(seed)
