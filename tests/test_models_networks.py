"""Shapes and behaviour of each fv2v network on the tiny test config (and the small one at batch 1)."""
import dataclasses
import json

import pytest
import torch

from bitstream.constants import POSE_BIN_DEGREES, POSE_BINS, POSE_RANGE_DEGREES
from codec.models.appearance import AppearanceExtractor
from codec.models.blocks import make_coordinate_grid
from codec.models.canonical_keypoints import CanonicalKeypointDetector
from codec.models.config import PRESETS, ConfigError, FV2VConfig
from codec.models.discriminator import MultiScaleDiscriminator
from codec.models.generator import Generator
from codec.models.head_pose import HeadPoseExpression, angle_bins, angles_from_logits, bin_centres
from codec.models.keypoint_transform import rotation_matrix
from codec.models.motion_field import MotionFieldEstimator, heatmap_differences, sparse_motions

TEST = FV2VConfig.named("test")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_configs_round_trip_through_plain_dicts(name):
    cfg = FV2VConfig.named(name)
    data = json.loads(json.dumps(cfg.to_dict()))  # tuples become lists in JSON
    assert FV2VConfig.from_dict(data) == cfg
    assert dataclasses.asdict(cfg) == cfg.to_dict()


def test_bad_configs_are_refused():
    with pytest.raises(ConfigError, match="unknown fv2v config 'huge'"):
        FV2VConfig.named("huge")
    with pytest.raises(ConfigError, match="output_size 100"):
        dataclasses.replace(TEST, output_size=100)
    with pytest.raises(ConfigError, match="not a valid fv2v config"):
        FV2VConfig.from_dict({**TEST.to_dict(), "colour": 3})


def test_base_config_has_paper_volume():
    base = FV2VConfig.named("base")
    assert (base.appearance.volume_channels, base.appearance.volume_depth, base.volume_size) == (32, 16, 64)
    assert base.output_size == 512 and base.up_blocks == 3 and base.num_keypoints == 20


@pytest.mark.parametrize("name", ["test", "small"])
def test_network_shapes(name):
    cfg = FV2VConfig.named(name)
    torch.manual_seed(0)
    k, s, v = cfg.num_keypoints, cfg.analysis_size, cfg.volume_size
    c, d = cfg.appearance.volume_channels, cfg.appearance.volume_depth
    image = torch.rand(1, 3, s, s)
    with torch.no_grad():
        volume = AppearanceExtractor(cfg).eval()(image)
        assert volume.shape == (1, c, d, v, v)
        kp = CanonicalKeypointDetector(cfg).eval()(image)
        assert kp["canonical"].shape == (1, k, 3) and kp["canonical"].abs().max() <= 1
        pose = HeadPoseExpression(cfg).eval()(image)
        assert pose["pose_logits"].shape == (1, 3, POSE_BINS)
        assert pose["rotation"].shape == (1, 3) and pose["rotation"].abs().max() < POSE_RANGE_DEGREES
        assert pose["translation"].shape == (1, 3) and pose["expression"].shape == (1, k, 3)
        rot = rotation_matrix(pose["rotation"])
        field = MotionFieldEstimator(cfg).eval()(volume, kp["canonical"], kp["canonical"] * 0.9, rot, rot)
        assert field["flow"].shape == (1, d, v, v, 3)
        assert field["occlusion"].shape == (1, 1, v, v)
        assert ((field["occlusion"] >= 0) & (field["occlusion"] <= 1)).all()
        out = Generator(cfg).eval()(volume, field["flow"], field["occlusion"])
        assert out.shape == (1, 3, cfg.output_size, cfg.output_size)
        assert out.min() >= 0 and out.max() <= 1


def test_generator_512_adds_an_upsampling_stage():
    cfg512 = dataclasses.replace(TEST, output_size=128)
    gen = Generator(cfg512)
    assert len(gen.up) == len(Generator(TEST).up) + 1
    volume = torch.rand(1, 4, 4, 16, 16)
    flow = make_coordinate_grid((4, 16, 16))[None]
    assert gen.eval()(volume, flow, torch.ones(1, 1, 16, 16)).shape == (1, 3, 128, 128)


def test_pose_bins_and_expectation():
    centres = bin_centres()
    assert centres.shape == (POSE_BINS,)
    assert centres[0] == -POSE_RANGE_DEGREES + POSE_BIN_DEGREES / 2
    logits = torch.full((2, POSE_BINS), -1e4)
    logits[0, 10], logits[1, 40] = 0.0, 0.0
    assert torch.allclose(angles_from_logits(logits), centres[[10, 40]])
    assert angle_bins(centres).tolist() == list(range(POSE_BINS))
    assert angle_bins(torch.tensor([-500.0, 500.0])).tolist() == [0, POSE_BINS - 1]


def test_untrained_pose_head_starts_at_zero_translation_and_expression():
    pose = HeadPoseExpression(TEST).eval()(torch.rand(2, 3, 64, 64))
    assert pose["translation"].abs().max() == 0 and pose["expression"].abs().max() == 0


def test_identity_motion_gives_identity_sparse_flows():
    torch.manual_seed(0)
    spatial = (4, 6, 8)
    kp = torch.rand(2, 5, 3) * 2 - 1
    rot = rotation_matrix(torch.tensor([[20.0, -10.0, 5.0], [0.0, 30.0, -40.0]]))
    sparse = sparse_motions(kp, kp, rot, rot, spatial)
    assert sparse.shape == (2, 6, *spatial, 3)
    identity = make_coordinate_grid(spatial).expand_as(sparse)
    assert torch.allclose(sparse, identity, atol=1e-6)
    assert heatmap_differences(kp, kp, spatial, 0.01).abs().max() == 0


def test_sparse_flow_follows_keypoint_translation():
    spatial = (3, 5, 5)
    kp_s = torch.zeros(1, 2, 3)
    shift = torch.tensor([0.2, -0.1, 0.3])
    eye = torch.eye(3)[None]
    sparse = sparse_motions(kp_s, kp_s + shift, eye, eye, spatial)
    grid = make_coordinate_grid(spatial)
    assert torch.allclose(sparse[0, 0], grid)  # background stays put
    assert torch.allclose(sparse[0, 1], grid - shift, atol=1e-6)  # driving z reads the source at z − shift


@pytest.mark.parametrize("downsample", [1, 2])
def test_motion_field_is_identity_when_driving_equals_source(downsample):
    torch.manual_seed(0)
    cfg = dataclasses.replace(TEST, motion=dataclasses.replace(TEST.motion, downsample=downsample))
    m = MotionFieldEstimator(cfg).eval()
    volume = torch.rand(1, 4, 4, 16, 16)
    kp = torch.rand(1, TEST.num_keypoints, 3) - 0.5
    rot = rotation_matrix(torch.tensor([[10.0, 5.0, -5.0]]))
    with torch.no_grad():
        field = m(volume, kp, kp, rot, rot)
    assert torch.allclose(field["flow"][0], make_coordinate_grid((4, 16, 16)), atol=1e-5)
    side = 16 // downsample
    assert torch.allclose(field["mask"].sum(1), torch.ones(1, 4, side, side), atol=1e-5)


def test_discriminator_returns_logits_and_features_per_scale():
    d = MultiScaleDiscriminator(TEST)
    outs = d(torch.rand(2, 3, 64, 64))
    assert len(outs) == len(TEST.discriminator.scales)
    for out in outs:
        assert len(out.features) == TEST.discriminator.num_blocks
        assert out.logits.shape[:2] == (2, 1)
    assert outs[0].logits.shape[-1] > outs[1].logits.shape[-1]
    assert any("parametrizations" in name for name, _ in d.named_parameters())  # spectral norm is on
