"""Inference on CPU: onnxruntime vs PyTorch fp32 and bf16, time and peak memory.

    python bench/onnx.py [--threads N] [--repeats N] [--models facades,unet256]

Models: ``facades`` (the bundled pix2pixHD global G, models/facades, 15 input channels, ngf 32)
and ``unet256`` (pix2pix's U-Net 256 at paper width, BatchNorm, random init), batch 1, at
256x256 and 1024x512 (W x H). Backends, each in a fresh process so that its peak RSS is its own:

- ``onnxruntime``: the ``hf-pix2pixhd export-onnx`` graph, fp32, CPU provider; the process
  imports numpy and onnxruntime only, no torch.
- ``torch-fp32``: eager fp32, contiguous.
- ``torch-bf16``: bf16 weights + channels_last (``Pix2PixHDPipeline.enable_fast_cpu_inference``).

Time is the median of ``--repeats`` runs after one warm-up run; peak RSS is the worker
process's VmHWM (model, runtime and buffers included). The error column is the max abs difference
from torch-fp32 on the same input (outputs in [-1, 1]).
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

import numpy as np

# Run as `python bench/onnx.py`, this file's folder comes first on sys.path, where its own name
# would shadow the `onnx` package that the exporter imports.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("onnxruntime", "torch-fp32", "torch-bf16")
SIZES = ((256, 256), (512, 1024))  # (H, W)


def build_torch_model(name: str):
    """The PyTorch network of a benchmark model (fp32, eval)."""
    import torch

    sys.path.insert(0, str(ROOT / "src"))
    from hf_pix2pixhd import UNetGenerator
    from hf_pix2pixhd.pipeline import Pix2PixHDPipeline

    if name == "facades":
        return Pix2PixHDPipeline.from_pretrained(ROOT / "models" / "facades").translator.float()
    if name == "unet256":
        torch.manual_seed(0)
        model = UNetGenerator(num_downs=8, ngf=64, norm="batch")
        for module in model.modules():  # trained-looking running statistics
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.uniform_(0.5, 2.0)
        return model.eval()
    raise SystemExit(f"unknown model {name!r}")


def sample_input(channels: int, height: int, width: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (1, channels, height, width)).astype(np.float32)


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ``ru_maxrss``: Linux carries
    ``ru_maxrss`` over fork and exec, so a worker would report its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args: argparse.Namespace) -> None:
    """Time one backend on one model and size; print a JSON line; save the output."""
    height, width = args.size
    if args.backend == "onnxruntime":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            str(args.onnx), options, providers=["CPUExecutionProvider"]
        )
        channels = session.get_inputs()[0].shape[1]
        feed = {"input": sample_input(channels, height, width)}

        def run():
            return session.run(None, feed)[0]
    else:
        import torch

        torch.set_num_threads(args.threads)
        model = build_torch_model(args.model)
        x = torch.from_numpy(sample_input(model.config.in_channels, height, width))
        if args.backend == "torch-bf16":
            model = model.to(torch.bfloat16).to(memory_format=torch.channels_last)
            x = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)

        def run():
            with torch.inference_mode():
                return model(x).float().numpy()

    run()  # warm-up
    times, output = [], None
    for _ in range(args.repeats):
        start = time.perf_counter()
        output = run()
        times.append(time.perf_counter() - start)
    np.save(args.output, output)
    peak_mb = peak_rss_mb()
    print(json.dumps({"seconds": statistics.median(times), "peak_rss_mb": peak_mb}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="facades,unet256")
    parser.add_argument("--worker", choices=BACKENDS, dest="backend", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--onnx", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.backend:
        worker(args)
        return

    import torch

    sys.path.insert(0, str(ROOT / "src"))
    from hf_pix2pixhd.onnx_export import export_translator

    print(f"torch {torch.__version__}, threads {args.threads}, median of {args.repeats}")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for name in args.models.split(","):
            onnx_path = export_translator(build_torch_model(name), scratch / f"{name}.onnx")
            for height, width in SIZES:
                outputs = {}
                for backend in BACKENDS:
                    out = scratch / f"{name}-{backend}-{height}x{width}.npy"
                    command = [sys.executable, __file__, "--worker", backend, "--model", name,
                               "--size", str(height), str(width), "--onnx", str(onnx_path),
                               "--output", str(out), "--threads", str(args.threads),
                               "--repeats", str(args.repeats)]  # fmt: skip
                    result = subprocess.run(command, capture_output=True, text=True, check=True)
                    measured = json.loads(result.stdout.strip().splitlines()[-1])
                    outputs[backend] = np.load(out)
                    rows.append((name, f"{width}x{height}", backend, measured))
                for row in rows[-len(BACKENDS) :]:
                    error = np.abs(outputs[row[2]] - outputs["torch-fp32"]).max()
                    row[3]["error"] = float(error)
    print("\n| model | size (WxH) | backend | time (s) | peak RSS (MB) | max abs err vs fp32 |")
    print("|---|---|---|---:|---:|---:|")
    for name, size, backend, m in rows:
        print(f"| {name} | {size} | {backend} | {m['seconds']:.3f} | {m['peak_rss_mb']:.0f} | "
              f"{m['error']:.1e} |")  # fmt: skip


if __name__ == "__main__":
    main()
