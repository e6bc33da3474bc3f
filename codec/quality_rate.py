"""`--kbps` with `--quality`: the constant quality whose clip lands nearest a target rate, over the whole range.

The rate falls with Q, from every frame coded (~500 kbps at 512²) to one keyframe and motion (~8 kbps), so a
search on Q over full closed-loop passes reaches any target between: a first guess from the coded pictures'
rate slope, then interpolation in ln kbps between the nearest passes above and below the target.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Callable, Iterable

import numpy as np

from .coding_defaults import QUALITY_MAX, QUALITY_MIN
from .encoder import EncodedClip, EncoderConfig, EncodeStats, encode_clip
from .errors import InputError, RateControlError
from .quality import CODED_RATE_SLOPE, QualitySettings, quality_settings

# The issue's bar: within ±10 % of the target. Whole QPs move the coded pictures' rate by ~10 % each, and a
# fraction of Q moves the refresh threshold, so a fractional Q reaches between them.
RATE_TOLERANCE = 0.10
# Full passes at most: each renders the whole clip (a 10 s clip at 512² takes 20-40 s on one core). 8 were one short
# on bench512 cnn2 at 100 kbps once the landmark refresh moved its rates: the target lies in a cliff 0.1 Q wide just
# above Q 32.73, where every frame stops being coded, and pass 8 left it bracketed between 115 and 60 kbps.
MAX_PASSES = 10
# Qs tried at most, counting those whose settings a pass already coded (no pass): a bound on the loop alone.
MAX_TRIES = 4 * MAX_PASSES
# Qs closer than this are one setting. Just above Q 32.73, where the threshold climbs toward every frame coded,
# 0.01 of Q moves it by 1-4 dB.
Q_RESOLUTION = 0.01
# One side of the target only: a secant flatter than this share of the coded pictures' slope means Q barely
# moves the rate there, so the next pass goes to the end of the scale at once rather than creep.
FLAT_SLOPE_SHARE = 0.25


@dataclass(frozen=True)
class QualityRateChoice:
    """Where the search on Q ended: the Q and rate written, every pass, and the reachable span when it missed."""

    target_kbps: float
    quality: float
    kbps: float
    passes: tuple[tuple[float, float], ...]  # (Q, kbps) of each full pass, in order
    pass_seconds: tuple[float, ...]
    reachable: tuple[float, float] | None = None  # (lowest, highest) kbps when the target lies outside them

    @property
    def missed(self) -> bool:
        return self.reachable is not None


def _next_quality(passes: dict[float, float], target: float) -> float | None:
    """The next Q to try (None: no Q between those tried can do better)."""
    above = [(q, r) for q, r in passes.items() if r > target]  # too many bytes: Q must rise
    below = [(q, r) for q, r in passes.items() if r <= target]
    if above and below:
        (q0, r0), (q1, r1) = max(above), min(below)
        if q1 - q0 <= Q_RESOLUTION:
            return None
        guess = q0 + (math.log(target) - math.log(r0)) * (q1 - q0) / (math.log(r1) - math.log(r0))
        # Outside the bracket's middle half the rate is far from straight in ln kbps there (a cliff: cnn2 at
        # 100 kbps gave 132.7 kbps at Q 31.56, 32.09 and 32.48, 33.7 at 33.67): halve the bracket instead, so
        # every pass at least halves it rather than creeping in from one end.
        return guess if abs(guess - (q0 + q1) / 2) <= (q1 - q0) / 4 else (q0 + q1) / 2
    q, r = max(above) if above else min(below)
    edge = QUALITY_MAX if above else QUALITY_MIN
    if q == edge:
        return None
    slope = CODED_RATE_SLOPE
    side = sorted(above or below)
    if len(side) >= 2:  # the secant through the two passes nearest the target, where the rate is flatter
        (qa, ra), (qb, rb) = side[-2:] if above else side[:2]
        slope = max(slope, (math.log(rb) - math.log(ra)) / (qb - qa))
        if slope > FLAT_SLOPE_SHARE * CODED_RATE_SLOPE:  # flat (one keyframe and motion, or every frame coded)
            return float(edge)
    return min(max(q + (math.log(target) - math.log(r)) / slope, QUALITY_MIN), QUALITY_MAX)


def encode_quality_to_rate(frame_source: Callable[[], Iterable[np.ndarray]], model, base: EncoderConfig,
                           model_id: bytes, target_kbps: float, start: float, strict: bool = False,
                           on_pass: Callable[[int, float], Callable[[EncodeStats], None] | None] | None = None,
                           ) -> tuple[EncodedClip, QualityRateChoice]:
    """The clip `frame_source()` yields, encoded at the Q (searched from `start`) whose rate is nearest
    `target_kbps`; RateControlError with `strict` when no Q lands within RATE_TOLERANCE."""
    if not (math.isfinite(target_kbps) and target_kbps > 0):
        raise InputError(f"--kbps {target_kbps} must be a positive number")
    clips: dict[float, EncodedClip] = {}  # each full pass's clip, by its Q
    rates: dict[float, float] = {}  # every Q tried, coded or known from a twin
    coded: dict[QualitySettings, float] = {}  # the settings of each full pass -> its Q, in pass order
    seconds: list[float] = []
    quality: float | None = start
    for _ in range(MAX_TRIES):
        if quality is None or len(coded) >= MAX_PASSES:
            break
        quality = round(quality, 2)
        if quality in rates:
            break
        settings = quality_settings(quality)
        twin = coded.get(settings)
        if twin is not None:
            # Qs with the same settings (a whole QP with every frame coded) code the same stream: its rate is known,
            # and the bracket narrows without a pass (cnn2 at 100 kbps spent 3 of its 8 passes on 130.4 kbps).
            rates[quality] = rates[twin]
        else:
            callback = on_pass(len(coded) + 1, quality) if on_pass is not None else None
            began = time.perf_counter()
            clips[quality] = encode_clip(frame_source(), model, replace(base, **settings.encoder_fields()), model_id,
                                         callback)
            seconds.append(time.perf_counter() - began)
            coded[settings] = quality
            rates[quality] = clips[quality].kbps()
            if abs(rates[quality] / target_kbps - 1) <= RATE_TOLERANCE:
                break
        quality = _next_quality(rates, target_kbps)
    passes = tuple((q, rates[q]) for q in coded.values())
    best = min(rates, key=lambda q: abs(math.log(rates[q] / target_kbps)))
    best = coded[quality_settings(best)]  # the Q of the pass that coded it
    missed = abs(rates[best] / target_kbps - 1) > RATE_TOLERANCE
    reachable = (min(rates.values()), max(rates.values())) if missed else None
    if missed and strict:
        raise RateControlError(f"--kbps {target_kbps:g} not reached within ±{RATE_TOLERANCE:.0%}: "
                               f"{len(passes)} passes gave {', '.join(f'{r:.1f} kbps at Q {q:g}' for q, r in passes)}")
    return clips[best], QualityRateChoice(target_kbps, best, rates[best], passes, tuple(seconds),
                                          reachable)
