"""`--quality Q`: one knob in x264's CRF sense that decides which frames are coded and at which QP.

Each motion frame is either rendered from the last coded picture (a motion packet, ~20 B) or coded itself
as an H.264 P picture at QP Q, whichever costs less in D + λ·R, D being LPIPS. Two fits on held-out clips
of the training set make that a per-frame threshold on the refresh proxy the encoder already measures in
the closed loop (luma PSNR of the decoder's own rendering at the analysis size):

- a coded P picture: ln D_code = a + b·Q and ln R_code = r + c·Q (bytes), so the slope of the coded
  curve, λ(Q) = -dD/dR = (b/|c|)·D_code/R_code, and λ·R_code = (b/|c|)·D_code whatever the content;
- a rendered frame: ln D_gen ≈ α + β·proxy_db (β < 0; a line in LPIPS itself would reach 0 near 32 dB,
  where rendered frames still score 0.04).

A frame is coded when D_gen > D_code + κ·λ·R_code (λ·R_gen, 20 B against 300-3000 B, is left out), i.e.
when proxy_db < (ln(D_code·(1 + κ·b/|c|)) - α)/β. Above RENDERED_JOIN_DB, where the fit's frames end, D_gen
approaches RENDERED_FLOOR instead, which no rendering scores below however high its proxy: where
D_code·(1 + κ·b/|c|) lies below it, every frame is coded, and the threshold rises continuously toward that.
κ (RD_WEIGHT) scales λ: a coded picture also serves the rendered frames after it, which the per-frame rule
does not see. Intra keyframes, which every rendered frame of a scene inherits, are coded at no worse than
ANCHOR_QP and at least IDR_DROP below the P pictures, except at the top of the scale, where the keyframe is all
that is coded and its QP is the knob (RAMP_START).

The PSNR proxy does not see geometry: lips a few pixels out of place cost little PSNR. The same rule with D
the landmark error (the mean distance between the model's landmark detector's points on the rendered frame
and on the input, in px at 512², which AKD follows: within a clip they correlate at 0.57-0.89) codes a frame
when e_gen > e_code·(1 + κ_L·b_L/|c|), e_code = e^(a_L + b_L·Q) the error of a coded P picture; either rule
codes it. The detector runs once more per motion frame (the input's points come from its motion).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .coding_defaults import DEFAULT_KEYFRAME_QP, QUALITY_MAX, QUALITY_MIN
from .h264 import MAX_IDR_QP_DROP, QP_MIN

# Fits on 4 held-out clips of the training set (HelloMeme tiktok, RealisticNTH test_video, LivePortrait d6,
# styletalk happyenglish_clip2; 100 frames at 512², 25 fps; shipped warp128 weights; every frame coded at
# keyframe QP 24, 30, 36, 42, 48 for the coded fits; refresh off for the rendered one; LPIPS-alex on every
# 2nd frame). ln LPIPS of a coded P picture against the keyframe QP: intercept, slope.
CODED_LPIPS = (-6.971, 0.1026)
# d ln(bytes of a coded P picture) / d QP: the bytes halve every 7.0 QP.
CODED_RATE_SLOPE = -0.0987
# ln LPIPS of a rendered frame against its refresh proxy in dB: intercept, slope (pooled over the 4 clips'
# 196 rendered frames; within a clip LPIPS and the proxy correlate at -0.86..-0.96).
RENDERED_LPIPS = (0.2016, -0.1006)
# The LPIPS of the best rendered frames: those with a proxy of 28 dB or more scored 0.055 on average (9 frames
# of the same 196; LivePortrait d6). A line in ln LPIPS would promise 0.04 at 32 dB and 0.02 at 39 dB.
RENDERED_FLOOR = 0.055
# Above this proxy, where the fit's frames end, a rendered frame's LPIPS approaches RENDERED_FLOOR instead of
# following the line: D_gen = floor + e^(a + b·proxy), joined to the line with the same value and slope here.
# With the floor a hard minimum, the threshold jumped from 30.8 dB to every frame coded at Q 32.73, and no Q
# gave the rates between (e.g. 26-133 kbps on cnn2); the approach makes the threshold rise continuously to it.
RENDERED_JOIN_DB = 28.0
# The threshold that codes every frame: above the luma PSNR of any picture short of an identical one.
EVERY_FRAME_DB = 100.0
# κ: λ's weight. On HelloMeme tiktok and RealisticNTH test_video (100 frames, 512²) κ 2 lost to κ 1 at every
# rate (e.g. LPIPS 0.081 against 0.075 at 64 kbps).
RD_WEIGHT = 1.0
# The intra keyframes' QP at low quality: the encoder's default keyframe QP.
ANCHOR_QP = DEFAULT_KEYFRAME_QP
# Above RAMP_START the stream is one keyframe and motion (the threshold lies near 18 dB and below), and only
# the intra keyframe's QP moves the rate: it rises from ANCHOR_QP to RAMP_END_QP at Q 51. With the refresh off
# on bench512, keyframe QP 24, 32 and 40 gave 21.8, 13.9 and 9.1 kbps at LPIPS 0.170, 0.186 and 0.219
# (results/bench512-step17548): the span the scale's top end reaches, down to ~9 kbps at 512².
RAMP_START, RAMP_END_QP = 45, 40
# Intra keyframes lie at least this many QP below the P pictures: what x264's macroblock tree gives a first
# picture whose static background every later one copies, without its look-ahead. Every frame coded (QP 27-39,
# 100 frames at 512²) on the 6 training clips x264 codes at the highest rates (crf28: 320-400 kbps), BD-rate
# against x264's default CRF: LPIPS +7.7 / +0.1 / -1.5 / -1.1 % and PSNR -3.4 / -7.1 / -6.9 / -5.4 % with the
# IDR 0 / 6 / 9 / 12 below (0 was the rule from Q 30 down).
IDR_DROP = 9


# ln (mean distance in px at 512² between the landmark detector's points on a coded P picture and on its source)
# against the keyframe QP; same 4 clips, every frame coded at QP 30, 36, 42: 0.38 px at Q 36, 0.51 at Q 39.
CODED_LANDMARKS = (-4.410, 0.0956)
# κ_L: λ's weight in the landmark rule, so a rendered frame is coded beyond 3.9x a coded picture's error (2.0 px
# at Q 39, 1.4 at Q 35). On the 8 held-out training clips (100 frames at 512²; 1.6-3 px tried at Q 35, 37, 39),
# this is where a lower bar stops paying in LPIPS as much as a lower Q does: at Q 39, 2.0 px gave +11 % bytes for
# -10 % AKD and -10 % LPIPS, 1.6 px +22 % for -17 % and -14 %, and Q 37 instead of 39 +37 % for -17 % and -21 %.
LANDMARK_RD_WEIGHT = 3.0


@dataclass(frozen=True)
class QualitySettings:
    """The encoder settings one --quality value stands for."""

    keyframe_qp: int  # QP of the coded (predicted) pictures
    idr_qp: int  # QP of the intra keyframes
    refresh_threshold: float  # dB; a motion frame rendering below it is coded instead (0: never)
    refresh_landmarks: float  # px at 512²; a motion frame whose landmarks are further off is coded too (0: never)

    def encoder_fields(self) -> dict[str, float]:
        """The EncoderConfig fields these settings set."""
        return {"keyframe_qp": self.keyframe_qp, "idr_qp": self.idr_qp, "refresh_threshold": self.refresh_threshold,
                "refresh_landmarks": self.refresh_landmarks}


def coded_lpips(quality: float) -> float:
    """The LPIPS the fit expects of a P picture coded at keyframe QP `quality`."""
    intercept, slope = CODED_LPIPS
    return math.exp(intercept + slope * quality)


def rendered_threshold(worst: float) -> float:
    """The proxy (dB) above which a rendered frame is expected to score at most `worst` LPIPS (inf at or below
    the floor: no rendering is that good)."""
    intercept, slope = RENDERED_LPIPS
    join = math.exp(intercept + slope * RENDERED_JOIN_DB)
    if worst >= join:
        return max(0.0, (math.log(worst) - intercept) / slope)
    if worst <= RENDERED_FLOOR:
        return math.inf
    # floor + e^(a + b·p), with the line's value and slope at the join: b = slope·join / (join - floor).
    steep = slope * join / (join - RENDERED_FLOOR)
    return RENDERED_JOIN_DB + (math.log(worst - RENDERED_FLOOR) - math.log(join - RENDERED_FLOOR)) / steep


def landmark_threshold(quality: float) -> float:
    """The landmark error (px at 512²) above which a rendered frame is coded at --quality `quality` (0: never)."""
    if quality > RAMP_START:  # one keyframe and motion: only the intra keyframe's QP moves the rate
        return 0.0  # (and where every frame is coded, quality_settings sets none: nothing is rendered)
    intercept, slope = CODED_LANDMARKS
    return math.exp(intercept + slope * quality) * (1.0 + LANDMARK_RD_WEIGHT * slope / abs(CODED_RATE_SLOPE))


def quality_settings(quality: float, rd_weight: float = RD_WEIGHT) -> QualitySettings:
    """Keyframe QPs and refresh threshold of --quality `quality` (0 best .. 51 smallest; a fraction moves the
    threshold, the QPs are whole)."""
    if not QUALITY_MIN <= quality <= QUALITY_MAX:
        raise ValueError(f"--quality {quality:g} outside {QUALITY_MIN}..{QUALITY_MAX}")
    elasticity = CODED_LPIPS[1] / abs(CODED_RATE_SLOPE)
    worst_rendered = coded_lpips(quality) * (1.0 + rd_weight * elasticity)
    refresh = min(rendered_threshold(worst_rendered), EVERY_FRAME_DB)
    keyframe_qp = int(round(quality))
    ramp = (RAMP_END_QP - ANCHOR_QP) * max(0.0, quality - RAMP_START) / (QUALITY_MAX - RAMP_START)
    idr_qp = max(min(keyframe_qp - IDR_DROP, ANCHOR_QP + int(round(ramp))), keyframe_qp - MAX_IDR_QP_DROP, QP_MIN)
    landmarks = 0.0 if refresh >= EVERY_FRAME_DB else round(landmark_threshold(quality), 2)
    return QualitySettings(keyframe_qp=keyframe_qp, idr_qp=idr_qp, refresh_threshold=round(refresh, 2),
                           refresh_landmarks=landmarks)
