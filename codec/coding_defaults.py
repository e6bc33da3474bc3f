"""Encoder defaults and speed presets the CLI shows too, in a torch-free module so `fvc --help` starts fast.

The one home of every coding default: `EncoderConfig`, `fvc encode`'s options and the benchmarks import them.
"""
from __future__ import annotations

from dataclasses import dataclass

from bitstream.constants import KeyframeCodec

# Constant QP of keyframes (`--keyframe-qp`), H.264's or HEVC's (x265 codes an IDR at the same slice QP as x264).
DEFAULT_KEYFRAME_QP = 30
# Keyframe codec (`--keyframe-codec`). HEVC (libx265) needs 22.4 % fewer bytes than H.264 at equal LPIPS on lone
# 512² keyframes (results/keyframe-codecs-bench512) for ~7x the encode time, and writes bitstream 5.0, which 4.x
# and older decoders refuse: H.264 stays the default.
DEFAULT_KEYFRAME_CODEC = KeyframeCodec.H264
KEYFRAME_CODEC_NAMES = tuple(codec.name.lower() for codec in KeyframeCodec)  # `--keyframe-codec` words
# `--quality` values (codec/quality.py): the H.264 QP range, as x264's CRF.
QUALITY_MIN, QUALITY_MAX = 0, 51
# Motion quantisation steps as a multiple of the bitstream's defaults (`--motion-step`; the header carries the
# steps, so any value decodes). Rotation moves in 0.5° steps and an expression keypoint in 2.6 px at 512²:
# motion that small comes out as jumps. On the 8 held-out training clips (512², QP 32, one keyframe, 100
# frames, shipped weights) scale 1 / 0.5 / 0.25 gave temporal error 5.08 / 4.78 / 4.67 (face 5.82 / 5.43 / 5.28),
# AKD 3.83 / 3.75 / 3.71 px at the same LPIPS (0.226) for 0.00242 / 0.00266 / 0.00292 bpp; halving the
# expression step alone gave most of it (4.84 at 0.00264). 0.5 buys the larger part of the gain for ~7 B/frame.
DEFAULT_MOTION_STEP = 0.5
# The finest scale measured, and the coarsest worth asking for (an expression keypoint then moves in 10 px steps).
MOTION_STEP_MIN, MOTION_STEP_MAX = 0.25, 4.0
# Most frames per keyframe (`--max-gop`).
DEFAULT_MAX_GOP = 250
# -1: every expression keypoint is sent (`--kp-threshold`). With trained weights nearly every keypoint moves
# each frame, so the per-row mask flags cost more than the unchanged rows they skip (2.8-6.4 % more motion
# bytes at 0 on four training clips, identical pictures).
DEFAULT_KP_THRESHOLD = -1
# Reference slots: keyframes the decoder keeps (`--refs`; more than 1 needs bitstream 2.0 or later).
DEFAULT_REFS = 1
# Keyframes as H.264 P pictures predicted from earlier keyframes (`--predict-keyframes`, bitstream 3.0): fewer
# bytes at lower LPIPS at every refreshing bench512 point (results/bench512-pred-rd).
DEFAULT_PREDICT_KEYFRAMES = True
# With predicted keyframes, the first keyframe this many frames or more after the last IDR is an IDR again
# (`--idr-period`): the --max-gop default, so a random access point comes at least every 250-500 frames.
DEFAULT_IDR_PERIOD = DEFAULT_MAX_GOP
# RESYNC packets (bitstream 4.0, spec §4.6, §5.8): with N > 0 the first motion packet after each keyframe and every
# N-th after it are coded against zeros, so a receiver that lost a motion packet decodes again at the next one.
# `fvc encode` (and EncoderConfig) write none: a file is read whole, where they would only cost bytes and make
# the stream 4.0, which 3.x decoders refuse. `fvc send` sends one a second at 25 fps, which bounds the frames a
# lost motion packet leaves concealed to 25 (1 s at 25 fps), for 4.2-6.2 % more motion bytes (2.5-3.6 % of the
# stream) on three training clips with the shipped weights (spec §5.8 has the command).
DEFAULT_RESYNC_PERIOD = 0
LIVE_RESYNC_PERIOD = 25

# Default refresh threshold. With the image renderer (warp128) luma PSNR at the 128² analysis size
# tracks LPIPS as well as at 32² or 64² (rank correlation 0.92 on the held-out cache clips), and
# frames cross LPIPS 0.2 near 16 dB (benchmarks/refresh_proxy.py). A sharp warp a pixel off scores
# low PSNR yet looks right, hence far below the 22 dB the blurry feature renderers needed.
DEFAULT_REFRESH_DB = 16.0

# With --refs > 1: an older keyframe replaces a new one only if it renders the frame within this many dB
# of a keyframe of the frame itself (None: clearing the refresh threshold is enough, as in bitstream 2.0's
# first encoder). An older keyframe that merely clears the threshold saves keyframe bytes at the same QP
# but costs more at equal LPIPS (training clips over keyframe QPs 26-38: RealisticNTH +31 % keyframe bytes
# against refs 1, where 0 gives -10 %; tiktok -60 %, where 0 gives -65 %).
DEFAULT_REUSE_MARGIN_DB: float | None = 0.0
# With --refs > 1: a frame is shown from another slot that renders it this many dB better than the active one.
# On four training clips (keep mode, QP 30) 1 dB against 0: mean LPIPS 0.1653 vs 0.1655, temporal error
# 4.99 vs 5.23 (fewer switches back and forth); at 2 dB one of them (SkyReels) loses nearly all the gain.
DEFAULT_SWITCH_MARGIN_DB: float | None = 1.0


@dataclass(frozen=True)
class SearchConfig:
    """Encoder motion search (codec/motion_search.py): J = D + rate_weight · bits, D the rendering's error."""

    steps: int = 12
    lr: float = 1.0  # Adam step in units of each group's quantisation step
    rate_weight: float = 5e-5
    warm_start: bool = True  # start from this frame's estimate plus the previous frame's correction
    size: int = 512  # side at which the rendering is compared with the frame (0: the model's analysis size)
    loss: str = "l1"  # "l1", "mse" or "lpips" (AlexNet v0.1) between the rendering and the frame
    # Adds anchor_weight · (mean squared distance from H's estimate, in quantisation steps) to J. Without it
    # the search fits pixels and drags the face's keypoints off the face (bench512: AKD 2.4 -> 5.2 px); 0.01,
    # chosen on training clips, keeps AKD within 0.2 px of fast's on bench512 and most of the LPIPS gain
    # (docs/design.md). In step units the pull differs per model: FOMM's search moves much less under it.
    anchor_weight: float = 0.01

    def __post_init__(self):
        if self.loss not in ("l1", "mse", "lpips"):
            raise ValueError(f"search loss {self.loss!r} is not l1, mse or lpips")
        if not self.anchor_weight >= 0:
            raise ValueError(f"search anchor_weight {self.anchor_weight} must be >= 0")


@dataclass(frozen=True)
class Preset:
    """An x264-style speed preset: how much of the decoder the encoder runs per frame."""

    name: str
    refresh_threshold: float  # 0: open loop, nothing rendered
    search: SearchConfig | None
    summary: str


PRESETS = {p.name: p for p in (
    Preset("fast", 0.0, None, "open loop: H+Δ only, no rendering, no quality refresh"),
    Preset("medium", DEFAULT_REFRESH_DB, None, "closed loop: renders every frame for quality refresh"),
    Preset("slow", DEFAULT_REFRESH_DB, SearchConfig(),
           "closed loop plus motion search: fits each frame's symbols to the frame through the decoder"),
)}
DEFAULT_PRESET = "medium"
# `fvc send` encodes in real time: fast, the preset that keeps up on one core (no rendering in the encoder).
LIVE_PRESET = "fast"
