"""The FOMM baseline on the tiny `test` config: networks, Jacobian maths, protocol, stream and trainer."""
import dataclasses
import json
from fractions import Fraction

import numpy as np
import pytest
import torch

from bitstream import MotionDecoder, MotionEncoder, MotionKind, StreamReader, default_header, dequantize, quantize
from bitstream.constants import NUM_KEYPOINTS_FOMM
from codec.decoder import Decoder, motion_tensors, relative_motion as decoder_relative_motion
from codec.demo import DemoClipConfig, astronaut_frames
from codec.encoder import EncoderConfig, encode_clip
from codec.models.blocks import make_coordinate_grid
from codec.models.config import ConfigError, FV2VConfig
from codec.models.fomm.config import PRESETS, FOMMConfig
from codec.models.fomm.dense_motion import DenseMotion, right_divide, sparse_motions
from codec.models.fomm.generator import Generator
from codec.models.fomm.keypoint_detector import KeypointDetector
from codec.models.fomm.model import FOMM, KeyframeState, relative_motion
from codec.models.image_warp import warp_full_resolution
from codec.models.model_inputs import InputError
from codec.motion_model import MotionModel, build_untrained, load_model, save_weights, untrained_model_id
from codec.train import losses
from codec.train.trainer import RunOptions, TrainConfig, Trainer
from codec.train.warp import RandomWarp, WarpConfig
from training_helpers import TinyFeatures, blob_store

pytestmark = pytest.mark.usefixtures("one_thread")

TEST = FOMMConfig.named("test")
K = NUM_KEYPOINTS_FOMM
SIZE = 64


@pytest.fixture(scope="module")
def model():
    return build_untrained("fomm", "test", 0)


def _image(seed: int, size: int = SIZE) -> torch.Tensor:
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _affine_warp(batch: int, theta: torch.Tensor) -> RandomWarp:
    """A RandomWarp without thin-plate part whose affine map is exactly `theta` (2, 3)."""
    warp = RandomWarp(batch, WarpConfig(sigma_affine=0.0, sigma_tps=0.0))
    warp.theta = theta.expand(batch, 2, 3).clone()
    return warp


def _random_jacobians(batch: int, seed: int) -> torch.Tensor:
    noise = torch.randn(batch, K, 2, 2, generator=torch.Generator().manual_seed(seed))
    return torch.eye(2) + 0.3 * noise


# --- configs -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_configs_round_trip_through_plain_dicts(name):
    cfg = FOMMConfig.named(name)
    assert FOMMConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.num_keypoints == K


def test_bad_configs_are_refused():
    with pytest.raises(ConfigError, match="unknown fomm config 'huge'"):
        FOMMConfig.named("huge")
    with pytest.raises(ConfigError, match="output_size 96"):
        dataclasses.replace(TEST, output_size=96)
    with pytest.raises(ConfigError, match="detector.input_size 20"):
        dataclasses.replace(TEST, detector=dataclasses.replace(TEST.detector, input_size=20))
    with pytest.raises(ConfigError, match="not a valid fomm config"):
        FOMMConfig.from_dict({**TEST.to_dict(), "colour": 3})


def test_small_matches_fv2v_small_sizes_and_base_has_paper_widths():
    small, fv2v = FOMMConfig.named("small"), FV2VConfig.named("small")
    assert (small.analysis_size, small.output_size) == (fv2v.analysis_size, fv2v.output_size)
    base = FOMMConfig.named("base")
    assert (base.detector.block_expansion, base.dense_motion.block_expansion, base.generator.block_expansion) == (
        32, 64, 64)
    assert (base.detector.input_size, base.feature_size, base.output_size) == (64, 64, 256)


# --- networks ----------------------------------------------------------------------------------
def test_network_shapes_and_keypoint_range():
    torch.manual_seed(0)
    image = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        kp = KeypointDetector(TEST).eval()(image)
        assert kp["keypoints"].shape == (2, K, 2) and kp["keypoints"].abs().max() <= 1
        assert kp["jacobians"].shape == (2, K, 2, 2) and kp["heatmap"].shape == (2, K, 32, 32)
        assert torch.allclose(kp["heatmap"].sum((-2, -1)), torch.ones(2, K))
        field = DenseMotion(TEST).eval()(torch.rand(2, 3, 32, 32), kp["keypoints"], kp["jacobians"],
                                         kp["keypoints"].flip(0), kp["jacobians"])
        assert field["flow"].shape == (2, 32, 32, 2) and field["occlusion"].shape == (2, 1, 32, 32)
        assert field["mask"].shape == (2, K + 1, 32, 32)
        assert torch.allclose(field["mask"].sum(1), torch.ones(2, 32, 32))
        assert 0 <= field["occlusion"].min() and field["occlusion"].max() <= 1
        generator = Generator(TEST).eval()
        features = generator.encode(image)
        assert features.shape == (2, 32, 16, 16)  # 8 · 2² channels at 64 / 2²
        out = generator(features, field["flow"], field["occlusion"])
        assert out.shape == (2, 3, SIZE, SIZE) and 0 <= out.min() and out.max() <= 1
        wide = Generator(dataclasses.replace(TEST, output_size=2 * SIZE)).eval()
        assert wide(features, field["flow"], field["occlusion"]).shape == (2, 3, 2 * SIZE, 2 * SIZE)


def test_untrained_jacobians_are_the_identity():
    torch.manual_seed(3)
    with torch.no_grad():
        jac = KeypointDetector(TEST).eval()(torch.rand(3, 3, SIZE, SIZE))["jacobians"]
    assert torch.allclose(jac, torch.eye(2).expand(3, K, 2, 2), atol=1e-5)


def test_right_divide_is_a_times_inverse_b_and_exact_on_equal_inputs():
    a, b = _random_jacobians(2, 0), _random_jacobians(2, 1)
    assert torch.allclose(right_divide(a, b), a @ torch.linalg.inv(b), atol=1e-5)
    assert torch.equal(right_divide(b, b), torch.eye(2).expand(2, K, 2, 2))
    assert torch.isfinite(right_divide(a, torch.zeros_like(b))).all()  # a corrupt stream's singular Jacobian


def test_sparse_motion_is_exact_for_an_affine_pair():
    """If source = A·driving + t near every keypoint, each first-order motion is that affine map everywhere."""
    a, t = torch.tensor([[1.1, 0.2], [-0.1, 0.9]]), torch.tensor([0.05, -0.1])
    kp_d = torch.rand(2, K, 2, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.8
    jac_d = _random_jacobians(2, 1)
    sparse = sparse_motions(kp_d @ a.T + t, a @ jac_d, kp_d, jac_d, (9, 7))
    grid = make_coordinate_grid((9, 7))
    assert sparse.shape == (2, K + 1, 9, 7, 2)
    assert torch.equal(sparse[:, 0], grid.expand(2, 9, 7, 2))
    assert torch.allclose(sparse[:, 1:], (grid @ a.T + t).expand(2, K, 9, 7, 2), atol=1e-5)


def test_jacobian_equivariance_loss_vanishes_only_for_correctly_transformed_jacobians():
    theta = torch.tensor([[0.95, 0.1, 0.05], [-0.08, 1.05, -0.03]])
    warp = _affine_warp(2, theta)
    kp_warped = torch.rand(2, K, 2, generator=torch.Generator().manual_seed(2)) - 0.5
    jac_warped = _random_jacobians(2, 3)
    kp, jac = warp.transform(kp_warped), theta[:, :2] @ jac_warped  # an equivariant detector's answer
    assert torch.allclose(warp.jacobian(kp_warped), theta[:, :2].expand(2, K, 2, 2), atol=1e-6)
    assert losses.equivariance_loss(kp, kp_warped, warp) < 1e-6
    assert losses.jacobian_equivariance_loss(jac, kp_warped, jac_warped, warp) < 1e-5
    assert losses.jacobian_equivariance_loss(jac_warped, kp_warped, jac_warped, warp) > 0.03
    assert losses.jacobian_equivariance_loss(jac @ theta[:, :2], kp_warped, jac_warped, warp) > 0.03


def test_detector_jacobians_get_equivariance_gradients():
    net = FOMM(TEST).train()
    image = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    warp = RandomWarp(2, WarpConfig(sigma_affine=0.1), generator=torch.Generator().manual_seed(5))
    kp, warped = net.keypoints(image), net.keypoints(warp.warp_image(image))
    loss = losses.jacobian_equivariance_loss(kp["jacobians"], warped["keypoints"], warped["jacobians"], warp)
    assert loss > 0  # identity Jacobians on both sides disagree with a non-trivial warp
    loss.backward()
    assert net.detector.jacobian.weight.grad.abs().sum() > 0


# --- the MotionModel protocol ------------------------------------------------------------------
def test_protocol_attributes_and_shapes_at_any_input_size(model):
    assert isinstance(model, MotionModel) and not model.training
    assert model.kind == MotionKind.FOMM and model.num_keypoints == K
    assert (model.analysis_size, model.output_size) == (SIZE, SIZE)
    with torch.no_grad():
        state = model.analyze_keyframe(torch.rand(2, 3, 100, 100))
        motion = model.estimate_motion(torch.rand(2, 3, 48, 48))
        out = model.render(state, motion)
    assert isinstance(state, KeyframeState)
    assert {k: tuple(v.shape) for k, v in motion.items()} == {"keypoints": (2, K, 2), "jacobians": (2, K, 4)}
    assert motion["keypoints"].abs().max() <= 1
    assert out.shape == (2, 3, SIZE, SIZE) and 0 <= out.min() and out.max() <= 1


def test_identity_motion_gives_an_identity_flow_and_moved_keypoints_do_not(model):
    with torch.no_grad():
        state = model.analyze_keyframe(_image(0))
        still = model.animate(state, state.motion)
        moved_motion = dict(state.motion, keypoints=state.motion["keypoints"] + 0.1)
        moved = model.animate(state, moved_motion)
    grid = make_coordinate_grid(still["flow"].shape[1:3])
    assert (still["flow"] - grid).abs().max() < 1e-5
    # Every keypoint asks for a shift of -0.1; only the background mask's share stays put.
    expected = grid - 0.1 * (1 - moved["mask"][:, 0]).unsqueeze(-1)
    assert torch.allclose(moved["flow"], expected, atol=1e-5)
    assert (moved["flow"] - grid).abs().mean() > 0.01
    assert (moved["prediction"] - still["prediction"]).abs().max() > 1e-4


def test_relative_motion_with_driving_equal_to_first_is_the_source_motion(model):
    with torch.no_grad():
        source, first = model.estimate_motion(_image(0)), model.estimate_motion(_image(1))
    first["jacobians"] = _random_jacobians(1, 7).flatten(-2)
    same = relative_motion(source, first, first)
    assert all(torch.equal(same[k], source[k]) for k in source)
    via_decoder = decoder_relative_motion(MotionKind.FOMM, source, first, first)
    assert all(torch.equal(via_decoder[k], source[k]) for k in source)
    # A driving rotation since the first frame rotates the source's Jacobians the same way.
    turn = torch.tensor([[0.0, -1.0], [1.0, 0.0]])
    driving = {"keypoints": first["keypoints"] + 0.05,
               "jacobians": (turn @ first["jacobians"].unflatten(-1, (2, 2))).flatten(-2)}
    moved = relative_motion(source, driving, first)
    assert torch.allclose(moved["keypoints"], source["keypoints"] + 0.05, atol=1e-6)
    expected = turn @ source["jacobians"].unflatten(-1, (2, 2))
    assert torch.allclose(moved["jacobians"].unflatten(-1, (2, 2)), expected, atol=1e-5)


def test_bad_inputs_raise_one_line_errors(model):
    with pytest.raises(InputError, match=r"expected an image tensor \(B,3,S,S\)"):
        model.estimate_motion(torch.rand(3, SIZE, SIZE))
    with pytest.raises(InputError, match="float image"):
        model.estimate_motion(torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8))
    with torch.no_grad():
        state = model.analyze_keyframe(_image(0))
    with pytest.raises(InputError, match=r"'jacobians' has shape \(1, 10, 2, 2\)"):
        model.render(state, dict(state.motion, jacobians=state.jacobians))
    with pytest.raises(InputError, match="'keypoints' is missing"):
        model.render(state, {"jacobians": state.motion["jacobians"]})


def test_training_forward_shapes_and_gradients():
    net = FOMM(TEST).train()
    out = net.training_forward(_image(0).expand(2, -1, -1, -1), torch.rand(2, 3, 80, 80))
    assert out["prediction"].shape == (2, 3, SIZE, SIZE) and out["occlusion"].shape == (2, 1, 32, 32)
    for side in ("source", "driving"):
        assert out[side]["keypoints"].shape == (2, K, 2) and out[side]["jacobians"].shape == (2, K, 2, 2)
    loss = (out["prediction"] - 0.5).abs().mean() + out["driving"]["keypoints"].pow(2).mean()
    loss.backward()
    for name in ("detector", "dense_motion", "generator"):
        grads = [p.grad for p in getattr(net, name).parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name


def test_save_load_round_trip(model, tmp_path):
    path = tmp_path / "fomm-test.pt"
    save_weights(model, path, {"trained_on": "nothing"})
    assert torch.load(path, weights_only=True)["kind"] == "fomm"
    loaded = load_model(path)
    assert isinstance(loaded, FOMM) and loaded.config == model.config and not loaded.training
    image = _image(1)
    with torch.no_grad():
        a = model.render(model.analyze_keyframe(image), model.estimate_motion(_image(2)))
        b = loaded.render(loaded.analyze_keyframe(image), loaded.estimate_motion(_image(2)))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())
    assert (a - b).abs().max() < 1e-5  # loaded channels-last: float summation order only


# --- through the bitstream and the codec -------------------------------------------------------
def test_motion_symbols_round_trip_through_the_entropy_coder(model):
    header = default_header(MotionKind.FOMM, SIZE, SIZE, 25, untrained_model_id("fomm", "test"))
    encoder, decoder = MotionEncoder(header), MotionDecoder(header)
    with torch.no_grad():
        state = model.analyze_keyframe(_image(0))
        for seed in (1, 2, 3):
            motion = model.estimate_motion(_image(seed))
            ints = quantize({k: v.numpy() for k, v in motion.items()}, header)
            payload, _ = encoder.encode(ints)
            decoded = decoder.decode(payload)
            assert all(np.array_equal(decoded[k], ints[k]) for k in ints)
            floats = dequantize(decoded, header)
            assert np.abs(floats["keypoints"] - motion["keypoints"][0].numpy()).max() <= 0.0025 + 1e-6
            rendered = model.render(state, motion_tensors(decoded, header, torch.device("cpu")))
            assert rendered.shape == (1, 3, SIZE, SIZE)


def test_encode_decode_end_to_end(model):
    frames = list(astronaut_frames(DemoClipConfig(seconds=0.2, size=SIZE)))  # 5 frames
    config = EncoderConfig(width=SIZE, height=SIZE, fps=Fraction(25), refresh_threshold=0, max_gop=3)
    clip = encode_clip(frames, model, config, untrained_model_id("fomm", "test"))
    assert clip.header.kind == MotionKind.FOMM and clip.header.num_keypoints == K
    reader = StreamReader(clip.to_bytes())
    decoder = Decoder(model, reader.header)
    decoded = [f for packet in reader for f in decoder.push(packet)]
    assert len(decoded) == len(frames)
    assert all(f.shape == (SIZE, SIZE, 3) and f.dtype == np.uint8 for f in decoded)


def test_a_few_trainer_steps_lower_the_loss(tmp_path):
    config = TrainConfig.for_model("fomm", config="test", batch_size=2, lr=1e-3)
    trainer = Trainer(config, blob_store(), tmp_path, perceptual_features=TinyFeatures())
    assert trainer.discriminator is None  # FOMM trains without a GAN
    logged = [trainer.train_step() for _ in range(12)]
    assert {"perceptual", "equivariance", "jacobian_equivariance"} <= set(logged[0])
    for name, ratio in (("generator_total", 0.9), ("perceptual", 0.85)):
        column = [row[name] for row in logged]
        assert np.mean(column[-4:]) < ratio * np.mean(column[:4]), name


# --- the image renderer (FOMM's motion driving fv2v's image renderer family) ---------------------------
@pytest.fixture(scope="module")
def image_model():
    return build_untrained("fomm", "test-image", 0)


@pytest.mark.parametrize("size", [64, 128])
def test_image_renderer_shows_the_keyframe_unchanged_for_unmoved_motion(image_model, size):
    keyframe = _image(7, size)
    with torch.no_grad():
        state = image_model.analyze_keyframe(keyframe)
        out = image_model.render(state, state.motion)
    assert image_model.generator is None and image_model.output_size == 0
    assert out.shape == keyframe.shape and (out - keyframe).abs().max() < 1e-4  # softmax masks sum to 1 ± ulp


def test_image_renderer_warps_the_keyframe_at_its_own_size_and_fills_once_moved(image_model):
    keyframe = _image(7, 128)
    with torch.no_grad():
        state = image_model.analyze_keyframe(keyframe)
        moved = {"keypoints": state.motion["keypoints"] + 0.1, "jacobians": state.motion["jacobians"]}
        out = image_model.animate(state, moved)
    assert out["prediction"].shape == keyframe.shape and out["occlusion"].shape == (1, 1, 128, 128)
    assert (out["prediction"] - keyframe).abs().mean() > 0.01
    # The fill opens only once something moved: untrained, at sigmoid(-4), the warp still dominates.
    assert 0 < out["occlusion"].max() < 0.05
    expected, _ = warp_full_resolution(keyframe, out["flow"], torch.zeros(1, 1, 32, 32), out["fill"])
    assert (out["prediction"] - expected).abs().max() < 0.05  # the warped keyframe, barely filled


def test_image_renderer_trains_with_the_pixel_term_and_its_own_keypoint_losses(tmp_path):
    config = TrainConfig.for_model("fomm", config="test-image", batch_size=2, lr=1e-3)
    assert config.weights.pixel > 0 and config.weights.equivariance > 0 and config.weights.landmark == 0
    assert config.perceptual_scales == TrainConfig.for_model("fv2v", config="test-image").perceptual_scales
    trainer = Trainer(config, blob_store(2, 6), tmp_path, RunOptions(steps=1, log_every=1, image_every=100,
                                                                     checkpoint_every=100),
                      perceptual_features=TinyFeatures())
    before = trainer.model.dense_motion.fill.weight.detach().clone()
    logged = trainer.train_step()
    assert {"perceptual", "pixel", "equivariance", "jacobian_equivariance"} <= logged.keys()
    assert not torch.equal(before, trainer.model.dense_motion.fill.weight)
