"""Parameter counts per network and inference ms/frame of the fv2v (or FOMM) presets, at batch 1.

Usage: .venv/bin/python benchmarks/model_speed.py [--model fv2v|fomm] [--configs small small512 base]
       [--threads 2] [--repeats 5] [--frame-size 512]
Frames enter at --frame-size, as the codec passes them (the networks resize to their analysis size).
"cached" is estimate_motion + render, the per-frame encode+decode cost once a keyframe is analysed.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections import defaultdict

import torch

from codec.motion_model import build_untrained, for_inference


def _device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU {cpu}"


class SubmoduleTimer:
    """Accumulates wall time spent inside each direct child network via forward hooks."""

    def __init__(self, model: torch.nn.Module):
        self.totals: dict[str, list[float]] = defaultdict(list)
        self._start: dict[str, float] = {}
        for name, child in model.named_children():
            child.register_forward_pre_hook(lambda _m, _i, n=name: self._start.__setitem__(n, time.perf_counter()))
            child.register_forward_hook(
                lambda _m, _i, _o, n=name: self.totals[n].append(time.perf_counter() - self._start[n])
            )


def _time(fn, repeats: int) -> float:
    fn()  # warm-up: oneDNN primitive creation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def bench(kind: str, config_name: str, repeats: int, frame_size: int) -> None:
    model = for_inference(build_untrained(kind, config_name, seed=0))  # as the codec loads it
    image = torch.rand(1, 3, frame_size, frame_size)
    cfg = model.config
    image_space = kind == "fv2v" and cfg.renderer == "image"
    volume = (f"volume {cfg.appearance.volume_channels}x{cfg.appearance.volume_depth}x{cfg.volume_size}"
              f"x{cfg.volume_size}, " if kind == "fv2v" and not image_space else "")
    output = f"{frame_size}² (the keyframe's size)" if image_space else f"{model.output_size}²"
    print(f"\n== {kind} {config_name}: frames {frame_size}², analysis {model.analysis_size}², output {output}, "
          f"{volume}K={model.num_keypoints}")
    total = 0
    for name, child in model.named_children():
        count = sum(p.numel() for p in child.parameters())
        total += count
        print(f"  params {name:14s} {count / 1e6:8.3f} M")
    print(f"  params {'total':14s} {total / 1e6:8.3f} M")
    timer = SubmoduleTimer(model)
    with torch.inference_mode():
        state = model.analyze_keyframe(image)
        motion = model.estimate_motion(image)
        results = {
            "analyze_keyframe": _time(lambda: model.analyze_keyframe(image), repeats),
            "estimate_motion": _time(lambda: model.estimate_motion(image), repeats),
        }
        timer.totals.clear()
        results["render"] = _time(lambda: model.render(state, motion), repeats)
        render_parts = {n: statistics.median(t) * 1e3 for n, t in timer.totals.items()}
        results["cached"] = _time(lambda: model.render(state, model.estimate_motion(image)), repeats)
    for name, ms in results.items():
        print(f"  {name:17s} {ms:8.1f} ms/frame")
    print("  render split:    " + ", ".join(f"{n} {ms:.1f} ms" for n, ms in render_parts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("fv2v", "fomm"), default="fv2v")
    parser.add_argument("--configs", nargs="+", default=["small", "small512", "base"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frame-size", type=int, default=512, help="side of the frames given to the model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"device: {_device_name()}; torch {torch.__version__}; threads {torch.get_num_threads()}; batch 1")
    for name in args.configs:
        bench(args.model, name, args.repeats, args.frame_size)


if __name__ == "__main__":
    main()
