"""Global styles for sketch models: an encoder pooled over the whole image, a one-class style
bank of colour codes, style choice, reference photos, export, and the shoes preset.

A tiny sketch -> photo model (global G + feature encoder, L1 recipe) is trained here for a few
dozen 32x32 steps on generated pairs: the sketch is a black outline on white, the photo the
same shape filled with a colour on a red-blue ramp that differs per image. The sketch says
nothing about the colour, so G learns to read it from the encoder's global code. G and E use
batch norm over batches of 4: an instance norm after G's first convolution would erase the
constant code map (see configs/shoes_pix2pixhd_demo.yaml and TrainConfig's check).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw
import pytest
import torch
from safetensors.torch import load_file

from hf_pix2pixhd import FeatureEncoder, GlobalGenerator, StyleBank, UNetGenerator
from hf_pix2pixhd.cli import main as cli_main
from hf_pix2pixhd.pipeline import Pix2PixHDPipeline

REPO = Path(__file__).resolve().parents[1]
SIZE = 32
COUNT = 24

pytestmark = pytest.mark.usefixtures("one_thread")


def ramp_colour(t: float) -> tuple[int, int, int]:
    """The shape's fill: red at t=1, blue at t=0."""
    return (round(255 * t), 40, round(255 * (1 - t)))


def draw_pair(box: tuple[int, int, int, int], fill: tuple[int, int, int]) -> np.ndarray:
    """``(SIZE, 2 * SIZE, 3)`` uint8: the photo (shape filled with ``fill``) | the sketch."""
    photo = PIL.Image.new("RGB", (SIZE, SIZE), "white")
    sketch = PIL.Image.new("RGB", (SIZE, SIZE), "white")
    PIL.ImageDraw.Draw(photo).ellipse(box, fill=fill, outline="black")
    PIL.ImageDraw.Draw(sketch).ellipse(box, outline="black")
    return np.concatenate([np.asarray(photo), np.asarray(sketch)], 1)


def make_dataset(root: Path, count: int = COUNT) -> Path:
    """Aligned AB images as in edges2shoes: photo on the left (A), sketch on the right (B)."""
    rng = np.random.default_rng(0)
    (root / "train").mkdir(parents=True)
    for i in range(count):
        left, top = rng.integers(2, 8, 2)
        right, bottom = rng.integers(SIZE - 8, SIZE - 2, 2)
        pair = draw_pair((left, top, right, bottom), ramp_colour(rng.random())).astype(float)
        pair[:, :SIZE] += rng.normal(0, 6, (SIZE, SIZE, 3))  # photo texture
        pair = np.clip(pair, 0, 255).astype(np.uint8)
        PIL.Image.fromarray(pair).save(root / "train" / f"{i:03d}.png")
    return root


def sketch_and_mask() -> tuple[np.ndarray, np.ndarray]:
    """A test sketch and the mask of its shape's inside."""
    pair = draw_pair((5, 5, SIZE - 5, SIZE - 5), (0, 255, 0))
    inside = (pair[:, :SIZE] == (0, 255, 0)).all(-1)
    return pair[:, SIZE:], inside


def reference_photo(t: float) -> np.ndarray:
    return draw_pair((4, 6, SIZE - 6, SIZE - 4), ramp_colour(t))[:, :SIZE]


def cli(*argv: object) -> int:
    return cli_main([str(a) for a in argv])


def reset_accelerate() -> None:
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(dataset folder, exported pipeline folder, training config) of a tiny sketch model
    trained with an encoder."""
    from hf_pix2pixhd.training import Trainer, load_config

    root = tmp_path_factory.mktemp("global_styles")
    data = make_dataset(root / "data")
    overrides = [
        "--data.source", str(data), "--data.direction", "BtoA", "--data.input_kind", "sketch",
        "--data.preprocess", "none", "--data.flip", "false",
        "--model.recipe", "pix2pix", "--model.generator", "global", "--model.ngf", "8",
        "--model.n_downsampling", "2", "--model.n_blocks", "1", "--model.norm_g", "batch",
        "--model.discriminator", "patchgan", "--model.ndf", "8", "--model.n_layers_d", "2",
        "--model.norm_d", "instance", "--model.use_encoder", "true", "--model.nef", "8",
        "--model.n_downsampling_e", "2", "--lr", "0.001", "--n_epochs", "100",
        "--n_epochs_decay", "0", "--max_steps", "300", "--batch_size", "4", "--tracker", "null",
        "--num_samples", "1", "--checkpoint_every", "100000", "--log_every", "1000",
        "--output_dir", str(root / "run"),
    ]  # fmt: skip
    reset_accelerate()
    config = load_config(None, overrides)
    exported = Trainer(config).train()
    return data, exported, config


@pytest.fixture(scope="module")
def styled_dir(trained, tmp_path_factory) -> Path:
    """The trained pipeline with a style bank, written by the encode-styles command."""
    data, pipeline_dir, _ = trained
    out = tmp_path_factory.mktemp("styled")
    assert cli("encode-styles", "--model", pipeline_dir, "--data", data, "--n-clusters", 4,
               "--out", out) == 0  # fmt: skip
    return out


@pytest.fixture
def pipe(styled_dir) -> Pix2PixHDPipeline:
    return Pix2PixHDPipeline.from_pretrained(styled_dir)


def shape_colour(images: torch.Tensor, mask: np.ndarray) -> torch.Tensor:
    """``(S, 3)`` mean RGB in [0, 1] over the shape's inside of ``(S, 3, H, W)`` outputs."""
    return images[:, :, torch.from_numpy(mask)].mean(-1)


# -- training and export -----------------------------------------------------------------------


def test_a_sketch_model_trains_and_exports_with_its_encoder(trained, tmp_path):
    from hf_pix2pixhd.data import build_dataset, collate_pairs
    from hf_pix2pixhd.training.export import export_checkpoint
    from hf_pix2pixhd.training.networks import build_networks, prepare_batch

    _, exported, config = trained
    networks = build_networks(config)
    assert networks.generator.config.in_channels == 3 + 3  # sketch + global features
    assert networks.discriminator.config.in_channels == 3 + 3  # D: sketch + image only
    batch = collate_pairs([build_dataset(config.data)[i] for i in range(2)])
    inputs = prepare_batch(batch, config)
    assert inputs.instances.shape == (2, 1, SIZE, SIZE) and not inputs.instances.any()
    assert inputs.condition.shape == (2, 3, SIZE, SIZE)

    pipe = Pix2PixHDPipeline.from_pretrained(exported)
    assert (pipe.config.input_kind, pipe.config.label_nc, pipe.config.feature_nc) == (
        "sketch", 0, 3,
    )  # fmt: skip
    assert pipe.encoder is not None and pipe.style_bank is None
    assert pipe.num_style_classes == 1 and pipe.style_class_names == ["style"]
    # `hf-pix2pixhd export` from the run's last checkpoint gives the same pipeline.
    again = export_checkpoint(config, "latest", tmp_path / "export")
    for part in ("translator", "encoder"):
        a = load_file(exported / part / "diffusion_pytorch_model.safetensors")
        b = load_file(again / part / "diffusion_pytorch_model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    assert json.loads((again / "model_index.json").read_text())["feature_nc"] == 3


# -- the style bank ----------------------------------------------------------------------------


def test_encode_styles_clusters_global_codes(styled_dir, pipe, capsys):
    bank = pipe.style_bank
    assert isinstance(bank, StyleBank)
    assert (bank.config.num_classes, bank.config.feature_nc) == (1, 3)
    assert bank.num_clusters.tolist() == [4]
    assert int(bank.cluster_sizes.sum()) == COUNT  # every photo is one instance
    # Swatches: the shapes' fills without the white background, red-to-blue. Every fill has
    # green 40; with the background (about half of each photo) it would read 130-150.
    swatches = bank.swatches_for(0).astype(int)
    assert swatches.shape == (4, 3)
    assert np.ptp(swatches[:, 0]) > 50 and np.ptp(swatches[:, 2]) > 50, swatches
    assert (swatches[:, 1] < 70).all(), swatches
    index = json.loads((styled_dir / "model_index.json").read_text())
    assert index["style_bank"] == ["hf_pix2pixhd.styles", "StyleBank"]


def test_cluster_choices_give_different_outputs(pipe):
    sketch, inside = sketch_and_mask()
    outputs = pipe(sketch, style=[{"style": k} for k in range(4)], output_type="pt").images
    assert outputs.shape == (4, 3, SIZE, SIZE)
    colours = shape_colour(outputs, inside)
    spread = (colours[:, None] - colours[None]).abs().amax(-1)
    assert spread.max() > 0.15, colours
    # The red-blue order of the clusters' swatches is the order of the outputs' colours.
    swatch_red = torch.from_numpy(pipe.style_bank.swatches_for(0)[:, 0].astype(np.float32))
    assert torch.argmax(colours[:, 0]) == torch.argmax(swatch_red)
    # By name (any case) or by id 0; without a style argument: the default, cluster 0.
    by_name = pipe(sketch, style={"style": 2}, output_type="pt").images
    assert torch.equal(by_name, pipe(sketch, style={0: 2}, output_type="pt").images)
    assert torch.equal(by_name, pipe(sketch, style={"Style": 2}, output_type="pt").images)
    default = pipe(sketch, output_type="pt").images
    assert torch.equal(default, pipe(sketch, style="default", output_type="pt").images)
    assert torch.equal(default, pipe(sketch, style={}, output_type="pt").images)
    assert torch.allclose(default, outputs[:1], atol=1e-5)  # alone vs in a batch of 4


def test_random_styles_are_reproducible(pipe):
    sketch, _ = sketch_and_mask()
    a = pipe(sketch, style="random", num_styles=4, seed=3, output_type="pt").images
    generator = torch.Generator().manual_seed(3)
    b = pipe(sketch, style="random", num_styles=4, generator=generator, output_type="pt").images
    assert a.shape == (4, 3, SIZE, SIZE) and torch.equal(a, b)
    other = pipe(sketch, style="random", num_styles=4, seed=5, output_type="pt").images
    assert not torch.equal(a, other)


def test_a_reference_photo_moves_the_colour_toward_it(pipe):
    sketch, inside = sketch_and_mask()
    red, blue = reference_photo(1.0), reference_photo(0.0)
    alone = pipe(sketch, style_image=[red, blue], output_type="pt").images
    paired = pipe(sketch, style_image=[(red, None), (blue, None)], output_type="pt").images
    assert torch.equal(alone, paired)
    single = pipe(sketch, style_image=red, output_type="pt").images
    assert torch.allclose(alone[:1], single, atol=1e-5)
    colours = shape_colour(alone, inside)
    assert colours[0, 0] - colours[1, 0] > 0.2, colours  # redder
    assert colours[1, 2] - colours[0, 2] > 0.2, colours  # bluer
    target_red = torch.tensor(ramp_colour(1.0)) / 255
    assert (colours[0] - target_red).norm() < (colours[1] - target_red).norm()
    # A mix of a cluster and a reference, and the resolved tables passed back.
    tables = pipe.style_tables({"style": 1}, style_image=red, style_mix=0.5)
    assert tables.shape == (1, 1, 3)
    mixed = pipe(sketch, style={"style": 1}, style_image=red, style_mix=0.5, output_type="pt")
    assert torch.equal(pipe(sketch, style=tables, output_type="pt").images, mixed.images)


def test_save_load_is_bit_identical(pipe, tmp_path):
    sketch, _ = sketch_and_mask()
    calls = [
        {},
        {"style": {"style": 3}},
        {"style": "random", "num_styles": 2, "seed": 7},
        {"style_image": reference_photo(0.3)},
        {"style": [{"style": 0}, {"style": 3}], "style_mix": [0.0, 0.4]},
    ]
    before = [pipe(sketch, output_type="pt", **kwargs).images for kwargs in calls]
    pipe.save_pretrained(tmp_path)
    loaded = Pix2PixHDPipeline.from_pretrained(tmp_path)
    assert loaded.style_bank.config.num_classes == 1
    for kwargs, reference in zip(calls, before, strict=True):
        assert torch.equal(loaded(sketch, output_type="pt", **kwargs).images, reference), kwargs


def test_cli_translate_with_a_reference_photo_alone(styled_dir, pipe, tmp_path):
    sketch, _ = sketch_and_mask()
    PIL.Image.fromarray(sketch).save(tmp_path / "sketch.png")
    PIL.Image.fromarray(reference_photo(1.0)).save(tmp_path / "red.png")
    assert cli("translate", tmp_path / "sketch.png", "--model", styled_dir, "--style-image",
               tmp_path / "red.png", "--out", tmp_path / "a") == 0  # fmt: skip
    expected = pipe(str(tmp_path / "sketch.png"), style_image=str(tmp_path / "red.png")).images
    assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / "a" / "sketch.png")), expected[0])
    assert cli("translate", tmp_path / "sketch.png", "--model", styled_dir, "--style", "style=3",
               "--out", tmp_path / "b") == 0  # fmt: skip
    expected = pipe(str(tmp_path / "sketch.png"), style={"style": 3}).images[0]
    assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / "b" / "sketch.png")), expected)


# -- bad configurations and input ----------------------------------------------------------------


def test_inconsistent_configurations_and_bad_styles_give_clear_errors(pipe, trained):
    sketch, _ = sketch_and_mask()
    translator = GlobalGenerator(in_channels=6, ngf=4, n_downsampling=2, n_blocks=1)
    with pytest.raises(ValueError, match="or set feature_nc"):
        Pix2PixHDPipeline(translator, input_kind="sketch")
    with pytest.raises(ValueError, match=r"takes 6 input channels, but input_kind='sketch' feeds"):
        Pix2PixHDPipeline(translator, input_kind="sketch", feature_nc=2)
    with pytest.raises(ValueError, match="encoder gives 2 feature channels, but feature_nc is 3"):
        Pix2PixHDPipeline(
            translator, encoder=FeatureEncoder(out_channels=2), input_kind="rgb", feature_nc=3
        )
    with pytest.raises(ValueError, match="3 classes x 3 features, but this pipeline has 1 global"):
        Pix2PixHDPipeline(translator, style_bank=StyleBank(3, 3), input_kind="sketch", feature_nc=3)
    with pytest.raises(ValueError, match=r"one global style class: choose its cluster with \{'st"):
        pipe(sketch, style={"shoe": 1})
    with pytest.raises(ValueError, match=r"class 'style' \(id 0\): it has 4 clusters"):
        pipe(sketch, style={"style": 4})
    with pytest.raises(ValueError, match=r"pass style_image=photo \(or \(photo, None\)\)"):
        pipe(sketch, style_image=(reference_photo(1.0), np.zeros((SIZE, SIZE), np.int64)))
    with pytest.raises(ValueError, match=r"features must be \(S, feature_nc, H, W\) = \(S, 3, 32"):
        pipe(sketch, features=torch.zeros(1, 3, 16, 16))

    no_bank = Pix2PixHDPipeline.from_pretrained(trained[1])  # encoder, no style bank
    with pytest.raises(ValueError, match=r"takes 3 encoder feature channels.*style_image=photo"):
        no_bank(sketch)
    with pytest.raises(ValueError, match="needs a style bank"):
        no_bank(sketch, style="random")
    assert no_bank(sketch, style_image=reference_photo(0.5)).images[0].size == (SIZE, SIZE)
    plain = Pix2PixHDPipeline(UNetGenerator(num_downs=5, ngf=4), input_kind="sketch")
    with pytest.raises(ValueError, match="no encoder feature channels"):
        plain(sketch, style="random")


def test_training_rejects_generators_that_would_erase_the_global_code(tmp_path):
    from hf_pix2pixhd.training import load_config

    base = ["--data.source", str(tmp_path), "--data.input_kind", "sketch",
            "--model.use_encoder", "true", "--model.generator", "global"]  # fmt: skip
    for extra in (["--model.norm_g", "instance"], ["--model.norm_g", "batch", "--batch_size", "1"]):
        with pytest.raises(ValueError, match=r"removes it exactly.*norm_g batch with batch_size"):
            load_config(None, base + extra)
    assert load_config(None, base + ["--model.norm_g", "batch", "--batch_size", "2"])
    assert load_config(None, [*base[:-1], "unet", "--model.norm_g", "instance"])


# -- the shoes preset --------------------------------------------------------------------------


def test_the_shoes_preset_builds_and_trains(tmp_path):
    from hf_pix2pixhd.training import Trainer, load_config

    data = make_dataset(tmp_path / "data", count=12)
    overrides = [
        "--data.source", str(data), "--data.load_size", "32", "--data.crop_size", "32",
        "--vgg_weights", "random", "--max_steps", "2", "--tracker", "null",
        "--num_samples", "1", "--checkpoint_every", "100000", "--output_dir", str(tmp_path / "run"),
    ]  # fmt: skip
    config = load_config(REPO / "configs" / "shoes_pix2pixhd_demo.yaml", overrides)
    m = config.model
    assert (config.data.input_kind, config.data.direction, config.data.subset) == (
        "sketch", "BtoA", "train",
    )  # fmt: skip
    assert (m.recipe, m.generator, m.ngf, m.n_downsampling, m.n_blocks) == (
        "pix2pixhd", "global", 32, 3, 6,
    )  # fmt: skip
    assert (m.discriminator, m.num_d, m.use_encoder, config.gan_mode) == (
        "multiscale", 2, True, "lsgan",
    )  # fmt: skip
    assert config.vgg_variant == "vgg16" and config.mixed_precision == "bf16"
    reset_accelerate()
    exported = Trainer(config).train()
    pipe = Pix2PixHDPipeline.from_pretrained(exported)
    assert pipe.translator.config.in_channels == 6 and pipe.encoder is not None
    assert pipe(sketch_and_mask()[0], features=torch.zeros(1, 3, SIZE, SIZE)).images[0].size == (
        SIZE, SIZE,
    )  # fmt: skip
