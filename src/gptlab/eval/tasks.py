"""Tasks as data: lm-evaluation-harness task YAML over local JSON/JSONL files.

One task file runs in both tools and gives the same numbers, so the prompt is built by the
harness's rules: the description, then K solved examples (`text + target_delimiter + answer +
fewshot_delimiter`), then the question; few-shot examples drawn by one `random.Random(1234)` per
task and run, document after document in evaluation order, from the few-shot split (the explicit
`fewshot_split`, else training, else validation, else test); when the few-shot split is the one
evaluated, K+1 are drawn and the evaluated document is dropped.
"""

from __future__ import annotations

import ast
import glob
import json
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

from gptlab.errors import GptlabError

OUTPUT_TYPES = ("multiple_choice", "loglikelihood", "loglikelihood_rolling", "generate_until")
FEWSHOT_SEED = 1234
"""lm-evaluation-harness's default `fewshot_random_seed`."""
SAMPLERS = ("default", "first_n")
BUILTIN_DIR = Path("runs") / "eval" / "tasks"
"""Where `--task NAME` writes a built-in (GPT-3 synthetic) task's YAML and data, to read like any other."""

# keys that describe a task without changing its numbers here
_IGNORED = {"tag", "task_alias", "dataset_name", "metadata", "should_decontaminate", "doc_to_decontamination_query",
            "num_fewshot", "repeats", "group", "unsafe_code"}
_SUPPORTED = {"task", "dataset_path", "dataset_kwargs", "training_split", "validation_split", "test_split",
              "fewshot_split", "output_type", "doc_to_text", "doc_to_target", "doc_to_choice", "description",
              "target_delimiter", "fewshot_delimiter", "fewshot_config", "generation_kwargs", "metric_list"}
_FEWSHOT_KEYS = {"sampler", "split", "samples", "doc_to_text", "doc_to_target", "doc_to_choice", "fewshot_delimiter",
                 "target_delimiter"}


def _regex_replace(text: str, pattern: str, repl: str, count: int = 0) -> str:
    return re.sub(pattern, repl, text, count=count)


# the harness renders with StrictUndefined and keeps a template's trailing newline; so do we
_JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
_JINJA.filters["regex_replace"] = _regex_replace


@dataclass
class Prompt:
    """One evaluated document: its context, and what gets scored or generated after it."""

    doc_index: int
    context: str
    continuations: list[str] = field(default_factory=list)
    """multiple_choice: target_delimiter + each choice; loglikelihood: the target."""
    choices: list[str] = field(default_factory=list)
    gold: list[int] = field(default_factory=list)
    """Indices of the correct choices (multiple_choice)."""
    target: str = ""
    """loglikelihood_rolling: the text; generate_until: the reference answer."""
    shots: int = 0


@dataclass
class Task:
    name: str
    source: str
    output_type: str
    config: dict[str, Any]
    splits: dict[str, list[dict[str, Any]]]
    eval_split: str
    fewshot_split: str | None
    """Name of the split shots come from; None when they are listed in the YAML."""
    fewshot_docs: list[dict[str, Any]]
    fewshot_source: str
    """Where the shots come from, for messages: "split 'train'" or "fewshot_config.samples"."""
    features: set[str]
    metrics: dict[str, dict[str, Any]]
    """Metric name -> its options from metric_list (exact_match's ignore_case, ...)."""
    generation_kwargs: dict[str, Any] = field(default_factory=dict)
    _templates: dict[str, jinja2.Template] = field(default_factory=dict)
    _rows: dict[int, int] = field(default_factory=dict)
    """id of a few-shot document -> its row number, to name it in errors."""

    def __post_init__(self) -> None:
        self._rows = {id(doc): i + 1 for i, doc in enumerate(self.fewshot_docs)}

    @property
    def docs(self) -> list[dict[str, Any]]:
        return self.splits[self.eval_split]

    @property
    def excludes_eval_doc(self) -> bool:
        """The harness drops the evaluated document from its draw when the few-shot split name equals
        `test_split`; both unset counts as equal, and then K+1 are drawn too."""
        return self.fewshot_split == self.config.get("test_split")

    def fewshot(self, key: str) -> Any:
        """A few-shot formatting option: `fewshot_config` overrides the task's own."""
        overrides = self.config.get("fewshot_config") or {}
        return overrides[key] if overrides.get(key) is not None else self.config.get(key, _DEFAULTS.get(key))

    # --- rendering, as the harness resolves each option ---------------------------------------

    def render(self, template: str, doc: Mapping[str, Any], what: str, where: str) -> str:
        try:
            compiled = self._templates.get(template) or self._templates.setdefault(template, _JINJA.from_string(template))
        except jinja2.TemplateSyntaxError as e:
            raise GptlabError(f"task {self.name}: {what} is not a valid Jinja template ({e.message}, line {e.lineno})") from None
        try:
            return compiled.render(**doc)
        except jinja2.UndefinedError as e:
            raise GptlabError(f"task {self.name}: {what} at {where}: {e.message}; the row lacks a field the template needs") from None
        except jinja2.TemplateError as e:
            raise GptlabError(f"task {self.name}: {what} at {where}: {e.message or type(e).__name__}") from None

    def doc_to_text(self, doc: Mapping[str, Any], where: str, spec: Any = None) -> str:
        spec = self.config.get("doc_to_text") if spec is None else spec
        if isinstance(spec, str):
            text = doc[spec] if spec in self.features else self.render(spec, doc, "doc_to_text", where)
            if isinstance(text, str) and not (text.isdigit() and self.config.get("doc_to_choice") is not None):
                return text
        raise GptlabError(f"task {self.name}: doc_to_text must give text at {where}; "
                          f"a choice index (one context per choice, as in Winogrande) is not supported")

    def doc_to_target(self, doc: Mapping[str, Any], where: str, spec: Any = None) -> int | str | list:
        spec = self.config.get("doc_to_target") if spec is None else spec
        if isinstance(spec, (int, list)):
            return spec
        if not isinstance(spec, str):
            raise GptlabError(f"task {self.name}: doc_to_target must be a template, a field name or an index")
        if spec in self.features:
            return doc[spec]
        text = self.render(spec, doc, "doc_to_target", where)
        if text.isdigit() and self.config.get("doc_to_choice") is not None:
            return int(text)
        if len(text) >= 2 and text[0] == "[" and text[-1] == "]":
            try:
                return ast.literal_eval(text)
            except (SyntaxError, ValueError):
                return text
        return text

    def doc_to_choice(self, doc: Mapping[str, Any], where: str, spec: Any = None) -> list[str]:
        spec = self.config.get("doc_to_choice") if spec is None else spec
        if isinstance(spec, dict):
            choices = list(spec.values())
        elif isinstance(spec, str) and spec in self.features:
            choices = doc[spec]
        elif isinstance(spec, str):
            text = self.render(spec, doc, "doc_to_choice", where)
            try:
                choices = ast.literal_eval(text)
            except (SyntaxError, ValueError):
                raise GptlabError(f"task {self.name}: doc_to_choice at {where} gave {text[:60]!r}, not a list") from None
        else:
            choices = spec
        if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
            raise GptlabError(f"task {self.name}: doc_to_choice at {where} must give a non-empty list of strings")
        return choices

    def description(self, doc: Mapping[str, Any], where: str) -> str:
        spec = self.config.get("description") or ""
        if not spec:
            return ""
        return doc[spec] if spec in doc else self.render(spec, doc, "description", where)

    # --- prompts --------------------------------------------------------------------------------

    @property
    def max_shots(self) -> int:
        """The most examples a prompt can hold: the pool, less one where the harness draws K+1 to leave
        out the evaluated document (see excludes_eval_doc; `first_n` takes the first K of the others)."""
        first_n = self.fewshot("sampler") == "first_n"
        less = self.excludes_eval_doc and (not first_n or self.fewshot_docs is self.docs)
        return max(0, len(self.fewshot_docs) - less)

    def sampler(self) -> Callable[[int, dict[str, Any]], list[dict[str, Any]]]:
        """Draws shots for one run: a fresh generator, seeded as the harness seeds it. K above `max_shots`
        is capped to it (the harness would fail), and a document found more than once in the pool gets
        as many of the others as there are."""
        rnd = random.Random(FEWSHOT_SEED)
        exclude = self.excludes_eval_doc
        pool = self.fewshot_docs
        first_n = self.fewshot("sampler") == "first_n"

        def draw(k: int, doc: dict[str, Any]) -> list[dict[str, Any]]:
            if first_n:
                return ([d for d in pool if d != doc] if exclude else pool)[:k]
            k = min(k, self.max_shots)
            if k == 0:
                return []
            if not exclude:
                return rnd.sample(pool, k)
            shots = [d for d in rnd.sample(pool, k + 1) if d != doc][:k]
            if len(shots) < k:  # the evaluated document occurs more than once in the pool
                others = [d for d in pool if d != doc]
                shots = rnd.sample(others, min(k, len(others)))
            return shots

        return draw

    def prompt(self, index: int, doc: dict[str, Any], shots: list[dict[str, Any]]) -> Prompt:
        where = f"{self.eval_split} row {index + 1}"
        parts = [self.description(doc, where)]
        target_delimiter, fewshot_delimiter = self.fewshot("target_delimiter"), self.fewshot("fewshot_delimiter")
        for shot in shots:
            shot_where = f"{self.fewshot_source} row {self._rows.get(id(shot))}"
            question = self.doc_to_text(shot, shot_where, self.fewshot("doc_to_text"))
            answer = self.doc_to_target(shot, shot_where, self.fewshot("doc_to_target"))
            if isinstance(answer, int) and self.fewshot("doc_to_choice") is not None:
                answer = self.doc_to_choice(shot, shot_where, self.fewshot("doc_to_choice"))[answer]
            elif isinstance(answer, list):
                answer = answer[0]
            if answer is None or answer == "":
                parts.append(question)
            else:
                parts.append(f"{question}{target_delimiter}{answer}{fewshot_delimiter}")
        parts.append(self.doc_to_text(doc, where))
        prompt = Prompt(index, "".join(parts), shots=len(shots))
        delimiter = self.config.get("target_delimiter", " ")
        if self.output_type == "multiple_choice":
            prompt.choices = self.doc_to_choice(doc, where)
            prompt.continuations = [f"{delimiter}{c}" for c in prompt.choices]
            prompt.gold = self._gold(self.doc_to_target(doc, where), prompt.choices, where)
        elif self.output_type in ("loglikelihood", "loglikelihood_rolling"):
            target = self.doc_to_target(doc, where)
            if not isinstance(target, str):
                raise GptlabError(f"task {self.name}: doc_to_target must give text for {self.output_type} at {where}")
            prompt.target = target
            prompt.continuations = [target] if self.output_type == "loglikelihood" else []
        else:
            target = self.doc_to_target(doc, where)
            if self.config.get("doc_to_choice") is not None:
                target = self.doc_to_choice(doc, where)[target]
            prompt.target = target[0] if isinstance(target, list) else str(target)
        return prompt

    def _gold(self, target: Any, choices: list[str], where: str) -> list[int]:
        golds = target if isinstance(target, list) else [target]
        indices = [choices.index(g) if isinstance(g, str) and g in choices else g for g in golds]
        if not all(isinstance(i, int) and 0 <= i < len(choices) for i in indices):
            raise GptlabError(f"task {self.name}: the answer {target!r} at {where} is not one of its {len(choices)} choices")
        return indices


_DEFAULTS = {"target_delimiter": " ", "fewshot_delimiter": "\n\n", "sampler": "default", "description": ""}
_METRIC_KEYS = {"metric", "aggregation", "higher_is_better", "hf_evaluate"}
"""metric_list keys that are not options of the metric itself."""
_DEFAULT_METRICS = {
    "multiple_choice": ["acc", "acc_norm"],
    "loglikelihood": ["perplexity", "acc"],
    "loglikelihood_rolling": ["word_perplexity", "byte_perplexity", "bits_per_byte"],
    "generate_until": ["exact_match"],
}


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


def load_task(name_or_path: str) -> Task:
    """Read a task YAML and its data files; every problem is one line naming the file."""
    path = resolve(name_or_path)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.constructor.ConstructorError as e:
        raise GptlabError(f"{path}: {e.problem} (Python hooks such as !function are not run by gptlab)") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise GptlabError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(config, dict):
        raise GptlabError(f"{path} must hold a YAML mapping of task options")
    unknown = sorted(set(config) - _SUPPORTED - _IGNORED)
    if unknown:
        raise GptlabError(f"{path}: option {', '.join(unknown)} is not supported by gptlab eval")
    name = str(config.get("task") or path.stem)
    output_type = config.get("output_type", "generate_until")
    if output_type not in OUTPUT_TYPES:
        raise GptlabError(f"{path}: output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
    fewshot_config = config.get("fewshot_config") or {}
    if not isinstance(fewshot_config, dict) or set(fewshot_config) - _FEWSHOT_KEYS:
        raise GptlabError(f"{path}: fewshot_config supports {', '.join(sorted(_FEWSHOT_KEYS))}")
    if fewshot_config.get("sampler", "default") not in SAMPLERS:
        raise GptlabError(f"{path}: fewshot_config.sampler must be one of {', '.join(SAMPLERS)}")
    if config.get("dataset_path") not in ("json", None) or "data_files" not in (config.get("dataset_kwargs") or {}):
        raise GptlabError(f"{path}: gptlab reads local files: set dataset_path: json and dataset_kwargs.data_files")
    splits = _read_splits(config["dataset_kwargs"]["data_files"], path)
    for key in ("training_split", "validation_split", "test_split", "fewshot_split"):
        if config.get(key) is not None and config[key] not in splits:
            raise GptlabError(f"{path}: {key} {config[key]!r} is not among the data splits ({', '.join(splits)})")
    eval_split = config.get("test_split") or config.get("validation_split")
    if eval_split is None:
        raise GptlabError(f"{path}: set test_split or validation_split: the split to evaluate")
    fewshot_split = fewshot_config.get("split") or config.get("fewshot_split")
    samples = fewshot_config.get("samples")
    if fewshot_split is None and samples is not None:
        fewshot_docs, fewshot_source = list(samples), "fewshot_config.samples"
    else:
        pool = fewshot_split or config.get("training_split") or config.get("validation_split") or eval_split
        fewshot_docs, fewshot_source = splits[pool], f"split {pool!r}"
    metric_list = config.get("metric_list") or [{"metric": m} for m in _DEFAULT_METRICS[output_type]]
    if not all(isinstance(m, dict) and "metric" in m for m in metric_list):
        raise GptlabError(f"{path}: each metric_list entry needs a 'metric'")
    metrics = {m["metric"]: {k: v for k, v in m.items() if k not in _METRIC_KEYS} for m in metric_list}
    generation_kwargs = dict(config.get("generation_kwargs") or {})
    if output_type == "generate_until":
        generation_kwargs.setdefault("until", [config.get("fewshot_delimiter", "\n\n")])
    task = Task(
        name=name, source=str(path), output_type=output_type, config=config, splits=splits, eval_split=eval_split,
        fewshot_split=fewshot_split, fewshot_docs=fewshot_docs, fewshot_source=fewshot_source, features=set().union(*map(set, splits[eval_split])),
        metrics=metrics, generation_kwargs=generation_kwargs,
    )
    if not task.docs:
        raise GptlabError(f"{path}: split {eval_split!r} has no documents")
    return task


def _read_splits(data_files: Any, yaml_path: Path) -> dict[str, list[dict[str, Any]]]:
    """Split name -> rows. A bare path or list is the split `train`, as `datasets` names it."""
    if not isinstance(data_files, dict):
        data_files = {"train": data_files}
    splits = {}
    for split, files in data_files.items():
        rows: list[dict[str, Any]] = []
        for pattern in [files] if isinstance(files, str) else list(files):
            for file in _find(str(pattern), yaml_path):
                rows.extend(_read_rows(file))
        splits[str(split)] = rows
    return splits


def _find(pattern: str, yaml_path: Path) -> list[Path]:
    """Files for a data_files entry: relative to the working directory, as the harness (through
    `datasets`) resolves it, else relative to the YAML file's folder, so a task folder can move."""
    for base in (Path.cwd(), yaml_path.parent):
        full = Path(pattern) if Path(pattern).is_absolute() else base / pattern
        found = sorted(Path(p) for p in glob.glob(str(full))) if glob.has_magic(pattern) else [full] * full.is_file()
        if found:
            return found
    raise GptlabError(f"{yaml_path}: data file {pattern} not found (looked in {Path.cwd()} and {yaml_path.parent})")


def _read_rows(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise GptlabError(f"cannot read {path}: {e}") from None
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise GptlabError(f"{path} is not valid JSON: {e}") from None
        numbered = list(enumerate(rows if isinstance(rows, list) else [rows], 1))
    else:
        numbered = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    numbered.append((number, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise GptlabError(f"{path}:{number} is not valid JSON ({e.msg})") from None
    for number, row in numbered:
        if not isinstance(row, dict):
            raise GptlabError(f"{path}:{number} must be a JSON object")
    return [row for _, row in numbered]
