"""Inference latency on CPU: fp32 eager vs the fast modes, and instance pooling.

    python bench/inference.py [--quick] [--threads N]

Cases (full-size, paper widths, random init): the pix2pix U-Net 256 (BatchNorm) at 256x256, and
the pix2pixHD global G (36 input channels, ngf 64, 4 downsamplings, 9 blocks) at 512x256 and
1024x512, batch 1. Modes:

- ``fp32``: eager fp32, contiguous (the baseline).
- ``bf16-autocast+CL``: fp32 weights, channels_last, ``torch.autocast(cpu, bfloat16)``.
- ``bf16-weights+CL``: the model cast to bfloat16, channels_last (what a bf16 checkpoint gives;
  ``Pix2PixHDPipeline.enable_fast_cpu_inference()``).
- ``bf16+CL+compile``: the same plus ``torch.compile`` with weight freezing
  (``enable_fast_cpu_inference(compile=True)``); its one-time compile time is printed apart.

The speed-up is against fp32 at the same size. The output error of each fast mode against fp32
is reported (max and mean absolute, outputs in [-1, 1]); the tolerance we hold the fast mode to
is tested in tests/test_pipeline.py (test_fast_cpu_mode_stays_close_to_fp32). Then
instance-wise average pooling at 1024x512 with ~60 instances (target < 20 ms).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from hf_pix2pixhd import GlobalGenerator, UNetGenerator, instance_average_pool
from hf_pix2pixhd.models.modes import compile_for_inference

MODES = ("fp32", "bf16-autocast+CL", "bf16-weights+CL", "bf16+CL+compile")


def timed(
    fn: Callable[[], torch.Tensor], repeats: int, warmup: int = 2
) -> tuple[float, torch.Tensor]:
    """Median seconds over ``repeats`` runs after ``warmup`` runs, and the last output."""
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def prepare(model: torch.nn.Module, mode: str) -> tuple[torch.nn.Module, Callable]:
    """A copy of ``model`` set up for ``mode``, and a function mapping an input to its output."""
    model = model.eval()
    if mode == "fp32":
        return model, lambda x: model(x)
    fast = type(model).from_config(model.config).eval()
    fast.load_state_dict(model.state_dict())
    fast = fast.to(memory_format=torch.channels_last)
    if mode in ("bf16-weights+CL", "bf16+CL+compile"):
        fast = fast.to(torch.bfloat16)
        if mode == "bf16+CL+compile":
            run = compile_for_inference(fast)
            return fast, lambda x: run(x.to(torch.bfloat16, memory_format=torch.channels_last))
        return fast, lambda x: fast(x.to(torch.bfloat16, memory_format=torch.channels_last))

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fast(x.contiguous(memory_format=torch.channels_last))

    return fast, run


def bench_generators(quick: bool) -> list[dict]:
    torch.manual_seed(0)
    cases = [("pix2pix U-Net 256", UNetGenerator(norm="batch"), 3, (256, 256))]
    hd = GlobalGenerator(in_channels=36)
    cases += [("pix2pixHD global G", hd, 36, (256, 512))]
    if not quick:
        cases += [("pix2pixHD global G", hd, 36, (512, 1024))]
    rows = []
    for name, model, channels, (height, width) in cases:
        x = torch.rand(1, channels, height, width) * 2 - 1
        if channels == 36:  # a one-hot label map (+1 boundary channel), as in real use
            ids = torch.randint(0, 35, (1, height, width))
            x = torch.zeros(1, 36, height, width).scatter_(1, ids.unsqueeze(1), 1.0)
        repeats = 3 if height * width >= 512 * 1024 else 10
        baseline, reference = None, None
        for mode in MODES:
            _, run = prepare(model, mode)
            with torch.inference_mode():
                if mode == "bf16+CL+compile":
                    start = time.perf_counter()
                    run(x)
                    print(f"  compile: {time.perf_counter() - start:.1f} s", flush=True)
                seconds, out = timed(lambda run=run, x=x: run(x), repeats)
            out = out.float()
            if mode == "fp32":
                baseline, reference = seconds, out
            error = (out - reference).abs()
            rows.append({
                "network": name, "size": f"{width}x{height}", "mode": mode,
                "ms": seconds * 1000, "speedup": baseline / seconds,
                "max_err": error.max().item(), "mean_err": error.mean().item(),
            })  # fmt: skip
            print(f"  {name} {width}x{height} {mode}: {seconds * 1000:.0f} ms", flush=True)
    return rows


def bench_pooling() -> dict:
    torch.manual_seed(0)
    height, width = 512, 1024
    # ~60 instances: a grid of rectangles with Cityscapes-style ids (class * 1000 + k).
    rows, cols = 6, 10
    grid = torch.arange(rows * cols).view(rows, cols)
    ids = grid.repeat_interleave(height // rows + 1, 0)[:height]
    ids = ids.repeat_interleave(width // cols + 1, 1)[:, :width]
    instances = (24000 + (ids % 10) * 1000 + ids).view(1, 1, height, width).float()
    features = torch.randn(1, 3, height, width)
    with torch.inference_mode():
        seconds, _ = timed(lambda: instance_average_pool(features, instances), 20, warmup=3)
    return {"instances": int(instances.unique().numel()), "ms": seconds * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 1024x512 case")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"bf16 AMX/AVX512: {torch.backends.cpu.get_cpu_capability()}")  # fmt: skip
    rows = bench_generators(args.quick)
    print()
    header = f"| {'network':<20} | {'size':>8} | {'mode':<17} | {'ms':>8} | {'speed-up':>8} |"
    header += f" {'max abs err':>11} | {'mean abs err':>12} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for r in rows:
        print(
            f"| {r['network']:<20} | {r['size']:>8} | {r['mode']:<17} | {r['ms']:>8.1f} | "
            f"{r['speedup']:>7.2f}x | {r['max_err']:>11.4f} | {r['mean_err']:>12.5f} |"
        )
    pooling = bench_pooling()
    print(
        f"\ninstance_average_pool 1024x512, {pooling['instances']} instances, 3 channels: "
        f"{pooling['ms']:.2f} ms (target < 20 ms)"
    )


if __name__ == "__main__":
    main()
