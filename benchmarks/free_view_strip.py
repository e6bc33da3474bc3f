"""A free-view frame strip: one frame of the public-domain astronaut demo clip re-rendered at several yaw
(and pitch) overrides, one row per model (and, with --flat, one more per model through the keypoints alone, as
before the face relief), so a reader sees whether the face turns or smears and whether the wall behind it moves.
The clip is scikit-image's astronaut (NASA, public domain), so the strip may be committed.

    python benchmarks/free_view_strip.py --models codec/weights/fv2v-warp128.pt --flat \
        --out benchmarks/results/free-view-strip
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import portable, portable_label  # noqa: E402
from results_folder import run_stamp  # noqa: E402

from codec.decoder import DecoderOptions, free_view_rotation  # noqa: E402
from codec.demo import DemoClipConfig, astronaut_frames  # noqa: E402
from codec.model_loading import load_model_spec  # noqa: E402

ANGLES = (-20.0, -10.0, 0.0, 10.0, 20.0)


def strip(model, keyframe: np.ndarray, frame: np.ndarray, angles=ANGLES, axis: str = "yaw",
          relief: bool = True) -> np.ndarray:
    """(H, len(angles)·W, 3) uint8: `frame`'s motion rendered from `keyframe` with each override added."""
    to_tensor = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255  # noqa: E731
    tiles = []
    with torch.no_grad():
        state = model.analyze_keyframe(to_tensor(keyframe))
        motion = model.estimate_motion(to_tensor(frame))
        for angle in angles:
            view = free_view_rotation(motion, DecoderOptions(**{axis: angle}))
            out = model.render(state, motion, view=view, relief=relief)[0].clamp(0, 1)
            tiles.append((out.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    return np.concatenate(tiles, 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", required=True, help="weights paths (or fv2v) to compare, one row each")
    p.add_argument("--out", type=Path, required=True, help="folder for strip_yaw.png, strip_pitch.png, run.json")
    p.add_argument("--frame", type=int, default=40, help="frame of the demo clip whose motion is rendered")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--flat", action="store_true",
                   help="below each model's row, the same through the keypoints alone (no face relief)")
    args = p.parse_args(argv)
    from PIL import Image

    torch.set_num_threads(1)
    frames = list(astronaut_frames(DemoClipConfig(size=args.size)))
    keyframe, frame = frames[0], frames[args.frame]
    loaded = [load_model_spec(spec, "cpu") for spec in args.models]
    args.out.mkdir(parents=True, exist_ok=True)
    for axis, angles in (("yaw", ANGLES), ("pitch", (-15.0, -7.5, 0.0, 7.5, 15.0))):
        rows = [strip(m.model, keyframe, frame, angles, axis, relief) for m in loaded
                for relief in ((True, False) if args.flat else (True,))]
        Image.fromarray(np.concatenate(rows, 0)).save(args.out / f"strip_{axis}.png")
    run = {**run_stamp(), "clip": "astronaut demo clip (skimage, public domain)", "keyframe": 0, "frame": args.frame,
           "size": args.size,
           "rows": [f"{portable_label(m.label)}{suffix}" for m in loaded
                    for suffix in ((", face relief", ", keypoints only") if args.flat else ("",))],
           "columns": {"yaw": list(ANGLES), "pitch": [-15.0, -7.5, 0.0, 7.5, 15.0]}, "out": portable(args.out)}
    (args.out / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    print(f"wrote {args.out}/strip_yaw.png and strip_pitch.png: rows {', '.join(run['rows'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
