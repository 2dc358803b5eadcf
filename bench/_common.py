"""Helpers shared by the benchmarks: which machine ran them, peak memory, one case per process.

Peak memory is measured per case in a fresh process, so cases do not inherit each other's
high-water mark: on CPU the child's peak resident set (``ru_maxrss``: it includes the Python
interpreter and torch, about 0.3-0.4 GiB), on GPU ``torch.cuda.max_memory_allocated`` (tensors
only: no CUDA context, no allocator cache).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "scripts"))

from bundle_model import describe_cpu  # noqa: E402  (the model cards name the CPU this way)


def describe_machine(device: torch.device | str = "cpu") -> str:
    """e.g. "CPU: 2 cores of an Intel(R) Xeon(R) Processor (AMX), 2 torch threads" or
    "GPU: NVIDIA H100 80GB HBM3 (sm_90, 79 GiB), torch 2.x, CUDA 12.x"."""
    device = torch.device(device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return (
            f"GPU: {props.name} (sm_{props.major}{props.minor}, "
            f"{props.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, "
            f"CUDA {torch.version.cuda}"
        )
    cpu = describe_cpu().removesuffix(", bf16 autocast")
    return f"{cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def memory_column(device: torch.device | str = "cpu") -> str:
    """The heading of the peak-memory column for ``device``."""
    return "max allocated MiB" if torch.device(device).type == "cuda" else "peak RSS MiB"


def reset_peak_memory(device: torch.device | str = "cpu") -> None:
    """Start a GPU case's high-water mark afresh (a CPU process's peak RSS cannot be reset:
    run each case in its own process, :func:`run_case`)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device | str = "cpu") -> float:
    """This process's peak memory so far, in MiB (see the module docstring for what counts)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, else KiB


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work, so a timer measures it (no-op on CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(script: str | Path, arguments: list[str], timeout: float | None = None) -> dict:
    """Run ``python script ARGUMENTS`` in a fresh process; return the JSON object its last
    stdout line holds. A failing case raises with the end of its stderr."""
    command = [sys.executable, str(script), *arguments]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env={**os.environ}
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise RuntimeError(
            f"{' '.join(command[1:])} failed (exit {result.returncode}):\n{result.stderr[-4000:]}"
        )
    return json.loads(lines[-1])


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    """A Markdown table; floats are printed as given (format them before)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
