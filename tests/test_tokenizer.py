"""Tokenizer: GPT-2 ids as tiktoken and HF give them, unforgeable specials, bytes, training."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import tokenizers
from gpt2_files import reference_encoding
from transformers import GPT2TokenizerFast

from gptlab.errors import GptlabError
from gptlab.tokenizer import GPT1_SPECIAL_TOKENS, GPT2_PATTERN, Tokenizer, train_tokenizer
from gptlab.tokenizer.byte_unicode import BYTE_ORDER, BYTE_TO_UNICODE

STRESS = [
    "你好，世界！这是一个测试。日本語のテキストも。한국어 문장입니다.",
    "family 👨‍👩‍👧‍👦 thumbs 👍🏽👍🏿 flags 🇫🇷🇯🇵 keycap 1️⃣",
    "combining: e\u0301 a\u0308 Z̤͔ͧ̑̓ä̸̢ n\u0303o\u0303",
    "RTL: مرحبا بالعالم שָׁלוֹם עולם \u200f\u202e reversed",
    "mixed \t\twhite  \n\n\n  space\r\n\t \u00a0\u3000\u2028 runs   \n",
    "   leading and trailing   ",
    "it's don't we're they've I'm we'll he'd IT'S O'Neil's '''quotes'''",
    "digits 0123456789 3.14159 1,000,000 ٣٤٥ ①② 10th 2024-01-01",
    "control \x00\x01\x07\x1b[31mred\x1b[0m\x7f\x85 chars",
    "<|endoftext|>",
    "a<|endoftext|>b <|endoftext|><|endoftext|> text",
    "x" * 2000 + " " + "ab" * 500,
    "def f(x):\n    return x**2  # code\n\n\tif x: pass\n",
    "",
]
ORDINARY = [s for s in STRESS if "<|" not in s]
# Pieces that meet the pre-tokenisation regex's edges when strung together at random.
FUZZ_PIECES = [
    *" \n\t\r'.,!stZa09éß٣你好👍🏽Ā\x00\x85\u200d\u0301\u00a0\u3000",
    *("re", "ll", "the", " the", "ing", "ĠĊ", "<|endoftext|>"),
]


def fuzz_texts(n: int = 2000) -> list[str]:
    rng = random.Random(0)
    return ["".join(rng.choices(FUZZ_PIECES, k=rng.randrange(30))) for _ in range(n)]


@pytest.fixture(scope="module")
def gpt2(gpt2_files: Path) -> Tokenizer:
    return Tokenizer.from_dir(gpt2_files)


@pytest.fixture(scope="module")
def reference(gpt2_files: Path):
    return reference_encoding(gpt2_files)


@pytest.fixture(scope="module")
def gpt2_hf_dir(gpt2: Tokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gpt2_hf")
    gpt2.save(path)
    return path


def hf_backend(directory: Path) -> tokenizers.Tokenizer:
    """A bare HF byte-level BPE over saved files: no added tokens, so specials are plain text."""
    hf = tokenizers.Tokenizer(
        tokenizers.models.BPE.from_file(
            str(directory / "vocab.json"), str(directory / "merges.txt")
        )
    )
    hf.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    return hf


# --- GPT-2 parity -------------------------------------------------------------------------------


def test_gpt2_shape(gpt2: Tokenizer) -> None:
    assert gpt2.vocab_size == 50257
    assert gpt2.eot_id == 50256
    assert gpt2.special_tokens == {"<|endoftext|>": 50256}
    assert gpt2.special_id("<|endoftext|>") == 50256
    assert gpt2.encode("Hello world") == [15496, 995]


def test_gpt2_matches_tiktoken_on_prose(
    gpt2: Tokenizer, reference, corpus_text: str
) -> None:
    chunks = [corpus_text[i : i + 50_000] for i in range(0, len(corpus_text), 50_000)]
    assert gpt2.encode_batch(chunks) == reference.encode_ordinary_batch(chunks)
    lines = corpus_text.splitlines(keepends=True)
    assert gpt2.encode_batch(lines) == [reference.encode_ordinary(line) for line in lines]


@pytest.mark.parametrize("text", STRESS)
def test_gpt2_matches_tiktoken_on_stress_text(gpt2: Tokenizer, reference, text: str) -> None:
    ids = gpt2.encode(text)
    assert ids == reference.encode_ordinary(text)
    assert gpt2.decode(ids) == text


def test_gpt2_matches_tiktoken_and_hf_on_fuzz(
    gpt2: Tokenizer, reference, gpt2_hf_dir: Path
) -> None:
    texts = fuzz_texts()
    backend = hf_backend(gpt2_hf_dir)
    assert gpt2.encode_batch(texts) == [reference.encode_ordinary(t) for t in texts]
    assert [gpt2.encode(t) for t in texts] == [e.ids for e in backend.encode_batch(texts)]


def test_lone_surrogate_is_encoded_like_tiktoken(gpt2: Tokenizer, reference) -> None:
    assert gpt2.encode("a\ud800b") == reference.encode_ordinary("a\ud800b")


def test_saved_hf_layout_matches_openai_files(
    gpt2: Tokenizer, gpt2_files: Path, gpt2_hf_dir: Path
) -> None:
    encoder = json.loads((gpt2_files / "encoder.json").read_text(encoding="utf-8"))
    assert json.loads((gpt2_hf_dir / "vocab.json").read_text(encoding="utf-8")) == encoder
    saved = (gpt2_hf_dir / "merges.txt").read_text(encoding="utf-8").splitlines()
    original = (gpt2_files / "vocab.bpe").read_text(encoding="utf-8").splitlines()
    assert saved[0] == "#version: 0.2"
    assert saved[1:] == original[1:]
    reloaded = Tokenizer.from_dir(gpt2_hf_dir)
    assert reloaded.vocab_size == 50257 and reloaded.eot_id == 50256
    assert reloaded.encode_batch(STRESS) == gpt2.encode_batch(STRESS)


def test_hf_tokenizers_agree_on_saved_files(
    gpt2: Tokenizer, gpt2_hf_dir: Path, corpus_text: str
) -> None:
    sample = corpus_text[:100_000]
    fast = GPT2TokenizerFast.from_pretrained(str(gpt2_hf_dir))
    assert len(fast) == 50257
    assert fast.eos_token_id == 50256
    for text in [*ORDINARY, sample]:
        assert fast.encode(text) == gpt2.encode(text)
    backend = hf_backend(gpt2_hf_dir)
    for text in [*STRESS, sample]:
        assert backend.encode(text).ids == gpt2.encode(text)


def test_load_is_one_pass_over_the_files(gpt2_files: Path) -> None:
    """Loading GPT-2's 50k tokens checks them in one pass and leaves the BPE to tiktoken: a few function
    calls per vocabulary entry, counted rather than timed (a quadratic check would make billions)."""
    calls = 0

    def count(frame, event: str, arg) -> None:
        nonlocal calls
        calls += event in ("call", "c_call")

    sys.setprofile(count)
    try:
        tok = Tokenizer.from_dir(gpt2_files)
    finally:
        sys.setprofile(None)
    assert tok.vocab_size == 50257 and calls < 20 * tok.vocab_size, calls


# --- special tokens cannot be forged -------------------------------------------------------------


def test_endoftext_text_is_not_the_special_id(gpt2: Tokenizer) -> None:
    ids = gpt2.encode("<|endoftext|>")
    assert 50256 not in ids
    assert gpt2.decode(ids) == "<|endoftext|>"
    assert gpt2.encode_bytes(b"<|endoftext|>") == ids
    assert 50256 not in gpt2.encode_batch(["a <|endoftext|>"] * 3)[2]
    assert gpt2.decode([50256]) == "<|endoftext|>"


def test_special_id_unknown_name(gpt2: Tokenizer) -> None:
    with pytest.raises(GptlabError, match="no special token '<|start|>'"):
        gpt2.special_id("<|start|>")


# --- bytes ---------------------------------------------------------------------------------------


def random_byte_strings() -> list[bytes]:
    rng = random.Random(1234)
    samples = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) for _ in range(200)]
    samples += [
        b"",
        b"\x80",  # lone continuation byte
        b"\x80\x80\xbf abc \xbf",
        b"\xff\xfe\x00",
        b"caf\xc3",  # truncated two-byte character
        "你好".encode()[:-1],
        b"\xe4\xb8 world",
        b"\xc0\xaf",  # overlong encoding
        b"\xed\xa0\x80",  # encoded surrogate
        b"\xf4\x90\x80\x80",  # beyond U+10FFFF
        "ok ✓ 👍🏽".encode() + b"\xf0\x9f" + b" end",
    ]
    return samples


def test_encode_bytes_round_trips_any_bytes(gpt2: Tokenizer) -> None:
    for data in random_byte_strings():
        ids = gpt2.encode_bytes(data)
        assert gpt2.decode_bytes(ids) == data
        assert gpt2.decode(ids) == data.decode("utf-8", errors="replace")
    assert gpt2.encode_bytes("héllo wörld".encode()) == gpt2.encode("héllo wörld")


def test_encode_bytes_fallback_round_trips(gpt2: Tokenizer) -> None:
    """The path used if tiktoken ever drops its private Encoding._encode_bytes."""
    for data in random_byte_strings():
        assert gpt2.decode_bytes(gpt2._encode_bytes_fallback(data)) == data
    text = "plain text, it's valid UTF-8 ✓"
    assert gpt2._encode_bytes_fallback(text.encode()) == gpt2.encode(text)
    assert gpt2._encode_bytes_fallback(b"\xff") == [gpt2.encode_bytes(b"\xff")[0]]


def test_split_multibyte_character_decodes_exactly(gpt2: Tokenizer) -> None:
    text = "你好世界 👍🏽"
    ids = gpt2.encode(text)
    prefixes = [gpt2.decode_bytes(ids[:k]) for k in range(len(ids) + 1)]
    assert prefixes[-1] == text.encode()
    assert all(text.encode().startswith(p) for p in prefixes)
    broken = [
        k
        for k, p in enumerate(prefixes)
        if p.decode("utf-8", errors="replace") != p.decode("utf-8", "ignore")
    ]
    assert broken, "expected some token boundary inside a character"
    assert "\ufffd" in gpt2.decode(ids[: broken[0]])


def test_decode_accepts_arrays_and_rejects_unknown_ids(gpt2: Tokenizer) -> None:
    assert gpt2.decode(np.array([15496, 995])) == "Hello world"
    assert gpt2.decode(iter((15496, 995))) == "Hello world"
    with pytest.raises(GptlabError, match="token id 50257 is not in the vocabulary"):
        gpt2.decode([15496, 50257])
    with pytest.raises(GptlabError, match="token id -1 is not in the vocabulary"):
        gpt2.decode_bytes([-1])


# --- training ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(corpus_text: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Training file holding the first 90% of the prose corpus; the rest is held out."""
    cut = corpus_text.index("\n\n", int(len(corpus_text) * 0.9)) + 2
    path = tmp_path_factory.mktemp("corpus") / "train.txt"
    path.write_text(corpus_text[:cut], encoding="utf-8")
    return path, corpus_text[cut:]


@pytest.fixture(scope="module")
def trained(corpus: tuple[Path, str]) -> Tokenizer:
    return train_tokenizer([corpus[0]], vocab_size=512, progress=False)


@pytest.fixture(scope="module")
def trained_dir(trained: Tokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trained")
    trained.save(path)
    return path


def test_trained_layout_is_gpt2_like(trained: Tokenizer, trained_dir: Path) -> None:
    assert trained.vocab_size == 512
    assert trained.special_tokens == {"<|endoftext|>": 511}
    assert trained.eot_id == 511
    vocab = json.loads((trained_dir / "vocab.json").read_text(encoding="utf-8"))
    assert list(vocab.values()) == list(range(512))
    assert list(vocab)[:256] == [BYTE_TO_UNICODE[b] for b in BYTE_ORDER]
    assert [trained.decode_bytes([i]) for i in range(256)] == [bytes([b]) for b in BYTE_ORDER]
    lines = (trained_dir / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#version: 0.2" and len(lines) == 1 + 255
    for i, line in enumerate(lines[1:]):
        a, b = line.split(" ")
        assert vocab[a + b] == 256 + i
    assert Tokenizer.from_dir(trained_dir).encode("To be, or not") == trained.encode(
        "To be, or not"
    )


def test_trained_round_trip_and_compression(trained: Tokenizer, corpus: tuple[Path, str]) -> None:
    held_out = corpus[1]
    ids = trained.encode(held_out)
    assert trained.decode(ids) == held_out
    assert max(ids) < 511
    assert len(ids) < 0.6 * len(held_out.encode())  # ~1.9 bytes per token


def test_trained_ids_match_hf(
    trained: Tokenizer, trained_dir: Path, corpus: tuple[Path, str]
) -> None:
    path, held_out = corpus
    train_text = path.read_text(encoding="utf-8")
    backend = hf_backend(trained_dir)
    fast = GPT2TokenizerFast.from_pretrained(str(trained_dir))
    for text in [held_out, train_text[:200_000], *STRESS]:
        assert backend.encode(text).ids == trained.encode(text)
    for text in [held_out, *ORDINARY]:
        assert fast.encode(text) == trained.encode(text)
    fuzz = fuzz_texts()
    assert trained.encode_batch(fuzz) == [e.ids for e in backend.encode_batch(fuzz)]
    assert [trained.decode(ids) for ids in trained.encode_batch(fuzz)] == fuzz


def test_gpt1_special_tokens_are_appended_and_unforgeable(trained: Tokenizer) -> None:
    tuned = trained.with_special_tokens(GPT1_SPECIAL_TOKENS)
    ids = [tuned.special_id(name) for name in GPT1_SPECIAL_TOKENS]
    assert ids == [512, 513, 514]
    assert tuned.vocab_size == 515 and tuned.eot_id == 511
    assert tuned.with_special_tokens(GPT1_SPECIAL_TOKENS).special_tokens == tuned.special_tokens
    text = "<|start|>premise<|delimiter|>hypothesis<|extract|><|endoftext|>"
    encoded = tuned.encode(text)
    assert not set(encoded) & {511, *ids}
    assert tuned.decode(encoded) == text
    assert tuned.decode([ids[0], *tuned.encode(" hi"), ids[2]]) == "<|start|> hi<|extract|>"
    assert trained.vocab_size == 512, "the original tokenizer is unchanged"
    with pytest.raises(GptlabError, match="ordinary token"):
        trained.with_special_tokens(["!"])


def test_training_accepts_directories(corpus: tuple[Path, str], tmp_path: Path) -> None:
    text = corpus[0].read_text(encoding="utf-8")
    half = text.index("\n\n", len(text) // 2) + 2
    (tmp_path / "b").mkdir()
    (tmp_path / "a.txt").write_text(text[:half], encoding="utf-8")
    (tmp_path / "b" / "c.txt").write_text(text[half:], encoding="utf-8")
    (tmp_path / ".hidden").write_bytes(b"\xff not text, skipped")
    from_dir = train_tokenizer(tmp_path, vocab_size=300, special_tokens=(), progress=False)
    from_files = train_tokenizer(
        [tmp_path / "a.txt", tmp_path / "b" / "c.txt"], 300, (), progress=False
    )
    assert from_dir.vocab_size == 300 and from_dir.eot_id is None
    assert from_dir.encode(corpus[1]) == from_files.encode(corpus[1])


# --- errors --------------------------------------------------------------------------------------


def test_train_errors(tmp_path: Path, capsys) -> None:
    good = tmp_path / "good.txt"
    good.write_text("hello world\n" * 10, encoding="utf-8")
    binary = tmp_path / "binary.bin"
    binary.write_bytes(b"\x00\x01\xff" * 100)
    with pytest.raises(GptlabError, match=r"nothing readable in the input.*binary\.bin: looks binary"):
        train_tokenizer([binary], 300, progress=False)
    # the same policy as gptlab train: bad files are skipped with a warning, a few bad bytes replaced
    repaired = tmp_path / "repaired.txt"
    repaired.write_bytes(b"fine line\n" * 20 + b"broken \xff byte\n")
    tok = train_tokenizer([good, binary, repaired], 300, progress=False)
    assert tok.encode("broken \ufffd byte")
    warning = capsys.readouterr().err
    assert "skipped 1" in warning and "binary.bin" in warning and "kept 1" in warning and "repaired.txt" in warning
    with pytest.raises(GptlabError, match="input file not found: .*missing.txt"):
        train_tokenizer([tmp_path / "missing.txt"], 300, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GptlabError, match="no input files in directory"):
        train_tokenizer(tmp_path / "empty", 300, progress=False)
    with pytest.raises(GptlabError, match="vocab_size 257 is too small"):
        train_tokenizer(good, 257, progress=False)
    with pytest.raises(
        GptlabError, match="'h' must be a non-empty string unlike any learned token"
    ):
        train_tokenizer(good, 300, special_tokens=("h",), progress=False)


def test_from_dir_missing_files(tmp_path: Path, trained_dir: Path) -> None:
    with pytest.raises(GptlabError, match="tokenizer directory not found"):
        Tokenizer.from_dir(tmp_path / "nope")
    with pytest.raises(GptlabError, match="no tokenizer files in .*vocab.json \\+ merges.txt"):
        Tokenizer.from_dir(tmp_path)
    (tmp_path / "vocab.json").write_bytes((trained_dir / "vocab.json").read_bytes())
    with pytest.raises(GptlabError, match="merges.txt is missing"):
        Tokenizer.from_dir(tmp_path)


def _without(token: str):
    return lambda vocab: {t: i for t, i in vocab.items() if t != token}


def _replace_line(n: int, line: str):
    return lambda lines: [*lines[:n], line, *lines[n + 1 :]]


@pytest.mark.parametrize(
    ("edit_vocab", "edit_merges", "message"),
    [
        pytest.param(
            lambda v: b'{"a": 1,',
            None,
            r"vocab.json is not valid JSON: Expecting .* line 1 column",
            id="bad_json",
        ),
        pytest.param(lambda v: b'{"\xff": 1}', None, r"vocab.json is not valid UTF-8", id="utf8"),
        pytest.param(lambda v: b"[1, 2]", None, r"vocab.json must be a JSON object", id="list"),
        pytest.param(
            _without("Ā"),
            None,
            r"vocab.json: 1 of the 256 byte tokens are missing, e.g. 0x00 \('Ā'\)",
            id="missing_byte",
        ),
        pytest.param(
            lambda v: {**v, "<|other|>": 0},
            None,
            r"vocab.json: id 0 is given to both",
            id="duplicate_id",
        ),
        pytest.param(
            None,
            _replace_line(2, "Ġ zz"),
            r"merges.txt: merge 2 \(Ġ zz\) uses unknown token 'zz'",
            id="unknown_token",
        ),
        pytest.param(
            _without("Ġt"),
            None,
            r"merges.txt: merge 1 \(Ġ t\) makes 'Ġt', not in .*vocab.json",
            id="result_missing",
        ),
        pytest.param(
            None,
            lambda lines: [lines[0], lines[2], lines[1], *lines[3:]],
            r"merges.txt: merge 2 .* ids in .*vocab.json must grow in merge order",
            id="merge_order",
        ),
        pytest.param(
            None,
            _replace_line(2, "Ġ t h"),
            r"merges.txt line 3: expected two tokens separated by one space",
            id="bad_line",
        ),
    ],
)
def test_from_dir_rejects_bad_files(
    trained_dir: Path, tmp_path: Path, edit_vocab, edit_merges, message: str
) -> None:
    vocab = json.loads((trained_dir / "vocab.json").read_text(encoding="utf-8"))
    lines = (trained_dir / "merges.txt").read_text(encoding="utf-8").splitlines()
    vocab = edit_vocab(vocab) if edit_vocab else vocab
    if isinstance(vocab, dict):
        vocab = json.dumps(vocab, ensure_ascii=False).encode()
    lines = edit_merges(lines) if edit_merges else lines
    (tmp_path / "vocab.json").write_bytes(vocab)
    (tmp_path / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(GptlabError, match=message):
        Tokenizer.from_dir(tmp_path)


def test_pattern_is_gpt2s() -> None:
    assert GPT2_PATTERN == (
        r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    )
