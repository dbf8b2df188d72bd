"""`gptlab --help` and every verb's --help answer at once: no heavy library is imported to print them.

Start-up time is checked by what gets imported, not by the clock (benchmarks/cli_startup.py times it).
"""

import json
import subprocess
import sys

HEAVY = ("torch", "datatrove", "sklearn", "transformers", "matplotlib", "gguf")

# Runs in a fresh interpreter: walk the parser tree, print every command's --help, and record
# after each one which heavy modules have been imported so far.
PROBE = f"""
import argparse, contextlib, io, json, sys
from gptlab.cli.main import build_parser

def commands(parser, path=()):
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))

seen = {{}}
for path in list(commands(build_parser())):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        build_parser().parse_args([*path, "--help"])
    seen[" ".join(path)] = [m for m in {HEAVY!r} if m in sys.modules]
print(json.dumps(seen))
"""


def test_help_of_every_command_imports_no_heavy_library():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert {"", "train", "generate", "predict", "model info", "tokenizer train", "data dedup", "data classifier train"} <= {*seen}
    assert {path: heavy for path, heavy in seen.items() if heavy} == {}
