"""Multi-process training: the process group, which process does what, and the wrapping.

`torchrun --nproc_per_node N -m dlm train ...` starts N processes with WORLD_SIZE,
RANK and LOCAL_RANK set; each runs the same Trainer. Every process reads the same
global batch and takes its own rows (see `dlm.training.optimizer_step`), so N processes
compute exactly what one process with the whole batch would. Only rank 0 writes
files and prints; collectives (gradients, checkpoints under FSDP) run on all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dlm.errors import ConfigError

PARALLEL = ("ddp", "fsdp")


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over processes (a collective: every process must call it)."""
        if self.distributed:
            tensor = tensor.clone()
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor


def init_world(device: str = "auto") -> World:
    """Join the process group torchrun set up (a single process: nothing to join)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return World(rank, local_rank, size)


def close_world(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def check_split(batch_size: int, grad_accum: int, world: World) -> int:
    """Rows per process per micro-batch; the global batch must split evenly."""
    parts = grad_accum * world.size
    if grad_accum < 1 or batch_size % parts:
        raise ConfigError(f"batch_size={batch_size} must split evenly into grad_accum="
                          f"{grad_accum} micro-batches x {world.size} processes")
    return batch_size // parts


def wrap(model: torch.nn.Module, world: World, parallel: str, device: torch.device):
    """The module the training step calls: DDP or FSDP around `model` (or `model` itself)."""
    if parallel not in PARALLEL:
        raise ConfigError(f"parallel must be one of {', '.join(PARALLEL)}, got {parallel!r}")
    if not world.distributed:
        return model
    if parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in model.blocks:  # shard per block: one block's weights gathered at a time
            fully_shard(block)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)
