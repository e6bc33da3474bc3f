"""Loss resilience (issue 29 deliverable 2, bitstream 4.0): RESYNC packets from the encoder, keyframe requests
answered by an IDR, and the ConcealingDecoder behind the UDP transport (spec §4.6, §5.8, §12.7).

Everything runs in-process through bitstream.transport's Packetizer and Depacketizer, with feedback as RTCP
datagrams, on the untrained 64² test-image model, so a loss pattern is a list of datagrams not delivered.
"""
from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import pytest
import torch

from bitstream import (BitstreamError, KeyframePacket, MotionEncoder, MotionPacket, StreamReader, StreamWriter,
                       UseSlotPacket, default_header, quantize)
from bitstream.avc import ReferenceTracker
from bitstream.constants import NOTE_MINOR
from bitstream.synthetic import trace
from bitstream.transport import Depacketizer, FeedbackParser, Packetizer, feedback_datagrams, parse_datagram
from codec.decoder import ConcealingDecoder, Decoder, FrameSource
from codec.demo import DemoClipConfig, astronaut_frames
from codec.encoder import Encoder, EncoderConfig, KeyframeReason, encode_clip
from codec.errors import InputError
from codec.h264 import KeyframeEncoder
from codec.motion_model import build_untrained, untrained_model_id

SIZE = 64
RECIPE = "test-image"
MODEL_ID = untrained_model_id("fv2v", RECIPE, 0)
RESYNC = 5


@pytest.fixture(scope="module")
def model():
    return build_untrained("fv2v", RECIPE, 0)


@pytest.fixture(scope="module")
def frames():
    return list(astronaut_frames(DemoClipConfig(seconds=2.4, size=SIZE)))  # 60 frames


def config(**kw) -> EncoderConfig:
    return EncoderConfig(**{"width": SIZE, "height": SIZE, "fps": Fraction(25), "refresh_threshold": 0,
                            "max_gop": 20, "resync_period": RESYNC, **kw})


# ---------------------------------------------------------------- a sender and a receiver, in-process

@dataclass
class Call:
    """What a run of `call` sent and what the receiver showed."""

    sent: list  # every KEYFRAME, MOTION and USE_SLOT packet the encoder produced, in order
    shown: list  # ShownFrame
    decoder: ConcealingDecoder
    encoder: Encoder
    plis: int  # keyframe requests that reached the sender
    dropped: list = field(default_factory=list)  # (frame index, packet type byte) of every datagram not delivered


def call(model, frames, drop, cfg: EncoderConfig | None = None, window: int = 1) -> Call:
    """Encode `frames` live, send each datagram unless `drop(n, datagram)` says so, decode with concealment; the
    receiver's keyframe requests travel back as RTCP PLI and the sender answers before its next frame."""
    encoder = Encoder(model, cfg or config(), MODEL_ID)
    packetizer = Packetizer(encoder.header.pack(NOTE_MINOR), first_seq=65530)
    receiver = Depacketizer(window=window)
    feedback: list[bytes] = []
    decoder = ConcealingDecoder(model, encoder.header, on_keyframe_request=lambda: feedback.extend(
        feedback_datagrams(packetizer.header_id, keyframe_request=True)))
    parser = FeedbackParser(packetizer.header_id)
    sent, shown, dropped, plis, n = [], [], [], 0, 0
    for frame in frames:
        while feedback:
            answer = parser.parse(feedback.pop(0))
            if answer is not None and answer.keyframe_request:
                encoder.request_keyframe()
                plis += 1
        for packet in encoder.push(frame):
            sent.append(packet)
            for datagram in packetizer.packetize(packet):
                n += 1
                if drop(n, datagram):
                    d = parse_datagram(datagram)[0]
                    dropped.append((d.timestamp, d.fragment[0] if d.start and d.kind == 0 else None))
                    continue
                for event in receiver.push(datagram):
                    shown += decoder.handle(event)
    for datagram in packetizer.packetize(packetizer.sequence.expected_end(packetizer.offset)):
        n += 1
        if not drop(n, datagram):
            for event in receiver.push(datagram):
                shown += decoder.handle(event)
    for event in receiver.flush():
        shown += decoder.handle(event)
    return Call(sent, shown, decoder, encoder, plis, dropped)


def loss_free(model, header, packets) -> dict[int, np.ndarray]:
    """Frame index -> the frame a decoder of the whole stream shows."""
    decoder = Decoder(model, header)
    out = {}
    for packet in packets:
        frames = decoder.push(packet)
        if frames:
            out[packet.frame_index] = frames[-1]
    return out


def check_shown(shown, reference: dict[int, np.ndarray], contiguous: bool = True) -> None:
    """Spec §12.7: every frame shown is the loss-free decoder's frame, or a repeat of a frame shown before it; the
    indices increase, and run without a hole from the first one shown unless the sender restarted (`contiguous`
    False: frame indices may start again, the timeline with them)."""
    indices = [f.index for f in shown]
    assert indices == (list(range(indices[0], indices[0] + len(shown))) if contiguous else sorted(set(indices)))
    before = []
    for f in shown:
        if f.source == FrameSource.CONCEALED:
            assert any(f.image is b or np.array_equal(f.image, b) for b in before), f.index
        else:
            assert np.array_equal(f.image, reference[f.index]), f.index
        before.append(f.image)


def packet_of(sent, index: int):
    return next(p for p in sent if getattr(p, "frame_index", None) == index)


# ---------------------------------------------------------------- encoder

def test_resync_every_n_motion_packets_and_after_each_keyframe_same_pictures(model, frames):
    clip = encode_clip(frames, model, config(), MODEL_ID)
    plain = encode_clip(frames, model, config(resync_period=0), MODEL_ID)
    since, keyframe = None, None
    for packet in clip.packets:
        if isinstance(packet, KeyframePacket):
            since, keyframe = 0, packet.frame_index
        else:
            assert packet.resync == (since % RESYNC == 0), packet.frame_index
            assert packet.keyframe == (keyframe if packet.resync else None)
            since += 1
    assert clip.stats.resync_packets == sum(p.resync for p in clip.packets if isinstance(p, MotionPacket)) == 12
    data = clip.to_bytes()
    reader = StreamReader(data)
    assert reader.parser.version == (4, 0) and reader.header.resync
    assert StreamReader(plain.to_bytes()).parser.version == (3, 0)  # without RESYNC the stream stays 3.0
    # The same integers, coded otherwise: every frame decodes as without RESYNC, for more motion bytes.
    decoder = Decoder(model, reader.header)
    decoded = [f for p in reader for f in decoder.push(p)]
    assert all(np.array_equal(a, b) for a, b in zip(decoded, loss_free(model, plain.header, plain.packets).values(),
                                                    strict=True))
    assert clip.stats.motion_bytes > plain.stats.motion_bytes
    with pytest.raises(InputError, match="--resync-period -1 must be >= 0"):
        config(resync_period=-1)


def test_a_keyframe_request_is_answered_by_an_idr_at_the_next_frame(model, frames):
    encoder = Encoder(model, config(), MODEL_ID)
    packets = [p for f in frames[:7] for p in encoder.push(f)]
    encoder.request_keyframe()
    (answer,) = encoder.push(frames[7])
    assert isinstance(answer, KeyframePacket) and answer.intra and answer.frame_index == 7
    assert encoder.stats.keyframe_log[7] == KeyframeReason.REQUEST
    after = encoder.push(frames[8])[0]
    assert after.resync and after.keyframe == 7  # the first motion packet after it names it
    assert isinstance(encoder.push(frames[9])[0], MotionPacket)  # asked once, answered once
    assert len(packets) == 7


def slotted(**kw) -> EncoderConfig:
    # As in test_ref_slots: the shipped weights render a frame from its own picture above 18 dB and from another
    # below it, so keyframes and switches fall where the pictures change.
    return config(**{"refresh_threshold": 18.0, "predict_keyframes": False, "refs": 2, "max_gop": 250, **kw})


def test_a_resync_after_a_slot_switch_names_the_new_slots_keyframe(trained, stills):
    model, ident = trained
    frames = [stills[c] for c in "AAABBBAAA"]
    clip = encode_clip(frames, model, slotted(resync_period=1), ident)
    plain = encode_clip(frames, model, slotted(resync_period=0), ident)
    switch = next(i for i, p in enumerate(clip.packets) if isinstance(p, UseSlotPacket))
    assert clip.packets[switch] == UseSlotPacket(0)
    after = clip.packets[switch + 1]
    assert after.resync and after.keyframe == 0  # not 3, the keyframe of the slot it switched from
    data = clip.to_bytes()  # the writer checks every RESYNC against the active slot
    decoder = Decoder(model, StreamReader(data).header)
    decoded = [f for p in StreamReader(data) for f in decoder.push(p)]
    assert all(np.array_equal(a, b) for a, b in zip(decoded, loss_free(model, plain.header, plain.packets).values(),
                                                    strict=True))


def test_after_a_keyframe_request_the_encoder_shows_nothing_from_older_slots(trained, stills):
    """A receiver that lost a keyframe cannot vouch for the slots filled before the IDR that answers it."""
    model, ident = trained
    frames = [stills[c] for c in "AABBCCBB"]
    base = encode_clip(frames, model, slotted(refs=3), ident)
    assert UseSlotPacket(1) in base.packets  # without a request, B returns from slot 1
    encoder = Encoder(model, slotted(refs=3), ident)
    packets = []
    for index, frame in enumerate(frames):
        if index == 5:
            encoder.request_keyframe()
        packets += encoder.push(frame)
    keyframes = [(p.frame_index, p.slot, p.intra) for p in packets if isinstance(p, KeyframePacket)]
    assert keyframes == [(0, 0, True), (2, 1, True), (4, 2, True), (5, 0, True), (6, 1, True)]
    assert not any(isinstance(p, UseSlotPacket) for p in packets)


def test_a_decoder_refuses_a_resync_naming_another_keyframe(model, frames):
    clip = encode_clip(frames[:8], model, config(), MODEL_ID)
    decoder = Decoder(model, clip.header)
    decoder.push(clip.packets[0])
    forged = MotionPacket(1, clip.packets[1].payload, keyframe=5)
    with pytest.raises(BitstreamError, match="names the keyframe of frame 5, but the active slot 0 holds the "
                                             "keyframe of frame 0") as info:
        decoder.push(forged, offset=321)
    assert info.value.offset == 321


# ---------------------------------------------------------------- receiver: the three behaviours

def test_a_seeded_loss_pattern_shows_the_same_frames_every_run(model, frames):
    def run(seed: int) -> Call:
        rng = random.Random(seed)
        return call(model, frames, lambda n, d: rng.random() < 0.12)

    first, second = run(29), run(29)
    assert [(f.index, f.source, f.picture) for f in first.shown] == [(f.index, f.source, f.picture)
                                                                      for f in second.shown]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first.shown, second.shown, strict=True))
    assert first.sent == second.sent and first.dropped == second.dropped
    stats = first.decoder.stats
    assert stats.concealed > 0 and stats.decoded > 0 and stats.shown == len(frames)
    check_shown(first.shown, loss_free(model, first.encoder.header, first.sent))
    other = run(30)
    assert other.dropped != first.dropped


def test_a_lost_keyframe_is_requested_and_frames_after_the_idr_are_the_loss_free_ones(model, frames):
    # The max_gop keyframe of frame 20 (a predicted one) is lost whole.
    result = call(model, frames, lambda n, d: parse_datagram(d)[0].timestamp == 20
                  and parse_datagram(d)[0].fragment[0] == 1)
    assert (20, 1) in result.dropped
    assert not packet_of(result.sent, 20).intra
    stats = result.decoder.stats
    assert stats.keyframe_requests == 1 and stats.keyframes_lost == 1 and result.plis == 1
    # The RESYNC of frame 21 names keyframe 20, which the receiver does not hold: it asks, and the sender's next
    # frame, 22, is an IDR.
    idr = packet_of(result.sent, 22)
    assert isinstance(idr, KeyframePacket) and idr.intra
    assert result.encoder.stats.keyframe_log[22] == KeyframeReason.REQUEST
    reference = loss_free(model, result.encoder.header, result.sent)
    check_shown(result.shown, reference)
    by_index = {f.index: f for f in result.shown}
    assert [by_index[i].source for i in (19, 20, 21, 22)] == [FrameSource.MOTION, FrameSource.CONCEALED,
                                                               FrameSource.CONCEALED, FrameSource.KEYFRAME]
    # Nothing is shown from the lost picture, and from the IDR on every frame is the loss-free one.
    assert all(f.picture != 20 for f in result.shown)
    assert all(f.source != FrameSource.CONCEALED and np.array_equal(f.image, reference[f.index])
               for f in result.shown if f.index >= 22)
    assert not result.decoder.keyframe_needed


def test_a_lost_motion_packet_is_concealed_until_the_next_resync(model, frames):
    # Frame 3's MOTION packet is lost; RESYNC packets come at 1, 6, 11 ... (every 5 after keyframe 0).
    result = call(model, frames, lambda n, d: parse_datagram(d)[0].timestamp == 3
                  and parse_datagram(d)[0].fragment[0] == 2)
    assert (3, 2) in result.dropped and packet_of(result.sent, 6).resync
    reference = loss_free(model, result.encoder.header, result.sent)
    check_shown(result.shown, reference)
    by_index = {f.index: f for f in result.shown}
    # 3 is lost, 4 and 5 arrive but are coded against 3 and 4: all three show frame 2 again.
    for index in (3, 4, 5):
        assert by_index[index].source == FrameSource.CONCEALED and by_index[index].image is by_index[2].image
    assert not np.array_equal(reference[4], reference[2])  # (the frames do move)
    # Decoding resumes exactly at the RESYNC of frame 6, and every frame from there is the loss-free one.
    assert all(f.source != FrameSource.CONCEALED and np.array_equal(f.image, reference[f.index])
               for f in result.shown if f.index < 3 or f.index >= 6)
    stats = result.decoder.stats
    assert (stats.concealed, stats.motion_skipped, stats.resyncs) == (3, 2, 1)
    assert stats.keyframe_requests == 0 and result.plis == 0  # motion alone is lost: no keyframe needed


def test_without_resync_packets_motion_resumes_only_at_the_next_keyframe(model, frames):
    result = call(model, frames, lambda n, d: parse_datagram(d)[0].timestamp == 3
                  and parse_datagram(d)[0].fragment[0] == 2, cfg=config(resync_period=0))
    by_index = {f.index: f for f in result.shown}
    assert all(by_index[i].source == FrameSource.CONCEALED for i in range(3, 20))
    assert by_index[20].source == FrameSource.KEYFRAME
    check_shown(result.shown, loss_free(model, result.encoder.header, result.sent))


# ---------------------------------------------------------------- receiver: predicted keyframes and slots

def test_a_predicted_keyframe_after_a_lost_reference_is_not_shown(model, frames):
    """Keyframes at 0 (IDR), 3, 6, 9 (predicted); keyframe 3 and the motion after it are lost, so the first thing
    that comes is predicted keyframe 6, whose H.264 reference 3 is missing: frame_num tells."""
    clip = encode_clip(frames[:12], model, config(max_gop=3), MODEL_ID)
    assert [(p.frame_index, p.intra) for p in clip.packets if isinstance(p, KeyframePacket)] == [
        (0, True), (3, False), (6, False), (9, False)]
    requests = []
    decoder = ConcealingDecoder(model, clip.header, on_keyframe_request=lambda: requests.append(1))
    shown = []
    for packet in clip.packets:
        if packet.frame_index in (3, 4, 5):
            continue
        shown += decoder.push(packet, discontinuity=packet.frame_index == 6)
    reference = loss_free(model, clip.header, clip.packets)
    check_shown(shown, reference)
    assert [f.index for f in shown if f.source != FrameSource.CONCEALED] == [0, 1, 2]
    assert {f.picture for f in shown} == {0} and requests == [1] and decoder.keyframe_needed


def test_reference_tracker_follows_frame_num(stills):
    coder = KeyframeEncoder(30, predict=True)
    units = [coder.encode(stills[c], intra=c == "A") for c in "ABCB"]
    tracker = ReferenceTracker()
    assert [tracker.follows(u) for u in units] == [True, True, True, True]
    tracker = ReferenceTracker()
    assert [tracker.follows(u) for u in (units[0], units[2], units[3])] == [True, False, False]  # 1 missing
    assert tracker.follows(units[0])  # an IDR starts again
    assert not ReferenceTracker().follows(units[1])  # a P picture with no IDR before it
    assert not ReferenceTracker().follows(b"\0\0\1\x65\xff")  # unreadable


def _slot_stream(model, stills):
    """2.x-style switching in a 4.0 stream: K0 (slot 0), K3 (slot 1), K5 (slot 0 again), USE_SLOT 1 and a RESYNC
    naming K3, motion, then USE_SLOT 0 back to K5 and more motion. Real H.264 and coded motion."""
    header = default_header(model.kind, SIZE, SIZE, 25, MODEL_ID, num_keypoints=model.num_keypoints,
                            ref_slots=2, resync=True)
    coder = KeyframeEncoder(30, predict=False)
    motion = MotionEncoder(header)
    ints = [quantize(m, header) for m in trace(model.kind, 12, model.num_keypoints, seed=3)]

    def moving(index, keyframe=None):
        if keyframe is not None:
            motion.reset()
        return MotionPacket(index, motion.encode(ints[index])[0], keyframe)

    packets = [KeyframePacket(0, coder.encode(stills["A"]), 0)]
    motion.reset()
    packets += [moving(1, 0), moving(2), KeyframePacket(3, coder.encode(stills["B"]), 1)]
    motion.reset()
    packets += [moving(4, 3), KeyframePacket(5, coder.encode(stills["C"]), 0)]
    motion.reset()
    packets += [UseSlotPacket(1), moving(6, 3), moving(7), UseSlotPacket(0), moving(8), moving(9), moving(10, 5),
                moving(11)]
    sink = io.BytesIO()
    writer = StreamWriter(sink, header)
    for p in packets:
        writer.write(p)  # the writer's rules hold: each RESYNC names the active slot's keyframe
    return header, packets


def test_a_switch_to_a_slot_a_lost_keyframe_may_have_refilled_waits_for_a_resync(model, stills):
    header, packets = _slot_stream(model, stills)
    requests = []
    decoder = ConcealingDecoder(model, header, on_keyframe_request=lambda: requests.append(1))
    shown, after_loss = [], False
    for packet in packets:
        if getattr(packet, "frame_index", None) == 5:  # K5, refilling slot 0, is lost
            after_loss = True
            continue
        shown += decoder.push(packet, discontinuity=after_loss)
        after_loss = False
    reference = loss_free(model, header, packets)
    check_shown(shown, reference)
    sources = {f.index: f.source for f in shown}
    # USE_SLOT 1 right after the loss: the RESYNC of frame 6 names K3, which slot 1 holds: 6 and 7 decode.
    assert sources[6] == sources[7] == FrameSource.MOTION
    # USE_SLOT 0: slot 0 was filled before the loss and no RESYNC vouched for it: it holds K0, not K5. Frames 8 and
    # 9 are concealed, and the RESYNC of frame 10 names K5, which the receiver does not hold: it asks for an IDR.
    assert [sources[i] for i in (5, 8, 9, 10, 11)] == [FrameSource.CONCEALED] * 5
    assert all(f.picture in (0, 3) for f in shown) and requests == [1]


# ---------------------------------------------------------------- fuzzing the receiver

class StubModel:
    """A MotionModel that renders in microseconds: the keyframe's picture shifted by the motion (so that frames
    differ with the integers), for thousands of seeded loss patterns."""

    kind = 0
    num_keypoints = 20
    analysis_size = SIZE

    def analyze_keyframe(self, image):
        return image

    def estimate_motion(self, image):
        return {"rotation": torch.zeros(1, 1, 3), "translation": torch.zeros(1, 1, 3),
                "expression": torch.zeros(1, 20, 3)}

    def render(self, state, motion):
        shift = float(sum(v.sum() for v in motion.values()))
        return (state + (shift % 1.0) / 4.0).clamp(0.0, 1.0)


def test_random_losses_reordering_and_damage_never_show_a_wrong_frame(model, frames):
    """Hundreds of seeded patterns (random and burst loss, reordering, duplicates, damaged datagrams) through the
    transport into a ConcealingDecoder: it never raises, and every frame it shows is the loss-free decoder's or a
    repeat (spec §12.7). The stream: predicted keyframes, RESYNC every 5, a requested IDR."""
    stub = StubModel()
    cfg = config(max_gop=9)
    encoder = Encoder(model, cfg, MODEL_ID)
    sent = []
    for index, frame in enumerate(frames[:40]):
        if index == 25:
            encoder.request_keyframe()
        sent += encoder.push(frame)
    reference = loss_free(stub, encoder.header, sent)
    packetizer = Packetizer(encoder.header.pack(NOTE_MINOR), first_seq=65000)
    datagrams = [d for p in sent for d in packetizer.packetize(p)]
    rng = random.Random(2929)
    totals = {"concealed": 0, "requests": 0, "decoded": 0}
    for trial in range(300):
        traffic = list(datagrams)
        mode = trial % 4
        if mode == 0:
            traffic = [d for d in traffic if rng.random() > rng.choice([0.01, 0.03, 0.1, 0.3])]
        elif mode == 1:  # one burst
            start = rng.randrange(len(traffic))
            del traffic[start:start + rng.randint(1, 6)]
        elif mode == 2:  # loss, reordering and duplicates
            traffic = [d for d in traffic if rng.random() > 0.05]
            for i in range(len(traffic) - 1):
                if rng.random() < 0.15:
                    traffic[i], traffic[i + 1] = traffic[i + 1], traffic[i]
            traffic += [rng.choice(datagrams) for _ in range(3)]
        else:  # damaged bytes
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(len(traffic))
                data = bytearray(traffic[i])
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
                traffic[i] = bytes(data)
        receiver = Depacketizer(window=rng.choice([1, 4, 16]))
        decoder = ConcealingDecoder(stub, encoder.header)
        shown = []
        for d in traffic:
            for event in receiver.push(d):
                shown += decoder.handle(event)
        for event in receiver.flush():
            shown += decoder.handle(event)
        if shown:
            # A damaged sequence number far ahead can make the transport see a restart (spec §12.5).
            check_shown(shown, reference, contiguous=not decoder.stats.restarts)
        totals["concealed"] += decoder.stats.concealed
        totals["requests"] += decoder.stats.keyframe_requests
        totals["decoded"] += decoder.stats.decoded
    assert min(totals.values()) > 0
