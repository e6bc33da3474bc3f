"""`fvc train`: train fv2v or FOMM on a prepared cache, checkpoint, resume, export EMA weights + card.

    python -m codec.train.trainer --model fv2v --config small --cache /work/cache256 --out runs/a \
        --device cuda --minutes 8 [--resume] [--split-mib 15]

The run folder holds checkpoint.pt (model, EMA, discriminator, optimisers, RNG), losses.csv,
val.csv, samples/step_*.png and the exported `<kind>-<config>.pt` with its JSON card.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from codec.data.augment import AugmentConfig
from codec.data.cache import CacheIndex
from codec.data.sampler import FrameStore, PairDataset
from codec.errors import CodecError, InputError, OutputError, is_user_error, one_line
from codec.metrics import vgg16_features
from codec.models.config import FV2VConfig
from codec.models.discriminator import MultiScaleDiscriminator
from codec.models.fomm.config import FOMMConfig
from codec.models.keypoint_transform import transform_keypoints
from codec.motion_model import build_untrained, channels_last, kind_name, save_weights
from codec.train import losses
from codec.train import distributed
from codec.train.checkpoint import load_checkpoint, manifest_path, save_checkpoint, split_file
from codec.train.ema import EMA
from codec.train.warp import RandomWarp, WarpConfig

CHECKPOINT_NAME = "checkpoint.pt"


class TrainError(CodecError):
    """A training run that cannot start or continue (bad cache, clashing resume, missing device)."""


# FOMM as published trains without a GAN (vox-256 sets generator_gan to 0) and has no 3D prior.
_FOMM_WEIGHTS = losses.LossWeights(gan=0.0, feature_matching=0.0, keypoint_prior=0.0, head_pose=0.0,
                                   deformation=0.0)
# The image renderer takes its pixels from the keyframe: no GAN, and keypoints tied to face landmarks
# in place of the equivariance and spread priors (close landmarks such as the inner lips would fight
# the spread prior). Pixel L1 keeps the warp aligned at full resolution.
_IMAGE_WEIGHTS = losses.LossWeights(gan=0.0, feature_matching=0.0, equivariance=0.0, jacobian_equivariance=0.0,
                                    keypoint_prior=0.0, deformation=1.0, pixel=10.0, landmark=100.0)
# Its network paints only at 64²; detail comes from the keyframe. VGG16 on the 256² and 128² pyramid
# levels was 10 of a step's 11 s on this CPU; the 64² and 32² levels cost 0.6 s.
_IMAGE_PERCEPTUAL_SCALES = (0.25, 0.125)
# The still-background renderer also trains on consecutive frames: their change against the source's
# (wobble), and a small pull of the foreground mask toward moving no more than it must. The temporal
# term is a mean |Δ| of ~0.006 over a whole frame: at 50 it weighs ~0.3, as the pixel term does, where
# the perceptual term weighs ~25 (the first 120 steps of the fine-tune, at 10, left it at 0.06).
_STILL_WEIGHTS = dataclasses.replace(_IMAGE_WEIGHTS, temporal=50.0, foreground=0.1)
# FOMM in the image renderer family keeps its own keypoint training (equivariance, no landmarks) and takes the
# image renderer's pixel term and pyramid, so only the motion representation differs from warp128's.
_FOMM_IMAGE_WEIGHTS = dataclasses.replace(_FOMM_WEIGHTS, pixel=_IMAGE_WEIGHTS.pixel)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on; stored in checkpoints and in the exported card."""

    model: str = "fv2v"
    config: str = "small"
    batch_size: int = 4
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    ema_decay: float = 0.999
    seed: int = 0
    weights: losses.LossWeights = field(default_factory=losses.LossWeights)
    perceptual_scales: tuple[float, ...] = losses.PERCEPTUAL_SCALES
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    warp: WarpConfig = field(default_factory=WarpConfig)

    @classmethod
    def for_model(cls, model: str, **kwargs) -> TrainConfig:
        """Defaults of a model kind and renderer (FOMM drops the losses it was not trained with)."""
        name = kwargs.get("config", cls.config)
        if kind_name(model) == "fomm":
            image = FOMMConfig.named(name).renderer == "image"
            kwargs.setdefault("weights", _FOMM_IMAGE_WEIGHTS if image else _FOMM_WEIGHTS)
        elif image := (model_config := FV2VConfig.named(name)).renderer == "image":
            still = model_config.image.background == "still"
            kwargs.setdefault("weights", _STILL_WEIGHTS if still else _IMAGE_WEIGHTS)
        if image:
            kwargs.setdefault("perceptual_scales", _IMAGE_PERCEPTUAL_SCALES)
        return cls(model=kind_name(model), **kwargs)


@dataclass(frozen=True)
class RunOptions:
    """How long and how often: not part of what the weights depend on."""

    steps: int | None = None
    minutes: float | None = None
    device: str = "cpu"
    checkpoint_every: int = 500
    log_every: int = 10
    image_every: int = 250
    val_every: int = 500
    split_mib: float = 0.0
    data_on_device: bool = True


class Trainer:
    """Generator-side model + discriminator + EMA, trained on pairs from a FrameStore."""

    def __init__(self, config: TrainConfig, store: FrameStore, out_dir: Path, options: RunOptions = RunOptions(),
                 val_store: FrameStore | None = None, data_info: dict | None = None,
                 perceptual_features: torch.nn.Module | None = None, group: distributed.Group = distributed.SINGLE):
        """`perceptual_features` replaces VGG16 (relu1_2 … relu5_3) in the perceptual loss; tests pass a tiny net.
        In a `group` of several processes each draws its own batches and rank 0 alone writes files."""
        self.config, self.options, self.out, self.group = config, options, Path(out_dir), group
        self.device = torch.device(options.device)
        if self.device.type == "cuda":
            if not torch.cuda.is_available():
                raise TrainError("--device cuda asked for, but torch sees no CUDA device")
            torch.backends.cudnn.benchmark = True
        self.kind = kind_name(config.model)
        if self.kind == "fv2v":
            _check_labels(config.weights, store)
        self.model = channels_last(build_untrained(config.model, config.config, config.seed).to(self.device).train())
        self.forward = distributed.training_forward(self.model, group)
        size = store.frames.shape[-1]
        if size < self.model.output_size:  # 0 (image renderer): any cache size will do
            raise TrainError(f"cache frames are {size}², smaller than the model's {self.model.output_size}² output: "
                             f"prepare a cache with --size {self.model.output_size}")
        data_device = self.device if options.data_on_device else torch.device("cpu")
        self.data = PairDataset(store.to(data_device), config.augment)
        self.val_data = PairDataset(val_store.to(data_device)) if val_store is not None else None
        self.data_info = data_info or {}
        self.generator = torch.Generator().manual_seed(self._sampler_seed())
        features = perceptual_features if perceptual_features is not None else vgg16_features(str(self.device))
        self.perceptual = losses.PerceptualLoss(channels_last(features.to(self.device)), config.perceptual_scales)
        w = config.weights
        self.discriminator = None
        if w.gan > 0 or w.feature_matching > 0:
            self.discriminator = channels_last(MultiScaleDiscriminator(self.model.config).to(self.device).train())
        self.opt_g = torch.optim.Adam(self.model.parameters(), lr=config.lr, betas=config.betas)
        self.opt_d = (torch.optim.Adam(self.discriminator.parameters(), lr=config.lr, betas=config.betas)
                      if self.discriminator is not None else None)
        self.ema = EMA(self.model, config.ema_decay)
        self.step = 0
        self.samples_seen = 0
        self.wall_time = 0.0
        self._stop_requested = False
        self.last_losses: dict[str, float] = {}
        self.origin: list[dict] = []  # runs this one was initialised from (--init-from), newest first

    # --- one iteration -------------------------------------------------------------------------
    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _batch(self) -> dict[str, torch.Tensor]:
        batch = self.data.batch(self.config.batch_size, self.generator, previous=self.config.weights.temporal > 0)
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def generator_losses(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
        """Unweighted loss terms of the generator side and the model outputs.

        A batch with `previous` frames renders them too, from the same sources, as a second half of the
        batch: every term then covers both halves, and the temporal term compares their change."""
        if "previous" in batch:
            batch = _with_previous_frames(batch)
        source, driving = batch["source"], batch["driving"]
        out = self.forward(source, driving)
        prediction = out["prediction"]
        target = _resize_to(driving, prediction.shape[-1])
        terms = {"perceptual": self.perceptual(prediction, target)}
        w = self.config.weights
        if w.temporal > 0:
            now, before = prediction.float().chunk(2)
            target_now, target_before = target.float().chunk(2)
            terms["temporal"] = losses.temporal_loss(now, before, target_now, target_before)
        if w.foreground > 0:
            terms["foreground"] = out["foreground"].float().mean()
        if w.pixel > 0:
            terms["pixel"] = (prediction.float() - target.float()).abs().mean()
        if self.discriminator is not None:
            fake = self.discriminator(prediction)
            with torch.no_grad():
                real = self.discriminator(target)
            terms["gan"] = losses.hinge_generator_loss([o.logits for o in fake])
            terms["feature_matching"] = losses.feature_matching_loss([o.features for o in real],
                                                                     [o.features for o in fake])
        if w.equivariance > 0 or w.jacobian_equivariance > 0:
            terms.update(self._equivariance(out, driving))
        if self.kind == "fv2v":
            drv = out["driving"]
            if w.keypoint_prior > 0:
                terms["keypoint_prior"] = losses.keypoint_prior_loss(drv["keypoints"])
            if w.head_pose > 0:
                terms["head_pose"] = 0.5 * (
                    losses.head_pose_loss(out["source"]["pose_logits"], out["source"]["rotation"], batch["source_pose"])
                    + losses.head_pose_loss(drv["pose_logits"], drv["rotation"], batch["driving_pose"]))
            if w.deformation > 0:
                terms["deformation"] = losses.deformation_prior_loss(drv["expression"])
            if w.landmark > 0:
                terms["landmark"] = 0.5 * (
                    losses.landmark_loss(out["source"]["keypoints"], batch["source_landmarks"])
                    + losses.landmark_loss(drv["keypoints"], batch["driving_landmarks"]))
        return terms, out

    def weighted_total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The generator's objective: the loss terms times their `LossWeights`."""
        w = asdict(self.config.weights)
        return sum(w[name] * value.float() for name, value in terms.items())

    def _sampler_seed(self) -> int:
        # Rank 0 draws what a single process draws; the others draw their own batches.
        return self.config.seed + 7919 * self.group.rank

    def _equivariance(self, out: dict, driving: torch.Tensor) -> dict[str, torch.Tensor]:
        warp = RandomWarp(driving.shape[0], self.config.warp, generator=self.generator, device=self.device)
        warped = warp.warp_image(driving)
        if self.kind == "fv2v":
            # The warped frame keeps the source's canonical keypoints (as the driving frame does), so
            # only H+Δ must follow the warp; L stays free to be pose-invariant.
            pose = self.model.pose(warped)
            warped_kp = transform_keypoints(out["source"]["canonical"], pose["rotation"], pose["translation"],
                                            pose["expression"])
            return {"equivariance": losses.equivariance_loss(out["driving"]["keypoints"], warped_kp, warp)}
        kp = self.model.keypoints(warped)
        drv = out["driving"]
        terms = {"equivariance": losses.equivariance_loss(drv["keypoints"], kp["keypoints"], warp)}
        if self.config.weights.jacobian_equivariance > 0:
            terms["jacobian_equivariance"] = losses.jacobian_equivariance_loss(
                drv["jacobians"], kp["keypoints"], kp["jacobians"], warp)
        return terms

    def train_step(self) -> dict[str, float]:
        """One generator update and (with a GAN) one discriminator update; returns the loss terms."""
        batch = self._batch()
        if self.discriminator is not None:
            # D is a fixed critic during the generator update: no gradients to compute for it.
            self.discriminator.requires_grad_(False)
        with self._autocast():
            terms, out = self.generator_losses(batch)
        total = self.weighted_total(terms)
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self.opt_g.step()
        logged = {name: float(value.detach()) for name, value in terms.items()}
        logged["generator_total"] = float(total.detach())
        if self.discriminator is not None:
            target = _resize_to(batch["driving"], out["prediction"].shape[-1])
            self.discriminator.requires_grad_(True)
            with self._autocast():
                real = self.discriminator(target)
                fake = self.discriminator(out["prediction"].detach())
                d_loss = losses.hinge_discriminator_loss([o.logits.float() for o in real],
                                                         [o.logits.float() for o in fake])
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            logged["discriminator"] = float(d_loss.detach())
        self.ema.update(self.model)
        self.step += 1
        self.samples_seen += self.config.batch_size * self.group.world
        if not all(math.isfinite(v) for v in logged.values()):
            raise TrainError(f"non-finite loss at step {self.step}: {logged}")
        self.last_losses = logged
        self._last_batch, self._last_prediction = batch, out["prediction"].detach()
        return logged

    # --- evaluation and outputs ----------------------------------------------------------------
    @torch.no_grad()
    def validate(self, pairs: int = 8) -> dict[str, float]:
        """EMA model on a fixed set of validation pairs: mean L1 and perceptual loss, and (fv2v with the
        landmark loss) the mean distance of driving keypoints to their landmarks in cache pixels."""
        if self.val_data is None:
            return {}
        batch = self.val_data.batch(pairs, torch.Generator().manual_seed(1234))
        model = self.ema.model
        with self._autocast():
            out = model.training_forward(batch["source"].to(self.device), batch["driving"].to(self.device))
            prediction = out["prediction"].float()
            target = _resize_to(batch["driving"].to(self.device), prediction.shape[-1])
            perceptual = self.perceptual(prediction, target)
        result = {"val_l1": float((prediction - target).abs().mean()), "val_perceptual": float(perceptual)}
        if self.kind == "fv2v" and self.config.weights.landmark > 0:
            # Mean per-coordinate |Δ| in [-1, 1] units, as pixels of the cache frames.
            error = losses.landmark_loss(out["driving"]["keypoints"], batch["driving_landmarks"].to(self.device))
            result["val_landmark_px"] = float(error) * (batch["driving"].shape[-1] - 1) / 2
        return result

    def save_sample_grid(self) -> Path:
        """PNG with rows source / driving / output for up to 4 pairs of the last batch."""
        from torchvision.utils import save_image

        batch, prediction = self._last_batch, self._last_prediction.float().clamp(0, 1)
        # With previous frames the prediction holds 2B renders; the first B are the driving frames'.
        n, size = min(4, batch["source"].shape[0]), prediction.shape[-1]
        rows = [_resize_to(batch["source"][:n], size), _resize_to(batch["driving"][:n], size), prediction[:n]]
        path = self.out / "samples" / f"step_{self.step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(torch.cat(rows).float().cpu(), path, nrow=n)
        return path

    def state_dict(self) -> dict:
        """Everything needed to continue bit-for-bit (up to non-deterministic GPU kernels)."""
        return {
            "train_config": _plain(asdict(self.config)),
            "step": self.step,
            "samples_seen": self.samples_seen,
            "wall_time": self.wall_time,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "discriminator": self.discriminator.state_dict() if self.discriminator is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d is not None else None,
            "sampler_rng": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "origin": self.origin,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state_dict()` output of a run with the same model, config and losses."""
        saved = state["train_config"]
        mine = _plain(asdict(self.config))
        # Every setting the weights depend on: a resumed run that changed one would record settings in
        # the card that the optimiser (which keeps the checkpoint's learning rate) never used.
        for key in mine:
            if saved.get(key) != mine[key]:
                raise TrainError(f"checkpoint was trained with {key}={saved.get(key)!r}, this run has {mine[key]!r}")
        self._take_weights_and_counters(state)
        self.origin = state.get("origin", [])
        if state.get("compact"):  # no optimiser moments were kept: Adam starts afresh at the same settings
            print("compact checkpoint: the optimiser starts afresh", flush=True)
            return
        if self.discriminator is not None:
            self.opt_d.load_state_dict(state["opt_d"])
        self.opt_g.load_state_dict(state["opt_g"])

    def start_from(self, state: dict, source: str) -> None:
        """A fine-tune: another run's weights, EMA, data order and step count under this run's settings.

        The optimiser starts afresh, so a new learning rate takes effect. The model kind must be the
        same; another config may extend the checkpoint's (warp128 → warp128bg): every saved tensor must
        fit a tensor of this model, and the modules the checkpoint lacks keep their initial weights.
        """
        saved = state["train_config"]
        if saved.get("model") != self.config.model:
            raise TrainError(f"{source} was trained with model={saved.get('model')!r}, this run has "
                             f"{self.config.model!r}")
        extends = saved.get("config") != self.config.config
        new = self._take_weights_and_counters(state, partial=extends)
        if extends:
            print(f"{source} ({saved.get('config')}) lacks {len(new)} tensors of {self.config.config}; they start "
                  f"from their initial values: {', '.join(sorted({k.split('.')[0] for k in new}))}", flush=True)
        self.origin = [{"checkpoint": source, "step": self.step, "training": saved}, *state.get("origin", [])]

    def _take_weights_and_counters(self, state: dict, partial: bool = False) -> list[str]:
        """Model, EMA and discriminator weights, RNG states and step counts of a `state_dict()`.

        `partial` accepts a checkpoint that lacks some of the model's tensors; returns their names."""
        missing = _load_weights(self.model, state["model"], partial)
        _load_weights(self.ema.model, state["ema"]["model"], partial)
        self.ema.updates = int(state["ema"]["updates"])
        if self.discriminator is not None and state.get("discriminator") is not None:
            self.discriminator.load_state_dict(state["discriminator"])
        self.generator.set_state(state["sampler_rng"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.samples_seen = int(state["step"]), int(state["samples_seen"])
        if self.group.rank:  # the checkpoint holds rank 0's sampler; the others go on from a seed of their own
            self.generator.manual_seed(self._sampler_seed() + self.step)
        self.wall_time = float(state["wall_time"])
        return missing

    def save_checkpoint(self) -> Path:
        """Write checkpoint.pt (and its parts when `split_mib` is set)."""
        path = self.out / CHECKPOINT_NAME
        save_checkpoint(self.state_dict(), path)
        if self.options.split_mib > 0:
            split_file(path, int(self.options.split_mib * 2**20))
        return path

    def export(self) -> Path:
        """EMA weights through `save_weights`, with a card saying how they were made."""
        path = self.out / f"{self.kind}-{self.config.config}.pt"
        card = {
            "training": _plain(asdict(self.config)),
            "data": self.data_info,
            "steps": self.step,
            "samples_seen": self.samples_seen,
            "wall_time_s": round(self.wall_time, 1),
            "device": device_name(self.device),
            "processes": self.group.world,
            "last_losses": self.last_losses,
            **({"initialised_from": self.origin} if self.origin else {}),
        }
        save_weights(self.ema.model, path, card, force=True)
        return path

    def request_stop(self) -> None:
        """Finish the current step, then checkpoint and export (the SIGTERM handler calls this)."""
        self._stop_requested = True

    # --- the loop -------------------------------------------------------------------------------
    def run(self) -> Path | None:
        """Train until `steps` or the `minutes` budget or a stop request; checkpoint and export.

        Every process stops at the same step; rank 0 writes the files and returns the export."""
        opts = self.options
        started, step_time = time.monotonic(), 0.0
        log_path = self.out / "losses.csv"
        window_start, window_samples = time.monotonic(), 0
        leader = self.group.leader
        while True:
            elapsed = time.monotonic() - started
            stop = (self._stop_requested or (opts.steps is not None and self.step >= opts.steps)
                    or (opts.minutes is not None and elapsed + 2 * step_time > opts.minutes * 60))
            if distributed.any_process(stop, self.group, self.device):
                break
            t0 = time.monotonic()
            logged = self.train_step()
            step_time = time.monotonic() - t0
            self.wall_time += step_time
            window_samples += self.config.batch_size * self.group.world
            if not leader:
                continue
            if self.step % opts.log_every == 0 or self.step == 1:
                rate = window_samples / max(time.monotonic() - window_start, 1e-9)
                _append_csv(log_path, {"step": self.step, "samples_seen": self.samples_seen,
                                       "wall_time_s": round(self.wall_time, 2), "samples_per_s": round(rate, 3),
                                       **{k: round(v, 6) for k, v in logged.items()}})
                print(f"step {self.step} G {logged['generator_total']:.4f} "
                      f"perceptual {logged['perceptual']:.4f} {rate:.2f} samples/s{_memory(self.device)}", flush=True)
                window_start, window_samples = time.monotonic(), 0
            if self.step % opts.image_every == 0:
                self.save_sample_grid()
            if self.val_data is not None and self.step % opts.val_every == 0:
                _append_csv(self.out / "val.csv", {"step": self.step, **self.validate()})
            if self.step % opts.checkpoint_every == 0:
                self.save_checkpoint()
        if not leader:
            return None
        self.save_checkpoint()
        return self.export()


def _load_weights(module: torch.nn.Module, weights: dict, partial: bool) -> list[str]:
    """Load a state dict; with `partial`, tensors it lacks are allowed and returned, none it has may be spare."""
    try:
        result = module.load_state_dict(weights, strict=not partial)
    except RuntimeError as exc:
        raise TrainError(f"checkpoint weights do not fit this model: {one_line(exc)}") from None
    if result.unexpected_keys:
        raise TrainError(f"checkpoint holds tensors this model lacks: {', '.join(result.unexpected_keys[:5])}")
    return list(result.missing_keys)


def _with_previous_frames(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A batch of B pairs and their previous frames as 2B pairs: (source, driving) then (source, previous)."""
    out = {}
    for key in ("source", "driving"):
        for part in ("", "_pose", "_landmarks"):
            then = "source" if key == "source" else "previous"
            out[key + part] = torch.cat([batch[key + part], batch[then + part]])
    return out


def _append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def _memory(device: torch.device) -> str:
    if device.type != "cuda":
        return ""
    return f" GPU {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB peak"


def device_name(device: torch.device) -> str:
    """Human-readable device for cards and logs."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def _resize_to(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def _plain(value):
    """Tuples to lists so saved configs compare equal to freshly built ones."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def data_summary(cache: Path, store: FrameStore, split: str) -> dict:
    """What the card says about the training data."""
    # The folder's name, not its path: cards are committed, and the cache lives outside the checkout.
    return {"cache": f"CACHE ({Path(cache).name})", "split": split, "clips": len(store.clips),
            "identities": len({c.identity for c in store.clips}), "frames": int(store.frames.shape[0]),
            "size": int(store.frames.shape[-1]),
            "crops": {mode: sum(c.crop == mode for c in store.clips) for mode in sorted({c.crop for c in store.clips})},
            "pose_labelled": _labelled_fraction(store.poses),
            "landmark_labelled": _labelled_fraction(store.landmarks)}


def _labelled(labels: torch.Tensor) -> torch.Tensor:
    """Per frame of labels (N, ...): are they all finite."""
    return torch.isfinite(labels.flatten(1)).all(1)


def _labelled_fraction(labels: torch.Tensor) -> float:
    """Share of frames whose labels (N, ...) are all finite."""
    return round(float(_labelled(labels).float().mean()), 4)


def _check_labels(weights: losses.LossWeights, store: FrameStore) -> None:
    """Refuse an fv2v loss whose labels no training frame has: it skips NaN labels, so the run would
    go on without it, silently (a cache prepared without face detection has neither)."""
    needed = {"head-pose loss needs pose labels": (weights.head_pose, store.poses),
              "landmark loss needs face landmarks": (weights.landmark, store.landmarks)}
    missing = [what for what, (weight, labels) in needed.items() if weight > 0 and not _labelled(labels).any()]
    if missing:
        raise TrainError(f"the {' and the '.join(missing)}, but none of the {len(store.frames)} training frames has "
                         "them (the cache was prepared with --centre-crop or without MediaPipe): prepare it again "
                         "with face detection (pip install 'fvc[prepare]', no --centre-crop)")


def _scales(text: str) -> tuple[float, ...]:
    """`--perceptual-scales`: comma-separated fractions in (0, 1]."""
    try:
        scales = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not scales or not all(0 < scale <= 1 for scale in scales):
        raise argparse.ArgumentTypeError(f"{text!r}: every scale must be in (0, 1]")
    return scales


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of `fvc train`."""
    p = argparse.ArgumentParser(prog="fvc train", description="Train a motion model on a prepared cache.")
    p.add_argument("--model", default="fv2v", choices=("fv2v", "fomm"), help="model kind (default %(default)s)")
    p.add_argument("--config", default="small", help="model preset: test, small, ... (default %(default)s)")
    p.add_argument("--cache", type=Path, required=True, metavar="DIR", help="folder written by `fvc prepare`")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="run folder (checkpoint, logs, exported weights)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device (default %(default)s: cuda when torch sees a GPU, else cpu)")
    p.add_argument("--batch-size", type=int, default=4, metavar="N",
                   help="source/driving pairs per step (default %(default)s)")
    p.add_argument("--lr", type=float, default=2e-4, help="learning rate (default %(default)s)")
    p.add_argument("--perceptual-scales", type=_scales, metavar="S,S,...",
                   help="pyramid levels of the VGG perceptual term as fractions of the cache's frame size (default: "
                        f"{_IMAGE_PERCEPTUAL_SCALES} for the image renderers, {losses.PERCEPTUAL_SCALES} otherwise)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the initial weights and the sampled pairs (default %(default)s)")
    p.add_argument("--steps", type=int, metavar="N", help="stop at this total step count")
    p.add_argument("--minutes", type=float, help="stop after this much training time in this call")
    p.add_argument("--checkpoint-every", type=int, default=500, metavar="N",
                   help="save checkpoint.pt every N steps, and at the end (default %(default)s)")
    p.add_argument("--log-every", type=int, default=10, metavar="N",
                   help="print and append to losses.csv every N steps (default %(default)s)")
    p.add_argument("--image-every", type=int, default=250, metavar="N",
                   help="save a sample grid to samples/ every N steps (default %(default)s)")
    p.add_argument("--val-every", type=int, default=500, metavar="N",
                   help="validate on the cache's val split into val.csv every N steps (default %(default)s)")
    p.add_argument("--max-clips", type=int, metavar="N", help="use only the first N clips (smoke tests)")
    p.add_argument("--split-mib", type=float, default=0.0, metavar="MIB",
                   help="also write checkpoint.pt as parts of at most this many MiB (15 for the device machine; "
                        "default %(default)s = no parts)")
    p.add_argument("--data-on-cpu", action="store_true", help="keep decoded frames in host memory")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt (or its parts)")
    p.add_argument("--init-from", type=Path, metavar="CHECKPOINT",
                   help="start a new run in OUT from another run's checkpoint: its weights, EMA, data order and "
                        "step count with this run's settings (a lower --lr, say) and a fresh optimiser")
    p.add_argument("--force", action="store_true", help="start afresh even though OUT holds a checkpoint")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of `fvc train` / `python -m codec.train.trainer`."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except Exception as exc:
        if isinstance(exc, TrainError) or is_user_error(exc):
            print(f"error: {one_line(exc)}", file=sys.stderr)
            return 1
        raise


def _checkpoint_exists(path: Path) -> bool:
    """Whether a checkpoint is there whole or as parts (load_checkpoint joins them)."""
    return path.is_file() or manifest_path(path).is_file()


def _run(args) -> int:
    if args.steps is None and args.minutes is None:
        raise InputError("give --steps or --minutes (or both)")
    checkpoint = args.out / CHECKPOINT_NAME
    has_checkpoint = _checkpoint_exists(checkpoint)
    if has_checkpoint and not (args.resume or args.force):
        raise OutputError(f"{args.out} already holds a checkpoint: pass --resume to continue or --force to restart")
    if args.resume and not has_checkpoint:
        raise InputError(f"--resume: no checkpoint in {args.out}")
    if args.resume and args.init_from:
        raise InputError("--init-from starts a new run and --resume continues OUT's own: give one of them")
    if args.init_from and not _checkpoint_exists(args.init_from):
        raise InputError(f"--init-from: no checkpoint at {args.init_from}")
    scales = {} if args.perceptual_scales is None else {"perceptual_scales": args.perceptual_scales}
    config = TrainConfig.for_model(args.model, config=args.config, batch_size=args.batch_size, lr=args.lr,
                                   seed=args.seed, **scales)
    options = RunOptions(steps=args.steps, minutes=args.minutes, device=args.device,
                         checkpoint_every=args.checkpoint_every, log_every=args.log_every,
                         image_every=args.image_every, val_every=args.val_every, split_mib=args.split_mib,
                         data_on_device=not args.data_on_cpu)
    group = distributed.join(torch.device(args.device))
    t0 = time.monotonic()
    store = FrameStore.from_cache(args.cache, "train", args.max_clips)
    has_val = bool(CacheIndex.load(args.cache).select("val"))
    val_store = FrameStore.from_cache(args.cache, "val", args.max_clips) if has_val else None
    print(f"decoded {store.frames.shape[0]} train frames from {len(store.clips)} clips "
          f"in {time.monotonic() - t0:.1f} s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(config, store, args.out, options, val_store, data_summary(args.cache, store, "train"),
                      group=group)
    if args.resume:
        trainer.load_state_dict(load_checkpoint(checkpoint))
        print(f"resumed at step {trainer.step}", flush=True)
    elif args.init_from:
        trainer.start_from(load_checkpoint(args.init_from), str(args.init_from))
        print(f"initialised from {args.init_from} at step {trainer.step}", flush=True)
    previous = signal.signal(signal.SIGTERM, lambda *_: trainer.request_stop())
    try:
        exported = trainer.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
        distributed.leave()
    if group.leader:
        print(f"step {trainer.step}, {trainer.samples_seen} samples, {trainer.wall_time:.0f} s on "
              f"{device_name(trainer.device)} x {group.world} process(es); exported {exported}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
