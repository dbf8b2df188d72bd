"""GPT-3 quality curation: hashed-feature logistic-regression classifier and the Pareto keep rule."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gptlab.data.curate.classifier import QualityClassifier, train_classifier
from gptlab.data.curate.quality_filter import keep_probability, pareto_keep, plot_scores
from gptlab.errors import GptlabError

CURATED = "the committee published a detailed report on regional history and economic policy".split()
RAW = "click here buy now free casino offer login cheap deals best price subscribe".split()
SHARED = "and the of to in a is for with on".split()


def _documents(vocabulary: list[str], count: int, rng: np.random.Generator) -> list[str]:
    """Documents of 30 words, half from `vocabulary` and half from words both classes share."""
    return [
        " ".join(rng.choice(vocabulary, 15).tolist() + rng.choice(SHARED, 15).tolist()) for _ in range(count)
    ]


@pytest.fixture(scope="module")
def trained() -> tuple[QualityClassifier, dict]:
    rng = np.random.default_rng(0)
    return train_classifier(_documents(CURATED, 100, rng), _documents(RAW, 300, rng), seed=0)


# Classifier


def test_classifier_separates_curated_from_raw_text(trained):
    model, metrics = trained
    assert metrics["auc"] > 0.99 and metrics["accuracy"] > 0.95
    assert metrics["precision"] > 0.9 and metrics["recall"] > 0.9
    assert (metrics["train_positives"], metrics["test_positives"]) == (80, 20)
    assert (metrics["train_negatives"], metrics["test_negatives"]) == (240, 60)
    scores = model.score(["a detailed report on regional history", "click here for a free casino offer", ""])
    assert scores.dtype == np.float64 and np.all((scores >= 0) & (scores <= 1))
    assert scores[0] > 0.5 > scores[1]
    assert model.score([]).shape == (0,)


def test_training_is_reproducible_for_a_seed():
    rng = np.random.default_rng(1)
    positives, negatives = _documents(CURATED, 20, rng), _documents(RAW, 20, rng)
    (a, metrics_a), (b, metrics_b) = (train_classifier(positives, negatives, seed=3, n_features=2**12) for _ in range(2))
    assert metrics_a == metrics_b and np.array_equal(a.weights, b.weights)


def test_saved_classifier_scores_identically_after_loading(trained, tmp_path):
    model, _ = trained
    texts = ["regional policy report", "cheap deals subscribe now", "Mixed: history, casino & policy!"]
    model.save(tmp_path / "clf")
    model.save(tmp_path / "clf")  # replacing an existing model works too
    loaded = QualityClassifier.load(tmp_path / "clf")
    assert np.array_equal(loaded.score(texts), model.score(texts))
    assert loaded.vectorizer_settings == model.vectorizer_settings


def test_training_needs_two_documents_of_each_class():
    with pytest.raises(GptlabError, match="at least 2 positive documents.*got 0"):
        train_classifier([], ["raw text", "more raw text"])
    with pytest.raises(GptlabError, match="at least 2 negative documents.*got 1"):
        train_classifier(["good text", "more good text"], ["raw text"])
    with pytest.raises(GptlabError, match="test_fraction"):
        train_classifier(["a", "b"], ["c", "d"], test_fraction=1.0)


def test_loading_a_missing_or_corrupt_classifier_is_a_one_line_error(trained, tmp_path):
    with pytest.raises(GptlabError, match="no quality classifier at"):
        QualityClassifier.load(tmp_path / "missing")
    model, _ = trained
    model.save(tmp_path / "clf")
    config_path = tmp_path / "clf" / "classifier.json"
    config = json.loads(config_path.read_text())

    config_path.write_text("{not json")
    with pytest.raises(GptlabError, match="corrupt quality classifier") as e:
        QualityClassifier.load(tmp_path / "clf")
    assert "\n" not in str(e.value)

    config_path.write_text(json.dumps({**config, "vectorizer": {**config["vectorizer"], "n_features": 7}}))
    with pytest.raises(GptlabError, match="do not match the vectorizer"):
        QualityClassifier.load(tmp_path / "clf")

    config_path.write_text(json.dumps({**config, "vectorizer": {**config["vectorizer"], "norm": "l7"}}))
    with pytest.raises(GptlabError, match="corrupt quality classifier"):
        QualityClassifier.load(tmp_path / "clf")

    config_path.write_text(json.dumps(config))
    (tmp_path / "clf" / "weights.npy").write_bytes(b"garbage")
    with pytest.raises(GptlabError, match="corrupt quality classifier"):
        QualityClassifier.load(tmp_path / "clf")


# Pareto keep rule


def test_keep_probability_is_the_pareto_survival_function():
    np.testing.assert_allclose(keep_probability([0.0, 0.5, 1.0]), [2.0**-9, 1.5**-9, 1.0])
    np.testing.assert_allclose(keep_probability([0.5], alpha=2.0), [1.5**-2])
    with pytest.raises(GptlabError, match="probabilities in"):
        keep_probability([1.2])
    with pytest.raises(GptlabError, match="probabilities in"):
        keep_probability([np.nan])
    with pytest.raises(GptlabError, match="alpha must be positive"):
        keep_probability([0.5], alpha=0.0)


def test_keep_rate_per_score_bucket_matches_the_pareto_survival_function():
    count = 200_000
    scores = np.random.default_rng(0).uniform(0.0, 1.0, count)
    kept = pareto_keep(scores, [f"doc-{i}" for i in range(count)], seed=0)
    expected = keep_probability(scores)
    bucket = np.minimum((scores * 10).astype(int), 9)
    for b in range(10):
        members = bucket == b
        # the kept count is a sum of independent Bernoulli(p_i): its variance is sum p_i (1 - p_i)
        standard_error = np.sqrt(np.sum(expected[members] * (1 - expected[members]))) / members.sum()
        assert abs(kept[members].mean() - expected[members].mean()) < 4 * standard_error, b


def test_decisions_depend_only_on_seed_and_document_id():
    count = 5000
    scores = np.random.default_rng(1).uniform(0.0, 1.0, count)
    ids = [f"shard-{i % 7}/doc-{i}" for i in range(count)]
    kept = pareto_keep(scores, ids, seed=42)
    assert np.array_equal(pareto_keep(scores, ids, seed=42), kept)

    order = np.random.default_rng(2).permutation(count)
    assert np.array_equal(pareto_keep(scores[order], [ids[i] for i in order], seed=42), kept[order])

    batches = [pareto_keep(scores[i : i + 333], ids[i : i + 333], seed=42) for i in range(0, count, 333)]
    assert np.array_equal(np.concatenate(batches), kept)

    other = pareto_keep(scores, ids, seed=43)
    assert not np.array_equal(other, kept)
    assert abs(other.mean() - kept.mean()) < 0.05  # a different sample of the same rule


def test_pareto_keep_rejects_mismatched_inputs():
    with pytest.raises(GptlabError, match="2 scores but 1 ids"):
        pareto_keep([0.1, 0.2], ["a"])
    with pytest.raises(GptlabError, match="seed must be"):
        pareto_keep([0.1], ["a"], seed=-1)
    assert pareto_keep([], []).shape == (0,)


def test_plot_scores_writes_a_png(tmp_path):
    scores = np.random.default_rng(0).uniform(0.0, 1.0, 1000)
    kept = pareto_keep(scores, [str(i) for i in range(1000)])
    plot_scores(scores, kept, tmp_path / "plots" / "scores.png")
    assert (tmp_path / "plots" / "scores.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert [p.name for p in (tmp_path / "plots").iterdir()] == ["scores.png"]  # no temporary left over
    with pytest.raises(GptlabError, match="keep mask"):
        plot_scores(scores, kept[:10], tmp_path / "bad.png")
