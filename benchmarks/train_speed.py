"""Training throughput of warp128bg at 256², batch 2 pairs (+ their previous frames) per process, on synthetic
frames: run it plainly (one process, OMP_NUM_THREADS threads) or under torchrun (one thread per process).

    OMP_NUM_THREADS=2 python benchmarks/train_speed.py 20
    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 benchmarks/train_speed.py 20
"""
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_folder import run_stamp  # noqa: E402

from codec.data.cache import ClipRecord
from codec.data.sampler import FrameStore
from codec.train import distributed
from codec.train.trainer import TrainConfig, Trainer, RunOptions
S = 256; rng = np.random.default_rng(0)
recs = [ClipRecord(f"c{c}", "x", f"p{c}", "train", "train", 20, 25.0, S, (S, S), (0, 0, S), "face") for c in range(2)]
arr = [(rng.random((20, S, S, 3)) * 255).astype(np.uint8) for _ in range(2)]
poses = [np.zeros((20, 3), np.float32) for _ in range(2)]
lm = [np.tile(rng.random((1, 20, 2)).astype(np.float32) - 0.5, (20, 1, 1)) for _ in range(2)]
store = FrameStore.from_arrays(recs, arr, poses, lm)
group = distributed.join(torch.device("cpu"))
tc = TrainConfig.for_model("fv2v", config="warp128bg", batch_size=2, lr=1e-4)
tr = Trainer(tc, store, Path(tempfile.mkdtemp()), RunOptions(), group=group)
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
for _ in range(3):
    tr.train_step()
t = time.time()
for _ in range(steps):
    tr.train_step()
dt = time.time() - t
if group.leader:
    stamp = run_stamp()
    print(f"{stamp['date']}, commit {stamp['commit']}, {tc.config}: processes {group.world} x threads {torch.get_num_threads()}: {steps / dt * 60:.1f} steps/min, "
          f"{steps * 2 * group.world / dt:.2f} pairs/s")
distributed.leave()
