"""The GPU path of training: fp16 with one loss scale for two optimizers, bf16 and fp16 steps,
channels_last, torch.compile, exact resume, and the encoder + fix-global epochs under DDP.

Marked ``gpu``: ``python bench/gpu_check.py`` runs them on a GPU machine (``pytest -m gpu``).
Without CUDA they run on the CPU at tiny sizes where that shows something, and skip, saying
why, where only a GPU can.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from accelerate import Accelerator
from test_training import (
    REPO,
    _reset_accelerate_state,
    hd_overrides,
    make_aligned_dataset,
    make_hd_dataset,
    pix2pix_overrides,
)

from hf_pix2pixhd.pipeline import Pix2PixHDPipeline
from hf_pix2pixhd.training import Trainer, load_config, loop

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("one_thread")]  # tiny nets on CPU
CUDA = torch.cuda.is_available()


@pytest.fixture
def exact(monkeypatch):
    """Bit-reproducible GPU runs: deterministic kernels, and fp32 convolutions in fp32 (not
    TF32, which cuDNN uses by default on Ampere and later). No-op on CPU."""
    if not CUDA:
        yield
        return
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(False)


def _trainer(overrides: list[str]) -> Trainer:
    _reset_accelerate_state()
    return Trainer(load_config(None, [*overrides, "--tracker", "null"]))


def _first_batch(trainer: Trainer) -> dict:
    return next(iter(trainer.loader))  # prepared: on the trainer's device, seeded order


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _changed(before: dict, after: dict, prefix: str = "", exclude: str | None = None) -> bool:
    keys = [k for k in before if k.startswith(prefix) and not (exclude and k.startswith(exclude))]
    assert keys, f"no parameters under {prefix!r}"
    return any(not torch.equal(before[k], after[k]) for k in keys)


# -- fp16: one loss scale for both optimizers ----------------------------------------------


class _CpuFp16Accelerator(Accelerator):
    """Accelerate switches fp16 off on a CPU (no autocast, no loss scaler), while torch has
    both there: switched on by hand, the Trainer's fp16 path runs on CPU as on a GPU."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.device.type == "cpu" and self.mixed_precision == "fp16":
            self.native_amp = True
            self.scaler = torch.amp.GradScaler("cpu")


@pytest.fixture
def fp16(monkeypatch):
    """Real fp16 (autocast + GradScaler) on the device: Accelerate's own on CUDA."""
    if not CUDA:
        monkeypatch.setattr(loop, "Accelerator", _CpuFp16Accelerator)


def _start_low(trainer: Trainer) -> None:
    """Accelerate's initial loss scale (2**16) overflows the first steps of these tiny nets
    (those steps are skipped): start at 2**8."""
    scaler = trainer.accelerator.scaler
    if scaler is not None:
        scaler.scale(torch.ones((), device=trainer.accelerator.device))  # creates the scale
        scaler.update(new_scale=2.0**8)


def _g_after_d_overflow(tmp_path, name: str, overflow: bool) -> tuple[dict, float]:
    """Two fp16 steps; in the second, D's gradients overflow if ``overflow``. Returns G's
    weights and the loss scale after it."""
    data = tmp_path / "data"
    if not data.exists():
        make_aligned_dataset(data)
    overrides = pix2pix_overrides(data, tmp_path / name)
    trainer = _trainer([*overrides, "--mixed_precision", "fp16", "--model.use_dropout", "false"])
    scaler = trainer.accelerator.scaler
    assert scaler is not None and scaler.is_enabled()
    _start_low(trainer)
    batch = _first_batch(trainer)
    trainer.training_step(batch)
    assert scaler.get_scale() == 2.0**8, "the clean step overflowed"
    handle = None
    if overflow:
        weight = next(trainer.discriminator.parameters())
        handle = weight.register_hook(lambda grad: torch.full_like(grad, float("inf")))
    trainer.training_step(batch)
    if handle is not None:
        handle.remove()
    return _weights(trainer._unwrap(trainer.generator)), scaler.get_scale()


def test_fp16_d_overflow_skips_d_and_leaves_g_step_as_it_was(tmp_path, fp16, exact, monkeypatch):
    """D's overflow must skip D's step and halve the scale, and must not change G's step.

    Accelerate's prepared optimizers each update the shared scaler after their own step; with
    D stepped first, G's gradients were unscaled by the halved scale (twice too large). The
    same comparison with that per-optimizer path shows it, so this test can fail."""
    clean, clean_scale = _g_after_d_overflow(tmp_path, "clean", overflow=False)
    overflowed, scale = _g_after_d_overflow(tmp_path, "overflow", overflow=True)
    assert scale == clean_scale / 2, (scale, clean_scale)
    differing = [k for k in clean if not torch.equal(clean[k], overflowed[k])]
    assert not differing, f"G's step changed with D's overflow: {differing[:3]}"

    def per_optimizer(accelerator, *optimizers):  # Accelerate's own: update after each
        for optimizer in optimizers:
            optimizer.step()

    monkeypatch.setattr(loop, "step_optimizers", per_optimizer)
    trapped, _ = _g_after_d_overflow(tmp_path, "trapped", overflow=True)
    assert any(not torch.equal(clean[k], trapped[k]) for k in clean)


# -- bf16 and fp16 steps of the pix2pixHD recipe ---------------------------------------------


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_steps_train_g_d_and_encoder(tmp_path, fp16, precision):
    trainer = _trainer(
        [
            *hd_overrides(make_hd_dataset(tmp_path / "data"), tmp_path / "run"),
            "--mixed_precision",
            precision,
        ]
    )
    nets = {"G": trainer.generator, "D": trainer.discriminator, "E": trainer.encoder}
    before = {k: _weights(trainer._unwrap(v)) for k, v in nets.items()}
    _start_low(trainer)
    batch = _first_batch(trainer)
    for _ in range(2):
        logs = trainer.training_step(batch)
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values()), logs
    assert {"G", "D", "G_VGG", "G_GAN_Feat"} <= set(logs)
    for name, net in nets.items():
        assert _changed(before[name], _weights(trainer._unwrap(net))), f"{name} did not train"
    device = trainer.accelerator.device.type
    with trainer.accelerator.autocast():
        assert torch.is_autocast_enabled(device)
        assert (
            torch.get_autocast_dtype(device)
            == {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        )


# -- channels_last ------------------------------------------------------------------------


@pytest.mark.parametrize(("precision", "rtol"), [("no", 1e-4), ("bf16", 3e-2)])
def test_channels_last_step_computes_the_same_losses(tmp_path, exact, precision, rtol):
    data = make_hd_dataset(tmp_path / "data")
    logs = {}
    for layout in ("false", "true"):
        overrides = hd_overrides(data, tmp_path / layout)
        trainer = _trainer([*overrides, "--mixed_precision", precision, "--channels_last", layout])
        logs[layout] = trainer.training_step(_first_batch(trainer))
    for key, value in logs["false"].items():
        assert logs["true"][key] == pytest.approx(value, rel=rtol, abs=1e-5), key


# -- torch.compile (Accelerate's dynamo backend) --------------------------------------------


def _local_overrides(data, out) -> list[str]:
    return [
        *hd_overrides(data, out),
        "--model.generator",
        "local",
        "--model.n_blocks_local",
        "1",
        "--model.niter_fix_global",
        "1",
    ]


@pytest.mark.skipif(not CUDA, reason="compiling G, D and E for training takes minutes on CPU")
def test_compiled_training_matches_eager_fixes_the_trunk_and_exports(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # compare fp32 with fp32
    data = make_hd_dataset(tmp_path / "data")
    eager = _trainer(_local_overrides(data, tmp_path / "eager"))
    eager_logs = eager.training_step(_first_batch(eager))
    monkeypatch.setenv("ACCELERATE_DYNAMO_BACKEND", "inductor")
    trainer = _trainer(_local_overrides(data, tmp_path / "compiled"))
    assert trainer.generator is not trainer._unwrap(trainer.generator)  # really compiled
    generator = trainer._unwrap(trainer.generator)
    before = _weights(generator)
    batch = _first_batch(trainer)
    logs = trainer.training_step(batch)
    trainer.training_step(batch)
    for key, value in eager_logs.items():
        assert logs[key] == pytest.approx(value, rel=1e-3, abs=1e-4), key
    after = _weights(generator)
    assert not _changed(before, after, "model."), "the trunk trained in a fix-global epoch"
    assert _changed(before, after, exclude="model.")
    pipe = Pix2PixHDPipeline.from_pretrained(trainer.export(tmp_path / "pipeline"))
    assert type(pipe.translator).__name__ == "LocalEnhancerGenerator"


# -- exact resume -------------------------------------------------------------------------


@pytest.mark.skipif(
    not CUDA, reason="on CPU: tests/test_training.py::test_exact_resume_gives_identical_weights"
)
def test_exact_resume_on_the_gpu(tmp_path, exact):
    data = make_aligned_dataset(tmp_path / "data")
    runs = {}
    for name, steps in (("straight", 6), ("resumed", 3), ("resumed", 6)):
        extra = ["--max_steps", str(steps)]
        if name == "resumed" and steps == 6:
            extra += ["--resume", "latest"]
        trainer = _trainer([*pix2pix_overrides(data, tmp_path / name), *extra])
        assert trainer.accelerator.device.type == "cuda"
        trainer.train()
        runs[name, steps] = _weights(trainer._unwrap(trainer.generator))
    straight, resumed = runs["straight", 6], runs["resumed", 6]
    assert not [k for k in straight if not torch.equal(straight[k], resumed[k])]
    assert _changed(runs["resumed", 3], resumed)


# -- DDP: encoder and fix-global epochs, one process per GPU --------------------------------

DDP_DRIVER = textwrap.dedent(
    """
    import json, os, sys, torch
    from hf_pix2pixhd.training import Trainer, load_config

    trainer = Trainer(load_config(None, sys.argv[2:]))
    assert trainer.accelerator.num_processes == int(os.environ["WORLD_SIZE"])
    nets = (trainer.generator, trainer.discriminator, trainer.encoder)
    generator, encoder = trainer._unwrap(trainer.generator), trainer._unwrap(trainer.encoder)

    def snapshot():
        named = [*generator.named_parameters(), *(("E." + k, v) for k, v in
                 encoder.named_parameters())]
        return {k: v.detach().cpu().clone() for k, v in named}

    start, epochs, end_epoch = snapshot(), [], trainer._end_epoch

    def changed(now, keep):
        return any(not torch.equal(now[k], start[k]) for k in now if keep(k))

    def record(logs):
        end_epoch(logs)
        now = snapshot()
        epochs.append({
            "trunk": changed(now, lambda k: k.startswith("model.")),
            "enhancer": changed(now, lambda k: k.startswith("model1_")),
            "encoder": changed(now, lambda k: k.startswith("E.")),
        })

    trainer._end_epoch = record
    trainer.train()
    if trainer.accelerator.is_main_process:
        result = {"wrapped": [type(n).__name__ for n in nets], "epochs": epochs,
                  "device": trainer.accelerator.device.type}
        open(sys.argv[1], "w").write(json.dumps(result))
    """
)


@pytest.mark.slow
def test_ddp_trains_the_encoder_and_fixes_the_global_trunk_for_its_epochs(tmp_path):
    """A real DDP run under torchrun, one process per GPU (one CPU process with gloo without
    CUDA): every network wrapped in DDP, the encoder trained, the local enhancer's global
    trunk frozen for ``niter_fix_global`` epochs and trained after."""
    processes = torch.cuda.device_count() if CUDA else 1
    data = make_hd_dataset(tmp_path / "data", count=2 * processes)
    driver, result = tmp_path / "driver.py", tmp_path / "result.json"
    driver.write_text(DDP_DRIVER)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if not CUDA:
        env |= {"ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(processes),
        str(driver),
        str(result),
        *_local_overrides(data, tmp_path / "run"),
        "--tracker",
        "null",
        "--checkpoint_every",
        "100",
    ]
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-6000:]
    outcome = json.loads(result.read_text())
    assert outcome["device"] == ("cuda" if CUDA else "cpu")
    assert outcome["wrapped"] == ["DistributedDataParallel"] * 3
    first, second = outcome["epochs"]
    assert first == {"trunk": False, "enhancer": True, "encoder": True}, first
    assert second["trunk"], "the trunk never trained after the fix-global epochs"
