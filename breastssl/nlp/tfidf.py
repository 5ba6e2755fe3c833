"""The fast baseline labeller: TF-IDF of word 1–3-grams + logistic regression."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class TfidfLabeller:
    """``fit(descriptions, impressions, y)`` then ``predict_proba(descriptions, impressions) -> (N,)``.

    The two sections are joined with a ``[SEP]`` token, as the transformer sees them. Nothing is
    pickled: a resumed run reuses the fold predictions stored as arrays (``kfold.py``).
    """

    kind = "tfidf"

    def __init__(self, ngram_max: int = 3, c: float = 10.0, seed: int = 0) -> None:
        self.ngram_max = ngram_max
        self.c = c
        self.seed = seed
        self.pipeline = None

    @staticmethod
    def _join(desc: Sequence[str], imp: Sequence[str]) -> list[str]:
        return [f"{d} [SEP] {i}" for d, i in zip(desc, imp, strict=True)]

    def fit(self, desc: Sequence[str], imp: Sequence[str], y: np.ndarray) -> TfidfLabeller:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        self.pipeline = make_pipeline(
            TfidfVectorizer(ngram_range=(1, self.ngram_max), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b"),
            LogisticRegression(C=self.c, max_iter=2000, random_state=self.seed),
        )
        self.pipeline.fit(self._join(desc, imp), np.asarray(y, dtype=int))
        return self

    def predict_proba(self, desc: Sequence[str], imp: Sequence[str], batch_size: int = 4096) -> np.ndarray:
        if self.pipeline is None:
            raise RuntimeError("TfidfLabeller.predict_proba before fit")
        texts = self._join(desc, imp)
        out = [self.pipeline.predict_proba(texts[s : s + batch_size])[:, 1] for s in range(0, len(texts), batch_size)]
        return np.concatenate(out) if out else np.zeros(0)
