"""Pair sampling from an in-memory frame store, and pair augmentation (flips mirror the pose labels)."""
import numpy as np
import pytest
import torch

from codec.data.augment import NO_AUGMENT, AugmentConfig, augment_pairs, flip_poses
from codec.data.cache import CacheError, ClipRecord
from codec.data.face_track import pose_from_rotation
from codec.data.landmarks import LANDMARKS, mirror_landmarks
from codec.data.sampler import FrameStore, PairDataset
from codec.models.keypoint_transform import rotation_matrix


def _record(i: int, frames: int) -> ClipRecord:
    return ClipRecord(id=f"c{i}", source=f"c{i}.mp4", identity=f"p{i}", set="train", split="train", frames=frames,
                      fps=25.0, size=8, source_size=(8, 8), box=(0, 0, 8), crop="centre")


def _store(lengths=(5, 1, 3)) -> FrameStore:
    """Frame pixels encode (clip, frame): red = clip index, green = frame index; yaw = 10·frame."""
    frames, poses = [], []
    for c, n in enumerate(lengths):
        f = np.zeros((n, 8, 8, 3), np.uint8)
        f[..., 0] = c
        f[..., 1] = np.arange(n)[:, None, None]
        frames.append(f)
        poses.append(np.stack([np.arange(n) * 10.0, np.full(n, 5.0), np.full(n, -3.0)], 1))
    return FrameStore.from_arrays([_record(c, n) for c, n in enumerate(lengths)], frames, poses)


def test_pairs_come_from_one_clip_and_differ_when_possible():
    data = PairDataset(_store())
    gen = torch.Generator().manual_seed(0)
    batch = data.batch(200, gen)
    src, drv = ((batch[k][:, :, 0, 0] * 255).round() for k in ("source", "driving"))
    assert torch.equal(src[:, 0], drv[:, 0])  # same clip
    long_clips = drv[:, 0] != 1
    assert (src[long_clips, 1] != drv[long_clips, 1]).all()
    assert torch.equal(batch["driving_pose"][:, 0], drv[:, 1] * 10)
    # Every other frame of the 5-frame clip shows up as a source.
    assert set(src[drv[:, 0] == 0, 1].tolist()) == {0, 1, 2, 3, 4}
    assert set(drv[:, 0].tolist()) == {0, 1, 2}


def test_indexing_matches_frames():
    data = PairDataset(_store())
    assert len(data) == 9
    item = data[5]  # the single frame of clip 1
    assert item["source"].shape == (3, 8, 8) and torch.equal(item["source"], item["driving"])
    assert (item["driving"][0] * 255).round().unique().tolist() == [1.0]


def test_flip_mirrors_images_and_pose_consistently():
    gen = torch.Generator().manual_seed(0)
    src, drv = torch.rand(2, 3, 4, 6), torch.rand(2, 3, 4, 6)
    pose = torch.tensor([[20.0, 10.0, 5.0], [-30.0, float("nan"), 8.0]])
    points = torch.rand(2, len(LANDMARKS), 2) * 2 - 1
    out = augment_pairs(src, drv, pose, pose, points, points, AugmentConfig(1.0, 0.0, 0.0, 0.0), gen)
    assert torch.allclose(out[0], src.flip(-1)) and torch.allclose(out[1], drv.flip(-1))
    expected = torch.tensor([[-20.0, 10.0, -5.0], [30.0, float("nan"), -8.0]])
    assert torch.allclose(out[2], expected, equal_nan=True) and torch.allclose(out[3], expected, equal_nan=True)
    # The subject's left mouth corner of the mirror image is the right one of the original, mirrored.
    names = [name for _, name, _ in LANDMARKS]
    left, right = names.index("mouth corner left"), names.index("mouth corner right")
    assert torch.allclose(out[4][:, left], points[:, right] * torch.tensor([-1.0, 1.0]))
    nose = names.index("nose tip")
    assert torch.allclose(out[5][:, nose], points[:, nose] * torch.tensor([-1.0, 1.0]))
    assert torch.allclose(mirror_landmarks(out[4]), points)


def test_flipped_labels_describe_the_mirrored_rotation():
    """Mirroring x conjugates R by diag(-1, 1, 1); decoding that matrix gives the flipped labels."""
    angles = torch.tensor([25.0, -12.0, 7.0], dtype=torch.float64)
    mirror = np.diag([-1.0, 1.0, 1.0])
    mirrored = mirror @ rotation_matrix(angles).numpy() @ mirror
    assert np.allclose(pose_from_rotation(mirrored), flip_poses(angles).numpy(), atol=1e-4)


def test_jitter_is_shared_by_the_pair_and_stays_in_range():
    gen = torch.Generator().manual_seed(1)
    img = torch.rand(3, 3, 5, 5)
    pose = torch.zeros(3, 3)
    points = torch.zeros(3, len(LANDMARKS), 2)
    src, drv, *_ = augment_pairs(img, img.clone(), pose, pose, points, points, AugmentConfig(0.5, 0.3, 0.3, 0.3),
                                 gen)
    assert torch.equal(src, drv)
    assert not torch.allclose(src, img) and src.min() >= 0 and src.max() <= 1


def test_no_augment_is_identity():
    img = torch.rand(2, 3, 4, 4)
    pose = torch.rand(2, 3)
    points = torch.rand(2, len(LANDMARKS), 2)
    out = augment_pairs(img, img, pose, pose, points, points, NO_AUGMENT)
    assert torch.allclose(out[0], img) and torch.equal(out[2], pose) and torch.equal(out[4], points)


def test_frames_are_taken_one_clip_at_a_time_and_must_match_the_labels():
    store = _store()
    blocks = [store.frames[s:s + n].permute(0, 2, 3, 1).numpy() for s, n in zip(store.clip_start, store.clip_length)]
    taken = []
    lazy = FrameStore.from_arrays(store.clips, (taken.append(i) or b for i, b in enumerate(blocks)),
                                  [p.numpy() for p in store.poses.split(store.clip_length.tolist())])
    assert taken == [0, 1, 2] and torch.equal(lazy.frames, store.frames) and torch.equal(lazy.poses, store.poses)
    with pytest.raises(CacheError, match="clip c1: 2 frames but 1 pose labels"):
        FrameStore.from_arrays(store.clips, [blocks[0], np.concatenate([blocks[1]] * 2), blocks[2]],
                               [p.numpy() for p in store.poses.split(store.clip_length.tolist())])


def test_empty_store_is_refused():
    with pytest.raises(CacheError, match="no clips"):
        FrameStore.from_arrays([], [], [])
