"""The Gradio app: handlers directly, then gradio_client against a real server."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import gradio as gr
import numpy as np
import PIL.Image
import pytest
from app_fixtures import (
    PALETTE,
    example_labels,
    gradio_temp_dir,
    make_label_model,
    make_sketch_model,
)

from hf_pix2pixhd.app import create_demo
from hf_pix2pixhd.app.handlers import load_model
from hf_pix2pixhd.app.ui import make_handlers


@pytest.fixture(scope="module")
def gradio_cache(tmp_path_factory):
    with gradio_temp_dir(tmp_path_factory.mktemp("gradio")) as folder:
        yield folder


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return make_label_model(root / "facades"), make_sketch_model(root / "shoes")


@pytest.fixture(scope="module")
def handlers(model_dirs, gradio_cache):
    """``generate`` returning (the result as PIL, its PNG path); ``variations`` as is."""
    models = {m.name: m for m in (load_model(str(d)) for d in model_dirs)}
    generate, variations = make_handlers(models)

    def generate_image(*args):
        path, download = generate(*args)
        assert path == download and path.startswith(str(gradio_cache))  # one file, aged out
        with PIL.Image.open(path) as image:
            assert image.format == "PNG"
            return image.copy(), path

    return generate_image, variations


def label_image(ids: np.ndarray | None = None) -> PIL.Image.Image:
    ids = example_labels() if ids is None else ids
    return PIL.Image.fromarray(np.asarray(PALETTE, dtype=np.uint8)[ids])


def editor(image: PIL.Image.Image | None, composite: bool = True) -> dict:
    return {"background": image, "layers": [], "composite": image if composite else None}


# -- level 1: handlers ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["default", "pick per class", "random", "reference photo"])
def test_every_style_mode_generates(handlers, mode):
    generate, _ = handlers
    reference = PIL.Image.new("RGB", (64, 64), (200, 30, 30))
    image, download = generate(
        "facades", editor(label_image()), mode, "window=2, wall=1", 3, reference, label_image()
    )
    assert image.size == (64, 64)
    assert PIL.Image.open(download).size == (64, 64)


def test_untouched_editor_falls_back_to_the_background(handlers):
    generate, _ = handlers
    image, _ = generate("facades", editor(label_image(), composite=False), "default", "", 0, None)
    assert image.size == (64, 64)


def test_random_style_is_reproducible_and_variations_differ(handlers):
    generate, variations = handlers
    a, _ = generate("facades", editor(label_image()), "random", "", 7, None)
    b, _ = generate("facades", editor(label_image()), "random", "", 7, None)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    gallery = variations("facades", editor(label_image()), "random", "", 7, None)
    assert len(gallery) == 4
    arrays = [np.asarray(PIL.Image.open(g), dtype=np.float32) for g in gallery]
    assert any(np.abs(arrays[0] - other).mean() > 0.5 for other in arrays[1:])


def test_cluster_choice_changes_the_output(handlers):
    generate, _ = handlers
    one, _ = generate("facades", editor(label_image()), "pick per class", "wall=0", 0, None)
    two, _ = generate("facades", editor(label_image()), "pick per class", "wall=2", 0, None)
    assert np.abs(np.asarray(one, np.float32) - np.asarray(two, np.float32)).mean() > 0.5


def test_semantic_edit_changes_mostly_the_edited_region(handlers):
    generate, _ = handlers
    ids = example_labels()
    before, _ = generate("facades", editor(label_image(ids)), "random", "", 5, None)
    edited = ids.copy()
    edited[40:56, 4:20] = 3  # paint a door onto the wall
    after, _ = generate("facades", editor(label_image(edited)), "random", "", 5, None)
    change = np.abs(np.asarray(after, np.float32) - np.asarray(before, np.float32)).mean(axis=2)
    inside = change[40:56, 4:20].mean()
    far = change[:24, 36:].mean()  # away from the edit
    # A random 64x64 net: InstanceNorm spreads some change everywhere (about 1/5 here). The
    # bundled trained model is held to a stricter ratio in test_bundled_models.py.
    assert inside > 3 * far, (inside, far)


def test_sketch_model_and_palette_snapping(handlers):
    generate, _ = handlers
    sketch = PIL.Image.new("RGB", (70, 50), "white")
    sketch.paste((0, 0, 0), (5, 20, 60, 23))
    image, _ = generate("shoes", editor(sketch), "default", "", 0, None)
    assert image.size == (70, 50)
    # Anti-aliased (blended) stroke edges on a label map are snapped, not refused.
    noisy = np.asarray(label_image(), dtype=np.int16) + np.random.default_rng(0).integers(
        -12, 12, (64, 64, 3)
    )
    image, _ = generate(
        "facades",
        editor(PIL.Image.fromarray(noisy.clip(0, 255).astype(np.uint8))),
        "default",
        "",
        0,
        None,
    )
    assert image.size == (64, 64)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "canvas is empty"),
        ({"background": None, "layers": [], "composite": None}, "canvas is empty"),
        (editor(PIL.Image.new("RGB", (1, 1))), "too small"),
        ({"background": "/etc/hostname", "layers": [], "composite": None}, "not an image"),
        (editor(PIL.Image.new("RGB", (256, 256), tuple(PALETTE[0]))), "canvas is empty"),
        (editor(PIL.Image.new("RGBA", (64, 64), (0, 0, 0, 0))), "canvas is empty"),
    ],
    ids=["none", "empty-canvas", "1x1", "non-image-file", "untouched-canvas", "transparent"],
)
def test_bad_input_gives_a_readable_error(handlers, value, message):
    generate, _ = handlers
    with pytest.raises(gr.Error, match=message):
        generate("facades", value, "default", "", 0, None)


def test_large_huge_greyscale_and_rgba_inputs_give_sensible_results(handlers):
    generate, _ = handlers
    large = PIL.Image.new("RGB", (4000, 3000), tuple(PALETTE[1]))
    image, _ = generate("facades", editor(large), "default", "", 0, None)
    assert image.size == (1024, 768)  # scaled down, aspect kept
    huge = PIL.Image.new("RGB", (5000, 5000), tuple(PALETTE[1]))
    with pytest.raises(gr.Error, match=r"5000x5000 pixels .* at most 4096x4096"):
        generate("facades", editor(huge), "default", "", 0, None)
    grey = PIL.Image.new("L", (64, 64), 255)
    grey.paste(0, (10, 30, 54, 33))
    assert generate("shoes", editor(grey), "default", "", 0, None)[0].size == (64, 64)
    # The whole message, up to its last word (it was cut at "e.g." once).
    with pytest.raises(gr.Error) as info:
        generate("facades", editor(PIL.Image.new("L", (64, 64), 128)), "default", "", 0, None)
    assert "e.g. RGB (128, 128, 128) at (y=0, x=0)" in info.value.message
    assert info.value.message.endswith("drawn in the colours of the legend.")
    rgba = label_image().convert("RGBA")
    rgba.paste((0, 0, 0, 0), (0, 0, 64, 8))  # a transparent band: painted as the first class
    assert generate("facades", editor(rgba), "default", "", 0, None)[0].size == (64, 64)


def test_bad_style_codes(handlers):
    generate, _ = handlers
    for code, message in [
        ("balcony=1", "balcony"),
        ("window=9", "3 clusters|out of range"),
        ("window", "CLASS=INDEX"),
    ]:
        with pytest.raises(gr.Error, match=message):
            generate("facades", editor(label_image()), "pick per class", code, 0, None)
    with pytest.raises(gr.Error, match="reference photo"):
        generate("facades", editor(label_image()), "reference photo", "", 0, None)


# -- level 2: gradio_client against a real server ------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(model_dirs, gradio_cache):
    demo = create_demo([str(d) for d in model_dirs])
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def client_editor(path) -> dict:
    from gradio_client import handle_file

    return {"background": handle_file(str(path)), "layers": [], "composite": handle_file(str(path))}


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False)


@pytest.mark.parametrize("mode", ["default", "pick per class", "random", "reference photo"])
def test_client_generates_for_each_model_and_style_mode(client, model_dirs, mode, tmp_path):
    from gradio_client import handle_file

    reference = tmp_path / "reference.png"
    PIL.Image.new("RGB", (64, 64), (20, 200, 20)).save(reference)
    for folder in model_dirs:
        example = next((folder / "examples").glob("*.png"))
        if folder.name == "shoes" and mode != "default":
            continue  # the sketch model has no style bank
        image_path, download = client.predict(
            folder.name,
            client_editor(example),
            mode,
            "window=1",
            1,
            handle_file(str(reference)),
            handle_file(str(example)) if folder.name != "shoes" else None,  # its label map
            api_name="/generate",
        )
        assert PIL.Image.open(image_path).size == PIL.Image.open(example).size
        assert download


def test_client_bad_upload_then_server_keeps_serving(client, model_dirs, tmp_path):
    from gradio_client.exceptions import AppError

    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("this is not an image")
    with pytest.raises((AppError, ValueError)):
        client.predict(
            "facades", client_editor(not_an_image), "default", "", 0, None, api_name="/generate"
        )
    example = next((model_dirs[0] / "examples").glob("*.png"))
    image_path, _ = client.predict(
        "facades", client_editor(example), "default", "", 0, None, api_name="/generate"
    )
    assert PIL.Image.open(image_path).size == (64, 64)


def test_sixteen_concurrent_requests_complete_without_errors(client, model_dirs):
    example = next((model_dirs[0] / "examples").glob("*.png"))

    def call(seed: int):
        return client.predict(
            "facades", client_editor(example), "random", "", seed, None, api_name="/generate"
        )

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(16)))
    assert len(results) == 16 and all(PIL.Image.open(r[0]).size == (64, 64) for r in results)


def test_style_code_hint_fits_the_model(model_dirs):
    from hf_pix2pixhd.app.ui import style_code_hint

    labels, sketch = (load_model(str(d)) for d in model_dirs)
    assert style_code_hint(labels) == "window=3, door=1"
    assert style_code_hint(sketch) == "style=3"


def test_a_reference_photo_for_a_label_model_needs_its_own_label_map(handlers):
    generate, _ = handlers
    photo = PIL.Image.new("RGB", (64, 64), (200, 30, 30))
    with pytest.raises(gr.Error, match="needs its own label map"):
        generate("facades", editor(label_image()), "reference photo", "", 0, photo, None)
    with pytest.raises(gr.Error, match="must be the same picture's"):
        generate("facades", editor(label_image()), "reference photo", "", 0, photo,
                 label_image().resize((32, 32)))  # fmt: skip
