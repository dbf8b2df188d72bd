"""`gptlab data` stages leave no traps: an output that would be read back as input is refused,
no process outlives a killed stage, and the mix summary reports what it wrote."""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error, gptlab_cli, run_cli

from gptlab.data.shards import read_shards


@pytest.fixture
def inputs(tmp_path) -> Path:
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "a.jsonl").write_text("".join(json.dumps({"text": f"document {i} " * 30}) + "\n" for i in range(20)))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "b.jsonl").write_text(json.dumps({"text": "another document " * 30}) + "\n")
    os.symlink(folder, tmp_path / "link")
    return folder


@pytest.mark.parametrize("args", [
    ["dedup", "--input", "RAW", "--output", "RAW"],
    ["dedup", "--input", "RAW", "--output", "RAW/dedup"],
    ["dedup", "--input", "RAW", "--output", "TMP/link/dedup"],  # the input folder through a symlink
    ["dedup", "--input", "TMP/elsewhere", "--against", "RAW", "--output", "RAW/dedup"],
    ["dedup", "--input", "RAW/a.jsonl", "--output", "RAW"],  # an input file inside the output folder
    ["dedup", "--input", "TMP/*/b.jsonl", "--output", "TMP/elsewhere"],
    ["filter", "--input", "RAW", "--model", "TMP/no-model", "--output", "RAW/filtered"],
    ["decontaminate", "--input", "TMP/elsewhere", "--benchmark", "RAW", "--output", "RAW/clean"],
    ["mix", "--input", "web=TMP/elsewhere", "books=RAW", "--weight", "web=1", "books=1", "--tokenizer", "TMP",
     "--output", "RAW/shards"],
])
def test_an_output_inside_an_input_is_refused(inputs, tmp_path, capsys, args):
    places = {"RAW": str(inputs), "TMP": str(tmp_path)}
    argv = ["data", *(a.replace("RAW", places["RAW"]).replace("TMP", places["TMP"]) for a in args)]
    assert_one_line_error(run_cli(capsys, *argv), "outside the inputs")
    assert not (inputs / ".work").exists() and not (inputs / "dedup").exists()


def session_processes(sid: int) -> dict[int, int]:
    """Live (not zombie) processes of session `sid`, with their parents."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # ended meanwhile
                continue
            state, ppid, session = fields[0], int(fields[1]), int(fields[3])
            if session == sid and state != "Z":
                found[int(entry.name)] = ppid
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_no_process_outlives_a_killed_stage(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = random.Random(0)
    words = [f"w{i}" for i in range(3000)]
    for part in range(4):
        (folder / f"{part}.jsonl").write_text("".join(
            json.dumps({"text": " ".join(rng.choices(words, k=150))}) + "\n" for _ in range(2500)))
    process = gptlab_cli("data", "dedup", "--input", folder, "--output", tmp_path / "out", "--workers", 2,
                         wait=False, capture=False, new_session=True)
    logs = tmp_path / "out" / ".work" / "sign" / "logs"  # a worker starts each task's log
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            tree = session_processes(process.pid)
            workers = [pid for pid, parent in tree.items() if tree.get(parent) == process.pid]  # grandchildren
            if len(workers) >= 2 and any(logs.glob("task_*.log")):  # the workers are busy in their first tasks
                break
            time.sleep(0.05)
        assert process.poll() is None, "the stage finished before it could be killed"
        process.send_signal(signal.SIGKILL)  # the stage process alone, as the OOM killer would
        process.wait()
        deadline = time.monotonic() + 120  # a hang guard: orphans would live on for good
        while session_processes(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert session_processes(process.pid) == {}
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_mix_reports_the_documents_and_tokens_it_wrote(tmp_path, capsys, corpus_text, small_tokenizer):
    small_tokenizer.save(tmp_path / "tokenizer")
    paragraphs = [p for p in corpus_text.split("\n\n") if len(p) > 300]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in paragraphs[:30]))
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in paragraphs[30:40]))
    out = tmp_path / "shards"
    result = run_cli(capsys, "data", "mix", "--input", f"a={tmp_path / 'a.jsonl'}", f"b={tmp_path / 'b.jsonl'}",
                     "--weight", "a=1", "b=1", "--tokenizer", tmp_path / "tokenizer", "--output", out, "--workers", 1)
    assert result.returncode == 0, result.stderr
    stats = json.loads((out / "stats.json").read_text())
    tokens = np.asarray(read_shards(out))
    assert stats["documents_written"] == int(np.sum(tokens == small_tokenizer.eot_id)) > 0
    assert stats["tokens_written"] == len(tokens)
    assert f"40 in -> {stats['documents_written']:,} written ({len(tokens):,} tokens)" in result.stdout
    assert " out (" not in result.stdout


# --- mix: options checked first, weights and budget hit, repetition bounded ---------------------------------------

WEB, BOOKS = "abcdefghijklm", "nopqrstuvwxyz"  # the char tokenizer's ids 0..12 and 13..25: a token names its source


@pytest.fixture
def two_sources(tmp_path) -> dict:
    """A web source of 300 short documents and a books source of six long ones, each in its own letters."""
    rng = np.random.default_rng(0)
    web = ["".join(rng.choice(list(WEB), int(n))) for n in rng.integers(100, 400, 300)]
    books = ["".join(rng.choice(list(BOOKS), 12_000)) for _ in range(6)]
    (tmp_path / "web.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in web))
    with gzip.open(tmp_path / "books.jsonl.gz", "wt") as f:  # compressed: its size bounds nothing
        f.writelines(json.dumps({"text": t}) + "\n" for t in books)
    from gptlab.tokenizer import CharTokenizer

    CharTokenizer.from_texts(web + books).save(tmp_path / "tok")
    return {"dir": tmp_path, "out": tmp_path / "shards",
            "available": {"web": sum(len(t) + 1 for t in web), "books": sum(len(t) + 1 for t in books)},
            "args": ["data", "mix", "--input", f"web={tmp_path / 'web.jsonl'}", f"books={tmp_path / 'books.jsonl.gz'}",
                     "--tokenizer", tmp_path / "tok", "--output", tmp_path / "shards", "--workers", "1"]}


def measured(out: Path) -> tuple[int, dict[str, int]]:
    """The shards' token count, and each source's tokens in them, <|endoftext|> included."""
    tokens = np.asarray(read_shards(out)).astype(np.int64)
    eot = len(WEB + BOOKS)
    ends = np.flatnonzero(tokens == eot)
    assert len(ends) and ends[-1] == len(tokens) - 1  # every document ends with <|endoftext|>, a cut one too
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths, first = ends - starts + 1, tokens[starts]
    return len(tokens), {"web": int(lengths[first < len(WEB)].sum()),
                         "books": int(lengths[(first >= len(WEB)) & (first < eot)].sum())}


@pytest.mark.parametrize("tokens", [None, 200_000])
def test_mix_hits_its_weights_and_token_budget(two_sources, capsys, tokens):
    extra = [] if tokens is None else ["--tokens", tokens]
    result = run_cli(capsys, *two_sources["args"], "--weight", "web=60", "books=40", *extra)
    assert result.returncode == 0, result.stderr
    available = two_sources["available"]
    budget = tokens or min(available["web"] / 0.6, available["books"] / 0.4)  # the most that repeats no source
    written, taken = measured(two_sources["out"])
    assert abs(written - budget) <= 0.01 * budget, (written, budget)
    assert abs(taken["web"] / written - 0.6) <= 0.006 and abs(taken["books"] / written - 0.4) <= 0.004, taken
    if tokens is None:
        assert all(taken[name] <= available[name] for name in taken)
    stats = json.loads((two_sources["out"] / "stats.json").read_text())
    assert stats["tokens_written"] == written
    for name, source in stats["sources"].items():
        assert source["tokens_taken"] == taken[name]
        assert f"{name:<10} weight {source['weight']:.3f}: {taken[name]:,} of {available[name]:,} tokens" in result.stdout


@pytest.mark.parametrize("extra, fragment", [
    (["--shard-tokens", "0"], "shard_tokens"),
    (["--seed", "-1"], "seed"),
    (["--weight", "web=nan", "books=1"], "web=nan"),
    (["--weight", "web=inf", "books=1"], "web=inf"),
    (["--weight", "web=-1", "books=1"], "web=-1"),
    (["--weight", "web=0", "books=0"], "web=0"),
    (["--max-epochs", "0.5"], "max_epochs"),
    (["--tokens", "inf"], "--tokens"),
])
def test_mix_checks_every_option_before_tokenising(two_sources, capsys, extra, fragment):
    weights = [] if "--weight" in extra else ["--weight", "web=60", "books=40"]
    assert_one_line_error(run_cli(capsys, *two_sources["args"], *weights, *extra), fragment)
    assert not two_sources["out"].exists()  # refused before anything was tokenised


def test_mix_refuses_absurd_repetition_unless_allowed(two_sources, capsys):
    out, args = two_sources["out"], [*two_sources["args"], "--weight", "web=1", "books=4"]
    # web's file size bounds its tokens: refused before tokenising (this once hung, drawing 2.9e9 epochs)
    result = gptlab_cli(*args, "--tokens", "1e15", timeout=120)
    assert_one_line_error(result, "source web", "at least", "times over", "16 epochs")
    assert not out.exists()
    # books is gzipped, so its tokens are known once tokenised: 20 epochs of it (web's 4.8 are allowed)
    budget = 25 * two_sources["available"]["books"]
    assert_one_line_error(run_cli(capsys, *args, "--tokens", budget),
                          "gptlab: error: the token budget takes source books 20 times over")
    assert not (out / "index.json").exists()
    result = run_cli(capsys, *args, "--tokens", budget, "--max-epochs", 25)
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "stats.json").read_text())["sources"]["books"]["epochs"] == 20


def test_an_unreachable_ray_cluster_is_one_line_before_any_work(tmp_path, inputs):
    result = gptlab_cli("data", "dedup", "--input", inputs, "--output", tmp_path / "out", "--executor", "ray",
                        env={"RAY_ADDRESS": "127.0.0.1:1", "GPTLAB_RAY_TIMEOUT": "5"}, timeout=120)
    assert_one_line_error(result, "Ray cluster at 127.0.0.1:1")
    assert not (tmp_path / "out").exists()
