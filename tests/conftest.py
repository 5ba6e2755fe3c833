"""Fixtures shared by the whole suite."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run each test on one intra-op thread, restoring the setting afterwards.

    These models are tiny: on a busy shared machine, two OpenMP threads spin-waiting on each other
    made a step 25× slower than one thread.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
