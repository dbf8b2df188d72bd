"""`gptlab data` stages leave no traps: an output that would be read back as input is refused,
no process outlives a killed stage, and the mix summary reports what it wrote."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gptlab.cli.main import main
from gptlab.data.shards import read_shards


def run_cli(capsys, *args) -> tuple[int, str, str]:
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


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
    code, out, err = run_cli(capsys, *argv)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "outside the inputs" in err
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
    process = subprocess.Popen(
        [sys.executable, "-m", "gptlab", "data", "dedup", "--input", str(folder), "--output", str(tmp_path / "out"),
         "--workers", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            tree = session_processes(process.pid)
            workers = [pid for pid, parent in tree.items() if tree.get(parent) == process.pid]  # grandchildren
            if len(workers) >= 2:
                break
            time.sleep(0.05)
        time.sleep(0.5)  # the workers are busy in their first tasks
        assert process.poll() is None, "the stage finished before it could be killed"
        process.send_signal(signal.SIGKILL)  # the stage process alone, as the OOM killer would
        process.wait()
        deadline = time.monotonic() + 10
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
    code, printed, err = run_cli(capsys, "data", "mix", "--input", f"a={tmp_path / 'a.jsonl'}",
                                 f"b={tmp_path / 'b.jsonl'}", "--weight", "a=1", "b=1",
                                 "--tokenizer", tmp_path / "tokenizer", "--output", out, "--workers", 1)
    assert code == 0, err
    stats = json.loads((out / "stats.json").read_text())
    tokens = np.asarray(read_shards(out))
    assert stats["documents_written"] == int(np.sum(tokens == small_tokenizer.eot_id)) > 0
    assert stats["tokens_written"] == len(tokens)
    assert f"40 in -> {stats['documents_written']:,} written ({len(tokens):,} tokens)" in printed
    assert " out (" not in printed
