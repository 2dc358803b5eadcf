"""Tests for hf_pix2pixhd.data: layouts, joint augmentation, determinism, streaming, errors."""

from __future__ import annotations

import random
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from scipy.ndimage import binary_dilation

from hf_pix2pixhd.data import (
    DataConfig,
    DataError,
    PairedImageDataset,
    StreamingPairedDataset,
    build_dataset,
    collate_pairs,
)
from hf_pix2pixhd.labels import FACADES_PALETTE, repair_blended_labels

H, W = 32, 64  # aligned AB images: two 32x32 halves


def _gradient(height: int, width: int, offset: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 with a distinct colour per pixel, so misalignment shows."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 7 % 256, y * 7 % 256, (x + y + offset) * 3 % 256], axis=-1).astype(
        np.uint8
    )


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array.astype(np.float32)).permute(2, 0, 1) / 127.5 - 1.0


def _ab(i: int) -> np.ndarray:
    """A (left) and B (right) differ, and each image differs from the others."""
    return np.concatenate([_gradient(H, H, 10 * i), 255 - _gradient(H, H, 10 * i)], axis=1)


@pytest.fixture(scope="module")
def aligned_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("aligned")
    for split, count in (("train", 4), ("val", 2)):
        (root / split).mkdir()
        for i in range(count):
            Image.fromarray(_ab(i)).save(root / split / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def same_ab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A == B: after joint augmentation input and target must stay identical."""
    root = tmp_path_factory.mktemp("same_ab")
    (root / "train").mkdir()
    half = _gradient(H, H)
    for i in range(6):
        Image.fromarray(np.concatenate([half, half], axis=1)).save(root / "train" / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def many_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("many")
    (root / "train").mkdir()
    for i in range(40):
        Image.fromarray(np.full((4, 8, 3), i, np.uint8)).save(root / "train" / f"img_{i:02d}.png")
    return root


def _label_map(k: int) -> np.ndarray:
    """(32, 64) ids 0..5 in vertical bands, shifted per sample."""
    x = np.arange(W)[None, :].repeat(H, 0)
    return ((x // 11 + k) % 6).astype(np.uint8)


def _instance_map(label: np.ndarray) -> np.ndarray:
    """Cityscapes style class*1000 + k, 16-bit, values well above 255."""
    y = np.arange(H)[:, None].repeat(W, 1)
    return (label.astype(np.uint16) + 24) * 1000 + (y // 16).astype(np.uint16)


def _write_hd(root: Path, split: str, n: int, with_inst: bool = True) -> None:
    for sub in ("label", "img") + (("inst",) if with_inst else ()):
        (root / f"{split}_{sub}").mkdir(parents=True)
    for k in range(n):
        stem = f"city_{k:06d}_000019"
        label = _label_map(k)
        Image.fromarray(label).save(root / f"{split}_label" / f"{stem}_gtFine_labelIds.png")
        if with_inst:
            inst = Image.fromarray(_instance_map(label))
            assert inst.mode == "I;16"
            inst.save(root / f"{split}_inst" / f"{stem}_gtFine_instanceIds.png")
        Image.fromarray(_gradient(H, W, k)).save(root / f"{split}_img" / f"{stem}_leftImg8bit.png")


@pytest.fixture(scope="module")
def hd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hd")
    _write_hd(root, "train", 3)
    return root


def _write_parquet(folder: Path, n: int, bad_row: int | None = None) -> Path:
    """A hub-like dataset: one parquet file with the PNG bytes embedded (not paths)."""
    folder.mkdir(parents=True, exist_ok=True)
    images = folder / "images"
    images.mkdir()
    rows: dict[str, list[dict]] = {"imageA": [], "imageB": []}
    for i in range(n):
        for column, array in (("imageA", _ab(i)[:, :H]), ("imageB", _ab(i)[:, H:])):
            path = images / f"{column}_{i}.png"
            Image.fromarray(array).save(path)
            data = b"not a png" if (i == bad_row and column == "imageB") else path.read_bytes()
            rows[column].append({"bytes": data, "path": None})
    features = datasets.Features({"imageA": datasets.Image(), "imageB": datasets.Image()})
    data_dir = folder / "data"
    data_dir.mkdir()
    datasets.Dataset.from_dict(rows, features=features).to_parquet(data_dir / "train.parquet")
    # The trap in NOTES.md: to_parquet of path-backed images stores only the paths. Deleting the
    # source images proves that the bytes are in the file.
    for file in images.iterdir():
        file.unlink()
    images.rmdir()
    return data_dir


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_parquet(tmp_path_factory.mktemp("hub"), 6)


def _item_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a
    )


# ------------------------------------------------------------------------------ repair labels


def test_repair_blended_labels_never_invents_a_third_class() -> None:
    facade, pillar = FACADES_PALETTE.colors[1].astype(float), FACADES_PALETTE.colors[10]
    t = np.clip((np.arange(64) - 24) / 16, 0, 1)[None, :, None]  # 16-pixel blur in the middle
    image = np.round((1 - t) * facade + t * pillar).astype(np.uint8).repeat(16, axis=0)
    plain = FACADES_PALETTE.colors_to_ids(image, max_distance=None)
    assert set(np.unique(plain)) - {1, 10}, "the blend should fool plain snapping"
    repaired = repair_blended_labels(image, FACADES_PALETTE)
    assert repaired.shape == (16, 64) and repaired.dtype == np.int64
    assert set(np.unique(repaired)) == {1, 10}
    assert (repaired[:, :24] == 1).all() and (repaired[:, 40:] == 10).all()
    # One boundary per row: the blend splits between the two sides.
    assert (np.diff(repaired, axis=1) != 0).sum(axis=1).tolist() == [1] * 16


def test_repair_blended_labels_clean_and_fallback() -> None:
    ids = np.random.default_rng(0).integers(0, 12, (8, 8))
    clean = FACADES_PALETTE.colors[ids]
    assert np.array_equal(repair_blended_labels(clean, FACADES_PALETTE), ids)
    grey = np.full((4, 4, 3), 128, np.uint8)  # far from every colour: plain nearest colour
    expected = FACADES_PALETTE.colors_to_ids(grey, max_distance=None)
    assert np.array_equal(repair_blended_labels(Image.fromarray(grey), FACADES_PALETTE), expected)
    with pytest.raises(ValueError, match="max_distance"):
        repair_blended_labels(grey, FACADES_PALETTE, max_distance=0)


# ------------------------------------------------------------------------------ aligned layout


def test_aligned_layout_items(aligned_dir: Path) -> None:
    config = DataConfig(str(aligned_dir), load_size=40, crop_size=32)
    ds = build_dataset(config)
    assert isinstance(ds, PairedImageDataset) and ds.layout == "aligned"
    assert len(ds) == 4 and ds.names == ["0.png", "1.png", "2.png", "3.png"]
    item = ds[1]
    assert set(item) == {"input", "target", "name"} and item["name"] == "1.png"
    for key in ("input", "target"):
        assert item[key].shape == (3, 32, 32) and item[key].dtype == torch.float32
        assert item[key].min() >= -1 and item[key].max() <= 1
    assert len(build_dataset(DataConfig(str(aligned_dir), split="val"))) == 2
    with pytest.raises(IndexError):
        ds[4]


@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_direction_picks_the_halves(aligned_dir: Path, direction: str) -> None:
    config = DataConfig(str(aligned_dir), direction=direction, preprocess="none", flip=False)
    item = PairedImageDataset(config)[2]
    a, b = _tensor(_ab(2)[:, :H]), _tensor(_ab(2)[:, H:])
    expected_input, expected_target = (a, b) if direction == "AtoB" else (b, a)
    assert torch.equal(item["input"], expected_input)
    assert torch.equal(item["target"], expected_target)


def test_joint_augmentation_keeps_pairs_aligned(same_ab_dir: Path) -> None:
    config = DataConfig(str(same_ab_dir), load_size=48, crop_size=32)
    ds = PairedImageDataset(config)
    # The same crops without flips: the flip is drawn after the crop offsets.
    no_flip = PairedImageDataset(DataConfig(**{**config.__dict__, "flip": False}))
    flips, crops = set(), set()
    for epoch in range(3):
        ds.set_epoch(epoch)
        no_flip.set_epoch(epoch)
        for index in range(len(ds)):
            item, plain = ds[index], no_flip[index]["target"]
            assert torch.equal(item["input"], item["target"])
            flipped = torch.equal(item["target"], plain.flip(-1))
            assert flipped or torch.equal(item["target"], plain)
            flips.add(flipped)
            crops.add(repr(plain[:, 0, 0].tolist()))
    assert flips == {True, False}, "some items must be flipped and some not"
    assert len(crops) > 3, "random crops must move"


def test_augmentation_is_deterministic(aligned_dir: Path) -> None:
    config = DataConfig(str(aligned_dir), load_size=48, crop_size=32, seed=3)
    first = PairedImageDataset(config)
    second = PairedImageDataset(config)
    expected = [first[i] for i in range(len(first))]
    # Global RNG state and access order must not matter.
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    for i in reversed(range(len(second))):
        assert _item_equal(second[i], expected[i])
    second.set_epoch(1)
    assert any(not torch.equal(second[i]["target"], expected[i]["target"]) for i in range(4))
    second.set_epoch(0)
    assert _item_equal(second[0], expected[0])
    other_seed = PairedImageDataset(DataConfig(str(aligned_dir), load_size=48, crop_size=32))
    assert any(not torch.equal(other_seed[i]["target"], expected[i]["target"]) for i in range(4))


def test_preprocess_sizes(aligned_dir: Path) -> None:
    def size(**kwargs: object) -> tuple[int, ...]:
        ds = PairedImageDataset(DataConfig(str(aligned_dir), **kwargs))
        return tuple(ds[0]["target"].shape[1:])

    assert size(preprocess="resize", load_size=30) == (32, 32)  # rounded to a multiple of 4
    assert size(preprocess="resize", load_size=30, size_multiple=1) == (30, 30)
    assert size(preprocess="crop", crop_size=16) == (16, 16)
    assert size(preprocess="scale_width_and_crop", load_size=40, crop_size=24) == (24, 24)
    assert size(preprocess="none") == (32, 32)
    with pytest.raises(DataError, match=r"0\.png.*32x32 after preprocess 'crop'.*crop_size 64"):
        size(preprocess="crop", crop_size=64)


# ------------------------------------------------------------------------------ pix2pixHD layout


def test_pix2pixhd_layout_labels_and_16bit_instances(hd_dir: Path) -> None:
    config = DataConfig(
        str(hd_dir), input_kind="labels", label_nc=6, use_instance_map=True, load_size=48,
        crop_size=32,
    )  # fmt: skip
    ds = build_dataset(config)
    assert ds.layout == "pix2pixhd" and len(ds) == 3
    assert ds.names[0] == "city_000000_000019_gtFine_labelIds.png"
    for epoch in range(2):
        ds.set_epoch(epoch)
        for k in range(3):
            item = ds[k]
            assert set(item) == {"target", "label", "instance", "name"}
            label, inst = item["label"], item["instance"]
            assert label.shape == inst.shape == (1, 32, 32) and item["target"].shape == (3, 32, 32)
            assert label.dtype == inst.dtype == torch.int64
            # Nearest resampling: no new ids; 16-bit ids survive unclipped.
            assert set(label.unique().tolist()) <= set(np.unique(_label_map(k)).tolist())
            original = set(np.unique(_instance_map(_label_map(k))).tolist())
            assert set(inst.unique().tolist()) <= original and inst.max() > 24000
            # Joint transform of the two id maps: the class part of each instance id matches.
            assert torch.equal(inst // 1000 - 24, label)


def test_id_images_ignore_the_palette(hd_dir: Path) -> None:
    """A palette (kept for colouring samples) must not re-map single-channel id images."""
    base = {"input_kind": "labels", "preprocess": "none", "flip": False}
    with_palette = build_dataset(DataConfig(str(hd_dir), label_nc=35, palette="cityscapes", **base))
    assert np.array_equal(with_palette[0]["label"][0].numpy(), _label_map(0))


def test_labels_and_photo_share_crop_and_flip(hd_dir: Path) -> None:
    config = DataConfig(
        str(hd_dir), input_kind="labels", label_nc=6, use_instance_map=True, preprocess="crop",
        crop_size=16,
    )  # fmt: skip
    ds = build_dataset(config)
    flips = set()
    for epoch in range(4):
        ds.set_epoch(epoch)
        for k in range(3):
            item = ds[k]
            photo, label = _gradient(H, W, k), _label_map(k)
            # Find the crop (and flip) in the photo, then expect the same one in the labels.
            matches = [
                (y, x, flip)
                for y in range(H - 15)
                for x in range(W - 15)
                for flip in (False, True)
                if torch.equal(
                    item["target"], _tensor(photo[y : y + 16, x : x + 16][:, :: -1 if flip else 1])
                )
            ]
            assert len(matches) == 1
            y, x, flip = matches[0]
            flips.add(flip)
            expected = label[y : y + 16, x : x + 16][:, :: -1 if flip else 1]
            assert np.array_equal(item["label"][0].numpy(), expected)
    assert flips == {True, False}


def test_pix2pixhd_scale_width_keeps_aspect(hd_dir: Path) -> None:
    base = {"input_kind": "labels", "label_nc": 6, "preprocess": "scale_width", "flip": False}
    item = PairedImageDataset(DataConfig(str(hd_dir), load_size=40, **base))[0]
    assert item["label"].shape == (1, 20, 40) and item["target"].shape == (3, 20, 40)
    # 44 x 22 -> rounded to multiples of 4, as the official __make_power_2.
    item = PairedImageDataset(DataConfig(str(hd_dir), load_size=44, **base))[0]
    assert item["label"].shape == (1, 24, 44)
    # No resize: exact ids and photo.
    item = PairedImageDataset(DataConfig(str(hd_dir), **{**base, "preprocess": "none"}))[1]
    assert np.array_equal(item["label"][0].numpy(), _label_map(1))
    assert torch.equal(item["target"], _tensor(_gradient(H, W, 1)))


def test_pix2pixhd_without_instance_folder_uses_labels(tmp_path: Path) -> None:
    _write_hd(tmp_path, "train", 2, with_inst=False)
    config = DataConfig(str(tmp_path), input_kind="labels", label_nc=6, use_instance_map=True)
    item = build_dataset(config)[0]
    assert torch.equal(item["instance"], item["label"])


# ------------------------------------------------------------------------------ hub route


def test_hub_parquet_has_embedded_bytes(hub_dir: Path) -> None:
    table = pq.read_table(hub_dir / "train.parquet")
    assert table.column("imageA")[0].as_py()["bytes"] is not None
    assert not (hub_dir.parent / "images").exists()


@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_hub_layout_from_local_parquet(hub_dir: Path, direction: str) -> None:
    config = DataConfig(str(hub_dir), direction=direction, preprocess="none", flip=False)
    ds = build_dataset(config)
    assert ds.layout == "hub" and len(ds) == 6
    item = ds[3]
    assert item["name"] == "row 3"
    a, b = _tensor(_ab(3)[:, :H]), _tensor(_ab(3)[:, H:])
    assert torch.equal(item["input"], b if direction == "BtoA" else a)
    assert torch.equal(item["target"], a if direction == "BtoA" else b)
    # A single parquet file works as well.
    single = build_dataset(DataConfig(str(hub_dir / "train.parquet"), preprocess="none"))
    assert len(single) == 6


def test_streaming_matches_map_style(hub_dir: Path) -> None:
    for kwargs in ({"preprocess": "resize", "load_size": 24, "flip": False}, {"load_size": 40}):
        config = DataConfig(str(hub_dir), crop_size=24, **kwargs)
        mapped = build_dataset(config)
        streamed = build_dataset(DataConfig(**{**config.__dict__, "streaming": True}))
        assert isinstance(streamed, StreamingPairedDataset)
        items = list(streamed)
        assert len(items) == len(mapped) == 6
        for i, item in enumerate(items):
            assert _item_equal(item, mapped[i])


def test_streaming_local_folder_matches_map_style(aligned_dir: Path) -> None:
    config = DataConfig(str(aligned_dir), load_size=40, crop_size=32, seed=1)
    mapped = PairedImageDataset(config)
    streamed = StreamingPairedDataset(DataConfig(**{**config.__dict__, "streaming": True}))
    streamed.set_epoch(2)
    mapped.set_epoch(2)
    items = list(streamed)
    assert [it["name"] for it in items] == mapped.names
    assert all(_item_equal(item, mapped[i]) for i, item in enumerate(items))


def test_streaming_shards_are_disjoint(hub_dir: Path) -> None:
    config = DataConfig(str(hub_dir), streaming=True, preprocess="none", flip=False)
    shards = [[it["name"] for it in build_dataset(config, rank=r, world_size=2)] for r in (0, 1)]
    assert set(shards[0]).isdisjoint(shards[1])
    assert sorted(shards[0] + shards[1]) == sorted(f"row {i}" for i in range(6))
    with pytest.raises(DataError, match="rank"):
        build_dataset(config, rank=2, world_size=2)


def test_streaming_dataloader_workers_split_rows(hub_dir: Path) -> None:
    config = DataConfig(str(hub_dir), streaming=True, preprocess="none", flip=False)
    loader = torch.utils.data.DataLoader(
        build_dataset(config), batch_size=2, num_workers=2, collate_fn=collate_pairs
    )
    names = [name for batch in loader for name in batch["name"]]
    assert sorted(names) == sorted(f"row {i}" for i in range(6))


# ------------------------------------------------------------------------------ holdout


def test_holdout_split_is_disjoint_deterministic_and_complete(many_dir: Path) -> None:
    def names(subset: str, **kwargs: object) -> list[str]:
        config = DataConfig(
            str(many_dir), holdout_fraction=0.25, subset=subset, preprocess="none", **kwargs
        )
        return build_dataset(config).names

    train, holdout = names("train"), names("holdout")
    assert set(train).isdisjoint(holdout) and holdout and train
    assert sorted(train + holdout) == sorted(names("all"))
    assert names("holdout", seed=7) == holdout  # the split does not move with the seed
    assert len(names("train", max_samples=5)) == 5


def test_holdout_on_hub_rows(hub_dir: Path) -> None:
    parts = {}
    for subset in ("train", "holdout"):
        config = DataConfig(str(hub_dir), holdout_fraction=0.5, subset=subset, preprocess="none")
        parts[subset] = build_dataset(config).names
        streamed = build_dataset(DataConfig(**{**config.__dict__, "streaming": True}))
        assert [it["name"] for it in streamed] == parts[subset]
    assert sorted(parts["train"] + parts["holdout"], key=lambda n: int(n.split()[1])) == [
        f"row {i}" for i in range(6)
    ]


# ------------------------------------------------------------------------------ collate


def test_collate_pairs(aligned_dir: Path) -> None:
    ds = PairedImageDataset(DataConfig(str(aligned_dir), load_size=40, crop_size=32))
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=collate_pairs)))
    assert batch["input"].shape == (3, 3, 32, 32) and batch["name"] == ["0.png", "1.png", "2.png"]
    small = PairedImageDataset(DataConfig(str(aligned_dir), preprocess="crop", crop_size=16))
    with pytest.raises(DataError, match="different sizes"):
        collate_pairs([ds[0], small[1]])


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("option", "value"),
    [("layout", "folder"), ("preprocess", "zoom"), ("input_kind", "depth"), ("direction", "AB")],
)
def test_unknown_options(option: str, value: str) -> None:
    with pytest.raises(DataError, match=f"unknown {option} '{value}'"):
        DataConfig("x", **{option: value})


def test_bad_option_combinations() -> None:
    placeholder = DataConfig("")  # allowed as a default, but cannot be built
    with pytest.raises(DataError, match="source is empty"):
        build_dataset(placeholder)
    with pytest.raises(DataError, match="label_nc"):
        DataConfig("x", input_kind="labels")
    with pytest.raises(DataError, match="at least 12"):
        DataConfig("x", input_kind="labels", label_nc=5, palette="facades")
    with pytest.raises(DataError, match="holdout_fraction > 0"):
        DataConfig("x", subset="holdout")
    with pytest.raises(DataError, match="larger than load_size"):
        DataConfig("x", load_size=100, crop_size=128)


def test_missing_split_and_empty_folders(aligned_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no 'test' folder; it has: train, val"):
        build_dataset(DataConfig(str(aligned_dir), split="test"))
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="holds no images"):
        build_dataset(DataConfig(str(tmp_path), layout="aligned"))
    with pytest.raises(DataError, match="no 'train_label' folder; it has: train"):
        build_dataset(
            DataConfig(str(tmp_path), layout="pix2pixhd", input_kind="labels", label_nc=3)
        )


def test_odd_width_and_unreadable_images(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    Image.fromarray(np.zeros((8, 15, 3), np.uint8)).save(tmp_path / "train" / "odd.png")
    (tmp_path / "train" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    ds = build_dataset(DataConfig(str(tmp_path)))
    with pytest.raises(DataError, match=r"broken\.png.*(not truncated|Could not read)"):
        ds[ds.names.index("broken.png")]
    with pytest.raises(DataError, match=r"odd\.png.*even width.*15x8"):
        ds[ds.names.index("odd.png")]


def test_pix2pixhd_errors(tmp_path: Path) -> None:
    _write_hd(tmp_path, "train", 2)
    labels = {"input_kind": "labels", "use_instance_map": True}
    # Ids beyond label_nc: names the file, the max id and label_nc.
    ds = build_dataset(DataConfig(str(tmp_path), label_nc=4, **labels))
    with pytest.raises(
        DataError, match=r"city_000000_000019_gtFine_labelIds\.png.*id 5.*label_nc is 4"
    ):
        ds[0]
    # Photo of another size.
    photo = tmp_path / "train_img" / "city_000001_000019_leftImg8bit.png"
    Image.fromarray(_gradient(16, 32)).save(photo)
    ds = build_dataset(DataConfig(str(tmp_path), label_nc=6, **labels))
    with pytest.raises(
        DataError, match=r"size mismatch.*labelIds\.png is 64x32.*leftImg8bit\.png is 32x16"
    ):
        ds[1]
    # Instance map of another size.
    Image.fromarray(_gradient(H, W)).save(photo)
    inst = tmp_path / "train_inst" / "city_000001_000019_gtFine_instanceIds.png"
    Image.fromarray(np.zeros((8, 8), np.uint16)).save(inst)
    with pytest.raises(DataError, match=r"instance map .*instanceIds\.png is 8x8"):
        build_dataset(DataConfig(str(tmp_path), label_nc=6, **labels))[1]
    # An extra photo without label: names the unpaired file.
    Image.fromarray(_gradient(H, W)).save(tmp_path / "train_img" / "lonely_leftImg8bit.png")
    with pytest.raises(DataError, match=r"unpaired.*train_img/lonely_leftImg8bit\.png"):
        build_dataset(DataConfig(str(tmp_path), label_nc=6, **labels))


def test_colour_labels_need_a_matching_palette(aligned_dir: Path) -> None:
    config = DataConfig(str(aligned_dir), input_kind="labels", label_nc=12)
    with pytest.raises(DataError, match=r"0\.png.*RGB image.*palette="):
        build_dataset(config)[0]
    config = DataConfig(str(aligned_dir), input_kind="labels", label_nc=12, palette="facades")
    with pytest.raises(DataError, match=r"0\.png.*palette"):
        build_dataset(config)[0]  # gradients are not drawn in the facades palette


def test_hub_errors(hub_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no column 'photo'; available columns: imageA, imageB"):
        build_dataset(DataConfig(str(hub_dir), column_a="photo"))
    with pytest.raises(DataError, match="load_dataset"):
        build_dataset(DataConfig(str(hub_dir), split="validation"))
    bad = build_dataset(DataConfig(str(_write_parquet(tmp_path / "bad", 3, bad_row=1))))
    bad[0]
    with pytest.raises(DataError, match=r"row 1, column 'imageB'.*could not decode"):
        bad[1]
    # The NOTES.md trap: plain to_parquet of path-backed images keeps only paths.
    image = tmp_path / "gone.png"
    Image.fromarray(_ab(0)).save(image)
    ds = datasets.Dataset.from_dict({"imageA": [str(image)], "imageB": [str(image)]})
    for column in ("imageA", "imageB"):
        ds = ds.cast_column(column, datasets.Image())
    (tmp_path / "paths").mkdir()
    ds.to_parquet(tmp_path / "paths" / "train.parquet")
    image.unlink()
    with pytest.raises(DataError, match=r"row 0.*gone\.png does not exist"):
        build_dataset(DataConfig(str(tmp_path / "paths")))[0]


# ------------------------------------------------------------------------------ real data


def test_real_facades_labels(shared_dir: Path) -> None:
    root = shared_dir / "data" / "facades"
    if not root.is_dir():
        pytest.skip("facades data absent")
    labels = {"input_kind": "labels", "label_nc": 12, "palette": "facades"}
    ds = build_dataset(DataConfig(str(root), max_samples=4, **labels))
    for item in ds:
        assert item["label"].shape == (1, 256, 256) and item["target"].shape == (3, 256, 256)
        assert item["label"].min() >= 0 and item["label"].max() < 12
    # Blurred boundaries must not become thin fake "background" / "shop" strips.
    ds = build_dataset(
        DataConfig(str(root), max_samples=4, preprocess="none", flip=False, **labels)
    )
    invented = 0.0
    for name, item in zip(ds.names, ds, strict=True):
        label_rgb = np.asarray(Image.open(root / "train" / name).convert("RGB"))[:, 256:]
        distances = np.linalg.norm(
            label_rgb[:, :, None, :].astype(float) - FACADES_PALETTE.colors[None, None], axis=-1
        )
        clean = distances.min(axis=-1) <= 30
        ids = item["label"][0].numpy()
        for cls in (0, 11):
            mask = ids == cls
            invented += (mask & ~binary_dilation(mask & clean, iterations=3)).mean()
    assert invented / len(ds) < 0.015


def test_real_cityscapes_hd_instances(shared_dir: Path) -> None:
    root = shared_dir / "data" / "cityscapes_hd"
    if not root.is_dir():
        pytest.skip("cityscapes_hd data absent")
    config = DataConfig(
        str(root), input_kind="labels", label_nc=35, use_instance_map=True,
        preprocess="scale_width", load_size=256, max_samples=1,
    )  # fmt: skip
    item = build_dataset(config)[0]
    assert item["label"].shape == item["instance"].shape == (1, 128, 256)
    assert item["target"].shape == (3, 128, 256)
    assert item["instance"].max() > 1000 and item["label"].max() < 35
    things = item["instance"] >= 1000
    assert torch.equal(item["instance"][things] // 1000, item["label"][things])
