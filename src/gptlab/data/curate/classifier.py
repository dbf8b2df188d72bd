"""GPT-3's quality classifier (Appendix A): logistic regression on hashed word counts.

GPT-3 scored Common Crawl documents with a classifier trained to tell curated text (WebText,
Wikipedia, books) from raw crawl, using Spark's tokenizer and HashingTF. Here the features come
from scikit-learn's stateless `HashingVectorizer`, so a saved model is just the vectorizer
settings (JSON) and the weight vector (.npy): loading it executes no code, unlike a pickle.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score

from gptlab import atomic
from gptlab.errors import GptlabError

_FORMAT = "gptlab-quality-classifier"
_VERSION = 1
_CONFIG = "classifier.json"
_WEIGHTS = "weights.npy"


def _vectorizer_settings(n_features: int) -> dict[str, Any]:
    """Lowercase word counts (single letters kept, like Spark's tokenizer), hashed, L2-normalised.

    alternate_sign=False keeps counts non-negative, as HashingTF's are.
    """
    return {
        "n_features": n_features,
        "lowercase": True,
        "token_pattern": r"(?u)\b\w+\b",
        "alternate_sign": False,
        "norm": "l2",
    }


class QualityClassifier:
    """Scores documents by the probability that they resemble the curated corpus."""

    def __init__(self, weights: np.ndarray, bias: float, vectorizer: dict[str, Any]) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)
        self.bias = float(bias)
        self.vectorizer_settings = dict(vectorizer)
        self._vectorizer = HashingVectorizer(**self.vectorizer_settings)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """P(curated) for each text, float64 in [0, 1]."""
        if not len(texts):
            return np.zeros(0, dtype=np.float64)
        logits = self._vectorizer.transform(texts) @ self.weights + self.bias
        return np.exp(-np.logaddexp(0.0, -logits))  # sigmoid without overflow for large |logit|

    def save(self, path: str | os.PathLike) -> None:
        """Write the model as a directory (config JSON + weights .npy), replacing it atomically."""
        config = {
            "format": _FORMAT,
            "version": _VERSION,
            "bias": self.bias,
            "vectorizer": self.vectorizer_settings,
        }
        with atomic.directory(path) as tmp:
            (tmp / _CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
            np.save(tmp / _WEIGHTS, self.weights, allow_pickle=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> QualityClassifier:
        path = Path(path)
        if not (path / _CONFIG).is_file() or not (path / _WEIGHTS).is_file():
            raise GptlabError(f"no quality classifier at {path}: expected {_CONFIG} and {_WEIGHTS} there")
        try:
            config = json.loads((path / _CONFIG).read_text(encoding="utf-8"))
            if config.get("format") != _FORMAT or config.get("version") != _VERSION:
                raise ValueError(f"not a {_FORMAT} version {_VERSION} model")
            weights = np.load(path / _WEIGHTS, allow_pickle=False)
            if weights.ndim != 1 or len(weights) != config["vectorizer"]["n_features"]:
                raise ValueError(f"weights of shape {weights.shape} do not match the vectorizer")
            model = cls(weights, config["bias"], config["vectorizer"])
            model.score([""])  # scikit-learn checks the vectorizer settings only when it is used
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
            raise GptlabError(f"corrupt quality classifier at {path}: {e}") from None
        return model


def train_classifier(
    positives: Sequence[str],
    negatives: Sequence[str],
    seed: int = 0,
    test_fraction: float = 0.2,
    n_features: int = 2**18,
) -> tuple[QualityClassifier, dict[str, float | int]]:
    """Fit curated (positive) against raw (negative) text and measure it on a held-out split.

    Classes are weighted to balance, so a score means the same whatever ratio of curated to raw
    documents happened to be sampled for training. The split is stratified: each class puts
    round(test_fraction * size) documents, at least one, into the test set.
    """
    if not 0 < test_fraction < 1:
        raise GptlabError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for name, docs, offset in (("positive", positives, 0), ("negative", negatives, len(positives))):
        n_test = max(1, round(test_fraction * len(docs)))
        if len(docs) - n_test < 1:
            raise GptlabError(f"need at least 2 {name} documents to train and test the classifier, got {len(docs)}")
        order = offset + rng.permutation(len(docs))
        test_idx.extend(order[:n_test])
        train_idx.extend(order[n_test:])
    texts = [*positives, *negatives]
    labels = np.r_[np.ones(len(positives), dtype=np.int8), np.zeros(len(negatives), dtype=np.int8)]

    settings = _vectorizer_settings(n_features)
    features = HashingVectorizer(**settings).transform(texts)
    fit = LogisticRegression(max_iter=1000, class_weight="balanced", random_state=seed)
    fit.fit(features[train_idx], labels[train_idx])
    model = QualityClassifier(fit.coef_[0], fit.intercept_[0], settings)

    truth = labels[test_idx]
    scores = model.score([texts[i] for i in test_idx])
    predicted = (scores >= 0.5).astype(np.int8)
    metrics = {
        "precision": float(precision_score(truth, predicted, zero_division=0.0)),
        "recall": float(recall_score(truth, predicted)),
        "auc": float(roc_auc_score(truth, scores)),
        "accuracy": float(accuracy_score(truth, predicted)),
        "train_positives": int(labels[train_idx].sum()),
        "train_negatives": int(len(train_idx) - labels[train_idx].sum()),
        "test_positives": int(truth.sum()),
        "test_negatives": int(len(truth) - truth.sum()),
    }
    return model, metrics
