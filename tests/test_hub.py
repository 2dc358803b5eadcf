"""Hub round trip, as users load models: plain ``DiffusionPipeline.from_pretrained`` with the
package, ``push_to_hub`` into a local stand-in for the Hub, and the pushed snapshot loaded in
fresh processes, with the package and with diffusers alone (``trust_remote_code=True``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import yaml
from app_fixtures import make_label_model
from huggingface_hub import HfApi, RepoUrl
from huggingface_hub.utils import filter_repo_objects

import hf_pix2pixhd
from hf_pix2pixhd.pipeline import Pix2PixHDPipeline
from hf_pix2pixhd.training import load_config
from hf_pix2pixhd.training.loop import write_training_config
from hf_pix2pixhd.training.model_card import card_data, push_folder_to_hub, render_model_card

SRC = Path(hf_pix2pixhd.__file__).resolve().parents[1]
METRICS = {"fid": 123.4, "lpips_vgg": 0.5, "ssim": 0.25, "psnr": 12.5}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, one_thread) -> Path:
    """A tiny label-map pipeline exported as training does (card, training config, samples,
    evaluation report), full of this machine's paths."""
    tmp = tmp_path_factory.mktemp("export")
    folder = make_label_model(tmp / "model")
    data = tmp / "data" / "facades"
    data.mkdir(parents=True)
    config = load_config(None, [
        "--data.source", str(data), "--data.input_kind", "labels", "--data.label_nc", "4",
        "--model.recipe", "pix2pixhd", "--model.generator", "global",
        "--vgg_weights", "../shared/weights/vgg16_features.safetensors",
        "--output_dir", str(tmp / "run"),
    ])  # fmt: skip
    write_training_config(config, folder)
    (folder / "evaluation").mkdir()
    report = {"model": str(folder), "data": str(data), "subset": "holdout", "metrics": METRICS}
    (folder / "evaluation" / "metrics.json").write_text(json.dumps(report))
    PIL.Image.new("RGB", (96, 32), "gray").save(folder / "samples.png")
    render_model_card(config, folder, extra={"steps": 4, "keep_samples": True})
    return folder


@pytest.fixture()
def local_hub(tmp_path, monkeypatch) -> Path:
    """HfApi.create_repo / upload_folder patched to write into ``tmp_path/hub/<repo_id>``: the
    files ``upload_folder`` would send (its default ignore patterns applied), no network."""
    hub = tmp_path / "hub"

    def create_repo(self, repo_id, **kwargs):
        (hub / repo_id).mkdir(parents=True, exist_ok=True)
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, ignore_patterns=None, **kwargs):
        from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS

        folder = Path(folder_path)
        files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
        for name in filter_repo_objects(files, ignore_patterns=DEFAULT_IGNORE_PATTERNS):
            (hub / repo_id / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / name, hub / repo_id / name)
        return f"https://huggingface.co/{repo_id}/commit/local"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return hub


def _run(code: str, *, package: bool, tmp: Path) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter; without ``package``, hf_pix2pixhd is not
    importable there (our source folders are cut from sys.path)."""
    prelude = (
        "import sys\n"
        f"sys.path = [p for p in sys.path if p and p not in {[str(SRC), '/work/main/src']!r}]\n"
        "import importlib.util\n"
        "assert importlib.util.find_spec('hf_pix2pixhd') is None, 'package still importable'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp / "modules"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    if package:
        env["PYTHONPATH"] = str(SRC)
    result = subprocess.run(
        [sys.executable, "-c", ("" if package else prelude) + code],
        env=env, cwd=tmp, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def test_plain_diffusers_loads_a_saved_pipeline_once_the_package_is_imported(exported, tmp_path):
    from diffusers import DiffusionPipeline

    resaved = tmp_path / "resaved"
    Pix2PixHDPipeline.from_pretrained(exported).save_pretrained(resaved)
    index = json.loads((resaved / "model_index.json").read_text())
    assert "_name_or_path" not in index  # where it was loaded from stays on this machine
    assert index["translator"] == ["hf_pix2pixhd.models.hd_generator", "GlobalGenerator"]
    pipe = DiffusionPipeline.from_pretrained(resaved)
    assert isinstance(pipe, Pix2PixHDPipeline) and pipe.style_bank is not None


@pytest.mark.slow  # two fresh interpreters import torch and diffusers
def test_push_to_hub_publishes_our_card_and_files_and_loads_without_the_package(
    exported, local_hub, tmp_path
):
    pipe = Pix2PixHDPipeline.from_pretrained(exported)  # source: the folder it came from
    url = pipe.push_to_hub("someone/tiny-facades")
    assert url.endswith("/commit/local")
    repo = local_hub / "someone" / "tiny-facades"

    # Our card, not diffusers' blank one.
    card = (repo / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["library_name"] == "hf-pix2pixhd"
    assert header["pipeline_tag"] == "image-to-image"
    assert {"pix2pixhd", "gan", "image-to-image"} <= set(header["tags"])
    assert "datasets" not in header  # the data was a local folder, not a Hub data set
    assert "base_model" not in header  # trained from scratch
    (result,) = header["model-index"][0]["results"]
    assert result["task"]["type"] == "image-to-image"
    assert {m["type"]: m["value"] for m in result["metrics"]} == METRICS
    assert 'from_pretrained(\n    "someone/tiny-facades", custom_pipeline="pipeline"' in card
    assert 'DiffusionPipeline.from_pretrained("someone/tiny-facades")' in card

    # The extras travel; the remote code is there; no local path anywhere.
    for name in ("training_config.json", "samples.png", "evaluation/metrics.json",
                 "examples/facade.png", "style_bank/diffusion_pytorch_model.safetensors",
                 "pipeline.py", "hf_pix2pixhd_pipeline.py"):  # fmt: skip
        assert (repo / name).is_file(), name
    for path in repo.rglob("*"):
        if path.suffix not in (".json", ".md", ".py"):
            continue
        # The .py files are the package's own source (a comment may name a data folder).
        locals_ = [str(tmp_path.parent), str(exported.parent)]
        locals_ += ["../shared", "/work/", "/tmp/"] if path.suffix != ".py" else []
        for local in locals_:
            assert local not in path.read_text(), f"{local} in {path.relative_to(repo)}"
    training = json.loads((repo / "training_config.json").read_text())
    assert training["data"]["source"] == "facades"
    assert training["vgg_weights"] == "vgg16_features.safetensors"
    assert "_name_or_path" not in json.loads((repo / "model_index.json").read_text())

    # Load the pushed snapshot in fresh processes, as the two kinds of users do.
    label_map = exported / "examples" / "facade.png"
    expected = np.asarray(pipe(str(label_map), output_type="np").images[0])
    call = f"pipe({str(label_map)!r}, output_type='np').images[0]"
    # Installed, but only diffusers imported: pipeline.py hands over to the package (which
    # registers itself, so a plain from_pretrained works after that).
    with_package = _run(
        "import sys, numpy as np\nfrom diffusers import DiffusionPipeline\n"
        "assert 'hf_pix2pixhd' not in sys.modules\n"
        f"pipe = DiffusionPipeline.from_pretrained({str(repo)!r}, custom_pipeline='pipeline',"
        " trust_remote_code=True)\n"
        f"again = DiffusionPipeline.from_pretrained({str(repo)!r})\n"
        "print(type(pipe).__module__, type(again).__module__)\n"
        f"np.save('with_package.npy', {call})\n",
        package=True,
        tmp=tmp_path,
    )
    assert with_package.stdout.split() == ["hf_pix2pixhd.pipeline"] * 2
    alone = _run(
        "import numpy as np\nfrom diffusers import DiffusionPipeline\n"
        f"pipe = DiffusionPipeline.from_pretrained({str(repo)!r}, custom_pipeline='pipeline',"
        " trust_remote_code=True)\n"
        "print(type(pipe).__module__, type(pipe.translator).__module__)\n"
        f"np.save('alone.npy', {call})\n",
        package=False,
        tmp=tmp_path,
    )
    assert alone.stdout.split() == [
        "diffusers_modules.local.hf_pix2pixhd_pipeline",
        "diffusers_modules.local.hf_pix2pixhd_models_hd_generator",
    ]
    for name in ("with_package.npy", "alone.npy"):
        np.testing.assert_allclose(np.load(tmp_path / name), expected, atol=1e-6)


def test_card_data_takes_a_metadata_dict():
    data = card_data({"model_name": "m", "datasets": ["huggan/facades", "../data/x"],
                      "base_model": "someone/facades-pix2pixhd"}).to_dict()  # fmt: skip
    assert (
        data["datasets"] == ["huggan/facades"] and data["base_model"] == "someone/facades-pix2pixhd"
    )
    assert "base_model" not in card_data({"base_model": "/tmp/run/pipeline"}).to_dict()


def test_training_push_publishes_the_export_folder(exported, local_hub):
    config = load_config(None, ["--data.source", "huggan/facades", "--hub_model_id", "me/run"])
    push_folder_to_hub(exported, config)
    repo = local_hub / "me" / "run"
    for name in ("pipeline.py", "training_config.json", "samples.png", "style_bank/config.json"):
        assert (repo / name).is_file(), name
    card = (repo / "README.md").read_text()
    assert "model-index" in card and 'from_pretrained("me/run")' in card
    assert str(exported.parent) not in card


def test_push_without_an_export_card_writes_a_short_one(tmp_path, local_hub):
    model = make_label_model(tmp_path / "converted")  # e.g. from `convert`: no card, no run
    Pix2PixHDPipeline.from_pretrained(model).push_to_hub("me/converted")
    card = (local_hub / "me" / "converted" / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["library_name"] == "hf-pix2pixhd" and header["pipeline_tag"] == "image-to-image"
    assert "pix2pixHD (Wang et al., 2018)" in card and "No training record" in card
    assert 'custom_pipeline="pipeline", trust_remote_code=True' in card
