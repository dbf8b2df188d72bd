"""Tasks are lm-evaluation-harness's own: its TaskManager reads the YAML (`include`, `!function`,
filters, `process_results`, groups) and builds the Task objects that its evaluator runs.

gptlab adds two things on the way in: built-in task names (GPT-3's synthetic tasks, written as task
files under BUILTIN_DIR) and local data files found beside the YAML as well as from the working
directory. Every problem with a task file is one line naming it, and nothing here imports PyTorch,
so a bad file fails before a model is loaded.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from gptlab.errors import GptlabError
from gptlab.eval.text_metrics import f1

if TYPE_CHECKING:
    from lm_eval.api.group import Group
    from lm_eval.api.task import Task

FEWSHOT_SEED = 1234
"""lm-evaluation-harness's default `fewshot_random_seed`."""
BUILTIN_DIR = Path("runs") / "eval" / "tasks"
"""Where `--task NAME` writes a built-in (GPT-3 synthetic) task's YAML and data, to read like any other."""


@dataclass
class LoadedTasks:
    """The harness's own objects for the tasks asked for: leaf tasks by name, groups by name, and the
    YAML file each leaf came from."""

    tasks: dict[str, Task]
    groups: dict[str, Group]
    group_map: dict[str, list[str]]
    sources: dict[str, str]

    def task_dict(self, names: Sequence[str]) -> dict[str, Any]:
        """The evaluator's input for some of the tasks (groups only where all their leaves are in)."""
        groups = {g: group for g, group in self.groups.items()
                  if all(t in names for t in _leaves(g, self.group_map, self.tasks))}
        return {"tasks": {n: self.tasks[n] for n in names}, "groups": groups,
                "group_map": {g: self.group_map[g] for g in groups}}


def _leaves(group: str, group_map: dict[str, list[str]], tasks: dict[str, Any]) -> list[str]:
    return [leaf for child in group_map.get(group, [])
            for leaf in ([child] if child in tasks else _leaves(child, group_map, tasks))]


def resolve(name_or_path: str) -> Path:
    """A task YAML path, or a built-in task's, written (the same every time: seeded) under BUILTIN_DIR."""
    from gptlab.eval.synthetic import SYNTHETIC_TASKS, synthetic_task

    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise GptlabError(f"task file {path} not found")
        return path
    if name_or_path in SYNTHETIC_TASKS:
        return synthetic_task(name_or_path, BUILTIN_DIR / name_or_path)
    raise GptlabError(f"unknown task {name_or_path!r}: pass a task YAML file or a built-in task "
                      f"({', '.join(SYNTHETIC_TASKS)})")


@contextlib.contextmanager
def quiet_harness(quiet: bool = True) -> Iterator[None]:
    """The harness logs and draws progress bars as it builds tasks and prompts; gptlab speaks for itself."""
    if not quiet:
        yield
        return
    loggers = [logging.getLogger(name) for name in ("lm_eval", "datasets")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def load_tasks(names_or_paths: Sequence[str]) -> LoadedTasks:
    """Each task file (or built-in name) loaded by the harness's TaskManager, data files read."""
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._yaml_loader import load_yaml

    paths = [resolve(t) for t in names_or_paths]
    loaded = LoadedTasks({}, {}, {}, {})
    for path in paths:
        try:
            config = load_yaml(path)
        except Exception as e:  # the harness's loader: YAML errors, missing includes or !function modules
            raise GptlabError(f"{path}: {harness_error(e)}") from None
        # a task is loaded from its config, read above; a group by its name from an index of the tasks beside
        # it (by its path, the harness takes a group file's task list for its name)
        group = "group" in config
        spec: str | dict[str, Any] = str(config["group"]) if group else _with_data_files(config, path)
        try:
            with quiet_harness():
                manager = TaskManager(include_path=str(path.parent) if group else None, include_defaults=False)
                found = manager.load([spec])
        except GptlabError:
            raise
        except Exception as e:  # a bad option, a template, a data file the harness cannot read, ...
            raise GptlabError(f"{path}: {harness_error(e)}") from None
        repeated = sorted(set(found["tasks"]) & set(loaded.tasks))
        if repeated:
            raise GptlabError(f"task {', '.join(repeated)} given twice: each task's results go under its name")
        loaded.tasks.update(found["tasks"])
        loaded.groups.update(found["groups"])
        loaded.group_map.update(found["group_map"])
        loaded.sources.update({name: str(path) for name in found["tasks"]})
    for name, task in loaded.tasks.items():
        _answer_f1(task)
        if len(task.eval_docs) == 0:  # e.g. process_docs dropped them all
            split = task.config.test_split or task.config.validation_split
            raise GptlabError(f"{loaded.sources[name]}: split {split!r} has no documents")
    return loaded


def _answer_f1(task: Task) -> None:
    """A generate_until task naming `f1` gets SQuAD's token F1 of the answer (GPT-3's for reading
    comprehension): the harness's own `f1` is a multiple-choice class F1 that cannot score free text."""
    from lm_eval.api.metrics import mean

    if task.OUTPUT_TYPE == "generate_until" and "f1" in task._metric_fn_list:
        task._metric_fn_list["f1"] = _squad_f1
        task._aggregation_list["f1"] = mean


def _squad_f1(references: list[str], predictions: list[str], **_: Any) -> float:
    return f1(predictions[0], references[0])


def harness_error(error: BaseException) -> str:
    """One line for what the harness, or a task's template or Python hook, raised."""
    if isinstance(error, jinja2.TemplateSyntaxError):
        return f"a template is not a valid Jinja template ({error.message}, line {error.lineno})"
    if isinstance(error, jinja2.UndefinedError):
        return f"{error.message}; the row lacks a field the template needs"
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _with_data_files(config: dict[str, Any], yaml_path: Path) -> dict[str, Any]:
    """The task's config with each local data file found: relative to the working directory, as the
    harness (through `datasets`) reads it, else relative to the YAML file's folder, so a task folder
    can move. A missing file is one line here rather than a `datasets` traceback later."""
    kwargs = config.get("dataset_kwargs") or {}
    if config.get("dataset_path") != "json" or "data_files" not in kwargs:
        return config
    data_files = kwargs["data_files"]
    found = {str(split): _find_all(files, yaml_path) for split, files in
             (data_files.items() if isinstance(data_files, dict) else [("train", data_files)])}
    for split, files in found.items():
        if not _check_rows(split, files):
            raise GptlabError(f"{yaml_path}: split {split!r} has no documents")
    return {**config, "dataset_kwargs": {**kwargs, "data_files": found if isinstance(data_files, dict) else
                                         found["train"]}}


def _check_rows(split: str, files: list[str]) -> int:
    """Each row a JSON object with every field of the split's first row (`datasets` would fail on the
    first in many lines, and read a missing field as null, which a template renders as "None"); the
    number of rows."""
    fields: set[str] | None = None
    number = 0
    for file in files:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise GptlabError(f"cannot read {file}: {e}") from None
        if text.lstrip().startswith("["):
            try:
                rows = json.loads(text)
            except json.JSONDecodeError as e:
                raise GptlabError(f"{file} is not valid JSON: {e}") from None
            lines = list(enumerate(rows if isinstance(rows, list) else [rows], 1))
        else:
            lines = []
            for line_number, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        lines.append((line_number, json.loads(line)))
                    except json.JSONDecodeError as e:
                        raise GptlabError(f"{file}:{line_number} is not valid JSON ({e.msg})") from None
        for line_number, row in lines:
            number += 1
            if not isinstance(row, dict):
                raise GptlabError(f"{file}:{line_number} must be a JSON object")
            fields = set(row) if fields is None else fields
            if missing := sorted(fields - set(row)):
                raise GptlabError(f"{file}: {split} row {number}: {missing[0]!r} is undefined (the rows before it "
                                  f"have it; lm-evaluation-harness would read it as null)")
    return number


def _find_all(files: str | Sequence[str], yaml_path: Path) -> list[str]:
    return [str(p) for pattern in ([files] if isinstance(files, str) else files)
            for p in _find(str(pattern), yaml_path)]


def _find(pattern: str, yaml_path: Path) -> list[Path]:
    for base in (Path.cwd(), yaml_path.parent):
        full = Path(pattern) if Path(pattern).is_absolute() else base / pattern
        found = sorted(Path(p) for p in glob.glob(str(full))) if glob.has_magic(pattern) else [full] * full.is_file()
        if found:
            return found
    raise GptlabError(f"{yaml_path}: data file {pattern} not found (looked in {Path.cwd()} and {yaml_path.parent})")
