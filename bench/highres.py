"""Peak memory and time of the pix2pixHD local enhancer at high resolution, tiled and untiled.

    nice -n 10 python bench/highres.py [--sizes 1024x512,2048x1024,4096x2048] [--threads 1]
        [--tile-size 64] [--untiled-cap-mib 4096]

The official Cityscapes 1024p generator (``netG local``: ngf 32, a global trunk of ngf 64 with 4
downsamplings and 9 blocks, 1 enhancer with 3 blocks; 35 labels + the instance boundary = 36
input channels), random weights (memory and time do not depend on them), fp32, through
``Pix2PixHDPipeline`` with a random label map and instance map: what a user runs. Each case runs
in a fresh subprocess, which reports its peak RSS (``VmHWM``), the RSS after building the
pipeline (imports + 698 MiB of weights), and the seconds of the call. The max abs difference
is against the untiled output of the same size, in [-1, 1] units. An untiled case whose peak,
extrapolated linearly in pixels from the previous untiled size, exceeds ``--untiled-cap-mib``
is skipped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _vm(key: str) -> int:
    """A ``/proc/self/status`` memory figure in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) // 1024
    raise RuntimeError(f"{key} not in /proc/self/status (Linux only)")


def run_case(width: int, height: int, tiled: bool, tile_size: int, threads: int, out: str):
    """One measurement (in its own process): prints a JSON line, saves the output to ``out``."""
    import torch

    sys.path.insert(0, str(ROOT / "src"))
    from hf_pix2pixhd.models import LocalEnhancerGenerator
    from hf_pix2pixhd.pipeline import Pix2PixHDPipeline

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    generator = LocalEnhancerGenerator(in_channels=36, ngf=32, n_downsampling_global=4,
                                       n_blocks_global=9, n_local_enhancers=1,
                                       n_blocks_local=3)  # fmt: skip
    pipe = Pix2PixHDPipeline(generator, input_kind="labels", label_nc=35, use_instance_map=True)
    if tiled:
        pipe.enable_tiling(tile_size=tile_size)
    else:
        pipe.disable_tiling()
    rng = np.random.default_rng(0)
    # Blocky maps (16 px cells), in the dtypes of Cityscapes' PNGs (8-bit labelIds, 32-bit
    # instanceIds).
    cells = (height // 16, width // 16)
    labels = np.kron(rng.integers(0, 35, cells), np.ones((16, 16))).astype(np.uint8)
    instances = np.kron(rng.integers(0, 200, cells), np.ones((16, 16))).astype(np.int32)
    built = _vm("VmRSS")
    start = time.perf_counter()
    image = pipe(labels, instances, output_type="np").images[0]
    seconds = time.perf_counter() - start
    np.save(out, image.astype(np.float32))
    print(json.dumps({"peak_mib": _vm("VmHWM"), "built_mib": built, "seconds": seconds}))


def measure(width: int, height: int, tiled: bool, args: argparse.Namespace, out: str) -> dict:
    command = [sys.executable, __file__, "--case", f"{width}x{height}", "--tile-size",
               str(args.tile_size), "--threads", str(args.threads), "--out", out]  # fmt: skip
    if tiled:
        command.append("--tiled")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"case {width}x{height} tiled={tiled} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024x512,2048x1024,4096x2048")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tile-size", type=int, default=64)
    parser.add_argument("--untiled-cap-mib", type=int, default=4096)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--tiled", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        width, height = map(int, args.case.split("x"))
        run_case(width, height, args.tiled, args.tile_size, args.threads, args.out)
        return

    print(f"pix2pixHD local enhancer (Cityscapes 1024p config), fp32, {args.threads} thread(s), "
          f"tile {args.tile_size}, untiled cap {args.untiled_cap_mib} MiB")  # fmt: skip
    header = f"{'size':>10} {'mode':>8} {'peak RSS MiB':>13} {'after build':>12} {'seconds':>8}"
    print(header + f" {'max abs diff':>13}")
    last_untiled: tuple[int, int] | None = None  # (pixels, peak above the build)
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            width, height = map(int, size.split("x"))
            pixels = width * height
            reference = None
            for tiled in (False, True):
                mode = "tiled" if tiled else "untiled"
                if not tiled and last_untiled is not None:
                    estimate = last_untiled[1] * pixels / last_untiled[0]
                    if estimate + 1100 > args.untiled_cap_mib:
                        print(f"{size:>10} {mode:>8}   skipped: ~{estimate + 1100:.0f} MiB "
                              f"expected (> cap {args.untiled_cap_mib})", flush=True)  # fmt: skip
                        continue
                out = str(Path(tmp) / f"{size}-{mode}.npy")
                result = measure(width, height, tiled, args, out)
                diff = "-"
                if tiled and reference is not None:
                    # outputs are in [0, 1]: twice the difference in [-1, 1] units
                    diff = f"{2 * float(np.abs(np.load(out) - reference).max()):.2e}"
                if not tiled:
                    reference = np.load(out)
                    last_untiled = (pixels, result["peak_mib"] - result["built_mib"])
                print(f"{size:>10} {mode:>8} {result['peak_mib']:>13} {result['built_mib']:>12} "
                      f"{result['seconds']:>8.1f} {diff:>13}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
