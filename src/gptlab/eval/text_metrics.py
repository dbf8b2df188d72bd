"""Scores for free-form answers: exact match as lm-evaluation-harness computes it, and SQuAD's token F1.

Exact match compares the strings themselves unless asked to ignore case, punctuation, digits or some
patterns (the harness's `metric_list` options), so an answer of "28" does not match "-28" and a task's
numbers equal the harness's. F1 is the SQuAD v1.1 script's: lowercase, drop punctuation and the articles
a/an/the, split on whitespace, then the harmonic mean of token precision and recall; GPT-3 reported it
for its reading-comprehension tasks.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable

_PUNCTUATION = str.maketrans("", "", string.punctuation)
_DIGITS = str.maketrans("", "", string.digits)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def exact_match(
    prediction: str,
    reference: str,
    *,
    ignore_case: bool = False,
    ignore_punctuation: bool = False,
    ignore_numbers: bool = False,
    regexes_to_ignore: Iterable[str] = (),
) -> float:
    """1.0 when the strings are equal after the chosen options (applied in the harness's order), else 0.0."""
    for pattern in regexes_to_ignore:
        prediction, reference = re.sub(pattern, "", prediction), re.sub(pattern, "", reference)
    if ignore_case:
        prediction, reference = prediction.lower(), reference.lower()
    if ignore_punctuation:
        prediction, reference = prediction.translate(_PUNCTUATION), reference.translate(_PUNCTUATION)
    if ignore_numbers:
        prediction, reference = prediction.translate(_DIGITS), reference.translate(_DIGITS)
    return float(prediction == reference)


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
