"""Shared fixtures: the optional ../shared folder (real clips, calibration images), the shipped fv2v weights."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture
def shared_dir() -> Path:
    """The ../shared folder beside the checkout; tests that need it skip cleanly when it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared is absent (real clips and calibration images live there)")
    return SHARED


@pytest.fixture
def one_thread():
    """One intra-op thread: on the shared 2-core machine two OpenMP threads spin against other jobs
    and a tiny training step takes 10-20 s instead of 0.15 s."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def trained():
    """(model, model id) of the shipped fv2v weights."""
    import torch

    from codec.motion_model import default_weights, load_model, model_id

    path = default_weights("fv2v")
    assert path is not None, "the fv2v weights ship with the repo"
    return load_model(path, torch.device("cpu")), model_id(path)


@pytest.fixture(scope="session")
def stills() -> dict:
    """Three different 64² pictures: the astronaut, its mirror image and its negative."""
    import numpy as np

    from codec.demo import DemoClipConfig, astronaut_frames

    a = next(iter(astronaut_frames(DemoClipConfig(seconds=0.04, size=64))))
    return {"A": a, "B": np.ascontiguousarray(a[:, ::-1]), "C": 255 - a}
