"""Fixtures for the training tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    # The networks under test are tiny: a thread pool only adds synchronisation, and on a
    # loaded machine spinning worker threads make each step up to 50x slower.
    import torch

    torch.set_num_threads(1)
