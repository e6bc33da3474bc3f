"""Exponential moving average of a model's weights (the exported generator-side networks)."""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """A frozen copy whose parameters trail the trained model's; buffers (BN statistics) are copied."""

    def __init__(self, model: nn.Module, decay: float = 0.999):
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards `model`; early updates use a smaller decay so it forgets the init."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, live in zip(self.model.parameters(), model.parameters(), strict=True):
            avg.lerp_(live.detach().to(avg.dtype), 1 - decay)
        for avg, live in zip(self.model.buffers(), model.buffers(), strict=True):
            avg.copy_(live)

    def state_dict(self) -> dict:
        """Weights and update count, for checkpoints."""
        return {"model": self.model.state_dict(), "updates": self.updates}
