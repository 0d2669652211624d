"""Training loop (paper §3): SGD with momentum, poly learning rate stepped every iteration, encoder at lr/10,
AMP on CUDA, atomic checkpoints in the run's folder (:mod:`rankseg.engine.runs`) that an interrupted run resumes
from exactly.

Exact resume: the sample order depends on ``(seed, epoch)`` (:class:`~rankseg.engine.build.EpochSampler`, which
starts mid-epoch at the saved position), the augmentation of a sample on ``(seed, epoch, index)``
(``set_augmentation_epoch`` of the datasets) and every other random draw of a step on ``(seed, iteration, rank)``
(:func:`~rankseg.engine.build.seed_step`); weights, optimizer, schedule and grad-scaler states are saved. So on
CPU a run stopped at any iteration (``max_iters``, ``max_minutes``, a signal, or a kill after a periodic
checkpoint) and resumed ends with the same weights, bit for bit, as an uninterrupted one. SIGINT, SIGTERM and
submitit's preemption signal finish the current step, save and exit (:mod:`rankseg.engine.signals`).

Run through ``python train.py ...`` (see ``configs/train.yaml``) or call :func:`run_training` with a composed
config. ``torchrun --nproc_per_node=N train.py ...`` trains with DistributedDataParallel: ``batch_size`` stays
the global batch (each rank takes ``batch_size / N`` of every single-process batch), so iterations, the
schedule and checkpoints are those of one process and a run may resume at another world size; rank 0 logs
and writes the checkpoint while the others wait. ``sync_bn=true`` switches BatchNorm to SyncBatchNorm (CUDA).
"""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from rankseg.engine.build import (
    EpochSampler,
    build_dataset,
    build_loss,
    build_model,
    build_optimizer,
    init_worker,
    seed_everything,
    seed_step,
)
from rankseg.engine.checkpoint import CheckpointError, check_same_run, load_checkpoint, save_checkpoint
from rankseg.engine.config_checks import ConfigError, check_train_config
from rankseg.engine.console import echo, progress
from rankseg.engine.distributed import DistInfo, all_reduce_sum, barrier, max_over_ranks, process_group
from rankseg.engine.runfiles import atomic_write_json, git_commit
from rankseg.engine.runs import (
    CHECKPOINT_FILE,
    RUN_FILE,
    calibration_holdout_indices,
    identity_digest,
    run_identity,
    run_key,
    run_name,
)
from rankseg.engine.signals import StopSignals, TrainingInterrupted
from rankseg.models.aux import aux_loss


def model_logits(output: Any) -> torch.Tensor:
    """Main segmentation logits of a model output (smp returns ``(masks, labels)`` with ``aux_params``)."""
    return output[0] if isinstance(output, tuple | list) else output


class _NullLogger:
    def log(self, metrics: dict[str, float], step: int) -> None:
        pass

    def finish(self) -> None:
        pass


class _WandbLogger:
    def __init__(self, cfg: DictConfig, run_name: str, config: dict[str, Any]) -> None:
        import wandb  # imported lazily: slow, and unused with logger=none

        Path(cfg.dir).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=cfg.project,
            entity=cfg.get("entity"),
            mode=cfg.get("mode", "offline"),
            dir=str(cfg.dir),
            name=run_name,
            tags=list(cfg.get("tags") or []),
            config=config,
        )

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def finish(self) -> None:
        self.run.finish()


def make_logger(cfg: DictConfig, run_name: str) -> _NullLogger | _WandbLogger:
    """The experiment tracker of ``cfg.logger``; disabled by ``logger=none`` or ``WANDB_MODE=disabled``."""
    logger_cfg = cfg.get("logger")
    if logger_cfg is None or logger_cfg.get("name") == "none" or os.environ.get("WANDB_MODE") == "disabled":
        return _NullLogger()
    return _WandbLogger(logger_cfg, run_name, OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]


class _Without(torch.utils.data.Dataset):
    """A dataset without some of its items (``calibration_holdout``); epoch hooks go to the full dataset."""

    def __init__(self, dataset: Any, removed: list[int]) -> None:
        gone = set(removed)
        self.dataset = dataset
        self.kept = [i for i in range(len(dataset)) if i not in gone]

    def __len__(self) -> int:
        return len(self.kept)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[self.kept[index]]

    def __getattr__(self, name: str) -> Any:  # set_augmentation_epoch, samples, ...
        if name in ("dataset", "kept"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


def poly_factor(iteration: int, total_iters: int, power: float) -> float:
    """Poly schedule ``(1 - T/N) ** power`` (no warmup), clamped at 0 beyond ``N``."""
    return max(1.0 - iteration / max(total_iters, 1), 0.0) ** power


def lr_factor(
    iteration: int, total_iters: int, power: float, warmup_iters: float = 0.0, warmup_start: float = 0.0
) -> float:
    """Poly schedule after an optional linear warmup (RankSEG-RMA): ``max(warmup_start, T/W)`` for ``T < W``, then
    ``(1 - (T - W)/(N - W)) ** power``; with ``W = 0`` it is :func:`poly_factor`."""
    if iteration < warmup_iters:
        return max(warmup_start, iteration / warmup_iters)
    if warmup_iters <= 0:
        return poly_factor(iteration, total_iters, power)
    return max(1.0 - (iteration - warmup_iters) / max(total_iters - warmup_iters, 1e-12), 0.0) ** power


def run_training(cfg: DictConfig) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.dataset``'s train split with ``cfg.loss`` as the run of ``cfg``.

    The run's folder is ``paths.checkpoint_dir/{dataset}/{model}/{loss}/{run}`` (:mod:`rankseg.engine.runs`). Its
    checkpoint is resumed when ``cfg.resume`` is true and it exists; ``resume=false`` starts the run over;
    ``resume=PATH`` continues the run stored at PATH (a run folder or its ``last.pt``), whose config must equal
    this one. Stops at the end of training, after ``cfg.max_iters`` total iterations, after
    ``cfg.max_minutes``, or on a stop signal; in every case the checkpoint is written first. Under ``torchrun``
    every rank runs this function (see the module docstring); all ranks return the same numbers.

    Raises:
        ConfigError: an invalid config value (before any work).
        CheckpointError: the checkpoint to resume is unreadable, foreign or another run's.
        TrainingInterrupted: a stop signal arrived; the checkpoint was saved (``exit_status``: 128 + signal).

    Returns:
        ``checkpoint`` (path), ``run`` (``{dataset}/{model}/{loss}/{run}``), ``start_iteration``, ``iteration``,
        ``epoch`` (completed), ``total_iters``, ``finished`` (all epochs done), ``stopped`` (reason), ``loss``
        (mean over this invocation's iterations and all ranks, NaN if none), ``world_size``.
    """
    check_train_config(cfg)
    with process_group(str(cfg.device)) as (info, device):
        return _train(cfg, info, device)


def _maybe_sync_bn(model: nn.Module, cfg: DictConfig, info: DistInfo, device: torch.device) -> nn.Module:
    if not cfg.get("sync_bn", False) or not info.distributed:
        return model
    if device.type != "cuda":
        if info.is_main:
            echo("note: sync_bn=true needs CUDA (torch's SyncBatchNorm); keeping per-process BatchNorm")
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def _resolve_run(cfg: DictConfig, identity: dict[str, Any], info: DistInfo) -> tuple[Path, dict[str, Any] | None]:
    """(checkpoint path of the run, its loaded state or None for a fresh start) under ``cfg.resume``."""
    resume = cfg.resume
    if isinstance(resume, str):
        path = Path(resume).expanduser()
        path = path / CHECKPOINT_FILE if path.is_dir() else path
        state = load_checkpoint(path, hint="Check resume=, or drop it to train this config's own run")
        check_same_run(
            state,
            path,
            identity,
            f"resume={resume} holds another run: its config differs from this one",
            "Repeat the run's own values on the command line, or drop resume= to train this config's run",
        )
        return path, state
    path = Path(cfg.paths.checkpoint_dir) / run_key(identity) / CHECKPOINT_FILE
    if not path.is_file():
        legacy = path.parent.parent / CHECKPOINT_FILE
        if info.is_main and legacy.is_file():
            echo(f"note: {legacy} (the layout before run folders) is not resumed; continue it with resume={legacy}")
        return path, None
    if not resume:
        if info.is_main:
            echo(f"resume=false: starting run {run_name(identity)} over; {path} will be replaced")
        return path, None
    state = load_checkpoint(path, hint="Delete it, or start the run over with resume=false")
    problem = f"{path} holds another config than its folder name says"
    check_same_run(state, path, identity, problem, "It was moved or edited: delete it, or start over with resume=false")
    return path, state


def _check_batch_norm(net: nn.Module, rank_batch: int, num_samples: int, cfg: DictConfig) -> None:
    if rank_batch >= 2 or not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules()):
        return
    raise ConfigError(
        f"every training batch would hold {rank_batch} image per process (train split of dataset "
        f"{cfg.dataset.name!r}: {num_samples} image(s), batch_size={cfg.batch_size}), but model "
        f"{cfg.model.name!r} has BatchNorm layers, which need at least 2; use batch_size>=2 (and, under torchrun, "
        "at least 2 per process) with a train split of at least 2 images"
    )


def _train(cfg: DictConfig, info: DistInfo, device: torch.device) -> dict[str, Any]:
    identity = run_identity(cfg)
    name = run_name(identity)
    ckpt_path, state = _resolve_run(cfg, identity, info)
    seed = int(cfg.seed)
    seed_everything(seed)
    train_set = build_dataset(cfg.dataset, "train")
    held_out = calibration_holdout_indices(len(train_set), float(cfg.get("calibration_holdout") or 0.0), seed)
    if held_out:  # kept for evaluate.py calibrate=temperature, never trained on
        train_set = _Without(train_set, held_out)
        if info.is_main:
            echo(f"calibration_holdout: {len(held_out)} of the train split's images are kept out of training")
    batch_size = int(cfg.batch_size)
    if len(train_set) == 0:
        raise ConfigError(f"the train split of dataset {cfg.dataset.name!r} is empty")
    # drop_last avoids a last batch of one, which BatchNorm cannot normalise; tiny datasets keep their only batch.
    drop_last = len(train_set) > batch_size
    if info.distributed and (batch_size % info.world_size or not drop_last):
        raise ConfigError(
            f"distributed training splits each batch of batch_size={batch_size} over {info.world_size} "
            f"processes: it must be a multiple of the world size and smaller than the train split "
            f"({len(train_set)} samples)"
        )
    rank_batch = batch_size // info.world_size
    iters_per_epoch = len(train_set) // batch_size if drop_last else 1
    total_iters = int(cfg.epochs) * iters_per_epoch
    if cfg.optimizer.get("total_iters") is not None:  # an iteration schedule (RankSEG-RMA: 40k/80k/160k)
        total_iters = int(cfg.optimizer.total_iters)

    net = build_model(cfg.model).to(device)
    _check_batch_norm(net, rank_batch if drop_last else len(train_set), len(train_set), cfg)
    net = _maybe_sync_bn(net, cfg, info, device)
    loss_fn = build_loss(cfg.loss).to(device)
    opt_cfg = cfg.optimizer
    optimizer = build_optimizer(net, list(cfg.model.get("backbone_prefixes", [])), opt_cfg)
    # loss weights of the main and auxiliary logits (model.aux_weight > 0 needs a model with an auxiliary head)
    main_weight, aux_weight = float(cfg.model.get("main_weight", 1.0)), float(cfg.model.get("aux_weight", 0.0))
    power = float(opt_cfg.poly_power)
    warmup = float(opt_cfg.get("warmup_ratio") or 0.0) * total_iters
    start = float(opt_cfg.get("warmup_start_factor") or 0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: lr_factor(it, total_iters, power, warmup, start)
    )
    use_amp = bool(cfg.amp) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    iteration = 0
    if state is not None:
        try:
            net.load_state_dict(state["model"])  # before DDP wraps it: the keys carry no "module." prefix
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise CheckpointError(
                f"{ckpt_path} does not fit the run it is filed under ({type(err).__name__}: "
                f"{str(err).splitlines()[0][:200]}). Delete it, or start over with resume=false"
            ) from None
        iteration = int(state["iteration"])
    barrier(info)  # every rank has read the checkpoint before rank 0 may replace it
    run_dir = ckpt_path.parent
    if info.is_main:
        how = f"resuming at iteration {iteration}/{total_iters}" if state is not None else "new"
        echo(f"run {cfg.dataset.name}/{cfg.model.name}/{cfg.loss.name}/{name} ({how}): {run_dir}")
        if not (run_dir / RUN_FILE).is_file():
            atomic_write_json(
                run_dir / RUN_FILE,
                {"run": name, "identity_sha256": identity_digest(identity), "identity": identity},
            )
    # DDP broadcasts rank 0's weights at construction; the checkpoint always holds the unwrapped module's.
    model: nn.Module = net
    if info.distributed:
        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    start_iteration = iteration
    resolved = OmegaConf.to_container(cfg, resolve=True)
    commit = git_commit()
    environment = {  # not part of the run: a requeued job may resume on another machine (world_size: below)
        "device": device.type,
        "amp": use_amp,
        "sync_bn": bool(cfg.get("sync_bn", False)),
        "torch": str(torch.__version__),
    }

    saved_at = -1  # iteration of the last save of this invocation

    def save(reason: str) -> None:
        nonlocal saved_at
        saved_at = iteration
        if info.is_main:
            save_checkpoint(
                ckpt_path,
                {
                    "model": net.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "epoch": iteration // iters_per_epoch,
                    "iteration": iteration,
                    "iters_per_epoch": iters_per_epoch,
                    "total_iters": total_iters,
                    "finished": iteration >= total_iters,
                    "reason": reason,
                    "config": resolved,
                    "run": name,
                    "identity_sha256": identity_digest(identity),
                    "seed": seed,
                    "commit": commit,
                    "environment": environment,
                    "world_size": info.world_size,
                },
            )
        barrier(info)

    max_iters = total_iters if cfg.get("max_iters") is None else min(int(cfg.max_iters), total_iters)
    summary = {"checkpoint": str(ckpt_path), "run": str(run_key(identity)), "start_iteration": start_iteration}
    if state is not None and iteration >= max_iters:
        if info.is_main:
            echo(f"nothing to do: the checkpoint is at iteration {iteration} (stop at {max_iters}/{total_iters})")
        stopped = "finished" if iteration >= total_iters else "max_iters"
        return {
            **summary,
            **_progress(iteration, iters_per_epoch, total_iters, stopped),
            "loss": math.nan,
            "world_size": info.world_size,
        }

    logger = make_logger(cfg, name) if info.is_main else _NullLogger()
    deadline = math.inf if cfg.get("max_minutes") is None else time.monotonic() + 60 * float(cfg.max_minutes)
    save_every = 60 * float(cfg.get("save_every_minutes") or math.inf)
    save_every_iters = cfg.get("save_every_iters")
    log_every = int(cfg.get("log_every", 20))
    last_save = time.monotonic()
    loss_sum, loss_count, stopped = 0.0, 0, "finished"
    bar = progress(
        total=total_iters, initial=iteration, desc=f"train {cfg.model.name}/{cfg.loss.name}", disable=not info.is_main
    )
    model.train()
    signum = 0
    time_up = False
    try:
        with StopSignals() as stop:
            while iteration < max_iters:
                epoch, offset = divmod(iteration, iters_per_epoch)
                sampler = EpochSampler(
                    len(train_set),
                    seed,
                    epoch,
                    start=offset * batch_size,
                    rank=info.rank,
                    world_size=info.world_size,
                    batch_size=batch_size,
                )
                if hasattr(train_set, "set_augmentation_epoch"):
                    train_set.set_augmentation_epoch(seed, epoch)
                loader = DataLoader(
                    train_set,
                    batch_size=rank_batch,
                    sampler=sampler,
                    drop_last=drop_last,
                    num_workers=int(cfg.dataset.num_workers),
                    pin_memory=device.type == "cuda",
                    worker_init_fn=init_worker,
                    generator=torch.Generator().manual_seed(seed + epoch + 1_000_003 * info.rank),
                )
                batches = iter(loader)
                while True:
                    try:
                        images, targets = next(batches)
                    except StopIteration:
                        break
                    except RuntimeError:
                        if stop.signum is None:
                            raise
                        break  # a worker died of the same signal; the loop stops at this step boundary
                    seed_step(seed, iteration, info.rank)
                    images = images.to(device, non_blocking=True)
                    targets = targets.to(device, non_blocking=True)
                    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                        loss = aux_loss(loss_fn, model(images), targets, main_weight, aux_weight)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                    iteration += 1
                    value = float(loss.detach())
                    loss_sum, loss_count = loss_sum + value, loss_count + 1
                    bar.update(1)
                    bar.set_postfix(epoch=epoch, loss=f"{value:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
                    if iteration % log_every == 0:
                        mean_loss = all_reduce_sum([value], info, device)[0] / info.world_size
                        lr = optimizer.param_groups[0]["lr"]
                        logger.log({"train/loss": mean_loss, "train/lr": lr}, step=iteration)
                    now = time.monotonic()
                    # Every rank must stop and save at the same iteration: the flags are maxed across ranks.
                    time_up, save_due, signum = max_over_ranks(
                        [int(now >= deadline), int(now - last_save >= save_every), stop.signum or 0], info, device
                    )
                    if signum or iteration >= max_iters or time_up:
                        break
                    if save_due or (save_every_iters and iteration % int(save_every_iters) == 0):
                        save("periodic")
                        last_save = now
                if not signum:  # a signal that arrived after the epoch's last step (or killed a loader worker)
                    signum = max_over_ranks([stop.signum or 0], info, device)[0]
                if signum:
                    break
                if time_up and iteration < max_iters:
                    stopped = "max_minutes"
                    break
                if iteration % iters_per_epoch == 0:
                    logger.log({"train/epoch": iteration // iters_per_epoch}, step=iteration)
                    if iteration < max_iters and saved_at != iteration:
                        save("epoch")
                        last_save = time.monotonic()
            if signum:
                stopped = signal.Signals(signum).name
                save(stopped)
                message = (
                    f"stopped by {stopped} after iteration {iteration}/{total_iters}; checkpoint saved to "
                    f"{ckpt_path}. Run the same command again to resume (or add resume={run_dir})"
                )
                if info.is_main:
                    echo(message)
                stop.hand_over()
                raise TrainingInterrupted(signum, message)
    finally:
        bar.close()
        logger.finish()
    if stopped == "finished" and iteration < total_iters:
        stopped = "max_iters"
    save(stopped)
    loss_sum, loss_count = all_reduce_sum([loss_sum, loss_count], info, device)
    if info.is_main:
        echo(f"checkpoint ({stopped}, iteration {iteration}/{total_iters}): {ckpt_path}")
    return {
        **summary,
        **_progress(iteration, iters_per_epoch, total_iters, stopped),
        "loss": loss_sum / loss_count if loss_count else math.nan,
        "world_size": info.world_size,
    }


def _progress(iteration: int, iters_per_epoch: int, total_iters: int, stopped: str) -> dict[str, Any]:
    return {
        "iteration": iteration,
        "epoch": iteration // iters_per_epoch,
        "total_iters": total_iters,
        "finished": iteration >= total_iters,
        "stopped": stopped,
    }
