"""Shared test setup: offline Hub, and the optional ../shared folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# A Hub id must fail at once here instead of hanging on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the checkout; tests that need it skip cleanly without it."""
    if not SHARED.is_dir():
        pytest.skip("../shared is absent (reference fixtures and data live there)")
    return SHARED


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny-model tests: on a busy 2-core machine a second
    thread makes each tiny convolution about 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
