"""Entropy coding of one frame's motion symbols into a MOTION payload (spec §6-7).

Residuals against the previous decoded frame are range coded with constriction's
RangeEncoder (32-bit words, 64-bit state) under integer tables from `freqtable`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import constriction
import numpy as np

from .constants import ENTROPY_PRECISION, QUANT_MAX
from .errors import BitstreamError, SymbolError
from .freqtable import binary_table, residual_table
from .header import StreamHeader
from .symbols import GroupParams, SymbolGroup, check_ints

_model = constriction.stream.model
_queue = constriction.stream.queue
# Escaped residuals are sent as the two 16-bit halves of their zigzag code; with 24-bit
# precision each half gets exactly 2**24 / 2**16 = 256 per value.
_UNIFORM16 = _model.Uniform(1 << 16)


def exact_categorical(freqs) -> "constriction.stream.model.Categorical":
    """A constriction model that uses exactly the integer table `freqs` (summing to 2**24).

    constriction's fast quantiser assigns left cumulative floor(c_i * scale) + i, with c_i the
    float prefix sums and scale = (2**24 - n) / sum. Feeding freq - 1 makes the sum 2**24 - n,
    so scale is exactly 1.0, every prefix sum is an exact integer and the table is reproduced
    bit for bit (tests/test_spec_independent_decoder.py checks it with a separate decoder).
    """
    return _model.Categorical(np.asarray(freqs, dtype=np.float64) - 1.0, perfect=False)


@dataclass(frozen=True)
class _GroupModel:
    group: SymbolGroup
    params: GroupParams
    residual: object
    mask: object | None
    residual_bits: np.ndarray  # -log2 probability of each residual symbol
    mask_bits: np.ndarray | None

    @property
    def escape(self) -> int:
        return 2 * self.params.radius + 1


def _information(freqs) -> np.ndarray:
    return ENTROPY_PRECISION - np.log2(np.asarray(freqs, dtype=np.float64))


def _group_models(header: StreamHeader) -> tuple[_GroupModel, ...]:
    models = []
    for g, p in zip(header.groups, header.params):
        table = residual_table(p.radius, p.decay, p.escape_freq)
        if g.maskable:
            mask = binary_table(p.mask_freq)
            mask_model, mask_bits = exact_categorical(mask), _information(mask)
        else:
            mask_model = mask_bits = None
        models.append(_GroupModel(g, p, exact_categorical(table), mask_model, _information(table), mask_bits))
    return tuple(models)


def _zero_state(header: StreamHeader) -> dict[str, np.ndarray]:
    return {g.name: np.zeros((g.count, g.dims), dtype=np.int64) for g in header.groups}


def payload_words(payload: bytes) -> np.ndarray:
    """The range coder's 32-bit words: big-endian, the last one zero-padded."""
    padded = bytes(payload) + b"\0" * (-len(payload) % 4)
    return np.frombuffer(padded, dtype=">u4").astype(np.uint32)


def _decode(models: tuple[_GroupModel, ...], state: Mapping[str, np.ndarray], payload: bytes,
            offset: int) -> dict[str, np.ndarray]:
    try:
        return _decode_unchecked(models, state, payload, offset)
    except AssertionError:
        # constriction refuses a point that falls in the unused top of the coding range
        # (quantile >= 2**24), which no encoder produces: spec §7.3 calls the payload invalid.
        raise BitstreamError("invalid range-coded motion payload", offset) from None


def _decode_unchecked(models: tuple[_GroupModel, ...], state: Mapping[str, np.ndarray], payload: bytes,
                      offset: int) -> dict[str, np.ndarray]:
    decoder = _queue.RangeDecoder(payload_words(payload))
    out = {}
    for m in models:
        g, radius = m.group, m.params.radius
        values = np.array(state[g.name], dtype=np.int64)
        sent = np.ones(g.count, dtype=bool)
        if m.mask is not None:
            sent = np.asarray(decoder.decode(m.mask, g.count)) == 1
        n = int(sent.sum()) * g.dims
        if n:
            syms = np.asarray(decoder.decode(m.residual, n), dtype=np.int64)
            residuals = syms - radius
            escaped = syms == m.escape
            if escaped.any():
                halves = np.asarray(decoder.decode(_UNIFORM16, 2 * int(escaped.sum())), dtype=np.int64)
                zigzag = (halves[0::2] << 16) | halves[1::2]
                residuals[escaped] = (zigzag >> 1) ^ -(zigzag & 1)
            rows = values[sent] + residuals.reshape(-1, g.dims)
            if np.abs(rows).max() > QUANT_MAX:
                raise BitstreamError(f"{g.name}: decoded motion value exceeds ±{QUANT_MAX}", offset)
            values[sent] = rows
        out[g.name] = values
    return out


def _increment(prefix: bytes) -> bytes | None:
    """prefix + 1 as a big-endian number of the same length, None on overflow."""
    value = int.from_bytes(prefix, "big") + 1
    return value.to_bytes(len(prefix), "big") if value < 1 << (8 * len(prefix)) else None


class MotionEncoder:
    """Closed-loop encoder of motion symbols; call `reset()` at every keyframe."""

    def __init__(self, header: StreamHeader):
        self.header = header
        self._models = _group_models(header)
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame: residuals of the next packet are against zeros."""
        self._state = _zero_state(self.header)
        # Ideal code length per group of the last packet (-log2 of its table entries), for rate reports.
        self.last_group_bits: dict[str, float] = {}

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The integers the decoder holds after the last packet (zeros after `reset`)."""
        return {k: v.copy() for k, v in self._state.items()}

    def _sent_rows(self, m: _GroupModel, residuals: np.ndarray, mask_threshold: int) -> np.ndarray:
        if m.mask is None or mask_threshold < 0:
            return np.ones(m.group.count, dtype=bool)
        return np.abs(residuals).max(axis=1) > mask_threshold

    def reconstruct(self, ints: Mapping[str, np.ndarray], mask_threshold: int = 0) -> dict[str, np.ndarray]:
        """The integers the decoder would hold if `ints` were encoded next (no state changes)."""
        target = check_ints(ints, self.header.groups)
        out = {}
        for m in self._models:
            prev = self._state[m.group.name]
            sent = self._sent_rows(m, target[m.group.name] - prev, mask_threshold)
            out[m.group.name] = np.where(sent[:, None], target[m.group.name], prev).astype(np.int32)
        return out

    def encode(self, ints: Mapping[str, np.ndarray], mask_threshold: int = 0) -> tuple[bytes, dict[str, np.ndarray]]:
        """(payload, integers the decoder will reconstruct) for one frame.

        A row of a maskable group is not sent when max |residual| over its dims is
        <= mask_threshold (0: only rows that did not change; -1: every row is sent);
        unsent rows keep their previous value at both ends.
        """
        if int(mask_threshold) != mask_threshold or mask_threshold < -1:
            raise SymbolError(f"mask_threshold {mask_threshold} must be an integer >= -1")
        target = check_ints(ints, self.header.groups)
        encoder = _queue.RangeEncoder()
        expected = {}
        for m in self._models:
            g, radius = m.group, m.params.radius
            prev = self._state[g.name]
            residuals = target[g.name] - prev
            sent = self._sent_rows(m, residuals, mask_threshold)
            bits = 0.0
            if m.mask is not None:
                encoder.encode(sent.astype(np.int32), m.mask)
                bits += float(np.sum(m.mask_bits[sent.astype(np.int64)]))
            flat = residuals[sent].ravel()
            escaped = np.abs(flat) > radius
            if flat.size:
                symbols = np.where(escaped, m.escape, flat + radius)
                encoder.encode(symbols.astype(np.int32), m.residual)
                bits += float(np.sum(m.residual_bits[symbols]))
            if escaped.any():
                zigzag = (flat[escaped] << 1) ^ (flat[escaped] >> 63)
                halves = np.stack([zigzag >> 16, zigzag & 0xFFFF], axis=1).ravel()
                encoder.encode(halves.astype(np.int32), _UNIFORM16)
                bits += 16.0 * halves.size
            self.last_group_bits[g.name] = bits
            new = prev.copy()
            new[sent] = target[g.name][sent]
            expected[g.name] = new
        payload = self._shortest(encoder.get_compressed().astype(">u4").tobytes(), expected)
        self._state = expected
        return payload, {k: v.astype(np.int32) for k, v in expected.items()}

    def _decodes_to(self, payload: bytes, expected: Mapping[str, np.ndarray]) -> bool:
        try:
            got = _decode(self._models, self._state, payload, 0)
        except BitstreamError:
            return False
        return all(np.array_equal(got[k], expected[k]) for k in expected)

    def _shortest(self, payload: bytes, expected: Mapping[str, np.ndarray]) -> bytes:
        """The shortest byte string that still decodes to `expected` (spec §7.7).

        The decoder reads zeros past the end, so a payload is a binary fraction and every
        fraction inside the final coding interval is valid; for each length the floor or the
        ceiling of constriction's sealed output at that length is in it if any string is.
        """
        best = payload.rstrip(b"\0")
        for n in range(len(best) - 1, -1, -1):
            floor = best[:n]
            candidates = [floor] + ([up] if (up := _increment(floor)) is not None else [])
            valid = next((c for c in candidates if self._decodes_to(c, expected)), None)
            if valid is None:
                break
            best = valid.rstrip(b"\0")
        return best


class MotionDecoder:
    """Decoder of MOTION payloads; call `reset()` at every keyframe."""

    def __init__(self, header: StreamHeader):
        self.header = header
        self._models = _group_models(header)
        self.reset()

    def reset(self) -> None:
        """Back to the all-zero state of a keyframe."""
        self._state = _zero_state(self.header)

    def decode(self, payload: bytes, offset: int = 0, packet: int | None = None) -> dict[str, np.ndarray]:
        """The frame's quantised symbols (int32); errors name the payload's packet: its `offset` and index."""
        if len(payload) > 65536:
            raise BitstreamError("motion payload longer than 65536 bytes", offset, packet)
        try:
            self._state = _decode(self._models, self._state, bytes(payload), offset)
        except BitstreamError as exc:
            raise BitstreamError(exc.message, offset, packet) from None
        return {k: v.astype(np.int32) for k, v in self._state.items()}
