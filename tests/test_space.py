"""The Space, built the way a Space builds: ``hf-pix2pixhd make-space``, then ``pip install -r
requirements.txt`` in a folder holding only requirements.txt, then the rest of the files, then
``python app.py`` with the environment variables a Space sets."""

from __future__ import annotations

import fnmatch
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import gradio
import psutil
import pytest
import yaml
from app_fixtures import make_label_model
from venvs import SOURCE_DIRS, clean_env, generate_once, make_venv, pip, stop

from hf_pix2pixhd.space import REQUIREMENTS, make_space

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_make_space_writes_header_requirements_lfs_rules_and_models(tmp_path):
    label_model = make_label_model(tmp_path / "facades")
    out = make_space(tmp_path / "space", [str(label_model), "someone/facades-hd"])

    header = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert header["sdk"] == "gradio" and header["sdk_version"] == gradio.__version__
    assert header["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert header["app_file"] == "app.py"
    assert header["models"] == ["someone/facades-hd"]  # Hub ids only; bundled ones are files
    assert (out / "models" / "hub.txt").read_text().split() == ["someone/facades-hd"]
    assert (out / "app.py").read_text() == (REPO / "app.py").read_text()

    lines = (out / "requirements.txt").read_text().split()
    assert [line.split("==")[0] for line in lines] == list(REQUIREMENTS)
    assert all("==" in line and not line.startswith("-") for line in lines)

    rules = [line.split()[0] for line in (out / ".gitattributes").read_text().splitlines()
             if "filter=lfs" in line]  # fmt: skip
    binaries = [p for p in out.rglob("*") if p.suffix in (".safetensors", ".png")]
    assert binaries and all(any(fnmatch.fnmatch(p.name, r) for r in rules) for p in binaries)
    bundled = out / "models" / "facades"
    assert (bundled / "style_bank").is_dir() and (bundled / "examples" / "facade.png").is_file()
    assert "_name_or_path" not in (bundled / "model_index.json").read_text()
    assert (out / "hf_pix2pixhd" / "app" / "__init__.py").is_file()
    with pytest.raises(FileExistsError):
        make_space(out, [str(label_model)])


@pytest.mark.slow  # a Space-like build and a real server in a venv (about 40 s idle)
def test_space_builds_from_requirements_alone_and_serves_on_all_interfaces(tmp_path):

    label_model = make_label_model(tmp_path / "facades")
    space = tmp_path / "space"
    subprocess.run(
        [sys.executable, "-m", "hf_pix2pixhd.cli", "make-space", str(space),
         "--model", str(label_model)],
        env=clean_env(PYTHONPATH=str(REPO / "src")), check=True, capture_output=True, timeout=120,
    )  # fmt: skip

    # The build: requirements.txt alone, then the rest of the repository.
    build = tmp_path / "build"
    build.mkdir()
    shutil.copyfile(space / "requirements.txt", build / "requirements.txt")
    python = make_venv(tmp_path / "venv")
    pip(python, "install", "-r", "requirements.txt", cwd=build)
    shutil.copytree(space, build, dirs_exist_ok=True)
    found = subprocess.run(
        [python, "-c", "import hf_pix2pixhd; print(hf_pix2pixhd.__file__)"],
        cwd=build, env=clean_env(), capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert found == str(build / "hf_pix2pixhd" / "__init__.py")  # the Space's copy
    assert not any(found.startswith(d) for d in SOURCE_DIRS)

    port = free_port()
    log = (tmp_path / "app.log").open("w")
    env = clean_env(GRADIO_SERVER_NAME="0.0.0.0", GRADIO_SERVER_PORT=str(port))
    app = subprocess.Popen([python, "app.py"], cwd=build, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 180
        listening = []
        while not listening:
            assert app.poll() is None, (tmp_path / "app.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the app did not start listening"
            time.sleep(1)
            listening = [
                c.laddr.ip
                for c in psutil.Process(app.pid).net_connections(kind="tcp")
                if c.status == psutil.CONN_LISTEN and c.laddr.port == port
            ]
        assert set(listening) <= {"0.0.0.0", "::"}, listening  # all interfaces, not loopback

        assert generate_once(port, "facades", label_model / "examples" / "facade.png").is_file()
    finally:
        stop(app, log)


def test_make_space_push_creates_a_gradio_space_and_uploads_the_folder(tmp_path, monkeypatch):
    from huggingface_hub import HfApi, RepoUrl

    from hf_pix2pixhd.cli import main

    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = (repo_id, kwargs["repo_type"], kwargs["space_sdk"])
        return RepoUrl(f"https://huggingface.co/spaces/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, repo_type, **kwargs):
        calls["upload_folder"] = (
            repo_id,
            repo_type,
            sorted(p.name for p in Path(folder_path).iterdir()),
        )
        return "https://huggingface.co/spaces/me/demo/commit/local"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    label_model = make_label_model(tmp_path / "facades")
    out = tmp_path / "space"
    assert main(["make-space", str(out), "--model", str(label_model), "--push", "me/demo"]) == 0
    assert calls["create_repo"] == ("me/demo", "space", "gradio")
    assert calls["upload_folder"] == ("me/demo", "space", sorted(p.name for p in out.iterdir()))
    assert ".gitattributes" in calls["upload_folder"][2]
