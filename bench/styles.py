"""Styles on CPU: encoding + K-means for the facades training set, and the per-image style
overhead at inference.

    python bench/styles.py [--limit N] [--threads N] [--num-workers N] [--modes fp32 bf16]

1. Encoding: the 400 facades training pairs at 256x256 (colour label maps through the facades
   palette, 12 classes, no instance maps, so each connected region of a class is an instance)
   through a paper-size :class:`FeatureEncoder` (nef 16, 4 downsamplings, 3 features; untrained:
   only the time matters), in fp32 and under bf16 autocast, then K-means (10 clusters) per
   class. The encoding time includes reading and decoding the images (about 60-75 ms of it per
   image here: JPEG decode and palette snapping of the colour label maps). Target: < 60 s.
2. Inference overhead: the same pipeline with a paper-size global G (12 + 3 input channels,
   ngf 64, 4 downsamplings, 9 blocks) at 256x256, batch 1, eager fp32. "no style" passes a
   ready feature map (``features=``); the style cases resolve and paint a style first (and
   "style_image" runs the encoder on the reference photo). Cases are timed in interleaved
   rounds; the overhead is per output image against "no style". Target: < 10%.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import describe_machine, peak_memory_mib

from hf_pix2pixhd import FeatureEncoder, GlobalGenerator
from hf_pix2pixhd.data import DataConfig, build_dataset
from hf_pix2pixhd.labels import FACADES_PALETTE
from hf_pix2pixhd.pipeline import Pix2PixHDPipeline
from hf_pix2pixhd.styles import cluster_styles, encode_dataset, paint_features

FACADES = Path(__file__).resolve().parents[2] / "shared" / "data" / "facades"


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median seconds over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=FACADES, help="facades (aligned) folder")
    parser.add_argument("--limit", type=int, default=400, help="images to encode")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--num-workers", type=int, default=0, help="data loading workers")
    parser.add_argument("--batch-size", type=int, default=8, help="images per encoder pass")
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["fp32", "bf16"],
        choices=["fp32", "bf16"],
        help="encoder precisions to time (bf16: autocast)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per inference case")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{describe_machine()}, {args.num_workers} data workers")

    config = DataConfig(
        source=str(args.data),
        direction="BtoA",
        input_kind="labels",
        label_nc=12,
        palette="facades",
        preprocess="resize",
        load_size=256,
        crop_size=256,
        flip=False,
        max_samples=args.limit,
    )
    dataset = build_dataset(config)
    torch.manual_seed(0)
    encoder = FeatureEncoder().eval()  # paper size: nef 16, 4 down, 3 features

    rows = []
    for mode in args.modes:
        start = time.perf_counter()
        found = encode_dataset(
            encoder,
            dataset,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            autocast_dtype=torch.bfloat16 if mode == "bf16" else None,
            progress=False,
        )
        encode_s = time.perf_counter() - start
        start = time.perf_counter()
        bank = cluster_styles(found, num_classes=12, n_clusters=10)
        kmeans_s = time.perf_counter() - start
        peak = peak_memory_mib()  # this process's so far: fp32 first, so bf16's row holds both
        rows.append((mode, len(found), int(bank.num_clusters.sum()), encode_s, kmeans_s, peak))
        print(f"  encoder {mode}: encode {encode_s:.1f} s, K-means {kmeans_s:.1f} s", flush=True)
    print(
        "\n| encoder | images | instances | clusters | encode s | K-means s | total s "
        "| peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for mode, found, clusters, encode_s, kmeans_s, peak in rows:
        total = encode_s + kmeans_s
        verdict = "met" if total < 60 else "MISSED"
        print(
            f"| {mode} | {len(dataset)} | {found} | {clusters} | {encode_s:.1f} "
            f"({encode_s / len(dataset) * 1000:.0f} ms/img) | {kmeans_s:.1f} | "
            f"**{total:.1f}** (target < 60: {verdict}) | {peak:.0f} |"
        )

    torch.manual_seed(0)
    translator = GlobalGenerator(in_channels=12 + 3)  # paper size: ngf 64, 4 down, 9 blocks
    pipe = Pix2PixHDPipeline(
        translator,
        encoder=encoder,
        style_bank=bank,
        input_kind="labels",
        label_nc=12,
        palette=FACADES_PALETTE,
        feature_nc=3,
    )
    item = dataset[0]
    ids = item["label"][0]
    photo = item["target"]
    features = torch.zeros(1, 3, *ids.shape)
    choice = {"facade": int(bank.num_clusters[1]) - 1, "window": int(bank.num_clusters[2]) - 1}

    def call(**kwargs: object) -> Callable[[], object]:
        return lambda: pipe(ids, output_type="pt", **kwargs)

    cases = [  # (name, output images per call, call)
        ("no style (features=)", 1, call(features=features)),
        ("style={class: cluster}", 1, call(style=choice)),
        ("style='random', seed", 1, call(style="random", seed=1)),
        ("style_image=(photo, labels)", 1, call(style_image=(photo, ids))),
        ("style='random', num_styles=4", 4, call(style="random", num_styles=4, seed=1)),
    ]
    # Interleaved rounds: the machine's load drifts alike for every case.
    times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for round_index in range(args.repeats + 1):
        for name, count, run in cases:
            start = time.perf_counter()
            run()
            if round_index:  # round 0 warms up
                times[name].append((time.perf_counter() - start) / count)
    base = statistics.median(times[cases[0][0]])
    print("\n| inference, 256x256, fp32, batch 1 | ms per image | style overhead |")
    print("|---|---|---|")
    for index, (name, _, _) in enumerate(cases):
        seconds = statistics.median(times[name])
        overhead = f"{(seconds - base) / base * 100:+.1f}%" if index else "(baseline)"
        print(f"| {name} | {seconds * 1000:.0f} | {overhead} |")
    # The style work alone, without the generator: what the overhead is made of.
    table = pipe.style_tables(style="random", seed=1)
    resolve = timed(lambda: pipe.style_tables(style=choice), 50, warmup=3)
    paint = timed(lambda: paint_features(table, ids), 50, warmup=3)
    reference = timed(lambda: pipe.style_tables(style_image=(photo, ids)), args.repeats)
    print(
        f"\npeak RSS of the process (interpreter, torch, dataset, encoder and all cases above): "
        f"{peak_memory_mib():.0f} MiB; the encoding rows give the peak after each mode"
    )
    print(
        f"\nstyle work alone: resolve a style dict {resolve * 1000:.2f} ms, paint 256x256 "
        f"{paint * 1000:.2f} ms, encode a reference photo {reference * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
