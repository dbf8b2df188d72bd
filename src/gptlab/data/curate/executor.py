"""Running curation stages over file shards: datatrove's local multiprocessing executor by
default, its Ray executor on a cluster.

A stage's output folder holds its shards (`00000.jsonl.gz`, ...), `removed/` and `malformed/`
listings, `stats.json`, and `.work/`: datatrove's completion markers plus intermediate results.
Rerunning the same command skips every finished task and phase, and a killed task is redone from
its start (its shard is only renamed into place when complete), so the output equals that of an
uninterrupted run.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# datatrove logs every task to the console through loguru, whose default level this sets when it
# is first imported; progress bars and the stage summary say what matters. LOGURU_LEVEL overrides.
os.environ.setdefault("LOGURU_LEVEL", "WARNING")

import multiprocess.context  # noqa: E402
from datatrove.data import Document, DocumentsPipeline  # noqa: E402
from datatrove.executor import LocalPipelineExecutor  # noqa: E402
from datatrove.pipeline.base import PipelineStep  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from gptlab import atomic  # noqa: E402
from gptlab.cluster import check_backend, connect_ray  # noqa: E402
from gptlab.data.curate.documents import ShardWriter, shard_name  # noqa: E402
from gptlab.errors import GptlabError  # noqa: E402
from gptlab.files import read_json  # noqa: E402
from gptlab.sources import STAGE_SETTINGS, STAGE_STATS, STAGE_WORK, Problem, read_file  # noqa: E402

REMOVED = "removed"
"""Metadata key a step sets, with the reason, on a document it removes."""


@dataclass(frozen=True)
class Executor:
    """Where a stage's tasks run, and how many at once."""

    backend: str = "local"
    """`local` (multiprocessing on this machine) or `ray` (a running Ray cluster, or a local one)."""
    workers: int = 0
    """Tasks run at once; 0 means one per CPU core."""

    def __post_init__(self) -> None:
        check_backend(self.backend)

    def start(self) -> None:
        """Join the Ray cluster now when the backend is Ray (once; a stage's phases call it again), so that
        an unreachable cluster is reported before any work."""
        if self.backend == "ray":
            connect_ray()


class Workspace:
    """One stage's output folder and the settings it was made with."""

    def __init__(self, output: str | os.PathLike, settings: dict[str, Any]):
        self.output = Path(output)
        if self.output.exists() and not self.output.is_dir():
            raise GptlabError(f"the output {self.output} is a file; a stage writes a folder")
        self.work = self.output / STAGE_WORK
        self.malformed = self.output / "malformed"
        saved = self.work / STAGE_SETTINGS
        if saved.is_file():
            if read_json(saved) != json.loads(json.dumps(settings)):
                raise GptlabError(
                    f"{self.output} holds the output of a run with other settings or inputs; choose another output folder"
                )
        else:
            atomic.write_text(saved, json.dumps(settings, indent=2) + "\n")
        for stale in list(self.output.rglob(".*.tmp")):  # left by a write that a kill cut short
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)

    def run(self, phase: str, pipeline: list[PipelineStep], tasks: int, executor: Executor) -> None:
        """Run `pipeline` as `tasks` tasks; tasks finished by an earlier run are skipped."""
        logs = self.work / phase
        workers = min(tasks, executor.workers or os.cpu_count() or 1)
        if executor.backend == "ray":
            from datatrove.executor import RayPipelineExecutor

            executor.start()
            runner = RayPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=str(logs))
        else:
            runner = _QuietLocalExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=str(logs))
        with _TaskProgress(logs / "completions", tasks, phase):
            runner.run()
        done = len(list((logs / "completions").glob("*")))
        if done < tasks:
            raise GptlabError(f"{phase}: only {done} of {tasks} tasks finished; see the logs in {logs / 'logs'}")

    def once(self, name: str, make: Callable[[Path], None]) -> Path:
        """A single-process phase's result file, made by `make(path)` unless an earlier run finished it."""
        path = self.work / name
        if not path.exists():
            make(path)
        return path

    def finish(self, stage: str, **extra: Any) -> dict[str, Any]:
        """Sum the tasks' counters, add `extra`, and write them to stats.json; input of which
        nothing at all was readable is an error."""
        totals: Counter[str] = Counter()
        removed: Counter[str] = Counter()
        for path in sorted(self.work.rglob("counts/*.json")):
            if "reference" in path.relative_to(self.work).parts:
                continue
            counts = read_json(path)
            removed.update(counts.pop("removed_by_reason", {}))
            totals.update(counts)
        if totals["malformed"] and not totals["documents_in"]:
            bad = f"{totals['malformed']:,} bad record(s) or file(s)"
            raise GptlabError(f"nothing readable in the input: {bad}, listed in {self.malformed}")
        stats = {
            "stage": stage,
            **dict(sorted(totals.items())),
            "removed_by_reason": dict(removed.most_common()),
            **extra,
        }
        atomic.write_text(self.output / STAGE_STATS, json.dumps(stats, indent=2) + "\n")
        return stats


def _tie_to(owner: int) -> None:
    """End this process the moment process `owner` ends, however it ends (SIGKILL included).

    A pidfd becomes readable when its process exits, whoever its parent is: pool workers are
    children of datatrove's forkserver, not of the stage process. Without pidfds (not Linux 5.3+)
    nothing is tied.
    """
    try:
        lifeline = os.pidfd_open(owner)
    except ProcessLookupError:  # ended already
        os.kill(os.getpid(), signal.SIGKILL)
    except (AttributeError, OSError):
        return

    def watch() -> None:
        select.select([lifeline], [], [])
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="gptlab-lifeline", daemon=True).start()


_running_for: int | None = None
"""The stage process while its local executor runs; processes forked meanwhile (datatrove's
Manager, and anything they fork) are tied to it."""


def _tie_forked_child() -> None:
    if _running_for is not None:
        _tie_to(_running_for)


os.register_at_fork(after_in_child=_tie_forked_child)


class _TiedForkServerContext(multiprocess.context.ForkServerContext):
    """datatrove's default start method, each pool worker tied to the process that made the pool."""

    def Pool(self, processes: int | None = None):  # noqa: N802 (multiprocessing's name)
        return super().Pool(processes, _tie_to, (os.getpid(),))


_TIED_START = "gptlab-forkserver"
multiprocess.context._concrete_contexts[_TIED_START] = _TiedForkServerContext()  # how datatrove finds contexts


class _QuietLocalExecutor(LocalPipelineExecutor):
    """datatrove's local executor whose processes never outlive the stage: a SIGKILLed stage left
    its Manager and pool workers running. And it logs a task's progress to the console only for
    local_rank 0, a label for logs."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, start_method=_TIED_START, **kwargs)

    def run(self):
        global _running_for
        _running_for = os.getpid()
        try:
            return super().run()
        finally:
            _running_for = None

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
        return super()._run_for_rank(rank, local_rank + 1, node_rank)


class _TaskProgress:
    """A progress bar over finished tasks, read from datatrove's completion markers."""

    def __init__(self, completions: Path, total: int, desc: str):
        self.completions, self.total, self.desc = completions, total, desc
        self._stop = threading.Event()

    def __enter__(self) -> _TaskProgress:
        self.bar = tqdm(total=self.total, desc=self.desc, unit="task", disable=None)  # a bar only on a terminal
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _count(self) -> int:
        return len(list(self.completions.glob("*"))) if self.completions.is_dir() else 0

    def _poll(self) -> None:
        while not self._stop.wait(0.5):
            self.bar.update(self._count() - self.bar.n)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join()
        self.bar.update(self._count() - self.bar.n)
        self.bar.close()


class ReadInputs(PipelineStep):
    """Task `rank` reads files[rank::world_size]; records skipped or repaired are listed and counted."""

    name, type = "read inputs", "Reader"

    def __init__(self, files: Sequence[str], work: str, malformed_dir: str):
        super().__init__()
        self.files, self.work, self.malformed_dir = list(files), work, malformed_dir

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        problems: list[Problem] = []
        counts = Counter()
        for path in self.files[rank::world_size]:
            for document in read_file(path, problems.append):
                counts["documents_in"] += 1
                counts["bytes_in"] += len(document.text.encode("utf-8"))
                self.stat_update("documents_in")
                yield Document(text=document.text, id=document.id, metadata=dict(document.metadata))
        counts["malformed"] = sum(not p.kept for p in problems)
        counts["repaired"] = sum(p.kept for p in problems)
        write_counts(self.work, f"{rank:05d}.read", counts)
        lines = "".join(json.dumps(asdict(p)) + "\n" for p in problems)
        atomic.write_text(Path(self.malformed_dir) / f"{rank:05d}.jsonl", lines)


class WriteOutputs(PipelineStep):
    """Kept documents to the task's shard; removed ones listed with their reason (and text if asked).

    With `pieces`, the step before cuts documents into pieces and counts the documents it keeps
    (documents_out) itself; the records written here are counted as pieces_out."""

    name, type = "write outputs", "Writer"

    def __init__(self, output: str, fmt: str, work: str, removed_text: bool = False, pieces: bool = False):
        super().__init__()
        self.output, self.fmt, self.work, self.removed_text = output, fmt, work, removed_text
        self.written = "pieces_out" if pieces else "documents_out"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        kept = ShardWriter(Path(self.output) / shard_name(rank, self.fmt), self.fmt)
        removed = ShardWriter(Path(self.output) / REMOVED / shard_name(rank, self.fmt), self.fmt)
        counts, reasons = Counter(), Counter()
        for document in data:
            reason = document.metadata.get(REMOVED)
            if reason is None:
                kept.write(document)
                counts[self.written] += 1
                counts["bytes_out"] += len(document.text.encode("utf-8"))
            else:
                removed.write(document, text=self.removed_text)
                counts["documents_removed"] += 1
                reasons[str(reason)] += 1
        kept.close()
        removed.close()
        write_counts(self.work, f"{rank:05d}.write", {**counts, "removed_by_reason": reasons})
        yield from ()


def write_counts(work: str | os.PathLike, name: str, counts: dict[str, Any]) -> None:
    atomic.write_text(Path(work) / "counts" / f"{name}.json", json.dumps(dict(counts)) + "\n")
