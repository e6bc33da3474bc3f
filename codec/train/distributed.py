"""Training on several processes with torch DDP: one process per GPU (NCCL) or per CPU core (gloo).

`torchrun --nproc_per_node N -m codec.train.trainer ...` sets RANK, WORLD_SIZE and the rendezvous
variables; `fvc train` then joins the group, wraps the model's training forward in
DistributedDataParallel (gradients averaged over the processes after every backward), draws a
different batch on each process and lets rank 0 alone write logs, checkpoints and exports.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Group:
    """This process's place among the training processes (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1

    @property
    def leader(self) -> bool:
        """Whether this process writes the run's files."""
        return self.rank == 0


SINGLE = Group()


def launched_by_torchrun() -> bool:
    """Whether the environment describes a process group of more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join(device: torch.device) -> Group:
    """Join the group torchrun described: gloo on CPU, NCCL on CUDA (each rank on its LOCAL_RANK GPU)."""
    if not launched_by_torchrun():
        return SINGLE
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Group(dist.get_rank(), dist.get_world_size())


def leave() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_initialized():
        dist.destroy_process_group()


class TrainingForward(nn.Module):
    """`model.training_forward` as a module's forward, so DistributedDataParallel can wrap it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> dict:
        return self.model.training_forward(source, driving)


def training_forward(model: nn.Module, group: Group) -> nn.Module:
    """The callable that runs a training forward: DDP-wrapped when there are several processes."""
    forward = TrainingForward(model)
    if group.world == 1:
        return forward
    device_ids = [model_device(model).index] if model_device(model).type == "cuda" else None
    # broadcast_buffers off: each process keeps its own BatchNorm statistics, as one process would.
    return nn.parallel.DistributedDataParallel(forward, device_ids=device_ids, broadcast_buffers=False)


def model_device(model: nn.Module) -> torch.device:
    """Device of a model's first parameter."""
    return next(model.parameters()).device


def any_process(flag: bool, group: Group, device: torch.device) -> bool:
    """True on every process when it is true on any: all stop at the same step, or none does."""
    if group.world == 1:
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
