"""The one document reader behind `gptlab train` and every `gptlab data` stage: what a path
stands for (a stage's output folder is its kept shards, in any format) and the bad-input policy
(bad records skipped, counted and reported; a few invalid bytes kept as U+FFFD)."""

from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gptlab.cli.main import main
from gptlab.data import iter_documents, split_documents
from gptlab.data.curate.executor import Executor
from gptlab.data.curate.stages import dedup
from gptlab.errors import GptlabError


def stage_records(out: Path) -> list[dict]:
    """The kept records of a stage output, read with the format's own library."""
    rows = []
    for path in sorted(out.iterdir()):
        if path.name.endswith(".parquet"):
            rows += pq.read_table(path).to_pylist()
        elif path.name.endswith(".jsonl.gz"):
            rows += [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode().splitlines()]
    return rows


@pytest.fixture(scope="module")
def raw(tmp_path_factory, corpus_text) -> Path:
    """Two JSONL files of prose paragraphs, with exact copies and a malformed line."""
    folder = tmp_path_factory.mktemp("raw")
    paragraphs = [p for p in corpus_text.split("\n\n") if len(p) > 300][:40]
    for part in range(2):
        texts = paragraphs[part * 20:(part + 1) * 20]
        lines = [json.dumps({"id": f"p{part}-{i}", "text": t}) for i, t in enumerate(texts)]
        lines += [json.dumps({"id": f"p{part}-{i}-copy", "text": paragraphs[part * 20 + i]}) for i in (2, 5)]
        lines.append("{not json")
        (folder / f"part-{part}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module", params=["jsonl.gz", "parquet"])
def stage_output(request, raw, tmp_path_factory) -> Path:
    """A dedup output with removed/ (their text included), malformed/ and stats.json beside the shards."""
    out = tmp_path_factory.mktemp("stage") / "dedup"
    stats = dedup([str(raw)], str(out), Executor(workers=1), fmt=request.param, removed_text=True)
    assert stats["documents_removed"] == 4 and stats["malformed"] == 2
    assert (out / "removed").is_dir() and (out / "malformed").is_dir() and (out / "stats.json").is_file()
    return out


def test_a_stage_output_folder_is_its_kept_documents_only(stage_output):
    kept = stage_records(stage_output)
    assert len(kept) == 40
    documents = list(iter_documents([stage_output]))
    assert [(d.id, d.text) for d in documents] == [(r["id"], r["text"]) for r in kept]
    split = split_documents([stage_output], 0.1, 0)
    assert split.n_documents == 40 and len(split.train) + len(split.val) == 40


def test_train_on_a_stage_output_reads_its_kept_documents(stage_output, tmp_path, capsys):
    main(["train", "--data", str(stage_output), "--tokenizer", "byte", "--out", str(tmp_path / "run"),
          "--model", "tiny", "--n-layer", "1", "--d-model", "16", "--n-head", "1", "--seq-len", "16",
          "--batch-size", "2", "--max-steps", "1", "--threads", "1", "--sample-tokens", "0"])
    found = re.search(r"([\d,]+) train / ([\d,]+) val tokens", capsys.readouterr().out)
    assert found, "the run reports its corpus size"
    tokens = sum(int(n.replace(",", "")) for n in found.groups())
    kept = stage_records(stage_output)
    assert tokens == sum(len(r["text"].encode()) + 1 for r in kept)  # each document and its <|endoftext|>


def test_an_unfinished_stage_output_is_refused(stage_output, tmp_path):
    unfinished = tmp_path / "unfinished"
    (unfinished / ".work").mkdir(parents=True)
    (unfinished / ".work" / "settings.json").write_text("{}")
    (unfinished / "00000.jsonl").write_text(json.dumps({"text": "half a stage"}) + "\n")
    with pytest.raises(GptlabError, match="did not finish"):
        list(iter_documents([unfinished]))


def truncated_gzip_folder(tmp_path: Path) -> tuple[Path, list[str]]:
    """A folder holding a good JSONL file and a .jsonl.gz cut short; returns it and all ids written."""
    folder = tmp_path / "cut"
    folder.mkdir()
    (folder / "a.jsonl").write_text(json.dumps({"id": "a", "text": "a whole document"}) + "\n")
    rng = random.Random(0)
    ids = [f"z{i}" for i in range(2000)]
    data = "".join(json.dumps({"id": i, "text": " ".join(f"w{rng.randrange(5000)}" for _ in range(30))}) + "\n"
                   for i in ids)
    zipped = gzip.compress(data.encode(), mtime=0)
    (folder / "b.jsonl.gz").write_bytes(zipped[: len(zipped) // 2])
    return folder, ids


def test_a_truncated_gzip_keeps_the_documents_before_the_break_for_train_and_stages(tmp_path, capsys):
    folder, ids = truncated_gzip_folder(tmp_path)
    read = [d.id for d in iter_documents([folder])]
    assert read[0] == "a" and 0 < len(read) - 1 < len(ids) and read[1:] == ids[: len(read) - 1]
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and "b.jsonl.gz" in warning[0] and "skipped 1" in warning[0]

    out = tmp_path / "out"
    stats = dedup([str(folder)], str(out), Executor(workers=1))
    assert [r["id"] for r in stage_records(out)] == read  # the very same documents
    listed = [json.loads(line) for f in sorted((out / "malformed").glob("*.jsonl"))
              for line in f.read_text().splitlines()]
    assert stats["malformed"] == 1 and listed[0]["file"].endswith("b.jsonl.gz")


def test_a_text_file_with_a_few_invalid_bytes_is_kept_and_reported(tmp_path, capsys):
    text = "To be, or not to be, that is the question.\n" * 50
    damaged = text.encode()
    damaged = damaged[:100] + b"\xff\xfe" + damaged[100:]
    (tmp_path / "hamlet.txt").write_bytes(damaged)
    (documents,) = [list(iter_documents([tmp_path / "hamlet.txt"]))]
    assert len(documents) == 1 and documents[0].text == text[:100] + "\ufffd\ufffd" + text[100:]
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and "hamlet.txt" in warning[0] and "U+FFFD" in warning[0]


def test_binary_files_are_skipped_unless_nothing_else_is_readable(tmp_path, capsys):
    (tmp_path / "good.txt").write_text("plain text\n")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    assert [d.text for d in iter_documents([tmp_path])] == ["plain text\n"]
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and "skipped 1" in warning[0] and "image.png" in warning[0]
    with pytest.raises(GptlabError, match=r"nothing readable in .*image\.png.*binary"):
        list(iter_documents([tmp_path / "image.png"]))


def test_the_warning_is_one_line_with_counts_and_a_whole_first_reason(tmp_path, capsys):
    (tmp_path / "docs.jsonl").write_text('{"text": "fine"}\n{"text": "cut\n{"id": 3}\n')
    assert [d.text for d in iter_documents([tmp_path])] == ["fine"]
    (warning,) = capsys.readouterr().err.strip().splitlines()
    assert "skipped 2" in warning
    assert "docs.jsonl line 2: not valid JSON (Invalid control character at column 14)" in warning
