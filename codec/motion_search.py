"""Encoder motion search: fit a frame's motion symbols to the frame itself through the decoder's networks.

The encoder knows the true frame; the decoder only renders what the symbols say. Starting from H's
(+Δ's) estimate, a few gradient steps on the rendered error at the analysis size, plus a rate term
from the header's entropy model, move the symbols; the result is quantised and kept only if the
decoder's own rendering of it costs less than the estimate's. Networks and bitstream are unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from bitstream import StreamHeader, quantize

from .coding_defaults import SearchConfig
from .metrics import lpips_tensor


@dataclass
class SearchResult:
    """The symbols to send and the rendered costs of the estimate and of the choice (equal: the estimate kept)."""

    ints: dict[str, np.ndarray]
    start_cost: float
    cost: float


def bits_per_step(header: StreamHeader) -> dict[str, float]:
    """Bits the residual model spends per quantisation step of |residual|, per group (from its decay)."""
    return {g.name: -math.log2(max(p.decay, 1) / 65536.0) for g, p in zip(header.groups, header.params)}


def _resize(image: torch.Tensor, size: int) -> torch.Tensor:
    if image.shape[-1] == size and image.shape[-2] == size:
        return image
    return F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=image.shape[-1] > size)


def _plain(value):
    """`value` (a tensor, or a dict or dataclass of them) copied out of inference mode, so autograd may use it."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if is_dataclass(value):
        return replace(value, **{f.name: _plain(getattr(value, f.name)) for f in fields(value)})
    return value


def _small_state(state, size: int):
    """The keyframe state for rendering at the analysis size, usable by autograd."""
    with torch.inference_mode(False):
        state = _plain(state)
        # The image renderer keeps the keyframe at full size and renders at that size; the search
        # works at the analysis size, so it renders from a reduced keyframe (the rest is size-free).
        image = getattr(state, "image", None)
        return state if image is None else replace(state, image=_resize(image, size))


class MotionSearch:
    """Per-frame search for one stream; `reset(state)` at every keyframe, `refine` for every motion frame."""

    def __init__(self, model, header: StreamHeader, config: SearchConfig = SearchConfig()):
        self.model = model
        self.header = header
        self.config = config
        # Never compare above the size the model renders at or the stream's own: that would only interpolate.
        rendered = model.output_size or min(header.width, header.height)
        self.size = min(config.size or model.analysis_size, rendered, header.width, header.height)
        self._steps = {g.name: p.step for g, p in zip(header.groups, header.params)}
        self._bits = bits_per_step(header)
        self._state = None
        self._correction: dict[str, torch.Tensor] | None = None

    def reset(self, state) -> None:
        """A new keyframe: search against its analysed state; forget the previous frame's correction."""
        self._state = _small_state(state, self.size)
        self._correction = None

    def _distortion(self, rendered: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = {"l1": F.l1_loss, "mse": F.mse_loss, "lpips": lpips_tensor}[self.config.loss]
        return loss(_resize(rendered, self.size), target)

    def refine(self, estimate: Mapping[str, torch.Tensor], target: torch.Tensor, previous: Mapping[str, np.ndarray],
               shown: Callable[[dict[str, np.ndarray]], torch.Tensor]) -> SearchResult:
        """Symbols for one frame: `estimate` is H's motion, `target` the true frame (1,3,S,S) in [0,1],
        `previous` the integers the decoder holds, `shown(ints)` the frame the decoder would show for `ints`."""
        small_target = _resize(target, self.size)

        def exact_cost(ints: dict[str, np.ndarray]) -> float:
            rate = sum(self._bits[k] * np.abs(ints[k].astype(np.int64) - previous[k]).sum() for k in ints)
            return float(self._distortion(shown(ints), small_target)) + self.config.rate_weight * rate

        start_ints = quantize({k: v.detach().cpu().numpy() for k, v in estimate.items()}, self.header)
        start_cost = exact_cost(start_ints)
        if self.config.steps < 1:
            return SearchResult(start_ints, start_cost, start_cost)
        with torch.inference_mode(False), torch.enable_grad():
            params, scaled = self._fit(estimate, small_target.clone(), previous)
        found = {k: (v.detach() * self._steps[k]) for k, v in params.items()}
        ints = quantize({k: v.cpu().numpy() for k, v in found.items()}, self.header)
        cost = exact_cost(ints)
        if cost >= start_cost:
            self._correction = None
            return SearchResult(start_ints, start_cost, start_cost)
        self._correction = {k: (params[k].detach() - scaled[k]) for k in params}
        return SearchResult(ints, start_cost, cost)

    def _fit(self, estimate: Mapping[str, torch.Tensor], small_target: torch.Tensor,
             previous: Mapping[str, np.ndarray]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Adam on J = D + rate_weight · bits; returns (found, estimate), both in units of each group's step."""
        # Optimise in units of each group's step, so one learning rate suits every group.
        scaled = {k: (v.detach().clone() / self._steps[k]) for k, v in estimate.items()}
        start = scaled
        if self.config.warm_start and self._correction is not None:
            start = {k: v + self._correction[k] for k, v in scaled.items()}
        params = {k: v.clone().requires_grad_(True) for k, v in start.items()}
        prev = {k: torch.from_numpy(previous[k].astype(np.float32))[None].to(v.device) for k, v in params.items()}
        optimiser = torch.optim.Adam(params.values(), lr=self.config.lr)
        for _ in range(self.config.steps):
            optimiser.zero_grad()
            motion = {k: v * self._steps[k] for k, v in params.items()}
            rate = sum(self._bits[k] * (params[k] - prev[k]).abs().sum() for k in params)
            loss = self._distortion(self.model.render(self._state, motion), small_target) + \
                self.config.rate_weight * rate
            if self.config.anchor_weight:
                loss = loss + self.config.anchor_weight * sum(((params[k] - scaled[k]) ** 2).mean() for k in params)
            loss.backward()
            optimiser.step()
        return params, scaled

