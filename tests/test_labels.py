"""Tests for hf_pix2pixhd.labels: palettes, colour <-> id, one-hot, instance boundaries."""

from __future__ import annotations

import dataclasses
import io
import json
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from hf_pix2pixhd.labels import (
    CITYSCAPES_PALETTE,
    FACADES_PALETTE,
    NotAPaletteImageError,
    Palette,
    assemble_generator_input,
    instance_boundaries,
    one_hot,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def blocky_ids(rng: np.random.Generator, num_classes: int, blocks=(8, 8), block=16) -> np.ndarray:
    """Random piecewise-constant id map, like a real label map (regions, not per-pixel noise)."""
    coarse = rng.integers(0, num_classes, size=blocks)
    return np.kron(coarse, np.ones((block, block), dtype=np.int64))


def jpeg_roundtrip(rgb: np.ndarray, quality: int = 75) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


# --------------------------------------------------------------------------------------------
# Palette: colour <-> id


@pytest.mark.parametrize("palette", [FACADES_PALETTE, CITYSCAPES_PALETTE], ids=["facades", "city"])
def test_round_trip_random_ids(palette: Palette) -> None:
    rng = np.random.default_rng(0)
    # Per-pixel random ids: the hardest case for any spatial heuristic.
    ids = rng.integers(0, palette.num_classes, size=(37, 53))
    rgb = palette.ids_to_colors(ids)
    assert rgb.shape == (37, 53, 3) and rgb.dtype == np.uint8
    back = palette.colors_to_ids(rgb)
    assert back.shape == ids.shape and back.dtype == np.int64
    # Shared colours (Cityscapes) map back to their lowest id, which renders identically.
    assert np.array_equal(palette.colors[back], palette.colors[ids])
    if len(np.unique(palette.colors, axis=0)) == palette.num_classes:
        assert np.array_equal(back, ids)


def test_accepts_pil_images_of_other_modes() -> None:
    ids = blocky_ids(np.random.default_rng(1), FACADES_PALETTE.num_classes, blocks=(4, 4), block=4)
    rgba = Image.fromarray(FACADES_PALETTE.ids_to_colors(ids)).convert("RGBA")
    assert np.array_equal(FACADES_PALETTE.colors_to_ids(rgba), ids)
    assert np.array_equal(FACADES_PALETTE.colors_to_ids(rgba.convert("RGB")), ids)


def test_jpeg_noise_is_snapped() -> None:
    rng = np.random.default_rng(2)
    # 4:2:0 chroma subsampling blurs every region edge by a pixel or two whatever the quality,
    # so regions must be label-map sized (64 px) for > 97% of pixels to be exact.
    ids = blocky_ids(rng, FACADES_PALETTE.num_classes, blocks=(4, 8), block=64)
    noisy = jpeg_roundtrip(FACADES_PALETTE.ids_to_colors(ids), quality=75)
    assert not np.array_equal(noisy, FACADES_PALETTE.ids_to_colors(ids))  # JPEG did change it
    recovered = FACADES_PALETTE.colors_to_ids(noisy)  # must not raise with the defaults
    assert (recovered == ids).mean() > 0.97


def test_jpeg_noise_is_snapped_cityscapes() -> None:
    rng = np.random.default_rng(3)
    ids = blocky_ids(rng, CITYSCAPES_PALETTE.num_classes, blocks=(4, 8), block=64)
    noisy = jpeg_roundtrip(CITYSCAPES_PALETTE.ids_to_colors(ids), quality=75)
    recovered = CITYSCAPES_PALETTE.colors_to_ids(noisy)
    same_colour = (CITYSCAPES_PALETTE.colors[recovered] == CITYSCAPES_PALETTE.colors[ids]).all(-1)
    assert same_colour.mean() > 0.95


def test_nearest_colour_snapping_exact() -> None:
    palette = Palette([[0, 0, 0], [200, 0, 0], [0, 200, 0]])
    image = np.array([[[10, 5, 0], [150, 20, 20], [30, 170, 0], [99, 0, 0], [101, 0, 0]]], np.uint8)
    # [99,0,0] is 99 from black and 101 from red; [101,0,0] the reverse.
    assert palette.colors_to_ids(image, max_distance=None).tolist() == [[0, 1, 2, 0, 1]]


def test_duplicate_colours_resolve_to_lowest_id() -> None:
    palette = Palette([[9, 9, 9], [0, 0, 0], [50, 50, 50], [0, 0, 0], [9, 9, 9]])
    image = np.array([[[0, 0, 0], [9, 9, 9], [1, 1, 1], [8, 9, 10]]], dtype=np.uint8)
    assert palette.colors_to_ids(image).tolist() == [[1, 0, 1, 0]]

    black, grey, navy = (0, 0, 0), (153, 153, 153), (0, 0, 142)
    city = np.array([[black, grey, navy]], dtype=np.uint8)
    ids = CITYSCAPES_PALETTE.colors_to_ids(city)[0].tolist()
    names = CITYSCAPES_PALETTE.names
    assert [names[i] for i in ids] == ["unlabeled", "pole", "car"]


def test_non_palette_noise_raises_helpful_error() -> None:
    noise = np.random.default_rng(4).integers(0, 256, size=(64, 96, 3), dtype=np.uint8)
    for palette in (FACADES_PALETTE, CITYSCAPES_PALETTE):
        with pytest.raises(NotAPaletteImageError) as info:
            palette.colors_to_ids(noise)
        message = str(info.value)
        assert "%" in message and "palette" in message
        assert "RGB (" in message  # an example offending colour
        assert "label-id image" in message and "max_distance" in message  # the fixes
        assert isinstance(info.value, ValueError)
        # Disabling the check gives ids anyway.
        ids = palette.colors_to_ids(noise, max_distance=None)
        assert ids.shape == (64, 96) and ids.min() >= 0 and ids.max() < palette.num_classes


def test_gradient_image_raises_and_names_an_offending_colour() -> None:
    y, x = np.mgrid[0:128, 0:256]
    gradient = np.stack([x, y * 2, 255 - x // 2], axis=-1).astype(np.uint8)
    with pytest.raises(NotAPaletteImageError) as info:
        FACADES_PALETTE.colors_to_ids(gradient)
    rgb = tuple(int(v) for v in str(info.value).split("RGB (")[1].split(")")[0].split(","))
    # The named example really is far from every palette colour.
    distances = np.linalg.norm(FACADES_PALETTE.colors.astype(float) - np.array(rgb), axis=1)
    assert distances.min() > 60


def test_outlier_fraction_threshold_is_respected() -> None:
    palette = Palette([[0, 0, 0], [255, 255, 255]])
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    image[:, :3] = 128  # 30% of the pixels are mid-grey, ~128 from both colours
    with pytest.raises(NotAPaletteImageError, match=r"30\.0%"):
        palette.colors_to_ids(image, max_outlier_fraction=0.2, blend_radius=0)
    palette.colors_to_ids(image, max_outlier_fraction=0.3, blend_radius=0)
    palette.colors_to_ids(image, max_distance=130, max_outlier_fraction=0.0)
    with pytest.raises(ValueError, match="max_outlier_fraction"):
        palette.colors_to_ids(image, max_outlier_fraction=1.5)


def test_blurred_boundaries_are_not_outliers() -> None:
    # Two solid regions with a 3-pixel linear blend between them: every blend pixel is far from
    # both colours, like the anti-aliased edges of JPEG / resized label maps.
    palette = Palette([[0, 0, 255], [255, 0, 0]])
    t = np.clip((np.arange(40) - 18) / 4, 0, 1)[None, :, None]
    row = (1 - t) * palette.colors[0] + t * palette.colors[1]
    image = np.repeat(row, 30, axis=0).round().astype(np.uint8)
    far = np.linalg.norm(image[0].astype(float)[:, None] - palette.colors[None], axis=2).min(1) > 60
    assert far.mean() > 0.05  # the blend alone exceeds 2% of the pixels...
    palette.colors_to_ids(image, max_outlier_fraction=0.02)  # ...but is forgiven by default
    with pytest.raises(NotAPaletteImageError):
        palette.colors_to_ids(image, max_outlier_fraction=0.02, blend_radius=0)


def test_ids_to_colors_validates() -> None:
    with pytest.raises(ValueError, match=r"0\.\.11"):
        FACADES_PALETTE.ids_to_colors(np.array([[0, 12]]))
    with pytest.raises(ValueError, match="-1"):
        FACADES_PALETTE.ids_to_colors(np.array([[-1, 0]]))
    with pytest.raises(ValueError, match="integer"):
        FACADES_PALETTE.ids_to_colors(np.array([[0.5]]))
    assert FACADES_PALETTE.ids_to_colors(np.array([[11]])).tolist() == [[[174, 0, 0]]]


def test_snap_returns_palette_colours_only() -> None:
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, size=(32, 48, 3), dtype=np.uint8)
    snapped = FACADES_PALETTE.snap(image)  # noise is fine: no sanity check when snapping
    assert snapped.shape == image.shape and snapped.dtype == np.uint8
    palette_set = {tuple(c) for c in FACADES_PALETTE.colors.tolist()}
    assert {tuple(c) for c in snapped.reshape(-1, 3).tolist()} <= palette_set
    # Each snapped colour is at least as close as any other palette colour (brute force).
    d = np.linalg.norm(image[:, :, None, :].astype(float) - FACADES_PALETTE.colors, axis=-1)
    chosen = np.linalg.norm(image.astype(float) - snapped, axis=-1)
    assert np.allclose(chosen, d.min(-1))
    # Slightly perturbed palette colours snap back exactly.
    ids = blocky_ids(rng, FACADES_PALETTE.num_classes, blocks=(4, 4), block=8)
    clean = FACADES_PALETTE.ids_to_colors(ids)
    jitter = rng.integers(-8, 9, size=clean.shape)
    noisy = np.clip(clean.astype(int) + jitter, 0, 255).astype(np.uint8)
    assert np.array_equal(FACADES_PALETTE.snap(Image.fromarray(noisy)), clean)


def test_image_input_validation() -> None:
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        FACADES_PALETTE.colors_to_ids(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        FACADES_PALETTE.colors_to_ids(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(TypeError):
        FACADES_PALETTE.colors_to_ids([[[0, 0, 222]]])


def test_large_image_is_fast() -> None:
    rng = np.random.default_rng(6)
    ids = blocky_ids(rng, CITYSCAPES_PALETTE.num_classes, blocks=(32, 64), block=32)
    image = jpeg_roundtrip(CITYSCAPES_PALETTE.ids_to_colors(ids), quality=90)
    assert image.shape == (1024, 2048, 3)
    start = time.perf_counter()
    CITYSCAPES_PALETTE.colors_to_ids(image)
    # Typically ~0.2 s; a per-pixel Python loop would take minutes. Generous for slow CI.
    assert time.perf_counter() - start < 3.0


# --------------------------------------------------------------------------------------------
# Palette: construction, validation, config


def test_palette_accepts_sequences_and_is_immutable() -> None:
    palette = Palette(((1, 2, 3), [4, 5, 6]), names=["a", "b"])
    assert palette.colors.dtype == np.uint8 and palette.colors.shape == (2, 3)
    assert palette.names == ("a", "b") and palette.num_classes == 2
    with pytest.raises(ValueError):
        palette.colors[0, 0] = 7  # read-only array
    with pytest.raises(dataclasses.FrozenInstanceError):
        palette.names = None  # type: ignore[misc]
    assert palette == Palette(np.array([[1, 2, 3], [4, 5, 6]]), names=("a", "b"))
    assert palette != Palette([[1, 2, 3], [4, 5, 6]])
    assert len({palette, Palette([[1, 2, 3], [4, 5, 6]], names=("a", "b"))}) == 1
    restored = pickle.loads(pickle.dumps(palette))  # e.g. sent to DataLoader workers
    assert restored == palette and not restored.colors.flags.writeable


@pytest.mark.parametrize(
    ("colors", "names", "match"),
    [
        ([[1, 2, 3, 4]], None, r"\(K, 3\)"),
        ([1, 2, 3], None, r"\(K, 3\)"),
        ([], None, r"\(K, 3\)"),
        ([[1, 2], [3, 4, 5]], None, r"\(K, 3\)"),
        ([[0, 0, 256]], None, "0..255"),
        ([[0, -1, 0]], None, "0..255"),
        ([[0.5, 0.2, 0.1]], None, "whole numbers"),
        ([[0, 0, 0], [1, 1, 1]], ["only one"], "2 colors but 1 names"),
        ([[0, 0, 0], [1, 1, 1]], "ab", "sequence of K strings"),
        ([[0, 0, 0]], [3], "strings"),
    ],
)
def test_palette_validation(colors, names, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Palette(colors, names=names)


@pytest.mark.parametrize(
    "palette",
    [FACADES_PALETTE, CITYSCAPES_PALETTE, Palette([[1, 2, 3]])],
    ids=["facades", "city", "unnamed"],
)
def test_config_round_trip_through_json(palette: Palette) -> None:
    config = json.loads(json.dumps(palette.to_config()))
    assert set(config) == {"colors", "names"}
    restored = Palette.from_config(config)
    assert restored == palette
    assert np.array_equal(restored.colors, palette.colors)
    assert restored.names == palette.names


def test_from_config_rejects_bad_configs() -> None:
    with pytest.raises(ValueError, match="'colors'"):
        Palette.from_config({"names": ["a"]})
    with pytest.raises(ValueError, match="colours"):
        Palette.from_config({"colors": [[0, 0, 0]], "colours": [[1, 1, 1]]})


def test_builtin_palettes() -> None:
    assert FACADES_PALETTE.num_classes == 12
    assert FACADES_PALETTE.names[0] == "background" and FACADES_PALETTE.names[-1] == "shop"
    # The classes must be told apart after JPEG blur: no two colours closer than ~58.
    c = FACADES_PALETTE.colors.astype(float)
    d = np.linalg.norm(c[:, None] - c[None], axis=-1)
    assert d[~np.eye(12, dtype=bool)].min() > 50

    names = CITYSCAPES_PALETTE.names
    assert CITYSCAPES_PALETTE.num_classes == 35 and len(set(names)) == 35
    expected = {
        "unlabeled": (0, 0, 0),
        "static": (0, 0, 0),
        "road": (128, 64, 128),
        "building": (70, 70, 70),
        "vegetation": (107, 142, 35),
        "sky": (70, 130, 180),
        "person": (220, 20, 60),
        "car": (0, 0, 142),
        "bicycle": (119, 11, 32),
        "license plate": (0, 0, 142),
    }
    for name, rgb in expected.items():
        assert tuple(CITYSCAPES_PALETTE.colors[names.index(name)].tolist()) == rgb
    assert names.index("road") == 7 and names.index("bicycle") == 33
    assert names.index("license plate") == 34


# --------------------------------------------------------------------------------------------
# one_hot


@pytest.mark.parametrize("with_channel", [False, True])
def test_one_hot_matches_torch(with_channel: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 7, (3, 5, 9), generator=gen)
    out = one_hot(ids.unsqueeze(1) if with_channel else ids, 7)
    assert out.shape == (3, 7, 5, 9) and out.dtype == torch.float32
    assert torch.equal(out.sum(dim=1), torch.ones(3, 5, 9))
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(out, F.one_hot(ids, 7).permute(0, 3, 1, 2).float())


def test_one_hot_dtypes() -> None:
    ids = torch.tensor([[[0, 2], [1, 2]]], dtype=torch.uint8)
    expected = F.one_hot(ids.long(), 3).permute(0, 3, 1, 2)
    assert torch.equal(one_hot(ids, 3, dtype=torch.int64), expected)
    half = one_hot(ids.float(), 3, dtype=torch.float16)  # whole-number floats are ids too
    assert half.dtype == torch.float16 and torch.equal(half.long(), expected)
    assert torch.equal(one_hot(ids.int(), 3, dtype=torch.bool), expected.bool())


def test_one_hot_rejects_out_of_range_ids() -> None:
    ids = torch.tensor([[[0, 3], [35, 1]]])
    with pytest.raises(ValueError, match="35") as info:
        one_hot(ids, 35)
    assert "at least 36" in str(info.value) and "num_classes is 35" in str(info.value)
    with pytest.raises(ValueError, match="-2"):
        one_hot(torch.tensor([[[0, -2]]]), 5)
    with pytest.raises(ValueError, match=r"0\.5"):
        one_hot(torch.tensor([[[0.0, 0.5]]]), 5)
    with pytest.raises(ValueError, match="shape"):
        one_hot(torch.zeros(2, 3, 4, 4, dtype=torch.long), 5)
    with pytest.raises(ValueError, match="positive int"):
        one_hot(torch.zeros(1, 4, 4, dtype=torch.long), 0)


# --------------------------------------------------------------------------------------------
# instance_boundaries


def reference_edges(t: torch.Tensor) -> torch.Tensor:
    """pix2pixHD's get_edges, line for line, on a ByteTensor."""
    edge = torch.zeros(t.size(), dtype=torch.uint8)
    edge[:, :, :, 1:] = edge[:, :, :, 1:] | (t[:, :, :, 1:] != t[:, :, :, :-1])
    edge[:, :, :, :-1] = edge[:, :, :, :-1] | (t[:, :, :, 1:] != t[:, :, :, :-1])
    edge[:, :, 1:, :] = edge[:, :, 1:, :] | (t[:, :, 1:, :] != t[:, :, :-1, :])
    edge[:, :, :-1, :] = edge[:, :, :-1, :] | (t[:, :, 1:, :] != t[:, :, :-1, :])
    return edge.float()


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.float32, torch.uint8])
def test_instance_boundaries_match_official(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(1)
    for shape in [(2, 1, 7, 9), (1, 1, 1, 5), (3, 1, 4, 1), (1, 1, 12, 12)]:
        # Few distinct ids, so there are both edges and interiors; * 1000 mimics Cityscapes ids.
        inst = (torch.randint(0, 3, shape, generator=gen) * 1000 + 26).to(dtype)
        if dtype == torch.uint8:
            inst = torch.randint(0, 3, shape, generator=gen).to(dtype)
        out = instance_boundaries(inst)
        assert out.shape == shape and out.dtype == torch.float32
        assert torch.equal(out, reference_edges(inst))
        assert torch.equal(instance_boundaries(inst[:, 0]), out)  # (N, H, W) input


def test_instance_boundaries_hand_drawn() -> None:
    inst = torch.tensor([[1, 1, 1, 2, 2, 2]] * 4).reshape(1, 1, 4, 6)
    expected = torch.tensor([[0, 0, 1, 1, 0, 0]] * 4, dtype=torch.float32).reshape(1, 1, 4, 6)
    assert torch.equal(instance_boundaries(inst), expected)
    # A single pixel of another instance: it and its 4 neighbours, not the diagonals.
    dot = torch.zeros(1, 1, 5, 5, dtype=torch.long)
    dot[0, 0, 2, 2] = 7
    plus = torch.zeros(5, 5)
    plus[2, 1:4] = 1
    plus[1:4, 2] = 1
    assert torch.equal(instance_boundaries(dot)[0, 0], plus)
    assert not instance_boundaries(torch.full((2, 3, 3), 5)).any()


def test_instance_boundaries_rejects_bad_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        instance_boundaries(torch.zeros(1, 2, 4, 4))


# --------------------------------------------------------------------------------------------
# assemble_generator_input


def test_assemble_generator_input_channel_order() -> None:
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 5, (2, 6, 8), generator=gen)
    inst = torch.randint(0, 3, (2, 1, 6, 8), generator=gen)
    feats = torch.randn(2, 3, 6, 8, generator=gen)

    full = assemble_generator_input(ids, 5, instance_map=inst, features=feats)
    assert full.shape == (2, 5 + 1 + 3, 6, 8) and full.dtype == torch.float32
    assert torch.equal(full[:, :5], F.one_hot(ids, 5).permute(0, 3, 1, 2).float())
    assert torch.equal(full[:, 5:6], reference_edges(inst))
    assert torch.equal(full[:, 6:], feats)

    labels_only = assemble_generator_input(ids.unsqueeze(1), 5)
    assert torch.equal(labels_only, full[:, :5])
    no_inst = assemble_generator_input(ids, 5, features=feats, dtype=torch.float64)
    assert no_inst.shape == (2, 8, 6, 8) and no_inst.dtype == torch.float64
    assert torch.equal(no_inst[:, 5:], feats.double())
    no_feat = assemble_generator_input(ids, 5, instance_map=inst[:, 0])
    assert torch.equal(no_feat, full[:, :6])


def test_assemble_generator_input_mismatches() -> None:
    ids = torch.zeros(2, 6, 8, dtype=torch.long)
    with pytest.raises(ValueError, match="instance_map"):
        assemble_generator_input(ids, 3, instance_map=torch.zeros(2, 1, 6, 7))
    with pytest.raises(ValueError, match="instance_map"):
        assemble_generator_input(ids, 3, instance_map=torch.zeros(1, 1, 6, 8))
    with pytest.raises(ValueError, match="features"):
        assemble_generator_input(ids, 3, features=torch.zeros(2, 3, 3, 4))
    with pytest.raises(ValueError, match="features"):
        assemble_generator_input(ids, 3, features=torch.zeros(2, 6, 8))
    with pytest.raises(ValueError, match="label_nc"):
        assemble_generator_input(ids + 3, 3)


# --------------------------------------------------------------------------------------------
# Real data in ../shared (skipped when absent)


def _aligned_halves(folder: Path, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    if not folder.is_dir():
        pytest.skip(f"shared data not found at {folder}")
    files = sorted(folder.glob("*.jpg"))[:count]
    if not files:
        pytest.skip(f"no images in {folder}")
    halves = []
    for path in files:
        ab = np.asarray(Image.open(path).convert("RGB"))
        w = ab.shape[1] // 2
        halves.append((ab[:, :w], ab[:, w:]))  # (photo, colour label map)
    return halves


def test_facades_labels_use_the_facades_palette() -> None:
    pairs = _aligned_halves(SHARED / "data" / "facades" / "train", 20)
    counts = np.zeros(FACADES_PALETTE.num_classes)
    errors = []
    for photo, label in pairs:
        ids = FACADES_PALETTE.colors_to_ids(label)  # must not raise
        counts += np.bincount(ids.ravel(), minlength=FACADES_PALETTE.num_classes)
        errors.append(np.linalg.norm(label.astype(float) - FACADES_PALETTE.colors[ids], axis=-1))
        with pytest.raises(NotAPaletteImageError):
            FACADES_PALETTE.colors_to_ids(photo)
    # Most pixels sit close to their palette colour; only blurred edges (a quarter of the
    # pixels in these labels) do not. A wrong palette colour would shift whole regions.
    assert np.median(np.concatenate([e.ravel() for e in errors])) < 10
    # Each palette colour is the most frequent exact colour of its cluster (thin, rare classes
    # such as pillar are too blurred in 20 images to have a clean mode, hence the count guard).
    pixels = np.concatenate([label.reshape(-1, 3) for _, label in pairs]).astype(np.int64)
    packed, freq = np.unique(pixels @ np.array([1 << 16, 1 << 8, 1]), return_counts=True)
    colours = np.stack([packed >> 16, (packed >> 8) & 255, packed & 255], axis=1)
    checked = 0
    for colour in FACADES_PALETTE.colors.astype(float):
        near = np.linalg.norm(colours - colour, axis=1) <= 40
        if freq[near].sum() >= 4000:
            mode = colours[near][np.argmax(freq[near])]
            assert np.linalg.norm(mode - colour) <= 4, (colour, mode)
            checked += 1
    assert checked >= 10
    share = dict(zip(FACADES_PALETTE.names, counts / counts.sum(), strict=True))
    assert share["facade"] == max(share.values())
    assert (counts > 0).sum() >= 10


def test_cityscapes_labels_use_the_cityscapes_palette() -> None:
    pairs = _aligned_halves(SHARED / "data" / "cityscapes" / "train", 20)
    for _, label in pairs:
        ids = CITYSCAPES_PALETTE.colors_to_ids(label)
        err = np.linalg.norm(label.astype(float) - CITYSCAPES_PALETTE.colors[ids], axis=-1)
        assert np.median(err) < 10  # these labels are far less blurred than the facades
        with pytest.raises(NotAPaletteImageError):
            FACADES_PALETTE.colors_to_ids(label)


def test_cityscapes_hd_label_ids_round_trip() -> None:
    folder = SHARED / "data" / "cityscapes_hd" / "train_label"
    files = sorted(folder.glob("*_labelIds.png")) if folder.is_dir() else []
    if not files:
        pytest.skip(f"shared data not found at {folder}")
    ids = np.asarray(Image.open(files[0])).astype(np.int64)
    assert ids.max() < CITYSCAPES_PALETTE.num_classes
    back = CITYSCAPES_PALETTE.colors_to_ids(CITYSCAPES_PALETTE.ids_to_colors(ids))
    assert np.array_equal(CITYSCAPES_PALETTE.colors[back], CITYSCAPES_PALETTE.colors[ids])
