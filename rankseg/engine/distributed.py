"""Multi-process runs under ``torchrun``: the process group, rank helpers, batch-aligned samplers and gathers.

``torchrun --nproc_per_node=N train.py ...`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``;
:func:`process_group` reads them and joins the group (NCCL on CUDA, one GPU per process; gloo on CPU).
Without them (plain ``python train.py``) everything here degrades to a single process and no collective runs.

Samplers split the *single-process batches* across ranks instead of the dataset: training
(:class:`rankseg.engine.build.EpochSampler`) splits each global batch into ``world_size`` equal parts;
evaluation (:class:`ShardedBatchSampler`) hands whole batches round-robin to the ranks. Either way
the set of samples in every global batch, the number of iterations and hence checkpoints, the poly schedule and
the per-image results are those of a single-process run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from rankseg.engine.build import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` (``local_rank`` on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that prints, logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_info() -> DistInfo:
    """The rank layout that ``torchrun`` (or SLURM via torchrun) put in the environment; one process if none."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


@contextmanager
def process_group(device_name: str) -> Iterator[tuple[DistInfo, torch.device]]:
    """Join the process group of a ``torchrun`` launch for the duration of the block.

    Yields ``(info, device)``: under torchrun with CUDA the device is ``cuda:LOCAL_RANK`` (whatever index
    ``device_name`` names), the backend NCCL; on CPU the backend is gloo. A group that already exists (a caller
    set it up) is used as is and left alone on exit; one created here is destroyed on exit.
    """
    info = env_info()
    device = resolve_device(device_name)
    if not info.distributed:
        yield info, device
        return
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    created = not dist.is_initialized()
    if created:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    try:
        yield info, device
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.distributed:
        dist.barrier()


def all_reduce_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over the ranks (float64; identity in a single process)."""
    if not info.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def max_over_ranks(values: list[int], info: DistInfo, device: torch.device) -> list[int]:
    """Element-wise maximum of integer ``values`` over the ranks (identity in a single process)."""
    if not info.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [int(v) for v in t.tolist()]


def any_rank(flags: list[bool], info: DistInfo, device: torch.device) -> list[bool]:
    """Element-wise OR of ``flags`` over the ranks, so every rank takes the same stop/save decision."""
    return [bool(v) for v in max_over_ranks([int(f) for f in flags], info, device)]


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not info.distributed:
        return obj
    box = [obj if info.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_rows(rows: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenate every rank's ``rows`` (rank order), whatever their number per rank.

    Shape:
        rows: (n_rank, k), same k and dtype on every rank.  output: (sum of n_rank, k) on every rank.
    """
    if not info.distributed:
        return rows
    count = torch.tensor([rows.shape[0]], dtype=torch.int64, device=rows.device)
    counts = [torch.zeros_like(count) for _ in range(info.world_size)]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    padded = rows.new_zeros((max(sizes), rows.shape[1]))
    padded[: rows.shape[0]] = rows
    parts = [torch.zeros_like(padded) for _ in range(info.world_size)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)])


class ShardedBatchSampler(torch.utils.data.Sampler[list[int]]):
    """The single-process evaluation batches ``[0, bs), [bs, 2 bs), ...`` in order, batch ``b`` going to rank
    ``b % world_size``: no sample is padded, duplicated or regrouped, so every image is predicted in the
    same batch as in a single process (and a batch without labelled pixels is skipped the same way)."""

    def __init__(self, num_samples: int, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        self.num_samples, self.batch_size, self.rank, self.world_size = num_samples, batch_size, rank, world_size

    def batches(self) -> list[list[int]]:
        starts = range(self.rank * self.batch_size, self.num_samples, self.world_size * self.batch_size)
        return [list(range(s, min(s + self.batch_size, self.num_samples))) for s in starts]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())
