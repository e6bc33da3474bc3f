"""The image-space renderer: spline warps through keypoints, the keyframe shown at its own size and sharpness."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from codec.data.landmarks import LANDMARKS, MIRROR, normalised_landmarks
from codec.decoder import DecoderOptions, free_view_rotation
from codec.demo import DemoClipConfig, astronaut_frames
from codec.models.blocks import make_coordinate_grid
from codec.models.keypoint_transform import transform_keypoints
from codec.models.face_relief import relief_controls, relief_points
from codec.models.thin_plate import border_anchors, thin_plate_grid, thin_plate_points
from codec.motion_model import build_untrained
from codec.train.losses import landmark_loss


@pytest.fixture(scope="module")
def model():
    return build_untrained("fv2v", "test-image", 0)


def _portrait(size: int) -> torch.Tensor:
    """Fine stripes and noise: detail that a small renderer up-sampled to `size` could not keep."""
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    stripes = 0.5 + 0.4 * torch.sin(xx * 1.3) * torch.cos(yy * 0.9)
    return (stripes + 0.1 * torch.rand(3, size, size)).clamp(0, 1)[None]


def _high_frequency(image: torch.Tensor) -> float:
    lap = image[..., 1:-1, 1:-1] * 4 - image[..., :-2, 1:-1] - image[..., 2:, 1:-1] - image[..., 1:-1, :-2] \
        - image[..., 1:-1, 2:]
    return float(lap.abs().mean())


def test_equal_point_sets_give_the_identity_grid():
    points = torch.rand(3, 20, 2) * 1.6 - 0.8
    grid = thin_plate_grid(points, points, 32)
    assert torch.allclose(grid, make_coordinate_grid((32, 32)).expand(3, -1, -1, -1), atol=1e-5)


def test_the_spline_takes_each_driving_point_to_its_source_point_and_keeps_the_border():
    torch.manual_seed(2)
    nodes = torch.randperm(40 * 40)[:20]  # driving points on nodes of the 65² grid, away from the border
    ix, iy = nodes % 40 + 12, nodes // 40 + 12
    driving = (torch.stack([ix, iy], -1).float() / 32 - 1).expand(2, -1, -1)
    source = driving + 0.08 * torch.randn(2, 20, 2)
    grid = thin_plate_grid(driving, source, 65, regularisation=0.0)
    assert torch.allclose(grid[:, iy, ix], source, atol=1e-4)
    anchors = border_anchors(5)
    corners = grid[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert torch.allclose(corners, anchors[[0, 4, -5, -1]].expand(2, -1, -1), atol=1e-4)


@pytest.mark.parametrize("size", [64, 128, 512])
def test_identity_motion_reproduces_the_keyframe_at_its_own_size(model, size):
    keyframe = _portrait(size)
    with torch.no_grad():
        state = model.analyze_keyframe(keyframe)
        out = model.render(state, state.motion)
    assert out.shape == keyframe.shape
    assert (out - keyframe).abs().max() < 0.5 / 255  # the same 8-bit picture after rounding


def test_moved_frames_stay_sharp_at_512_whatever_the_analysis_size(model):
    keyframe = _portrait(512)
    with torch.no_grad():
        state = model.analyze_keyframe(keyframe)
        moved = {k: v.clone() for k, v in state.motion.items()}
        moved["translation"][..., 0] += 0.05  # every keypoint 6 px to the right
        out = model.render(state, moved)
    assert model.analysis_size == 64 and out.shape == (1, 3, 512, 512)
    assert (out - keyframe).abs().mean() > 0.01  # it moved
    blurred = F.interpolate(F.interpolate(keyframe, size=64, mode="bilinear", antialias=True), size=512,
                            mode="bilinear")
    # A 64² painter keeps almost none of the stripes; the warp keeps most of them.
    assert _high_frequency(out) > 0.8 * _high_frequency(keyframe) > 4 * _high_frequency(blurred)


def test_free_view_turns_the_picture(model):
    keyframe = _portrait(128)
    with torch.no_grad():
        state = model.analyze_keyframe(keyframe)
        turned = {k: v.clone() for k, v in state.motion.items()}
        turned["rotation"][..., 0] += 30.0
        out = model.render(state, turned)
    assert (out - keyframe).abs().mean() > 0.01


def test_the_image_renderer_has_no_volume_networks(model):
    names = {name for name, _ in model.named_children()}
    assert "refiner" in names and not names & {"appearance", "motion_field", "generator"}
    assert model.output_size == 0


def test_landmarks_use_the_pixel_centre_convention_and_mirror_consistently():
    points = np.full((478, 2), 0.5)
    points[LANDMARKS[0][0]] = [0.5 / 200, 0.5 / 100]  # the centre of the top-left pixel
    out = normalised_landmarks(points, 200, 100)
    assert out.shape == (20, 2) and np.allclose(out[0], [-1, -1])
    # The picture's centre (0.5, 0.5) lies half a pixel past the middle pixel centre's index 99 (of 0..199).
    assert np.allclose(out[1], [2 * 99.5 / 199 - 1, 2 * 49.5 / 99 - 1])
    assert sorted(MIRROR) == list(range(20)) and all(MIRROR[MIRROR[k]] == k for k in range(20))


def test_landmark_loss_is_zero_on_target_and_skips_unlabelled_frames():
    kp = torch.rand(2, 20, 3)
    labels = kp[..., :2].clone()
    assert float(landmark_loss(kp, labels)) == 0.0
    labels[1] = float("nan")
    labels[0, 3] += 0.2
    assert float(landmark_loss(kp, labels)) == pytest.approx(0.2 * 2 / 40, rel=1e-5)
    assert float(landmark_loss(kp, torch.full_like(labels, float("nan")))) == 0.0


@pytest.mark.parametrize("options, part, axis, sign", [
    (DecoderOptions(yaw=20.0), "nose tip", 0, -1),    # positive yaw turns the face to image left
    (DecoderOptions(pitch=20.0), "nose tip", 1, 1),   # positive pitch looks down
    (DecoderOptions(roll=20.0), "chin", 0, -1),       # positive roll (z into the picture) swings the chin left
])
def test_free_view_moves_the_face_parts_the_right_way(model, options, part, axis, sign):
    with torch.no_grad():
        motion = model.estimate_motion(_portrait(64))
        turned = free_view_rotation(motion, options)
        canonical = model.template[None]
        before, after = (transform_keypoints(canonical, r[:, 0], motion["translation"][:, 0], motion["expression"])
                         for r in (motion["rotation"], turned))
    k = [name for _, name, _ in LANDMARKS].index(part)
    moved = (after - before)[0, k, :2]
    assert sign * moved[axis] > 0.02 and abs(moved[1 - axis]) < abs(moved[axis])


def test_frontalize_sets_the_rendered_pose_to_zero(model):
    with torch.no_grad():
        motion = model.estimate_motion(_portrait(64))
        motion["rotation"] += torch.tensor([25.0, -10.0, 5.0])
        front = free_view_rotation(motion, DecoderOptions(frontalize=True))
    assert torch.equal(front, torch.zeros_like(motion["rotation"]))


def _free_view_inputs(model, yaw: float):
    with torch.no_grad():
        state = model.analyze_keyframe(_portrait(64))
        motion = model.estimate_motion(_portrait(64))
    view = motion["rotation"] + torch.tensor([yaw, 0.0, 0.0])
    return state, motion, view


def test_free_view_at_the_motions_own_rotation_renders_the_frame_unturned(model):
    state, motion, _ = _free_view_inputs(model, 0.0)
    with torch.no_grad():
        plain = model.render(state, motion)
        viewed = model.render(state, motion, view=motion["rotation"].clone())
    assert (viewed - plain).abs().max() < 2e-3


def test_free_view_turns_each_face_point_by_its_own_depth_and_keeps_its_keyframe_pixels(trained):
    model = trained[0]
    frames = list(itertools.islice(astronaut_frames(DemoClipConfig(size=128)), 0, 41, 40))
    cfg = model.config.image
    with torch.no_grad():
        state = model.analyze_keyframe(torch.from_numpy(frames[0]).permute(2, 0, 1)[None].float() / 255)
        motion = model.estimate_motion(torch.from_numpy(frames[1]).permute(2, 0, 1)[None].float() / 255)
        angles, shift, expression = motion["rotation"][:, 0], motion["translation"][:, 0], motion["expression"]
        shown = angles + torch.tensor([20.0, 0.0, 0.0])
        at_angles = transform_keypoints(state.canonical, angles, shift, expression)[..., :2]
        turned_kp = transform_keypoints(state.canonical, shown, shift, expression)[..., :2]
        src = state.keypoints[..., :2]
        unturned, source = relief_controls(state.canonical, angles, angles, shift, expression, src,
                                           cfg.anchors_per_side, cfg.regularisation)
        moved, source_turned = relief_controls(state.canonical, angles, shown, shift, expression, src,
                                               cfg.anchors_per_side, cfg.regularisation)
        # Each point keeps the keyframe pixel the unturned frame's spline gives it.
        assert torch.allclose(source_turned, source)
        assert (thin_plate_points(at_angles, src, unturned, cfg.anchors_per_side, cfg.regularisation)
                - source).abs().max() < 1e-4
        # Each moves as the rigid head turn moves its own 3D point: a positive yaw takes the face to image left,
        # the parts in front of the keypoints (the nose) further than those behind.
        relief = relief_points(state.canonical)
        zeros = torch.zeros_like(relief)
        rigid = transform_keypoints(relief, shown, shift, zeros) - transform_keypoints(relief, angles, shift, zeros)
        assert torch.allclose(moved - unturned, rigid[..., :2], atol=1e-5)
        front = relief[0, :, 2] < relief[0, :, 2].median()
        shift_x = (moved - unturned)[0, :, 0]
        assert float(shift_x[front].mean()) < float(shift_x[~front].mean()) < 0
        # The turned frame's spline takes them from there (up to its smoothing); through the keypoints alone it
        # takes them from elsewhere.
        with_relief = thin_plate_points(torch.cat([turned_kp, moved], 1), torch.cat([src, source], 1), moved,
                                        cfg.anchors_per_side, cfg.regularisation)
        keypoints_only = thin_plate_points(turned_kp, src, moved, cfg.anchors_per_side, cfg.regularisation)
    assert float((with_relief - source).abs().mean()) < 0.002 < 0.01 < float((keypoints_only - source).abs().mean())


def test_the_renderer_turns_the_face_with_its_relief(trained):
    model = trained[0]
    frames = list(itertools.islice(astronaut_frames(DemoClipConfig(size=128)), 0, 41, 40))
    with torch.no_grad():
        state = model.analyze_keyframe(torch.from_numpy(frames[0]).permute(2, 0, 1)[None].float() / 255)
        motion = model.estimate_motion(torch.from_numpy(frames[1]).permute(2, 0, 1)[None].float() / 255)
        view = motion["rotation"] + torch.tensor([20.0, 0.0, 0.0])
        turned = model.render(state, motion, view=view)
        keypoints_only = model.render(state, {**motion, "rotation": view})
    change = (turned - keypoints_only).abs().mean(1)[0]
    assert float(change[40:90, 40:90].mean()) > 0.02  # the face, around the picture's centre
