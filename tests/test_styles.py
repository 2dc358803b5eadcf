"""Styles: encoding, K-means per class, the saved style bank, style choice, the CLI, bad input.

A tiny pix2pixHD-style model (global G + feature encoder, L1 recipe) is trained here for a few
hundred 32x32 steps on generated data where one class ("thing") takes a different colour in
every photo, on a red-blue ramp, so the encoder learns that colour.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from hf_pix2pixhd import FeatureEncoder, GlobalGenerator, StyleBank
from hf_pix2pixhd.cli import main as cli_main
from hf_pix2pixhd.cli import parse_style
from hf_pix2pixhd.pipeline import Pix2PixHDPipeline
from hf_pix2pixhd.styles import (
    InstanceFeatures,
    centre_pixels,
    class_id,
    cluster_styles,
    encode_instances,
    instance_regions,
    object_colors,
)

SIZE = 32
NAMES = ["ground", "thing", "bush"]
THING = 1

pytestmark = pytest.mark.usefixtures("one_thread")


def ramp_colour(t: float) -> list[float]:
    """The thing's colour: red at t=1, blue at t=0."""
    return [255 * t, 40, 255 * (1 - t)]


def make_dataset(root: Path, count: int = 24) -> Path:
    """pix2pixHD layout without instance maps: ground, a thing (colour varies), a bush."""
    rng = np.random.default_rng(0)
    for folder in ("train_label", "train_img"):
        (root / folder).mkdir(parents=True)
    for i in range(count):
        ids = np.zeros((SIZE, SIZE), np.uint8)
        y, x = rng.integers(0, SIZE // 2, 2)
        h, w = rng.integers(SIZE // 4, SIZE // 2, 2)
        ids[y : y + h, x : x + w] = THING
        y, x = rng.integers(SIZE // 2, SIZE - 6, 2)
        ids[y:, x:] = 2
        colours = np.array([[128, 128, 128], ramp_colour(rng.random()), [40, 160, 60]])
        photo = colours[ids] + rng.normal(0, 6, (SIZE, SIZE, 3))
        PIL.Image.fromarray(ids).save(root / "train_label" / f"s{i:03d}_label.png")
        PIL.Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).save(
            root / "train_img" / f"s{i:03d}_img.png"
        )
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(dataset folder, exported pipeline folder) of a tiny model trained with an encoder."""
    from accelerate.state import AcceleratorState, GradientState

    from hf_pix2pixhd.training import Trainer, load_config

    root = tmp_path_factory.mktemp("styles")
    data = make_dataset(root / "data")
    overrides = [
        "--data.source", str(data), "--data.layout", "pix2pixhd", "--data.input_kind", "labels",
        "--data.label_nc", "3", "--data.preprocess", "none", "--data.flip", "false",
        "--model.recipe", "pix2pix", "--model.generator", "global", "--model.ngf", "8",
        "--model.n_downsampling", "2", "--model.n_blocks", "1", "--model.norm_g", "instance",
        "--model.discriminator", "patchgan", "--model.ndf", "8", "--model.n_layers_d", "2",
        "--model.norm_d", "instance", "--model.use_encoder", "true", "--model.nef", "8",
        "--model.n_downsampling_e", "2", "--lr", "0.001", "--n_epochs", "100",
        "--n_epochs_decay", "0", "--max_steps", "200", "--batch_size", "4", "--tracker", "null",
        "--num_samples", "1", "--checkpoint_every", "100000", "--log_every", "1000",
        "--output_dir", str(root / "run"),
    ]  # fmt: skip
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    exported = Trainer(load_config(None, overrides)).train()
    pipe = Pix2PixHDPipeline.from_pretrained(exported)
    pipe.register_to_config(class_names=NAMES)  # names for the style tests
    pipeline_dir = root / "named"
    pipe.save_pretrained(pipeline_dir)
    # encode-styles takes its data defaults from the training run's record
    (pipeline_dir / "training_config.json").write_text(
        (exported / "training_config.json").read_text()
    )
    return data, pipeline_dir


@pytest.fixture(scope="module")
def styled_dir(trained, tmp_path_factory) -> Path:
    """The trained pipeline with a style bank, written by the encode-styles command."""
    data, pipeline_dir = trained
    out = tmp_path_factory.mktemp("styled")
    code = cli("encode-styles", "--model", pipeline_dir, "--data", data, "--n-clusters", 4,
               "--out", out)  # fmt: skip
    assert code == 0
    return out


@pytest.fixture
def pipe(styled_dir) -> Pix2PixHDPipeline:
    return Pix2PixHDPipeline.from_pretrained(styled_dir)


def label_map(data: Path, index: int = 0) -> np.ndarray:
    path = data / "train_label" / f"s{index:03d}_label.png"
    return np.asarray(PIL.Image.open(path)).astype(np.int64)


def cli(*argv: object) -> int:
    return cli_main([str(a) for a in argv])


# -- the style bank ----------------------------------------------------------------------------


def test_encode_styles_writes_a_bank_that_round_trips(styled_dir, pipe):
    index = json.loads((styled_dir / "model_index.json").read_text())
    assert index["style_bank"] == ["hf_pix2pixhd.styles", "StyleBank"]
    assert (styled_dir / "style_bank" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(styled_dir.rglob("*.bin"))
    bank = pipe.style_bank
    assert isinstance(bank, StyleBank)
    assert set(bank.state_dict()) == {"centers", "num_clusters", "cluster_sizes", "swatches"}
    assert bank.num_clusters.tolist() == [4, 4, 4]  # 24 images, one region per class each
    sizes = bank.cluster_sizes[THING]
    assert sizes.sum() == 24 and bool((sizes[:-1] >= sizes[1:]).all())  # largest first
    # The thing's swatches are colours of the red-blue ramp: red + blue high, green ~40/255.
    swatches = bank.swatches_for(THING).astype(int)
    assert swatches.shape == (4, 3)
    assert np.all(np.abs(swatches[:, 0] + swatches[:, 2] - 255) < 30)
    assert np.all(np.abs(swatches[:, 1] - 40) < 15)
    assert np.ptp(swatches[:, 0]) > 60  # the clusters are different colours


def test_save_load_and_the_same_style_give_bit_identical_images(pipe, trained, tmp_path):
    data, _ = trained
    ids = label_map(data)
    photo = np.asarray(PIL.Image.open(data / "train_img" / "s005_img.png"))
    calls = [
        {"style": {"thing": 2, "bush": 1}},
        {"style": "random", "num_styles": 3, "seed": 7},
        {"style_image": (photo, label_map(data, 5))},
        {"style": [{"thing": 0}, {"thing": 3}], "style_mix": [0.0, 0.3, 1.0]},
    ]
    before = [pipe(ids, output_type="pt", **kwargs).images for kwargs in calls]
    pipe.save_pretrained(tmp_path)
    loaded = Pix2PixHDPipeline.from_pretrained(tmp_path)
    for kwargs, reference in zip(calls, before, strict=True):
        assert torch.equal(loaded(ids, output_type="pt", **kwargs).images, reference), kwargs


def test_a_pipeline_saved_before_style_banks_still_loads(pipe, trained, tmp_path):
    pipe.set_style_bank(None).save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    del index["style_bank"]
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    loaded = Pix2PixHDPipeline.from_pretrained(tmp_path)
    assert loaded.style_bank is None
    ids = label_map(trained[0])
    assert loaded(ids, features=torch.zeros(1, 3, SIZE, SIZE)).images[0].size == (SIZE, SIZE)


# -- choosing styles ---------------------------------------------------------------------------


def test_different_clusters_give_different_outputs(pipe, trained):
    ids = label_map(trained[0])
    thing = torch.from_numpy(ids == THING)
    outputs = pipe(ids, style=[{"thing": k} for k in range(4)], output_type="pt").images
    assert outputs.shape == (4, 3, SIZE, SIZE)
    means = outputs[:, :, thing].mean(-1)  # (4 styles, RGB) over the thing's pixels
    spread = (means[:, None] - means[None]).abs().amax(-1)
    assert spread.max() > 0.15, means  # clearly different looks of the thing
    # Other classes stay at their default cluster; only the thing's region changes much.
    elsewhere = outputs[:, :, ~thing].mean(-1)
    assert (elsewhere - elsewhere[0]).abs().max() < spread.max()
    # Names and ids, and classes left out of the dict sit at cluster 0 (the default).
    by_id = pipe(ids, style={THING: 2}, output_type="pt").images
    assert torch.equal(by_id, pipe(ids, style={"Thing": 2, 0: 0}, output_type="pt").images)
    default = pipe(ids, output_type="pt").images
    assert torch.equal(default, pipe(ids, style="default", output_type="pt").images)
    assert torch.equal(default, pipe(ids, style={}, output_type="pt").images)


def test_random_styles_are_reproducible_and_batched(pipe, trained):
    ids = label_map(trained[0])
    a = pipe(ids, style="random", num_styles=4, seed=3, output_type="pt").images
    b = pipe(ids, style="random", num_styles=4, seed=3, output_type="pt").images
    generator = torch.Generator().manual_seed(3)
    c = pipe(ids, style="random", num_styles=4, generator=generator, output_type="pt").images
    assert a.shape == (4, 3, SIZE, SIZE)
    assert torch.equal(a, b) and torch.equal(a, c)
    other = pipe(ids, style="random", num_styles=4, seed=4, output_type="pt").images
    assert not torch.equal(a, other)
    # Two label maps x 4 styles: one batch, label map first.
    two = pipe(
        [ids, label_map(trained[0], 1)], style="random", num_styles=4, seed=3, output_type="pt"
    ).images
    assert two.shape == (8, 3, SIZE, SIZE)
    assert torch.allclose(two[:4], a, atol=1e-5)


def test_a_reference_photo_moves_the_class_colour_toward_it(pipe, trained):
    data, _ = trained
    ids = label_map(data)
    thing = ids == THING
    reference_ids = label_map(data, 3)
    base = np.asarray(PIL.Image.open(data / "train_img" / "s003_img.png")).copy()
    means = {}
    for name, t in (("red", 1.0), ("blue", 0.0)):
        photo = base.copy()
        photo[reference_ids == THING] = ramp_colour(t)
        out = pipe(ids, style_image=(photo, reference_ids), output_type="np").images[0]
        means[name] = out[thing].mean(0)
    red, blue = np.array(ramp_colour(1.0)) / 255, np.array(ramp_colour(0.0)) / 255
    assert means["red"][0] - means["blue"][0] > 0.2, means
    assert means["blue"][2] - means["red"][2] > 0.2, means
    assert np.linalg.norm(means["red"] - red) < np.linalg.norm(means["blue"] - red)
    assert np.linalg.norm(means["blue"] - blue) < np.linalg.norm(means["red"] - blue)


def test_classes_missing_from_the_reference_take_the_default(pipe, trained):
    photo = np.full((SIZE, SIZE, 3), 128, np.uint8)
    only_ground = np.zeros((SIZE, SIZE), np.int64)
    table = pipe.encode_style_image(photo, only_ground)
    default = pipe.style_bank.lookup(pipe.style_bank.default_indices())[0]
    assert torch.equal(table[1:], default[1:]) and not torch.equal(table[0], default[0])


def test_style_mix_interpolates_between_two_styles(pipe, trained):
    ids = label_map(trained[0])
    a, b = {"thing": 0}, {"thing": 3}
    ends = pipe.style_tables([a, b])
    mixed = pipe.style_tables([a, b], style_mix=[0.0, 0.25, 1.0])
    assert torch.equal(mixed[0], ends[0]) and torch.equal(mixed[2], ends[1])
    torch.testing.assert_close(mixed[1], 0.75 * ends[0] + 0.25 * ends[1])
    outputs = pipe(ids, style=[a, b], style_mix=0.5, output_type="pt").images
    assert outputs.shape == (1, 3, SIZE, SIZE)
    # A style and a reference photo mix too; tables from style_tables() can be passed back.
    photo = np.asarray(PIL.Image.open(trained[0] / "train_img" / "s002_img.png"))
    tables = pipe.style_tables(a, style_image=(photo, label_map(trained[0], 2)), style_mix=0.5)
    direct = pipe(
        ids, style=a, style_image=(photo, label_map(trained[0], 2)), style_mix=0.5, output_type="pt"
    ).images
    assert torch.equal(pipe(ids, style=tables, output_type="pt").images, direct)


# -- bad input ---------------------------------------------------------------------------------


def test_bad_style_input_gives_clear_errors(pipe, trained):
    data, _ = trained
    ids = label_map(data)
    photo = np.asarray(PIL.Image.open(data / "train_img" / "s000_img.png"))
    with pytest.raises(ValueError, match=r"Unknown class name 'tree'\. Valid names: 'ground', "):
        pipe(ids, style={"tree": 0})
    with pytest.raises(ValueError, match=r"'thing' \(id 1\): it has 4 clusters \(indices 0\.\.3"):
        pipe(ids, style={"thing": 4})
    with pytest.raises(ValueError, match=r"out of range: ids are 0\.\.2"):
        pipe(ids, style={7: 0})
    with pytest.raises(ValueError, match=r"reference photo is 16x32 \(WxH\) but its label map"):
        pipe(ids, style_image=(photo[:, :16], ids))
    with pytest.raises(ValueError, match="exactly two styles"):
        pipe(ids, style=[{}, {}, {}], style_mix=0.5)
    with pytest.raises(ValueError, match=r"style_mix must be a number in \[0, 1\]"):
        pipe(ids, style=[{}, {}], style_mix=1.5)
    with pytest.raises(ValueError, match="with style='random' only"):
        pipe(ids, style={"thing": 1}, num_styles=2)
    with pytest.raises(ValueError, match="Unknown style 'fancy'"):
        pipe(ids, style="fancy")
    with pytest.raises(ValueError, match="either features= or style"):
        pipe(ids, style="random", features=torch.zeros(1, 3, SIZE, SIZE))
    with pytest.raises(ValueError, match="generator= or seed="):
        pipe(ids, style="random", seed=1, generator=torch.Generator())

    no_bank = Pix2PixHDPipeline.from_pretrained(trained[1])  # encoder, no style bank
    for style in ("random", {"thing": 1}):
        with pytest.raises(ValueError, match=r"needs a style bank.*encode-styles"):
            no_bank(ids, style=style)
    with pytest.raises(ValueError, match="takes 3 encoder feature channels"):
        no_bank(ids)  # nothing to take features from
    no_encoder = Pix2PixHDPipeline(
        pipe.translator,
        style_bank=pipe.style_bank,
        input_kind="labels",
        label_nc=3,
        feature_nc=3,
        class_names=NAMES,
    )
    with pytest.raises(ValueError, match="no feature encoder, so it cannot encode a reference"):
        no_encoder(ids, style_image=(photo, ids))
    plain = Pix2PixHDPipeline(
        GlobalGenerator(in_channels=3, ngf=4, n_downsampling=2, n_blocks=1),
        input_kind="labels",
        label_nc=3,
    )
    with pytest.raises(ValueError, match="no encoder feature channels"):
        plain(ids, style="random")
    with pytest.raises(ValueError, match="3 classes x 3 features, but this pipeline has"):
        Pix2PixHDPipeline(
            GlobalGenerator(in_channels=7, ngf=4, n_downsampling=2, n_blocks=1),
            style_bank=pipe.style_bank,
            input_kind="labels",
            label_nc=4,
            feature_nc=3,
        )


def test_class_and_style_parsing():
    assert class_id("bush", 3, NAMES) == 2 and class_id("BUSH", 3, NAMES) == 2
    assert class_id("1", 3, NAMES) == 1 and class_id(2, 3, None) == 2
    with pytest.raises(ValueError, match="has no class names"):
        class_id("bush", 3, None)
    assert parse_style("random") == "random"
    assert parse_style("traffic light=2, 3=0") == {"traffic light": 2, "3": 0}
    for bad in ("sky", "sky=two", "=1"):
        with pytest.raises(ValueError, match=r"(?i)style"):
            parse_style(bad)


# -- encoding details --------------------------------------------------------------------------


def test_centre_pixel_is_the_official_one():
    """The middle entry of each instance's row-major pixel list, as pix2pixHD's
    ``idx = (inst == i).nonzero(); idx[num // 2]``."""
    rng = np.random.default_rng(0)
    instances = torch.from_numpy(rng.integers(0, 6, (2, 1, 12, 10)))
    labels = torch.zeros_like(instances)
    regions, count = instance_regions(labels, instances)
    centre, sizes, present = centre_pixels(regions, count)
    found = {}
    for flat, size in zip(centre.tolist(), sizes[present].tolist(), strict=True):
        b, rest = divmod(flat, 120)
        found[(b, int(instances.view(-1)[flat]))] = (divmod(rest, 10), size)
    expected = {}
    for b in range(2):
        for i in np.unique(instances[b].numpy()):
            idx = (instances[b : b + 1] == int(i)).nonzero()
            num = idx.shape[0]
            expected[(b, int(i))] = (tuple(idx[num // 2, 2:].tolist()), num)
    assert found == expected


def test_regions_follow_instances_or_connected_components():
    labels = torch.tensor([[[0, 0, 1, 1], [0, 1, 1, 0], [2, 2, 0, 0]]])
    regions, count = instance_regions(labels)
    # class 0 has two 4-connected regions, class 1 one, class 2 one
    assert len(torch.unique(regions)) == 4 == count
    assert regions[0] == regions[1] == regions[4] and regions[7] == regions[10] == regions[11]
    assert regions[0] != regions[7]
    # Cityscapes ids: < 1000 is the class itself, class * 1000 + k an instance of that class.
    instances = torch.tensor([[[7, 7, 26001, 26002], [7, 26001, 26001, 7], [24000, 24000, 7, 7]]])
    cityscapes_labels = torch.where(instances < 1000, instances, instances // 1000)
    regions, count = instance_regions(cityscapes_labels, instances)
    groups = {}
    for region, inst in zip(regions.tolist(), instances.view(-1).tolist(), strict=True):
        groups.setdefault(region, set()).add(inst)
    assert sorted(map(sorted, groups.values())) == [[7], [24000], [26001], [26002]]


def test_instance_maps_and_the_mean_feature_option():
    torch.manual_seed(0)
    encoder = FeatureEncoder(ngf=4, n_downsampling=2)
    photos = torch.rand(2, 3, 16, 16) * 2 - 1
    labels = torch.zeros(2, 1, 16, 16, dtype=torch.long)
    labels[:, :, 8:] = 1
    instances = labels * 1000
    instances[:, :, 8:, 8:] += 1  # class 1 holds two instances per image
    centre = encode_instances(encoder, photos, labels, instances, feature="centre")
    mean = encode_instances(encoder, photos, labels, instances, feature="mean")
    assert centre.classes.tolist() == mean.classes.tolist() == [0, 1, 1, 0, 1, 1]
    assert centre.areas.tolist() == [128, 64, 64] * 2
    # Pooled per instance, the centre pixel's feature is the instance mean.
    torch.testing.assert_close(centre.features, mean.features)
    expected = ((photos[0, :, 8:, :8] + 1) / 2).mean((1, 2))
    torch.testing.assert_close(centre.colors[1], expected)
    # Without instance maps the encoder pools over the label map, as in training: "centre"
    # gives each region its class's image-wide mean, "mean" the region's own mean.
    labels[:, :, :, 4] = 1  # a class-1 column splits class 0 into two regions per image
    centre = encode_instances(encoder, photos, labels)
    mean = encode_instances(encoder, photos, labels, feature="mean")
    # regions are numbered class by class: image 0's two class-0 regions come first
    assert centre.classes.tolist() == [0, 0, 0, 0, 1, 1]
    torch.testing.assert_close(centre.features[0], centre.features[1])
    assert not torch.allclose(mean.features[0], mean.features[1])


def test_clustering_keeps_large_instances_and_sorts_clusters():
    # class 0: 5 large instances near 0.5 and 3 near -0.5 (2 clusters), plus 2 small outliers
    # class 1: small instances only -> clustered anyway; class 2: never seen.
    features = torch.tensor(
        [[0.5, 0, 0]] * 5 + [[-0.5, 0, 0]] * 3 + [[9.0, 9, 9]] * 2 + [[0.1, 0.2, 0.3]] * 2
    )
    areas = torch.tensor([100] * 8 + [64, 16] + [10, 10])
    instances = InstanceFeatures(
        features=features,
        classes=torch.tensor([0] * 10 + [1] * 2),
        areas=areas,
        image_pixels=torch.full((12,), 64 * 64),
        colors=torch.tensor([[1.0, 0, 0]] * 5 + [[0, 0, 1.0]] * 3 + [[0, 1.0, 0]] * 4),
    )
    bank = cluster_styles(instances, num_classes=3, n_clusters=10)
    # official threshold: area > 4096 / 64 = 64, so the 64-pixel outlier is dropped too
    assert bank.num_clusters.tolist() == [2, 1, 0]
    assert bank.cluster_sizes[0, :2].tolist() == [5, 3]
    torch.testing.assert_close(bank.centers[0, :2], torch.tensor([[0.5, 0, 0], [-0.5, 0, 0]]))
    assert bank.swatches[0, :2].tolist() == [[255, 0, 0], [0, 0, 255]]
    torch.testing.assert_close(bank.centers[1, 0], torch.tensor([0.1, 0.2, 0.3]))
    assert bank.centers[2].abs().sum() == 0
    assert bank.lookup(torch.tensor([[1, 0, 0]]))[0, 2].abs().sum() == 0
    with pytest.raises(ValueError, match="no styles in this style bank"):
        from hf_pix2pixhd.styles import style_indices

        style_indices({2: 0}, bank)


# -- command line ------------------------------------------------------------------------------


def test_cli_translate_random_seed_twice_gives_identical_pngs(styled_dir, trained, tmp_path):
    data, _ = trained
    inputs = tmp_path / "labels"
    (inputs / "sub").mkdir(parents=True)
    for i in range(3):
        folder = inputs / "sub" if i == 2 else inputs
        PIL.Image.fromarray(label_map(data, i).astype(np.uint8)).save(folder / f"map{i}.png")
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert cli("translate", inputs, "--model", styled_dir, "--style", "random", "--seed", 1,
                   "--out", out) == 0  # fmt: skip
        runs.append(sorted(p.relative_to(out) for p in out.rglob("*.png")))
    assert runs[0] == runs[1] == [Path("map0.png"), Path("map1.png"), Path("sub/map2.png")]
    for path in runs[0]:
        assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes()
    # Several styles: one file per style; a reference photo; a cluster choice by name.
    single = inputs / "map0.png"
    assert cli("translate", single, "--model", styled_dir, "--style", "random", "--num-styles",
               3, "--seed", 2, "--out", tmp_path / "c") == 0  # fmt: skip
    names = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert names == ["map0_style0.png", "map0_style1.png", "map0_style2.png"]
    photo = data / "train_img" / "s004_img.png"
    labels = data / "train_label" / "s004_label.png"
    assert cli("translate", single, "--model", styled_dir, "--style-image", photo,
               "--style-labels", labels, "--out", tmp_path / "d") == 0  # fmt: skip
    assert (tmp_path / "d" / "map0.png").is_file()
    assert cli("translate", single, "--model", styled_dir, "--style", "thing=3,bush=1", "--out",
               tmp_path / "e") == 0  # fmt: skip
    pipe = Pix2PixHDPipeline.from_pretrained(styled_dir)
    expected = pipe(label_map(data), style={"thing": 3, "bush": 1}).images[0]
    assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / "e" / "map0.png")), expected)


def test_cli_errors_exit_2_with_a_message(trained, styled_dir, tmp_path, capsys):
    data, pipeline_dir = trained
    single = data / "train_label" / "s000_label.png"
    out = ["--out", tmp_path]
    cases = [
        (["--model", styled_dir, "--style", "tree=1", *out], "Unknown class name 'tree'"),
        (["--model", styled_dir, "--style", "thing=9", *out], "it has 4 clusters"),
        (["--model", pipeline_dir, "--style", "random", *out], "needs a style bank"),
        (["--model", styled_dir, "--style-image", single, *out], "go together"),
        (["--model", tmp_path / "nowhere", *out], "neither a valid local path"),
    ]
    for argv, message in cases:
        assert cli("translate", single, *argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert cli("translate", tmp_path / "missing.png", "--model", styled_dir, *out) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli("encode-styles", "--model", tmp_path, "--data", data) == 2
    assert "not a pipeline folder" in capsys.readouterr().err
    no_encoder = Pix2PixHDPipeline.from_pretrained(pipeline_dir)
    no_encoder.register_modules(encoder=None)
    no_encoder.save_pretrained(tmp_path / "no-encoder")
    assert cli("encode-styles", "--model", tmp_path / "no-encoder", "--data", data) == 2
    assert "has no feature encoder" in capsys.readouterr().err


def test_encode_styles_in_place_keeps_the_model_loadable(trained, tmp_path):
    import shutil

    _, pipeline_dir = trained
    model = tmp_path / "model"
    shutil.copytree(pipeline_dir, model)
    weights = model / "translator" / "diffusion_pytorch_model.safetensors"
    before = weights.read_bytes()
    # No --data: the source comes from the training run's training_config.json.
    assert cli("encode-styles", "--model", model, "--n-clusters", 2, "--feature", "mean") == 0
    assert weights.read_bytes() == before
    assert (model / "training_config.json").is_file()
    loaded = Pix2PixHDPipeline.from_pretrained(model)
    assert loaded.style_bank.config.feature == "mean"
    assert loaded.style_bank.num_clusters.tolist() == [2, 2, 2]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_object_colors_leave_out_white_background_unless_the_photo_is_all_white():
    photos = torch.ones(3, 3, 16, 16)  # [-1, 1]: white
    photos[0, :, 4:12, 4:12] = torch.tensor([0.6, -0.6, -1.0])[:, None, None]  # a brown square
    photos[1, :, :2, :2] = -1.0  # 4 black pixels: under 2% of the photo
    colours = object_colors(photos)
    torch.testing.assert_close(colours[0], torch.tensor([0.8, 0.2, 0.0]))
    # Too little object: the plain mean, not the colour of 4 stray pixels.
    torch.testing.assert_close(colours[1], torch.full((3,), 1 - 4 / 256))
    torch.testing.assert_close(colours[2], torch.ones(3))
