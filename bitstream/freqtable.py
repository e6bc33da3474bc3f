"""Integer frequency tables of the entropy coder, built from header integers only (spec §6)."""
from __future__ import annotations

from functools import lru_cache

from .constants import ENTROPY_PRECISION, MAX_RADIUS

TOTAL = 1 << ENTROPY_PRECISION
# Weight of the zero residual before normalisation; the decay shrinks it per step of |r|.
PEAK_WEIGHT = 1 << 24
DECAY_ONE = 1 << 16


@lru_cache(maxsize=64)
def residual_table(radius: int, decay: int, escape_freq: int) -> tuple[int, ...]:
    """Frequencies of residuals -R..R then ESCAPE; each >= 1, summing to 2**24."""
    if not 1 <= radius <= MAX_RADIUS:
        raise ValueError(f"radius {radius} outside 1..{MAX_RADIUS}")
    if not 0 <= decay < DECAY_ONE:
        raise ValueError(f"decay {decay} outside 0..{DECAY_ONE - 1}")
    if not 1 <= escape_freq < DECAY_ONE:
        raise ValueError(f"escape_freq {escape_freq} outside 1..{DECAY_ONE - 1}")
    side = [PEAK_WEIGHT]
    for _ in range(radius):
        side.append(side[-1] * decay >> 16)
    weights = side[:0:-1] + side
    # Every residual starts at 1 so that each stays codable; the rest is shared by weight,
    # rounding down, and the rounding remainder goes to the zero residual.
    free = TOTAL - escape_freq - len(weights)
    total_weight = sum(weights)
    freqs = [1 + w * free // total_weight for w in weights]
    freqs[radius] += TOTAL - escape_freq - sum(freqs)
    freqs.append(escape_freq)
    return tuple(freqs)


def binary_table(one_freq16: int) -> tuple[int, int]:
    """Frequencies of mask bits (0, 1) from the 16-bit probability of a 1."""
    if not 1 <= one_freq16 < DECAY_ONE:
        raise ValueError(f"mask_freq {one_freq16} outside 1..{DECAY_ONE - 1}")
    one = one_freq16 << (ENTROPY_PRECISION - 16)
    return (TOTAL - one, one)
