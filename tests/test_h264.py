"""H.264 intra access units: quality, self-containedness, determinism, error handling."""
import random

import numpy as np
import pytest

from codec.h264 import H264Error, decode_intra, encode_intra, nal_type, split_nal_units, strip_sei


def smooth_image(height=64, width=96, phase=0.0):
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    channels = [np.sin(2 * np.pi * (x + phase)), np.cos(2 * np.pi * (y - phase)), np.sin(np.pi * (x + y + phase))]
    return ((np.stack(channels, -1) + 1) * 110 + 15).astype(np.uint8)


def psnr(a, b):
    return 10 * np.log10(255**2 / np.mean((a.astype(float) - b.astype(float)) ** 2))


def test_round_trip_at_qp20_is_high_quality():
    image = smooth_image()
    decoded = decode_intra(encode_intra(image, 20))
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    assert psnr(image, decoded) > 42


def test_access_unit_is_sps_pps_idr_without_sei():
    data = encode_intra(smooth_image(), 30)
    assert [nal_type(unit) for unit in split_nal_units(data)] == [7, 8, 5]


def test_access_units_decode_standalone_in_any_order():
    images = [smooth_image(phase=p) for p in (0.0, 0.2, 0.45, 0.7)]
    units = [encode_intra(image, 24) for image in images]
    order = list(range(len(units)))
    random.Random(3).shuffle(order)
    for index in order:
        decoded = decode_intra(units[index])
        assert psnr(images[index], decoded) > 38
        others = [psnr(images[j], decoded) for j in range(len(images)) if j != index]
        assert max(others) < psnr(images[index], decoded) - 10


def test_encoding_is_deterministic_and_qp_controls_size():
    image = smooth_image()
    assert encode_intra(image, 28) == encode_intra(image, 28)
    sizes = [len(encode_intra(image, qp)) for qp in (10, 25, 40)]
    assert sizes[0] > sizes[1] > sizes[2]


@pytest.mark.parametrize("frame, qp, message", [
    (np.zeros((16, 15, 3), np.uint8), 20, "even"),
    (np.zeros((16, 16, 3), np.float32), 20, "uint8"),
    (np.zeros((16, 16), np.uint8), 20, "uint8"),
    (np.zeros((16, 16, 3), np.uint8), 52, "qp"),
    (np.zeros((16, 16, 3), np.uint8), -1, "qp"),
    (np.zeros((16, 16, 3), np.uint8), 20.0, "qp"),
])
def test_bad_encoder_input_is_refused(frame, qp, message):
    with pytest.raises(H264Error, match=message):
        encode_intra(frame, qp)


def test_damaged_or_wrong_access_units_raise_h264error():
    data = encode_intra(smooth_image(), 20)
    for bad in (data[: len(data) // 2], b"", b"\x00\x00\x01" + bytes(range(256)), data + data):
        with pytest.raises(H264Error):
            decode_intra(bad)


def test_strip_sei_keeps_other_units_byte_exact():
    sps, sei, idr = b"\x00\x00\x00\x01\x67\xaa\xbb", b"\x00\x00\x01\x06\x05\x10", b"\x00\x00\x01\x65\x88\x00\x00\x03"
    assert strip_sei(sps + sei + idr) == sps + idr
    assert split_nal_units(sps + sei + idr) == [sps, sei, idr]
