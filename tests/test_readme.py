"""Every command block of README.md, run in order on a fresh copy of the repository with nothing beside it.

A user starts from a clone: no `../shared`, no `.cache/`, no runs. The copy holds the files git would
check out (tracked, plus new files not yet committed and not ignored), and its parent holds nothing
else, so a README command that leans on data outside the repository fails here. Each ```bash block runs
as one `bash -euo pipefail` script and each ```python block as one script, all with the copy as the
working directory and HOME and TMPDIR inside the test's temporary folder, on the CPU.

Two explicit tables change what runs, and nothing else does: SKIP leaves out commands that cannot run
here, and SHRINK appends options that cut a command's budget (steps, minutes, model size) so that the
whole tour takes a couple of minutes on two cores; the options go last, so they win over the README's.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SKIP = {
    r"^pip install ": "installs packages, and the test runs in the environment already installed",
    r"^python -m pytest\b": "the test suite itself, this test included",
    r"^torchrun .*--nproc_per_node 8\b": "needs 8 GPUs",
    r"^python benchmarks/": "benchmarks are covered separately: each takes minutes and prints JSON figures",
    r"^RAY_ADDRESS=ray://head\b": "needs a Ray cluster",
    r"^torchrun --nnodes\b": "needs several machines",
    r"^gptlab convert /shared/": "a cluster's shared filesystem, and vLLM",
}
"""Commands (after joining `\\` continuations and removing comments) that this test leaves out, and why."""

SHRINK = {
    r"^gptlab quickstart\b": "--minutes 0.01 --model tiny --seq-len 128 --batch-size 4 --vocab-size 512",
    r"\bgptlab train\b": "--max-steps 4 --eval-every 2 --save-every 2 --eval-windows 4 --sample-tokens 4 --batch-size 4",
    r"\bgptlab train\b.* --resume\b": "--max-steps 6",  # the README resumes a killed run; here it has finished
    r"^gptlab finetune\b": "--max-steps 4 --batch-size 8",
    r"^gptlab eval\b": "--limit 4",
    r"^gptlab scale sweep\b": "--flops 2e8 2e10 --tokens-per-param 0.5 --seq-len 32 --eval-windows 4 --threads 1",
}
"""Options appended to matching commands so that the tour fits in CI's time; the README's are real ones."""


def readme_blocks(text: str) -> list[tuple[int, str, str]]:
    """(line number, language, body) of each ```bash and ```python block."""
    return [
        (text.count("\n", 0, m.start()) + 2, m.group(1), m.group(2))
        for m in re.finditer(r"^```(bash|python)\n(.*?)^```", text, re.M | re.S)
    ]


def split_comment(line: str) -> tuple[str, str]:
    """A shell line's command and its trailing `# comment` (a # outside quotes, after a space)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i:]
    return line.rstrip(), ""


def adapt(block: str) -> str:
    """The block as this test runs it: continuations joined, SKIP commented out, SHRINK appended;
    heredoc bodies pass through untouched."""
    lines, out, heredoc = block.splitlines(), [], None
    while lines:
        line = lines.pop(0)
        if heredoc:
            out.append(line)
            heredoc = None if line == heredoc else heredoc
            continue
        while line.endswith("\\") and lines:
            line = line[:-1].rstrip() + " " + lines.pop(0).strip()
        command, comment = split_comment(line)
        if match := re.search(r"<<-?\s*'?(\w+)'?", command):
            heredoc = match.group(1)
        skipped = [why for pattern, why in SKIP.items() if re.search(pattern, command)]
        if skipped:
            out.append(f"# skipped, {skipped[0]}: {command}")
            continue
        extra = [options for pattern, options in SHRINK.items() if re.search(pattern, command)]
        out.append(" ".join([command, *extra, comment]).rstrip())
    return "\n".join(out) + "\n"


def fresh_clone(destination: Path) -> Path:
    """The repository's files as a clone of it would hold them (the working tree's versions)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    if listed.returncode != 0:
        pytest.fail(f"needs a git checkout (a clone) to know which files a clone holds: {listed.stderr.strip()}",
                    pytrace=False)
    for name in filter(None, listed.stdout.split("\0")):
        source = REPO / name
        if source.is_file():  # deleted but not yet committed: a clone would not have it
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


def test_readme_commands_run_on_a_fresh_clone(tmp_path):
    clone = fresh_clone(tmp_path / "gptlab")
    assert not (clone.parent / "shared").exists() and not (clone / ".cache").exists()
    for name in ("home", "tmp"):
        (tmp_path / name).mkdir()
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "TMPDIR": str(tmp_path / "tmp"),
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONPATH": str(clone / "src"),  # the clone's code, not the checkout's editable install
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    env.pop("RAY_ADDRESS", None)
    blocks = readme_blocks((clone / "README.md").read_text(encoding="utf-8"))
    assert sum(language == "bash" for _, language, _ in blocks) >= 8, "README.md has lost its command blocks"
    for number, (line, language, body) in enumerate(blocks):
        if language == "bash":
            argv = ["bash", "-xeuo", "pipefail", "-c", adapt(body)]
        else:
            script = tmp_path / f"readme_block_{number}.py"
            script.write_text(body, encoding="utf-8")
            argv = [sys.executable, str(script)]
        result = subprocess.run(argv, cwd=clone, env=env, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            traced = [row[2:] for row in result.stderr.splitlines() if row.startswith("+ ")]
            failing = traced[-1] if traced else body.strip()
            pytest.fail(
                f"README.md line {line} ({language} block) exited {result.returncode} at:\n  {failing}\n"
                f"stderr tail:\n{result.stderr[-3000:]}",
                pytrace=False,
            )

    # Each data stage found something to do in the demo corpus.
    stats = {stage: json.loads((clone / "out" / stage / "stats.json").read_text()) for stage in ("filtered", "dedup", "clean")}
    assert stats["filtered"]["malformed"] == 1
    for stage in ("filtered", "dedup"):
        assert 0 < stats[stage]["documents_out"] < stats[stage]["documents_in"], stage
    assert stats["clean"]["chars_removed"] > 0
    removed = [json.loads(row) for path in (clone / "out" / "dedup" / "removed").iterdir() for row in gzip.open(path, "rt")]
    assert any("near-dup" in row["id"] or "webtext-copy" in row["id"] for row in removed)
