"""Shared fixtures: the optional ../shared folder (real clips, calibration images)."""
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
