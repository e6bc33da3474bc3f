"""fvc and FOMM through the streaming codec: Encoder packets -> .fvc bytes -> StreamReader -> Decoder."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from bitstream import StreamReader
from bitstream.constants import KeyframeCodec

from codec.coding_defaults import PRESETS

from .base import BenchmarkError, Codec, CodedClip, collect_frames


def decode_stream(model, stream: bytes, like: np.ndarray, label: str) -> np.ndarray:
    """The frames a Decoder shows for the .fvc `stream`, in an array shaped as `like` (the source clip)."""
    from codec.decoder import Decoder

    reader = StreamReader(stream)
    decoder = Decoder(model, reader.header)
    return collect_frames((picture for packet in reader for picture in decoder.push(packet)), like, label)


@dataclass(frozen=True)
class FvcPoint:
    """Encoder knobs of one operating point: keyframe QP, quality-refresh threshold (dB, 0 = off)."""

    keyframe_qp: int
    refresh_threshold: float

    @property
    def label(self) -> str:
        return f"qp{self.keyframe_qp}-refresh{self.refresh_threshold:g}"


# Keyframe bytes dominate the rate, so the sweep crosses keyframe quality with how often it refreshes.
# On held-out cache clips the warp128 renderer's frames cross LPIPS 0.25 near 15 dB proxy PSNR and
# 0.2 near 16 dB (benchmarks/refresh_proxy.py), so 15 and 17 dB bracket the default of 16.
POINTS = tuple(FvcPoint(qp, refresh) for qp in (24, 32, 40) for refresh in (0.0, 15.0, 17.0))


class Fvc(Codec):
    """The fvc codec (face-vid2vid keypoints + H.264 keyframes); all bytes of the .fvc stream count."""

    name = "fvc"
    kind = "fv2v"
    search = None  # the encoder's motion search (None: the fast and medium presets)
    refs = 1  # reference keyframes the decoder keeps
    # Intra keyframes, as every fvc row was measured before predicted keyframes (the encoder's default
    # now) existed: fvc-pred measures those, and the two differ only where a clip refreshes.
    predict_keyframes = False
    keyframe_codec = KeyframeCodec.H264  # --keyframe-codec

    def __init__(self, weights: str | None = None, device: str = "cpu"):
        """`weights`: a checkpoint path or "untrained-<config>" (codec.cli syntax); None = the shipped weights."""
        from codec.model_loading import load_model_spec

        loaded = load_model_spec(weights, device, self.kind)
        self.model, self.model_id = loaded.model, loaded.model_id
        self.weights, self.untrained = loaded.label, loaded.untrained

    def operating_points(self) -> list[str]:
        return [p.label for p in POINTS]

    def settings(self) -> dict[str, str]:
        from codec.encoder import EncoderConfig

        defaults = EncoderConfig(width=2, height=2, fps=25)  # the knobs no operating point changes
        output = (f"{self.model.output_size} (resized to the clip size by the decoder)" if self.model.output_size
                  else "the keyframe's size (image renderer)")
        return {"model": f"{self.kind} {self.model.config.name}", "analysis_size": str(self.model.analysis_size),
                "output_size": output,
                "max_gop": str(defaults.max_gop), "kp_threshold": str(defaults.kp_threshold),
                **({"refs": str(self.refs)} if self.refs > 1 else {}),
                **({"predict_keyframes": "on"} if self.predict_keyframes else {}),
                **({"keyframe_codec": self.keyframe_codec.name.lower()}
                   if self.keyframe_codec != KeyframeCodec.H264 else {})}

    def point_settings(self, point: str) -> dict[str, float]:
        """The EncoderConfig fields operating point `point` sets."""
        chosen = next((p for p in POINTS if p.label == point), None)
        if chosen is None:
            self.unknown_point(point)
        return {"keyframe_qp": chosen.keyframe_qp, "refresh_threshold": chosen.refresh_threshold}

    def unknown_point(self, point: str):
        known = ", ".join(self.operating_points())
        raise BenchmarkError(f"{self.name} has no operating point {point!r}; known: {known}")

    def code(self, frames: np.ndarray, fps: float, point: str) -> CodedClip:
        from codec.encoder import EncoderConfig, encode_clip

        n, height, width, _ = frames.shape
        config = EncoderConfig(width=width, height=height, fps=fps, **self.point_settings(point), frame_count=n,
                               search=self.search, refs=self.refs, predict_keyframes=self.predict_keyframes,
                               keyframe_codec=self.keyframe_codec)
        start = time.perf_counter()
        stream = encode_clip(frames, self.model, config, self.model_id).to_bytes()
        encode_seconds = time.perf_counter() - start

        start = time.perf_counter()
        decoded = decode_stream(self.model, stream, frames, f"{self.name} {point}")
        decode_seconds = time.perf_counter() - start
        return CodedClip(stream, decoded, encode_seconds, decode_seconds)


class FvcQuality(Fvc):
    """fvc at constant --quality Q (codec/quality.py): each frame rendered or coded as an H.264 picture at QP Q,
    by rate-distortion; predicted keyframes, the encoder's default."""

    name = "fvc-q"
    predict_keyframes = True
    # From one keyframe and motion (~8 kbps at 512²) to every frame coded (~500 kbps), 3 QP apart, and 1 apart
    # over 42..33, where x264's crf44..crf32 lie (52-201 kbps on bench512) and one step moves the rate by ~30 %
    # (Q 36 to 33 went from 164 to 439 kbps).
    QUALITY_POINTS = (51, 48, 45, 42, 41, 40, 39, 38, 37, 36, 35, 34, 33, 30, 27, 24)

    def operating_points(self) -> list[str]:
        return [f"q{q}" for q in self.QUALITY_POINTS]

    def point_settings(self, point: str) -> dict[str, float]:
        from codec.quality import quality_settings

        if point not in self.operating_points():
            self.unknown_point(point)
        return quality_settings(int(point[1:])).encoder_fields()

    def settings(self) -> dict[str, str]:
        from codec.quality import RD_WEIGHT

        return {**super().settings(), "quality": f"codec.quality.quality_settings(Q), RD weight {RD_WEIGHT:g}"}


class FvcHevc(Fvc):
    """fvc with HEVC keyframes (--keyframe-codec hevc, bitstream 5.0): x265 at x264's slice QP, so the same points
    code the same keyframes in fewer bytes where HEVC's tools pay."""

    name = "fvc-hevc"
    keyframe_codec = KeyframeCodec.HEVC


class FvcSlow(Fvc):
    """fvc with the slow preset's motion search (same decoder and stream); its own method, as it costs ~1 s/frame."""

    name = "fvc-slow"

    search = PRESETS["slow"].search

    def settings(self) -> dict[str, str]:
        return {**super().settings(), "search": repr(self.search)}


class FvcRefs4(Fvc):
    """fvc with four reference keyframes (--refs 4): old keyframes are reused before a new one is sent."""

    name = "fvc-refs4"
    refs = 4


class FvcPredicted(Fvc):
    """fvc with quality refreshes predicted from earlier keyframes (--predict-keyframes), one slot."""

    name = "fvc-pred"
    predict_keyframes = True


class FvcRefs4Predicted(FvcRefs4):
    """fvc with four reference slots and predicted keyframes (--refs 4 --predict-keyframes)."""

    name = "fvc-refs4-pred"
    predict_keyframes = True


class Fomm(Fvc):
    """The FOMM baseline: the same encoder and stream with the FOMM motion model."""

    name = "fomm"
    kind = "fomm"
