"""Build codec/models/face_relief.npz: the mean depth relief of a frontal face that free view turns.

The mean of MediaPipe's face mesh over near-frontal frames of the training clips, each aligned onto the
landmarks' mean face (`codec.data.landmarks.MEAN_FACE`, x and y) by a 2D similarity, its depth scaled with
it; then the points the decoder adds to the spline, picked farthest-first among the face's 468 (irises out)
no deeper than the keypoints' mean depth and at least MIN_GAP from the keypoints and from each other. Training
data only. Usage:

    python scripts/face_relief.py --data ../shared/data --landmarker ../shared/models/face_landmarker.task
"""
from __future__ import annotations

import argparse
import csv
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codec.data.face_track import FACE_MESH_POINTS, FaceLandmarker  # noqa: E402
from codec.data.landmarks import LANDMARK_INDICES, MEAN_FACE, similarity  # noqa: E402
from codec.video import read_frames  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "codec" / "models" / "face_relief.npz"
FRONTAL_DEG = 8.0  # |yaw|, |pitch|, |roll| of the frames averaged
FRAMES_PER_CLIP = (0, 60, 120)
POINTS = 48  # relief points added to the spline
# In MEAN_FACE units (eye corners ±0.30): closer points add little but make the spline's system stiff.
MIN_GAP = 0.07
# Relief points lie in front of the keypoints' mean depth: the face's sides behind it turn towards the silhouette,
# where hair and background beside them have no points to follow them, and a 20° turn folded the cheek into the
# hair (the astronaut demo clip's strip).
MAX_DEPTH = 0.0


def aligned_meshes(data: Path, landmarker_path: Path) -> np.ndarray:
    """Near-frontal face meshes (N, 468, 3) of the training clips in MEAN_FACE's frame."""
    with open(data / "clips.tsv") as f:
        clips = [data / row["file"] for row in csv.DictReader(f, delimiter="\t") if row["set"] == "train"]
    target = np.array(MEAN_FACE)[:, :2]
    meshes = []
    with FaceLandmarker(landmarker_path) as landmarker:
        for clip in clips:
            frames = itertools.islice(read_frames(clip, size=512), max(FRAMES_PER_CLIP) + 1)
            for k, frame in enumerate(frames):
                hit = landmarker.detect(frame) if k in FRAMES_PER_CLIP else None
                if hit is None or np.abs(hit.pose).max() > FRONTAL_DEG:
                    continue
                # x, y as fractions of the side; MediaPipe's depth on x's scale.
                mesh = np.concatenate([hit.points, hit.depth[:, None]], 1)[:FACE_MESH_POINTS]
                scale, rotation, shift = similarity(mesh[list(LANDMARK_INDICES), :2], target)
                meshes.append(np.concatenate([mesh[:, :2] @ (scale * rotation).T + shift, scale * mesh[:, 2:]], 1))
    return np.stack(meshes)


def pick(mean: np.ndarray) -> np.ndarray:
    """Indices of up to POINTS mesh points in front of MAX_DEPTH, farthest-first from the keypoints, none closer than
    MIN_GAP to another."""
    chosen = [*LANDMARK_INDICES]
    gap = np.linalg.norm(mean[:, None, :2] - mean[None, chosen, :2], axis=-1).min(1)
    gap[mean[:, 2] > MAX_DEPTH] = 0.0
    picked = []
    while len(picked) < POINTS:
        best = int(np.argmax(gap))
        if gap[best] < MIN_GAP:
            break
        picked.append(best)
        gap = np.minimum(gap, np.linalg.norm(mean[:, :2] - mean[best, :2], axis=-1))
    return np.array(picked)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--landmarker", type=Path, default=Path("../shared/models/face_landmarker.task"))
    args = p.parse_args()
    meshes = aligned_meshes(args.data, args.landmarker)
    mean = meshes.mean(0)
    mean[:, 2] -= mean[list(LANDMARK_INDICES), 2].mean()  # depth relative to the keypoints' mean
    picked = pick(mean)
    np.savez(OUT, keypoints=mean[list(LANDMARK_INDICES)].astype(np.float32),
             points=mean[picked].astype(np.float32), mesh_index=picked.astype(np.int16), frames=len(meshes))
    print(f"{len(meshes)} frontal frames, {len(picked)} relief points -> {OUT}")


if __name__ == "__main__":
    main()
