"""`gptlab data example`: the README tour's demo corpus is reproducible and holds what the stages look for.

tests/test_readme.py runs the stages on it; this checks the corpus itself.
"""

import json
import re

import pytest
from helpers import assert_one_line_error, gptlab_cli

from gptlab.data.example import CONTAMINATED, write_example


def test_the_demo_corpus_is_deterministic_and_plants_what_each_stage_removes(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    written = write_example(first)
    write_example(second)
    assert sorted(p.name + "/" * p.is_dir() for p in first.iterdir()) == sorted(written)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name

    *records, broken = [line for path in sorted((first / "crawl").iterdir()) for line in path.read_text().splitlines()]
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken)
    crawl = [json.loads(line) for line in records]
    assert {re.sub(r"-\d.*", "", doc["id"]) for doc in crawl} == {"prose", "junk", "near-dup", "webtext-copy"}

    crawl_text = " ".join(" ".join(doc["text"].split()) for doc in crawl)
    passages = [json.loads(line)["text"] for line in (first / "evals" / "benchmark.jsonl").read_text().splitlines()]
    quoted = [p for p in passages if p in crawl_text]
    assert len(quoted) >= CONTAMINATED and len(quoted) < len(passages)
    assert len((first / "input.txt").read_text()) > 500_000  # enough for nanoGPT's char-level shape


def test_example_into_a_file_is_a_one_line_error(tmp_path):
    target = tmp_path / "demo"
    target.write_text("not a folder")
    assert_one_line_error(gptlab_cli("data", "example", target), "gptlab: error: cannot write the example corpus to")
