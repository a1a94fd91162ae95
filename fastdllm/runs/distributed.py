"""torchrun support: each rank decodes a shard of the problems; rank 0 gathers the rows.

``torchrun --nproc_per_node=N -m fastdllm.cli run CONFIG.yaml`` sets RANK/WORLD_SIZE/LOCAL_RANK;
the process group is gloo on CPU and NCCL on CUDA, with a timeout so that a lost rank cannot hang
the others forever. A rank whose work raises does not leave the others waiting: every rank sends
either its rows or its error, and every rank then raises the first error with its rank.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Sequence, TypeVar

T = TypeVar("T")


class RankFailed(RuntimeError):
    """Another rank's (or this rank's) work raised; the message names the rank and its error."""


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    started_group: bool = False  # this process created the group (and destroys it at the end)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device_for(self, device: str | None) -> str | None:
        """CUDA ranks take ``cuda:LOCAL_RANK`` unless a numbered device was asked for."""
        if self.world_size > 1 and device in (None, "cuda"):
            import torch

            if torch.cuda.is_available():
                return f"cuda:{self.local_rank}"
            return "cpu" if device is None else device
        return device

    def close(self) -> None:
        if self.started_group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def from_env(device: str | None = None, timeout_s: float = 1800) -> Distributed:
    """The run's ranks from torchrun's environment (a single process when WORLD_SIZE is unset or 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    import torch
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    started = False
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
        started = True
    return Distributed(rank=rank, world_size=world, local_rank=local, started_group=started)


def shard(items: Sequence[T], rank: int, world_size: int) -> list[tuple[int, T]]:
    """``(index, item)`` pairs of this rank: indices rank, rank + W, … (empty when W > len(items))."""
    return [(i, items[i]) for i in range(rank, len(items), world_size)]


def exchange(ctx: Distributed, payload: Any, error: BaseException | None) -> list[Any]:
    """Every rank's payload, on every rank; raises :class:`RankFailed` on all ranks if any rank failed."""
    if ctx.world_size == 1:
        if error is not None:
            raise error
        return [payload]
    import torch.distributed as dist

    message = None if error is None else f"{type(error).__name__}: {error}"
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, (payload if error is None else None, message))
    failures = [(rank, msg) for rank, (_, msg) in enumerate(gathered) if msg is not None]
    if failures:
        rank, msg = failures[0]
        raise RankFailed(f"rank {rank} of {ctx.world_size} failed: {msg}") from error
    return [p for p, _ in gathered]
