"""The GPU path in one run: the gpu-marked tests, training throughput, inference latency.

    python bench/gpu_check.py                # a CUDA machine: paper-size networks (< 8 min)
    python bench/gpu_check.py --device cpu   # the same code on CPU, tiny networks and sizes

1. ``pytest -m gpu tests/test_gpu.py``: fp16 with one loss scale for both optimizers, bf16
   and fp16 steps, channels_last, torch.compile (Accelerate's dynamo backend), exact resume,
   and the encoder + the local enhancer's fix-global epochs under DDP (torchrun, one process
   per GPU).
2. Training images/s, batch 1 (``Trainer.training_step`` on synthetic batches: G, D, both
   losses, both backward passes, both Adam steps): pix2pix (U-Net 256 + PatchGAN) and
   pix2pixHD (global G + 2-scale D + VGG19) at 256x256, 512x256 and 1024x512, in fp32, bf16
   and fp16 (Accelerate's autocast; fp16 with its loss scaler).
3. Inference latency, batch 1: the pix2pixHD global G (ngf 64) and local enhancer G (ngf 32,
   global trunk 64) at 1024x512 and 2048x1024, weights in fp32, bf16 and fp16.

Without CUDA (or with ``--device cpu``) the same steps run at tiny sizes with narrow networks,
so CI keeps the script working; there Accelerate runs fp16 as fp32 (it turns fp16 off on CPU).
Memory column: ``torch.cuda.max_memory_allocated`` per case on GPU; on CPU the peak RSS of the
process running the part (training or inference; a row holds the peak of its own and the
cases above it in the table). Prints one table; exits 1 if a test or a case failed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    REPO,
    describe_machine,
    markdown_table,
    memory_column,
    peak_memory_mib,
    reset_peak_memory,
    run_case,
    synchronize,
)

MODES = ("fp32", "bf16", "fp16")
# (height, width) and network overrides per scale; "tiny" keeps each network's structure.
SCALES = {
    "full": {
        "train_sizes": [(256, 256), (256, 512), (512, 1024)],
        "infer_sizes": [(512, 1024), (1024, 2048)],
        "pix2pix": [],
        "pix2pixhd": [],
        "global": {"ngf": 64, "n_downsampling": 4, "n_blocks": 9},
        "local": {"ngf": 32, "n_downsampling_global": 4, "n_blocks_global": 9},
        "warmup": 3,
        "repeats": 5,
    },
    "tiny": {
        "train_sizes": [(32, 32), (32, 64), (64, 128)],
        "infer_sizes": [(32, 64), (64, 128)],
        "pix2pix": ["--model.num_downs", "5", "--model.ngf", "8", "--model.ndf", "8"],
        "pix2pixhd": [
            "--model.ngf",
            "8",
            "--model.n_downsampling",
            "2",
            "--model.n_blocks",
            "1",
            "--model.ndf",
            "8",
        ],
        "global": {"ngf": 8, "n_downsampling": 2, "n_blocks": 1},
        "local": {"ngf": 4, "n_downsampling_global": 2, "n_blocks_global": 1, "n_blocks_local": 1},
        "warmup": 1,
        "repeats": 1,
    },
}


def _size(size: tuple[int, int]) -> str:
    return f"{size[1]}x{size[0]}"


def _failure(error: BaseException) -> str:
    return f"FAIL: {type(error).__name__}: {str(error).splitlines()[0][:120] if str(error) else ''}"


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _timed(step, warmup: int, repeats: int, device: torch.device) -> float:
    """Median seconds of ``step()`` after ``warmup`` calls (GPU work included)."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def train_rows(recipe: str, device: torch.device, scale: dict) -> list[dict]:
    """Images/s of one training step per size and mode, in this process."""
    from accelerate.state import AcceleratorState, GradientState
    from train_step import make_dataset, overrides, synthetic_batch

    from hf_pix2pixhd.training import Trainer, load_config

    rows = []
    for size in scale["train_sizes"]:
        for mode in MODES:
            row = {"part": "train", "what": recipe, "size": _size(size), "mode": mode}
            if mode == "fp16" and device.type == "cpu":
                row["mode"] = "fp16 (fp32 on CPU)"
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    make_dataset(Path(tmp), recipe, size)
                    AcceleratorState._reset_state(True)  # a new mixed precision per case
                    GradientState._reset_state()
                    config = overrides(recipe, mode, tmp, 1, size) + scale[recipe]
                    trainer = Trainer(load_config(None, config))
                    assert trainer.accelerator.device.type == device.type, "wrong device"
                    batch = {
                        k: v.to(device) if torch.is_tensor(v) else v
                        for k, v in synthetic_batch(recipe, 1, size).items()
                    }
                    reset_peak_memory(device)
                    seconds = _timed(
                        lambda trainer=trainer, batch=batch: trainer.training_step(batch),
                        scale["warmup"],
                        scale["repeats"],
                        device,
                    )
                    row |= {
                        "result": f"{1 / seconds:.2f} images/s ({seconds * 1000:.0f} ms)",
                        "memory": peak_memory_mib(device),
                        "status": "ok",
                    }
                    del trainer, batch
            except Exception as error:  # a failed case (e.g. out of memory) is reported
                row |= {"result": "-", "memory": None, "status": _failure(error)}
            _release(device)
            rows.append(row)
            print(f"  {row}", file=sys.stderr, flush=True)
    return rows


def infer_rows(network: str, device: torch.device, scale: dict) -> list[dict]:
    """Latency of one forward pass per size and weight dtype, in this process."""
    from hf_pix2pixhd import GlobalGenerator, LocalEnhancerGenerator

    torch.manual_seed(0)
    if network == "global":
        model = GlobalGenerator(in_channels=36, **scale["global"])
    else:
        model = LocalEnhancerGenerator(in_channels=36, **scale["local"])
    model = model.eval()
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    rows = []
    for size in scale["infer_sizes"]:
        for mode in MODES:
            row = {"part": "inference", "what": f"{network} G", "size": _size(size), "mode": mode}
            try:
                net = model.to(device, dtypes[mode])
                ids = torch.randint(0, 35, (1, *size), device=device)
                x = torch.zeros(1, 36, *size, device=device, dtype=dtypes[mode])
                x.scatter_(1, ids.unsqueeze(1), 1.0)  # a one-hot label map, as in real use
                reset_peak_memory(device)
                with torch.inference_mode():
                    seconds = _timed(
                        lambda net=net, x=x: net(x), scale["warmup"], scale["repeats"], device
                    )
                row |= {
                    "result": f"{seconds * 1000:.1f} ms",
                    "memory": peak_memory_mib(device),
                    "status": "ok",
                }
                del x
            except Exception as error:
                row |= {"result": "-", "memory": None, "status": _failure(error)}
            _release(device)
            rows.append(row)
            print(f"  {row}", file=sys.stderr, flush=True)
    model.to("cpu", torch.float32)
    return rows


def run_tests(device: torch.device, select: str | None) -> dict:
    """``pytest -m gpu tests/test_gpu.py``; its summary line and whether it passed."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-m",
        "gpu",
        "-rs",
        "-p",
        "no:cacheprovider",
        "tests/test_gpu.py",
    ]
    if select:
        command += ["-k", select]
    env = {**os.environ, "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}  # deterministic cuBLAS (resume)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    lines = [ln for ln in result.stdout.strip().splitlines() if ln.strip()]
    summary = lines[-1].strip("= ") if lines else "no output"
    if result.returncode != 0:
        print(result.stdout[-8000:], result.stderr[-3000:], sep="\n", file=sys.stderr)
    return {
        "part": "tests",
        "what": "pytest -m gpu" + (f" -k {select!r}" if select else ""),
        "size": "-",
        "mode": "-",
        "result": f"{summary} ({time.perf_counter() - start:.0f} s)",
        "memory": None,
        "status": "ok" if result.returncode == 0 else f"FAIL: pytest exit {result.returncode}",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--scale", choices=list(SCALES), help="default: full on cuda, tiny on cpu")
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["tests", "train", "infer"],
        choices=["tests", "train", "infer"],
    )
    parser.add_argument("--tests-k", help="pytest -k expression (default: every gpu test)")
    parser.add_argument("--one", choices=["train", "infer"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device(args.device)
    scale_name = args.scale or ("full" if device.type == "cuda" else "tiny")
    scale = SCALES[scale_name]
    if args.one:  # one process per part: its own peak RSS on CPU, one import of torch
        part = args.one
        if part == "train":
            rows = [*train_rows("pix2pix", device, scale), *train_rows("pix2pixhd", device, scale)]
        else:
            rows = [*infer_rows("global", device, scale), *infer_rows("local", device, scale)]
        print(json.dumps(rows))
        return 0
    if device.type == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # Accelerate would pick a GPU it sees
    print(f"{describe_machine(device)}; {scale_name} sizes", flush=True)
    rows = []
    if "tests" in args.parts:
        rows.append(run_tests(device, args.tests_k))
        print(f"  {rows[-1]}", flush=True)
    for part in ("train", "infer"):
        if part not in args.parts:
            continue
        flags = ["--one", part, "--device", device.type, "--scale", scale_name]
        try:
            rows += run_case(__file__, flags, timeout=600)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            rows.append(
                {
                    "part": part,
                    "what": "-",
                    "size": "-",
                    "mode": "-",
                    "result": "-",
                    "memory": None,
                    "status": _failure(error),
                }
            )
        print(f"  {part}: done", flush=True)
    table = [
        [
            r["part"],
            r["what"],
            r["size"],
            r["mode"],
            r["result"],
            "-" if r["memory"] is None else f"{r['memory']:.0f}",
            r["status"],
        ]
        for r in rows
    ]
    print()
    headers = ["part", "what", "size", "mode", "result", memory_column(device), "status"]
    print(markdown_table(headers, table))
    failed = [
        " ".join(r[k] for k in ("part", "what", "size", "mode"))
        for r in rows
        if r["status"] != "ok"
    ]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} checks ok")
    if failed:
        print("FAILED: " + "; ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
