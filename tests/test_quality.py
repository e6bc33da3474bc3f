"""--quality: the settings one value stands for, the rate-distortion decision it makes, the IDR QP, the CLI."""
import math
import re
from fractions import Fraction

import numpy as np
import pytest
import torch

from bitstream import KeyframePacket, StreamReader
from bitstream.avc import slice_qp
from codec.cli import main
from codec.coding_defaults import QUALITY_MAX, QUALITY_MIN
from codec.decoder import Decoder, frame_to_tensor
from codec.demo import DemoClipConfig, astronaut_frames
from codec.encoder import EncoderConfig, encode_clip, encode_to_rate, landmark_error, luma_psnr
from codec.errors import InputError
from codec.h264 import IDR_QP_OFFSET, MAX_IDR_QP_DROP, H264Error, KeyframeEncoder
from codec.quality import (ANCHOR_QP, CODED_LANDMARKS, EVERY_FRAME_DB, IDR_DROP, RAMP_END_QP, RAMP_START,
                           coded_lpips, quality_settings, rendered_threshold)
from codec.video import VideoWriter

SIZE = 64


@pytest.fixture(scope="module")
def moving():
    return list(astronaut_frames(DemoClipConfig(seconds=0.48, size=SIZE)))  # 12 frames of a turning head


def encode(frames, trained, quality: int, **changes):
    model, ident = trained
    fields = {**quality_settings(quality).encoder_fields(), **changes}
    return encode_clip(frames, model, EncoderConfig(width=SIZE, height=SIZE, fps=Fraction(25), **fields), ident)


def test_a_better_quality_codes_more_frames_at_a_lower_qp():
    settings = [quality_settings(q) for q in range(QUALITY_MIN, QUALITY_MAX + 1)]
    assert [s.keyframe_qp for s in settings] == list(range(QUALITY_MIN, QUALITY_MAX + 1))
    thresholds = [s.refresh_threshold for s in settings]
    assert all(a >= b for a, b in zip(thresholds, thresholds[1:]))
    assert thresholds[30] == EVERY_FRAME_DB > thresholds[36] > thresholds[42] > thresholds[48] > 0
    # Intra keyframes are never worse than the anchor up to RAMP_START and lie IDR_DROP below the P pictures (or at
    # QP 0), then their QP is the knob, up to RAMP_END_QP at Q 51; always within x264's reach below the P pictures.
    assert all(s.idr_qp == max(min(s.keyframe_qp - IDR_DROP, ANCHOR_QP), 0) for s in settings[:RAMP_START + 1])
    assert settings[30].idr_qp == 21 and settings[40].idr_qp == ANCHOR_QP  # 9 below at the top end
    idr = [s.idr_qp for s in settings]
    assert all(a <= b for a, b in zip(idr, idr[1:])) and idr[RAMP_START] == ANCHOR_QP < idr[48] < idr[51] == RAMP_END_QP
    assert all(s.keyframe_qp - MAX_IDR_QP_DROP <= s.idr_qp <= s.keyframe_qp for s in settings)
    with pytest.raises(ValueError, match="--quality 52 outside 0..51"):
        quality_settings(52)
    # Toward every frame coded the threshold climbs continuously (no Q range is skipped): within 0.01 of Q it
    # never moves more than a few dB until it is above any proxy short of an identical picture.
    fine = [quality_settings(q / 100).refresh_threshold for q in range(3400, 3260, -1)]
    assert all(a <= b for a, b in zip(fine, fine[1:])) and fine[0] < 31 and fine[-1] == EVERY_FRAME_DB
    last_finite = max(t for t in fine if t < EVERY_FRAME_DB)
    assert last_finite > 45 and max(b - a for a, b in zip(fine, fine[1:]) if b < EVERY_FRAME_DB) < 5
    # Where rendered frames were fitted (Q 36 and up) the line alone decides, as before.
    assert rendered_threshold(coded_lpips(36) * 2.04) == pytest.approx((math.log(coded_lpips(36) * 2.04) - 0.2016)
                                                                      / -0.1006, abs=0.05)


def test_the_landmark_threshold_falls_with_the_coded_pictures_error_and_is_off_at_one_keyframe_and_motion():
    thresholds = [quality_settings(q).refresh_landmarks for q in range(33, RAMP_START + 1)]
    assert all(0 < a < b for a, b in zip(thresholds, thresholds[1:]))  # more quality: frames coded sooner
    # Where every frame is coded (Q 32 and below) and above RAMP_START there is none.
    assert all(quality_settings(q).refresh_landmarks == 0 for q in range(QUALITY_MIN, 33))
    # At Q 39 a rendered frame is coded beyond 3.9x the landmark error of a P picture coded at QP 39.
    coded = math.exp(CODED_LANDMARKS[0] + 39 * CODED_LANDMARKS[1])
    assert quality_settings(39).refresh_landmarks == pytest.approx(coded * 3.9, abs=0.01)
    assert all(quality_settings(q).refresh_landmarks == 0 for q in range(RAMP_START + 1, QUALITY_MAX + 1))
    with pytest.raises(InputError, match="--refresh-landmarks -1 must be >= 0 px"):
        EncoderConfig(width=SIZE, height=SIZE, fps=25, refresh_landmarks=-1)
    with pytest.raises(InputError, match="--refresh-landmarks needs the closed loop"):
        EncoderConfig(width=SIZE, height=SIZE, fps=25, refresh_threshold=0, refresh_landmarks=2.0)


def test_a_motion_frame_whose_landmarks_are_off_is_coded_though_its_psnr_clears(trained, moving):
    model, _ = trained
    # The PSNR proxy alone: every frame clears 1 dB, so one keyframe and motion.
    psnr_only = encode(moving, trained, 39, refresh_threshold=1.0, refresh_landmarks=0.0)
    assert psnr_only.stats.keyframes == 1
    errors = shown_landmark_errors(model, psnr_only, moving)
    bar = 0.8 * max(errors.values())
    with_landmarks = encode(moving, trained, 39, refresh_threshold=1.0, refresh_landmarks=bar)
    coded = with_landmarks.stats.landmark_refreshes
    assert coded >= 1 and with_landmarks.stats.keyframes == 1 + coded
    # Every frame the stream renders lies within the bar: the encoder coded those that did not.
    shown = shown_landmark_errors(model, with_landmarks, moving)
    assert shown and max(shown.values()) <= bar
    # The error is in pixels of a 512² frame: a picture moved 2 px sideways at 64² is 16 px off.
    with torch.inference_mode():
        motion = model.estimate_motion(frame_to_tensor(moving[0], "cpu"))
    assert landmark_error(model, moving[0], motion) < 0.01
    assert landmark_error(model, np.roll(moving[0], 2, axis=1), motion) == pytest.approx(16, abs=1.5)
    # A model without a landmark detector has no landmark error to act on.
    assert landmark_error(FommFree(), moving[0], {}) is None


class FommFree:
    """A motion model with no landmark detector (as FOMM)."""

    def motion_landmarks(self, motion):
        return None


def shown_landmark_errors(model, clip, frames) -> dict[int, float]:
    """The landmark error (px at 512²) of each rendered frame of `clip` as a decoder shows it."""
    reader = StreamReader(clip.to_bytes())
    decoder = Decoder(model, reader.header)
    decoded = [f for packet in reader for f in decoder.push(packet)]
    with torch.inference_mode():
        return {i: landmark_error(model, decoded[i], model.estimate_motion(frame_to_tensor(frames[i], "cpu")))
                for i in range(len(frames)) if i not in clip.stats.keyframe_log}


def test_the_decision_is_monotone_in_quality_from_motion_only_to_every_frame_coded(trained, moving):
    clips = {q: encode(moving, trained, q) for q in (51, 45, 42, 39, 36, 30)}
    sizes = [len(clips[q].to_bytes()) for q in sorted(clips, reverse=True)]
    assert sizes == sorted(sizes), sizes  # asking for more quality never gives fewer bytes
    keyframes = {q: c.stats.keyframes for q, c in clips.items()}
    assert keyframes[51] == 1  # the lowest rate: one keyframe and motion
    assert keyframes[30] == len(moving)  # the highest: every frame a coded picture
    assert 1 < keyframes[39] < len(moving)  # between: frames rendered from a recent coded picture


def test_a_stream_mixing_coded_and_rendered_frames_decodes_as_the_encoder_saw_it(trained, moving):
    model, _ = trained
    clip = encode(moving, trained, 39)
    kinds = {isinstance(p, KeyframePacket) for p in clip.packets}
    assert kinds == {True, False}
    first = next(p for p in clip.packets if isinstance(p, KeyframePacket))
    assert slice_qp(first.annexb) == quality_settings(39).idr_qp - IDR_QP_OFFSET  # the encoder passes the IDR QP on
    reader = StreamReader(clip.to_bytes())
    decoder = Decoder(model, reader.header)
    decoded = [f for packet in reader for f in decoder.push(packet)]
    assert clip.stats.proxy_db == [luma_psnr(d, f, model.analysis_size) for d, f in zip(decoded, moving, strict=True)]
    # Each coded frame clears the threshold its rendering missed.
    threshold = quality_settings(39).refresh_threshold
    coded = sorted(clip.stats.keyframe_log)[1:]
    assert coded and all(clip.stats.proxy_db[i] >= threshold for i in coded)


def test_intra_keyframes_take_the_idr_qp_and_predicted_ones_the_keyframe_qp(moving):
    coder = KeyframeEncoder(45, predict=True, idr_qp=30)
    idr = coder.encode(moving[0], intra=True)
    predicted = coder.encode(moving[6], intra=False)
    assert slice_qp(idr) == 30 - IDR_QP_OFFSET
    same = KeyframeEncoder(45, predict=True)
    assert slice_qp(same.encode(moving[0], intra=True)) == 45 - IDR_QP_OFFSET
    # The predicted picture is coded coarser than the intra one (its own QP), so it is far smaller.
    assert len(predicted) * 3 < len(idr)
    assert slice_qp(KeyframeEncoder(45, predict=False, idr_qp=30).encode(moving[0], intra=True)) == 30 - IDR_QP_OFFSET
    with pytest.raises(H264Error, match="more than 20 below"):
        KeyframeEncoder(51, predict=True, idr_qp=30)
    with pytest.raises(InputError, match="no separate IDR QP"):
        encode_to_rate(lambda: iter(moving), None, EncoderConfig(width=SIZE, height=SIZE, fps=25, idr_qp=24), b"", 50.0)
    with pytest.raises(InputError, match="IDR QP 30 outside 31..51"):
        EncoderConfig(width=SIZE, height=SIZE, fps=25, keyframe_qp=51, idr_qp=30)


def test_fvc_encode_quality_end_to_end_and_the_options_it_replaces(moving, tmp_path, capsys):
    video, stream = tmp_path / "in.mp4", tmp_path / "out.fvc"
    with VideoWriter(video, fps=25, crf=0) as writer:
        for frame in moving:
            writer.write(frame)
    base = ["encode", str(video), str(stream), "--size", str(SIZE), "--force"]
    assert main(base + ["--quality", "30"]) == 0
    out = capsys.readouterr().out
    assert f"keyframes: {len(moving)} " in out
    assert "landmark refresh" not in out  # every frame coded: nothing rendered to judge
    assert main(["decode", str(stream), str(tmp_path / "png"), "--format", "png", "--quiet"]) == 0
    assert len(list((tmp_path / "png").glob("*.png"))) == len(moving)
    stream.unlink()
    for extra, option in ((["--refresh-threshold", "20"], "--refresh-threshold"),
                          (["--keyframe-qp", "24"], "--keyframe-qp"),
                          (["--refresh-landmarks", "2"], "--refresh-landmarks")):
        assert main(base + ["--quality", "40", *extra]) != 0
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"drop {option}" in err
        assert not stream.exists()
    assert main(base + ["--quality", "40", "--kbps", "50"]) == 0
    out = capsys.readouterr().out
    assert "rate control: target 50 kbps -> --quality " in out
    assert re.search(r"landmark refresh: \d+ keyframes? coded for landmarks more than [\d.]+ px off", out)
    assert StreamReader(stream.read_bytes()).header.frame_count == len(moving)
    with pytest.raises(SystemExit) as exc:
        main(base + ["--quality", "52"])
    assert exc.value.code != 0 and "outside 0..51" in capsys.readouterr().err


def test_the_search_interpolates_in_log_rate_between_the_passes_around_the_target():
    from codec.quality_rate import _next_quality

    # Bracketed: ln-rate interpolation, where it falls in the bracket's middle half.
    q = _next_quality({40.0: 100.0, 46.0: 25.0}, 50.0)
    assert 40 + 1.5 <= q <= 46 - 1.5 and abs(q - 43.0) < 1e-9
    # Interpolation outside the middle half (a cliff in the rate): the bracket's middle.
    assert _next_quality({31.56: 132.7, 33.67: 33.7}, 100.0) == (31.56 + 33.67) / 2
    # One side only: a step along the coded pictures' slope, toward the target.
    assert _next_quality({42.0: 100.0}, 50.0) > 42 > _next_quality({42.0: 20.0}, 50.0)
    # The edges: nothing further to try.
    assert _next_quality({51.0: 100.0}, 50.0) is None and _next_quality({0.0: 20.0}, 50.0) is None
    assert _next_quality({40.0: 100.0, 40.01: 25.0}, 50.0) is None
    # A flat stretch on one side (one keyframe and motion): the next pass goes to the end of the scale at once.
    assert _next_quality({40.0: 11.4, 41.3: 11.4}, 10.0) == QUALITY_MAX
    assert _next_quality({30.0: 400.0, 29.0: 401.0}, 600.0) == QUALITY_MIN
    # A secant as steep as the coded pictures' or steeper: the usual step (never a smaller one).
    assert _next_quality({40.0: 100.0, 42.0: 80.0}, 50.0) == _next_quality({42.0: 80.0}, 50.0)


def test_the_rate_search_spends_no_pass_on_settings_it_has_coded(monkeypatch):
    import codec.quality_rate as qr

    coded = []

    def fake_encode(frames, model, config, model_id, callback):  # cnn2 at 100 kbps: every frame at QP 32 is 130 kbps
        coded.append(config)
        kbps = {40: 15.5, 32: 130.4, 33: 101.9}[config.keyframe_qp]
        return type("Clip", (), {"kbps": lambda self: kbps})()

    # The search's guesses on cnn2: 32.11 and 32.45 code every frame at QP 32, as 31.65 did.
    guesses = iter([31.65, 32.11, 32.45, 32.77])
    monkeypatch.setattr(qr, "encode_clip", fake_encode)
    monkeypatch.setattr(qr, "_next_quality", lambda rates, target: next(guesses))
    base = EncoderConfig(width=SIZE, height=SIZE, fps=Fraction(25))
    clip, choice = qr.encode_quality_to_rate(lambda: iter(()), None, base, b"", 100.0, start=40)
    assert [q for q, _ in choice.passes] == [40, 31.65, 32.77] and len(coded) == 3
    assert quality_settings(32.11) == quality_settings(31.65) != quality_settings(32.77)
    assert choice.quality == 32.77 and clip.kbps() == choice.kbps == 101.9 and not choice.missed


def test_kbps_with_quality_lands_within_ten_percent_or_says_how_far_it_got(trained, moving):
    from codec.errors import RateControlError
    from codec.quality_rate import RATE_TOLERANCE, encode_quality_to_rate

    model, ident = trained
    base = EncoderConfig(width=SIZE, height=SIZE, fps=Fraction(25))
    target = encode(moving, trained, 40).kbps() * 1.3  # a rate that no pass starting at Q 45 hits at once
    clip, choice = encode_quality_to_rate(lambda: iter(moving), model, base, ident, target, start=45)
    assert not choice.missed and abs(choice.kbps / target - 1) <= RATE_TOLERANCE
    assert clip.kbps() == choice.kbps and len(choice.passes) > 1
    # Below one keyframe and motion: out of reach, the nearest is kept, or refused with --strict-rate.
    clip, choice = encode_quality_to_rate(lambda: iter(moving), model, base, ident, 1.0, start=45)
    assert choice.missed and choice.quality == 51 and choice.reachable[0] == clip.kbps()
    with pytest.raises(RateControlError, match="not reached within"):
        encode_quality_to_rate(lambda: iter(moving), model, base, ident, 1.0, start=45, strict=True)
