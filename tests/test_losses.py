"""Training losses and the equivariance warp on tiny tensors."""
import math

import pytest
import torch

from codec.models.blocks import keypoints_to_gaussian, soft_argmax
from codec.models.head_pose import angles_from_logits, bin_centres
from codec.train import losses
from codec.train.warp import RandomWarp, WarpConfig
from training_helpers import TinyFeatures


def test_perceptual_zero_for_identical_positive_and_differentiable_otherwise():
    loss = losses.PerceptualLoss(TinyFeatures())
    target = torch.rand(2, 3, 32, 32)
    assert loss(target.clone(), target).item() == 0.0
    output = torch.rand(2, 3, 32, 32, requires_grad=True)
    value = loss(output, target)
    assert value.item() > 0
    value.backward()
    assert output.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.features.parameters())


def test_perceptual_rejects_wrong_number_of_maps():
    loss = losses.PerceptualLoss(TinyFeatures(), layer_weights=(1.0, 1.0))
    with pytest.raises(ValueError, match="5 maps"):
        loss(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))


def test_hinge_losses():
    big = [torch.full((2, 1, 4, 4), 5.0), torch.full((2, 1, 2, 2), 5.0)]
    assert losses.hinge_discriminator_loss(big, [-b for b in big]).item() == 0.0
    assert losses.hinge_discriminator_loss([-b for b in big], big).item() == pytest.approx(12.0)
    fake = [torch.zeros(2, 1, 4, 4, requires_grad=True)]
    g = losses.hinge_generator_loss(fake)
    g.backward()
    assert g.item() == 0.0 and (fake[0].grad < 0).all()


def test_feature_matching_zero_for_equal_features():
    feats = [[torch.rand(1, 2, 4, 4), torch.rand(1, 3, 2, 2)], [torch.rand(1, 2, 2, 2)]]
    assert losses.feature_matching_loss(feats, feats).item() == 0.0
    fake = [[f + 0.5 for f in scale] for scale in feats]
    assert losses.feature_matching_loss(feats, fake).item() == pytest.approx(0.5)


def test_identity_warp_leaves_image_and_coordinates():
    warp = RandomWarp(2, WarpConfig(sigma_affine=0.0, sigma_tps=0.0))
    image = torch.rand(2, 3, 9, 9)
    assert torch.allclose(warp.warp_image(image), image, atol=1e-5)
    points = torch.rand(2, 5, 2) * 2 - 1
    assert torch.allclose(warp.transform(points), points)


def test_warp_jacobian_matches_finite_differences():
    warp = RandomWarp(3, WarpConfig(sigma_affine=0.1, sigma_tps=0.05), generator=torch.Generator().manual_seed(1))
    points = torch.rand(3, 4, 2, dtype=torch.float64) * 2 - 1
    warp.theta, warp.tps_weights = warp.theta.double(), warp.tps_weights.double()
    warp.control = warp.control.double()
    jac = warp.jacobian(points)
    eps = 1e-6
    for axis in range(2):
        step = torch.zeros_like(points)
        step[..., axis] = eps
        numeric = (warp.transform(points + step) - warp.transform(points - step)) / (2 * eps)
        assert torch.allclose(jac[..., :, axis], numeric, atol=1e-6)


def test_equivariance_zero_for_exact_detector_positive_otherwise():
    warp = RandomWarp(2, WarpConfig(sigma_affine=0.1, sigma_tps=0.01), generator=torch.Generator().manual_seed(0))
    warped_kp = torch.rand(2, 6, 3) * 1.2 - 0.6
    exact = torch.cat([warp.transform(warped_kp[..., :2]), torch.rand(2, 6, 1)], dim=-1)
    assert losses.equivariance_loss(exact, warped_kp, warp).item() < 1e-6
    assert losses.equivariance_loss(warped_kp, warped_kp, warp).item() > 1e-3


def test_equivariance_small_for_blob_detector_on_warped_images():
    """A soft-argmax of one bright blob per channel is equivariant up to resampling error."""
    gen = torch.Generator().manual_seed(3)
    centres = torch.rand(2, 4, 2, generator=gen) - 0.5
    image = keypoints_to_gaussian(centres, (64, 64), variance=0.003)

    def detect(img):
        return soft_argmax(torch.log(img + 1e-6), temperature=1.0)[0]

    warp = RandomWarp(2, WarpConfig(sigma_affine=0.08, sigma_tps=0.005), generator=gen)
    equivariant = losses.equivariance_loss(detect(image), detect(warp.warp_image(image)), warp).item()
    constant = losses.equivariance_loss(detect(image), torch.zeros(2, 4, 2), warp).item()
    assert equivariant < 0.01 < constant


def test_jacobian_equivariance_zero_when_jacobians_compose():
    warp = RandomWarp(2, WarpConfig(sigma_affine=0.1, sigma_tps=0.01), generator=torch.Generator().manual_seed(2))
    warped_kp = torch.rand(2, 5, 2) - 0.5
    warped_jac = torch.eye(2) + 0.1 * torch.randn(2, 5, 2, 2)
    jac = warp.jacobian(warped_kp).detach() @ warped_jac
    assert losses.jacobian_equivariance_loss(jac, warped_kp, warped_jac, warp).item() < 1e-5
    other = torch.eye(2).expand(2, 5, 2, 2)
    assert losses.jacobian_equivariance_loss(other, warped_kp, warped_jac, warp).item() > 1e-2


def test_keypoint_prior_zero_when_spread_at_target_depth_positive_when_collapsed():
    grid = torch.stack(torch.meshgrid(torch.linspace(-0.5, 0.5, 4), torch.linspace(-0.5, 0.5, 5), indexing="ij"), -1)
    spread = torch.cat([grid.reshape(1, 20, 2), torch.full((1, 20, 1), 0.33)], -1)
    assert losses.keypoint_prior_loss(spread).item() == pytest.approx(0.0, abs=1e-6)
    collapsed = torch.zeros(1, 20, 3, requires_grad=True)
    value = losses.keypoint_prior_loss(collapsed)
    assert value.item() == pytest.approx(20 * 19 * 0.1 + 0.33, rel=1e-4)
    value.backward()
    assert torch.isfinite(collapsed.grad).all()


def test_head_pose_loss_masks_nan_labels():
    labels = torch.tensor([[10.0, -20.0, float("nan")]])
    logits = torch.zeros(1, 3, 66, requires_grad=True)
    value = losses.head_pose_loss(logits, angles_from_logits(logits), labels)
    value.backward()
    assert value.item() > 0
    assert logits.grad[0, 2].abs().sum() == 0 and logits.grad[0, :2].abs().sum() > 0


def test_head_pose_loss_small_for_confident_correct_prediction():
    labels = torch.tensor([[10.0, -20.0, 4.0]])
    near = (bin_centres()[None, None] - labels[..., None]).abs()
    logits = -near * 10
    good = losses.head_pose_loss(logits, angles_from_logits(logits), labels).item()
    bad = losses.head_pose_loss(-logits, angles_from_logits(-logits), labels).item()
    assert good < 0.05 < bad


def test_head_pose_loss_zero_without_labels():
    logits = torch.randn(2, 3, 66, requires_grad=True)
    value = losses.head_pose_loss(logits, angles_from_logits(logits), torch.full((2, 3), math.nan))
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(logits.grad).all()


def test_deformation_prior():
    assert losses.deformation_prior_loss(torch.zeros(1, 20, 3)).item() == 0.0
    assert losses.deformation_prior_loss(torch.full((1, 20, 3), -0.2)).item() == pytest.approx(0.2)
