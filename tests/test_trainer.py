"""Trainer on tiny data with the `test` fv2v config: loss goes down, checkpoints resume exactly, splits join."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from codec.data.cache import CacheIndex, write_labels
from codec.errors import OutputError
from codec.motion_model import build_untrained, load_model
from codec.train.checkpoint import CheckpointError, join_parts, load_checkpoint, manifest_path, split_file
from codec.train.trainer import CHECKPOINT_NAME, RunOptions, TrainConfig, Trainer, TrainError, build_parser, main
from codec.data.sampler import PairDataset
from training_helpers import SIZE, TinyFeatures, blob_store, prepare_blob_cache

pytestmark = pytest.mark.usefixtures("one_thread")


def _trainer(tmp_path, steps=None, **config) -> Trainer:
    config = TrainConfig(config="test", **{"batch_size": 2, "lr": 1e-3, **config})
    options = RunOptions(steps=steps, log_every=1, image_every=2, checkpoint_every=100)
    return Trainer(config, blob_store(), tmp_path, options, val_store=blob_store(1, 2), perceptual_features=TinyFeatures())


def _label_poses(cache) -> None:
    """Constant pose labels in a --centre-crop cache, as face detection would have written them (the
    synthetic clips hold no face to find)."""
    for clip in CacheIndex.load(cache).clips:
        write_labels(cache / clip.poses, np.tile(np.float32([[5.0, -3.0, 1.0]]), (clip.frames, 1)))


def test_run_lowers_the_loss_checkpoints_and_exports(tmp_path):
    trainer = _trainer(tmp_path, steps=30)
    exported = trainer.run()
    rows = (tmp_path / "losses.csv").read_text().splitlines()
    header = rows[0].split(",")
    table = np.array([[float(v) for v in r.split(",")] for r in rows[1:]])
    assert len(table) == 30
    for name, ratio in (("generator_total", 0.9), ("perceptual", 0.8)):
        column = table[:, header.index(name)]
        assert column[-5:].mean() < ratio * column[:5].mean(), name
    assert {"perceptual", "gan", "feature_matching", "equivariance", "keypoint_prior", "head_pose",
            "deformation", "discriminator"} <= set(header)
    assert (tmp_path / CHECKPOINT_NAME).is_file() and (tmp_path / "samples" / "step_0000030.png").is_file()
    card = json.loads(exported.with_suffix(".json").read_text())
    assert card["steps"] == 30 and card["samples_seen"] == 60 and card["device"].startswith("cpu")
    model = load_model(exported)
    ema = trainer.ema.model.state_dict()
    assert all(torch.equal(v, ema[k]) for k, v in model.state_dict().items())
    assert set(trainer.validate()) == {"val_l1", "val_perceptual"}


def test_image_renderer_trains_its_keypoints_towards_the_landmarks(tmp_path):
    config = TrainConfig.for_model("fv2v", config="test-image", batch_size=2, lr=1e-3)
    assert config.weights.landmark > 0 and config.weights.gan == 0 and config.weights.pixel > 0
    trainer = Trainer(config, blob_store(), tmp_path, RunOptions(steps=40, log_every=1, image_every=100),
                      perceptual_features=TinyFeatures())
    assert trainer.discriminator is None
    first = [trainer.train_step() for _ in range(5)]
    for _ in range(30):
        trainer.train_step()
    last = [trainer.train_step() for _ in range(5)]
    assert {"perceptual", "pixel", "landmark", "head_pose", "deformation"} == set(first[0]) - {"generator_total"}
    mean = lambda rows, key: np.mean([r[key] for r in rows])  # noqa: E731
    assert mean(last, "landmark") < 0.5 * mean(first, "landmark")
    assert mean(last, "generator_total") < 0.8 * mean(first, "generator_total")
    trainer.val_data = PairDataset(blob_store(1, 2))
    assert set(trainer.validate()) == {"val_l1", "val_perceptual", "val_landmark_px"}


def test_fv2v_refuses_training_frames_without_the_labels_its_losses_need(tmp_path):
    """As on a cache prepared without face detection: the losses skip NaN labels, so the run would
    quietly train without them."""
    store = blob_store()
    nan = float("nan")
    no_poses = dataclasses.replace(store, poses=torch.full_like(store.poses, nan))
    no_landmarks = dataclasses.replace(store, landmarks=torch.full_like(store.landmarks, nan))
    unlabelled = dataclasses.replace(no_poses, landmarks=no_landmarks.landmarks)
    fv2v, image = (TrainConfig.for_model("fv2v", config=name) for name in ("test", "test-image"))
    for config, data, message in (
            (fv2v, no_poses, "^the head-pose loss needs pose labels, but"),
            (image, no_landmarks, "^the landmark loss needs face landmarks, but"),
            (image, unlabelled, "^the head-pose loss needs pose labels and the landmark loss needs face landmarks, "
                                "but none of the 8 training frames has them")):
        with pytest.raises(TrainError, match=message) as refused:
            Trainer(config, data, tmp_path, perceptual_features=TinyFeatures())
        assert "prepare it again with face detection" in str(refused.value) and "\n" not in str(refused.value)
    # Face detection misses some frames: one labelled frame will do. FOMM and the feature renderer's
    # losses need no landmarks.
    some_poses = dataclasses.replace(no_poses, poses=no_poses.poses.clone())
    some_poses.poses[3] = store.poses[3]
    fomm = TrainConfig.for_model("fomm", config="test")
    for config, data in ((fv2v, some_poses), (fv2v, no_landmarks), (fomm, unlabelled)):
        Trainer(config, data, tmp_path, perceptual_features=TinyFeatures())


@pytest.mark.parametrize("change", [{"lr": 5e-4}, {"batch_size": 3}, {"ema_decay": 0.99}, {"seed": 1},
                                    {"perceptual_scales": (0.5,)}])
def test_resume_refuses_a_changed_setting(tmp_path, change):
    _trainer(tmp_path, steps=1).run()
    other = _trainer(tmp_path, **change)
    with pytest.raises(TrainError, match=f"checkpoint was trained with {next(iter(change))}="):
        other.load_state_dict(load_checkpoint(tmp_path / CHECKPOINT_NAME))


def test_resume_continues_step_count_and_reproduces_state(tmp_path):
    first = _trainer(tmp_path, steps=2)
    first.run()
    for _ in range(2):
        first.train_step()
    resumed = _trainer(tmp_path)
    resumed.load_state_dict(load_checkpoint(tmp_path / CHECKPOINT_NAME))
    assert resumed.step == 2 and resumed.samples_seen == 4
    for _ in range(2):
        resumed.train_step()
    assert resumed.step == first.step == 4
    for name, module in (("model", "model"), ("discriminator", "discriminator")):
        a, b = getattr(first, module).state_dict(), getattr(resumed, module).state_dict()
        assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a), name
    ema_a, ema_b = first.ema.model.state_dict(), resumed.ema.model.state_dict()
    assert all(torch.allclose(ema_a[k].float(), ema_b[k].float(), atol=1e-6) for k in ema_a)


def test_resume_refuses_a_different_recipe(tmp_path):
    first = _trainer(tmp_path, steps=1)
    first.run()
    other = _trainer(tmp_path, seed=7)
    with pytest.raises(TrainError, match="seed"):
        other.load_state_dict(load_checkpoint(tmp_path / CHECKPOINT_NAME))


def test_init_from_takes_another_runs_weights_and_step_count_under_new_settings(tmp_path):
    for run in "ab":
        (tmp_path / run).mkdir()
    first = _trainer(tmp_path / "a", steps=2)
    first.run()
    state = load_checkpoint(tmp_path / "a" / CHECKPOINT_NAME)
    tuned = _trainer(tmp_path / "b", steps=3, lr=5e-4)
    tuned.start_from(state, "a/checkpoint.pt")
    assert (tuned.step, tuned.samples_seen) == (2, 4) and tuned.opt_g.param_groups[0]["lr"] == 5e-4
    a, b = first.model.state_dict(), tuned.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    card = json.loads(tuned.run().with_suffix(".json").read_text())
    assert card["steps"] == 3 and card["training"]["lr"] == 5e-4
    assert [(o["checkpoint"], o["step"], o["training"]["lr"]) for o in card["initialised_from"]] == [
        ("a/checkpoint.pt", 2, 1e-3)]
    # Resuming the fine-tune keeps its own settings and where it came from.
    again = _trainer(tmp_path / "b", lr=5e-4)
    again.load_state_dict(load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME))
    assert again.step == 3 and again.origin == tuned.origin
    state["train_config"]["model"] = "fomm"
    with pytest.raises(TrainError, match="a/checkpoint.pt was trained with model='fomm', this run has 'fv2v'"):
        _trainer(tmp_path / "c").start_from(state, "a/checkpoint.pt")
    state["train_config"]["model"] = "fv2v"
    state["train_config"]["config"] = "small"
    state["model"] = build_untrained("fv2v", "small").state_dict()
    with pytest.raises(TrainError, match="checkpoint weights do not fit this model"):
        _trainer(tmp_path / "c").start_from(state, "a/checkpoint.pt")


def test_split_and_join_round_trip(tmp_path):
    path = tmp_path / "blob.pt"
    data = np.random.default_rng(0).bytes(1000)
    path.write_bytes(data)
    parts = split_file(path, part_bytes=300)
    assert [p.stat().st_size for p in parts] == [300, 300, 300, 100]
    with pytest.raises(OutputError):
        join_parts(path)
    path.unlink()
    assert join_parts(path).read_bytes() == data
    path.unlink()
    parts[1].write_bytes(b"x" * 300)
    with pytest.raises(CheckpointError, match="damaged"):
        join_parts(path)
    assert not path.exists()


def test_load_checkpoint_joins_parts_when_only_parts_travelled(tmp_path):
    path = tmp_path / "state.pt"
    torch.save({"step": 3, "w": torch.arange(5.0)}, path)
    split_file(path, part_bytes=200)
    path.unlink()
    state = load_checkpoint(path)
    assert state["step"] == 3 and torch.equal(state["w"], torch.arange(5.0))
    assert manifest_path(path).is_file()


def test_perceptual_scales_option_parses_fractions_and_refuses_bad_ones(capsys):
    assert build_parser().parse_args(["--cache", "c", "--out", "o", "--perceptual-scales", "0.5,0.25"]
                                     ).perceptual_scales == (0.5, 0.25)
    assert build_parser().parse_args(["--cache", "c", "--out", "o"]).perceptual_scales is None
    for bad in ("0.5,x", "0", "1.5"):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(["--cache", "c", "--out", "o", "--perceptual-scales", bad])
        assert exc.value.code == 2 and "--perceptual-scales" in capsys.readouterr().err


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    assert main(["--cache", str(tmp_path / "nope"), "--out", str(tmp_path / "run"), "--steps", "1"]) == 1
    assert "not a prepared cache" in capsys.readouterr().err
    assert main(["--cache", str(tmp_path), "--out", str(tmp_path / "run")]) == 1
    assert "--steps or --minutes" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / CHECKPOINT_NAME).write_bytes(b"x")
    assert main(["--cache", str(tmp_path), "--out", str(tmp_path / "run"), "--steps", "1"]) == 1
    assert "--resume" in capsys.readouterr().err
    assert main(["--cache", str(tmp_path), "--out", str(tmp_path / "run"), "--steps", "1", "--resume",
                 "--init-from", str(tmp_path / "run" / CHECKPOINT_NAME)]) == 1
    assert "give one of them" in capsys.readouterr().err
    assert main(["--cache", str(tmp_path), "--out", str(tmp_path / "new"), "--steps", "1",
                 "--init-from", str(tmp_path / "none.pt")]) == 1
    assert f"--init-from: no checkpoint at {tmp_path / 'none.pt'}" in capsys.readouterr().err


def test_cli_trains_from_a_prepared_cache_and_resumes(tmp_path, capsys):
    """prepare → train 2 steps → resume to 3, through the command-line entry points (real VGG16)."""
    cache, run = prepare_blob_cache(tmp_path), tmp_path / "run"
    common = ["--config", "test", "--cache", str(cache), "--out", str(run), "--batch-size", "2", "--device", "cpu"]
    assert main(common + ["--steps", "2"]) == 1
    assert "error: the head-pose loss needs pose labels" in capsys.readouterr().err
    _label_poses(cache)
    assert main(common + ["--steps", "2", "--split-mib", "0.1"]) == 0
    assert json.loads((run / "fv2v-test.json").read_text())["steps"] == 2
    assert len(list(run.glob("checkpoint.pt.part*"))) > 1
    (run / CHECKPOINT_NAME).unlink()  # as if only the parts came back from the GPU machine
    assert main(common + ["--steps", "3", "--resume"]) == 0
    card = json.loads((run / "fv2v-test.json").read_text())
    # Both identities hash into the train split.
    assert card["steps"] == 3 and card["data"]["clips"] == 2 and card["data"]["frames"] == 8
    assert "resumed at step 2" in capsys.readouterr().out


def test_sigterm_checkpoints_and_exports_after_the_current_step(tmp_path, monkeypatch):
    import os
    import signal

    from codec.data.prepare import main as prepare_main
    from codec.video import VideoWriter

    clips = tmp_path / "clips"
    clips.mkdir()
    with VideoWriter(clips / "ann.mp4", fps=25) as writer:
        for t in range(3):
            writer.write(np.full((SIZE, SIZE, 3), 40 * t + 20, np.uint8))
    cache, run = tmp_path / "cache", tmp_path / "run"
    assert prepare_main([str(clips), str(cache), "--size", str(SIZE), "--centre-crop"]) == 0
    _label_poses(cache)
    original = Trainer.train_step

    def step_then_signal(self):
        logged = original(self)
        if self.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return logged

    monkeypatch.setattr(Trainer, "train_step", step_then_signal)
    before = signal.getsignal(signal.SIGTERM)
    args = ["--config", "test", "--cache", str(cache), "--out", str(run), "--batch-size", "1", "--steps", "1000"]
    assert main(args) == 0
    assert json.loads((run / "fv2v-test.json").read_text())["steps"] == 2
    assert load_checkpoint(run / CHECKPOINT_NAME)["step"] == 2
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_compact_checkpoint_is_a_quarter_the_size_and_resumes_with_a_fresh_optimiser(tmp_path, capsys):
    from codec.train.checkpoint import main as checkpoint_main

    first = _trainer(tmp_path, steps=2)
    first.run()
    full = tmp_path / CHECKPOINT_NAME
    small = tmp_path / "small" / CHECKPOINT_NAME
    assert checkpoint_main(["compact", str(full)]) == 1
    assert "needs --out" in capsys.readouterr().err
    assert checkpoint_main(["compact", str(full), "--out", str(small)]) == 0
    assert small.stat().st_size < 0.3 * full.stat().st_size
    assert checkpoint_main(["compact", str(full), "--out", str(small)]) == 1  # never overwritten without --force
    state = load_checkpoint(small)
    floats = [v for v in state["model"].values() if v.is_floating_point()]
    assert "opt_g" not in state and floats and all(v.dtype == torch.float16 for v in floats)
    again = _trainer(tmp_path / "small", steps=3)
    again.load_state_dict(state)
    assert again.step == 2 and "optimiser starts afresh" in capsys.readouterr().out
    saved = first.ema.model.state_dict()
    for name, value in again.ema.model.state_dict().items():
        if value.is_floating_point():
            assert value.dtype == torch.float32 and torch.allclose(value, saved[name], rtol=1e-3, atol=1e-4)
    assert not again.opt_g.state  # fresh Adam moments
    again.run()
    assert again.step == 3
