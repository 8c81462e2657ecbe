"""What N data-parallel training processes must agree on, so that they train like one process: process k
runs global micro-batches k, k + N, k + 2N, … (accelerate's round-robin sharding), so a global optimizer step
covers the same essays as one process with N times the gradient accumulation. Every helper is the identity,
and never communicates, when training runs in one process."""

from __future__ import annotations

from collections.abc import Iterator

import torch


def world() -> tuple[int, int]:
    """(this process's index, number of processes) of the initialised `torch.distributed` group; (0, 1) without."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_in_process_order(tensor: torch.Tensor) -> torch.Tensor:
    """Every process's `tensor` stacked along a new first axis, indexed by process (a collective: every process
    must call it, in the same order)."""
    import torch.distributed as dist

    _, size = world()
    parts = [torch.empty_like(tensor) for _ in range(size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.stack(parts)


def per_process_accumulation(accumulation_steps: int, num_processes: int) -> int:
    """Micro-batches per optimizer step in each of `num_processes` processes, so the step's global batch stays
    `accumulation_steps` micro-batches; raises ValueError when they do not divide."""
    if accumulation_steps % num_processes:
        raise ValueError(f"{accumulation_steps} micro-batches per optimizer step (effective_batch / batch_size) do not "
                         f"split over {num_processes} processes: make effective_batch a multiple of "
                         f"batch_size x {num_processes}")
    return accumulation_steps // num_processes


def global_micro_batch(local_step: int, rank: int, num_processes: int) -> int:
    """The global index of this process's `local_step`-th micro-batch (the one a single process would run)."""
    return local_step * num_processes + rank


def interleave(per_process: torch.Tensor) -> torch.Tensor:
    """(N processes, T local steps) values → the N·T values in global micro-batch order."""
    return per_process.t().reshape(-1)


class ShardableBatches:
    """A batch sampler seen with no fixed `batch_size`: accelerate then deals its batches round-robin to the
    processes whatever their sizes. (With a `batch_size` it withholds every round whose last batch is short,
    and length bucketing leaves a short batch at the end of each bucket, so essays would silently go
    untrained.)"""

    batch_size = None

    def __init__(self, batches):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)
