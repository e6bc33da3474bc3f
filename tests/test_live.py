"""`fvc send` and `fvc receive` (issue 29 deliverable 3) on loopback: real UDP sockets on 127.0.0.1 only, a few
seconds each, the untrained 64² development model."""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from codec.cli import main
from codec.decoder import FrameSource
from codec.demo import DemoClipConfig, astronaut_frames
from codec.encoder import Encoder, EncoderConfig, KeyframeReason
from codec.errors import InputError
from codec.live import (LIVE_START, MAX_NACKS, LiveReceiver, LiveSender, NetworkSimulator, drain, parse_udp_url,
                        udp_socket)
from codec.motion_model import build_untrained, untrained_model_id
from codec.video import VideoWriter, probe

SIZE = 64
MODEL = ["--model", "untrained-test-image"]
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_bound(port: int, seconds: float = 60.0) -> None:
    """Until something listens on 127.0.0.1:`port` (binding it fails)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("live") / "in.mp4"
    with VideoWriter(path, fps=25, crf=0) as writer:
        for frame in astronaut_frames(DemoClipConfig(seconds=2.0, size=SIZE)):  # 50 frames
            writer.write(frame)
    return path


def test_udp_urls():
    assert parse_udp_url("udp://127.0.0.1:5004") == ("127.0.0.1", 5004)
    assert parse_udp_url("udp://[::1]:9") == ("::1", 9)
    for bad in ("127.0.0.1:5004", "udp://127.0.0.1", "rtp://127.0.0.1:5", "udp://127.0.0.1:99999",
                "udp://127.0.0.1:5/x"):
        with pytest.raises(InputError, match="is not udp://HOST:PORT"):
            parse_udp_url(bad)


def test_the_network_simulator_is_seeded():
    def drops(seed: int) -> list[bool]:
        sim = NetworkSimulator(loss=0.3, delay=0.02, seed=seed)
        out = []
        for n in range(200):
            before = sim.dropped
            sim.arrive(bytes([n % 256]), now=n * 0.001)
            out.append(sim.dropped > before)
        return out

    assert drops(5) == drops(5) and drops(5) != drops(6)
    assert 30 < sum(drops(5)) < 90
    sim = NetworkSimulator(delay=0.05)
    sim.arrive(b"a", now=1.0)
    assert sim.due(1.04) == [] and sim.due(1.05) == [b"a"]
    with pytest.raises(InputError, match="--loss 1.5 outside 0..1"):
        NetworkSimulator(loss=1.5)


def rtp_like(seq: int) -> bytes:
    """Enough of an RTP datagram for NetworkSimulator: version 2, sequence number `seq`, SSRC 7."""
    return bytes([0x80, 96]) + seq.to_bytes(2, "big") + bytes(4) + (7).to_bytes(4, "big") + b"x"


def test_a_re_sent_copy_changes_no_other_datagrams_fate():
    """Positions count first transmissions: copies of a datagram (a re-send, END's repeats) move no later one's
    draw, so runs with and without NACK lose the same first transmissions (spec §12 tests, benchmarks/loss.py)."""
    def fates(copies_of: dict[int, int]) -> dict[int, bool]:
        sim, out = NetworkSimulator(loss=0.3, seed=3), {}
        for seq in range(100):
            for copy in range(1 + copies_of.get(seq, 0)):
                before = sim.dropped
                sim.arrive(rtp_like(seq), now=0.0)
                if copy == 0:
                    out[seq] = sim.dropped > before
        return out

    plain = fates({})
    assert fates({5: 1, 40: 3}) == plain and 15 < sum(plain.values()) < 45


def test_send_and_receive_on_loopback_with_seeded_loss(clip, tmp_path, capsys):
    port = free_port()
    url = f"udp://127.0.0.1:{port}"
    out = tmp_path / "out.mp4"
    codes = {}
    receiver = threading.Thread(target=lambda: codes.setdefault("receive", main(
        ["receive", url, str(out), *MODEL, "--loss", "0.05", "--seed", "11", "--timeout", "4", "--wait", "60"])))
    receiver.start()
    wait_bound(port)
    codes["send"] = main(["send", str(clip), url, *MODEL, "--size", str(SIZE), "--quiet"])
    receiver.join(120)
    assert not receiver.is_alive() and codes == {"send": 0, "receive": 0}
    report = capsys.readouterr().out
    assert "the END packet arrived" in report, report
    assert probe(out).frames == 50
    lines = {line.split(":")[0]: line for line in report.splitlines()}
    assert {"frames", "loss", "keyframes", "latency capture to display"} <= set(lines), report
    decoded = int(lines["frames"].split()[1])
    concealed = int(lines["frames"].split()[3])
    assert decoded + concealed == 50 and decoded > 0
    assert " dropped by --loss 0.05 (--delay 0 ms, --seed 11)" in lines["loss"]


def test_a_receiver_that_joins_late_asks_for_an_idr_and_gets_one():
    """The receiver starts after the stream's header and first keyframe went by: from the datagrams' SSRC it sends
    a PLI, the sender answers with an IDR (and the header before it), and decoding starts there."""
    model = build_untrained("fv2v", "test-image", 0)
    ident = untrained_model_id("fv2v", "test-image", 0)
    frames = list(astronaut_frames(DemoClipConfig(seconds=3.0, size=SIZE)))
    port = free_port()
    send_sock, address = udp_socket("127.0.0.1", port, bind=False)
    encoder = Encoder(model, EncoderConfig(width=SIZE, height=SIZE, fps=Fraction(25), refresh_threshold=0,
                                           resync_period=25), ident)
    sender = LiveSender(encoder, send_sock, address)
    sent = {}
    thread = threading.Thread(target=lambda: sent.setdefault("stats", sender.run(frames, Fraction(25))))
    thread.start()
    time.sleep(0.6)
    receive_sock, _ = udp_socket("127.0.0.1", port, bind=True)
    shown = []
    try:
        receiver = LiveReceiver(receive_sock, lambda header: model, shown.append)
        stats = receiver.run(timeout=3.0)
    finally:
        thread.join(60)
        receive_sock.close()
        send_sock.close()
    answered = [i for i, reason in encoder.stats.keyframe_log.items() if reason == KeyframeReason.REQUEST]
    assert sent["stats"].answered_plis >= 1 and answered and stats.plis_sent >= 1
    assert shown[0].source == FrameSource.KEYFRAME and shown[0].index == answered[0] > 0
    assert stats.ended and shown[-1].index == len(frames) - 1
    assert receiver.start_time is not None and len(stats.latency_ms) == receiver.decoder.stats.decoded
    assert all(f.source != FrameSource.CONCEALED for f in shown)  # nothing lost after the join


def live_call(frames, loss: float, seed: int, nack: bool, max_nacks: int = MAX_NACKS):
    """One loopback call of `frames` in real time through NetworkSimulator(loss, seed): (sender, receiver, shown)."""
    model = build_untrained("fv2v", "test-image", 0)
    encoder = Encoder(model, EncoderConfig(width=SIZE, height=SIZE, fps=Fraction(25), refresh_threshold=0,
                                           resync_period=25), untrained_model_id("fv2v", "test-image", 0))
    port = free_port()
    receive_sock, _ = udp_socket("127.0.0.1", port, bind=True)
    send_sock, address = udp_socket("127.0.0.1", port, bind=False)
    sender = LiveSender(encoder, send_sock, address)
    shown = []
    receiver = LiveReceiver(receive_sock, lambda header: model, shown.append, nack=nack, max_delay=0.3,
                            simulator=NetworkSimulator(loss=loss, seed=seed), max_nacks=max_nacks)
    thread = threading.Thread(target=lambda: sender.run(frames, Fraction(25)))
    thread.start()
    try:
        receiver.run(timeout=3.0)
    finally:
        thread.join(60)
        receive_sock.close()
        send_sock.close()
    return sender, receiver, shown


# Seeds under which --loss 0.05 drops exactly one first transmission of the 30-frame call: the MOTION datagram of
# frame 15 (arrival 18: header, NOTE, NOTE, KEYFRAME, then frame k at k + 3), or the KEYFRAME (arrival 3); the
# re-sent copy gets through (NetworkSimulator draws per arrival position and copy).
@pytest.mark.parametrize("seed, lost_frame", [(11, 15), (31, 0)], ids=["motion", "keyframe"])
def test_a_nacked_datagram_is_resent_and_nothing_is_concealed(seed, lost_frame):
    frames = list(astronaut_frames(DemoClipConfig(seconds=1.2, size=SIZE)))  # 30 frames
    sender, receiver, shown = live_call(frames, 0.05, seed, nack=True)
    assert receiver.simulator.dropped == 1 and receiver.stats.nacks_sent == 1
    assert sender.stats.nacked == 1 and sender.stats.resent == 1 and receiver.depacketizer.stats.lost == 0
    assert [f.index for f in shown] == list(range(30)) and all(f.source != FrameSource.CONCEALED for f in shown)
    assert receiver.decoder.stats.decoded == 30 and receiver.decoder.stats.keyframe_requests == 0

    sender, receiver, shown = live_call(frames, 0.05, seed, nack=False)  # the same datagram lost, nobody asks
    assert receiver.simulator.dropped == 1 and receiver.stats.nacks_sent == 0 and sender.stats.resent == 0
    assert receiver.depacketizer.stats.lost == 1 and receiver.decoder.stats.decoded < 30
    if lost_frame:  # concealed from the lost frame until the RESYNC of frame 26
        assert [f.index for f in shown if f.source == FrameSource.CONCEALED] == list(range(lost_frame, 26))
    else:  # nothing to show until the IDR the receiver asks for
        assert receiver.decoder.stats.keyframe_requests >= 1 and shown[0].index > 0


def test_a_number_whose_re_sent_copy_is_lost_too_is_nacked_again():
    """Seed 1776 at --loss 0.05 drops one first transmission of the 30-frame call, the MOTION datagram of frame 9
    (arrival 12), and its first re-sent copy; the second copy gets through. With repeated NACKs (spec §12.8) the
    receiver asks again 30 ms later and conceals nothing; NACKing each number once, it waits in vain and conceals
    from frame 9 to the RESYNC of frame 26."""
    frames = list(astronaut_frames(DemoClipConfig(seconds=1.2, size=SIZE)))  # 30 frames
    sender, receiver, shown = live_call(frames, 0.05, 1776, nack=True)
    # A third NACK may go out before the second copy arrives when the round trip is over 30 ms (a loaded machine).
    assert receiver.simulator.dropped == 2 and receiver.depacketizer.stats.lost == 0
    assert 2 <= sender.stats.resent == receiver.stats.nacks_sent <= MAX_NACKS and receiver.stats.renacks_sent >= 1
    assert [f.index for f in shown] == list(range(30)) and all(f.source != FrameSource.CONCEALED for f in shown)

    sender, receiver, shown = live_call(frames, 0.05, 1776, nack=True, max_nacks=1)  # the old behaviour
    assert receiver.simulator.dropped == 2 and sender.stats.resent == 1 and receiver.stats.renacks_sent == 0
    assert receiver.depacketizer.stats.lost == 1
    assert [f.index for f in shown if f.source == FrameSource.CONCEALED] == list(range(9, 26))


def test_re_nacks_stop_at_max_nacks_and_when_a_copy_would_come_too_late():
    """One missing number, a copy of it never coming: NACKed at once, again every NACK_RETRY_INTERVAL while a copy
    asked for then could arrive before max_delay gives the number up, at most MAX_NACKS times in all."""
    from bitstream.transport import MissingEvent, packetize_stream, parse_feedback

    datagrams = packetize_stream((REPO / "spec/vectors/fv2v_single_keyframe.fvc").read_bytes(), first_seq=7)
    feedback, _ = udp_socket("127.0.0.1", 0, bind=True)
    receive_sock, _ = udp_socket("127.0.0.1", 0, bind=True)

    def nacks(max_delay: float, max_nacks: int = MAX_NACKS) -> list[float]:
        """When (after the first NACK) the receiver names datagram 3 again, stepping its clock by 10 ms."""
        receiver = LiveReceiver(receive_sock, lambda header: None, lambda frame: None, max_delay=max_delay,
                                max_nacks=max_nacks)
        receiver.sender = feedback.getsockname()
        start = time.monotonic()
        for d in datagrams[:3] + datagrams[4:5]:
            for event in receiver.depacketizer.push(d, now=start):
                receiver.header_id = receiver.depacketizer.header_id
                if isinstance(event, MissingEvent):
                    receiver._handle([event])
        assert receiver.stats.nacks_sent == 1
        first = receiver._nacked[10][0]  # the clock of the first NACK, a hair after `start`
        times = []
        for step in range(1, 30):
            before = receiver.stats.nacks_sent
            receiver._renack(first + step * 0.01)
            times += [round(step * 0.01, 2)] * (receiver.stats.nacks_sent - before)
        named = [parse_feedback(data, receiver.header_id)[0] for data, _ in drain(feedback)]
        assert [n.lost for n in named] == [(10,)] * (1 + len(times)) == [(10,)] * receiver.stats.nacks_sent
        return times

    try:
        assert nacks(0.1) == [0.03, 0.06]  # then MAX_NACKS (3)
        assert nacks(1.0, max_nacks=5) == [0.03, 0.06, 0.09, 0.12]
        assert nacks(0.08) == [0.03]  # a copy asked for at 60 ms would come after the deadline, 80 ms
        assert nacks(0.1, max_nacks=1) == []  # each number once: the behaviour before
    finally:
        feedback.close()
        receive_sock.close()


def test_receive_writes_raw_frames_to_stdout(clip):
    """`fvc receive URL -` in its own process: raw rgb24 frames on stdout, the report on stderr."""
    port = free_port()
    url = f"udp://127.0.0.1:{port}"
    process = subprocess.Popen([sys.executable, "-m", "codec", "receive", url, "-", *MODEL, "--timeout", "4"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    try:
        wait_bound(port)
        assert main(["send", str(clip), url, *MODEL, "--size", str(SIZE), "--quiet", "--frames", "20"]) == 0
        raw, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err.decode()
    frames = np.frombuffer(raw, dtype=np.uint8).reshape(-1, SIZE, SIZE, 3)
    assert len(frames) == 20 and b"wrote 20 frames 64x64 to stdout" in err and b"latency" in err


def test_send_and_receive_refuse_what_they_cannot_do(clip, tmp_path, capsys):
    assert main(["send", str(clip), "udp://127.0.0.1:9", *MODEL, "--kbps", "20"]) == 1
    assert "--kbps needs the whole clip" in capsys.readouterr().err
    assert main(["receive", "127.0.0.1:9", str(tmp_path / "x.mp4")]) == 1
    assert "is not udp://HOST:PORT" in capsys.readouterr().err
    assert main(["receive", "udp://127.0.0.1:9", str(tmp_path / "x.mp4"), "--loss", "2"]) == 1
    assert "--loss 2 outside 0..1" in capsys.readouterr().err
    port = free_port()
    assert main(["receive", f"udp://127.0.0.1:{port}", str(tmp_path / "x.mp4"), "--wait", "0.3"]) == 1
    assert "no stream header arrived (0 datagrams)" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()


def test_the_first_note_carries_the_capture_clock():
    """The receiver's latency is measured from LIVE_START + k / fps, the sender's clock (spec §12 via NOTE)."""
    from bitstream.transport import Depacketizer, PacketEvent
    from bitstream import NotePacket

    model = build_untrained("fv2v", "test-image", 0)
    encoder = Encoder(model, EncoderConfig(width=SIZE, height=SIZE, fps=Fraction(25), refresh_threshold=0),
                      untrained_model_id("fv2v", "test-image", 0))
    port = free_port()
    receive_sock, _ = udp_socket("127.0.0.1", port, bind=True)
    send_sock, address = udp_socket("127.0.0.1", port, bind=False)
    try:
        frames = list(astronaut_frames(DemoClipConfig(seconds=0.2, size=SIZE)))
        stats = LiveSender(encoder, send_sock, address, clock=lambda: 1000.0).run(frames, Fraction(25),
                                                                                    realtime=False)
        time.sleep(0.2)
        data = []
        while True:
            try:
                data.append(receive_sock.recv(65535))
            except BlockingIOError:
                break
    finally:
        receive_sock.close()
        send_sock.close()
    receiver = Depacketizer()
    events = [e for d in data for e in receiver.push(d)]
    notes = [e.packet.fields for e in events if isinstance(e, PacketEvent) and isinstance(e.packet, NotePacket)]
    assert notes == [{LIVE_START: 1000.0}, {"keyframe_reason": "first"}]
    assert stats.frames == 5 and stats.datagrams == len(data)  # END three times: the receiver drops 2 duplicates
    assert receiver.stats.dropped == {"duplicate": 2}


@pytest.mark.parametrize("flag, on", [([], True), (["--nack"], True), (["--no-nack"], False)],
                         ids=["default", "nack", "no-nack"])
def test_the_nack_flags_reach_the_sender_and_the_receiver(clip, tmp_path, capsys, monkeypatch, flag, on):
    """fvc send --no-nack keeps no history (LiveSender(retransmit=False)), fvc receive --no-nack sends no NACK
    (LiveReceiver(nack=False)); both say so in their summaries."""
    import codec.live

    seen = {}

    class Sender(codec.live.LiveSender):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen["retransmit"] = kwargs.get("retransmit", True)
            seen["history"] = self.history.limit

    class Receiver(codec.live.LiveReceiver):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen["nack"] = self.nack

    monkeypatch.setattr(codec.live, "LiveSender", Sender)
    monkeypatch.setattr(codec.live, "LiveReceiver", Receiver)
    port = free_port()
    assert main(["send", str(clip), f"udp://127.0.0.1:{port}", *MODEL, "--size", str(SIZE), "--frames", "2",
                 "--no-realtime", *flag]) == 0
    err = capsys.readouterr().err
    assert seen["retransmit"] is on and (seen["history"] > 0) is on
    assert ("datagrams re-sent (0 B)" in err) is on and ("none re-sent (--no-nack)" in err) is not on, err
    assert main(["receive", f"udp://127.0.0.1:{port}", str(tmp_path / "x.mp4"), "--wait", "0.2", *flag]) == 1
    assert seen["nack"] is on

    class Stats:  # what the summary reads of a receiver that got nothing
        datagrams = shown = decoded = concealed = unshown = motion_skipped = resyncs = keyframes_lost = 0
        keyframe_requests = plis_sent = nacks_sent = lost = 0
        latency_ms, ended, dropped, width, height = [], True, {}, SIZE, SIZE

    from types import SimpleNamespace

    from codec import cli
    from codec.commands.receive import receive_summary

    receiver = SimpleNamespace(stats=Stats, decoder=SimpleNamespace(stats=Stats), simulator=SimpleNamespace(dropped=0),
                               depacketizer=SimpleNamespace(stats=Stats), header=Stats)
    args = cli.build_parser().parse_args(["receive", "udp://127.0.0.1:9", "x.mp4", *flag])
    text = receive_summary(args, receiver, "x.mp4")
    assert ("0 sequence numbers sent in NACKs" in text) is on and ("no NACKs (--no-nack)" in text) is not on, text


def test_the_cli_rtp_defaults_are_the_transports():
    from bitstream import transport

    from codec import cli

    assert (cli.DEFAULT_PAYLOAD_TYPE, cli.DEFAULT_MAX_DATAGRAM) == (transport.DEFAULT_PAYLOAD_TYPE,
                                                                    transport.DEFAULT_MAX_DATAGRAM)
    args = cli.build_parser().parse_args(["send", "in.mp4", "udp://127.0.0.1:5004"])
    assert (args.preset, args.resync_period) == ("fast", 25)  # live defaults; encode keeps medium and 0
    args = cli.build_parser().parse_args(["encode", "in.mp4", "out.fvc"])
    assert (args.preset, args.resync_period) == ("medium", 0)
