"""`gptlab data ...` end to end: real CLI processes over real files, local and Ray executors,
a SIGKILL mid-stage then a rerun, malformed input, and token shards that `gptlab train` reads."""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import assert_one_line_error, gptlab_cli

from gptlab.data import build_corpus
from gptlab.data.shards import is_shards_dir


def data_cli(*args, **kwargs):
    return gptlab_cli("data", *args, **kwargs)


def records(output: Path, sub: str = "") -> list[dict]:
    """Every record of a stage's output (or its removed/ listing), shard by shard."""
    rows = []
    for path in sorted((output / sub).glob("*.jsonl.gz")):
        rows += [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode().splitlines()]
    return rows


def paragraphs(text: str) -> list[str]:
    return [p for p in text.split("\n\n") if len(p) > 300]


def perturb(text: str, rng: random.Random) -> str:
    """A near-duplicate: one word replaced (Jaccard ~0.9 on word 5-grams at these lengths)."""
    words = text.split(" ")
    words[rng.randrange(len(words))] = "zzz"
    return " ".join(words)


def distinct_pieces(text: str, count: int, size: int = 1000) -> list[str]:
    """The first `count` pieces of `text` that share no more than a tenth of their word 5-grams (exact Jaccard)
    with an earlier one: some docstrings of the standard library are near-copies of each other."""
    kept: list[tuple[str, set[str]]] = []
    holders: dict[str, list[int]] = {}  # 5-gram -> the kept pieces holding it
    for start in range(0, len(text) - size, size):
        piece = text[start : start + size]
        words = piece.split()
        grams = {" ".join(words[i : i + 5]) for i in range(len(words) - 4)}
        shared = Counter(k for gram in grams for k in holders.get(gram, ()))
        if all(n <= 0.1 * (len(grams) + len(kept[k][1]) - n) for k, n in shared.items()):
            for gram in grams:
                holders.setdefault(gram, []).append(len(kept))
            kept.append((piece, grams))
            if len(kept) == count:
                return [piece for piece, _ in kept]
    raise AssertionError(f"the corpus has only {len(kept)} distinct pieces")


@pytest.fixture(scope="module")
def raw(tmp_path_factory, corpus_text) -> tuple[Path, set[str]]:
    """Six JSONL shards of 1,000-character pieces of the prose corpus with planted near-duplicates and bad
    lines; returns the folder and the ids of the planted copies."""
    folder = tmp_path_factory.mktemp("raw")
    rng = random.Random(0)
    docs = distinct_pieces(corpus_text, 600)
    copies = set()
    for shard in range(6):
        lines = []
        for i, text in enumerate(docs[shard * 100 : (shard + 1) * 100]):
            lines.append(json.dumps({"id": f"d{shard}-{i}", "text": text}).encode())
            if i % 7 == 0:
                copies.add(f"d{shard}-{i}-copy")
                lines.append(json.dumps({"id": f"d{shard}-{i}-copy", "text": perturb(text, rng)}).encode())
        lines += [b"{not json", json.dumps({"id": "no-text"}).encode(), b'{"id": "latin1", "text": "caf\xe9"}']
        (folder / f"part-{shard}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return folder, copies


def test_dedup_removes_planted_copies_and_reports_malformed_lines(tmp_path, raw):
    folder, copies = raw
    out = tmp_path / "dedup"
    result = data_cli("dedup", "--input", folder, "--output", out, "--workers", 2)
    assert result.returncode == 0, result.stderr[-2000:]
    removed = records(out, "removed")
    assert {r["id"] for r in removed} == copies  # exactly the planted copies, each for its original
    assert all(r["duplicate_cluster"] == r["id"].removesuffix("-copy") for r in removed)
    kept = records(out)
    assert len(kept) == 600 and not {r["id"] for r in kept} & copies
    stats = json.loads((out / "stats.json").read_text())
    assert stats["documents_in"] == 600 + len(copies) and stats["documents_out"] == 600
    assert stats["malformed"] == 18  # 3 per shard: bad JSON, no text, invalid UTF-8
    reasons = [json.loads(line)["reason"] for f in sorted((out / "malformed").glob("*.jsonl"))
               for line in f.read_text().splitlines()]
    assert sum("UTF-8" in r for r in reasons) == 6 and sum("JSON" in r for r in reasons) == 6
    assert "malformed" in result.stdout and "600 out" in result.stdout


def test_dedup_against_a_reference_set_and_other_formats(tmp_path, corpus_text):
    docs = paragraphs(corpus_text)[:40]
    inputs = tmp_path / "in"
    inputs.mkdir()
    pq.write_table(pa.table({"id": [f"p{i}" for i in range(20)], "text": docs[:20]}), inputs / "a.parquet")
    with gzip.open(inputs / "b.jsonl.gz", "wt") as f:
        f.writelines(json.dumps({"id": f"g{i}", "text": t}) + "\n" for i, t in enumerate(docs[20:]))
    reference = tmp_path / "webtext.jsonl"
    reference.write_text("".join(json.dumps({"id": f"w{i}", "text": docs[i]}) + "\n" for i in (3, 25)))
    out = tmp_path / "out"
    result = data_cli("dedup", "--input", inputs, "--output", out, "--against", reference, "--format", "parquet")
    assert result.returncode == 0, result.stderr[-2000:]
    removed = pq.read_table(out / "removed" / "00000.parquet").to_pylist() + pq.read_table(
        out / "removed" / "00001.parquet").to_pylist()
    assert sorted((r["id"], r["duplicate_cluster"]) for r in removed) == [("g5", "reference:w25"), ("p3", "reference:w3")]
    kept = pq.read_table(out / "00000.parquet").to_pylist()
    assert len(kept) == 19 and kept[0] == {"id": "p0", "text": docs[0]}


def snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and ".work" not in p.parts}


def test_sigkill_mid_stage_then_rerun_equals_an_uninterrupted_run(tmp_path, raw):
    folder, _ = raw
    many = tmp_path / "many"  # 24 small shards, so a kill lands between and inside tasks
    many.mkdir()
    lines = [line for f in sorted(folder.glob("*.jsonl")) for line in f.read_bytes().splitlines()]
    for k in range(24):
        (many / f"{k:02d}.jsonl").write_bytes(b"\n".join(lines[k::24]) + b"\n")
    args = ["dedup", "--input", many, "--workers", 1, "--partitions", 3]
    reference = tmp_path / "reference"
    assert data_cli(*args, "--output", reference).returncode == 0

    out = tmp_path / "killed"
    for phase in ("sign", "write"):  # kill once inside each parallel phase
        process = data_cli(*args, "--output", out, wait=False, capture=False, new_session=True)
        completions = out / ".work" / phase / "completions"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(completions.glob("*"))) < 3 and process.poll() is None:
            time.sleep(0.01)
        assert process.poll() is None, "the stage finished before it could be killed"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        assert len(list(completions.glob("*"))) < 24
    result = data_cli(*args, "--output", out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert snapshot(out) == snapshot(reference)


def written(root: Path) -> set[str]:
    """The files under `root` now (os.walk passes over what vanishes while it looks)."""
    return {os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names}


def test_a_pipeline_killed_at_random_moments_still_ends_as_an_uninterrupted_one(tmp_path, raw, small_tokenizer):
    """SIGKILL the whole `data run` process group at random points of its progress, rerun until it finishes."""
    folder, _ = raw
    small_tokenizer.save(tmp_path / "tokenizer")
    benchmark = json.loads((folder / "part-1.jsonl").read_bytes().splitlines()[0])["text"][100:900]
    (tmp_path / "bench.jsonl").write_text(json.dumps({"text": benchmark}) + "\n")

    def pipeline(root: Path) -> Path:
        path = root / "pipeline.yaml"
        root.mkdir()
        path.write_text(f"""
workers: 2
stages:
  - dedup: {{input: [{folder}], output: {root / 'dedup'}}}
  - decontaminate: {{input: [{root / 'dedup'}], output: {root / 'clean'}, benchmark: [{tmp_path / 'bench.jsonl'}]}}
  - mix: {{input: {{a: {root / 'clean'}, b: {folder / 'part-0.jsonl'}}}, weight: {{a: 3, b: 1}}, tokenizer: {tmp_path / 'tokenizer'}, output: {root / 'shards'}, shard_tokens: 50000}}
""")
        return path

    reference = tmp_path / "reference"
    assert data_cli("run", pipeline(reference)).returncode == 0
    total = len(written(reference))
    killed = tmp_path / "killed"
    spec = pipeline(killed)
    rng = random.Random(0)
    kills = 0
    for _ in range(30):  # each attempt gets further, since finished work is kept
        before = written(killed)
        # killed once it has written this many files (a quarter of the run's at most), however fast the machine
        wanted = rng.randint(1, total // 4)
        process = data_cli("run", spec, wait=False, capture=False, new_session=True)
        while process.poll() is None and len(written(killed) - before) < wanted:
            time.sleep(0.01)
        if process.poll() is not None:
            break
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        kills += 1
    assert kills >= 2
    result = data_cli("run", spec)
    assert result.returncode == 0, result.stderr[-2000:]
    for stage in ("dedup", "clean", "shards"):
        assert snapshot(killed / stage) == snapshot(reference / stage), stage


def test_ray_executor_gives_the_local_output(tmp_path, raw, monkeypatch):
    folder, _ = raw
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert data_cli("dedup", "--input", folder, "--output", local, "--workers", 2).returncode == 0
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # a fresh local cluster
    result = data_cli("dedup", "--input", folder, "--output", on_ray, "--executor", "ray", "--workers", 2)
    assert result.returncode == 0, result.stderr[-3000:]
    assert snapshot(on_ray) == snapshot(local)


def test_quality_classifier_then_pareto_filter(tmp_path, corpus_text):
    docs = paragraphs(corpus_text)
    rng = random.Random(1)
    vocabulary = "click here buy now free offer cheap deal win prize online casino loan".split()
    spam = [" ".join(rng.choice(vocabulary) for _ in range(80)) for _ in range(200)]
    (tmp_path / "curated.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs[:200]))
    (tmp_path / "web.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in spam))
    model = tmp_path / "classifier"
    trained = data_cli("classifier", "train", "--positive", tmp_path / "curated.jsonl", "--negative",
                       tmp_path / "web.jsonl", "--output", model)
    assert trained.returncode == 0, trained.stderr
    assert "auc" in trained.stdout and json.loads((model / "metrics.json").read_text())["auc"] > 0.95

    mixed = tmp_path / "crawl.jsonl"
    mixed.write_text("".join(json.dumps({"id": f"c{i}", "text": t}) + "\n"
                             for i, t in enumerate(docs[200:300] + spam[:100])))
    out = tmp_path / "filtered"
    result = data_cli("filter", "--input", mixed, "--output", out, "--model", model, "--write-removed")
    assert result.returncode == 0, result.stderr[-2000:]
    kept, removed = records(out), records(out, "removed")
    assert len(kept) + len(removed) == 200 and all("text" in r for r in removed)
    kept_ids = {r["id"] for r in kept}
    # GPT-3's rule keeps a score-s document with probability (2 - s)^-9: ~0.6-0.9 for curated-like
    # text, 2^-9 for spam
    assert sum(f"c{i}" in kept_ids for i in range(100)) > 50
    assert sum(f"c{i}" in kept_ids for i in range(100, 200)) < 5
    assert all(0 <= r["quality_score"] <= 1 for r in kept + removed)
    assert (out / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = tmp_path / "again"
    assert data_cli("filter", "--input", mixed, "--output", again, "--model", model).returncode == 0
    assert [r["id"] for r in records(again)] == [r["id"] for r in kept]  # seeded: the same decisions


def test_decontaminate_cuts_benchmark_text_out(tmp_path, corpus_text):
    docs = paragraphs(corpus_text)[:30]
    question = "which river did the ancient traders follow when they carried amber from the northern coast"
    (tmp_path / "bench.jsonl").write_text(json.dumps({"text": question.capitalize() + "?"}) + "\n")
    contaminated = docs[0] + "\n\n" + question.upper() + "!\n\n" + docs[1]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"x{i}", "text": t}) + "\n"
                              for i, t in enumerate([contaminated, *docs[2:]])))
    out = tmp_path / "clean"
    result = data_cli("decontaminate", "--input", corpus, "--output", out, "--benchmark", tmp_path / "bench.jsonl")
    assert result.returncode == 0, result.stderr[-2000:]
    kept = records(out)
    pieces = [r for r in kept if r["id"].startswith("x0#")]
    assert pieces and all(r["decontaminated_from"] == "x0" for r in pieces)
    assert all("amber" not in r["text"].lower() for r in pieces)
    assert [r["id"] for r in kept if not r["id"].startswith("x0")] == [f"x{i}" for i in range(1, 29)]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["decontaminate_split"] == 1 and stats["collisions"] >= 1


def test_mix_weights_sources_and_train_reads_the_shards(tmp_path, corpus_text, small_tokenizer):
    tokenizer = tmp_path / "tokenizer"
    small_tokenizer.save(tokenizer)
    docs = paragraphs(corpus_text)
    (tmp_path / "big.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs[:300]))
    (tmp_path / "small.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs[300:330]))
    out = tmp_path / "shards"
    result = data_cli("mix", "--input", f"big={tmp_path / 'big.jsonl'}", f"small={tmp_path / 'small.jsonl'}",
                      "--weight", "big=60", "small=40", "--tokenizer", tokenizer, "--output", out,
                      "--tokens", 60_000, "--shard-tokens", 20_000)
    assert result.returncode == 0, result.stderr[-2000:]
    stats = json.loads((out / "stats.json").read_text())["sources"]
    assert stats["big"]["weight"] == 0.6 and stats["small"]["weight"] == 0.4
    assert stats["small"]["epochs"] > 2 > 1 > stats["big"]["epochs"] > 0  # weights, not sizes
    assert stats["big"]["tokens_taken"] == pytest.approx(36_000, rel=0.05)
    assert is_shards_dir(out)
    corpus = build_corpus([out], small_tokenizer, 0.1, 0, progress=False)
    assert len(corpus.train) + len(corpus.val) == stats["big"]["tokens_taken"] + stats["small"]["tokens_taken"]
    train = gptlab_cli("train", "--data", out, "--tokenizer", tokenizer, "--out", tmp_path / "run", "--model", "tiny",
                       "--max-steps", 2, "--seq-len", 32, "--batch-size", 4, "--no-progress", "--sample-tokens", 0)
    assert train.returncode == 0, train.stderr[-2000:]


def test_pipeline_yaml_runs_the_stages_in_order(tmp_path, raw, small_tokenizer):
    folder, copies = raw
    small_tokenizer.save(tmp_path / "tokenizer")
    (tmp_path / "bench.txt").write_text("nothing in this benchmark occurs in the corpus at all, not one thirteen gram")
    (tmp_path / "spam.jsonl").write_text("".join(
        json.dumps({"text": f"buy cheap pills now {i} click here free casino win " * 20}) + "\n" for i in range(30)))
    (tmp_path / "pipeline.yaml").write_text(f"""
executor: local
workers: 2
stages:
  - classifier: {{positive: [{folder}], negative: [{tmp_path / 'spam.jsonl'}], output: {tmp_path / 'clf'}}}
  - filter: {{input: [{folder}], output: {tmp_path / 'filtered'}, model: {tmp_path / 'clf'}}}
  - dedup: {{input: [{folder}], output: {tmp_path / 'dedup'}}}
  - decontaminate: {{input: [{tmp_path / 'dedup'}], output: {tmp_path / 'clean'}, benchmark: [{tmp_path / 'bench.txt'}]}}
  - tokenize: {{input: [{tmp_path / 'clean'}], output: {tmp_path / 'shards'}, tokenizer: {tmp_path / 'tokenizer'}}}
""")
    result = data_cli("run", tmp_path / "pipeline.yaml")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "[5/5] tokenize" in result.stdout and (tmp_path / "filtered" / "scores.png").is_file()
    assert len(records(tmp_path / "clean")) == 600
    shards = np.concatenate([np.fromfile(p, np.uint16) for p in sorted((tmp_path / "shards").glob("*.bin"))])
    assert int((shards == small_tokenizer.eot_id).sum()) == 600


@pytest.mark.parametrize("args, message", [
    (["dedup", "--input", "/nonexistent", "--output", "x"], "input file not found"),
    (["dedup", "--input", "IN", "--output", "OUT", "--bands", "0"], "bands"),
    (["dedup", "--input", "IN", "--output", "OUT", "--partitions", "0"], "partitions"),
    (["mix", "--input", "IN", "--weight", "a=1", "--tokenizer", "T", "--output", "OUT"], "NAME=VALUE"),
    (["run", "PIPE"], "stages"),
    (["run", "BADSTAGE"], "stage 1 (dedup): unknown option bogus"),
])
def test_bad_input_is_one_line(tmp_path, raw, args, message):
    folder, _ = raw
    (tmp_path / "pipe.yaml").write_text("stages: nope\n")
    (tmp_path / "stage.yaml").write_text(f"stages: [{{dedup: {{input: [{folder}], output: out, bogus: 1}}}}]\n")
    places = {"IN": str(folder), "OUT": str(tmp_path / "out"), "PIPE": str(tmp_path / "pipe.yaml"),
              "BADSTAGE": str(tmp_path / "stage.yaml")}
    args = [places.get(a, a) for a in args]
    assert_one_line_error(data_cli(*args), message)


def test_changed_settings_do_not_mix_into_an_existing_output(tmp_path, raw):
    folder, _ = raw
    out = tmp_path / "out"
    assert data_cli("dedup", "--input", folder, "--output", out).returncode == 0
    assert_one_line_error(data_cli("dedup", "--input", folder, "--output", out, "--shingle-size", 3), "other settings")


def test_sharded_clustering_equals_lsh_clusters_and_match_reference_in_memory(tmp_path):
    """Buckets split over input shards and key partitions, linked per partition and joined by one
    union-find, remove exactly what lsh_clusters and match_reference find on all signatures at once:
    chains of near-duplicates spread over the shards (clusters whose first document lies in another
    shard), reference copies matching several reference documents (the smallest wins), empty texts."""
    from gptlab.data.curate.executor import Executor
    from gptlab.data.curate.minhash import MinHashParams, lsh_clusters, match_reference, signatures
    from gptlab.data.curate.stages import dedup
    from gptlab.errors import GptlabError

    rng = np.random.default_rng(0)
    vocabulary = np.array([f"w{i}" for i in range(5000)])

    def edit(words: np.ndarray, share: float) -> np.ndarray:
        words = words.copy()
        changed = rng.random(len(words)) < share
        words[changed] = vocabulary[rng.integers(len(vocabulary), size=int(changed.sum()))]
        return words

    texts = []
    for _ in range(150):  # chains: each link edits 3% of the previous one, so its ends may differ a lot
        words = vocabulary[rng.integers(len(vocabulary), size=150)]
        for _ in range(rng.integers(2, 8)):
            texts.append(" ".join(words))
            words = edit(words, 0.03)
    texts += [" ".join(vocabulary[rng.integers(len(vocabulary), size=150)]) for _ in range(300)]
    texts += ["", "?!", "..."] * 4  # no words: they match nothing, not even each other
    texts = [texts[i] for i in rng.permutation(len(texts))]
    ids = [f"doc{i}" for i in range(len(texts))]
    reference = [" ".join(edit(np.array(texts[i].split()), 0.02)) for i in rng.choice(len(texts), 60) if texts[i]]
    reference += reference[:20] + [" ".join(vocabulary[rng.integers(len(vocabulary), size=150)]) for _ in range(50)]
    reference_ids = [f"ref{i}" for i in range(len(reference))]

    def write(folder: Path, names: list[str], docs: list[str], cuts: list[int]) -> list[Path]:
        folder.mkdir()
        paths = []
        for k, (lo, hi) in enumerate(zip([0, *cuts], [*cuts, len(docs)])):
            lines = [json.dumps({"id": n, "text": t}) + "\n" for n, t in zip(names[lo:hi], docs[lo:hi])]
            paths.append(folder / f"{k:02d}.jsonl")
            paths[-1].write_text("".join(lines))
        return paths

    inputs = write(tmp_path / "in", ids, texts, [100, 101, 101, 400, 650])  # one empty shard, one of one document
    against = write(tmp_path / "against", reference_ids, reference, [45])

    params = MinHashParams()
    sigs = signatures(texts, params)
    clusters = lsh_clusters(sigs, params)
    match = match_reference(sigs, signatures(reference, params), params)
    linked = [(i, c) for i, c in enumerate(clusters) if c != i]
    expected = {ids[i]: ["duplicate: near-duplicate within the input", ids[c]] for i, c in linked}
    expected |= {ids[i]: ["duplicate: near-duplicate of the reference set", f"reference:{reference_ids[m]}"]
                 for i, m in enumerate(match) if m >= 0}  # a reference match outranks a cluster
    shard_of = {json.loads(line)["id"]: k for k, path in enumerate(inputs) for line in path.read_text().splitlines()}
    bands = sigs.reshape(len(sigs), params.bands, params.rows)
    assert sum(not (bands[i] == bands[c]).all(axis=1).any() for i, c in linked) > 20  # linked only through others
    assert sum(shard_of[ids[i]] != shard_of[ids[c]] for i, c in linked) > 50
    assert (match >= 0).sum() > 40 and (np.unique(clusters, return_counts=True)[1] >= 4).sum() > 20

    outputs = {}
    for partitions in (1, 7):
        out = tmp_path / f"out{partitions}"
        dedup([str(p) for p in inputs], str(out), Executor(workers=2), params, [str(p) for p in against],
              partitions=partitions)
        removed = records(out, "removed")
        assert {r["id"]: [r["removed"], r["duplicate_cluster"]] for r in removed} == expected
        outputs[partitions] = snapshot(out)
    assert outputs[1] == outputs[7]
    with pytest.raises(GptlabError, match="partitions"):
        dedup([str(p) for p in inputs], str(tmp_path / "bad"), Executor(), params, partitions=0)
