"""Train pix2pix or pix2pixHD with Accelerate.

    accelerate launch train_accelerate.py --config configs/facades_pix2pix.yaml [--key value ...]

Any config key can be overridden: ``--lr 1e-4``, ``--model.ngf 32``, ``--data.source PATH``,
``--resume latest``. Two CPU processes (real DDP):

    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 train_accelerate.py ...
"""

from __future__ import annotations

import argparse

from hf_pix2pixhd.training import Trainer, load_config
from hf_pix2pixhd.training.checkpoints import CheckpointError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML preset, e.g. configs/facades_pix2pix.yaml")
    args, overrides = parser.parse_known_args()
    config = load_config(args.config, overrides)
    try:
        pipeline_dir = Trainer(config).train()
    except CheckpointError as error:  # it says what is wrong and what to do: no traceback
        raise SystemExit(f"error: {error}") from None
    print(f"exported the trained pipeline to {pipeline_dir}")


if __name__ == "__main__":
    main()
