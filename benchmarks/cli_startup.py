"""Start-up time of the `gptlab` command against importing PyTorch, in fresh interpreters.

Times `gptlab --help` and `gptlab train --help` (run as `python -m gptlab`, so no launcher script
is counted) beside the peer `python -c "import torch"`, which every real verb pays for anyway, and
a bare `python -c pass` for the interpreter itself. Each figure is the best of --repeat runs, the
commands interleaved so that machine noise hits them alike. Prints one JSON object.

    python benchmarks/cli_startup.py [--repeat 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

COMMANDS = {
    "gptlab_help": ["-m", "gptlab", "--help"],
    "gptlab_train_help": ["-m", "gptlab", "train", "--help"],
    "import_torch": ["-c", "import torch"],
    "python": ["-c", "pass"],
}


def seconds(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10, help="runs per command; the best counts")
    args = parser.parse_args()

    best = dict.fromkeys(COMMANDS, float("inf"))
    for _ in range(args.repeat):
        for name, command in COMMANDS.items():
            best[name] = min(best[name], seconds(command))

    torch_s = best["import_torch"]
    print(json.dumps({
        "benchmark": "cli_startup",
        "repeat": args.repeat,
        "peer": 'python -c "import torch"',
        **{f"{name}_s": round(s, 3) for name, s in best.items()},
        "ratio_help": round(best["gptlab_help"] / torch_s, 3),
        "ratio_train_help": round(best["gptlab_train_help"] / torch_s, 3),
        "goals": {"gptlab_help_s": "< 0.5", "gptlab_train_help_s": "< 0.5", "ratio_help": "<= 0.25"},
    }, indent=2))


if __name__ == "__main__":
    main()
