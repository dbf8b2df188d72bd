"""Data past one process's memory: token shards read lazily across shard edges, mix and tokenize
streamed. Today's in-memory ways (one concatenated array, every tokenised document held) are the
references the results must equal exactly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from gptlab.cli.main import main
from gptlab.data import batch_from_starts, build_corpus, eval_starts, read_shards, write_shards
from gptlab.errors import GptlabError
from gptlab.tokenizer import byte_tokenizer, load_tokenizer

RNG = np.random.default_rng(0)


def shard_files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file() and p.name != "stats.json"}


@pytest.mark.parametrize("vocab_size, shard_tokens", [(257, 700), (257, 5), (70_000, 1999), (257, 10**6)])
def test_windows_across_shards_equal_those_of_the_joined_array(tmp_path, vocab_size, shard_tokens):
    tokens = RNG.integers(0, vocab_size, 10_000)
    write_shards(tmp_path, [tokens[:1234], tokens[1234:]], vocab_size, eot_id=None, shard_tokens=shard_tokens)
    view, joined = read_shards(tmp_path), tokens.astype(np.uint16 if vocab_size < 65536 else np.uint32)
    assert len(view) == len(joined) and view.dtype == joined.dtype
    seq_len = 64
    edges = np.arange(shard_tokens, len(tokens), shard_tokens)
    crossing = np.clip(edges[:50, None] - np.array([1, 10, seq_len]), 0, len(tokens) - seq_len - 1).ravel()
    for starts in (RNG.integers(0, len(tokens) - seq_len, 300), crossing, eval_starts(len(tokens), seq_len, 20)):
        for got, want in zip(batch_from_starts(view, starts, seq_len), batch_from_starts(joined, starts, seq_len)):
            assert got.equal(want)
    for lo, hi in ((0, 10_000), (699, 701), (1234, 9000), (5, 5), (-300, None)):
        assert np.array_equal(np.asarray(view[lo:hi]), joined[lo:hi])
    assert view[-1] == joined[-1] and np.array_equal(view[[3, 2, 9999]], joined[[3, 2, 9999]])
    with pytest.raises(IndexError):
        view[[10_000]]


def test_shard_corpus_reads_only_what_is_indexed(tmp_path):
    """A corpus of shards is built without reading them; a corrupt shard surfaces when read."""
    tok = byte_tokenizer()
    write_shards(tmp_path, [RNG.integers(0, 256, 3000)], tok.vocab_size, tok.eot_id, shard_tokens=1000)
    (tmp_path / "shard_00001.bin").write_bytes(np.full(1000, 9999, np.uint16).tobytes())  # same size, bad ids
    corpus = build_corpus([tmp_path], tok, val_fraction=0.1, seed=0, progress=False)
    assert (len(corpus.train), len(corpus.val)) == (2700, 300)
    x, _ = batch_from_starts(corpus.train, np.array([0, 900 - 17, 2100]), 16)  # shards 0 and 2 only
    assert x.shape == (3, 16)
    with pytest.raises(GptlabError, match="hold token id 9999, outside the vocabulary .* corrupt"):
        batch_from_starts(corpus.train, np.array([990]), 16)
    with pytest.raises(GptlabError, match="corrupt"):
        corpus.n_documents  # counting reads every token


def test_corpus_of_several_shards_and_directories_equals_one_shard(tmp_path):
    tok = byte_tokenizer()
    documents = [list(RNG.integers(0, 256, RNG.integers(1, 400))) + [tok.eot_id] for _ in range(60)]
    write_shards(tmp_path / "one", documents, tok.vocab_size, tok.eot_id)
    write_shards(tmp_path / "many", documents, tok.vocab_size, tok.eot_id, shard_tokens=97)
    write_shards(tmp_path / "first", documents[:25], tok.vocab_size, tok.eot_id, shard_tokens=300)
    write_shards(tmp_path / "second", documents[25:], tok.vocab_size, tok.eot_id, shard_tokens=1000)
    one = build_corpus([tmp_path / "one"], tok, 0.15, seed=0, progress=False)
    for paths in ([tmp_path / "many"], [tmp_path / "first", tmp_path / "second"]):
        other = build_corpus(paths, tok, 0.15, seed=0, progress=False)
        assert np.array_equal(np.asarray(other.train), np.asarray(one.train))
        assert np.array_equal(np.asarray(other.val), np.asarray(one.val))
        assert (other.n_documents, other.train_bytes, other.val_bytes) == (60, one.train_bytes, one.val_bytes)


def test_training_on_many_shards_equals_training_on_one(tmp_path, capsys):
    tok = byte_tokenizer()
    text = (Path(__file__).read_text() * 8).encode()
    documents = [tok.encode_bytes(text[i : i + 3000]) + [tok.eot_id] for i in range(0, len(text), 3000)]
    write_shards(tmp_path / "one", documents, tok.vocab_size, tok.eot_id)
    write_shards(tmp_path / "many", documents, tok.vocab_size, tok.eot_id, shard_tokens=1013)
    losses = []
    for name in ("one", "many"):
        main(["train", "--data", str(tmp_path / name), "--out", str(tmp_path / f"run-{name}"), "--model", "tiny",
              "--max-steps", "4", "--seq-len", "48", "--batch-size", "8", "--eval-every", "2", "--eval-windows", "16",
              "--sample-tokens", "0", "--log-every", "1", "--no-progress"])
        rows = [json.loads(line) for line in (tmp_path / f"run-{name}" / "metrics.jsonl").read_text().splitlines()]
        losses.append([(row["step"], row.get("loss"), row.get("val_loss")) for row in rows])
    capsys.readouterr()
    assert len(read_shards(tmp_path / "many").parts) > 10
    assert losses[0] == losses[1] and len(losses[0]) == 6


def test_write_shards_streams_an_iterator(tmp_path):
    arrays = [RNG.integers(0, 300, n) for n in (5, 0, 31, 7, 2, 40)]

    def stream():
        for i, array in enumerate(arrays):
            if i == 4:  # 43 tokens came before: shards 0..3 of 10 are on disk, the fifth still open
                assert sorted(p.name for p in tmp_path.glob("shard_*.bin")) == [f"shard_0000{k}.bin" for k in range(4)]
            yield array

    assert write_shards(tmp_path, stream(), vocab_size=300, eot_id=None, shard_tokens=10) == 85
    joined = np.concatenate(arrays).astype(np.uint16)
    assert [p.name for p in tmp_path.glob(".*")] == []
    for k in range(9):
        assert (tmp_path / f"shard_{k:05d}.bin").read_bytes() == joined[10 * k : 10 * k + 10].tobytes()
    with pytest.raises(GptlabError, match="outside the vocabulary"):
        write_shards(tmp_path / "bad", [np.arange(25), [300]], vocab_size=300, eot_id=None, shard_tokens=10)
    assert sorted(p.name for p in (tmp_path / "bad").iterdir()) == ["shard_00000.bin", "shard_00001.bin"]


# --- mix and tokenize, streamed, against the whole corpus in memory ---------------------------------------


def in_memory_mix(sources: dict[str, list[list[int]]], weights: dict[str, float], tokens: int | None, seed: int,
                  eot: int):
    """The documents `gptlab data mix` writes, in order, chosen the way it did holding them all: each source's
    share of the budget in whole tokens (the largest remainders rounded up), drawn in whole documents epoch by
    epoch, the last one cut to fit and ended with `eot`."""
    share = {name: weights[name] / sum(weights.values()) for name in sources}
    available = {name: sum(map(len, docs)) for name, docs in sources.items()}
    budget = tokens or min(math.floor(available[name] / share[name]) for name in sources)
    quota = {name: math.floor(share[name] * budget) for name in sources}
    by_remainder = sorted(sources, key=lambda name: quota[name] - share[name] * budget)
    for name in by_remainder[: budget - sum(quota.values())]:
        quota[name] += 1
    if tokens is None:
        quota = {name: min(quota[name], available[name]) for name in sources}
    rng = np.random.default_rng(seed)
    chosen = {}
    for name, docs in sources.items():
        taken, count = [], 0
        while count < quota[name]:
            for i in rng.permutation(len(docs)):
                if count >= quota[name]:
                    break
                taken.append(docs[i])
                count += len(docs[i])
        if count > quota[name]:
            taken[-1] = taken[-1][: len(taken[-1]) - (count - quota[name]) - 1] + [eot]
        chosen[name] = taken
    keys, order = [], []
    for name, docs in chosen.items():
        keys.append((np.arange(len(docs)) + rng.random(len(docs))) / max(len(docs), 1))
        order += [(name, i) for i in range(len(docs))]
    return [chosen[name][i] for name, i in (order[i] for i in np.argsort(np.concatenate(keys), kind="stable"))]


@pytest.mark.parametrize("verb", ["mix", "tokenize"])
def test_mix_and_tokenize_write_what_the_in_memory_way_wrote(tmp_path, capsys, verb):
    byte_tokenizer().save(tmp_path / "tok")
    tok = load_tokenizer(tmp_path / "tok")
    words = np.array("the of and a to in is you that it he was for on are as with his they".split())
    texts = {name: [[" ".join(RNG.choice(words, RNG.integers(3, 120))) for _ in range(40)] for _ in range(k)]
             for name, k in (("web", 3), ("books", 1))}
    files = {}
    for name, per_file in texts.items():
        files[name] = [tmp_path / f"{name}-{k}.jsonl" for k in range(len(per_file))]
        for file, docs in zip(files[name], per_file):
            file.write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    if verb == "tokenize":
        args = ["--input", *files["web"]]
        sources, weights, budget = {"input": texts["web"]}, {"input": 1.0}, None
    else:
        args = ["--input", *(f"{name}={f}" for name, fs in files.items() for f in fs), "--weight", "web=3", "books=1",
                "--tokens", "40000", "--seed", "5"]
        sources, weights, budget = texts, {"web": 3.0, "books": 1.0}, 40_000
    main(["data", verb, *map(str, args), "--tokenizer", str(tmp_path / "tok"), "--output", str(tmp_path / "out"),
          "--shard-tokens", "3001", "--workers", "2"])
    assert "tokenize-" not in capsys.readouterr().err  # task progress bars only on a terminal
    encoded = {name: [tok.encode(t) + [tok.eot_id] for docs in per_file for t in docs] for name, per_file in sources.items()}
    reference = in_memory_mix(encoded, weights, budget, seed=5 if budget else 0, eot=tok.eot_id)
    write_shards(tmp_path / "reference", reference, tok.vocab_size, tok.eot_id, 3001, tokenizer="tokenizer")
    written = shard_files(tmp_path / "out")
    assert written == shard_files(tmp_path / "reference") and len(written) > 3
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert (stats["documents_written"], stats["tokens_written"]) == (len(reference), sum(map(len, reference)))
