"""Shared fixtures of these tests."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(autouse=True)
def quiet_torch_globals():
    """One intra-op thread per test, and torch's global determinism settings restored afterwards.

    These models are tiny: on a busy shared machine, two OpenMP threads spin-waiting on each other
    made a step 25× slower than one thread. ``fit(deterministic=True)`` flips process-wide flags
    that must not leak into other tests.
    """
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn
    if cublas is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = cublas
