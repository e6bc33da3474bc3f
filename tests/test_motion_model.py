"""MotionModel protocol via FaceVid2Vid, training hooks, weights I/O, model ids and errors."""
import hashlib

import pytest
import torch

from bitstream.constants import MotionKind, POSE_BINS
from codec.models.fv2v import FaceVid2Vid, KeyframeState
from codec.models.model_inputs import InputError
from codec.motion_model import (
    ModelError,
    REGISTRY,
    WEIGHTS_DIR,
    MotionModel,
    build_untrained,
    card_path,
    default_weights,
    load_model,
    model_id,
    save_weights,
    untrained_model_id,
)


@pytest.fixture(scope="module")
def model():
    return build_untrained("fv2v", "test", seed=0)


def test_protocol_attributes(model):
    assert isinstance(model, MotionModel)
    assert model.kind == MotionKind.FV2V and model.num_keypoints == 20
    assert (model.analysis_size, model.output_size) == (64, 64)
    assert not model.training


def test_analyze_estimate_render_shapes_at_any_input_size(model):
    with torch.no_grad():
        state = model.analyze_keyframe(torch.rand(2, 3, 100, 100))
        motion = model.estimate_motion(torch.rand(2, 3, 48, 48))
        out = model.render(state, motion)
    assert isinstance(state, KeyframeState)
    assert {k: tuple(v.shape) for k, v in motion.items()} == {
        "rotation": (2, 1, 3), "translation": (2, 1, 3), "expression": (2, 20, 3)}
    assert out.shape == (2, 3, 64, 64) and 0 <= out.min() and out.max() <= 1


def test_render_uses_the_motion(model):
    torch.manual_seed(1)
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        state = model.analyze_keyframe(image)
        turned = {k: v.clone() for k, v in state.motion.items()}
        turned["rotation"][..., 0] += 40.0  # free view: edit yaw only
        same, other = model.render(state, state.motion), model.render(state, turned)
    assert (same - other).abs().max() > 1e-4


def test_bad_inputs_raise_one_line_errors(model):
    with pytest.raises(InputError, match=r"expected an image tensor \(B,3,S,S\)"):
        model.estimate_motion(torch.rand(3, 64, 64))
    with pytest.raises(InputError, match="float image"):
        model.estimate_motion(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with torch.no_grad():
        state = model.analyze_keyframe(torch.rand(1, 3, 64, 64))
    bad = dict(state.motion, expression=torch.zeros(1, 5, 3))
    with pytest.raises(InputError, match="'expression' has shape"):
        model.render(state, bad)
    with pytest.raises(InputError, match="'rotation' is missing"):
        model.render(state, {"translation": state.motion["translation"]})


def test_training_hooks_shapes_and_gradients():
    torch.manual_seed(0)
    net = FaceVid2Vid(build_untrained("fv2v", "test").config).train()
    kp = net.keypoints(torch.rand(2, 3, 64, 64))
    assert kp["pose_logits"].shape == (2, 3, POSE_BINS)
    assert all(kp[k].shape == (2, 3) for k in ("rotation", "translation"))
    assert all(kp[k].shape == (2, 20, 3) for k in ("canonical", "expression", "keypoints"))
    out = net.training_forward(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 80, 80))
    assert out["prediction"].shape == (2, 3, 64, 64) and out["occlusion"].shape == (2, 1, 16, 16)
    assert torch.equal(out["driving"]["canonical"], out["source"]["canonical"])
    assert out["driving"]["keypoints"].shape == (2, 20, 3)
    loss = (out["prediction"] - 0.5).abs().mean() + out["source"]["keypoints"].pow(2).mean()
    loss.backward()
    for name in ("appearance", "canonical", "head_pose", "motion_field", "generator"):
        grads = [p.grad for p in getattr(net, name).parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name


def test_save_load_round_trip_and_model_id(model, tmp_path):
    path = tmp_path / "fv2v-test.pt"
    mid = save_weights(model, path, {"trained_on": "nothing"})
    assert mid == model_id(path) == hashlib.sha256(path.read_bytes()).digest()[:16]
    assert model_id(path) == mid  # stable
    raw = torch.load(path, weights_only=True)
    assert raw["kind"] == "fv2v" and raw["config"]["name"] == "test"
    card = card_path(path).read_text()
    assert mid.hex() in card and "trained_on" in card
    loaded = load_model(path)
    assert isinstance(loaded, FaceVid2Vid) and not loaded.training
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a = model.render(model.analyze_keyframe(image), model.estimate_motion(image))
        b = loaded.render(loaded.analyze_keyframe(image), loaded.estimate_motion(image))
    state = model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())
    # Loaded for inference, 4D weights are channels-last: the same picture up to float summation order.
    assert loaded.head_pose.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert (a - b).abs().max() < 1e-5
    resaved = tmp_path / "again" / path.name  # torch.save writes the file's name into the archive
    assert save_weights(loaded, resaved, {"trained_on": "nothing"}) == mid  # the layout does not reach the file


def test_save_refuses_to_overwrite(model, tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(b"precious")
    with pytest.raises(ModelError, match="already exists"):
        save_weights(model, path, {})
    assert path.read_bytes() == b"precious" and not card_path(path).exists()
    save_weights(model, path, {}, force=True)
    assert load_model(path).config == model.config
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.json", "w.pt"]  # no temporaries left


def test_untrained_models_are_reproducible():
    a, b = build_untrained("fv2v", "test", seed=3), build_untrained("fv2v", "test", seed=3)
    c = build_untrained(MotionKind.FV2V, "test", seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    assert untrained_model_id("fv2v", "test", 3) == untrained_model_id(MotionKind.FV2V, "test", 3)
    assert len(untrained_model_id("fv2v", "test", 3)) == 16
    assert untrained_model_id("fv2v", "test", 3) != untrained_model_id("fv2v", "test", 4)
    assert untrained_model_id("fv2v", "test", 3) != untrained_model_id("fv2v", "small", 3)


def test_loading_errors(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError, match="is not a model checkpoint"):
        load_model(junk)
    torch.save({"state_dict": {}}, tmp_path / "partial.pt")
    with pytest.raises(ModelError, match="needs kind, config and state_dict"):
        load_model(tmp_path / "partial.pt")
    torch.save({"kind": "warp9", "config": {}, "state_dict": {}}, tmp_path / "alien.pt")
    with pytest.raises(ModelError, match="unknown motion kind 'warp9'"):
        load_model(tmp_path / "alien.pt")
    model = build_untrained("fv2v", "test")
    state = model.state_dict()
    state.pop(next(iter(state)))
    torch.save({"kind": "fv2v", "config": model.config.to_dict(), "state_dict": state}, tmp_path / "short.pt")
    with pytest.raises(ModelError, match="weights do not match"):
        load_model(tmp_path / "short.pt")
    with pytest.raises(ModelError, match="unknown fv2v config"):
        build_untrained("fv2v", "enormous")
    with pytest.raises(ModelError, match="unknown motion kind"):
        build_untrained(7, "test")


def test_default_weights_points_into_the_package():
    for kind in ("fv2v", "fomm"):
        path = default_weights(kind)
        assert path is None or (path.parent == WEIGHTS_DIR and path.is_file()
                                and path.stem in {f"{kind}-{c}" for c in REGISTRY[kind].shipped_configs})


def test_default_weights_prefer_the_first_shipped_config(tmp_path, monkeypatch):
    from codec import motion_model

    monkeypatch.setattr(motion_model, "WEIGHTS_DIR", tmp_path)
    assert default_weights("fv2v") is None
    (tmp_path / "fv2v-cpu128.pt").write_bytes(b"x")
    assert default_weights("fv2v") == tmp_path / "fv2v-cpu128.pt"
    (tmp_path / "fv2v-small.pt").write_bytes(b"x")
    assert motion_model.shipped_weights("fv2v") == [tmp_path / "fv2v-small.pt", tmp_path / "fv2v-cpu128.pt"]
    assert default_weights("fv2v") == tmp_path / "fv2v-small.pt" and default_weights("fomm") is None
