"""What several test files share, in one place: running the `gptlab` command and checking its errors,
training runs killed and compared, random weights for conversions, and a served model.

`gptlab_cli` starts a real process, as a user does (exit status, both streams, signals); `run_cli`
calls the same entry point in this process, for the many bad-input checks that need no interpreter
start-up. Both return a `subprocess.CompletedProcess`, so `assert_one_line_error` checks either.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import torch
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from safetensors.torch import load_file

import gptlab
from gptlab.model import GPT, preset
from gptlab.tokenizer import train_tokenizer_on_texts

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


# --- training runs: tiny, killed, resumed and compared ------------------------------------------------------

TINY_TRAIN = ["--model", "tiny", "--n-layer", "2", "--d-model", "32", "--n-head", "2", "--seq-len", "32",
        "--batch-size", "8", "--threads", "1", "--no-progress", "--log-every", "1", "--sample-tokens", "0"]


def train_cli(*args, **kwargs):
    return gptlab_cli("train", *args, **kwargs)


def losses(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def kill_at(process: subprocess.Popen, checkpoint: Path) -> None:
    """SIGKILL a training run as soon as `checkpoint` exists, before the run can finish."""
    deadline = time.time() + 300
    while not checkpoint.is_dir():
        assert process.poll() is None and time.time() < deadline, "run ended before the checkpoint"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (checkpoint.parents[1] / "final").exists(), "the run finished before it was killed"


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def rewind(out: Path, step: int) -> None:
    """Leave the run as a kill just after its checkpoint of `step` would: later checkpoints and final/ gone."""
    for later in [p for p in (out / "checkpoints").glob("step_*") if int(p.name.split("_")[1]) > step]:
        shutil.rmtree(later)
    for finished in ("final", "best"):
        shutil.rmtree(out / finished, ignore_errors=True)


# --- converted models ----------------------------------------------------------------------------------------

@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    """Non-trivial values everywhere (biases and LayerNorms too), so no mapping passes by accident."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=g)
        p.copy_(1 + 0.1 * noise if ".ln" in f".{name}" and name.endswith("weight") else scale * noise)
    return model.eval()


# --- a served model ------------------------------------------------------------------------------------------

WORDS = "red green blue apple pear plum cat dog bird one two three north south east west sun moon star river".split()
COLORS = ["red", "green", "blue", "yellow"]
N_CTX = 2048
NAME = "tiny"


def make_checkpoint(root: Path) -> Path:
    """A random-weight GPT-2-shaped model with a small BPE that never writes <|endoftext|> by itself: its
    final LayerNorm's bias and the token's (tied) embedding push that logit far down, so every
    request runs to the length it asks for."""
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(12)) + "?\n" for _ in range(400)] + COLORS
    tokenizer = train_tokenizer_on_texts(texts, 320, progress=False)
    torch.manual_seed(0)
    model = GPT(preset("tiny", vocab_size=tokenizer.vocab_size, n_ctx=N_CTX, init_std=0.2))
    with torch.no_grad():
        model.ln_f.bias.fill_(0.1)
        model.wte.weight[tokenizer.eot_id] = -2.0
    return gptlab.save(root / NAME, model, tokenizer)


@contextmanager
def serving(app):
    """Run `app` with uvicorn in a thread on a free loopback port; yields its base URL."""
    # proto given explicitly: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and without it
    # every small response waits 40 ms for a delayed ACK
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def metric(base: str, name: str, key: str | None = None, **labels) -> float:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    for family in text_string_to_metric_families(httpx.get(f"{base}/metrics", headers=headers).text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise KeyError(name)
