"""Training data: byte/char tokenizers, documents, token shards, corpus splits, window sampling."""

from __future__ import annotations

import argparse
import gzip
import json

import numpy as np
import pytest

from gptlab.checkpoint import io
from gptlab.cli.tokenizer import run_decode, run_encode
from gptlab.data import (
    WindowSampler,
    batch_from_starts,
    build_corpus,
    split_documents,
    eval_starts,
    iter_documents,
    read_shards,
    write_shards,
)
from gptlab.errors import GptlabError
from gptlab.tokenizer import CharTokenizer, Tokenizer, byte_tokenizer, load_tokenizer
from gptlab.tokenizer.byte_unicode import BYTE_ORDER

EOT = "<|endoftext|>"
UNICODE = "héllo wörld — 你好，世界 👍🏽 naïve café\n\ttabs"


# Tokenizers


def test_byte_tokenizer_is_gpt2_bytes_plus_endoftext():
    tok = byte_tokenizer()
    assert tok.vocab_size == 257 and tok.eot_id == 256 and tok.special_tokens == {EOT: 256}
    assert [tok.encode_bytes(bytes([b])) for b in BYTE_ORDER] == [[i] for i in range(256)]
    data = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    ids = tok.encode_bytes(data)
    assert len(ids) == len(data) and tok.decode_bytes(ids) == data
    assert len(tok.encode(EOT)) == len(EOT) and tok.eot_id not in tok.encode(EOT)
    assert tok.decode(tok.encode(UNICODE)) == UNICODE


def test_byte_tokenizer_saves_as_bpe_files(tmp_path):
    byte_tokenizer().save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merges.txt", "vocab.json"]
    for loaded in (load_tokenizer(tmp_path), io.load_tokenizer(tmp_path)):
        assert isinstance(loaded, Tokenizer)
        assert loaded.encode(UNICODE) == byte_tokenizer().encode(UNICODE) and loaded.eot_id == 256
    assert io.load_tokenizer(tmp_path / "missing") is None


def test_char_tokenizer_round_trip_and_vocabulary():
    tok = CharTokenizer.from_texts(["hello", UNICODE])
    chars = sorted(set("hello" + UNICODE))
    assert tok.vocab_size == len(chars) + 1 and tok.eot_id == len(chars)
    assert tok.encode("hello") == [chars.index(c) for c in "hello"]
    assert tok.decode(tok.encode(UNICODE)) == UNICODE
    assert tok.decode_bytes(np.array(tok.encode(UNICODE))) == UNICODE.encode()
    assert tok.encode_batch(["he", "", "lo"]) == [tok.encode("he"), [], tok.encode("lo")]
    assert tok.decode([tok.eot_id]) == EOT and tok.special_id(EOT) == tok.eot_id
    with pytest.raises(GptlabError, match=r"character 'z' \(U\+007A\) is not in"):
        tok.encode("hellz")
    with pytest.raises(GptlabError, match="token id 99 is not in the vocabulary"):
        tok.decode([0, 99])
    with pytest.raises(GptlabError, match="no special token '<|start|>'"):
        tok.special_id("<|start|>")
    assert CharTokenizer.from_texts(["ab"], special_tokens=()).eot_id is None


def test_char_tokenizer_cannot_forge_special_tokens():
    tok = CharTokenizer.from_texts([EOT + " x"])
    ids = tok.encode(EOT)
    assert len(ids) == len(EOT) and tok.eot_id not in ids
    assert tok.decode(ids) == EOT


def test_char_tokenizer_save_and_load(tmp_path):
    tok = CharTokenizer.from_texts([UNICODE], special_tokens=(EOT, "<|pad|>"))
    tok.save(tmp_path)
    saved = json.loads((tmp_path / "chars.json").read_text(encoding="utf-8"))
    assert saved == {
        "type": "char",
        "chars": sorted(set(UNICODE)),
        "special_tokens": {EOT: tok.eot_id, "<|pad|>": tok.eot_id + 1},
    }
    for loaded in (load_tokenizer(tmp_path), io.load_tokenizer(tmp_path)):
        assert isinstance(loaded, CharTokenizer)
        assert loaded.encode(UNICODE) == tok.encode(UNICODE)
        assert loaded.special_tokens == tok.special_tokens

    (tmp_path / "chars.json").write_text(json.dumps({**saved, "chars": ["a", "a"]}))
    with pytest.raises(GptlabError, match="chars.json: .*twice"):
        load_tokenizer(tmp_path)
    (tmp_path / "chars.json").write_text(json.dumps({**saved, "special_tokens": {EOT: 0}}))
    with pytest.raises(GptlabError, match="special token ids must follow"):
        load_tokenizer(tmp_path)
    (tmp_path / "chars.json").write_text(json.dumps({"type": "bpe"}))
    with pytest.raises(GptlabError, match="is not a char-level tokenizer"):
        load_tokenizer(tmp_path)


def test_cli_encode_and_decode_with_a_char_tokenizer(tmp_path, capsys):
    tok = CharTokenizer.from_texts(["hello world"])
    tok.save(tmp_path)
    run_encode(argparse.Namespace(tokenizer=tmp_path, input=None, text="hello"))
    ids = json.loads(capsys.readouterr().out)
    assert ids == tok.encode("hello")
    run_decode(argparse.Namespace(tokenizer=tmp_path, input=None, text=json.dumps(ids)))
    assert capsys.readouterr().out == "hello\n"


@pytest.mark.parametrize("kind", ["bpe", "byte", "char"])
def test_token_bytes_sum_to_the_decoded_bytes(kind, small_tokenizer, corpus_text):
    text = corpus_text[:20000] + UNICODE
    tok = {
        "bpe": small_tokenizer,
        "byte": byte_tokenizer(),
        "char": CharTokenizer.from_texts([text]),
    }[kind]
    token_bytes = tok.token_bytes()
    assert token_bytes.shape == (tok.vocab_size,) and token_bytes.dtype.kind == "i"
    ids = tok.encode(text)
    assert token_bytes[ids].sum() == len(tok.decode_bytes(ids)) == len(text.encode())
    assert token_bytes[tok.eot_id] == 0


# Documents


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "b.txt").write_text("plain text\n")
    (root / "sub" / "a.md").write_text("# nested\n")
    (root / ".hidden.txt").write_text("hidden")
    (root / ".git" / "config").write_text("hidden too")
    (root / "binary.dat").write_bytes(b"\xff\xfe\x00 not utf-8")
    lines = [
        json.dumps({"text": "first"}),
        "{not json",
        json.dumps({"id": "custom", "text": "second"}),
        "",
        json.dumps({"title": "no text"}),
        json.dumps({"text": 42}),
        json.dumps(["not", "an", "object"]),
        json.dumps({"text": "third", "id": 7}),
    ]
    (root / "docs.jsonl").write_text("\n".join(lines) + "\n")
    with gzip.open(root / "more.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"text": "zipped"}) + "\n" + "\xff broken\n")
    return root


def test_documents_from_a_directory_tree(tree, capsys):
    docs = list(iter_documents([tree]))
    assert [(d.id, d.text) for d in docs] == [
        (str(tree / "b.txt"), "plain text\n"),
        (f"{tree / 'docs.jsonl'}:1", "first"),
        ("custom", "second"),
        ("7", "third"),
        (f"{tree / 'more.jsonl.gz'}:1", "zipped"),
        (str(tree / "sub" / "a.md"), "# nested\n"),
    ]
    (warning,) = capsys.readouterr().err.splitlines()  # binary.dat, 4 lines of docs.jsonl, 1 of more.jsonl.gz
    first = f"first: {tree / 'binary.dat'}: looks binary"
    assert warning.startswith(f"warning: skipped 6 bad record(s) or file(s), {first}")


def test_documents_named_files_globs_and_errors(tree):
    named = [tree / "sub" / "a.md", tree / "b.txt", tree]  # b.txt is not read twice
    assert [d.text for d in iter_documents(named)][:3] == ["# nested\n", "plain text\n", "first"]
    assert len(list(iter_documents(named))) == 6
    assert [d.text for d in iter_documents([str(tree / "*.txt")])] == ["plain text\n"]
    assert [d.text for d in iter_documents([str(tree / "**" / "*.md")])] == ["# nested\n"]
    with pytest.raises(GptlabError, match="nothing readable in the input: 1 bad .*binary.dat: looks binary"):
        list(iter_documents([tree / "binary.dat"]))
    with pytest.raises(GptlabError, match="input file not found: .*missing"):
        list(iter_documents([tree / "missing"]))
    with pytest.raises(GptlabError, match="no input files match"):
        list(iter_documents([str(tree / "*.nothing")]))


# Token shards


def test_shards_round_trip_across_shard_boundaries(tmp_path):
    arrays = [np.arange(5), [7, 8, 9], np.array([], dtype=np.int64), np.arange(100, 117)]
    written = write_shards(tmp_path, arrays, 50257, eot_id=50256, shard_tokens=10, tokenizer="tok")
    index = json.loads((tmp_path / "index.json").read_text())
    assert written == 25 and index["dtype"] == "uint16" and index["tokenizer"] == "tok"
    assert [s["tokens"] for s in index["shards"]] == [10, 10, 5]
    assert (tmp_path / "shard_00000.bin").stat().st_size == 20
    tokens = read_shards(tmp_path)
    assert tokens.dtype == np.uint16
    assert np.asarray(tokens).tolist() == [*range(5), 7, 8, 9, *range(100, 117)]


def test_shards_use_uint32_for_large_vocabularies(tmp_path):
    write_shards(tmp_path / "small", [[65534]], vocab_size=65535, eot_id=None)
    write_shards(tmp_path / "large", [[65536, 99999]], vocab_size=100000, eot_id=0)
    assert read_shards(tmp_path / "small").dtype == np.uint16
    large = read_shards(tmp_path / "large")
    assert large.dtype == np.uint32 and np.asarray(large).tolist() == [65536, 99999]
    assert (tmp_path / "large" / "shard_00000.bin").read_bytes() == (
        (65536).to_bytes(4, "little") + (99999).to_bytes(4, "little")
    )
    with pytest.raises(GptlabError, match="token id 100 is outside the vocabulary"):
        write_shards(tmp_path / "bad", [[1, 100]], vocab_size=100, eot_id=None)


def test_corrupt_shards_are_one_line_errors(tmp_path):
    write_shards(tmp_path, [np.arange(30)], vocab_size=256, eot_id=None, shard_tokens=10)
    shard = tmp_path / "shard_00001.bin"
    shard.write_bytes(shard.read_bytes()[:-1])
    with pytest.raises(GptlabError, match="shard_00001.bin is corrupt or truncated"):
        read_shards(tmp_path)
    shard.unlink()
    with pytest.raises(GptlabError, match="lists shard_00001.bin, which is missing"):
        read_shards(tmp_path)
    (tmp_path / "index.json").write_text('{"format": "gptlab-shards", "version": 1}')
    with pytest.raises(GptlabError, match='"dtype" must be'):
        read_shards(tmp_path)
    (tmp_path / "index.json").unlink()
    with pytest.raises(GptlabError, match="not a token shards directory"):
        read_shards(tmp_path)


# Corpus


def test_single_document_is_split_by_characters(tmp_path):
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    (tmp_path / "one.txt").write_text(text)
    tok = CharTokenizer.from_texts([text])
    corpus = build_corpus([tmp_path / "one.txt"], tok, val_fraction=0.1, seed=0, progress=False)
    assert corpus.n_documents == 1 and corpus.train.dtype == np.uint16
    # each part is encoded on its own and ends its document, as nanoGPT's data[:n] / data[n:] does
    assert corpus.train.tolist() == tok.encode(text[:900]) + [tok.eot_id]
    assert corpus.val.tolist() == tok.encode(text[900:]) + [tok.eot_id]
    assert corpus.train_bytes == 900 and corpus.val_bytes == 100
    split = split_documents([tmp_path / "one.txt"], 0.1, seed=0)
    assert [d.text for d in split.train] == [text[:900]] and [d.text for d in split.val] == [text[900:]]


@pytest.fixture
def ten_documents(tmp_path):
    texts = [f"document {i} " + "ab" * i for i in range(10)]
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path, texts


def test_several_documents_are_split_by_document(ten_documents):
    path, texts = ten_documents
    tok = byte_tokenizer()
    corpus = build_corpus([path], tok, val_fraction=0.25, seed=1, progress=False)
    assert corpus.n_documents == 10
    train_docs, val_docs = (
        tok.decode(split).split(EOT)[:-1] for split in (corpus.train, corpus.val)
    )
    assert len(val_docs) == 3 and len(train_docs) == 7  # ceil(10 * 0.25)
    assert sorted(train_docs + val_docs) == sorted(texts)
    for split in (train_docs, val_docs):
        assert split == sorted(split, key=texts.index)  # original order within each split
    assert corpus.train_bytes + corpus.val_bytes == sum(len(t) for t in texts)

    again = build_corpus([path], tok, val_fraction=0.25, seed=1, progress=False)
    assert np.array_equal(again.val, corpus.val)
    held_out = {
        build_corpus([path], tok, 0.25, seed=s, progress=False).val.tobytes() for s in range(5)
    }
    assert len(held_out) > 1
    assert len(build_corpus([path], tok, 0.0, seed=1, progress=False).val) == 0
    tiny = build_corpus([path], tok, 0.01, seed=1, progress=False)
    assert tok.decode(tiny.val.tolist()).count(EOT) == 1


def test_documents_are_joined_by_endoftext(ten_documents):
    path, texts = ten_documents
    with_eot = CharTokenizer.from_texts(texts)
    corpus = build_corpus([path], with_eot, val_fraction=0.0, seed=0, progress=False)
    joined = [i for text in texts for i in [*with_eot.encode(text), with_eot.eot_id]]
    assert corpus.train.tolist() == joined
    without = CharTokenizer.from_texts(texts, special_tokens=())
    corpus = build_corpus([path], without, val_fraction=0.0, seed=0, progress=False)
    assert without.decode(corpus.train) == "".join(texts)


def test_corpus_dtype_follows_the_vocabulary(tmp_path):
    chars = "".join(chr(0x10000 + i) for i in range(70000))
    (tmp_path / "wide.txt").write_text(chars)
    tok = CharTokenizer.from_texts([chars])
    corpus = build_corpus([tmp_path / "wide.txt"], tok, val_fraction=0.5, seed=0, progress=False)
    assert corpus.train.dtype == np.uint32 and corpus.val[-2:].tolist() == [69999, 70000]
    assert corpus.train_bytes + corpus.val_bytes == len(chars.encode())


def test_corpus_from_token_shards(tmp_path, ten_documents):
    tok = byte_tokenizer()
    path, texts = ten_documents
    arrays = [tok.encode(t) + [tok.eot_id] for t in texts]
    write_shards(tmp_path / "shards", arrays, tok.vocab_size, tok.eot_id, shard_tokens=50)
    corpus = build_corpus([tmp_path / "shards"], tok, val_fraction=0.1, seed=0, progress=False)
    stream = [i for ids in arrays for i in ids]
    n_val = round(len(stream) * 0.1)
    assert np.asarray(corpus.train).tolist() == stream[:-n_val] and np.asarray(corpus.val).tolist() == stream[-n_val:]
    assert corpus.n_documents == 10 and corpus.train_bytes + corpus.val_bytes == len("".join(texts))

    with pytest.raises(GptlabError, match="cannot be mixed"):
        build_corpus([tmp_path / "shards", path], tok, 0.1, seed=0, progress=False)
    small = CharTokenizer.from_texts(texts)
    with pytest.raises(GptlabError, match="vocab_size 257, more than the tokenizer's"):
        build_corpus([tmp_path / "shards"], small, 0.1, seed=0, progress=False)


def test_corpus_without_text_is_an_error(tmp_path):
    (tmp_path / "bad.jsonl").write_text("{oops\n")
    tok = byte_tokenizer()
    with pytest.raises(GptlabError, match="nothing readable in the input: .*bad.jsonl line 1: not valid JSON"):
        build_corpus([tmp_path / "bad.jsonl"], tok, 0.1, seed=0, progress=False)
    (tmp_path / "empty.txt").write_text("")
    no_eot = CharTokenizer.from_texts(["a"], special_tokens=())
    with pytest.raises(GptlabError, match="no text to train on"):
        build_corpus([tmp_path / "empty.txt"], no_eot, 0.1, seed=0, progress=False)
    with pytest.raises(GptlabError, match="val_fraction"):
        build_corpus([tmp_path / "empty.txt"], tok, 1.0, seed=0, progress=False)


# Window sampler


def epochs_of(sampler, n_epochs):
    """Each epoch's starts, in the order the sampler hands them out."""
    epochs = [[] for _ in range(n_epochs)]
    while sampler.epoch < n_epochs:
        epoch = sampler.epoch
        epochs[epoch].append(int(sampler.next_starts(1)[0]))
    return epochs


@pytest.mark.parametrize("n_tokens", [17, 18, 40, 1000, 1007])
def test_each_epoch_visits_every_window_once(n_tokens):
    seq_len = 16
    epochs = epochs_of(WindowSampler(n_tokens, seq_len, seed=3), 6)
    for starts in epochs:
        ordered = sorted(starts)
        offset = ordered[0]
        assert 0 <= offset < seq_len and offset + seq_len + 1 <= n_tokens
        assert ordered == list(range(offset, n_tokens - seq_len, seq_len))  # no repeats, no gaps
    if n_tokens >= 1000:
        assert len({starts[0] % seq_len for starts in epochs}) > 1  # offsets change
        assert len({tuple(starts) for starts in epochs}) == 6  # and so does the order


def test_sampler_is_determined_by_its_seed():
    a, b, c = (WindowSampler(5000, 32, seed=s) for s in (7, 7, 8))
    first = a.next_starts(400)
    assert np.array_equal(first, b.next_starts(400))
    assert not np.array_equal(first, c.next_starts(400))
    assert a.epoch == 2 and first.dtype == np.int64


def test_resumed_sampler_continues_exactly():
    n_tokens, seq_len = 2500, 16
    reference = WindowSampler(n_tokens, seq_len, seed=11).next_starts(600)
    epoch_length = len(epochs_of(WindowSampler(n_tokens, seq_len, seed=11), 1)[0])
    boundary = [epoch_length - 1, epoch_length, epoch_length + 1, 2 * epoch_length]
    for stop in [0, 1, 50, *boundary, 400]:
        first = WindowSampler(n_tokens, seq_len, seed=11)
        head = first.next_starts(stop)
        state = json.loads(json.dumps(first.state_dict()))
        resumed = WindowSampler(n_tokens, seq_len, seed=11)
        resumed.load_state_dict(state)
        assert resumed.epoch == first.epoch == (stop >= epoch_length) + (stop >= 2 * epoch_length)
        tail = np.concatenate([resumed.next_starts(37) for _ in range(20)])
        assert np.array_equal(np.concatenate([head, tail])[:600], reference), stop


def test_sampler_errors():
    with pytest.raises(GptlabError, match="10 tokens are too few for one window of seq_len 16"):
        WindowSampler(10, 16, seed=0)
    with pytest.raises(GptlabError, match="too few"):
        eval_starts(16, 16, max_windows=4)
    sampler = WindowSampler(100, 16, seed=0)
    for state in ({"epoch": 0}, {"epoch": 0, "position": -1}, {"epoch": 0, "position": 7}):
        with pytest.raises(GptlabError, match="sampler state"):
            sampler.load_state_dict(state)


def test_batch_from_starts(tmp_path):
    write_shards(tmp_path, [np.arange(1000) % 300], vocab_size=300, eot_id=None)
    tokens = read_shards(tmp_path)
    starts = np.array([0, 5, 983])
    x, y = batch_from_starts(tokens, starts, seq_len=16)
    assert x.shape == y.shape == (3, 16) and str(x.dtype) == "torch.int64"
    for row, start in enumerate(starts):
        assert x[row].tolist() == np.asarray(tokens[start : start + 16]).tolist()
        assert y[row].tolist() == np.asarray(tokens[start + 1 : start + 17]).tolist()
    assert x[:, 1:].equal(y[:, :-1]) and y.is_contiguous()


def test_eval_starts_are_fixed_and_evenly_spread():
    assert eval_starts(50, 16, max_windows=10).tolist() == [0, 16, 32]
    starts = eval_starts(10_000, 16, max_windows=20)
    assert len(starts) == 20 and starts[0] == 0 and np.all(np.diff(starts) >= 16)
    assert starts[-1] + 17 <= 10_000 and starts[-1] > 9000
    assert np.array_equal(starts, eval_starts(10_000, 16, max_windows=20))
