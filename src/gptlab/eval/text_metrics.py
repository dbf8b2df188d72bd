"""SQuAD's token F1 for free-form answers (exact match is lm-evaluation-harness's own).

F1 is the SQuAD v1.1 script's: lowercase, drop punctuation and the articles a/an/the, split on
whitespace, then the harmonic mean of token precision and recall; GPT-3 reported it for its
reading-comprehension tasks.
"""

from __future__ import annotations

import re
import string
from collections import Counter

_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lowercase, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def f1(prediction: str, reference: str) -> float:
    """Token-overlap F1 of the normalised answers. Two answers empty after normalisation score 1.0 (SQuAD
    v2's rule for "no answer"); one empty scores 0.0."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)
