"""Training loop (paper §3): SGD with momentum, poly learning rate stepped every iteration, encoder at lr/10,
AMP on CUDA, atomic checkpoints at ``cfg.ckpt_path`` that an interrupted run resumes from.

Run through ``python train.py ...`` (see ``configs/train.yaml``) or call :func:`run_training` with a composed
config. ``torchrun --nproc_per_node=N train.py ...`` trains with DistributedDataParallel: ``batch_size`` stays
the global batch (each rank takes ``batch_size / N`` of every single-process batch), so iterations, the
schedule and checkpoints are those of one process and a run may resume at another world size; rank 0 logs
and writes the checkpoint while the others wait. ``sync_bn=true`` switches BatchNorm to SyncBatchNorm (CUDA).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from rankseg.engine.build import (
    EpochSampler,
    build_dataset,
    build_loss,
    build_model,
    param_groups,
    seed_everything,
    seed_worker,
)
from rankseg.engine.checkpoint import check_num_classes, check_same_model, load_checkpoint, save_checkpoint
from rankseg.engine.distributed import DistInfo, all_reduce_sum, any_rank, barrier, process_group
from rankseg.engine.runfiles import git_commit


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


def poly_factor(iteration: int, total_iters: int, power: float) -> float:
    """Poly schedule ``(1 - T/N) ** power`` (no warmup), clamped at 0 beyond ``N``."""
    return max(1.0 - iteration / max(total_iters, 1), 0.0) ** power


def run_training(cfg: DictConfig) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.dataset``'s train split with ``cfg.loss``; resume from ``cfg.ckpt_path``.

    Stops at the end of training, after ``cfg.max_iters`` total iterations, or after ``cfg.max_minutes``;
    in every case (and on Ctrl-C) the checkpoint is written first. Under ``torchrun`` every rank runs this
    function (see the module docstring); all ranks return the same numbers.

    Returns:
        ``checkpoint`` (path), ``start_iteration``, ``iteration``, ``epoch`` (completed), ``total_iters``,
        ``finished`` (all epochs done), ``stopped`` (reason), ``loss`` (mean over this invocation's
        iterations and all ranks, NaN if none), ``world_size``.
    """
    with process_group(str(cfg.device)) as (info, device):
        return _train(cfg, info, device)


def _maybe_sync_bn(model: nn.Module, cfg: DictConfig, info: DistInfo, device: torch.device) -> nn.Module:
    if not cfg.get("sync_bn", False) or not info.distributed:
        return model
    if device.type != "cuda":
        if info.is_main:
            print("note: sync_bn=true needs CUDA (torch's SyncBatchNorm); keeping per-process BatchNorm")
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def _train(cfg: DictConfig, info: DistInfo, device: torch.device) -> dict[str, Any]:
    seed_everything(int(cfg.seed))
    train_set = build_dataset(cfg.dataset, "train")
    batch_size = int(cfg.batch_size)
    if len(train_set) == 0:
        raise ValueError(f"the train split of dataset {cfg.dataset.name!r} is empty")
    # drop_last avoids a batch of one, which BatchNorm cannot normalise; tiny datasets keep their only batch.
    drop_last = len(train_set) > batch_size
    if info.distributed and (batch_size % info.world_size or not drop_last):
        raise ValueError(
            f"distributed training splits each batch of batch_size={batch_size} over {info.world_size} "
            f"processes: it must be a multiple of the world size and smaller than the train split "
            f"({len(train_set)} samples)"
        )
    rank_batch = batch_size // info.world_size
    iters_per_epoch = len(train_set) // batch_size if drop_last else 1
    total_iters = int(cfg.epochs) * iters_per_epoch

    net = build_model(cfg.model).to(device)
    net = _maybe_sync_bn(net, cfg, info, device)
    loss_fn = build_loss(cfg.loss).to(device)
    opt_cfg = cfg.optimizer
    optimizer = torch.optim.SGD(
        param_groups(net, list(cfg.model.get("backbone_prefixes", [])), opt_cfg.lr, opt_cfg.backbone_lr_mult),
        lr=opt_cfg.lr,
        momentum=opt_cfg.momentum,
        weight_decay=opt_cfg.weight_decay,
    )
    power = float(opt_cfg.poly_power)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: poly_factor(it, total_iters, power))
    use_amp = bool(cfg.amp) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    ckpt_path = Path(cfg.ckpt_path)
    iteration = 0
    if cfg.resume and ckpt_path.is_file():
        state = load_checkpoint(ckpt_path, map_location=device)
        check_num_classes(
            state["config"]["dataset"]["num_classes"], cfg.dataset.num_classes, ckpt_path, cfg.dataset.name
        )
        check_same_model(state["config"]["model"], OmegaConf.to_container(cfg.model, resolve=True), ckpt_path)
        net.load_state_dict(state["model"])  # before DDP wraps it: the keys carry no "module." prefix
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        iteration = int(state["iteration"])
        if info.is_main:
            print(f"resuming from {ckpt_path} at epoch {state['epoch']}, iteration {iteration}/{total_iters}")
    barrier(info)  # every rank has read the checkpoint before rank 0 may replace it
    # DDP broadcasts rank 0's weights at construction; the checkpoint always holds the unwrapped module's.
    model: nn.Module = net
    if info.distributed:
        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
        # Shared seed for the weights above, rank-specific seed for the augmentations below.
        seed_everything(int(cfg.seed) + info.rank)
    start_iteration = iteration
    resolved = OmegaConf.to_container(cfg, resolve=True)
    commit = git_commit()

    def save(reason: str, wait: bool = True) -> None:
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
                    "seed": int(cfg.seed),
                    "commit": commit,
                    "world_size": info.world_size,
                },
            )
        if wait:
            barrier(info)

    run_name = f"{cfg.dataset.name}-{cfg.model.name}-{cfg.loss.name}"
    logger = make_logger(cfg, run_name) if info.is_main else _NullLogger()
    max_iters = total_iters if cfg.get("max_iters") is None else min(int(cfg.max_iters), total_iters)
    deadline = math.inf if cfg.get("max_minutes") is None else time.monotonic() + 60 * float(cfg.max_minutes)
    save_every = 60 * float(cfg.get("save_every_minutes") or math.inf)
    log_every = int(cfg.get("log_every", 20))
    last_save = time.monotonic()
    loss_sum, loss_count, stopped = 0.0, 0, "finished"
    bar = tqdm(
        total=total_iters,
        initial=iteration,
        desc=f"train {cfg.model.name}/{cfg.loss.name}",
        dynamic_ncols=True,
        disable=not info.is_main,
    )
    model.train()
    try:
        while iteration < max_iters:
            epoch, offset = divmod(iteration, iters_per_epoch)
            sampler = EpochSampler(
                len(train_set),
                int(cfg.seed),
                epoch,
                start=offset * batch_size,
                rank=info.rank,
                world_size=info.world_size,
                batch_size=batch_size,
            )
            sampler.set_epoch(epoch)
            loader = DataLoader(
                train_set,
                batch_size=rank_batch,
                sampler=sampler,
                drop_last=drop_last,
                num_workers=int(cfg.dataset.num_workers),
                pin_memory=device.type == "cuda",
                worker_init_fn=seed_worker,
                generator=torch.Generator().manual_seed(int(cfg.seed) + epoch + 1_000_003 * info.rank),
            )
            time_up = False
            for images, targets in loader:
                images = images.to(device, non_blocking=True)
                targets = targets.to(device, non_blocking=True)
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                    loss = loss_fn(model_logits(model(images)), targets)
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
                # Every rank must stop and save at the same iteration: the clocks are OR-ed across ranks.
                time_up, save_due = any_rank([now >= deadline, now - last_save >= save_every], info, device)
                if iteration >= max_iters or time_up:
                    break
                if save_due:
                    save("periodic")
                    last_save = now
            if time_up and iteration < max_iters:
                stopped = "max_minutes"
                break
            if iteration % iters_per_epoch == 0:
                logger.log({"train/epoch": iteration // iters_per_epoch}, step=iteration)
                if iteration < max_iters:
                    save("epoch")
                    last_save = time.monotonic()
        if stopped == "finished" and iteration < total_iters:
            stopped = "max_iters"
    except KeyboardInterrupt:
        stopped = "interrupted"
        save(stopped, wait=False)  # the other ranks may be gone already
        bar.close()
        logger.finish()
        raise
    save(stopped)
    bar.close()
    logger.finish()
    loss_sum, loss_count = all_reduce_sum([loss_sum, loss_count], info, device)
    if info.is_main:
        print(f"checkpoint ({stopped}, iteration {iteration}/{total_iters}): {ckpt_path}")
    return {
        "checkpoint": str(ckpt_path),
        "start_iteration": start_iteration,
        "iteration": iteration,
        "epoch": iteration // iters_per_epoch,
        "total_iters": total_iters,
        "finished": iteration >= total_iters,
        "stopped": stopped,
        "loss": loss_sum / loss_count if loss_count else float("nan"),
        "world_size": info.world_size,
    }
