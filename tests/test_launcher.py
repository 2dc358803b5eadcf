"""The launcher and the options, as users meet them: real `accelerate launch` runs, typed
`--key value` flags and `--help`, fine-tuning with `--init_from`, and the trackers."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import struct
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_training import (
    ACCELERATE,
    _reset_accelerate_state,
    hd_overrides,
    make_aligned_dataset,
    make_hd_dataset,
    pix2pix_overrides,
    run,
)

from hf_pix2pixhd.training import Trainer, load_config
from hf_pix2pixhd.training.config import OFFICIAL_NAMES, TrainConfig, argument_parser
from hf_pix2pixhd.training.options import ConfigError, options

LAUNCH = [str(ACCELERATE), "launch", "--num_processes", "1", "--num_machines", "1",
          "--dynamo_backend", "no"]  # fmt: skip
SETTINGS = re.compile(r"effective settings: .*")


def _settings(stdout: str) -> str:
    match = SETTINGS.search(stdout)
    assert match, f"no settings line in:\n{stdout[-2000:]}"
    return match.group(0)


def _launch_overrides(data: Path, out: Path) -> list[str]:
    """The tiny pix2pix run: 8 images of 64², batch 2, one optimizer step, no tracker."""
    return [*pix2pix_overrides(data, out), "--max_steps", "1", "--tracker", "none"]


# -- options: typed values, hints, --help ----------------------------------------------------


def test_overrides_are_parsed_by_the_field_type(tmp_path):
    config = load_config(None, [
        "--data.source", str(tmp_path), "--lr", "1e-4", "--n_epochs", "3",
        "--model.use_dropout", "false", "--data.flip", "--max_steps", "none",
        "--ema_decay", "0.99", "--data.input_kind", "labels", "--data.label_nc", "2",
        "--data.palette", "[[0, 0, 0], [255, 0, 0]]", "--tracker", "none", "hub_model_id=a/b",
    ])  # fmt: skip
    assert config.lr == 1e-4 and isinstance(config.lr, float)
    assert config.n_epochs == 3 and config.max_steps is None and config.ema_decay == 0.99
    assert config.model.use_dropout is False and config.data.flip is True
    assert config.data.palette == [[0, 0, 0], [255, 0, 0]] and config.tracker is None
    assert config.hub_model_id == "a/b" and config.mixed_precision is None
    # YAML 1.1 reads `1e-4` as a string: the field's type decides here too; a flag wins.
    preset = tmp_path / "preset.yaml"
    preset.write_text(f"data: {{source: {tmp_path}}}\nlr: 1e-4\nbeta1: 0.4\nmodel: {{ngf: 8}}\n")
    config = load_config(preset, ["--beta1", "0.3"])
    assert (config.lr, config.beta1, config.model.ngf) == (1e-4, 0.3, 8)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lr", "abc"], "--lr: expected a float, got 'abc'"),
        (["--n_epochs", "1.5"], "--n_epochs: expected an int, got '1.5'"),
        (["--model.use_dropout", "maybe"], "--model.use_dropout: expected a bool"),
        (["--data.max_samples", "all"], "--data.max_samples: expected int | None, got 'all'"),
        (["--model", "3"], "--model is a section"),
        (["--batchsize", "2"], "Did you mean --batch_size"),
        (["--model.ngff", "2"], "Did you mean --model.ngf"),
        (["--ngf", "2"], "Did you mean --model.ngf"),
    ],
)
def test_bad_overrides_name_the_key_and_the_fix(tmp_path, flags, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, ["--data.source", str(tmp_path), *flags])


def test_a_yaml_value_of_the_wrong_type_names_the_key_and_the_file(tmp_path):
    preset = tmp_path / "preset.yaml"
    preset.write_text(f"data: {{source: {tmp_path}}}\nmixed_precision: no\n")
    with pytest.raises(ConfigError, match=r"preset\.yaml: mixed_precision: expected a str.*quote"):
        load_config(preset)


@pytest.mark.parametrize("name", ["label_nc", "no_instance", "netG", "niter", "niter_decay",
                                  "continue_train", "load_pretrain", "which_epoch", "loadSize",
                                  "fineSize", "no_flip", "fp16", "batchSize"])  # fmt: skip
def test_official_option_names_point_to_ours(tmp_path, name):
    with pytest.raises(ConfigError, match="official pix2pix / pix2pixHD name: did you mean") as e:
        load_config(None, ["--data.source", str(tmp_path), f"--{name}", "1"])
    ours = re.findall(r"--[\w.]+", OFFICIAL_NAMES[name])
    known = {f"--{option.key}" for option in options(TrainConfig)}
    assert ours and all(flag in known for flag in ours), ours  # the hint names real keys
    assert all(flag in str(e.value) for flag in ours)


def test_help_lists_every_key_with_its_type_default_and_description():
    text = " ".join(argument_parser("train").format_help().split())
    every = options(TrainConfig)
    assert len(every) > 60
    for option in every:
        assert option.help, f"{option.key} has no help text"
        assert f"--{option.key} " in text
    assert "--lr FLOAT Adam learning rate of G and D (default: 0.0002)" in text
    # DataConfig documents itself in its docstring: the first sentence of its Args entry
    assert '--data.label_nc INT number of classes for "labels" inputs; ids must be in' in text
    assert "--mixed_precision STR | NONE" in text and "--model.use_dropout [BOOL]" in text


@pytest.mark.slow
def test_train_script_rejects_bad_flags_with_a_usage_error(tmp_path):
    result = __import__("subprocess").run(
        [sys.executable, "train_accelerate.py", "--data.source", str(tmp_path), "--niter", "5"],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "error: Unknown option --niter" in result.stderr and "--n_epochs" in result.stderr
    assert "Traceback" not in result.stderr


# -- threads ---------------------------------------------------------------------------------


def test_threads_outside_a_launcher_stay_as_the_user_or_torch_set_them(monkeypatch):
    from hf_pix2pixhd.training.launcher import configure_cpu_threads

    threads = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    kept = configure_cpu_threads(local_processes=1)
    assert (kept.count, kept.reason) == (threads, "torch's default")
    # pytest's parent is no `accelerate launch`: OMP_NUM_THREADS is the user's, kept.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    kept = configure_cpu_threads(local_processes=1)
    assert (kept.count, kept.reason) == (threads, "set by OMP_NUM_THREADS")
    assert torch.get_num_threads() == threads


# -- real `accelerate launch` runs -----------------------------------------------------------


@pytest.mark.slow
def test_accelerate_launch_flags_decide_unless_the_config_sets_them(tmp_path):
    """`accelerate launch --mixed_precision bf16` trains in bf16 (the convolutions really run
    in bf16), with gradient accumulation from ACCELERATE_GRADIENT_ACCUMULATION_STEPS (what
    the launcher exports under DeepSpeed) and, on this CPU, all usable cores; a YAML that
    sets precision and accumulation wins over both, and --num_cpu_threads_per_process over
    the thread default."""
    data = make_aligned_dataset(tmp_path / "data")
    cores = len(os.sched_getaffinity(0))
    # no OMP_NUM_THREADS of ours (tests run with 1): the launcher's default threads
    env = {"ACCELERATE_GRADIENT_ACCUMULATION_STEPS": "2", "OMP_NUM_THREADS": None}
    launcher = run([*LAUNCH, "--mixed_precision", "bf16", "train_accelerate.py",
                    *_launch_overrides(data, tmp_path / "a")], **env)  # fmt: skip
    line = _settings(launcher.stdout)
    assert (
        "mixed precision bf16 (launcher)" in line and "gradient accumulation 2 (launcher)" in line
    )
    assert f"{cores} CPU thread(s) per process ({cores} usable cores / 1 local" in line, line
    assert "the generator's convolutions compute in torch.bfloat16" in launcher.stdout
    recorded = json.loads((tmp_path / "a" / "pipeline" / "training_config.json").read_text())
    assert (recorded["mixed_precision"], recorded["gradient_accumulation_steps"]) == ("bf16", 2)

    preset = tmp_path / "preset.yaml"
    preset.write_text(yaml.safe_dump({"mixed_precision": "no", "gradient_accumulation_steps": 1}))
    config = run([*LAUNCH, "--mixed_precision", "bf16", "--num_cpu_threads_per_process", "1",
                  "train_accelerate.py", "--config", str(preset),
                  *_launch_overrides(data, tmp_path / "b")], **env)  # fmt: skip
    line = _settings(config.stdout)
    assert "mixed precision no (config)" in line and "gradient accumulation 1 (config)" in line
    assert "1 CPU thread(s) per process (set by accelerate launch --num_cpu_threads" in line
    assert "the generator's convolutions compute in torch.float32" in config.stdout


# -- fine-tuning -----------------------------------------------------------------------------


def _hd_config(data: Path, out: Path, *extra: str):
    return load_config(None, [*hd_overrides(data, out), "--tracker", "none", *extra])


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k].to(a[k].dtype)) for k in a)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A tiny pix2pixHD run with an encoder: its checkpoint and its pipeline."""
    root = tmp_path_factory.mktemp("base")
    data = make_hd_dataset(root / "data")
    _reset_accelerate_state()
    trainer = Trainer(_hd_config(data, root / "run", "--max_steps", "0"))  # random weights
    pipeline = trainer.train()
    return data, root / "run", pipeline


@pytest.mark.usefixtures("one_thread")
def test_init_from_a_pipeline_folder_a_hub_id_and_a_checkpoint(base_run, tmp_path, monkeypatch):
    import huggingface_hub.constants

    data, run_dir, pipeline = base_run
    translator = load_file(pipeline / "translator" / "diffusion_pytorch_model.safetensors")
    encoder = load_file(pipeline / "encoder" / "diffusion_pytorch_model.safetensors")

    _reset_accelerate_state()
    tuned = Trainer(_hd_config(data, tmp_path / "a", "--init_from", str(pipeline)))
    assert _same(translator, _weights(tuned.generator)) and _same(encoder, _weights(tuned.encoder))
    card = tuned.export(tmp_path / "a" / "pipeline") / "README.md"
    assert "base_model" not in card.read_text().split("---")[1]  # a local path is no Hub id

    # A Hub id, through from_pretrained and the Hub cache (offline): a snapshot of the pipeline.
    cache = tmp_path / "hub"
    repo = cache / "models--someone--tiny-hd"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    __import__("shutil").copytree(pipeline, repo / "snapshots" / ("0" * 40))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    _reset_accelerate_state()
    tuned = Trainer(_hd_config(data, tmp_path / "b", "--init_from", "someone/tiny-hd"))
    assert _same(translator, _weights(tuned.generator))
    metadata = yaml.safe_load(tuned.export(tmp_path / "b" / "pipeline").joinpath("README.md")
                              .read_text().split("---")[1])  # fmt: skip
    assert metadata["base_model"] == "someone/tiny-hd"

    # A checkpoint folder brings D as well.
    checkpoint = run_dir / "checkpoints" / "checkpoint-0"
    _reset_accelerate_state()
    tuned = Trainer(_hd_config(data, tmp_path / "c", "--init_from", str(checkpoint)))
    assert _same(load_file(checkpoint / "discriminator.safetensors"), _weights(tuned.discriminator))
    assert _same(load_file(checkpoint / "generator.safetensors"), _weights(tuned.generator))


def test_init_from_names_the_config_keys_that_differ(base_run, tmp_path):
    from hf_pix2pixhd.training.networks import ArchitectureMismatch

    data, run_dir, pipeline = base_run
    for source in (pipeline, run_dir / "checkpoints" / "checkpoint-0"):
        _reset_accelerate_state()
        with pytest.raises(ArchitectureMismatch, match=r"model\.ngf.*4.*8|ngf 4 vs 8.*model\.ngf"):
            Trainer(_hd_config(data, tmp_path / "x", "--init_from", str(source),
                               "--model.ngf", "8"))  # fmt: skip
    _reset_accelerate_state()
    with pytest.raises(ArchitectureMismatch, match=r"model\.use_encoder true"):
        Trainer(_hd_config(data, tmp_path / "y", "--init_from", str(pipeline),
                           "--model.use_encoder", "false"))  # fmt: skip
    with pytest.raises(FileNotFoundError, match="neither a pipeline folder"):
        Trainer(_hd_config(data, tmp_path / "z", "--init_from", str(tmp_path)))


# -- trackers --------------------------------------------------------------------------------


def _tracked_run(tmp_path: Path, tracker: str, **env: str) -> Path:
    """`python train_accelerate.py` for one epoch of 2 steps: scalars every step, the sample
    grid at the epoch's end."""
    data = make_aligned_dataset(tmp_path / "data", count=4)
    out = tmp_path / "run"
    run([sys.executable, "train_accelerate.py", *pix2pix_overrides(data, out),
         "--n_epochs_decay", "0", "--tracker", tracker], **env)  # fmt: skip
    return out


@pytest.mark.slow
def test_tensorboard_logs_scalars_and_the_sample_grid(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = _tracked_run(tmp_path, "tensorboard")
    (events,) = out.glob("hf-pix2pixhd/events.out.tfevents.*")
    accumulator = EventAccumulator(str(events), size_guidance={"images": 0})
    accumulator.Reload()
    assert {"step/G", "epoch/G", "lr"} <= set(accumulator.Tags()["scalars"])
    (image,) = accumulator.Images("samples")
    assert image.step == 2 and (image.width, image.height) == (3 * 64, 2 * 64)


def _wandb_history(path: Path) -> list[dict[str, str]]:
    """The logged rows of an offline run's ``.wandb`` file: protobuf ``Record``s in LevelDB's
    log format (32 KiB blocks, 7-byte chunk headers) after wandb's 7-byte file header."""
    from wandb.proto import wandb_internal_pb2

    data, offset, payload, rows = path.read_bytes(), 7, b"", []
    while offset + 7 <= len(data):
        if 32768 - offset % 32768 < 7:  # a block's tail too short for a header is padding
            offset += 32768 - offset % 32768
            continue
        _crc, length, kind = struct.unpack("<IHB", data[offset : offset + 7])
        payload += data[offset + 7 : offset + 7 + length]
        offset += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            payload = b""
            if record.WhichOneof("record_type") == "history":
                rows.append(
                    {i.key or "/".join(i.nested_key): i.value_json for i in record.history.item}
                )
    return rows


@pytest.mark.slow
def test_wandb_offline_logs_scalars_and_the_sample_grid(tmp_path):
    pytest.importorskip("wandb")
    out = _tracked_run(tmp_path, "wandb", WANDB_MODE="offline", WANDB_SILENT="true")
    (folder,) = (out / "wandb").glob("offline-run-*")
    (log,) = folder.glob("run-*.wandb")
    rows = _wandb_history(log)
    assert [row["_step"] for row in rows] == ["1", "2"]
    assert {"step/G", "lr"} <= set(rows[0]) and {"epoch/G", "samples/filenames"} <= set(rows[1])
    assert (rows[1]["samples/width"], rows[1]["samples/height"]) == ("192", "128")
    (png,) = json.loads(rows[1]["samples/filenames"])
    assert (folder / "files" / png).stat().st_size > 0


@pytest.mark.slow
def test_trackio_logs_scalars_and_the_sample_grid(tmp_path):
    pytest.importorskip("trackio")
    store = tmp_path / "trackio"
    _tracked_run(tmp_path, "trackio", TRACKIO_DIR=str(store))
    (database,) = store.glob("*.db")
    with sqlite3.connect(database) as connection:
        rows = [json.loads(m) for (m,) in connection.execute("SELECT metrics FROM metrics")]
    logged = {key for row in rows for key in row}
    assert {"step/G", "epoch/G", "lr", "samples"} <= logged, logged
    assert list(store.rglob("*.png")), "no sample image in the trackio store"
