"""Streaming Encoder: closed loop, keyframe decisions, adaptive keypoints, rate control, refused input."""
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
import torch

from bitstream import KeyframePacket, MotionKind, MotionPacket, StreamReader
from codec.coding_defaults import PRESETS, SearchConfig
from codec.decoder import Decoder
from codec.demo import DemoClipConfig, astronaut_frames
from codec.encoder import (EncodedClip, Encoder, EncoderConfig, KeyframeReason, encode_clip, encode_to_rate,
                           luma_psnr)
from codec.errors import InputError, RateControlError
from codec.h264 import QP_MAX
from codec.metrics import lpips_distance
from codec.motion_model import build_untrained, default_weights, load_model, model_id, untrained_model_id

SIZE = 64
MODEL_ID = untrained_model_id("fv2v", "test", 0)


@pytest.fixture(scope="module")
def model():
    return build_untrained("fv2v", "test", 0)


@pytest.fixture(scope="module")
def frames():
    return list(astronaut_frames(DemoClipConfig(seconds=0.32, size=SIZE)))  # 8 frames


def config(**kw) -> EncoderConfig:
    return EncoderConfig(**{"width": SIZE, "height": SIZE, "fps": Fraction(25), **kw})


def decode_all(model, data: bytes) -> list[np.ndarray]:
    reader = StreamReader(data)
    decoder = Decoder(model, reader.header)
    return [f for packet in reader for f in decoder.push(packet)]


def test_first_frame_is_a_keyframe_and_max_gop_forces_the_next(model, frames):
    clip = encode_clip(frames, model, config(refresh_threshold=0, max_gop=3), MODEL_ID)
    kinds = [type(p) for p in clip.packets]
    assert kinds == [KeyframePacket, MotionPacket, MotionPacket] * 2 + [KeyframePacket, MotionPacket]
    assert clip.stats.keyframe_reasons == {KeyframeReason.FIRST: 1, KeyframeReason.MAX_GOP: 2}
    assert clip.header.frame_count == len(frames) == clip.stats.frames
    assert clip.header.kind == MotionKind.FV2V and clip.header.model_id == MODEL_ID
    assert clip.header.num_keypoints == model.num_keypoints


def test_encoder_sees_exactly_what_the_decoder_shows(model, frames):
    clip = encode_clip(frames, model, config(refresh_threshold=1.0, max_gop=4), MODEL_ID)
    decoded = decode_all(model, clip.to_bytes())
    assert len(decoded) == len(frames)
    assert all(d.shape == (SIZE, SIZE, 3) and d.dtype == np.uint8 for d in decoded)
    # The proxy the encoder measured on its own reconstruction equals the one on the decoder's frames.
    assert clip.stats.proxy_db == [luma_psnr(d, f, model.analysis_size) for d, f in zip(decoded, frames, strict=True)]


def test_refresh_off_is_open_loop_and_codes_the_same_stream(model, frames, monkeypatch):
    closed = encode_clip(frames, model, config(refresh_threshold=1.0), MODEL_ID)  # 1 dB: never refreshes

    def no_render(*args, **kwargs):
        raise AssertionError("the encoder rendered a frame with quality refresh off")

    monkeypatch.setattr(model, "render", no_render)
    monkeypatch.setattr(model, "analyze_keyframe", no_render)
    opened = encode_clip(frames, model, config(refresh_threshold=0), MODEL_ID)
    assert opened.to_bytes() == closed.to_bytes()
    assert opened.stats.proxy_db == [] and len(closed.stats.proxy_db) == len(frames)


def test_low_threshold_never_refreshes_and_high_threshold_always_does(model, frames):
    never = encode_clip(frames, model, config(refresh_threshold=1.0), MODEL_ID)
    always = encode_clip(frames, model, config(refresh_threshold=99.0), MODEL_ID)
    assert never.stats.keyframe_reasons == {KeyframeReason.FIRST: 1}
    assert always.stats.keyframe_reasons == {KeyframeReason.FIRST: 1, KeyframeReason.QUALITY: len(frames) - 1}
    assert all(isinstance(p, KeyframePacket) for p in always.packets)


def test_refresh_between_the_extremes_follows_the_proxy(model, frames):
    probe = encode_clip(frames, model, config(refresh_threshold=1.0, max_gop=1000), MODEL_ID)
    motion_psnr = probe.stats.proxy_db[1:]
    threshold = (min(motion_psnr) + max(motion_psnr)) / 2
    clip = encode_clip(frames, model, config(refresh_threshold=threshold), MODEL_ID)
    assert clip.stats.keyframe_reasons[KeyframeReason.QUALITY] >= 1
    assert all(p >= threshold for p, packet in zip(clip.stats.proxy_db, clip.packets, strict=True)
               if isinstance(packet, MotionPacket))


def test_keypoint_masking_saves_bits_and_minus_one_sends_all(model, frames):
    masked = encode_clip(frames, model, config(refresh_threshold=0, kp_threshold=10_000), MODEL_ID)
    full = encode_clip(frames, model, config(refresh_threshold=0, kp_threshold=-1), MODEL_ID)
    assert masked.stats.motion_bytes < masked.stats.unmasked_motion_bytes
    assert full.stats.motion_bytes == full.stats.unmasked_motion_bytes == masked.stats.unmasked_motion_bytes
    assert len(decode_all(model, masked.to_bytes())) == len(frames)


def test_push_returns_one_packet_per_frame_and_flush_nothing(model, frames):
    encoder = Encoder(model, config(refresh_threshold=0), MODEL_ID)
    out = [encoder.push(f) for f in frames[:3]]
    assert [len(o) for o in out] == [1, 1, 1]
    assert [o[0].frame_index for o in out] == [0, 1, 2]
    assert encoder.flush() == []
    assert len(encoder.stats.frame_ms) == 3 and all(ms > 0 for ms in encoder.stats.frame_ms)


@pytest.mark.parametrize("bad", [np.zeros((SIZE, SIZE, 3), np.float32), np.zeros((SIZE, SIZE + 2, 3), np.uint8),
                                 np.zeros((SIZE, SIZE), np.uint8), [[0]]])
def test_push_refuses_a_frame_of_the_wrong_type_or_size(model, bad):
    encoder = Encoder(model, config(), MODEL_ID)
    with pytest.raises(InputError, match="frame 0"):
        encoder.push(bad)


@pytest.mark.parametrize("field,value,match", [("keyframe_qp", 52, "keyframe-qp"), ("max_gop", 0, "max-gop"),
                                               ("kp_threshold", -2, "kp-threshold"),
                                               ("refresh_threshold", -1.0, "refresh-threshold"),
                                               ("fps", 0, "fps"), ("motion_step", 0.1, "motion-step"),
                                               ("motion_step", 5.0, "motion-step")])
def test_config_refuses_out_of_range_settings(field, value, match):
    with pytest.raises(InputError, match=match):
        config(**{field: value})


def test_empty_clip_is_refused(model):
    with pytest.raises(InputError, match="no video frames"):
        encode_clip([], model, config(), MODEL_ID)


def test_rate_control_lands_within_15_percent(model, frames):
    source = lambda: iter(frames)  # noqa: E731
    base = encode_clip(frames, model, config(refresh_threshold=0, max_gop=4, keyframe_qp=30), MODEL_ID)
    target = base.kbps() * 0.6  # needs a coarser keyframe QP than 30
    clip, choice = encode_to_rate(source, model, config(refresh_threshold=0, max_gop=4), MODEL_ID, target)
    assert abs(clip.kbps() / target - 1) <= 0.15
    assert choice.keyframe_qp > 30 and choice.kbps == pytest.approx(clip.kbps())
    assert choice.full_passes == 2 and choice.fast_passes >= 1


def test_strict_rate_control_refuses_an_unreachable_target_after_one_pass(model, frames):
    passes = []
    with pytest.raises(RateControlError, match=r"out of reach.*kbps.*--max-gop"):
        encode_to_rate(lambda: iter(frames), model, config(refresh_threshold=0, max_gop=4), MODEL_ID, 0.01,
                       strict=True, on_pass=lambda number, cfg: passes.append(number))
    assert passes == [1]


def test_with_one_keyframe_the_floor_points_at_the_motion_not_the_keyframe_count(model, frames):
    with pytest.raises(RateControlError, match=r"one keyframe plus the motion.*--kp-threshold"):
        encode_to_rate(lambda: iter(frames), model, config(refresh_threshold=0), MODEL_ID, 0.01, strict=True)


def test_unreachable_target_keeps_the_nearest_rate_and_names_the_range(model, frames):
    clip, choice = encode_to_rate(lambda: iter(frames), model, config(refresh_threshold=0, max_gop=4), MODEL_ID, 0.01)
    low, high = choice.reachable
    assert choice.missed and choice.keyframe_qp == QP_MAX and clip.kbps() == pytest.approx(low) and high > low


def test_rate_control_refits_the_qp_when_the_second_pass_moves_the_keyframes():
    # A still picture with the image renderer and IDR keyframes: a motion frame shows the keyframe as decoded,
    # so the refresh threshold (29 dB) splits the QPs. At QP 30 the first pass codes one keyframe, the fit on it
    # asks for QP 37, where every frame falls below 29 dB and becomes an IDR: 8 of them land far above the
    # target, and the re-fit on those positions moves the QP to the nearest rate they allow (the scale's end).
    # (Predicted keyframes of a still picture cost a few bytes each: they would not move the rate.)
    model = build_untrained("fv2v", "test-image", 0)
    still = next(iter(astronaut_frames(DemoClipConfig(seconds=0.04, size=SIZE))))
    passes = []
    clip, choice = encode_to_rate(lambda: iter([still] * 8), model,
                                  config(refresh_threshold=29, predict_keyframes=False),
                                  untrained_model_id("fv2v", "test-image", 0), 25.0,
                                  on_pass=lambda number, cfg: passes.append(cfg.keyframe_qp))
    assert passes[0] == 30 and len(passes) == 2 and clip.stats.keyframes == 8  # the second pass refreshed
    assert choice.decided_at_qp == passes[1] and choice.keyframe_qp > passes[1]  # re-fitted on its positions
    assert choice.keyframe_qp == 51 and choice.missed and choice.reachable[0] == pytest.approx(choice.kbps)
    assert choice.kbps == pytest.approx(clip.kbps()) and clip.config.keyframe_qp == choice.keyframe_qp


def test_rate_control_with_refresh_on_lands_within_15_percent_in_two_passes(trained):
    # At 24 dB the trained model's refresh decisions depend on keyframe quality: the keyframe
    # positions move with the QP (step-17548 weights: 9 keyframes at 30 kbps, QP 37; 7 at 150 kbps, QP 16).
    model, ident = trained
    clip_frames = list(astronaut_frames(DemoClipConfig(seconds=0.64, size=SIZE)))
    positions = []
    for target in (30.0, 150.0):
        clip, choice = encode_to_rate(lambda: iter(clip_frames), model, config(refresh_threshold=24), ident, target)
        assert abs(clip.kbps() / target - 1) <= 0.15 and not choice.missed
        assert choice.full_passes <= 2  # rate control costs at most twice a plain encode
        assert decode_all(model, clip.to_bytes())[0].shape == (SIZE, SIZE, 3)
        positions.append([p.frame_index for p in clip.packets if isinstance(p, KeyframePacket)])
    assert len(positions[0]) > len(positions[1])


# ---------------------------------------------------------------- motion search (the slow preset)

def searched_clip(trained, frames, **search) -> EncodedClip:
    model, ident = trained
    cfg = config(refresh_threshold=0, search=SearchConfig(**{"steps": 4, **search}))
    return encode_clip(frames, model, cfg, ident)


@pytest.fixture(scope="module")
def moving():
    return list(astronaut_frames(DemoClipConfig(seconds=0.4, size=SIZE)))  # 10 frames


def test_motion_step_scales_the_header_steps_and_the_quantised_motion(trained, moving):
    model, ident = trained
    coarse, fine = (encode_clip(moving[:4], model, config(refresh_threshold=0, motion_step=s), ident)
                    for s in (1.0, 0.5))
    assert [p.step for p in fine.header.params] == [np.float32(p.step * 0.5) for p in coarse.header.params]
    # The same estimates in half the step: twice the integers, within the rounding of each.
    ints = [{k: v for k, v in Decoder(model, c.header).motion_decoder.decode(p.payload).items()}
            for c in (coarse, fine) for p in c.packets[1:2]]
    for k in ints[0]:
        assert np.abs(ints[1][k] - 2 * ints[0][k]).max() <= 1
    assert np.abs(ints[0]["expression"]).max() > 1
    assert decode_all(model, fine.to_bytes())[1].shape == (SIZE, SIZE, 3)


@pytest.mark.parametrize("loss", ["l1", "lpips"])
def test_search_never_raises_the_rendered_cost_it_starts_from_and_lowers_it_on_some_frames(trained, moving, loss):
    clip = searched_clip(trained, moving, loss=loss)
    costs = clip.stats.search_costs
    assert len(costs) == len(moving) - 1
    assert all(chosen <= start for start, chosen in costs)
    assert clip.stats.searched >= 1 and sum(c for _, c in costs) < sum(s for s, _ in costs)


def test_searched_stream_decodes_with_the_plain_decoder_as_the_encoder_saw_it(trained, moving):
    model, ident = trained
    clip = encode_clip(moving, model, config(refresh_threshold=1.0, search=SearchConfig(steps=4)), ident)
    decoded = decode_all(model, clip.to_bytes())
    assert len(decoded) == len(moving)
    assert clip.stats.proxy_db == [luma_psnr(d, f, model.analysis_size) for d, f in zip(decoded, moving, strict=True)]


def test_search_lowers_the_error_of_the_decoded_frames(trained, moving):
    model, ident = trained
    plain = decode_all(model, encode_clip(moving, model, config(refresh_threshold=0), ident).to_bytes())
    searched = decode_all(model, searched_clip(trained, moving).to_bytes())
    error = lambda frames: np.mean([np.abs(d.astype(float) - f).mean() for d, f in zip(frames[1:], moving[1:])])  # noqa: E731
    assert error(searched) < error(plain)


def test_the_lpips_search_lowers_the_lpips_of_the_decoded_frames(trained, moving):
    model, ident = trained
    plain = decode_all(model, encode_clip(moving, model, config(refresh_threshold=0), ident).to_bytes())
    searched = decode_all(model, searched_clip(trained, moving, loss="lpips").to_bytes())
    target = np.stack(moving[1:])
    assert lpips_distance(np.stack(searched[1:]), target).mean() < lpips_distance(np.stack(plain[1:]), target).mean()


def test_the_anchor_keeps_the_searched_frames_near_the_estimates(trained, moving):
    model, ident = trained
    plain = decode_all(model, encode_clip(moving, model, config(refresh_threshold=0), ident).to_bytes())

    def drift(clip):
        frames = decode_all(model, clip.to_bytes())
        return np.mean([np.abs(d.astype(float) - p).mean() for d, p in zip(frames[1:], plain[1:])])

    free, pulled = (searched_clip(trained, moving, anchor_weight=w) for w in (0.0, 10.0))
    assert drift(pulled) < drift(free)


def test_every_preset_is_reproducible(trained, moving):
    model, ident = trained
    for preset in PRESETS.values():
        cfg = config(refresh_threshold=preset.refresh_threshold, search=preset.search and replace(preset.search, steps=2))
        runs = [encode_clip(moving[:4], model, cfg, ident).to_bytes() for _ in range(2)]
        assert runs[0] == runs[1], preset.name


def test_a_search_that_overshoots_falls_back_to_the_estimate(trained, moving):
    # Steps of 50 quantisation steps throw the keypoints about: those results must not be sent.
    clip = searched_clip(trained, moving, lr=50.0)
    assert all(chosen <= start for start, chosen in clip.stats.search_costs)
    assert clip.stats.searched < len(moving) - 1


def test_the_search_serves_fomm_through_the_same_protocol(moving):
    path = default_weights("fomm")
    assert path is not None, "the FOMM weights ship with the repo"
    model, ident = load_model(path, torch.device("cpu")), model_id(path)
    clip = encode_clip(moving, model, config(refresh_threshold=0, search=PRESETS["slow"].search), ident)
    assert all(chosen <= start for start, chosen in clip.stats.search_costs)
    assert clip.stats.searched >= 1
    assert len(decode_all(model, clip.to_bytes())) == len(moving)
