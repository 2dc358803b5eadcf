"""Throwaway virtual environments for install tests, borrowing this environment's packages.

A fresh venv installing torch, diffusers and gradio took 7.5 min on the shared 2-core machine
(measured; far too slow for a test). ``--system-site-packages`` would not help: it exposes the
base interpreter's packages, not this venv's. So the new venv gets a ``.pth`` line naming this
venv's site-packages: its own site-packages (where a wheel installs) come first, and this
venv's ``.pth`` files (the editable install of hf_pix2pixhd) are not processed there.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

#: Our source folders: never on the path of a process that must use an installed copy.
SOURCE_DIRS = {str(Path(__file__).resolve().parents[1] / "src")}


def make_venv(path: Path) -> Path:
    """A venv at ``path`` (without pip: this environment's pip installs into it with
    ``--python``) that also sees this environment's packages. Returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    ours = [p for p in site.getsitepackages() if Path(p).is_dir()] or [
        sysconfig.get_paths()["purelib"]
    ]
    (Path(purelib) / "borrowed.pth").write_text("\n".join(ours) + "\n")
    return python


def pip(python: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``pip --python <venv python> ...`` with this environment's pip."""
    return subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), *args],
        cwd=cwd, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without PYTHONPATH (so nothing points at our source), offline."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1", **extra)
    return env


def generate_once(port: int, model: str, image: Path) -> Path:
    """Ask a served app (``/generate`` on 127.0.0.1) for one image from ``image`` in the
    default style, through gradio_client; returns the result's path."""
    from gradio_client import Client, handle_file

    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    source = handle_file(str(image))
    editor = {"background": source, "layers": [], "composite": source}
    image_path, _ = client.predict(model, editor, "default", "", 1, None, api_name="/generate")
    return Path(image_path)


def stop(app: subprocess.Popen, log) -> None:
    """Terminate a served app (kill it if it does not stop) and close its log."""
    app.terminate()
    try:
        app.wait(timeout=20)
    except subprocess.TimeoutExpired:
        app.kill()
    log.close()
