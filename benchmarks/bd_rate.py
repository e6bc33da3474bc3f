"""Bjøntegaard deltas with piecewise cubic (PCHIP) interpolation, and rate needed for a target quality.

Rates are interpolated in log domain. Curves are first reduced to their Pareto front (each kept point
has a higher rate and a strictly better metric than the previous one), because an interpolant of
rate over metric needs the metric to be monotone. `higher_is_better=False` is for LPIPS-like metrics.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator


class CurveError(ValueError):
    """A rate-quality curve that cannot be interpolated (too few points, bad values)."""


def pareto_front(rates: Sequence[float], metric: Sequence[float], higher_is_better: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Points sorted by rate, keeping only those that improve the metric over every cheaper point."""
    r = np.asarray(rates, dtype=np.float64)
    m = np.asarray(metric, dtype=np.float64)
    if r.shape != m.shape or r.ndim != 1:
        raise CurveError("rates and metric must be 1-D sequences of the same length")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(m))):
        raise CurveError("rates and metric must be finite")
    if np.any(r <= 0):
        raise CurveError("rates must be positive (they are interpolated in log domain)")
    quality = m if higher_is_better else -m
    order = np.lexsort((-quality, r))  # by rate, best quality first among equal rates
    kept, best = [], -math.inf
    for i in order:
        if quality[i] > best:
            kept.append(i)
            best = quality[i]
    return r[kept], m[kept]


def _log_rate_of_quality(rates, metric, higher_is_better):
    r, m = pareto_front(rates, metric, higher_is_better)
    if len(r) < 2:
        raise CurveError(f"need at least 2 points with distinct quality, got {len(r)}")
    q = m if higher_is_better else -m  # increasing along the front
    return PchipInterpolator(q, np.log(r)), q.min(), q.max()


def bd_rate(anchor_rates, anchor_metric, test_rates, test_metric, higher_is_better: bool = True) -> float:
    """Average rate difference of test vs anchor at equal quality, in percent (negative = test saves).

    NaN when the two curves share no quality interval.
    """
    fa, qa0, qa1 = _log_rate_of_quality(anchor_rates, anchor_metric, higher_is_better)
    ft, qt0, qt1 = _log_rate_of_quality(test_rates, test_metric, higher_is_better)
    lo, hi = max(qa0, qt0), min(qa1, qt1)
    if hi <= lo:
        return math.nan
    mean_log_diff = (ft.integrate(lo, hi) - fa.integrate(lo, hi)) / (hi - lo)
    return (math.exp(mean_log_diff) - 1.0) * 100.0


def bd_metric(anchor_rates, anchor_metric, test_rates, test_metric, higher_is_better: bool = True) -> float:
    """Average metric difference of test vs anchor at equal rate (over the shared log-rate interval).

    Reported in the metric's own direction: for LPIPS a negative value means test is better.
    """
    curves = []
    for rates, metric in ((anchor_rates, anchor_metric), (test_rates, test_metric)):
        r, m = pareto_front(rates, metric, higher_is_better)
        if len(r) < 2:
            raise CurveError(f"need at least 2 points with distinct quality, got {len(r)}")
        curves.append((PchipInterpolator(np.log(r), m), np.log(r[0]), np.log(r[-1])))
    (fa, a0, a1), (ft, t0, t1) = curves
    lo, hi = max(a0, t0), min(a1, t1)
    if hi <= lo:
        return math.nan
    return float((ft.integrate(lo, hi) - fa.integrate(lo, hi)) / (hi - lo))


def rate_for_quality(rates, metric, target: float, higher_is_better: bool = True) -> tuple[float, str]:
    """Rate at which the curve reaches `target`, and how: "interpolated", "below-range" or "not-reached".

    "below-range": the cheapest point is already at least as good (the rate returned is that point's,
    an upper bound). "not-reached": no point is that good (rate is NaN).
    """
    r, m = pareto_front(rates, metric, higher_is_better)
    q, target_q = (m, target) if higher_is_better else (-m, -target)
    if target_q <= q[0]:
        return float(r[0]), "below-range"
    if target_q > q[-1]:
        return math.nan, "not-reached"
    return float(np.exp(PchipInterpolator(q, np.log(r))(target_q))), "interpolated"
