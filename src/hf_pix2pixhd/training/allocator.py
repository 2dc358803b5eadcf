"""Keep freed tensor buffers in the process on CPU, instead of unmapping them every step."""

from __future__ import annotations

import ctypes
import sys

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def reuse_freed_cpu_memory(threshold_bytes: int = 1 << 30) -> bool:
    """Serve CPU allocations up to ``threshold_bytes`` from malloc's heap, not fresh mmaps.

    glibc gives every allocation above its mmap threshold (32 MiB at most by its own sliding
    rule) a fresh mapping and unmaps it on free, so the kernel zero-fills each page again on
    first touch. A training step frees and re-allocates the same weight- and activation-sized
    buffers every iteration: on a 2-core CPU that was 1.2 s of an 8 s pix2pixHD fp32 step
    (bench/train_step.py), mostly in weight casts and gradients. The cost is that the process
    keeps its peak memory instead of handing it back between steps.

    Process-wide. Returns True if glibc accepted the setting, False elsewhere (macOS, musl,
    Windows), where it is a no-op.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold_bytes)) and bool(
        mallopt(_M_TRIM_THRESHOLD, threshold_bytes)
    )
