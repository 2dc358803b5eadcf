"""Baseline: answer each held-out facades label map with the training photo whose label map is
nearest (one-hot L1, i.e. the fraction of differing pixels), scored like a model.

    python scripts/nearest_neighbour_baseline.py [--out eval/nearest]

Uses the same held-out split as the bundled facades model (10% of ../shared/data/facades/train
by file-name hash), 256x256, and the same metrics (`hf_pix2pixhd.evaluation`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from hf_pix2pixhd.data import DataConfig, build_dataset
from hf_pix2pixhd.evaluation import evaluate_image_sets


def load(subset: str) -> tuple[torch.Tensor, torch.Tensor]:
    config = DataConfig(
        source="../shared/data/facades", direction="BtoA", input_kind="labels", label_nc=12,
        palette="facades", preprocess="resize", load_size=256, crop_size=256, flip=False,
        holdout_fraction=0.1, subset=subset,
    )  # fmt: skip
    dataset = build_dataset(config)
    items = [dataset[i] for i in range(len(dataset))]
    labels = torch.stack([item["label"][0] for item in items])  # (N, H, W)
    photos = torch.stack([item["target"] for item in items])  # (N, 3, H, W) in [-1, 1]
    return labels, photos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("eval/nearest"))
    parser.add_argument("--lpips-weights", default="../shared/weights")
    args = parser.parse_args()
    train_labels, train_photos = load("train")
    test_labels, test_photos = load("holdout")
    flat_train = train_labels.flatten(1)
    nearest = [
        int((flat_train != query.flatten()).float().mean(1).argmin()) for query in test_labels
    ]
    report = evaluate_image_sets(
        test_photos, train_photos[nearest], lpips_weights=args.lpips_weights
    )
    report["baseline"] = "nearest training photo by label-map L1"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(report["metrics"], indent=2))


if __name__ == "__main__":
    main()
