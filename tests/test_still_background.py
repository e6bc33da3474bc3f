"""The still-background image renderer (warp128bg) and its training on consecutive frames."""
import dataclasses

import pytest
import torch

from codec.data.augment import AugmentConfig
from codec.data.sampler import PairDataset
from codec.models.config import FV2VConfig
from codec.models.foreground_mask import head_prior_logit
from codec.models.fv2v import FaceVid2Vid
from codec.motion_model import build_untrained
from codec.train import losses
from codec.train.checkpoint import load_checkpoint
from codec.train.trainer import CHECKPOINT_NAME, RunOptions, TrainConfig, Trainer, TrainError
from training_helpers import TinyFeatures, blob_store

pytestmark = pytest.mark.usefixtures("one_thread")


def _still_model():
    return build_untrained("fv2v", "test-image-bg")


def _keyframe(size=64):
    torch.manual_seed(3)
    return torch.rand(1, 3, size, size)


def _head_only_move(motion, degrees=8.0):
    moved = {k: v.clone() for k, v in motion.items()}
    moved["rotation"][..., 0] += degrees
    moved["translation"][..., 0] += 0.05
    return moved


def test_unmoved_keypoints_reproduce_the_keyframe():
    model = _still_model()
    image = _keyframe()
    with torch.no_grad():
        state = model.analyze_keyframe(image)
        out = model.render(state, model.estimate_motion(image))
    assert state.foreground is not None and state.foreground.shape == (1, 1, 16, 16)
    assert (out - image).abs().max() < 1e-3


def test_a_head_move_leaves_the_pixels_outside_the_foreground_as_in_the_keyframe():
    model = _still_model()
    image = _keyframe()
    with torch.no_grad():
        state = model.analyze_keyframe(image)
        motion = _head_only_move(model.estimate_motion(image))
        warped = model._animate(state, motion)
        out = warped["prediction"]
    # Background: neither the keyframe's mask here nor the mask carried to the driving frame covers it.
    source_mask = torch.nn.functional.interpolate(state.foreground, size=64, mode="bilinear", align_corners=False)
    background = torch.maximum(source_mask, warped["foreground"]) < 1e-3
    foreground = warped["foreground"] > 0.5
    assert background.float().mean() > 0.2 and foreground.any()
    change = (out - image).abs().amax(1, keepdim=True)
    assert change[background].max() < 1e-2 and change[background].mean() < 1e-4
    assert change[foreground].mean() > 0.02  # the head did move


def test_the_spline_renderer_drags_the_background_where_the_still_one_does_not():
    """The same weights without the mask move the wall: what the still background removes."""
    still = _still_model()
    spline = build_untrained("fv2v", "test-image")
    spline.load_state_dict({k: v for k, v in still.state_dict().items() if not k.startswith("foreground.")})
    image = _keyframe()
    with torch.no_grad():
        state = still.analyze_keyframe(image)
        motion = _head_only_move(still.estimate_motion(image))
        ours = still._animate(state, motion)
        theirs = spline.render(spline.analyze_keyframe(image), motion)
    source_mask = torch.nn.functional.interpolate(state.foreground, size=64, mode="bilinear", align_corners=False)
    background = torch.maximum(source_mask, ours["foreground"]) < 1e-3
    assert (theirs - image).abs().amax(1, keepdim=True)[background].mean() > 0.01


def test_the_mask_prior_is_a_disc_that_scales_with_the_keypoints():
    points = torch.tensor([[[-0.1, 0.0], [0.1, 0.0], [0.0, 0.1], [0.0, -0.1]]])
    logit = head_prior_logit(points, 33, radius=2.5, gain=4.0)[0, 0]
    assert logit[16, 16] == pytest.approx(4.0, abs=1e-5)  # centroid
    assert logit[16, 16 + 4] == pytest.approx(0.0, abs=0.3)  # 2.5 spreads of 0.1 = 0.25 = 4 px of 33
    assert logit[0, 0] < -20
    wider = head_prior_logit(points * 2, 33, radius=2.5, gain=4.0)[0, 0]
    assert wider[16, 16 + 4] > 2.0


def test_previous_frames_are_the_frame_before_and_share_the_augmentation():
    store = blob_store(clips=2, frames=5)
    data = PairDataset(store, AugmentConfig(flip_probability=0.5, brightness=0.3, contrast=0.3, saturation=0.3))
    batch = data.batch(64, torch.Generator().manual_seed(0), previous=True)
    assert torch.equal(batch["previous_index"], batch["driving_index"] - 1)
    clip = store.clip_of_frame
    assert torch.equal(clip[batch["previous_index"]], clip[batch["driving_index"]])
    # Frames 0 and 1 of a clip get the same random draws, so the same pixel operation maps raw to augmented.
    plain = PairDataset(store)
    raw_prev = plain._augmented(batch["source_index"], batch["previous_index"], None)[1]
    raw_drv = plain._augmented(batch["source_index"], batch["driving_index"], None)[1]
    flipped_prev = (batch["previous"] - raw_prev).abs().amax(dim=(1, 2, 3)) > 0.3
    flipped_drv = (batch["driving"] - raw_drv).abs().amax(dim=(1, 2, 3)) > 0.3
    assert torch.equal(flipped_prev, flipped_drv) and flipped_drv.any() and not flipped_drv.all()
    # The source and driving frames are drawn as without previous frames.
    again = data.batch(64, torch.Generator().manual_seed(0), previous=True)
    assert torch.equal(again["previous"], batch["previous"])


def test_temporal_loss_is_zero_when_the_render_changes_as_the_source_does():
    torch.manual_seed(0)
    a, b = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    assert losses.temporal_loss(a + 0.3, b + 0.3, a, b) < 1e-6
    assert losses.temporal_loss(a, a, a, b) > 0.1  # a frozen render of a moving source


def _still_trainer(tmp_path, steps=None, **config):
    config = TrainConfig.for_model("fv2v", config="test-image-bg", **{"batch_size": 2, "lr": 1e-3, **config})
    options = RunOptions(steps=steps, log_every=1, image_every=100, checkpoint_every=100)
    return Trainer(config, blob_store(2, 6), tmp_path, options, perceptual_features=TinyFeatures())


def test_the_still_renderer_trains_on_consecutive_frames_with_its_own_terms(tmp_path):
    trainer = _still_trainer(tmp_path, steps=2)
    assert trainer.config.weights.temporal > 0 and trainer.config.weights.foreground > 0
    logged = trainer.train_step()
    assert {"temporal", "foreground", "pixel", "landmark"} <= logged.keys()
    assert 0 < logged["foreground"] < 1 and logged["temporal"] > 0


def test_init_from_extends_a_spline_checkpoint_with_the_mask_network(tmp_path):
    for run in "abc":
        (tmp_path / run).mkdir()
    options = RunOptions(steps=1, log_every=1, image_every=100, checkpoint_every=100)
    spline_config = TrainConfig.for_model("fv2v", config="test-image", batch_size=2, lr=1e-3)
    first = Trainer(spline_config, blob_store(2, 6), tmp_path / "a", options, perceptual_features=TinyFeatures())
    first.run()
    state = load_checkpoint(tmp_path / "a" / CHECKPOINT_NAME)
    tuned = _still_trainer(tmp_path / "b", steps=2)
    fresh_mask = {k: v.clone() for k, v in tuned.model.state_dict().items() if k.startswith("foreground.")}
    tuned.start_from(state, "a/checkpoint.pt")
    mine, theirs = tuned.model.state_dict(), first.model.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    assert fresh_mask and all(torch.equal(mine[k], v) for k, v in fresh_mask.items())
    ema = tuned.ema.model.state_dict()
    assert all(torch.equal(ema[k], v) for k, v in first.ema.model.state_dict().items())
    assert tuned.step == 1
    # The other way round, the checkpoint holds tensors (the mask) the spline model has no place for.
    tuned.run()
    with pytest.raises(TrainError, match="holds tensors this model lacks: foreground"):
        Trainer(spline_config, blob_store(2, 6), tmp_path / "c", options,
                perceptual_features=TinyFeatures()).start_from(load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME),
                                                               "b/checkpoint.pt")


def test_init_from_refuses_weights_of_another_shape(tmp_path):
    state = _still_trainer(tmp_path).state_dict()
    state["train_config"]["config"] = "test-image"
    state["model"]["refiner.head.weight"] = torch.zeros(1)
    with pytest.raises(TrainError, match="do not fit this model"):
        _still_trainer(tmp_path / "x").start_from(state, "x")


def test_a_shrink_only_mask_never_exceeds_its_prior_disc():
    from codec.models.config import FV2VConfig
    from codec.models.foreground_mask import ForegroundMask

    torch.manual_seed(0)
    points = torch.rand(2, 20, 2) * 0.6 - 0.3
    image = torch.rand(2, 3, 16, 16)
    base = FV2VConfig.named("test-image-bg")
    for residual, grows in (("shrink", False), ("free", True)):
        config = dataclasses.replace(base, image=dataclasses.replace(base.image, mask_residual=residual))
        mask = ForegroundMask(config)
        torch.nn.init.normal_(mask.head.weight, std=1.0)
        torch.nn.init.constant_(mask.head.bias, 0.5)
        prior = torch.sigmoid(head_prior_logit(points, 16, config.image.mask_prior_radius, config.image.mask_prior_gain))
        with torch.no_grad():
            out = mask(image, points)
        assert bool((out > prior + 1e-6).any()) == grows
        assert (out < prior - 1e-3).any()


def test_the_picture_losses_reach_the_keypoints_neither_through_the_warp_nor_through_the_mask():
    model = _still_model().train()
    torch.manual_seed(1)
    source, driving = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    out = model.training_forward(source, driving)
    out["prediction"].mean().backward()
    detector = [p.grad for p in model.landmarks.parameters()]
    assert all(g is None or not g.any() for g in detector)
    assert any(p.grad is not None and p.grad.any() for p in model.foreground.parameters())


@pytest.mark.parametrize("radius", [0.0, 1.0])
def test_correction_radius_confines_the_refiners_flow_correction_to_the_face(radius):
    base = FV2VConfig.named("test-image-bg")
    config = dataclasses.replace(base, image=dataclasses.replace(base.image, correction_radius=radius))
    model = FaceVid2Vid(config).eval()
    torch.manual_seed(4)
    keyframe = torch.rand(1, 3, 64, 64)
    source = torch.rand(1, 20, 2) * 0.2 - 0.1
    driving = source + 0.05
    everywhere = torch.ones(1, 1, 16, 16)  # the whole frame moves with the head: only the correction differs

    def render(shift):
        with torch.no_grad():
            model.refiner.head.bias[0] = shift  # a constant flow correction along x
            return model._warp_keyframe(keyframe, source, driving, everywhere)["prediction"]

    change = (render(0.1) - render(0.0)).abs().amax(1)[0]
    # The disc at the refiner's 16², widened by one cell for the bilinear up-sampling of its flow to 64².
    face = torch.sigmoid(head_prior_logit(driving, 16, 1.0, config.image.mask_prior_gain))
    near = torch.nn.functional.interpolate(torch.nn.functional.max_pool2d(face, 3, 1, 1), size=64)[0, 0]
    inside = torch.nn.functional.interpolate(face, size=64)[0, 0]
    assert change[inside > 0.5].mean() > 0.02  # the correction acts on the face
    outside = change[near < 1e-3]
    assert outside.numel() > 64 * 64 // 2
    if radius:
        assert outside.max() < 1e-3
    else:
        assert outside.mean() > 0.02
