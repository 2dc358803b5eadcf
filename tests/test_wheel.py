"""A wheel install works end to end: build the wheel, install it in a fresh venv, train a tiny
model to export (the card template is package data), translate with the console script, and
serve the export with ``app.py --model`` (a real server, a gradio_client request). Nothing in
that venv can see the repository: the package resolves from the wheel."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import PIL.Image
import pytest
from test_training import make_aligned_dataset, pix2pix_overrides
from venvs import SOURCE_DIRS, clean_env, generate_once, make_venv, pip, stop

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _run(command: list, cwd: Path, timeout: int = 300) -> str:
    result = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=clean_env(), capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, (
        f"{command[:3]}:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    )
    return result.stdout


@pytest.mark.slow  # a wheel build, a venv, a training run and a server (about 60 s idle)
def test_wheel_install_trains_exports_translates_and_serves(tmp_path):

    # Build from a copy, so the checkout gets no build/ or egg-info.
    project = tmp_path / "project"
    shutil.copytree(REPO / "src", project / "src", ignore=shutil.ignore_patterns(
        "__pycache__", "*.egg-info"))  # fmt: skip
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(REPO / name, project / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(project)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("hf_pix2pixhd-*.whl")
    python = make_venv(tmp_path / "venv")
    pip(python, "install", "-q", str(wheel))

    work = tmp_path / "work"  # the user's folder: the scripts, no package source
    work.mkdir()
    for script in ("train_accelerate.py", "app.py"):
        shutil.copyfile(REPO / script, work / script)
    where = _run([python, "-c", (
        "import hf_pix2pixhd, hf_pix2pixhd.evaluation as e, hf_pix2pixhd.training.model_card as c\n"
        "print(hf_pix2pixhd.__file__, c.TEMPLATE.is_file(), e.find_lpips_weights_dir())"
    )], work).split()  # fmt: skip
    assert where[0].startswith(str(tmp_path / "venv"))  # the wheel's copy, not the checkout
    assert not any(where[0].startswith(d) for d in SOURCE_DIRS)
    assert where[1:] == ["True", "None"]  # the template ships; no repo-relative weights

    data = make_aligned_dataset(tmp_path / "data", count=4, size=32)
    run = tmp_path / "run"
    overrides = [
        *pix2pix_overrides(data, run), "--n_epochs", "1", "--n_epochs_decay", "0",
        "--data.load_size", "32", "--data.crop_size", "32", "--model.num_downs", "5",
    ]  # fmt: skip
    _run([python, "train_accelerate.py", *overrides], work)
    exported = run / "pipeline"
    assert (exported / "README.md").is_file() and (exported / "pipeline.py").is_file()

    _run([tmp_path / "venv" / "bin" / "hf-pix2pixhd", "translate", data / "train" / "0.png",
          "--model", exported, "--out", tmp_path / "translated"], work)  # fmt: skip
    (output,) = (tmp_path / "translated").glob("*.png")
    assert PIL.Image.open(output).size[1] == 32

    port = _free_port()
    log = (tmp_path / "app.log").open("w")
    app = subprocess.Popen(
        [python, "app.py", "--model", str(exported), "--port", str(port)],
        cwd=work, env=clean_env(), stdout=log, stderr=log,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not _listening(port):
            assert app.poll() is None, (tmp_path / "app.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the app did not start"
            time.sleep(1)
        assert generate_once(port, "pipeline", data / "train" / "0.png").is_file()
    finally:
        stop(app, log)
