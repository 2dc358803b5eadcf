"""The training loop under Accelerate: DDP, mixed precision, accumulation, checkpoints."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import GradientAccumulationPlugin, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data import build_dataset, collate_pairs, resolve_palette
from ..models.modes import eval_mode, pix2pix_test_mode
from ..pipeline import Pix2PixHDPipeline
from .allocator import reuse_freed_cpu_memory
from .amp import step_optimizers
from .checkpoint_state import TrainingParts, read_training_state, write_training_state
from .checkpoints import open_checkpoint, remove_stale_temporaries, resolve_resume, save_checkpoint
from .config import TrainConfig
from .launcher import configure_threads, describe_settings
from .model_card import push_folder_to_hub, render_model_card
from .networks import (
    build_networks,
    feed_channels_last,
    initialize_from,
    prepare_batch,
    random_instance_codes,
)
from .objective import Objective
from .samples import sample_grid
from .trackers import check_tracker, log_image, tracker_init_kwargs


class TrainerState:
    """Progress counters saved with every checkpoint (JSON, see ``checkpoint_state``)."""

    def __init__(self) -> None:
        self.global_step = 0  # optimizer steps
        self.epoch = 0
        self.batches_in_epoch = 0  # micro-batches of ``epoch`` already consumed
        self.best_validation = math.inf

    def state_dict(self) -> dict:
        return dict(vars(self))

    def load_state_dict(self, state: dict) -> None:
        vars(self).update(state)


def build_pipeline(
    config: TrainConfig, generator: torch.nn.Module, encoder: torch.nn.Module | None
) -> Pix2PixHDPipeline:
    """The inference pipeline for networks trained with ``config`` (palette, input kind...)."""
    data = config.data
    return Pix2PixHDPipeline(
        translator=generator.to(memory_format=torch.contiguous_format),
        encoder=encoder,
        input_kind=data.input_kind,
        label_nc=data.label_nc if data.input_kind == "labels" else 0,
        palette=resolve_palette(data.palette),
        use_instance_map=data.use_instance_map,
        feature_nc=config.model.feature_nc if encoder is not None else 0,
        # Sketches drawn at any width are redrawn in the middle of the trained range.
        stroke_width=sum(data.stroke_widths) / 2 if data.drawn_sketches else None,
    )


def write_training_config(config: TrainConfig, folder: Path) -> None:
    """Record the run's configuration beside an export (encode-styles reads its data options)."""
    (folder / "training_config.json").write_text(
        json.dumps(config.to_dict(), indent=2, default=str)
    )


class Trainer:
    """Runs one training job described by a :class:`TrainConfig`."""

    def __init__(self, config: TrainConfig) -> None:
        check_tracker(config.tracker)
        self.palette = resolve_palette(config.data.palette)
        self.output_dir = Path(config.output_dir)
        # Unset (None) precision and accumulation are left to the launcher: Accelerate reads
        # ACCELERATE_MIXED_PRECISION (accelerate launch --mixed_precision, or its config file)
        # and ACCELERATE_GRADIENT_ACCUMULATION_STEPS; a value given here would override them.
        accumulation = {}
        if config.gradient_accumulation_steps is not None:
            # a plugin, not the plain argument: Accelerate lets the environment win over that
            accumulation["gradient_accumulation_plugin"] = GradientAccumulationPlugin(
                num_steps=config.gradient_accumulation_steps
            )
        self.accelerator = Accelerator(
            mixed_precision=config.mixed_precision,
            log_with=config.tracker,
            project_dir=str(self.output_dir),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
            **accumulation,
        )
        threads = configure_threads(self.accelerator)
        self.accelerator.print(describe_settings(self.accelerator, config, threads))
        # From here on the config holds the values in effect (objective, card, exports).
        self.config = config = dataclasses.replace(
            config,
            mixed_precision=self.accelerator.mixed_precision,
            gradient_accumulation_steps=self.accelerator.gradient_accumulation_steps,
        )
        if config.reuse_cpu_memory and self.accelerator.device.type == "cpu":
            reuse_freed_cpu_memory()
        # Per-process seeds: dropout differs across ranks, DDP broadcasts rank 0's init.
        set_seed(config.seed, device_specific=True)
        self.state = TrainerState()
        self._validation_set = None
        self._build()

    # -- setup ---------------------------------------------------------------------------

    def _build(self) -> None:
        config, accelerator = self.config, self.accelerator
        networks = build_networks(config)
        if config.init_from:
            loaded = initialize_from(networks, config)
            accelerator.print(f"initialised {', '.join(loaded)} from {config.init_from}")
        # Image sizes the networks accept: the data layer rounds uncropped sizes to this.
        multiple = max(
            [net.size_multiple for net in (networks.generator, networks.encoder) if net is not None]
        )
        if config.data.size_multiple < multiple:
            data = dataclasses.replace(config.data, size_multiple=multiple)
            self.config = config = dataclasses.replace(config, data=data)
        self.objective = Objective(config).to(accelerator.device)
        data = config.data
        if config.validation_fraction > 0:
            data = dataclasses.replace(
                data, holdout_fraction=config.validation_fraction, subset="train"
            )
        self.dataset = build_dataset(data, accelerator.process_index, accelerator.num_processes)
        self.streaming = not hasattr(self.dataset, "__len__")
        loader = DataLoader(
            self.dataset,
            batch_size=config.batch_size,
            shuffle=not self.streaming,
            collate_fn=collate_pairs,
            num_workers=config.num_workers,
            # A private generator: making an iterator must not draw from the global RNG, or a
            # resumed run would see different dropout masks from a straight one.
            generator=torch.Generator().manual_seed(config.seed),
        )
        g_params = list(networks.generator.parameters())
        if networks.encoder is not None:
            g_params += list(networks.encoder.parameters())
        betas = (config.beta1, config.beta2)
        # One fused kernel instead of a dozen passes over ~190M parameters (pix2pixHD).
        fused = {"fused": True} if accelerator.device.type in ("cpu", "cuda") else {}
        opt_g = torch.optim.Adam(g_params, lr=config.lr, betas=betas, **fused)
        opt_d = torch.optim.Adam(
            networks.discriminator.parameters(), lr=config.lr, betas=betas, **fused
        )
        if config.channels_last:
            nets = (networks.generator, networks.discriminator, networks.encoder)
            for net in (*nets, self.objective.vgg):
                if net is not None:
                    feed_channels_last(net)
        models = [networks.generator, networks.discriminator]
        if networks.encoder is not None:
            models.append(networks.encoder)
        if self.streaming:
            prepared = accelerator.prepare(*models, opt_g, opt_d)
            self.loader = loader  # already sharded by split_dataset_by_node
        else:
            *prepared, self.loader = accelerator.prepare(*models, opt_g, opt_d, loader)
        self.generator, self.discriminator = prepared[0], prepared[1]
        _report_compute_dtype(self._unwrap(self.generator), accelerator)
        self.encoder = prepared[2] if networks.encoder is not None else None
        self.opt_g, self.opt_d = prepared[-2], prepared[-1]
        # The official per-epoch schedule: constant, then linear decay to 0.
        n, n_decay = config.n_epochs, config.n_epochs_decay

        def factor(epoch: int) -> float:
            return 1.0 - max(0, epoch + 1 - n) / float(n_decay + 1)

        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g.optimizer, factor)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d.optimizer, factor)
        self.ema = None
        if config.ema_decay:
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel(self._unwrap(self.generator).parameters(), decay=config.ema_decay)
        self.sample_batch = collate_pairs(
            [self.dataset[i] for i in range(min(config.num_samples, self._dataset_length()))]
        ) if not self.streaming else None  # fmt: skip

    def _dataset_length(self) -> int:
        if not self.streaming:
            return len(self.dataset)
        if self.config.data.max_samples:
            return self.config.data.max_samples
        raise ValueError(
            "A streaming dataset has no known length: set data.max_samples (samples per epoch)."
        )

    def _unwrap(self, model: torch.nn.Module) -> torch.nn.Module:
        # The bare module also under `--dynamo_backend` (torch.compile): its parameter names
        # (the fix-global trunk's "model.*") and class (export) are the model's own.
        return self.accelerator.unwrap_model(model, keep_torch_compile=False)

    def _checkpoint_parts(self) -> TrainingParts:
        """What a checkpoint saves and restores (never via pickle: see ``checkpoint_state``)."""
        models = {"generator": self.generator, "discriminator": self.discriminator}
        if self.encoder is not None:
            models["encoder"] = self.encoder
        return TrainingParts(
            models={name: self._unwrap(model) for name, model in models.items()},
            optimizers={"g": self.opt_g, "d": self.opt_d},
            schedulers={"g": self.sched_g, "d": self.sched_d},
            counters=self.state,
            ema=self.ema,
        )

    def _save_checkpoint(self) -> None:
        parts = self._checkpoint_parts()
        save_checkpoint(
            self.accelerator, self.output_dir / "checkpoints", self.state.global_step,
            self.config.keep_checkpoints,
            lambda folder: write_training_state(folder, self.accelerator, parts),
        )  # fmt: skip

    @property
    def steps_per_epoch(self) -> int:
        if self.streaming:
            per_process = math.ceil(
                self._dataset_length() / self.accelerator.num_processes / self.config.batch_size
            )
        else:
            per_process = len(self.loader)
        return max(1, math.ceil(per_process / self.config.gradient_accumulation_steps))

    # -- one step ------------------------------------------------------------------------

    def training_step(self, batch: dict) -> dict[str, float]:
        """One micro-batch: G and D losses against the same D, then both optimizers step
        (on the last micro-batch of an accumulation group)."""
        accelerator, config = self.accelerator, self.config
        models = [m for m in (self.generator, self.discriminator, self.encoder) if m is not None]
        with accelerator.accumulate(*models):
            with accelerator.autocast():
                inputs = prepare_batch(batch, config)
                g_input = inputs.generator_input
                codes = codes_alt = None
                if self.encoder is not None:
                    codes = self.encoder(inputs.real, inputs.instances).to(g_input.dtype)
                    condition_input = g_input
                    g_input = torch.cat([condition_input, codes], 1)
                    if self.objective.lambda_diversity:
                        # The same conditions with random codes, in the same batch through G.
                        codes_alt = random_instance_codes(inputs.instances, codes)
                        g_input = torch.cat([g_input, torch.cat([condition_input, codes_alt], 1)])
                fake = self.generator(g_input)
                fake_alt = None
                if codes_alt is not None:
                    fake, fake_alt = fake.chunk(2)
            logs_d, pred_real = {}, None
            if self.objective.uses_discriminator:
                with accelerator.autocast():
                    self.discriminator.requires_grad_(True)
                    loss_d, logs_d, pred_real = self.objective.discriminator_loss(
                        self.discriminator, inputs.condition, inputs.real, fake
                    )
                accelerator.backward(loss_d)
            # G's adversarial terms go through the bare, frozen D: no gradient reaches D's
            # weights (prepared optimizers skip zero_grad on accumulation micro-steps), and no
            # DDP hooks run for a forward that has nothing to synchronise.
            frozen_d = self._unwrap(self.discriminator).requires_grad_(False)
            with accelerator.autocast():
                loss_g, logs_g = self.objective.generator_loss(
                    frozen_d, inputs.condition, inputs.real, fake, pred_real
                )
                if fake_alt is not None:
                    loss_div, logs_div = self.objective.diversity_loss(
                        frozen_d, inputs.condition, fake, fake_alt, codes, codes_alt
                    )
                    loss_g = loss_g + loss_div
                    logs_g = {**logs_g, **logs_div}
            accelerator.backward(loss_g)
            frozen_d.requires_grad_(True)
            if self._fixing_global_trunk():
                for name, parameter in self._unwrap(self.generator).named_parameters():
                    if name.startswith("model."):
                        parameter.grad = None  # Adam skips it: the trunk stays as loaded
            # One loss scale for both under fp16 (see step_optimizers).
            optimizers = [self.opt_d] if self.objective.uses_discriminator else []
            step_optimizers(accelerator, *optimizers, self.opt_g)
            self.opt_d.zero_grad(set_to_none=True)
            self.opt_g.zero_grad(set_to_none=True)
        if accelerator.sync_gradients and self.ema is not None:
            self.ema.step(self._unwrap(self.generator).parameters())
        return {**logs_g, **logs_d}

    def _fixing_global_trunk(self) -> bool:
        m = self.config.model
        return m.generator == "local" and self.state.epoch < m.niter_fix_global

    # -- loop ----------------------------------------------------------------------------

    def train(self) -> Path:
        """Train to the end of the schedule (or ``max_steps``); returns the exported pipeline."""
        config, accelerator, state = self.config, self.accelerator, self.state
        checkpoint_dir = self.output_dir / "checkpoints"
        if accelerator.is_main_process:
            remove_stale_temporaries(checkpoint_dir)
        if config.resume:
            checkpoint = open_checkpoint(resolve_resume(config.resume, checkpoint_dir))
            read_training_state(checkpoint, accelerator, self._checkpoint_parts())
            accelerator.print(f"resumed from {checkpoint.path} at step {state.global_step}")
        if config.tracker:
            accelerator.init_trackers(
                "hf-pix2pixhd", config=_flat_hparams(config),
                init_kwargs=tracker_init_kwargs(self.output_dir),
            )  # fmt: skip
        total_steps = self.steps_per_epoch * config.total_epochs
        if config.max_steps is not None:
            total_steps = min(total_steps, config.max_steps)
        progress = tqdm(
            total=total_steps, initial=state.global_step, desc="training",
            disable=not accelerator.is_local_main_process, dynamic_ncols=True,
        )  # fmt: skip
        done = state.global_step >= total_steps
        while not done and state.epoch < config.total_epochs:
            epoch_logs: dict[str, list[float]] = {}
            for batch in self._epoch_batches():
                logs = self.training_step(batch)
                state.batches_in_epoch += 1
                for key, value in logs.items():
                    epoch_logs.setdefault(key, []).append(value)
                if not accelerator.sync_gradients:
                    continue
                state.global_step += 1
                progress.update(1)
                progress.set_postfix({k: f"{logs[k]:.3f}" for k in ("G", "D") if k in logs})
                if state.global_step % config.log_every == 0:
                    lr = self.opt_g.param_groups[0]["lr"]
                    accelerator.log({**{f"step/{k}": v for k, v in logs.items()}, "lr": lr},
                                    step=state.global_step)  # fmt: skip
                if state.global_step % config.checkpoint_every == 0:
                    self._save_checkpoint()
                if state.global_step >= total_steps:
                    done = True
                    break
            if not done or self._epoch_finished():
                self._end_epoch(epoch_logs)
        progress.close()
        if state.batches_in_epoch:  # stopped mid-epoch: a grid of the weights being exported
            self.save_samples(f"step_{state.global_step:08d}")
        self._save_checkpoint()
        export = self.export(self.output_dir / "pipeline")
        accelerator.end_training()
        return export

    def _epoch_batches(self) -> Iterable[dict]:
        state = self.state
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(state.epoch)
        if hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(state.epoch)
        if self.streaming:
            return _to_device(self.loader, self.accelerator.device, state.batches_in_epoch)
        if state.batches_in_epoch:
            return self.accelerator.skip_first_batches(self.loader, state.batches_in_epoch)
        return self.loader

    def _epoch_finished(self) -> bool:
        return not self.streaming and self.state.batches_in_epoch >= len(self.loader)

    def _end_epoch(self, epoch_logs: dict[str, list[float]]) -> None:
        accelerator, state = self.accelerator, self.state
        means = {f"epoch/{k}": sum(v) / len(v) for k, v in epoch_logs.items() if v}
        grid = self.save_samples(f"epoch_{state.epoch + 1:04d}")
        if self.config.validation_fraction > 0:
            means["epoch/val_L1"] = self.validate()
        accelerator.log(means, step=state.global_step)
        if grid is not None and accelerator.is_main_process:
            self._log_image(grid)
        if self.config.export_best and means.get("epoch/val_L1", math.inf) < state.best_validation:
            state.best_validation = means["epoch/val_L1"]
            self.export(self.output_dir / "pipeline-best")
        self.sched_g.step()
        self.sched_d.step()
        state.epoch += 1
        state.batches_in_epoch = 0

    # -- evaluation and export -----------------------------------------------------------

    @torch.no_grad()
    def generate(self, batch: dict) -> torch.Tensor:
        """G's output for a batch, in the mode the pipeline uses (with the EMA weights when the
        run keeps an EMA, as the export does), without touching RNG state, BatchNorm
        statistics or the trained weights (so sampling never changes the trajectory)."""
        generator = self._unwrap(self.generator)
        encoder = self._unwrap(self.encoder) if self.encoder is not None else None
        device = self.accelerator.device
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        pix2pix_mode = self.config.model.recipe == "pix2pix"
        with torch.random.fork_rng(devices=[]), self.accelerator.autocast(), self._ema_weights():
            context = pix2pix_test_mode(generator) if pix2pix_mode else eval_mode(generator)
            with context, eval_mode(encoder):
                inputs = prepare_batch(batch, self.config)
                g_input = inputs.generator_input
                if encoder is not None:
                    g_input = torch.cat([g_input, encoder(inputs.real, inputs.instances)], 1)
                return generator(g_input).float()

    @contextlib.contextmanager
    def _ema_weights(self) -> Iterator[None]:
        """G holds its EMA weights inside the block (if the run keeps an EMA), its own after."""
        if self.ema is None:
            yield
            return
        parameters = list(self._unwrap(self.generator).parameters())
        self.ema.store(parameters)
        self.ema.copy_to(parameters)
        try:
            yield
        finally:
            self.ema.restore(parameters)

    def save_samples(self, tag: str):
        """Write ``samples/<tag>.png`` (input | output | target rows) on the main process."""
        if self.sample_batch is None or not self.accelerator.is_main_process:
            return None
        grid = sample_grid(
            self.sample_batch, self.generate(self.sample_batch), self.config.data.label_nc,
            self.palette,
        )  # fmt: skip
        folder = self.output_dir / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        grid.save(folder / f"{tag}.png")
        return grid

    def _log_image(self, grid) -> None:
        log_image(self.accelerator, "samples", grid, self.state.global_step)

    def validate(self) -> float:
        """Mean L1 between G's output and the target on the held-out part (deterministic)."""
        if self._validation_set is None:  # loaded once, reused every epoch
            data = dataclasses.replace(
                self.config.data, holdout_fraction=self.config.validation_fraction,
                subset="holdout", preprocess="resize", load_size=self.config.data.crop_size,
                flip=False, streaming=False,
            )  # fmt: skip
            self._validation_set = build_dataset(data)
        dataset = self._validation_set
        total, count = 0.0, 0
        for start in range(0, len(dataset), 4):
            batch = collate_pairs([dataset[i] for i in range(start, min(start + 4, len(dataset)))])
            output = self.generate(batch)
            total += (output.cpu() - batch["target"]).abs().mean().item() * len(batch["name"])
            count += len(batch["name"])
        return total / max(count, 1)

    def export(self, folder: Path) -> Path:
        """Write the generator (EMA weights if enabled) as a ``Pix2PixHDPipeline``."""
        accelerator = self.accelerator
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            generator = copy.deepcopy(self._unwrap(self.generator)).eval()
            if self.ema is not None:
                self.ema.copy_to(generator.parameters())
            encoder = None
            if self.encoder is not None:
                encoder = copy.deepcopy(self._unwrap(self.encoder)).eval()
            pipeline = build_pipeline(self.config, generator, encoder)
            pipeline.save_pretrained(folder)
            write_training_config(self.config, folder)
            extra = {"steps": self.state.global_step, "epochs": self.state.epoch}
            metrics = None
            if math.isfinite(self.state.best_validation):
                metrics = {"validation L1 (best)": round(self.state.best_validation, 4)}
            render_model_card(self.config, folder, metrics, extra)
            if self.config.push_to_hub:
                push_folder_to_hub(folder, self.config)
        accelerator.wait_for_everyone()
        return folder


def _report_compute_dtype(generator: torch.nn.Module, accelerator: Accelerator) -> None:
    """Log the dtype G's first convolution really computes in, once (the prepared model casts
    its output back to fp32, so that says nothing about mixed precision)."""
    conv = next(m for m in generator.modules() if isinstance(m, torch.nn.modules.conv._ConvNd))

    def report(_module: torch.nn.Module, _args: tuple, output: torch.Tensor) -> None:
        accelerator.print(f"first step: the generator's convolutions compute in {output.dtype}")
        handle.remove()

    handle = conv.register_forward_hook(report)


def _to_device(loader: DataLoader, device: torch.device, skip: int) -> Iterable[dict]:
    for index, batch in enumerate(loader):
        if index < skip:
            continue
        yield {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def _flat_hparams(config: TrainConfig) -> dict:
    """Scalars only, dotted keys: what TensorBoard's hparams accepts."""
    flat = {}
    for section, values in config.to_dict().items():
        items = values.items() if isinstance(values, dict) else [(None, values)]
        for key, value in items:
            name = f"{section}.{key}" if key else section
            flat[name] = value if isinstance(value, int | float | str | bool) else str(value)
    return flat
