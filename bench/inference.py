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

Each case and mode runs in its own process (peak RSS per row). The speed-up is against fp32 at
the same size. The output error of each fast mode against fp32
is reported (max and mean absolute, outputs in [-1, 1]); the tolerance we hold the fast mode to
is tested in tests/test_pipeline.py (test_fast_cpu_mode_stays_close_to_fp32). Then
instance-wise average pooling at 1024x512 with ~60 instances (target < 20 ms).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import describe_machine, markdown_table, peak_memory_mib, run_case

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


CASES = [  # (name, input channels, (height, width))
    ("pix2pix U-Net 256", 3, (256, 256)),
    ("pix2pixHD global G", 36, (256, 512)),
    ("pix2pixHD global G", 36, (512, 1024)),
]


def run_one(case: int, mode: str, reference: Path) -> dict:
    """One case and mode in this process (a fresh one: its peak RSS is the case's). Seeded, so
    every process builds the same weights and input; fp32 writes its output to ``reference``,
    the fast modes compare against it."""
    _, channels, (height, width) = CASES[case]
    torch.manual_seed(0)
    model = UNetGenerator(norm="batch") if channels == 3 else GlobalGenerator(in_channels=36)
    x = torch.rand(1, channels, height, width) * 2 - 1
    if channels == 36:  # a one-hot label map (+1 boundary channel), as in real use
        ids = torch.randint(0, 35, (1, height, width))
        x = torch.zeros(1, 36, height, width).scatter_(1, ids.unsqueeze(1), 1.0)
    repeats = 3 if height * width >= 512 * 1024 else 10
    _, run = prepare(model, mode)
    compile_s = None
    with torch.inference_mode():
        if mode == "bf16+CL+compile":
            start = time.perf_counter()
            run(x)
            compile_s = time.perf_counter() - start
        seconds, out = timed(lambda: run(x), repeats)
    out = out.float()
    if mode == "fp32":
        torch.save(out, reference)
    error = (out - torch.load(reference)).abs()
    return {
        "ms": seconds * 1000,
        "max_err": error.max().item(),
        "mean_err": error.mean().item(),
        "compile_s": compile_s,
        "peak_mib": peak_memory_mib(),
    }


def bench_generators(quick: bool, threads: int | None) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case, (name, _, (height, width)) in enumerate(CASES[:2] if quick else CASES):
            reference = Path(tmp) / f"{case}.pt"
            baseline = None
            for mode in MODES:  # fp32 first: it writes the reference output
                flags = ["--one", str(case), mode, "--reference", str(reference)]
                if threads:
                    flags += ["--threads", str(threads)]
                result = run_case(__file__, flags)
                baseline = baseline or result["ms"]
                rows.append(
                    {
                        "network": name,
                        "size": f"{width}x{height}",
                        "mode": mode,
                        "speedup": baseline / result["ms"],
                        **result,
                    }
                )
                if result["compile_s"] is not None:
                    print(f"  compile: {result['compile_s']:.1f} s", flush=True)
                print(
                    f"  {name} {width}x{height} {mode}: {result['ms']:.0f} ms, "
                    f"{result['peak_mib']:.0f} MiB",
                    flush=True,
                )
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
    parser.add_argument("--one", nargs=2, metavar=("CASE", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--reference", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(run_one(int(args.one[0]), args.one[1], args.reference)))
        return
    print(describe_machine(), flush=True)
    rows = bench_generators(args.quick, args.threads)
    print()
    table = [
        [
            r["network"],
            r["size"],
            r["mode"],
            f"{r['ms']:.1f}",
            f"{r['speedup']:.2f}x",
            f"{r['max_err']:.4f}",
            f"{r['mean_err']:.5f}",
            f"{r['peak_mib']:.0f}",
        ]
        for r in rows
    ]
    headers = [
        "network",
        "size",
        "mode",
        "ms",
        "speed-up",
        "max abs err",
        "mean abs err",
        "peak RSS MiB",
    ]
    print(markdown_table(headers, table))
    print("\nPeak RSS: each case and mode in its own process (interpreter and torch included).")
    pooling = bench_pooling()
    print(
        f"\ninstance_average_pool 1024x512, {pooling['instances']} instances, 3 channels: "
        f"{pooling['ms']:.2f} ms (target < 20 ms)"
    )


if __name__ == "__main__":
    main()
