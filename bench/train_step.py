"""Training-iteration speed and peak memory on CPU, fp32 vs bf16 autocast + channels_last.

    python bench/train_step.py [--iters N] [--rounds R]

Cases (batch 1, the real ``Trainer.training_step``: G forward, D loss, G loss, both backward
passes, both Adam steps):

- (a) pix2pix: U-Net 256 (BatchNorm, dropout) + PatchGAN, 256x256, cGAN + L1.
- (b) pix2pixHD: global G (36 input channels, ngf 64, 4 down, 9 blocks) + 2-scale D with
  feature matching + VGG19 perceptual loss, 512x256.

Modes: ``fp32``; ``bf16`` (Accelerate's bf16 autocast); ``bf16+CL`` (also ``--channels_last``:
NHWC inputs, weights in the default layout). All run with the Trainer's defaults, so freed
buffers stay mapped (``reuse_cpu_memory``) in every mode.

Each case/mode runs in its own process, so peak RSS is that case's. Achieved GFLOP/s counts the
FLOPs of one iteration (``torch.utils.flop_counter``) over its median time, beside the
machine's measured bf16 and fp32 matmul rates.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

CASES = {
    "pix2pix": dict(size=(256, 256), channels=3),
    "pix2pixhd": dict(size=(256, 512), channels=35),
}
MODES = ("fp32", "bf16", "bf16+CL")


def overrides(case: str, mode: str, out: str) -> list[str]:
    common = ["--data.source", out, "--output_dir", out, "--tracker", "null"]
    if mode.startswith("bf16"):
        common += ["--mixed_precision", "bf16"]
    if mode.endswith("+CL"):
        common += ["--channels_last", "true"]
    if case == "pix2pix":
        return common + ["--data.input_kind", "rgb"]
    return common + [
        "--data.input_kind", "labels", "--data.label_nc", "35", "--data.use_instance_map", "true",
        "--model.recipe", "pix2pixhd", "--model.generator", "global", "--model.norm_g",
        "instance", "--model.discriminator", "multiscale", "--model.num_d", "2",
        "--model.norm_d", "instance", "--gan_mode", "lsgan", "--vgg_weights", "random",
    ]  # fmt: skip


def synthetic_batch(case: str) -> dict:
    height, width = CASES[case]["size"]
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(1, 3, height, width, generator=generator) * 2 - 1
    if case == "pix2pix":
        return {"input": torch.rand(1, 3, height, width, generator=generator) * 2 - 1,
                "target": target, "name": ["x"]}  # fmt: skip
    labels = torch.randint(0, 35, (1, 1, height, width), generator=generator)
    return {"label": labels, "instance": labels.clone(), "target": target, "name": ["x"]}


def make_dataset(folder: Path, case: str) -> None:
    """One image in the layout the case's data config expects (the Trainer loads it)."""
    import numpy as np
    import PIL.Image

    height, width = CASES[case]["size"]
    if case == "pix2pix":
        (folder / "train").mkdir(parents=True)
        PIL.Image.new("RGB", (2 * width, height)).save(folder / "train" / "0.png")
        return
    for sub in ("train_label", "train_inst", "train_img"):
        (folder / sub).mkdir(parents=True)
    ids = np.zeros((height, width), np.uint8)
    PIL.Image.fromarray(ids).save(folder / "train_label" / "a_gtFine_labelIds.png")
    PIL.Image.fromarray(ids.astype(np.uint16)).save(
        folder / "train_inst" / "a_gtFine_instanceIds.png"
    )
    PIL.Image.new("RGB", (width, height)).save(folder / "train_img" / "a_leftImg8bit.png")


def conv_seconds(trainer, batch: dict) -> float:
    """Seconds of one step spent inside convolution kernels (forward and backward), from the
    profiler's self times: the part bf16 can speed up the most, so its fp32/bf16 ratio bounds
    what the whole step can gain."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        trainer.training_step(batch)
    return sum(e.self_cpu_time_total for e in profile.key_averages() if "conv" in e.key) / 1e6


def run_case(case: str, mode: str, iters: int, extra: list[str]) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from hf_pix2pixhd.training import Trainer, load_config

    with tempfile.TemporaryDirectory() as tmp:
        make_dataset(Path(tmp), case)
        width = CASES[case]["size"][1]
        data = ["--data.preprocess", "none", "--data.load_size", str(width),
                "--data.crop_size", str(width), "--data.flip", "false"]  # fmt: skip
        if case == "pix2pixhd":
            data += ["--data.layout", "pix2pixhd"]
        trainer = Trainer(load_config(None, overrides(case, mode, tmp) + data + extra))
        batch = synthetic_batch(case)
        trainer.training_step(batch)  # warm-up (allocations, oneDNN kernel selection)
        with FlopCounterMode(display=False) as counter:
            trainer.training_step(batch)
        flops = counter.get_total_flops()
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            trainer.training_step(batch)
            times.append(time.perf_counter() - start)
        conv = conv_seconds(trainer, batch)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"case": case, "mode": mode, "times": times, "gflop": flops / 1e9,
            "conv_s": conv, "peak_mib": peak_mib}  # fmt: skip


def matmul_rate(dtype: torch.dtype, n: int = 4096, repeats: int = 5) -> float:
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=3, help="timed iterations per process")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="processes per case and mode, interleaved so that a slow spell on a shared "
        "machine hits every mode alike; the table takes the median over all iterations",
    )
    parser.add_argument("--one", nargs=2, metavar=("CASE", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument(
        "overrides",
        nargs="*",
        help="training config overrides for every case, after --, e.g. -- --reuse_cpu_memory false",
    )
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_case(*args.one, args.iters, args.overrides)))
        return
    bf16_rate, fp32_rate = matmul_rate(torch.bfloat16), matmul_rate(torch.float32)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; matmul 4096^3: "
          f"bf16 {bf16_rate:.0f} GFLOP/s, fp32 {fp32_rate:.0f} GFLOP/s", flush=True)  # fmt: skip
    runs: dict[tuple[str, str], list[dict]] = {(c, m): [] for c in CASES for m in MODES}
    for round_ in range(args.rounds):
        for case in CASES:
            for mode in MODES:
                command = [sys.executable, __file__, "--one", case, mode, "--iters",
                           str(args.iters), "--", *args.overrides]  # fmt: skip
                result = subprocess.run(command, capture_output=True, text=True, check=True)
                run = json.loads(result.stdout.strip().splitlines()[-1])
                runs[case, mode].append(run)
                times = " ".join(f"{t:.2f}" for t in run["times"])
                print(f"  round {round_ + 1}: {case} {mode}: {times} s/iter", flush=True)
    rows = []
    for (case, mode), results in runs.items():
        seconds = statistics.median(t for r in results for t in r["times"])
        gflop = results[0]["gflop"]
        rows.append({"case": case, "mode": mode, "s_per_iter": seconds, "gflop": gflop,
                     "gflops": gflop / seconds,
                     "conv_s": statistics.median(r["conv_s"] for r in results),
                     "peak_mib": max(r["peak_mib"] for r in results)})  # fmt: skip
    print()
    print("| case | mode | s/iter | speed-up | GFLOP/iter | GFLOP/s | % of bf16 matmul "
          "| peak RSS MiB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        base = next(r for r in rows if r["case"] == row["case"] and r["mode"] == "fp32")
        print(
            f"| {row['case']} | {row['mode']} | {row['s_per_iter']:.2f} | "
            f"{base['s_per_iter'] / row['s_per_iter']:.2f}x | {row['gflop']:.0f} | "
            f"{row['gflops']:.0f} | {100 * row['gflops'] / bf16_rate:.0f}% | "
            f"{row['peak_mib']:.0f} |"
        )
    print()
    print("Where the time goes (convolution kernels from one profiled step; the rest is the "
          "median step minus that). The conv kernels' own speed-up caps the step's.")  # fmt: skip
    print()
    print("| case | mode | conv s | conv speed-up | rest s | rest speed-up |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        base = next(r for r in rows if r["case"] == row["case"] and r["mode"] == "fp32")
        rest, base_rest = row["s_per_iter"] - row["conv_s"], base["s_per_iter"] - base["conv_s"]
        print(
            f"| {row['case']} | {row['mode']} | {row['conv_s']:.2f} | "
            f"{base['conv_s'] / row['conv_s']:.2f}x | {rest:.2f} | {base_rest / rest:.2f}x |"
        )


if __name__ == "__main__":
    main()
