"""Inputs as people draw them: redrawn sketches and label maps for training, and stroke-width
normalisation at inference.

Datasets hold clean inputs (thin HED edges, exact label rasters); a visitor draws 3-8 px brush
strokes and boxy regions with ragged edges. Training on redrawn inputs, and normalising strokes
at inference, lets a model meet both. Everything here is NumPy on one image: a sketch is a
``(3, H, W)`` or ``(H, W)`` float array in ``[-1, 1]`` (dark strokes on white), a label map an
``(H, W)`` integer array of class ids. Randomness comes only from the ``numpy.random.Generator``
passed in, so a seeded data pipeline stays deterministic.
"""

from __future__ import annotations

import io

import numpy as np
import PIL.Image
from scipy import ndimage

from .labels import Palette

#: Stroke widths (px at 256x256) training sketches are redrawn with, from the dataset's thin
#: edges up to a thick browser brush.
DEFAULT_STROKE_WIDTHS = (1.0, 7.0)


def ink_mask(sketch: np.ndarray) -> np.ndarray:
    """``(3, H, W)`` or ``(H, W)`` sketch in ``[-1, 1]`` -> ``(H, W)`` bool, True on strokes
    (darker than mid-grey)."""
    grey = sketch.mean(axis=0) if sketch.ndim == 3 else sketch
    return grey < 0.0


def stroke_skeleton(mask: np.ndarray) -> np.ndarray:
    """The 1-px centre lines of the strokes in ``mask`` (``(H, W)`` bool)."""
    # Imported here: scikit-image is only needed by sketch models.
    from skimage.morphology import skeletonize

    return skeletonize(mask)


def estimate_stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width in pixels of an ``(H, W)`` bool stroke mask (0 without strokes): the
    ink's area over the length of its centre lines (robust where a distance-based estimate
    trips on off-centre skeletons of even widths)."""
    if not mask.any():
        return 0.0
    return float(mask.sum() / max(int(stroke_skeleton(mask).sum()), 1))


def render_strokes(skeleton: np.ndarray, width: float) -> np.ndarray:
    """Draw ``(H, W)`` bool centre lines ``width`` px wide, anti-aliased like a browser brush.

    Returns ``(H, W)`` float32 ink coverage in ``[0, 1]``.
    """
    if not skeleton.any():
        return np.zeros(skeleton.shape, np.float32)
    distance = ndimage.distance_transform_edt(~skeleton)
    return np.clip(width / 2.0 + 0.5 - distance, 0.0, 1.0).astype(np.float32)


def coverage_to_sketch(coverage: np.ndarray, channels: int = 3) -> np.ndarray:
    """``(H, W)`` ink coverage in ``[0, 1]`` -> black-on-white ``(channels, H, W)`` in [-1, 1]."""
    sketch = (1.0 - 2.0 * coverage).astype(np.float32)
    return np.repeat(sketch[None], channels, axis=0)


def normalize_strokes(sketch: np.ndarray, width: float) -> np.ndarray:
    """Thin every stroke of a ``(C, H, W)`` sketch in ``[-1, 1]`` to its centre line and redraw
    it ``width`` px wide: a 6 px brush stroke and a 1 px pen line both reach the generator at the
    width it was trained on. A blank sketch comes back unchanged."""
    mask = ink_mask(sketch)
    if not mask.any():
        return sketch
    return coverage_to_sketch(render_strokes(stroke_skeleton(mask), width), sketch.shape[0])


def _smooth_field(shape: tuple[int, int], rng: np.random.Generator, cell: int) -> np.ndarray:
    """A smooth random field in about [-1, 1]: noise on a coarse grid, zoomed up (cubic)."""
    coarse = (max(2, shape[0] // cell + 2), max(2, shape[1] // cell + 2))
    zoom = (shape[0] / coarse[0], shape[1] / coarse[1])
    field = ndimage.zoom(rng.uniform(-1.0, 1.0, coarse), zoom, order=3)
    return field[: shape[0], : shape[1]]


def _warp(image: np.ndarray, rng: np.random.Generator, amplitude: float, cell: int, order: int):
    """Displace ``image`` (H, W) by a smooth random field of up to ``amplitude`` px."""
    height, width = image.shape
    dy = _smooth_field((height, width), rng, cell) * amplitude
    dx = _smooth_field((height, width), rng, cell) * amplitude
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return ndimage.map_coordinates(image, [yy + dy, xx + dx], order=order, mode="nearest")


def redraw_sketch(
    sketch: np.ndarray,
    rng: np.random.Generator,
    widths: tuple[float, float] = DEFAULT_STROKE_WIDTHS,
    keep_probability: float = 0.15,
    partial_probability: float = 0.2,
) -> np.ndarray:
    """A training sketch as someone might draw it with a brush.

    The strokes are thinned to centre lines, broken in a few places, sometimes left unfinished
    (a rectangle of the drawing erased), redrawn at a random width from ``widths`` (px at
    256x256; scaled with the image's shorter side) and wobbled by a smooth displacement of up to
    ~1.5 px. With ``keep_probability`` the sketch is returned as it is.

    Args:
        sketch: ``(C, H, W)`` float in ``[-1, 1]``, dark strokes on white.
        rng: the only source of randomness.

    Returns:
        ``(C, H, W)`` float32 in ``[-1, 1]``.
    """
    mask = ink_mask(sketch)
    if not mask.any() or rng.random() < keep_probability:
        return sketch
    height, width = mask.shape
    scale = min(height, width) / 256.0
    skeleton = stroke_skeleton(mask)
    # Small breaks: the pen lifted for a moment.
    points = np.argwhere(skeleton)
    for y, x in points[rng.random(len(points)) < 1.0 / 120.0]:
        radius = int(rng.integers(1, 3))
        skeleton[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1] = False
    # An unfinished drawing: part of it not drawn yet.
    if rng.random() < partial_probability:
        box_h = int(height * rng.uniform(0.25, 0.6))
        box_w = int(width * rng.uniform(0.25, 0.6))
        top = int(rng.integers(0, height - box_h + 1))
        left = int(rng.integers(0, width - box_w + 1))
        skeleton[top : top + box_h, left : left + box_w] = False
    stroke = rng.uniform(*widths) * scale
    coverage = render_strokes(skeleton, max(stroke, 1.0))
    wobble = rng.uniform(0.0, 1.5) * scale
    coverage = np.clip(_warp(coverage, rng, wobble, max(1, int(32 * scale)), order=1), 0.0, 1.0)
    return coverage_to_sketch(coverage, sketch.shape[0])


def _fill_from_neighbours(ids: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """Give every ``holes`` pixel the id of the nearest pixel outside the holes."""
    if not holes.any() or holes.all():
        return ids
    _, (near_y, near_x) = ndimage.distance_transform_edt(holes, return_indices=True)
    return ids[near_y, near_x]


def _regions(ids: np.ndarray, min_area: float) -> tuple[np.ndarray, list]:
    """Connected regions of each class, largest first, as ``(area, class, bounding box slices,
    mask within the box)``; regions under ``min_area`` pixels are dropped from the list and
    from the returned map (their pixels join the nearest other region)."""
    regions = []
    small = np.zeros(ids.shape, bool)
    for cls in np.unique(ids):
        components, _ = ndimage.label(ids == cls)
        for index, box in enumerate(ndimage.find_objects(components), start=1):
            mask = components[box] == index
            size = int(mask.sum())
            if size < min_area:
                small[box] |= mask
            else:
                regions.append((size, int(cls), box, mask))
    regions.sort(key=lambda region: -region[0])
    return _fill_from_neighbours(ids, small), regions


def label_boxes(ids: np.ndarray, min_share: float = 0.001, max_share: float = 0.25) -> np.ndarray:
    """A label map as drawn with a box tool: every region between ``min_share`` and
    ``max_share`` of the image becomes its bounding box (smaller ones painted last, on top);
    smaller regions are dropped, larger ones (the wall, the sky) stay. ``(H, W)`` int ids in
    and out. Deterministic: for robustness evaluations."""
    ids = np.asarray(ids, dtype=np.int64)
    out, regions = _regions(ids, min_share * ids.size)
    canvas = out.copy()
    for size, cls, box, _ in regions:
        if size <= max_share * ids.size:
            canvas[box] = cls
    return canvas


def _simplified_region(region: np.ndarray, tolerance: float) -> np.ndarray:
    """A region's outline as a polygon simplified to ``tolerance`` px, filled."""
    from skimage.draw import polygon as fill_polygon
    from skimage.measure import approximate_polygon, find_contours

    padded = np.pad(region, 1)
    out = np.zeros(region.shape, bool)
    for contour in find_contours(padded.astype(np.float32), 0.5):
        simple = approximate_polygon(contour, tolerance) - 1.0
        rows, cols = fill_polygon(simple[:, 0], simple[:, 1], region.shape)
        out[rows, cols] ^= True  # even-odd: holes stay holes
    return out


def redraw_labels(
    ids: np.ndarray,
    rng: np.random.Generator,
    palette: Palette | None = None,
    simplify_probability: float = 0.8,
    jpeg_probability: float = 0.3,
) -> np.ndarray:
    """A training label map as someone might paint it in the app.

    With ``simplify_probability`` the map is "drawn": regions under a random area (up to 0.3% of
    the image) are dropped (their pixels join the surrounding classes), and each region smaller
    than a quarter of the image becomes, at random, its bounding box, a polygon simplified with
    a random tolerance, or stays as it is (small regions are painted last, so they stay on
    top). The edges are then made ragged by a smooth random displacement (nearest-neighbour, no
    new ids). With ``jpeg_probability`` and a ``palette``, the map is rendered in colour,
    JPEG-compressed and snapped back to the nearest palette colour, as an uploaded JPEG label
    map reaches the generator.

    Args:
        ids: ``(H, W)`` integer class ids.
        rng: the only source of randomness.

    Returns:
        ``(H, W)`` int64 class ids, no id that ``ids`` and the palette do not have.
    """
    ids = np.asarray(ids, dtype=np.int64)
    height, width = ids.shape
    out = ids
    if rng.random() < simplify_probability:
        out, regions = _regions(ids, rng.uniform(0.0, 0.003) * ids.size)
        canvas = out.copy()
        box_share, polygon_share = rng.dirichlet((1.0, 1.0, 1.0))[:2]
        for size, cls, box, mask in regions:
            if size > ids.size / 4:
                continue
            choice = rng.random()
            if choice < box_share:
                canvas[box] = cls
            elif choice < box_share + polygon_share:
                shape = _simplified_region(mask, rng.uniform(1.0, 6.0))
                canvas[box][shape] = cls
            else:
                canvas[box][mask] = cls
        cell = max(4, int(min(height, width) / 16))
        out = _warp(canvas, rng, rng.uniform(0.5, 3.0), cell, order=0).astype(np.int64)
    if palette is not None and rng.random() < jpeg_probability:
        colours = np.asarray(palette.colors, np.uint8)[np.clip(out, 0, palette.num_classes - 1)]
        buffer = io.BytesIO()
        PIL.Image.fromarray(colours).save(buffer, "JPEG", quality=int(rng.integers(30, 95)))
        decoded = np.asarray(PIL.Image.open(buffer).convert("RGB"))
        out = palette.colors_to_ids(decoded, max_distance=None)
    return out
