"""`fvc prepare` on tiny generated clips (centre-crop path, no MediaPipe needed) and the clip catalog."""
import json

import numpy as np
import pytest

from codec.data.cache import CacheError, CacheIndex, read_clip_frames, read_poses
from codec.data.catalog import list_clips, split_of
from codec.data.prepare import main
from codec.data.sampler import FrameStore
from codec.video import VideoWriter


def _write_clip(path, frames=15, fps=10, width=64, height=48):
    """Left third red, middle green, right third blue; brightness ramps over time."""
    with VideoWriter(path, fps=fps) as writer:
        for t in range(frames):
            img = np.zeros((height, width, 3), np.uint8)
            level = 100 + 8 * t
            img[:, : width // 3, 0] = level
            img[:, width // 3: 2 * width // 3, 1] = level
            img[:, 2 * width // 3:, 2] = level
            writer.write(img)


def _tsv(path, rows):
    header = "set\tfile\tidentity\n"
    path.write_text(header + "".join(f"{s}\t{f}\t{i}\n" for s, f, i in rows))


def test_prepare_centre_crops_resamples_and_indexes(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    _write_clip(clips / "alice_1.mp4")
    _write_clip(clips / "bob_1.mp4", frames=5)
    cache = tmp_path / "cache"
    assert main([str(clips), str(cache), "--size", "32", "--centre-crop"]) == 0
    index = CacheIndex.load(cache)
    assert [c.id for c in index.clips] == ["alice_1", "bob_1"]
    alice = index.clips[0]
    # 15 frames at 10 fps last 1.5 s: 25 fps frames k/25 < 1.5 → 38 of them.
    assert (alice.frames, alice.fps, alice.size, alice.crop, alice.box) == (38, 25.0, 32, "centre", (8, 0, 48))
    assert alice.split == split_of("alice_1") and alice.source_size == (64, 48)
    frames = read_clip_frames(cache, alice)
    assert frames.shape == (38, 32, 32, 3)
    # The centre crop keeps a sliver of red on the left, all of green, a sliver of blue on the right.
    middle = frames[:, :, 12:20].reshape(-1, 3).mean(0)
    assert middle[1] > 100 and middle[0] < 20 and middle[2] < 20
    assert frames[-1, :, 12:20, 1].mean() > frames[0, :, 12:20, 1].mean() + 80
    assert np.isnan(read_poses(cache, alice)).all()
    store = FrameStore.from_cache(cache, "all")
    assert tuple(store.frames.shape) == (38 + 13, 3, 32, 32)


def test_prepare_uses_catalog_and_never_bench512(tmp_path):
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "bench512").mkdir()
    for name in ("a", "b", "c"):
        _write_clip(data / "train" / f"{name}.mp4", frames=3)
    _write_clip(data / "bench512" / "x.mp4", frames=3)
    _tsv(data / "clips.tsv", [("train", "train/a.mp4", "Ann"), ("train-extra", "train/b.mp4", "Ben"),
                              ("bench512", "train/c.mp4", "Cat"), ("bench512", "bench512/x.mp4", "Xi")])
    assert [(c.id, c.identity, c.set) for c in list_clips(data / "train")] == [("a", "Ann", "train"),
                                                                              ("b", "Ben", "train-extra")]
    cache = tmp_path / "cache"
    assert main([str(data / "train"), str(cache), "--size", "16", "--centre-crop"]) == 0
    # b needs a face crop, c is a bench clip: only a is cached.
    assert [c.id for c in CacheIndex.load(cache).clips] == ["a"]
    assert main([str(data / "bench512"), str(tmp_path / "bench_cache"), "--centre-crop"]) == 1
    assert not (tmp_path / "bench_cache").exists()


def test_prepare_refuses_to_overwrite_and_resumes_finished_clips(tmp_path, capsys):
    clips = tmp_path / "clips"
    clips.mkdir()
    _write_clip(clips / "a.mp4", frames=3)
    cache = tmp_path / "cache"
    args = [str(clips), str(cache), "--size", "16", "--centre-crop"]
    assert main(args) == 0
    assert main(args) == 1
    assert "--force" in capsys.readouterr().err
    # A run interrupted after clip a (no index yet) reuses a and adds b.
    (cache / "index.json").unlink()
    stamp = (cache / "clips" / "a.mp4").stat().st_mtime_ns
    _write_clip(clips / "b.mp4", frames=3)
    assert main(args) == 0
    assert (cache / "clips" / "a.mp4").stat().st_mtime_ns == stamp
    assert [c.id for c in CacheIndex.load(cache).clips] == ["a", "b"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main([str(clips), str(other), "--centre-crop"]) == 1
    assert (other / "keep.txt").read_text() == "mine"


def test_prepare_reports_missing_folder_and_empty_folder(tmp_path, capsys):
    assert main([str(tmp_path / "none"), str(tmp_path / "cache")]) == 1
    assert "clips folder not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), str(tmp_path / "cache")]) == 1
    assert "no clips to prepare" in capsys.readouterr().err


def test_damaged_cache_is_reported(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    _write_clip(clips / "a.mp4", frames=3)
    cache = tmp_path / "cache"
    assert main([str(clips), str(cache), "--size", "16", "--centre-crop"]) == 0
    (cache / "clips" / "a.mp4").write_bytes(b"not a video")
    with pytest.raises(CacheError, match="a.mp4"):
        FrameStore.from_cache(cache, "all")
    (cache / "index.json").write_text(json.dumps({"version": 99}))
    with pytest.raises(CacheError, match="version 99"):
        CacheIndex.load(cache)


def test_split_is_by_identity_and_about_a_tenth():
    names = [f"person{i}" for i in range(2000)]
    val = [n for n in names if split_of(n) == "val"]
    assert 0.07 < len(val) / len(names) < 0.13
    assert all(split_of(n) == "val" for n in val)


def test_cache_reads_through_opencv_where_pyav_is_missing(tmp_path, monkeypatch):
    """The lent GPU machines have OpenCV but no PyAV; both decoders must give the same frames."""
    pytest.importorskip("cv2")
    import importlib.util

    from skimage.data import astronaut

    clips = tmp_path / "clips"
    clips.mkdir()
    face = np.ascontiguousarray(astronaut()[20:276:4, 100:356:4])
    with VideoWriter(clips / "a.mp4", fps=25) as writer:
        for t in range(4):
            writer.write(np.roll(face, t, axis=1))
    cache = tmp_path / "cache"
    assert main([str(clips), str(cache), "--size", "64", "--centre-crop"]) == 0
    clip = CacheIndex.load(cache).clips[0]
    with_pyav = read_clip_frames(cache, clip)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "av" else real_find_spec(name, *a))
    with_opencv = read_clip_frames(cache, clip)
    assert with_opencv.shape == with_pyav.shape
    mse = ((with_opencv.astype(float) - with_pyav) ** 2).mean()
    assert 10 * np.log10(255**2 / mse) > 35
