"""Training: real 2-process DDP, exact resume, crash-safe checkpoints, gradient accumulation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from safetensors.torch import load_file

from hf_pix2pixhd.pipeline import Pix2PixHDPipeline

REPO = Path(__file__).resolve().parents[1]
ACCELERATE = Path(sys.executable).parent / "accelerate"
PALETTE = [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]


def _photo(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random colour field (something a tiny G can start to learn)."""
    coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return np.asarray(PIL.Image.fromarray(coarse).resize((size, size), PIL.Image.BICUBIC))


def make_aligned_dataset(root: Path, count: int = 8, size: int = 64) -> Path:
    """pix2pix AB folder: photo on the left, its colour label rendering on the right."""
    rng = np.random.default_rng(0)
    (root / "train").mkdir(parents=True)
    for i in range(count):
        photo = _photo(rng, size)
        ids = rng.integers(0, 4, (4, 4)).repeat(size // 4, 0).repeat(size // 4, 1)
        labels = np.asarray(PALETTE, dtype=np.uint8)[ids]
        PIL.Image.fromarray(np.concatenate([photo, labels], 1)).save(root / "train" / f"{i}.png")
    return root


def make_hd_dataset(root: Path, count: int = 6, size: int = 64) -> Path:
    """pix2pixHD layout: 8-bit label ids, 16-bit instance ids, photos."""
    rng = np.random.default_rng(1)
    for folder in ("train_label", "train_inst", "train_img"):
        (root / folder).mkdir(parents=True)
    for i in range(count):
        ids = rng.integers(0, 4, (4, 4)).repeat(size // 4, 0).repeat(size // 4, 1)
        instances = (ids * 1000 + (np.arange(size)[None, :] >= size // 2)).astype(np.uint16)
        stem = f"city_{i:06d}"
        PIL.Image.fromarray(ids.astype(np.uint8)).save(
            root / "train_label" / f"{stem}_gtFine_labelIds.png"
        )
        PIL.Image.fromarray(instances).save(root / "train_inst" / f"{stem}_gtFine_instanceIds.png")
        PIL.Image.fromarray(_photo(rng, size)).save(root / "train_img" / f"{stem}_leftImg8bit.png")
    return root


def pix2pix_overrides(data: Path, out: Path) -> list[str]:
    return [
        "--data.source", str(data), "--data.direction", "BtoA", "--data.input_kind", "rgb",
        "--data.preprocess", "resize", "--data.load_size", "64", "--data.crop_size", "64",
        "--model.recipe", "pix2pix", "--model.generator", "unet", "--model.num_downs", "6",
        "--model.ngf", "4", "--model.norm_g", "instance", "--model.use_dropout", "true",
        "--model.ndf", "4", "--model.norm_d", "instance",
        "--n_epochs", "1", "--n_epochs_decay", "2", "--batch_size", "2", "--log_every", "1",
        "--num_samples", "2", "--output_dir", str(out), "--checkpoint_every", "100",
    ]  # fmt: skip


def hd_overrides(data: Path, out: Path) -> list[str]:
    return [
        "--data.source", str(data), "--data.layout", "pix2pixhd", "--data.input_kind", "labels",
        "--data.label_nc", "4", "--data.use_instance_map", "true", "--data.preprocess", "resize",
        "--data.load_size", "64", "--data.crop_size", "64",
        "--model.recipe", "pix2pixhd", "--model.generator", "global", "--model.ngf", "4",
        "--model.n_downsampling", "2", "--model.n_blocks", "1", "--model.norm_g", "instance",
        "--model.discriminator", "multiscale", "--model.ndf", "4", "--model.num_d", "2",
        "--model.norm_d", "instance", "--model.use_encoder", "true", "--model.nef", "4",
        "--model.n_downsampling_e", "2", "--gan_mode", "lsgan", "--vgg_weights", "random",
        "--n_epochs", "1", "--n_epochs_decay", "1", "--batch_size", "1", "--log_every", "1",
        "--num_samples", "2", "--output_dir", str(out), "--checkpoint_every", "2",
        "--keep_checkpoints", "2",
    ]  # fmt: skip


def run(command: list[str], timeout: int = 300, **env: str | None) -> subprocess.CompletedProcess:
    """Run ``command`` in the repo with ``env`` added (a None value removes the variable)."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **env}
    environment = {key: value for key, value in environment.items() if value is not None}
    result = subprocess.run(
        command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{command[:4]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        )
    return result


@pytest.mark.slow
def test_two_process_ddp_run_on_cpu(tmp_path):
    """Real `accelerate launch` with 2 CPU processes: pix2pixHD with instance maps + encoder."""
    data = make_hd_dataset(tmp_path / "data")
    out = tmp_path / "run"
    result = run(
        [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "train_accelerate.py",
         *hd_overrides(data, out)],
        ACCELERATE_USE_CPU="true", OMP_NUM_THREADS=None,  # the launcher's default threads
    )  # fmt: skip
    assert "exported the trained pipeline" in result.stdout
    # The launcher's OMP_NUM_THREADS=1 is replaced by a share of the cores, never more.
    cores = len(os.sched_getaffinity(0))
    share = f"{max(1, cores // 2)} CPU thread(s) per process ({cores} usable cores / 2 local"
    assert share in result.stdout, result.stdout[-2000:]
    # 6 images / 2 processes / batch 1 = 3 steps per epoch, 2 epochs.
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert checkpoints == ["checkpoint-4", "checkpoint-6"], checkpoints  # last 2 kept
    assert sorted(p.name for p in (out / "samples").glob("*.png")) == [
        "epoch_0001.png",
        "epoch_0002.png",
    ]
    grid = PIL.Image.open(out / "samples" / "epoch_0002.png")
    assert grid.size == (3 * 64, 2 * 64)  # input | output | target, 2 rows
    assert list(out.rglob("events.out.tfevents.*")), "no TensorBoard event file"
    pipe = Pix2PixHDPipeline.from_pretrained(out / "pipeline")
    assert pipe.encoder is not None and pipe.config.use_instance_map
    assert (out / "pipeline" / "README.md").read_text().count("pix2pixHD") >= 1
    ids = np.zeros((64, 64), dtype=np.int64)
    features = torch.zeros(1, 3, 64, 64)
    assert pipe(ids, features=features).images[0].size == (64, 64)


@pytest.mark.slow
def test_exact_resume_gives_identical_weights(tmp_path):
    data = make_aligned_dataset(tmp_path / "data")
    script = [sys.executable, "train_accelerate.py"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    # 8 images, batch 2: 4 steps per epoch; 6 steps cross an epoch end (schedule, samples).
    run([*script, *pix2pix_overrides(data, straight), "--max_steps", "6"])
    run([*script, *pix2pix_overrides(data, resumed), "--max_steps", "3"])
    assert (resumed / "checkpoints" / "checkpoint-3").is_dir()
    result = run([*script, *pix2pix_overrides(data, resumed), "--max_steps", "6",
                  "--resume", "latest"])  # fmt: skip
    assert "resumed from" in result.stdout
    weights = "translator/diffusion_pytorch_model.safetensors"
    a = load_file(straight / "pipeline" / weights)
    b = load_file(resumed / "pipeline" / weights)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    # Steps 4-6 really changed the weights, so the comparison is not vacuous.
    halfway = load_file(resumed / "checkpoints" / "checkpoint-3" / "generator.safetensors")
    assert any(not torch.equal(halfway[k], a[k]) for k in a)
    config = json.loads((straight / "pipeline" / "training_config.json").read_text())
    assert config["max_steps"] == 6
    # `hf-pix2pixhd export` rebuilds the same pipeline from the final checkpoint.
    run([sys.executable, "-m", "hf_pix2pixhd.cli", "export", "--checkpoint", "latest",
         "--out", str(tmp_path / "exported"), *pix2pix_overrides(data, straight)])  # fmt: skip
    exported = load_file(tmp_path / "exported" / weights)
    assert all(torch.equal(exported[k], a[k]) for k in a)
    assert (tmp_path / "exported" / "README.md").is_file()


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time, torch
    from accelerate import Accelerator
    from hf_pix2pixhd.training.checkpoint_state import TrainingParts, write_training_state
    from hf_pix2pixhd.training.checkpoints import save_checkpoint
    from hf_pix2pixhd.training.loop import TrainerState

    folder, marker = sys.argv[1], sys.argv[2]
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(4, 4)
    parts = TrainingParts({"generator": model}, {}, {}, TrainerState())

    def write(path):
        write_training_state(path, accelerator, parts)

    def slow_write(path):
        write(path)  # the new state is on disk, not yet published
        open(marker, "w").close()
        time.sleep(600)

    save_checkpoint(accelerator, folder, step=1, keep=3, write=write)
    with torch.no_grad():
        model.weight.add_(1.0)
    # keep=1 would delete checkpoint-1
    save_checkpoint(accelerator, folder, step=2, keep=1, write=slow_write)
    """
)


def test_kill_9_during_a_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    from accelerate import Accelerator

    from hf_pix2pixhd.training.checkpoint_state import TrainingParts, read_training_state
    from hf_pix2pixhd.training.checkpoints import list_checkpoints, open_checkpoint, resolve_resume
    from hf_pix2pixhd.training.loop import TrainerState

    script = tmp_path / "saver.py"
    script.write_text(KILL_SCRIPT)
    folder, marker = tmp_path / "checkpoints", tmp_path / "mid-save"
    process = subprocess.Popen([sys.executable, str(script), str(folder), str(marker)], cwd=REPO)
    try:
        deadline = time.time() + 120
        while not marker.exists():
            assert process.poll() is None, "the saver died before reaching the save"
            assert time.time() < deadline, "the saver never reached the second save"
            time.sleep(0.1)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert [p.name for p in list_checkpoints(folder)] == ["checkpoint-1"]
    latest = open_checkpoint(resolve_resume("latest", folder))  # complete: manifest and sizes
    model = torch.nn.Linear(4, 4)
    saved = load_file(latest.path / "generator.safetensors")
    assert not torch.equal(model.weight.detach(), saved["weight"])
    parts = TrainingParts({"generator": model}, {}, {}, TrainerState())
    read_training_state(latest, Accelerator(cpu=True), parts)
    assert torch.equal(model.weight.detach(), saved["weight"])


# -- gradient accumulation -------------------------------------------------------------


def _reset_accelerate_state() -> None:
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def _trainer(data: Path, out: Path, batch_size: int, accumulation: int, *extra: str):
    from hf_pix2pixhd.training import Trainer, load_config

    _reset_accelerate_state()
    overrides = pix2pix_overrides(data, out) + [
        "--model.use_dropout", "false", "--batch_size", str(batch_size),
        "--gradient_accumulation_steps", str(accumulation), "--tracker", "null",
        "--lr", "0.01", *extra,
    ]  # fmt: skip
    return Trainer(load_config(None, overrides))


def _record_grads(trainer) -> dict[str, dict[str, torch.Tensor]]:
    """Capture every gradient as the inner optimizers step."""
    records: dict[str, dict[str, torch.Tensor]] = {}
    for name, wrapped, model in (("G", trainer.opt_g, trainer.generator),
                                 ("D", trainer.opt_d, trainer.discriminator)):  # fmt: skip
        inner = wrapped.optimizer
        original = inner.step

        def step(*args, _name=name, _model=model, _original=original, **kwargs):
            records[_name] = {
                k: p.grad.detach().clone()
                for k, p in _model.named_parameters()
                if p.grad is not None
            }
            return _original(*args, **kwargs)

        inner.step = step
    return records


def test_gradient_accumulation_matches_the_larger_batch_and_d_gets_no_g_gradient(tmp_path):
    from hf_pix2pixhd.data import collate_pairs

    data = make_aligned_dataset(tmp_path / "data")
    # Accelerate's state is a process-wide singleton: one trainer at a time.
    big = _trainer(data, tmp_path / "a", batch_size=4, accumulation=1)
    initial_g = {k: v.clone() for k, v in big.generator.state_dict().items()}
    initial_d = {k: v.clone() for k, v in big.discriminator.state_dict().items()}
    items = [big.dataset[i] for i in range(4)]
    batch = collate_pairs(items)
    big_grads = _record_grads(big)
    big.training_step(batch)
    big_after = {k: v.clone() for k, v in big.generator.state_dict().items()}

    small = _trainer(data, tmp_path / "b", batch_size=2, accumulation=2)
    small.generator.load_state_dict(initial_g)
    small.discriminator.load_state_dict(initial_d)
    small_grads = _record_grads(small)
    small.training_step(collate_pairs(items[:2]))
    assert not small_grads, "the optimizers stepped after the first micro-batch"
    small.training_step(collate_pairs(items[2:]))
    for name in ("G", "D"):
        assert big_grads[name].keys() == small_grads[name].keys() and big_grads[name]
        for key, grad in big_grads[name].items():
            torch.testing.assert_close(small_grads[name][key], grad, rtol=1e-4, atol=1e-6)
    # The same Adam update, wherever the gradient is above float noise. Conv biases just before
    # an InstanceNorm have a true gradient of 0; Adam's first step turns their ~1e-10 noise into
    # +-lr, so those entries say nothing about accumulation.
    small_after = small.generator.state_dict()
    compared = 0
    for key, grad in big_grads["G"].items():
        mask = grad.abs() > 1e-6
        compared += int(mask.sum())
        torch.testing.assert_close(
            small_after[key][mask], big_after[key][mask], rtol=1e-4, atol=1e-6
        )
    # (about 3/4 of the entries of this tiny random-init G; the gradients above are all compared)
    assert compared > 0.5 * sum(g.numel() for g in big_grads["G"].values())

    # D's gradient is exactly that of the D loss alone: nothing leaked in from the G loss.
    _reset_accelerate_state()
    reference = _trainer(data, tmp_path / "c", batch_size=4, accumulation=1)
    reference.generator.load_state_dict(small.generator.state_dict())  # any common weights
    reference.discriminator.load_state_dict(small.discriminator.state_dict())
    from hf_pix2pixhd.training.networks import prepare_batch

    inputs = prepare_batch(batch, reference.config)
    with torch.no_grad():
        fake = reference.generator(inputs.generator_input)
    loss_d, _, _ = reference.objective.discriminator_loss(
        reference.discriminator, inputs.condition, inputs.real, fake
    )
    loss_d.backward()
    expected = {k: p.grad.clone() for k, p in reference.discriminator.named_parameters()}
    recorded = _record_grads(reference)
    reference.discriminator.zero_grad(set_to_none=True)
    reference.training_step(batch)
    for key, grad in expected.items():
        torch.testing.assert_close(recorded["D"][key], grad, rtol=1e-5, atol=1e-7)


def test_l1_only_ablation_trains_g_and_leaves_d_untouched(tmp_path):
    from hf_pix2pixhd.data import collate_pairs

    data = make_aligned_dataset(tmp_path / "data")
    trainer = _trainer(data, tmp_path / "a", 2, 1, "--lambda_gan", "0", "--tracker", "none")
    assert trainer.config.tracker is None  # "none" reads as no tracker
    g_before = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    d_before = {k: v.clone() for k, v in trainer.discriminator.state_dict().items()}
    logs = trainer.training_step(collate_pairs([trainer.dataset[i] for i in range(2)]))
    assert "D" not in logs and "G_GAN" not in logs and logs["G"] == logs["G_L1"] > 0
    d_after = trainer.discriminator.state_dict()
    assert all(torch.equal(d_before[k], d_after[k]) for k in d_before)
    g_after = trainer.generator.state_dict()
    assert any(not torch.equal(g_before[k], g_after[k]) for k in g_before)


def test_channels_last_feeds_nhwc_activations_and_keeps_weights_and_grads_contiguous(tmp_path):
    """``--channels_last`` gives the same gradients, with NHWC inputs into the networks but
    weights (and so gradients and Adam state) in the default layout: converting the weights
    costs a strided copy of each in backward and in the fused Adam step."""
    from hf_pix2pixhd.data import collate_pairs

    data = make_aligned_dataset(tmp_path / "data")
    plain = _trainer(data, tmp_path / "a", 2, 1)
    batch = collate_pairs([plain.dataset[i] for i in range(2)])
    initial_g = {k: v.clone() for k, v in plain.generator.state_dict().items()}
    initial_d = {k: v.clone() for k, v in plain.discriminator.state_dict().items()}
    plain_grads = _record_grads(plain)
    plain.training_step(batch)

    fast = _trainer(data, tmp_path / "b", 2, 1, "--channels_last", "true")
    fast.generator.load_state_dict(initial_g)
    fast.discriminator.load_state_dict(initial_d)
    layouts = []
    for net in (fast.generator, fast.discriminator):
        first_conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
        first_conv.register_forward_pre_hook(
            lambda _m, args: layouts.append(
                args[0].is_contiguous(memory_format=torch.channels_last)
            )
        )
    transposed_layouts = []
    for module in fast.generator.modules():
        if isinstance(module, torch.nn.ConvTranspose2d):
            module.register_forward_pre_hook(
                lambda _m, args: transposed_layouts.append(args[0].is_contiguous())
            )
    fast_grads = _record_grads(fast)
    fast.training_step(batch)
    # G once, D three times (fake for D, real for D, fake for G), every input NHWC; the
    # U-Net's transposed convs take NCHW (see feed_channels_last).
    assert layouts == [True] * 4, layouts
    assert transposed_layouts and all(transposed_layouts), transposed_layouts
    for name in ("G", "D"):
        assert fast_grads[name].keys() == plain_grads[name].keys() and fast_grads[name]
        for key, grad in fast_grads[name].items():
            assert grad.is_contiguous(), f"{name} {key}: gradient is not contiguous"
            torch.testing.assert_close(grad, plain_grads[name][key], rtol=1e-4, atol=1e-6)
    for net in (fast.generator, fast.discriminator):
        assert all(p.is_contiguous() for p in net.parameters())


def test_reusing_freed_cpu_memory_stops_the_page_faults_of_repeated_large_allocations():
    script = textwrap.dedent(
        """
        import resource, sys, torch
        from hf_pix2pixhd.training.allocator import reuse_freed_cpu_memory
        if sys.argv[1] == "reuse":
            assert reuse_freed_cpu_memory()
        def faults():
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        x = torch.ones(16 << 20); del x  # 64 MiB, like a pix2pixHD weight's gradient
        before = faults()
        for _ in range(20):
            x = torch.ones(16 << 20); del x
        print(faults() - before)
        """
    )
    faults = {
        mode: int(run([sys.executable, "-c", script, mode]).stdout.split()[-1])
        for mode in ("default", "reuse")
    }
    assert faults["reuse"] * 4 < faults["default"], faults
