"""A bad-input corpus through gradio_client against a real server, started as the app starts.

Every case is a file or value made here. Each one must come back as an error whose message
names the problem (not Gradio's bare "Error"), and a valid request right after it must still
succeed: a bad request never poisons the next one.
"""

from __future__ import annotations

import io
import re
import struct
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from app_fixtures import PALETTE, free_port, gradio_temp_dir, make_label_model, make_sketch_model

from hf_pix2pixhd.app import create_demo
from hf_pix2pixhd.app.handlers import check_and_fit, load_model, to_model_input

GENERIC = "raised an exception"  # gradio_client's text for an error without a message


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """The tiny label and sketch models, with Gradio's cache in this module's own folder."""
    root = tmp_path_factory.mktemp("app")
    with gradio_temp_dir(root / "gradio"):
        yield make_label_model(root / "facades"), make_sketch_model(root / "shoes")


def launch(model_dirs, delete_cache=None):
    demo = create_demo([str(d) for d in model_dirs])
    if delete_cache is not None:
        demo.delete_cache = delete_cache
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return demo, f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def client(model_dirs, tmp_path_factory):
    from gradio_client import Client

    demo, url = launch(model_dirs)
    downloads = tmp_path_factory.mktemp("downloads")
    yield Client(url, verbose=False, download_files=str(downloads))
    demo.close()


def png_with_size(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` but holds a 1x1 image's data."""
    buffer = io.BytesIO()
    PIL.Image.new("RGB", (1, 1), tuple(PALETTE[1])).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    # bytes 8..11: IHDR length; 12..15 "IHDR"; 16..23 width, height; 24..28 the rest; then CRC
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    path.write_bytes(bytes(data))
    return path


def make_files(folder: Path, example: Path) -> None:
    """The corpus's files, written to ``folder``."""
    (folder / "notes.png").write_text("this is not an image, whatever its name says")
    (folder / "empty.png").write_bytes(b"")
    data = example.read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    PIL.Image.new("L", (64, 64), 128).save(folder / "grey.png")
    PIL.Image.new("RGB", (1, 1), tuple(PALETTE[1])).save(folder / "tiny.png")
    PIL.Image.new("RGB", (256, 256), tuple(PALETTE[0])).save(folder / "untouched.png")
    (folder / "drawing.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    png_with_size(folder / "huge.png", 5000, 5000)
    png_with_size(folder / "bomb.png", 60000, 60000)
    rgba = PIL.Image.open(example).convert("RGBA")  # valid: a label map, half transparent
    rgba.putalpha(200)
    rgba.save(folder / "rgba.png")


#: name -> (request fields that differ from a valid request, pattern the message must hold)
CASES: dict[str, tuple[dict, str]] = {
    "non-image": ({"editor": "notes.png"}, r"\(notes\.png\) is not an image"),
    "zero-byte": ({"editor": "empty.png"}, r"\(empty\.png\) is an empty file \(0 bytes\)"),
    "truncated": ({"editor": "truncated.png"}, r"truncated"),
    "svg": ({"editor": "drawing.svg"}, r"\(drawing\.svg\) is not an image"),
    "huge-header": ({"editor": "huge.png"}, r"5000x5000 pixels .* at most 4096x4096"),
    "bomb-header": ({"editor": "bomb.png"}, r"too many pixels|60000x60000"),
    "1x1": ({"editor": "tiny.png"}, r"1x1 pixels: too small"),
    "greyscale-on-labels": (
        {"editor": "grey.png"},
        r"e\.g\. RGB \(128, 128, 128\) at \(y=0, x=0\)\. .* colours of the legend\.$",
    ),
    "untouched-canvas": ({"editor": "untouched.png"}, r"canvas is empty"),
    "no-canvas": ({"editor": None}, r"canvas is empty"),
    "seed-huge": ({"seed": 10**30}, r"Seed 1000.* out of range: .* 0 to 4294967295"),
    "seed-negative": ({"seed": -1}, r"Seed -1 is out of range"),
    "seed-text": ({"seed": "abc"}, r"Seed 'abc' is not a whole number"),
    "seed-fraction": ({"seed": 1.5}, r"Seed .*1\.5.* is not a whole number"),
    "style-no-equals": ({"mode": "pick per class", "code": "window"}, r"CLASS=INDEX"),
    "style-not-a-number": ({"mode": "pick per class", "code": "window=x"}, r"a number"),
    "style-unknown-class": ({"mode": "pick per class", "code": "balcony=1"}, r"balcony"),
    "style-out-of-range": ({"mode": "pick per class", "code": "window=99"}, r"0\.\.2"),
    "style-mode": ({"mode": "sepia"}, r"sepia.* not in the list of choices"),
    "model": ({"model": "cityscapes"}, r"cityscapes.* not in the list of choices"),
    "reference-non-image": (
        {"mode": "reference photo", "reference": "notes.png"},
        r"reference photo \(notes\.png\) is not an image",
    ),
    "reference-missing": ({"mode": "reference photo"}, r"Upload a reference photo"),
}


def predict(client, example: Path, folder: Path, fields: dict):
    from gradio_client import handle_file

    def file(name):
        if name is None:
            return None
        return handle_file(str(folder / name if isinstance(name, str) else name))

    request = {"model": "facades", "editor": example, "mode": "default", "code": ""}
    request |= {"seed": 0, "reference": None} | fields
    editor = file(request["editor"])
    canvas = None if editor is None else {"background": editor, "layers": [], "composite": editor}
    return client.predict(
        request["model"],
        canvas,
        request["mode"],
        request["code"],
        request["seed"],
        file(request["reference"]),
        api_name="/generate",
    )


@pytest.fixture(scope="module")
def files(model_dirs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-inputs")
    example = next((model_dirs[0] / "examples").glob("*.png"))
    make_files(folder, example)
    return folder, example


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_names_the_problem_and_the_next_request_succeeds(client, files, name):
    from gradio_client.exceptions import AppError

    folder, example = files
    fields, pattern = CASES[name]
    with pytest.raises(AppError) as info:
        predict(client, example, folder, fields)
    message = str(info.value)
    assert GENERIC not in message and re.search(pattern, message), message
    result, _ = predict(client, example, folder, {})
    assert PIL.Image.open(result).size == (64, 64)


def test_bad_reference_does_not_poison_other_style_modes(client, files):
    folder, example = files
    for mode in ("default", "random", "pick per class"):
        result, _ = predict(client, example, folder, {"mode": mode, "reference": "notes.png"})
        assert PIL.Image.open(result).size == (64, 64)


def test_valid_oddities_give_results(client, files, model_dirs):
    """A rotated JPEG sketch (EXIF), an RGBA label map, a greyscale sketch: all fine."""
    folder, example = files
    sketch = PIL.Image.new("RGB", (64, 32), "white")
    sketch.paste((0, 0, 0), (5, 10, 60, 13))
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    sketch.save(folder / "rotated.jpg", "JPEG", quality=95, exif=exif)
    result, _ = predict(client, example, folder, {"model": "shoes", "editor": "rotated.jpg"})
    assert PIL.Image.open(result).size == (32, 64)
    sketch.convert("L").save(folder / "grey-sketch.png")
    result, _ = predict(client, example, folder, {"model": "shoes", "editor": "grey-sketch.png"})
    assert PIL.Image.open(result).size == (64, 32)
    result, _ = predict(client, example, folder, {"editor": "rgba.png"})
    assert PIL.Image.open(result).size == (64, 64)


def test_result_is_a_png_equal_to_the_pipeline_output(client, files, model_dirs):
    folder, example = files
    result, download = predict(client, example, folder, {})
    served = PIL.Image.open(result)
    assert served.format == "PNG" and PIL.Image.open(download).format == "PNG"
    model = load_model(str(model_dirs[0]))  # fast=True, as the server loads it
    ids = to_model_input(check_and_fit(PIL.Image.open(example), model), model)
    expected = np.asarray(model.pipeline(ids).images[0])
    assert np.array_equal(np.asarray(served.convert("RGB")), expected)
    assert np.array_equal(np.asarray(PIL.Image.open(download).convert("RGB")), expected)


def test_upload_size_is_limited(client, files):
    folder, example = files
    (folder / "large.png").write_bytes(b"\x89PNG" + bytes(11 * 2**20))
    with pytest.raises(ValueError, match="exceeds the maximum file size of 10485760"):
        predict(client, example, folder, {"editor": "large.png"})


def test_results_and_uploads_are_aged_out_and_nothing_lands_in_tmpdir(
    model_dirs, tmp_path, files, monkeypatch
):
    """The demo's delete_cache, shortened to 2 s: every file the requests wrote (uploads,
    results) is gone soon after; only the page's own files (the examples) stay."""
    from gradio_client import Client

    folder, example = files
    private_tmp = tmp_path / "tmp"  # this process's TMPDIR while the server runs
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))

    def cached(cache: Path) -> set[Path]:
        return {p for p in cache.rglob("*") if p.is_file()}

    with gradio_temp_dir(tmp_path / "cache") as cache:
        demo, url = launch(model_dirs, delete_cache=(1, 2))
        try:
            page_files = cached(cache)
            client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
            grew = False
            for fields in ({"mode": "random", "seed": 1}, {"seed": 2}, {"editor": "rgba.png"}):
                result, _ = predict(client, example, folder, fields)
                assert Path(result).name.startswith("hf-pix2pixhd-")
                grew |= len(cached(cache) - page_files) >= 2  # the upload and the result
            assert grew
            deadline = time.monotonic() + 20
            while cached(cache) != page_files and time.monotonic() < deadline:
                time.sleep(0.5)
            assert cached(cache) == page_files
        finally:
            demo.close()
    assert not [p for p in private_tmp.rglob("*") if p.is_file()]


def test_variations_are_pngs(client, files):
    from gradio_client import handle_file

    _, example = files
    editor = handle_file(str(example))
    gallery = client.predict(
        "facades",
        {"background": editor, "layers": [], "composite": editor},
        "random",
        "",
        5,
        None,
        api_name="/variations",
    )
    images = [PIL.Image.open(item["image"]) for item in gallery]
    assert [(i.format, i.size) for i in images] == [("PNG", (64, 64))] * 4
