"""ONNX export: `hf-pix2pixhd export-onnx`, onnxruntime parity, the torch-free example."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from app_fixtures import CLASSES, PALETTE, example_labels

from hf_pix2pixhd import FeatureEncoder, GlobalGenerator, UNetGenerator
from hf_pix2pixhd.cli import build_parser
from hf_pix2pixhd.cli import main as cli_main
from hf_pix2pixhd.pipeline import Pix2PixHDPipeline
from hf_pix2pixhd.styles import StyleBank

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "onnx_inference.py"
TOLERANCE = 1e-4  # onnxruntime vs PyTorch fp32, max abs


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def make_instance_model(folder: Path) -> Path:
    """A tiny pix2pixHD pipeline with everything the export carries: one-hot labels, an
    instance-boundary channel, encoder features and a style bank."""
    torch.manual_seed(0)
    translator = GlobalGenerator(in_channels=4 + 1 + 3, ngf=4, n_downsampling=2, n_blocks=1)
    encoder = FeatureEncoder(ngf=4, n_downsampling=2)
    bank = StyleBank(num_classes=4, feature_nc=3, max_clusters=2)
    with torch.no_grad():
        bank.centers.uniform_(-1, 1)
        bank.num_clusters.fill_(2)
        bank.cluster_sizes.fill_(1)
    pipe = Pix2PixHDPipeline(
        translator, encoder=encoder, style_bank=bank, input_kind="labels", label_nc=4,
        palette=PALETTE, class_names=CLASSES, use_instance_map=True, feature_nc=3,
    )  # fmt: skip
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory, one_thread) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("onnx")
    model = make_instance_model(root / "model")
    assert cli_main(["export-onnx", str(model), "--out", str(root / "onnx")]) == 0
    return model, root / "onnx"


def test_export_onnx_cli_writes_dynamic_graphs_with_pytorch_parity(exported):
    model, out = exported
    pipe = Pix2PixHDPipeline.from_pretrained(model)
    manifest = json.loads((out / "pipeline.json").read_text())
    assert manifest["files"] == {
        "translator": "translator.onnx", "encoder": "encoder.onnx",
        "default_style": "default_style.npy", "style_bank": "style_bank.npz",
    }  # fmt: skip
    assert manifest["palette"] == PALETTE and manifest["use_instance_map"] is True
    assert manifest["size_multiple"] == 4 and manifest["in_channels"] == 8
    default = np.load(out / "default_style.npy")
    np.testing.assert_array_equal(default, pipe.style_bank.centers[:, 0].numpy())

    translator = session(out / "translator.onnx")
    shape = translator.get_inputs()[0].shape
    assert isinstance(shape[0], str) and isinstance(shape[2], str) and isinstance(shape[3], str)
    torch.manual_seed(1)
    # Sizes and batches other than the export sample's (2 x 8 x 12).
    for batch, height, width in [(1, 20, 8), (3, 12, 36)]:
        x = torch.rand(batch, 8, height, width) * 2 - 1
        (ours,) = translator.run(None, {"input": x.numpy()})
        with torch.no_grad():
            reference = pipe.translator(x).numpy()
        assert ours.shape == reference.shape
        assert np.abs(ours - reference).max() <= TOLERANCE

    encoder = session(out / "encoder.onnx")
    for batch, height, width in [(1, 16, 28), (2, 24, 8)]:
        image = torch.rand(batch, 3, height, width) * 2 - 1
        # Many sparse ids, different per image, Cityscapes-like (class * 1000 + k) in one.
        instances = torch.randint(0, 6, (batch, 1, height, width)) * 7
        instances[-1] += 26000
        feeds = {"image": image.numpy(), "instance_map": instances.numpy()}
        (ours,) = encoder.run(None, feeds)
        with torch.no_grad():
            reference = pipe.encoder(image, instances).numpy()
        assert np.abs(ours - reference).max() <= TOLERANCE
        # Pooled: one value per instance and channel.
        first = instances[0, 0].numpy() == instances[0, 0, 0, 0].item()
        assert np.ptp(ours[0][:, first], axis=-1).max() <= 1e-6


def test_example_runs_with_onnxruntime_alone_and_matches_the_pipeline(exported, tmp_path):
    model, out = exported
    ids = example_labels(40)[:, :36]  # 40 x 36: padded to multiples of 4 on neither side
    colours = np.asarray(PALETTE, dtype=np.int16)[ids]
    noise = np.random.default_rng(0).integers(-12, 13, colours.shape)  # JPEG-like noise
    noisy = np.clip(colours + noise, 0, 255).astype(np.uint8)
    PIL.Image.fromarray(noisy).save(tmp_path / "labels.png")
    instances = ids * 10
    instances[:, 18:] += 1  # split every class in two halves: boundaries beyond class borders
    PIL.Image.fromarray(instances.astype(np.uint8)).save(tmp_path / "instances.png")
    # `import torch` fails inside the example's process: it may use numpy + onnxruntime only.
    code = (
        "import runpy, sys; sys.modules['torch'] = None; "
        f"sys.argv = ['onnx_inference.py', {str(out)!r}, {str(tmp_path / 'labels.png')!r}, "
        f"'--instance-map', {str(tmp_path / 'instances.png')!r}, "
        f"'--out', {str(tmp_path / 'onnx.png')!r}]; "
        f"runpy.run_path({str(EXAMPLE)!r}, run_name='__main__')"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    pipe = Pix2PixHDPipeline.from_pretrained(model)
    expected = np.asarray(
        pipe(str(tmp_path / "labels.png"), instance_map=instances).images[0], dtype=int
    )
    ours = np.asarray(PIL.Image.open(tmp_path / "onnx.png"), dtype=int)
    assert ours.shape == expected.shape == (40, 36, 3)
    assert np.abs(ours - expected).max() <= 1  # 8-bit rounding of fp32 differences
    # Without the instance map, class borders alone are boundaries: another picture.
    without = np.asarray(pipe(str(tmp_path / "labels.png")).images[0], dtype=int)
    assert np.abs(without - ours).max() > 1


def test_export_of_a_converted_batchnorm_unet_folder(tmp_path, one_thread, capsys):
    from hf_pix2pixhd.onnx_export import onnx_max_abs_error

    torch.manual_seed(2)
    unet = UNetGenerator(in_channels=1, num_downs=5, ngf=4, norm="batch")
    for module in unet.modules():  # trained-looking running statistics, used in eval mode
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    unet.save_pretrained(tmp_path / "unet")
    # A model folder as `hf-pix2pixhd convert` writes it, not a pipeline.
    code = cli_main(["export-onnx", str(tmp_path / "unet"), "--out", str(tmp_path / "onnx"),
                     "--check"])  # fmt: skip
    assert code == 0
    reported = capsys.readouterr().out.split("max abs difference")[-1]
    assert float(reported) <= TOLERANCE
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == [
        "pipeline.json", "translator.onnx"]  # fmt: skip
    sample = torch.rand(2, 1, 64, 96) * 2 - 1
    assert onnx_max_abs_error(tmp_path / "onnx" / "translator.onnx", unet, {"input": sample}) <= (
        TOLERANCE
    )
    assert json.loads((tmp_path / "onnx" / "pipeline.json").read_text())["size_multiple"] == 32


def test_export_pipeline_is_the_checkpoint_command_and_export_a_deprecated_alias():
    parser = build_parser()
    for name in ("export-pipeline", "export"):
        args, extra = parser.parse_known_args([name, "--out", "x", "model.lr=1e-3"])
        assert args.checkpoint == "latest" and extra == ["model.lr=1e-3"]
    assert "deprecated alias" in parser.format_help()


@pytest.mark.slow
def test_bundled_facades_model_exports_with_parity(tmp_path, one_thread):
    model = REPO / "models" / "facades"
    if not (model / "model_index.json").is_file():
        pytest.skip("models/facades is absent")
    from hf_pix2pixhd.onnx_export import export_onnx, onnx_max_abs_error

    result = export_onnx(model, tmp_path)
    pipe = Pix2PixHDPipeline.from_pretrained(model)
    torch.manual_seed(3)
    inputs = {"input": torch.rand(1, pipe.translator.config.in_channels, 256, 192) * 2 - 1}
    assert onnx_max_abs_error(result.translator, pipe.translator, inputs) <= TOLERANCE
    instances = torch.randint(0, 12, (1, 1, 128, 96))
    inputs = {"image": torch.rand(1, 3, 128, 96) * 2 - 1, "instance_map": instances}
    assert onnx_max_abs_error(result.encoder, pipe.encoder, inputs) <= TOLERANCE
