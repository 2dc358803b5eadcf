"""Tiled inference under bounded memory for the fully convolutional generators.

Running a generator layer by layer keeps every activation of the stack alive at once; at
2048x1024 the pix2pixHD local enhancer needs ~1.6 GB on top of its 0.7 GB of weights.
:func:`tiled_forward` runs the same network as a *streaming* program instead:

- every convolution (and transposed conv, average pool) is computed tile by tile, each tile
  reading its receptive field (halo) from the input and padding it exactly as the layer would,
  into one preallocated output; the input one-hot of a label map can be built per tile too
  (:class:`LabelInput`), so the 36-channel float map never exists at full size;
- instance norm takes its statistics over the *whole* activation, then normalises in place, and
  ReLU / Tanh / BatchNorm run in place, so tiling changes nothing about the statistics (no seams,
  no colour shift);
- a convolution whose output is larger than both its input and the next convolution's output
  (the full-resolution 32-channel layers of the local enhancer) is never stored: its instance
  norm statistics are gathered in a first pass over tiles, and the next convolution's tiles
  recompute it on their halo, normalised with those statistics;
- inside a ResNet block the second convolution overwrites its input band by band (a saved halo
  strip keeps the rows the next band still reads), so a block holds two activations, not three.

At 2048x1024 the local enhancer then peaks at 1.4 GB instead of 2.7 GB, 14% slower
(``bench/highres.py``).

The result equals the untiled forward up to float summation order (tests/test_tiling.py holds
it to ``TILED_TOLERANCE``). Supported: :class:`GlobalGenerator`, :class:`LocalEnhancerGenerator`,
:class:`ResnetGenerator` and :class:`UNetGenerator`, in eval mode or pix2pix's test mode
(BatchNorm on batch statistics; dropout then draws other masks than an untiled run would).
"""

from __future__ import annotations

import ctypes
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..labels import instance_boundaries, one_hot
from .layers import ResizeConv2d, ResnetBlock, check_input_channels, check_spatial_multiple
from .pix2pix_generators import UnetSkipConnectionBlock

#: Max abs difference between tiled and untiled fp32 outputs (in [-1, 1] units) that the tests
#: hold the tiled path to; measured differences are ~1e-6 (float summation order only).
TILED_TOLERANCE = 1e-4

#: Default side, in output pixels of each layer, of one tile.
DEFAULT_TILE_SIZE = 64

#: Inputs of this many pixels or more are tiled by ``Pix2PixHDPipeline`` unless told otherwise.
TILING_MIN_PIXELS = 1024 * 1024

Region = tuple[int, int, int, int]  # rows [r0, r1), cols [c0, c1); may reach past the edges


# -- inputs ---------------------------------------------------------------------------------


class TensorSource:
    """A stored ``(N, C, H, W)`` activation (or a band of one, starting at ``row_offset``)."""

    def __init__(self, tensor: torch.Tensor, height: int | None = None, row_offset: int = 0):
        self.tensor = tensor
        self.row_offset = row_offset
        n, c, h, w = tensor.shape
        self.shape = (n, c, h if height is None else height, w)

    def read(self, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        off = self.row_offset
        return self.tensor[:, :, r0 - off : r1 - off, c0:c1]


@dataclass
class LabelInput:
    """A pix2pixHD label input kept compact: class ids plus the other channels.

    Stands for ``cat([one_hot(ids, num_classes), extra], 1)`` (one-hot first, then e.g. the
    instance boundary and feature channels) without building it: :meth:`read` builds the
    one-hot of one tile. ``ids``: ``(N, 1, H, W)`` int64; ``extra``: ``(N, E, H, W)`` float or
    None; ``dtype``: the dtype tiles are built in.
    """

    ids: torch.Tensor
    num_classes: int
    extra: torch.Tensor | None = None
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        # The smallest integer type that holds the ids (one byte for up to 256 classes).
        for small in (torch.uint8, torch.int16, torch.int32):
            if self.num_classes - 1 <= torch.iinfo(small).max:
                self.ids = self.ids.to(small)
                break

    @property
    def shape(self) -> tuple[int, int, int, int]:
        n, _, h, w = self.ids.shape
        return (n, self.num_classes + self.extra_channels, h, w)

    @property
    def extra_channels(self) -> int:
        return 0 if self.extra is None else self.extra.shape[1]

    def read(self, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        tile = one_hot(self.ids[:, :, r0:r1, c0:c1], self.num_classes, dtype=self.dtype)
        if self.extra is None:
            return tile
        return torch.cat([tile, self.extra[:, :, r0:r1, c0:c1].to(self.dtype)], 1)

    @classmethod
    def from_maps(
        cls,
        ids: torch.Tensor,
        num_classes: int,
        instances: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> LabelInput:
        """What ``assemble_generator_input(ids, num_classes, instances, features)`` gives, kept
        compact: ``(N, 1, H, W)`` ids, optional instance ids and ``(N, F, H, W)`` features."""
        extra = []
        if instances is not None:
            extra.append(instance_boundaries(instances))
        if features is not None:
            extra.append(features.float())
        if any(e.shape[0] != ids.shape[0] or e.shape[2:] != ids.shape[2:] for e in extra):
            raise ValueError("Instance map and features must match the label map's N, H, W.")
        return cls(ids, num_classes, torch.cat(extra, 1) if extra else None)

    def materialize(self) -> torch.Tensor:
        """The full ``(N, C, H, W)`` input tensor."""
        _, _, h, w = self.shape
        return self.read(0, h, 0, w)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        extra = None if self.extra is None else self.extra.to(device)
        return LabelInput(self.ids.to(device), self.num_classes, extra, dtype or self.dtype)

    def map_spatial(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> LabelInput:
        """Apply a per-pixel-layout transform (pad, nearest resize) to ids and extra alike;
        ``fn`` takes and returns a float tensor."""
        ids = fn(self.ids.double()).round().long()
        extra = None if self.extra is None else fn(self.extra)
        return LabelInput(ids, self.num_classes, extra, self.dtype)

    @staticmethod
    def cat(items: Sequence[LabelInput]) -> LabelInput:
        """Batch several inputs of one size."""
        if len(items) == 1:
            return items[0]
        extras = [i.extra for i in items]
        extra = None if extras[0] is None else torch.cat(extras)
        return LabelInput(torch.cat([i.ids for i in items]), items[0].num_classes, extra,
                          items[0].dtype)  # fmt: skip


Source = TensorSource | LabelInput


def concat_inputs(items: Sequence[torch.Tensor | LabelInput]) -> torch.Tensor | LabelInput:
    """Batch equally sized inputs (one is passed through, not copied)."""
    if isinstance(items[0], LabelInput):
        return LabelInput.cat(items)
    return items[0] if len(items) == 1 else torch.cat(list(items))


def map_spatial(x: torch.Tensor | LabelInput, fn: Callable[[torch.Tensor], torch.Tensor]):
    """``fn`` (a pad or nearest resize of a float NCHW tensor) on a tensor or a LabelInput."""
    return x.map_spatial(fn) if isinstance(x, LabelInput) else fn(x)


# -- spatial ops ------------------------------------------------------------------------------


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


@dataclass
class _Spatial:
    """One conv-like layer on tiles: ``conv`` (Conv2d, padding applied by us), ``convT``
    (ConvTranspose2d), ``resize`` (:class:`ResizeConv2d`: nearest 2x, replicate pad, Conv3)
    or ``pool`` (AvgPool2d)."""

    kind: str
    module: nn.Module
    padding: tuple[int, int] = (0, 0)
    pad_mode: str = "zeros"  # zeros | reflect | replicate
    pointwise: list[nn.Module] = field(default_factory=list)  # applied after, in order
    in_size: tuple[int, int] = (0, 0)  # set by the chain that runs it

    def __post_init__(self) -> None:
        m = self.module
        self.kernel = _pair(m.kernel_size)
        self.stride = _pair(m.stride)
        if self.kind == "convT":
            self.padding = _pair(m.padding)
            self.output_padding = _pair(m.output_padding)
        if self.kind != "pool" and (_pair(m.dilation) != (1, 1) or m.groups != 1):
            raise NotImplementedError("Tiling supports undilated, ungrouped convolutions only.")

    def out_size(self, size: tuple[int, int]) -> tuple[int, int]:
        k, s, p = self.kernel, self.stride, self.padding
        if self.kind == "resize":
            return (2 * size[0], 2 * size[1])
        if self.kind == "convT":
            op = self.output_padding
            return tuple((size[a] - 1) * s[a] - 2 * p[a] + k[a] + op[a] for a in (0, 1))
        return tuple((size[a] + 2 * p[a] - k[a]) // s[a] + 1 for a in (0, 1))

    def out_channels(self, in_channels: int) -> int:
        return in_channels if self.kind == "pool" else self.module.out_channels

    def in_span(self, lo: int, hi: int, axis: int, size: int) -> tuple[int, int]:
        """Input coordinates an output span ``[lo, hi)`` reads (padding coordinates included;
        clipped to the input for ``convT``, whose padding crops its output instead)."""
        k, s, p = self.kernel[axis], self.stride[axis], self.padding[axis]
        if self.kind == "resize":  # upsampled rows lo-1 .. hi (clamped: replicate) come from /2
            return max(lo - 1, 0) // 2, min(hi, 2 * size - 1) // 2 + 1
        if self.kind == "convT":
            return max(0, -((k - 1 - lo - p) // s)), min(size, (hi - 1 + p) // s + 1)
        return lo * s - p, (hi - 1) * s - p + k

    def apply(self, x: torch.Tensor, span: Region, out: Region) -> torch.Tensor:
        """``x`` covers ``span`` (padded); returns the output over ``out``."""
        m = self.module
        if self.kind == "conv":
            return F.conv2d(x, m.weight, m.bias, self.stride)
        if self.kind == "resize":
            # Nearest 2x upsampling plus replicate padding is a gather of clamped source rows.
            index = [
                (torch.arange(out[2 * a] - 1, out[2 * a + 1] + 1).clamp(0, 2 * self.in_size[a] - 1)
                 // 2 - span[2 * a]).to(x.device)
                for a in (0, 1)
            ]  # fmt: skip
            return F.conv2d(x.index_select(2, index[0]).index_select(3, index[1]), m.weight, m.bias)
        if self.kind == "pool":
            total = F.avg_pool2d(x, self.kernel, self.stride, 0, divisor_override=1)
            if not m.count_include_pad:
                return total / _pool_counts(self, span, out, x)
            return total / (self.kernel[0] * self.kernel[1])
        y = F.conv_transpose2d(x, m.weight, None, self.stride)
        # y covers [span_lo * s - p, ...) on each axis; rows past its end get the bias only.
        starts = [span[2 * a] * self.stride[a] - self.padding[a] for a in (0, 1)]
        top, left = out[0] - starts[0], out[2] - starts[1]
        bottom = out[1] - starts[0] - y.shape[2]
        right = out[3] - starts[1] - y.shape[3]
        if bottom > 0 or right > 0:
            y = F.pad(y, (0, max(right, 0), 0, max(bottom, 0)))
        y = y[:, :, top : out[1] - starts[0], left : out[3] - starts[1]]
        return y if m.bias is None else y + m.bias.view(1, -1, 1, 1)


def _pool_counts(op: _Spatial, span: Region, out: Region, x: torch.Tensor) -> torch.Tensor:
    """In-image element counts of each pooling window (``count_include_pad=False``)."""
    counts = []
    for axis in (0, 1):
        k, s, p = op.kernel[axis], op.stride[axis], op.padding[axis]
        size = op.in_size[axis]
        starts = torch.arange(out[2 * axis], out[2 * axis + 1]) * s - p
        count = (starts + k).clamp(max=size) - starts.clamp(min=0)
        counts.append(count.to(x.dtype))
    return counts[0].view(-1, 1) * counts[1].view(1, -1)


# -- padding of tiles -----------------------------------------------------------------------


def _valid_span(lo: int, hi: int, size: int, mode: str) -> tuple[int, int]:
    """The in-image span a padded span ``[lo, hi)`` is built from."""
    vlo, vhi = max(lo, 0), min(hi, size)
    if mode == "reflect":
        if lo < 0:
            vhi = max(vhi, -lo + 1)
        if hi > size:
            vlo = min(vlo, 2 * size - 1 - hi)
    elif mode == "replicate":
        if lo < 0:
            vhi = max(vhi, 1)
        if hi > size:
            vlo = min(vlo, size - 1)
    return max(vlo, 0), min(max(vhi, vlo + 1), size)


def _pad_axis(x: torch.Tensor, dim: int, valid: tuple[int, int], want: tuple[int, int],
              size: int, mode: str) -> torch.Tensor:  # fmt: skip
    """``x`` covers ``valid`` on ``dim``; return it over ``want``, padded as the layer would."""
    lo, hi = want
    if (lo, hi) == valid:
        return x
    if lo >= 0 and hi <= size:
        return x.narrow(dim, lo - valid[0], hi - lo)
    if mode == "zeros":
        inner = x.narrow(dim, max(lo, 0) - valid[0], min(hi, size) - max(lo, 0))
        amount = [0, 0, 0, 0]
        amount[(3 - dim) * 2] = max(-lo, 0)
        amount[(3 - dim) * 2 + 1] = max(hi - size, 0)
        return F.pad(inner, amount)
    index = torch.arange(lo, hi)
    if mode == "reflect":
        index = torch.where(index < 0, -index, index)
        index = torch.where(index >= size, 2 * size - 2 - index, index)
    else:
        index = index.clamp(0, size - 1)
    return x.index_select(dim, index - valid[0])


# -- chains of spatial ops on tiles -----------------------------------------------------------


class _Stats:
    """Per-(sample, channel) mean and variance merged over tiles (Chan et al.), in float64."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def add(self, tile: torch.Tensor, over_batch: bool) -> None:
        dims = (0, 2, 3) if over_batch else (2, 3)
        var, mean = torch.var_mean(tile.float(), dim=dims, correction=0, keepdim=True)
        n = math.prod(tile.shape[d] for d in dims)
        mean, m2 = mean.double(), var.double() * n
        if self.mean is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta.square() * (self.count * n / total)
        self.count = total

    def mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean, self.m2 / self.count


def _needs_stats(module: nn.Module) -> bool:
    if isinstance(module, nn.InstanceNorm2d):
        return not (module.track_running_stats and not module.training)
    return isinstance(module, nn.BatchNorm2d) and (module.training or module.running_mean is None)


def _full_stats(x: torch.Tensor, module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    over_batch = isinstance(module, nn.BatchNorm2d)
    if x.dtype == torch.float32:
        var, mean = torch.var_mean(x, dim=(0, 2, 3) if over_batch else (2, 3), correction=0,
                                   keepdim=True)  # fmt: skip
        return mean, var
    merged = _Stats()  # low precision: reduce in float32, a band at a time
    for band in x.split(_BAND_ROWS, 2):
        merged.add(band, over_batch)
    return merged.mean_var()


_BAND_ROWS = 64


def _normalize_(x: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor) -> None:
    """``x = (x - mean) * rstd`` in place, computed in float32 for low-precision ``x``."""
    if x.dtype == torch.float32:
        x.sub_(mean.to(x.dtype)).mul_(rstd.to(x.dtype))
        return
    mean, rstd = mean.float(), rstd.float()
    for band in x.split(_BAND_ROWS, 2):
        band.copy_((band.float() - mean) * rstd)


def _pointwise(x: torch.Tensor, module: nn.Module, stats=None) -> torch.Tensor:
    """Apply one pointwise layer to ``x`` in place (``x`` is owned by the caller)."""
    if isinstance(module, nn.InstanceNorm2d | nn.BatchNorm2d):
        if stats is not None:
            mean, var = stats
        else:  # eval mode: the running statistics
            mean = module.running_mean.view(1, -1, 1, 1)
            var = module.running_var.view(1, -1, 1, 1)
        _normalize_(x, mean, torch.rsqrt(var + module.eps))
        if module.affine:
            x.mul_(module.weight.view(1, -1, 1, 1)).add_(module.bias.view(1, -1, 1, 1))
        return x
    if isinstance(module, nn.ReLU):
        return x.relu_()
    if isinstance(module, nn.LeakyReLU):
        return F.leaky_relu_(x, module.negative_slope)
    if isinstance(module, nn.Tanh):
        return x.tanh_()
    if isinstance(module, nn.Dropout):
        return F.dropout(x, module.p, module.training, inplace=True)
    if isinstance(module, nn.Identity):
        return x
    raise NotImplementedError(f"Tiling does not support {type(module).__name__}.")


def _tiles(height: int, width: int, tile: int) -> Iterator[Region]:
    for r0 in range(0, height, tile):
        for c0 in range(0, width, tile):
            yield r0, min(r0 + tile, height), c0, min(c0 + tile, width)


class _Chain:
    """Spatial ops run back to back on tiles; only the last one's output is stored. The
    pointwise layers between them run per tile (instance norms with statistics from a first
    pass); the last op's pointwise layers run in place on the stored output."""

    def __init__(self, source: Source, ops: list[_Spatial], tile: int) -> None:
        self.source, self.ops, self.tile = source, ops, tile
        _n, c, h, w = source.shape
        self.sizes = [(h, w)]
        self.channels = [c]
        for op in ops:
            op.in_size = self.sizes[-1]
            self.sizes.append(op.out_size(self.sizes[-1]))
            self.channels.append(op.out_channels(self.channels[-1]))
        self.stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def compute(self, last: int, out: Region) -> torch.Tensor:
        """Output of ``ops[last]`` (before its pointwise layers) over ``out``."""
        spans: list[Region] = [out] * (last + 1)
        valid: list[Region] = [out] * (last + 2)
        region = out
        for i in range(last, -1, -1):
            op, (h, w) = self.ops[i], self.sizes[i]
            rows = op.in_span(region[0], region[1], 0, h)
            cols = op.in_span(region[2], region[3], 1, w)
            spans[i] = (*rows, *cols)
            region = (*_valid_span(*rows, h, op.pad_mode), *_valid_span(*cols, w, op.pad_mode))
            valid[i] = region
        x = self.source.read(*valid[0])
        for i in range(last + 1):
            op, (h, w) = self.ops[i], self.sizes[i]
            if i:
                x = self._between(i - 1, x)
            x = _pad_axis(x, 2, valid[i][:2], spans[i][:2], h, op.pad_mode)
            x = _pad_axis(x, 3, valid[i][2:], spans[i][2:], w, op.pad_mode)
            x = op.apply(x, spans[i], valid[i + 1])
        return x

    def _between(self, index: int, x: torch.Tensor) -> torch.Tensor:
        # x is a fresh op output, never a view of a stored activation: safe to change in place.
        for module in self.ops[index].pointwise:
            x = _pointwise(x, module, self.stats.get(index) if _needs_stats(module) else None)
        return x

    def _tile_at(self, index: int) -> int:
        """Tile side on ``ops[index]``'s output such that no op before it in the chain makes
        more than ``tile`` x ``tile`` pixels per tile (a stride-2 op halves it)."""
        height = self.sizes[index + 1][0]
        finest = max(size[0] for size in self.sizes[1 : index + 2])
        return max(1, self.tile * height // finest)

    def _gather_stats(self, index: int) -> None:
        """Statistics of ``ops[index]``'s output for its (single) norm layer, over tiles."""
        modules = self.ops[index].pointwise
        norms = [i for i, m in enumerate(modules) if _needs_stats(m)]
        if not norms:
            return
        if len(norms) > 1 or any(isinstance(m, nn.Dropout) for m in modules[: norms[0]]):
            raise NotImplementedError("A recomputed layer may carry one norm and no dropout.")
        norm = modules[norms[0]]
        merged = _Stats()
        h, w = self.sizes[index + 1]
        for region in _tiles(h, w, self._tile_at(index)):
            x = self.compute(index, region)
            for module in modules[: norms[0]]:
                x = _pointwise(x, module)
            merged.add(x, over_batch=isinstance(norm, nn.BatchNorm2d))
        self.stats[index] = merged.mean_var()

    def run(self) -> torch.Tensor:
        """Store the last op's output (with its pointwise layers applied in place)."""
        for index in range(len(self.ops) - 1):
            self._gather_stats(index)
        last = len(self.ops) - 1
        h, w = self.sizes[-1]
        output = None
        for region in _tiles(h, w, self._tile_at(last)):
            y = self.compute(last, region)
            if output is None:
                output = y.new_empty((y.shape[0], self.channels[-1], h, w))
            output[:, :, region[0] : region[1], region[2] : region[3]] = y
        return finish_in_place(output, self.ops[last].pointwise)


def finish_in_place(x: torch.Tensor, modules: Sequence[nn.Module]) -> torch.Tensor:
    """Pointwise layers on a stored activation, in place; norms take its full statistics."""
    for module in modules:
        x = _pointwise(x, module, _full_stats(x, module) if _needs_stats(module) else None)
    return x


class _BandSource(TensorSource):
    """``x`` whose rows ``[start, start + len(saved))`` are read from ``saved`` (their values
    before the band above overwrote them)."""

    def __init__(self, x: torch.Tensor, saved: torch.Tensor, start: int) -> None:
        super().__init__(x)
        self.saved, self.start = saved, start

    def read(self, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        split = min(max(self.start + self.saved.shape[2], r0), r1)
        if split <= r0:
            return self.tensor[:, :, r0:r1, c0:c1]
        old = self.saved[:, :, r0 - self.start : split - self.start, c0:c1]
        return torch.cat([old, self.tensor[:, :, split:r1, c0:c1]], 2)


def _conv_in_place(x: torch.Tensor, op: _Spatial, tile: int) -> torch.Tensor:
    """A size- and channel-preserving stride-1 conv that overwrites ``x`` band by band.

    Each band of rows (about ``tile**2`` pixels) is computed into a buffer and written back
    once done; the rows just above it, which the next band still reads, are kept in a saved
    strip.
    """
    _, _, h, w = x.shape
    top = op.padding[0]
    rows = max(1, min(h, tile * tile // w, tile))
    cols = max(1, tile * tile // rows)
    saved, start = x[:, :, :0], 0
    for r0 in range(0, h, rows):
        r1 = min(r0 + rows, h)
        chain = _Chain(_BandSource(x, saved, start), [op], tile)
        out = None
        for c0 in range(0, w, cols):
            y = chain.compute(0, (r0, r1, c0, min(c0 + cols, w)))
            if out is None:
                out = y.new_empty((*y.shape[:2], r1 - r0, w))
            out[..., c0 : c0 + y.shape[3]] = y
        start = max(0, r1 - top)
        saved = x[:, :, start:r1].clone()
        x[:, :, r0:r1] = out
    return x


# -- planning networks ----------------------------------------------------------------------

_PADS = {nn.ReflectionPad2d: "reflect", nn.ReplicationPad2d: "replicate", nn.ZeroPad2d: "zeros"}


def _flatten(modules: Sequence[nn.Module]) -> list[nn.Module]:
    flat: list[nn.Module] = []
    for module in modules:
        if type(module) is nn.Sequential:
            flat.extend(_flatten(list(module)))
        else:
            flat.append(module)
    return flat


def _plan(modules: Sequence[nn.Module]) -> list[_Spatial | nn.Module]:
    """Group layers: each spatial op with the pointwise layers after it; blocks stay whole.
    A pointwise layer before any spatial op stays a bare module (applied in place)."""
    plan: list[_Spatial | nn.Module] = []
    pad: tuple[str, tuple[int, int]] | None = None
    for module in _flatten(modules):
        mode = _PADS.get(type(module))
        if mode is not None:
            p = module.padding
            if len(set(p)) != 1:
                raise NotImplementedError("Tiling supports symmetric padding layers only.")
            pad = (mode, (p[0], p[0]))
        elif isinstance(module, ResizeConv2d):
            if pad is not None:
                raise NotImplementedError("A padding layer before a resize conv is unsupported.")
            plan.append(_Spatial("resize", module))
        elif isinstance(module, nn.Conv2d):
            own = _pair(module.padding) if not isinstance(module.padding, str) else None
            if own is None:
                raise NotImplementedError("Tiling needs numeric conv padding.")
            if pad is not None and own != (0, 0):
                raise NotImplementedError("A padding layer before a padded conv is unsupported.")
            mode = module.padding_mode if own != (0, 0) else "zeros"
            mode = {"circular": None}.get(mode, mode)
            if mode is None:
                raise NotImplementedError("Circular padding is unsupported.")
            plan.append(_Spatial("conv", module, *((pad[1], pad[0]) if pad else (own, mode))))
            pad = None
        elif isinstance(module, nn.ConvTranspose2d):
            plan.append(_Spatial("convT", module))
        elif isinstance(module, nn.AvgPool2d):
            if module.ceil_mode:
                raise NotImplementedError("ceil_mode pooling is unsupported.")
            plan.append(_Spatial("pool", module, _pair(module.padding), "zeros"))
        elif isinstance(module, ResnetBlock | UnetSkipConnectionBlock):
            plan.append(module)
        elif plan and isinstance(plan[-1], _Spatial):
            plan[-1].pointwise.append(module)
        else:
            plan.append(module)
    return plan


def _numel(channels: int, size: tuple[int, int]) -> int:
    return channels * size[0] * size[1]


def _is_bulge(source: Source, ops: list, tile: int) -> bool:
    """Whether the second-last op's output is bigger than its input and than the next op's
    output: then it is recomputed on tiles, never stored."""
    if not isinstance(ops[-1], _Spatial):
        return False
    probe = _Chain(source, ops, tile)
    here = _numel(probe.channels[-2], probe.sizes[-2])
    before = _numel(probe.channels[-3], probe.sizes[-3])
    if isinstance(source, LabelInput) and len(ops) == 2:
        before = 0  # built per tile
    return here > before and here > _numel(probe.channels[-1], probe.sizes[-1])


def run_layers(modules: Sequence[nn.Module], inputs: list, tile: int, owned: bool = False):
    """Run layers (``nn.Sequential`` content) tile by tile; returns the stored output.

    ``inputs``: a one-item list holding the input (a tensor or source); it is emptied, so that
    the caller holds no reference and the input is freed as soon as it has been read.
    ``owned``: the input is a tensor this module made and may overwrite.
    """
    x = inputs.pop()
    plan = _plan(modules)
    i = 0
    while i < len(plan):
        item = plan[i]
        if isinstance(item, ResnetBlock):
            x = _run_resnet_block(item, _as_tensor(x), tile)
        elif isinstance(item, _Spatial):
            source = x if isinstance(x, LabelInput) else TensorSource(_as_tensor(x))
            chain = [item]
            while i + 1 < len(plan) and _is_bulge(source, [*chain, plan[i + 1]], tile):
                chain.append(plan[i + 1])
                i += 1
            x = _Chain(source, chain, tile).run()
            del source
        else:
            x = _as_tensor(x)
            x = finish_in_place(x if owned else x.clone(), [item])
        owned = True
        i += 1
        _trim_heap()
    return _as_tensor(x)


def _load_malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _load_malloc_trim()


def _trim_heap() -> None:
    """Hand freed tile buffers back to the OS between layers.

    Tile-sized buffers fall under glibc's mmap threshold, so they come from the heap, and
    freed heap pages stay resident between layers (tens of MB of peak RSS at 2048x1024).
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _as_tensor(x: Source | torch.Tensor) -> torch.Tensor:
    if isinstance(x, LabelInput):
        return x.materialize()
    return x.tensor if isinstance(x, TensorSource) else x


def _run_resnet_block(block: ResnetBlock, x: torch.Tensor, tile: int) -> torch.Tensor:
    """``x + conv_block(x)`` holding two activations: the second conv overwrites the first's
    output in place."""
    plan = _plan(list(block.conv_block))
    first, second = plan
    if not (isinstance(first, _Spatial) and isinstance(second, _Spatial)):
        raise NotImplementedError("Unexpected ResnetBlock layout.")
    y = _Chain(TensorSource(x), [first], tile).run()
    norms = second.pointwise
    bare = _Spatial(second.kind, second.module, second.padding, second.pad_mode)
    y = finish_in_place(_conv_in_place(y, bare, tile), norms)
    return y.add_(x)


def _run_unet_block(block: nn.Module, x: torch.Tensor, tile: int) -> torch.Tensor:
    """One U-Net level: ``cat([x, model(x)])`` (``model(x)`` alone for the outermost one);
    ``x`` is modified in place by the leading LeakyReLU, as in the official code."""
    layers = list(block.model)
    blocks = [i for i, m in enumerate(layers) if isinstance(m, UnetSkipConnectionBlock)]
    sub = blocks[0] if blocks else None
    if sub is None:
        y = _run_unet_layers(layers, x, tile)
    else:
        inner = _run_unet_layers(layers[:sub], x, tile)
        inner = _run_unet_block(layers[sub], inner, tile)
        y = _run_unet_layers(layers[sub + 1 :], inner, tile)
    if block.outermost:
        return y
    out = y.new_empty((x.shape[0], x.shape[1] + y.shape[1], *x.shape[2:]))
    out[:, : x.shape[1]] = x
    out[:, x.shape[1] :] = y
    return out


def _run_unet_layers(layers: list[nn.Module], x: torch.Tensor, tile: int) -> torch.Tensor:
    # A leading LeakyReLU works in place on the block input (the official skip sees it).
    while layers and not isinstance(layers[0], nn.Conv2d | nn.ConvTranspose2d):
        x = _pointwise(x, layers[0])
        layers = layers[1:]
    return run_layers(layers, [x], tile, owned=True) if layers else x


# -- generators -------------------------------------------------------------------------------


def tiled_forward(
    model: nn.Module, x: torch.Tensor | LabelInput, tile_size: int = DEFAULT_TILE_SIZE
):
    """``model(x)`` computed in tiles of ``tile_size`` x ``tile_size`` output pixels per layer.

    Args:
        model: a :class:`GlobalGenerator`, :class:`LocalEnhancerGenerator`,
            :class:`ResnetGenerator` or :class:`UNetGenerator`.
        x: ``(N, C, H, W)`` input, or a :class:`LabelInput` (one-hot built per tile); H and W as
            the model needs them (multiples of ``model.size_multiple``).

    Returns:
        ``(N, out_channels, H, W)``, equal to ``model(x)`` within ``TILED_TOLERANCE`` (fp32).
    """
    if tile_size < 1:
        raise ValueError(f"tile_size must be a positive number of pixels, got {tile_size}.")
    name = type(model).__name__
    if name not in ("LocalEnhancerGenerator", "UNetGenerator", "GlobalGenerator",
                    "ResnetGenerator"):  # fmt: skip
        raise NotImplementedError(f"No tiled path for {name}.")
    n, c, h, w = x.shape
    probe = torch.empty((n, c, 0, 0)) if isinstance(x, LabelInput) else x
    check_input_channels(probe, model.config.in_channels, name)
    check_spatial_multiple(torch.empty((0, 0, h, w)), model.size_multiple, name)
    source = x if isinstance(x, LabelInput) else TensorSource(x)
    with torch.no_grad():
        if name == "LocalEnhancerGenerator":
            return _tiled_local(model, source, tile_size)
        if name == "UNetGenerator":
            return _run_unet_block(model.model, _as_tensor(source), tile_size)
        return run_layers(list(model.model), [source], tile_size)


def _tiled_local(model: nn.Module, source: Source, tile: int) -> torch.Tensor:
    count = model.config.n_local_enhancers
    pyramid: list[Source] = [source]
    for _ in range(count):
        pyramid.append(run_layers([model.downsample], [pyramid[-1]], tile))
    output = run_layers(list(model.model), [pyramid.pop()], tile, owned=True)
    for n in range(1, count + 1):
        front = run_layers(list(getattr(model, f"model{n}_1")), [pyramid.pop()], tile)
        front += output
        handoff = [front]
        del output, front
        output = run_layers(list(getattr(model, f"model{n}_2")), handoff, tile, owned=True)
    return output
