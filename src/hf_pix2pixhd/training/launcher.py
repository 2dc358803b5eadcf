"""What the launcher decides, and what the run logs about it at start.

Mixed precision and gradient accumulation left unset in the config come from
``accelerate launch`` (its flags or config file, passed on as ACCELERATE_* variables).

CPU threads per training process: the cores this process may use, shared among the
processes on this machine, unless the user chose a number.

``accelerate launch`` sets ``OMP_NUM_THREADS=1`` for every process when neither its
``--num_cpu_threads_per_process`` flag nor an ``OMP_NUM_THREADS`` of the user's is there
(``accelerate/commands/launch.py``): one CPU process then trains on one core. The child sees
the same ``OMP_NUM_THREADS=1`` whatever its origin, so the launcher's own command line and
environment (its ``/proc`` entries: it is our parent process) tell a default from a choice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator

from .config import TrainConfig

_FLAG = "--num_cpu_threads_per_process"


@dataclass(frozen=True)
class Threads:
    """The thread count a process uses, and why (for the log line at start)."""

    count: int
    reason: str


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. under taskset or a cgroup)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def chosen_by_user() -> str | None:
    """Where an explicit thread count came from, or None when nobody chose one.

    ``OMP_NUM_THREADS`` outside ``accelerate launch`` is the user's; under it, it is the
    user's only if the launcher got the flag or had ``OMP_NUM_THREADS`` itself.
    """
    if "OMP_NUM_THREADS" not in os.environ:
        return None
    launcher = _accelerate_launcher()
    if launcher is None:
        return "OMP_NUM_THREADS"
    argv, environment = launcher
    if any(arg == _FLAG or arg.startswith(_FLAG + "=") for arg in argv):
        return f"accelerate launch {_FLAG}"
    if "OMP_NUM_THREADS" in environment:
        return "OMP_NUM_THREADS"
    return None  # the launcher's own default


def _accelerate_launcher() -> tuple[list[str], set[str]] | None:
    """The parent's argv and environment names when it is ``accelerate launch``, else None
    (also where ``/proc`` cannot be read: the thread count then stays as it is)."""
    proc = Path("/proc") / str(os.getppid())
    try:
        argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        if not any(_is_accelerate_launch(argv, i) for i in range(len(argv))):
            return None
        environment = (proc / "environ").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    return argv, {item.split("=", 1)[0] for item in environment if item}


def _is_accelerate_launch(argv: list[str], index: int) -> bool:
    program = Path(argv[index]).name
    following = argv[index + 1] if index + 1 < len(argv) else ""
    return (program == "accelerate" and following == "launch") or program.startswith(
        "accelerate.commands.launch"
    )


def configure_threads(accelerator: Accelerator) -> Threads:
    """The CPU threads of this process: :func:`configure_cpu_threads` for a CPU run; a GPU
    run keeps what it was launched with (its CPU work is light)."""
    if accelerator.device.type != "cpu":
        return Threads(torch.get_num_threads(), f"as launched: a {accelerator.device.type} run")
    return configure_cpu_threads(local_processes(accelerator))


def configure_cpu_threads(local_processes: int) -> Threads:
    """Under ``accelerate launch``, set torch's intra-op threads to the usable cores /
    ``local_processes`` (at least 1) unless the user chose a count; returns what the process
    uses. Without a launcher and OMP_NUM_THREADS, torch's default (the cores) stays."""
    if "OMP_NUM_THREADS" not in os.environ:  # no launcher and no choice: torch's own default
        return Threads(torch.get_num_threads(), "torch's default")
    source = chosen_by_user()
    if source is not None:
        return Threads(torch.get_num_threads(), f"set by {source}")
    cores = usable_cores()
    count = max(1, cores // max(1, local_processes))
    torch.set_num_threads(count)
    return Threads(count, f"{cores} usable cores / {local_processes} local process(es)")


def local_processes(accelerator: Accelerator) -> int:
    """Processes of this run on this machine (torchrun's LOCAL_WORLD_SIZE when launched)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))


def describe_settings(accelerator: Accelerator, requested: TrainConfig, threads: Threads) -> str:
    """One line with the values in effect and where each came from (logged at start)."""

    def origin(value: object, variable: str) -> str:
        if value is not None:
            return "config"
        return "launcher" if variable in os.environ else "default"

    precision = origin(requested.mixed_precision, "ACCELERATE_MIXED_PRECISION")
    accumulation = origin(
        requested.gradient_accumulation_steps, "ACCELERATE_GRADIENT_ACCUMULATION_STEPS"
    )
    return (
        f"effective settings: device {accelerator.device}, {accelerator.num_processes} "
        f"process(es), {threads.count} CPU thread(s) per process ({threads.reason}), "
        f"mixed precision {accelerator.mixed_precision} ({precision}), "
        f"gradient accumulation {accelerator.gradient_accumulation_steps} ({accumulation})"
    )
