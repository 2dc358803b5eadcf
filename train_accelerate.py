"""Train pix2pix or pix2pixHD with Accelerate.

    accelerate launch train_accelerate.py --config configs/facades_pix2pix.yaml [--key value ...]

Any config key below can be set: ``--lr 1e-4``, ``--model.ngf 32``, ``--data.source PATH``,
``--resume latest``; a flag wins over the YAML. Precision and gradient accumulation left unset
(none) come from the launcher: ``accelerate launch --mixed_precision bf16``. On a CPU each
process uses its share of the cores unless ``--num_cpu_threads_per_process`` or OMP_NUM_THREADS
says otherwise. Two CPU processes (real DDP):

    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 train_accelerate.py ...
"""

from __future__ import annotations

from hf_pix2pixhd.training import Trainer
from hf_pix2pixhd.training.checkpoints import CheckpointError
from hf_pix2pixhd.training.config import argument_parser, parse_command_line


def main() -> None:
    config = parse_command_line(argument_parser(__doc__))
    try:
        pipeline_dir = Trainer(config).train()
    except CheckpointError as error:  # it says what is wrong and what to do: no traceback
        raise SystemExit(f"error: {error}") from None
    print(f"exported the trained pipeline to {pipeline_dir}")


if __name__ == "__main__":
    main()
