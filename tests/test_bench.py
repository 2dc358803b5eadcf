"""bench/gpu_check.py in its CPU mode (tiny sizes): what CI runs so the GPU script keeps working."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from test_training import REPO

SCRIPT = REPO / "bench" / "gpu_check.py"


def _gpu_check(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def _table(stdout: str) -> list[list[str]]:
    rows = [line.strip("|").split("|") for line in stdout.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows]


@pytest.mark.slow
def test_gpu_check_runs_on_cpu_and_prints_one_table():
    """A real run of the script: one gpu-marked test, every training and inference case."""
    result = _gpu_check("--tests-k", "channels_last and no")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    header, *rows = _table(result.stdout)
    assert header == ["part", "what", "size", "mode", "result", "peak RSS MiB", "status"]
    assert "AMX" in result.stdout or "CPU:" in result.stdout.splitlines()[0]
    tests = [r for r in rows if r[0] == "tests"]
    assert len(tests) == 1 and "1 passed" in tests[0][4], tests
    train = {(r[1], r[2], r[3].split()[0]) for r in rows if r[0] == "train"}
    sizes = {"32x32", "64x32", "128x64"}
    assert train == {(c, s, m) for c in ("pix2pix", "pix2pixhd") for s in sizes
                     for m in ("fp32", "bf16", "fp16")}  # fmt: skip
    infer = {(r[1], r[2], r[3]) for r in rows if r[0] == "inference"}
    assert infer == {(n, s, m) for n in ("global G", "local G") for s in ("64x32", "128x64")
                     for m in ("fp32", "bf16", "fp16")}  # fmt: skip
    for row in rows:
        assert row[6] == "ok", row
        if row[0] != "tests":
            assert float(row[5]) > 100, row  # peak RSS of the case's process, MiB
            assert float(row[4].split()[0]) > 0, row  # images/s or ms
    assert f"{len(rows)} of {len(rows)} checks ok" in result.stdout


def test_gpu_check_exits_nonzero_when_a_test_fails():
    result = _gpu_check("--parts", "tests", "--tests-k", "no_such_test")
    assert result.returncode == 1, result.stdout[-2000:]
    assert "FAIL: pytest exit 5" in result.stdout  # pytest: no test selected
    assert "0 of 1 checks ok" in result.stdout
