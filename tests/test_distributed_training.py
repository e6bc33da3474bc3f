"""Training on two CPU processes (gloo): DDP's averaged gradients give the weights one process gets from the
same two batches, and `torchrun` drives `fvc train` end to end."""
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from codec.data.sampler import PairDataset
from codec.train import distributed
from codec.train.trainer import RunOptions, TrainConfig, Trainer
from training_helpers import TinyFeatures, blob_store, prepare_blob_cache

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _trainer(tmp_path, group=distributed.SINGLE) -> Trainer:
    config = TrainConfig.for_model("fv2v", config="test-image-bg", batch_size=2, lr=1e-3)
    return Trainer(config, blob_store(2, 6), tmp_path, RunOptions(steps=STEPS), perceptual_features=TinyFeatures(),
                   group=group)


def _one_process(folder, batches) -> Trainer:
    """One process: each step averages the gradients of its two batches, as DDP's all-reduce does."""
    single = _trainer(folder)
    for step_batches in batches:
        single.opt_g.zero_grad(set_to_none=True)
        for batch in step_batches:
            terms, _ = single.generator_losses(batch)
            (single.weighted_total(terms) / 2).backward()
        single.opt_g.step()
    return single


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        batches = torch.load(os.path.join(folder, "batches.pt"))
        trainer = _trainer(os.path.join(folder, f"rank{rank}"), distributed.Group(rank, world))
        for step in range(STEPS):
            trainer._batch = lambda: batches[step][rank]
            trainer.train_step()
        torch.save(trainer.model.state_dict(), os.path.join(folder, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_processes_train_to_the_weights_one_process_gets_from_the_same_batches(tmp_path):
    data = PairDataset(blob_store(2, 6))
    generator = torch.Generator().manual_seed(5)
    batches = [[data.batch(2, generator, previous=True) for _ in range(2)] for _ in range(STEPS)]
    torch.save(batches, tmp_path / "batches.pt")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)

    expected = dict(_one_process(tmp_path / "single", batches).model.named_parameters())
    start = dict(_trainer(tmp_path / "start").model.named_parameters())
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        for name, value in expected.items():
            assert torch.allclose(got[name], value.detach(), atol=1e-6, rtol=1e-5), (rank, name)
    assert any(not torch.equal(start[k], v) for k, v in expected.items())  # training moved the weights


def test_a_different_batch_per_process_breaks_the_equality(tmp_path):
    """The check above can fail: rank 1 training on rank 0's batches gives other weights."""
    data = PairDataset(blob_store(2, 6))
    generator = torch.Generator().manual_seed(5)
    batches = [[data.batch(2, generator, previous=True) for _ in range(2)] for _ in range(STEPS)]
    same = [[step[0], step[0]] for step in batches]
    torch.save(same, tmp_path / "batches.pt")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    single = _one_process(tmp_path / "single", batches)
    got = torch.load(tmp_path / "rank0.pt")
    assert any(not torch.allclose(got[k], v.detach(), atol=1e-6) for k, v in single.model.named_parameters())


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None,
                    reason="torchrun ships with torch; absent only in a broken install")
def test_torchrun_trains_with_two_processes_and_rank_zero_writes_the_run(tmp_path):
    cache, run = prepare_blob_cache(tmp_path, label_poses=True), tmp_path / "run"
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "--master_port", str(_free_port()), "-m", "codec.train.trainer",
         "--config", "test", "--cache", str(cache), "--out", str(run), "--batch-size", "1",
         "--device", "cpu", "--steps", "2"],
        env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    card = json.loads((run / "fv2v-test.json").read_text())
    assert (card["steps"], card["samples_seen"], card["processes"]) == (2, 4, 2)
    assert done.stdout.count("exported") == 1  # rank 0 alone reports and writes
