"""Toy data, models and strategies shared by the engine tests (a helper module, not a test file)."""

from __future__ import annotations

import math
import os
import socket

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset


class SquaresDataset(Dataset):
    """(1, size, size) noise images; positives carry a bright 4×4 square somewhere. Linearly separable-ish."""

    def __init__(self, n: int = 64, size: int = 16, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.images = 0.3 * torch.randn(n, 1, size, size, generator=g)
        self.labels = (torch.arange(n) % 2).float()
        for i in range(1, n, 2):
            y, x = torch.randint(0, size - 4, (2,), generator=g).tolist()
            self.images[i, :, y : y + 4, x : x + 4] += 1.5

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"image": self.images[i], "label": self.labels[i], "index": torch.tensor(i)}


class LinearModel(nn.Module):
    """Logistic regression with the model dict contract; no batch norm, so ranks can match one process."""

    def __init__(self, size: int = 16) -> None:
        super().__init__()
        self.fc = nn.Linear(size * size, 1)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"logits": self.fc(x.flatten(1))[:, 0]}


class SupervisedBCE:
    """The simplest strategy: BCE on the labels; ``fail_at`` raises (a simulated kill) at that step."""

    def __init__(self, model: nn.Module, fail_at: int | None = None, nan_at: int | None = None) -> None:
        self.model = model
        self.fail_at = fail_at
        self.nan_at = nan_at

    def loss(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        if step == self.fail_at:
            raise KeyboardInterrupt(f"simulated kill at step {step}")
        logits = self.model(batch["image"])["logits"].float()
        loss = F.binary_cross_entropy_with_logits(logits, batch["label"])
        if step == self.nan_at:
            return {"loss": loss * math.nan, "loss_sup": loss.detach(), "loss_kd": torch.tensor(math.nan)}
        return {"loss": loss, "loss_sup": loss.detach()}


def free_port() -> int:
    """A free localhost TCP port for a test's process group."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(rank: int, world: int, port: int) -> None:
    """The environment torchrun would give rank ``rank`` of ``world`` on this machine."""
    env = {"RANK": rank, "WORLD_SIZE": world, "LOCAL_RANK": rank, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
    os.environ.update({k: str(v) for k, v in env.items()})
