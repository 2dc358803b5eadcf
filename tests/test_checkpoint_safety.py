"""Checkpoint folders are as safe to open as a safetensors file, and damage is named.

One tiny pix2pix run (with an EMA of G) writes checkpoints 1-3; each test copies it and plants
a pickle or damages a file, then resumes (a real ``train_accelerate.py --resume latest`` for the
pickle, the Trainer in process for the rest) or exports (the ``hf-pix2pixhd export`` CLI).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_training import REPO, _reset_accelerate_state, make_aligned_dataset, pix2pix_overrides

from hf_pix2pixhd import cli

WEIGHTS = "translator/diffusion_pytorch_model.safetensors"


class _RunsCode:
    """A pickle that runs a shell command when it is loaded."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _config(data: Path, out: Path, *extra: str):
    from hf_pix2pixhd.training import load_config

    return load_config(None, _overrides(data, out, *extra))


def _overrides(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        *pix2pix_overrides(data, out), "--tracker", "null", "--ema_decay", "0.9",
        "--checkpoint_every", "1", "--keep_checkpoints", "5", "--max_steps", "3", *extra,
    ]  # fmt: skip


def _train(data: Path, out: Path, *extra: str) -> Path:
    from hf_pix2pixhd.training import Trainer

    _reset_accelerate_state()
    return Trainer(_config(data, out, *extra)).train()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    """(data, run folder) of a 3-step run with EMA, a checkpoint after every step."""
    root = tmp_path_factory.mktemp("ckpt")
    data = make_aligned_dataset(root / "data")
    out = root / "run"
    _train(data, out)
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == [
        f"checkpoint-{i}" for i in (1, 2, 3)
    ]
    return data, out


@pytest.fixture
def copy(trained, tmp_path):
    """A private copy of the run, to damage."""
    data, out = trained
    shutil.copytree(out, tmp_path / "run")
    return data, tmp_path / "run"


def _resume_error(data: Path, out: Path) -> str:
    from hf_pix2pixhd.training.checkpoints import CheckpointError

    with pytest.raises(CheckpointError) as caught:
        _train(data, out, "--max_steps", "4", "--resume", "latest")
    return str(caught.value)


def _export(data: Path, out: Path, target: Path, capsys, *extra: str) -> tuple[int, str]:
    code = cli.main(
        ["export", "--checkpoint", "latest", "--out", str(target), *_overrides(data, out, *extra)]
    )
    return code, capsys.readouterr().err


# -- pickles never run --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_planted_pickle_is_refused_by_a_real_resume_and_never_runs(copy, tmp_path):
    data, out = copy
    marker = tmp_path / "MARKER"
    latest = out / "checkpoints" / "checkpoint-3"
    (latest / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(_RunsCode(f"touch {marker}")))
    # Sanity: this pickle does run code when something unpickles it.
    pickle.loads((latest / "custom_checkpoint_0.pkl").read_bytes())
    assert marker.exists()
    marker.unlink()

    result = subprocess.run(
        [sys.executable, "train_accelerate.py",
         *_overrides(data, out, "--max_steps", "4", "--resume", "latest")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert result.returncode != 0
    assert not marker.exists(), "the checkpoint's pickle ran"
    message = result.stderr
    assert "custom_checkpoint_0.pkl" in message and "run arbitrary code" in message
    assert str(out / "checkpoints" / "checkpoint-2") in message  # where to go instead
    assert "Traceback" not in message
    assert not (out / "checkpoints" / "checkpoint-4").exists()


def test_an_old_accelerate_layout_is_refused_on_resume_and_exports_only_its_safetensors(
    copy, tmp_path, capsys
):
    data, out = copy
    marker = tmp_path / "MARKER"
    checkpoints = out / "checkpoints"
    for old in ("checkpoint-1", "checkpoint-2"):
        shutil.rmtree(checkpoints / old)
    latest = checkpoints / "checkpoint-3"
    # What `accelerator.save_state` wrote: model{,_1}.safetensors and pickles.
    (latest / "generator.safetensors").rename(latest / "model.safetensors")
    (latest / "discriminator.safetensors").rename(latest / "model_1.safetensors")
    for name in ("random_states_0.pkl", "optimizer.bin", "custom_checkpoint_0.pkl"):
        (latest / name).write_bytes(pickle.dumps(_RunsCode(f"touch {marker}")))
    (latest / "manifest.json").unlink()

    message = _resume_error(data, out)
    assert "earlier hf-pix2pixhd versions" in message and "run arbitrary code" in message
    assert "hf-pix2pixhd export" in message

    code, error = _export(data, out, tmp_path / "ema", capsys)
    assert code == 2 and "EMA" in error and "--ema_decay null" in error

    code, _ = _export(data, out, tmp_path / "raw", capsys, "--ema_decay", "null")
    assert code == 0
    exported = load_file(tmp_path / "raw" / WEIGHTS)
    raw = load_file(latest / "model.safetensors")
    assert exported.keys() == raw.keys() and all(torch.equal(exported[k], raw[k]) for k in raw)
    assert not marker.exists(), "a pickle of the old checkpoint ran"


# -- damaged files --------------------------------------------------------------------------------


def _empty_rng(folder: Path) -> str:
    (folder / "rng_state_0.json").write_bytes(b"")
    return "rng_state_0.json"


def _truncated_weights(folder: Path) -> str:
    file = folder / "generator.safetensors"
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    return "generator.safetensors"


def _garbage_optimizer(folder: Path) -> str:
    file = folder / "optimizer_g.safetensors"
    file.write_bytes(os.urandom(file.stat().st_size))  # same size: only the checksum knows
    return "optimizer_g.safetensors"


def _missing_weights(folder: Path) -> str:
    (folder / "generator.safetensors").unlink()
    return "generator.safetensors"


DAMAGE = [_empty_rng, _truncated_weights, _garbage_optimizer, _missing_weights]


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__.strip("_"))
def test_a_damaged_file_is_named_on_resume_and_export_with_the_previous_checkpoint(
    damage, copy, tmp_path, capsys
):
    data, out = copy
    checkpoints = out / "checkpoints"
    name = damage(checkpoints / "checkpoint-3")
    previous = str(checkpoints / "checkpoint-2")
    problem = "missing" if damage is _missing_weights else "damaged"

    message = _resume_error(data, out)
    assert f"{name} is {problem}" in message and str(checkpoints / "checkpoint-3") in message
    assert f"--resume {previous}" in message
    assert not (checkpoints / "checkpoint-4").exists()

    code, error = _export(data, out, tmp_path / "export", capsys)
    assert code == 2 and f"{name} is {problem}" in error and f"--checkpoint {previous}" in error
    assert not (tmp_path / "export").exists()


def test_an_empty_rng_file_is_an_error_even_when_the_manifest_agrees(copy):
    """Whoever rewrites the manifest too still meets the parser: nothing is skipped."""
    data, out = copy
    folder = out / "checkpoints" / "checkpoint-3"
    _empty_rng(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["rng_state_0.json"] = {"bytes": 0, "sha256": hashlib.sha256().hexdigest()}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    message = _resume_error(data, out)
    assert "rng_state_0.json is damaged (JSONDecodeError" in message
    assert str(out / "checkpoints" / "checkpoint-2") in message


def test_no_earlier_complete_checkpoint_is_said(copy):
    data, out = copy
    checkpoints = out / "checkpoints"
    _missing_weights(checkpoints / "checkpoint-1")
    _truncated_weights(checkpoints / "checkpoint-2")
    _truncated_weights(checkpoints / "checkpoint-3")
    message = _resume_error(data, out)
    assert f"no earlier complete checkpoint in {checkpoints}" in message


def test_another_config_is_told_apart_from_damage(trained, tmp_path, capsys):
    data, out = trained
    code, error = _export(data, out, tmp_path / "export", capsys, "--model.ngf", "8")
    assert code == 2 and "generator.safetensors does not fit" in error
    assert "Use the run's own config and overrides" in error


# -- EMA --------------------------------------------------------------------------------------


def test_export_uses_the_ema_weights_like_the_trainers_export(trained, tmp_path, capsys):
    data, out = trained
    code, _ = _export(data, out, tmp_path / "exported", capsys)
    assert code == 0
    own = load_file(out / "pipeline" / WEIGHTS)
    exported = load_file(tmp_path / "exported" / WEIGHTS)
    assert own.keys() == exported.keys()
    assert all(torch.equal(own[k], exported[k]) for k in own)
    # Not vacuous: the EMA weights differ from the raw weights of the last step.
    raw = load_file(out / "checkpoints" / "checkpoint-3" / "generator.safetensors")
    assert any(not torch.equal(raw[k], exported[k]) for k in raw)


def test_resuming_restores_the_ema_exactly(trained, tmp_path):
    data, out = trained
    resumed = tmp_path / "run"
    shutil.copytree(out, resumed)
    shutil.rmtree(resumed / "checkpoints" / "checkpoint-3")
    shutil.rmtree(resumed / "pipeline")
    _train(data, resumed, "--resume", "latest")
    straight = load_file(out / "pipeline" / WEIGHTS)
    again = load_file(resumed / "pipeline" / WEIGHTS)
    assert all(torch.equal(straight[k], again[k]) for k in straight)
    final = resumed / "checkpoints" / "checkpoint-3"
    state = json.loads((final / "training_state.json").read_text())
    assert state["ema"]["optimization_step"] == 3 and state["counters"]["global_step"] == 3


def test_ema_switched_on_at_a_resume_starts_from_the_resumed_weights(trained, tmp_path, capsys):
    data, _ = trained
    out = tmp_path / "run"
    _train(data, out, "--ema_decay", "null", "--max_steps", "1")
    with pytest.warns(UserWarning, match="holds no EMA of G"):
        _train(data, out, "--max_steps", "2", "--resume", "latest")
    final = out / "checkpoints" / "checkpoint-2"
    assert json.loads((final / "training_state.json").read_text())["ema"]["optimization_step"] == 1
    # The EMA's first step copies G (decay 0), up to rounding.
    ema = load_file(final / "ema_generator.safetensors")
    raw = load_file(final / "generator.safetensors")
    for key, value in ema.items():
        torch.testing.assert_close(value, raw[key])


# -- real DDP ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_process_ddp_with_accumulation_resumes_exactly(trained, tmp_path):
    """Real `accelerate launch` with 2 CPU processes, gradient accumulation 2, dropout and EMA:
    resuming from the middle of an epoch gives the weights of the uninterrupted run."""
    data, _ = trained
    out = tmp_path / "run"
    launch = [
        str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu",
        "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "train_accelerate.py",
    ]  # fmt: skip
    # 8 images / 2 processes / batch 1 / accumulation 2: 2 steps per epoch; 5 steps, 3 epochs.
    overrides = [
        *_overrides(data, out, "--max_steps", "5"), "--batch_size", "1",
        "--gradient_accumulation_steps", "2", "--keep_checkpoints", "10",
    ]  # fmt: skip
    environment = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}

    def launch_run(*extra: str) -> str:
        result = subprocess.run(
            [*launch, *overrides, *extra], cwd=REPO, env=environment, capture_output=True,
            text=True, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-4000:]
        return result.stdout

    launch_run()
    checkpoints = out / "checkpoints"
    assert sorted(int(p.name.split("-")[1]) for p in checkpoints.iterdir()) == [1, 2, 3, 4, 5]
    assert sorted(p.name for p in (checkpoints / "checkpoint-3").glob("rng_state_*.json")) == [
        "rng_state_0.json", "rng_state_1.json",
    ]  # fmt: skip
    rng = [json.loads((checkpoints / "checkpoint-3" / f"rng_state_{r}.json").read_text())
           for r in (0, 1)]  # fmt: skip
    assert rng[0]["torch"] != rng[1]["torch"]  # each process's own state
    straight = load_file(out / "pipeline" / WEIGHTS)
    for step in (4, 5):
        shutil.rmtree(checkpoints / f"checkpoint-{step}")
    shutil.rmtree(out / "pipeline")
    assert "resumed from" in launch_run("--resume", "latest")  # step 3: mid-epoch 2
    again = load_file(out / "pipeline" / WEIGHTS)
    different = [k for k in straight if not torch.equal(straight[k], again[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    # Steps 4-5 changed the (EMA) weights, so the comparison is not vacuous.
    halfway = load_file(checkpoints / "checkpoint-3" / "ema_generator.safetensors")
    assert any(not torch.equal(halfway[k], again[k]) for k in halfway)
