"""Face boxes and pose labels: Euler decomposition in the model's axes, stable boxes, tiles, MediaPipe on a real clip."""
import os

import numpy as np
import pytest
import torch

from codec.data.face_track import (SquareBox, centre_box, pose_from_facial_transform, pose_from_rotation,
                                   stable_square_box, tiles)
from codec.models.keypoint_transform import rotation_matrix


def test_pose_from_rotation_inverts_the_models_rotation_matrix():
    rng = np.random.default_rng(0)
    for angles in rng.uniform([-80, -60, -60], [80, 60, 60], size=(20, 3)):
        r = rotation_matrix(torch.tensor(angles)).numpy()
        assert np.allclose(pose_from_rotation(r), angles, atol=1e-3)
    # A uniform scale (MediaPipe's matrices carry one) does not change the angles.
    r = rotation_matrix(torch.tensor([30.0, 10.0, -5.0], dtype=torch.float64)).numpy()
    assert np.allclose(pose_from_rotation(1.3 * r), [30.0, 10.0, -5.0], atol=1e-3)


def test_facial_transform_is_read_in_image_axes():
    """MediaPipe's OpenGL frame has y up and z towards the viewer; flipping both gives our axes."""
    angles = np.array([25.0, -15.0, 8.0])
    ours = rotation_matrix(torch.tensor(angles)).numpy()
    flip = np.diag([1.0, -1.0, -1.0])
    matrix = np.eye(4)
    matrix[:3, :3] = flip @ ours @ flip
    matrix[:3, 3] = [0.5, -1.0, -30.0]
    assert np.allclose(pose_from_facial_transform(matrix), angles, atol=1e-3)
    # Roll as MediaPipe sees it (counter-clockwise on screen, y up) is clockwise in our y-down image.
    c, s = np.cos(np.radians(10)), np.sin(np.radians(10))
    gl_roll = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    assert np.allclose(pose_from_facial_transform(gl_roll), [0, 0, -10], atol=1e-3)


def test_stable_box_is_centred_scaled_and_kept_inside_the_frame():
    boxes = [(90, 40, 130, 90), (92, 42, 132, 92), (200, 40, 240, 90), (91, 41, 131, 91)]
    # Median centre (111.5, 65.5) ignores the outlier at x = 220; side = 2 x the 50 px face height.
    assert stable_square_box(boxes, 640, 360, scale=2.0) == SquareBox(62, 16, 100)
    edge = stable_square_box([(0, 0, 100, 120)], 300, 200, scale=2.0)
    assert edge == SquareBox(0, 0, 200)
    assert stable_square_box([], 10, 10) is None
    assert centre_box(64, 48) == SquareBox(8, 0, 48)


def test_tiles_cover_the_frame_and_hold_any_small_face_whole():
    width, height = 1920, 1080
    grid = tiles(width, height)
    covered = np.zeros((height, width), bool)
    for t in grid:
        covered[t.y:t.y + t.side, t.x:t.x + t.side] = True
    assert covered.all()
    side = grid[0].side
    for x, y in [(0, 0), (700, 300), (1500, 800)]:
        face = (x, y, x + side // 2, y + side // 2)
        assert any(t.x <= face[0] and t.y <= face[1] and face[2] <= t.x + t.side and face[3] <= t.y + t.side
                   for t in grid)


def test_mediapipe_finds_a_real_face_and_one_in_a_wide_canvas(shared_dir):
    pytest.importorskip("mediapipe")
    from codec.data.face_track import FaceLandmarker, find_face
    from codec.video import read_frames

    frame = next(iter(read_frames(shared_dir / "data" / "train" / "DPE__data__d.mp4", size=256)))
    with FaceLandmarker(shared_dir / "models" / "face_landmarker.task") as landmarker:
        found = landmarker.detect(frame)
        assert found is not None and np.isfinite(found.pose).all() and abs(found.pose[0]) < 45
        x0, y0, x1, y1 = found.box
        assert 0 <= x0 < x1 <= 256 and 0 <= y0 < y1 <= 256 and (y1 - y0) > 80
        canvas = np.zeros((1080, 1920, 3), np.uint8)
        canvas[500:756, 1200:1456] = frame
        wide = find_face(landmarker, canvas)
        assert wide is not None
        assert np.allclose(wide.box, (x0 + 1200, y0 + 500, x1 + 1200, y1 + 500), atol=12)


def test_native_stderr_is_silenced_only_inside_the_block(capfd):
    from codec.data.face_track import native_stderr_silenced

    with native_stderr_silenced():
        os.write(2, b"native noise\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
