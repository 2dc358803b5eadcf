"""App latency under load: a real Gradio server, gradio_client requests at 256x256 on CPU.

    python bench/app_load.py [--model DIR] [--requests 32] [--concurrency 16]

Serves a bundled model (default: models/facades; without it, a random model of the same
architecture: latency does not depend on the weights), then measures single-request latency
(sequential) and latency with ``--concurrency`` requests in flight, reporting p50 / p95 and the
error count. Target: p50 single-request latency under 0.5 s.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import PIL.Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def demo_sized_model(folder: Path) -> Path:
    """A random-weight stand-in with the bundled facades model's architecture."""
    import torch

    from hf_pix2pixhd import FeatureEncoder, GlobalGenerator
    from hf_pix2pixhd.labels import FACADES_PALETTE
    from hf_pix2pixhd.pipeline import Pix2PixHDPipeline
    from hf_pix2pixhd.styles import StyleBank

    torch.manual_seed(0)
    bank = StyleBank(num_classes=12, feature_nc=3)
    bank.num_clusters.fill_(10)
    pipe = Pix2PixHDPipeline(
        GlobalGenerator(in_channels=15, ngf=32, n_downsampling=3, n_blocks=6),
        encoder=FeatureEncoder(),
        style_bank=bank,
        input_kind="labels",
        label_nc=12,
        palette=FACADES_PALETTE,
        feature_nc=3,
    )
    pipe.save_pretrained(folder)
    return folder


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "models" / "facades"))
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    from gradio_client import Client, handle_file

    from hf_pix2pixhd.app import create_demo
    from hf_pix2pixhd.labels import FACADES_PALETTE

    tmp = Path(tempfile.mkdtemp())
    model = Path(args.model)
    if not (model / "model_index.json").is_file():
        print(f"{model} has no pipeline: using a random model of the demo architecture")
        model = demo_sized_model(tmp / "facades")
    ids = np.random.default_rng(0).integers(0, 12, (8, 8)).repeat(32, 0).repeat(32, 1)
    label_map = tmp / "labels.png"
    PIL.Image.fromarray(FACADES_PALETTE.ids_to_colors(ids)).save(label_map)

    demo = create_demo([str(model)])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    editor = {
        "background": handle_file(str(label_map)),
        "layers": [],
        "composite": handle_file(str(label_map)),
    }
    name = model.name

    def request(seed: int) -> float:
        start = time.perf_counter()
        client.predict(name, editor, "random", "", seed, None, api_name="/generate")
        return time.perf_counter() - start

    for seed in range(3):  # warm-up
        request(seed)
    sequential = [request(seed) for seed in range(args.requests)]
    errors = 0
    concurrent: list[float] = []
    start = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        for future in [pool.submit(request, seed) for seed in range(args.requests)]:
            try:
                concurrent.append(future.result())
            except Exception:
                errors += 1
    wall = time.perf_counter() - start
    demo.close()
    print(f"\nmodel: {model}, 256x256 label map, style 'random'")
    print("| load | requests | errors | p50 s | p95 s | throughput req/s |")
    print("|---|---|---|---|---|---|")
    print(
        f"| sequential | {len(sequential)} | 0 | {statistics.median(sequential):.3f} | "
        f"{percentile(sequential, 95):.3f} | {len(sequential) / sum(sequential):.1f} |"
    )
    print(
        f"| {args.concurrency} concurrent | {args.requests} | {errors} | "
        f"{statistics.median(concurrent):.3f} | {percentile(concurrent, 95):.3f} | "
        f"{len(concurrent) / wall:.1f} |"
    )


if __name__ == "__main__":
    main()
