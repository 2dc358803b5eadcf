"""The Gradio page: a palette-limited editor, style controls, generate and variations."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import gradio as gr
import gradio.utils
import PIL.Image

from .components import EditorInput, ImagePathInput, RawNumberInput
from .handlers import (
    MAX_SEED,
    MAX_SIDE,
    MAX_UPLOAD_PIXELS,
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
MAX_FILE_BYTES = 10 * 2**20
MAX_FILE_SIZE = f"{MAX_FILE_BYTES}b"
#: Gradio's cache (uploads, results): every 5 minutes, delete files older than 15 minutes.
DELETE_CACHE = (300, 900)
# Runs in the browser on page load. The editor silently blanks itself on a file the browser
# cannot decode, and an 8000x6000 image froze the page for minutes, both before any request
# reaches the server. So uploads into the editor and the reference photo are checked first
# (size, readable, pixel count: PNG from the header, others by decoding off the main thread);
# a bad one is stopped with a message under the editor, a good one goes on unchanged.
UPLOAD_CHECK_JS = """
() => {
  const MAX_BYTES = %(bytes)d, MAX_PIXELS = %(pixels)d, SIDE = %(side)d;
  const targets = "#editor, #reference";
  const show = (text) => {
    const box = document.querySelector("#upload-error");
    if (box) { box.textContent = text; box.style.display = text ? "block" : "none"; }
  };
  async function pngSize(file) {
    const head = new DataView(await file.slice(0, 24).arrayBuffer());
    if (head.byteLength < 24 || head.getUint32(0) !== 0x89504e47) return null;
    return [head.getUint32(16), head.getUint32(20)];
  }
  async function problem(file) {
    const name = file.name || "the file";
    if (file.size === 0) return `${name} is an empty file (0 bytes).`;
    if (file.size > MAX_BYTES) {
      return `${name} is ${(file.size / 2 ** 20).toFixed(1)} MB: the limit is 10 MB.`;
    }
    let size = await pngSize(file);
    if (!size) {
      try {
        const bitmap = await createImageBitmap(file);
        size = [bitmap.width, bitmap.height];
        bitmap.close();
      } catch (error) {
        return `${name} is not an image this page can read: upload a PNG or JPEG.`;
      }
    }
    if (size[0] * size[1] > MAX_PIXELS) {
      return `${name} is ${size[0]}x${size[1]} pixels: the limit is ${SIDE}x${SIDE}.`;
    }
    return "";
  }
  async function check(files) {
    const problems = (await Promise.all([...files].map(problem))).filter(Boolean);
    show(problems.join(" "));
    return !problems.length;
  }
  const ours = (event) => !event.hfChecked && event.target.closest?.(targets);
  window.addEventListener("change", (event) => {
    const input = event.target;
    if (!(input instanceof HTMLInputElement) || input.type !== "file") return;
    if (!ours(event) || !input.files.length) return;
    event.stopImmediatePropagation();
    check(input.files).then((ok) => {
      if (!ok) { input.value = ""; return; }
      const again = new Event("change", { bubbles: true });
      again.hfChecked = true;
      input.dispatchEvent(again);
    });
  }, true);
  window.addEventListener("drop", (event) => {
    const files = [...(event.dataTransfer?.files ?? [])];
    if (!ours(event) || !files.length) return;
    event.stopImmediatePropagation();
    event.preventDefault();
    const target = event.target;
    check(files).then((ok) => {
      if (!ok) return;
      const transfer = new DataTransfer();
      files.forEach((file) => transfer.items.add(file));
      const init = { bubbles: true, cancelable: true, dataTransfer: transfer };
      const again = new DragEvent("drop", init);
      again.hfChecked = true;
      target.dispatchEvent(again);
    });
  }, true);
}
"""
UPLOAD_CHECK_JS %= {"bytes": MAX_FILE_BYTES, "pixels": MAX_UPLOAD_PIXELS, "side": MAX_UPLOAD_SIDE}
UPLOAD_NOTE = (
    f"Uploads: PNG or JPEG, at most {MAX_FILE_BYTES // 2**20} MB and "
    f"{MAX_UPLOAD_SIDE}x{MAX_UPLOAD_SIDE} pixels; images over {MAX_SIDE} pixels a side are "
    "scaled down to it."
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
- **Style**: the default, one cluster per class, a random draw (seeded, so reproducible), or a
  reference look: pick one from the gallery, or upload a photo (for a label-map model with its
  own label map: each class takes the look of the photo's regions of that class).
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
    """``gr.Blocks`` whose ``launch`` limits uploads by default (``max_file_size`` and ``js`` are
    ``launch`` options only): the browser refuses files over 10 MB, unreadable ones and ones over
    4096x4096 pixels before sending them (``UPLOAD_CHECK_JS``)."""

    def launch(
        self,
        *args: Any,
        max_file_size: str | int | None = MAX_FILE_SIZE,
        js: str | None = UPLOAD_CHECK_JS,
        **kwargs: Any,
    ):
        return super().launch(*args, max_file_size=max_file_size, js=js, **kwargs)


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
                gr.HTML(
                    '<div id="upload-error" role="alert" '
                    'style="display:none;color:#b91c1c;font-weight:600"></div>'
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
                references = gr.Gallery(
                    label="Reference looks (click one)",
                    columns=4,
                    height=140,
                    allow_preview=False,
                    object_fit="contain",
                    visible=False,
                    elem_id="references",
                )
                with gr.Row():
                    reference = ImagePathInput(
                        label="Reference photo", type="filepath", visible=False,
                        elem_id="reference",
                    )  # fmt: skip
                    reference_labels = ImagePathInput(
                        label="Reference label map (the photo's own)", type="filepath",
                        visible=False, elem_id="reference-labels",
                    )  # fmt: skip
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

        def on_style_mode(name: str, mode: str):
            model, shown = models[name], mode == "reference photo"
            return (
                gr.Gallery(
                    value=[str(photo) for photo, _ in model.references],
                    visible=shown and bool(model.references),
                ),
                gr.Image(visible=shown),
                gr.Image(visible=shown and model.kind == "labels"),
            )

        reference_outputs = [references, reference, reference_labels]
        style_mode.change(
            on_style_mode, [model_name, style_mode], reference_outputs, api_name=False
        )
        model_name.change(
            on_style_mode, [model_name, style_mode], reference_outputs, api_name=False
        )

        def on_reference(name: str, event: gr.SelectData):
            photo, labels = models[name].references[event.index]
            return str(photo), str(labels) if labels is not None else None

        references.select(on_reference, model_name, [reference, reference_labels], api_name=False)

        def on_upload_reference(path: str | None):
            try:
                as_image(path, "reference photo")
            except UserInputError as error:
                gr.Warning(str(error), duration=20)
                return None  # cleared: a bad reference never lingers in the page
            return gr.skip()

        reference.upload(
            on_upload_reference, reference, reference, api_name=False, show_progress="hidden"
        )

        # No such server-side check on the editor: it fires "upload" whenever the page sets its
        # background (every page load and example), and a pending event on it swallows strokes.
        # UPLOAD_CHECK_JS checks files dropped or picked into it; generate explains the rest.
        inputs = [model_name, editor, style_mode, style_code, seed, reference, reference_labels]
        run.click(generate, inputs, [output, download], api_name="generate")
        run4.click(variations, inputs, gallery, api_name="variations")
    return demo


def make_handlers(models: dict[str, ServedModel]) -> tuple[Callable, Callable]:
    """``generate`` and ``variations`` bound to the served models, errors as ``gr.Error``."""

    def prepare(
        name: str, editor_value: Any, mode: str, code: str, seed: Any, reference: Any,
        reference_labels: Any = None,
    ):  # fmt: skip
        if name not in models:
            raise UserInputError(f"Unknown model {name!r}: choose one of {list(models)}.")
        model = models[name]
        seed = parse_seed(seed)
        image = check_and_fit(editor_image(editor_value, model), model)
        model_input = to_model_input(image, model)
        style = style_arguments(model, mode, code, seed, reference, reference_labels)
        return model, model_input, style

    def generate(name, editor_value, mode, code, seed, reference, reference_labels=None):
        try:
            model, model_input, kwargs = prepare(
                name, editor_value, mode, code, seed, reference, reference_labels
            )
            image = model.pipeline(model_input, **kwargs).images[0]
        except (UserInputError, ValueError) as error:
            raise gr.Error(str(error), print_exception=False) from error
        # Written once, under a name of its own, into Gradio's cache (aged out by DELETE_CACHE)
        # and served as is by both outputs. Gradio's own saving rewrites a file named by its
        # content hash in place: a second identical result truncated the file while the first
        # was being downloaded ("peer closed connection without sending complete message body").
        path = save_result(image, gradio.utils.get_upload_folder())
        return path, path

    def variations(name, editor_value, mode, code, seed, reference, reference_labels=None):
        try:
            model, model_input, kwargs = prepare(
                name, editor_value, mode, code, seed, reference, reference_labels
            )
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
