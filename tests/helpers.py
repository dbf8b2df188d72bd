"""The one way tests run the `gptlab` command and check its errors.

`gptlab_cli` starts a real process, as a user does (exit status, both streams, signals); `run_cli`
calls the same entry point in this process, for the many bad-input checks that need no interpreter
start-up. Both return a `subprocess.CompletedProcess`, so `assert_one_line_error` checks either.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GPTLAB = [sys.executable, "-m", "gptlab"]


def gptlab_cli(*args, input: str | None = None, timeout: float = 600, cwd: Path | str | None = None,
               env: dict[str, str] | None = None, wait: bool = True, capture: bool = True,
               new_session: bool = False):
    """`gptlab ARGS` in a new process; with wait=False the running `Popen` (stdout and stderr piped).

    capture=False sends both streams to /dev/null: a run that nobody reads must not stall on a full pipe.
    new_session=True starts it in a session of its own, so `os.killpg(process.pid, ...)` reaches its workers.
    """
    cmd = [*GPTLAB, *map(str, args)]
    full_env = {**os.environ, **env} if env else None
    stream = subprocess.PIPE if capture else subprocess.DEVNULL
    options = dict(stdout=stream, stderr=stream, text=True, cwd=cwd, env=full_env, start_new_session=new_session)
    if not wait:
        return subprocess.Popen(cmd, **options)
    return subprocess.run(cmd, input=input, timeout=timeout, **options)


def run_cli(capsys, *args) -> subprocess.CompletedProcess:
    """`gptlab ARGS` in this process (no interpreter start-up): exit status, stdout and stderr as a process's."""
    from gptlab.cli.main import main

    argv = [*map(str, args)]
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out, err)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str, code: int | None = None) -> str:
    """The command failed with exactly one line on stderr, `gptlab: error: ...` (or argparse's
    `gptlab ...: error: ...` after its usage line), holding every fragment; nothing like a traceback.
    Returns the error line."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0, f"exit 0; stdout: {result.stdout[-2000:]!r}; stderr: {result.stderr[-2000:]!r}"
    if code is not None:
        assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    if lines and lines[0].startswith("usage:"):  # argparse: usage lines, then one error line
        lines = [line for line in lines if ": error: " in line]
    else:
        assert result.returncode == 1, (result.returncode, result.stderr)
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("gptlab") and ": error: " in line, line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line
