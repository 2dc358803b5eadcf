"""Official checkpoints: parity with the reference outputs, detection, the CLI, unsafe files."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import hf_pix2pixhd
from hf_pix2pixhd import GlobalGenerator, MultiScaleDiscriminator, UNetGenerator
from hf_pix2pixhd.cli import main as cli_main
from hf_pix2pixhd.convert import (
    CheckpointError,
    convert_official_checkpoint,
    detect_architecture,
    load_state_dict_file,
)

FIXTURES = ["pix2pix_unet128_batch", "pix2pix_unet256_instance", "pix2pix_resnet9_instance",
            "pix2pix_patchgan_batch", "pix2pixhd_global", "pix2pixhd_local",
            "pix2pixhd_multiscale_D", "pix2pixhd_encoder"]  # fmt: skip


def flatten_outputs(out) -> list[torch.Tensor]:
    if torch.is_tensor(out):
        return [out]
    return [f for scale in out for f in scale]


@pytest.mark.parametrize("name", FIXTURES)
def test_converted_official_networks_reproduce_official_outputs(shared_dir, name):
    root = shared_dir / "fixtures" / "official"
    manifest = json.loads((root / "manifest.json").read_text())[name]
    model = convert_official_checkpoint(root / f"{name}.pth")
    assert sum(p.numel() for p in model.parameters()) == manifest["n_params"]
    io = load_file(root / f"{name}.io.safetensors")
    inputs = [io[k] for k in sorted(k for k in io if k.startswith("input_"))]
    with torch.no_grad():
        outputs = flatten_outputs(model(*inputs))
    assert len(outputs) == manifest["n_outputs"]
    for i, output in enumerate(outputs):
        reference = io[f"output_{i}"]
        assert output.shape == reference.shape
        assert (output - reference).abs().max() <= 1e-5


def test_cli_convert_writes_a_loadable_model_named_in_config(shared_dir, tmp_path):
    checkpoint = shared_dir / "fixtures" / "official" / "pix2pixhd_multiscale_D.pth"
    result = subprocess.run(
        [sys.executable, "-m", "hf_pix2pixhd.cli", "convert", str(checkpoint), "--out",
         str(tmp_path / "D")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "MultiScaleDiscriminator" in result.stdout
    config = json.loads((tmp_path / "D" / "config.json").read_text())
    cls = getattr(hf_pix2pixhd, config["_class_name"])
    assert cls is MultiScaleDiscriminator
    assert (tmp_path / "D" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = cls.from_pretrained(tmp_path / "D")
    io = load_file(checkpoint.with_name("pix2pixhd_multiscale_D.io.safetensors"))
    with torch.no_grad():
        out = flatten_outputs(loaded(io["input_0"]))
    assert (out[0] - io["output_0"]).abs().max() <= 1e-5


def test_cli_convert_to_a_pipeline(shared_dir, tmp_path):
    from hf_pix2pixhd.pipeline import Pix2PixHDPipeline

    checkpoint = shared_dir / "fixtures" / "official" / "pix2pixhd_global.pth"
    code = cli_main(
        ["convert", str(checkpoint), "--out", str(tmp_path / "pipe"), "--pipeline",
         "--input-kind", "labels", "--label-nc", "35", "--instance-map"]
    )  # fmt: skip
    assert code == 0
    pipe = Pix2PixHDPipeline.from_pretrained(tmp_path / "pipe")
    labels = torch.randint(0, 35, (40, 72))
    image = pipe(labels).images[0]
    assert image.size == (72, 40)


def test_detection_of_full_size_official_layouts():
    assert detect_architecture(UNetGenerator().state_dict()) == (
        "unet",
        {"in_channels": 3, "out_channels": 3, "num_downs": 8, "ngf": 64, "norm": "batch"},
    )
    name, config = detect_architecture(GlobalGenerator(ngf=8).state_dict())
    assert name == "global" and config["n_downsampling"] == 4 and config["n_blocks"] == 9


def test_non_intermediate_multiscale_layout_is_regrouped():
    torch.manual_seed(0)
    ours = MultiScaleDiscriminator(in_channels=4, ndf=4, num_d=2).eval()
    # The official layout without getIntermFeat: one flat Sequential per scale, "layer{i}.{k}".
    flat = {}
    for i in range(2):
        k = 0
        for j in range(ours.num_blocks):
            block = getattr(ours, f"scale{i}_layer{j}")
            for m, layer in enumerate(block):
                for pname, value in layer.state_dict().items():
                    flat[f"layer{i}.{k}.{pname}"] = value
                k += 1
                del m
    converted = convert_official_checkpoint(flat)
    x = torch.randn(1, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), ours(x))


def test_mismatch_names_missing_and_unexpected_keys():
    state = GlobalGenerator(in_channels=4, ngf=4, n_downsampling=2, n_blocks=1).state_dict()
    state["model.99.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): \['model.99.weight'\]"):
        convert_official_checkpoint(state, arch="global", n_blocks=1)
    with pytest.raises(CheckpointError, match="missing keys"):
        convert_official_checkpoint(
            GlobalGenerator(in_channels=4, ngf=4, n_downsampling=2, n_blocks=1).state_dict(),
            n_blocks=2,
        )


def test_unrecognised_state_dict():
    with pytest.raises(CheckpointError, match="Could not recognise"):
        convert_official_checkpoint({"foo.weight": torch.zeros(2)})


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['PWNED_MARKER']}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_payload_is_refused_and_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("PWNED_MARKER", str(marker))
    evil = tmp_path / "latest_net_G.pth"
    with evil.open("wb") as f:
        pickle.dump({"model.1.weight": _Payload()}, f)
    with pytest.raises(CheckpointError, match="refused without running"):
        load_state_dict_file(evil)
    # Also through torch.save's zip format.
    torch.save({"x": _Payload()}, tmp_path / "evil2.pth")
    with pytest.raises(CheckpointError, match="refused"):
        convert_official_checkpoint(tmp_path / "evil2.pth")
    assert not marker.exists()


def test_truncated_and_non_checkpoint_files(tmp_path):
    good = tmp_path / "g.pth"
    torch.save(
        GlobalGenerator(in_channels=4, ngf=4, n_downsampling=2, n_blocks=1).state_dict(), good
    )
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_state_dict_file(truncated)
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_state_dict_file(text)
    with pytest.raises(FileNotFoundError):
        load_state_dict_file(tmp_path / "missing.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="does not contain a state_dict"):
        load_state_dict_file(tmp_path / "list.pth")


def test_cli_reports_errors_without_a_traceback(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00garbage")
    result = subprocess.run(
        [sys.executable, "-m", "hf_pix2pixhd.cli", "convert", str(bad), "--out", str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert "error:" in result.stderr and "Traceback" not in result.stderr
    assert Path(bad).exists()
