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


@pytest.fixture(scope="session")
def _pseudonym_key_dir(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("pseudonym_key")


@pytest.fixture(autouse=True)
def pseudonym_key_outside_home(_pseudonym_key_dir, monkeypatch: pytest.MonkeyPatch):
    """Point the default pseudonym key (`breastssl ingest` creates it on first use) at a test folder.

    Without this, every test that ingests a DICOM folder would create ~/.config/breastssl/pseudonym.key.
    """
    monkeypatch.setenv("BREASTSSL_PSEUDONYM_KEY", str(_pseudonym_key_dir / "pseudonym.key"))
