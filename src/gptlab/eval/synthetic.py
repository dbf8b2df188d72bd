"""GPT-3's synthetic tasks (section 3.9), made by gptlab so they need no download.

Ten arithmetic tasks (3.9.1): two operands drawn uniformly from [0, 10^n) added (nD+), subtracted (nD-) or,
for n = 2, multiplied (2Dx); and 1DC, three digits from [0, 10) joined by two operations drawn from
{+, -, *} with one pair in parentheses. Five word tasks (3.9.2) on a common word of 4-15 letters:
its letters cycled (CL), all but the first and last letter shuffled (A1), all but the first and last two
shuffled (A2), a random punctuation or space character put between each pair of letters (RI), the word
reversed (RW). Phrasing follows the paper's Appendix G (Figures G.19-G.27 and G.42-G.50):

    Q: What is 98 plus 45?           Please unscramble the letters into a word, and write that word:
    A: 143                           asinoc = casino

Each task materialises as lm-evaluation-harness task files (YAML + JSONL test and few-shot splits, the
few-shot split disjoint from the test split), so `gptlab eval` and the harness run the same prompts. The
targets carry their leading space and `target_delimiter` is empty, so the harness's exact string match
scores an answer generated after "A:" or "=" as it should. The unscramble instruction is the task
`description`, stated once before the examples.

One task of gptlab's own, in the spirit of GPT-3's "learn a new mapping from the context" (3.9.5):
word_category_labels. Each item is a number (10-999) or a common word, and each of the two kinds has a
made-up label, a random string of 3-5 letters, fresh for every demonstration document. Only the examples
in the context say which label a kind carries, so K = 0 scores about 0 and K examples of the query's kind
let the model copy its label. The evaluation splits (test and few-shot) share one mapping, drawn from their
seed; pretraining demonstrations never use either of its labels:

    Give each item the label of its kind:
    412 = vop
    house = drelk
    58 =                             -> " vop"

`write_demonstration_corpus` writes the pretraining side of the paper's "outer loop": ordinary text with
documents of consecutive task examples interleaved, none of them an evaluation instance.
"""

from __future__ import annotations

import json
import os
import random
import re
import string
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gptlab import atomic
from gptlab.errors import GptlabError
from gptlab.files import read_text

WORDS_FILE = Path(__file__).parent / "data" / "words.txt"
CORPUS_WORDS = 10_000
"""Words taken from a user's corpus, most frequent first (GPT-3 drew from the 10,000 most frequent)."""
UNSCRAMBLE = "Please unscramble the letters into a word, and write that word:\n"
_WORD = re.compile(r"\b[a-z]{4,15}\b")
_INSERTED = " " + string.punctuation.replace("=", "")  # "=" ends the word tasks' question


@dataclass(frozen=True)
class Example:
    key: str
    """What makes two instances the same one: the question, or the answer word of a word task."""
    context: str
    completion: str
    """The answer with its leading space, as generated after the context."""

    def doc(self) -> dict[str, str]:
        return {"context": self.context, "completion": self.completion}


class SyntheticTask(ABC):
    """One of GPT-3's synthetic tasks: an endless, seeded stream of instances."""

    description = ""
    delimiter = "\n\n"
    """Between examples (the harness's fewshot_delimiter), one per line for the word tasks."""
    max_gen_toks = 16

    def __init__(self, name: str, paper: str):
        self.name = name
        self.paper = paper
        """The paper's abbreviation, e.g. 2D+ or A1."""

    @abstractmethod
    def stream(self, rng: random.Random, words: Sequence[str]) -> Iterator[Example]:
        """Instances drawn at random, repeats possible."""

    @abstractmethod
    def space(self, words: Sequence[str]) -> int:
        """How many distinct instances there are."""

    def demonstrations(
        self, rng: random.Random, words: Sequence[str], evaluation: Sequence[Example]
    ) -> Callable[[int], list[Example]]:
        """Gives one demonstration document's `count` examples per call, none an instance of `evaluation`."""
        stream = _without(self.stream(rng, words), {e.key for e in evaluation})
        return lambda count: [next(stream) for _ in range(count)]


class Arithmetic(SyntheticTask):
    _OPS = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b, "times": lambda a, b: a * b}

    def __init__(self, name: str, paper: str, digits: int, op: str):
        super().__init__(name, paper)
        self.digits, self.op = digits, op

    def stream(self, rng: random.Random, words: Sequence[str]) -> Iterator[Example]:
        high = 10**self.digits
        while True:
            a, b = rng.randrange(high), rng.randrange(high)
            question = f"Q: What is {a} {self.op} {b}?\nA:"
            yield Example(question, question, f" {self._OPS[self.op](a, b)}")

    def space(self, words: Sequence[str]) -> int:
        return 10 ** (2 * self.digits)


class OneDigitComposite(SyntheticTask):
    """1DC. The paper's text puts the parentheses around the last two digits ("6+(4*8)"), its Figure
    G.42 around the first two ("(2 * 4) * 6"): both groupings are drawn, spaced as in the figure."""

    _OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}

    def stream(self, rng: random.Random, words: Sequence[str]) -> Iterator[Example]:
        while True:
            a, b, c = (rng.randrange(10) for _ in range(3))
            first, second = rng.choice("+-*"), rng.choice("+-*")
            if rng.random() < 0.5:
                expression, value = f"({a} {first} {b}) {second} {c}", self._OPS[second](self._OPS[first](a, b), c)
            else:
                expression, value = f"{a} {first} ({b} {second} {c})", self._OPS[first](a, self._OPS[second](b, c))
            question = f"Q: What is {expression}?\nA:"
            yield Example(question, question, f" {value}")

    def space(self, words: Sequence[str]) -> int:
        return 10**3 * 3**2 * 2


class WordTask(SyntheticTask):
    description = UNSCRAMBLE
    delimiter = "\n"
    max_gen_toks = 24

    def __init__(self, name: str, paper: str, kept: int = 0):
        super().__init__(name, paper)
        self.kept = kept
        """Letters kept in place at each end (the anagram tasks)."""

    def usable(self, word: str) -> bool:
        """Whether the manipulation can change the word."""
        middle = word[self.kept : len(word) - self.kept]
        return len(set(middle)) > 1 and (self.name != "word_reversed" or word != word[::-1])

    def pool(self, words: Sequence[str]) -> list[str]:
        return [w for w in words if self.usable(w)]

    def stream(self, rng: random.Random, words: Sequence[str]) -> Iterator[Example]:
        pool = self.pool(words)
        if not pool:
            raise GptlabError(f"task {self.name}: the word list has no word it can use")
        while True:
            word = rng.choice(pool)
            yield Example(word, f"{self.scramble(word, rng)} =", f" {word}")

    def space(self, words: Sequence[str]) -> int:
        return len(self.pool(words))

    def scramble(self, word: str, rng: random.Random) -> str:
        if self.name == "word_reversed":
            return word[::-1]
        if self.name == "word_random_insertion":
            return "".join(c + rng.choice(_INSERTED) for c in word[:-1]) + word[-1]
        while True:  # a draw that gives the word back would not be a puzzle; usable() rules out a loop
            if self.name == "word_cycle_letters":
                shift = rng.randrange(1, len(word))
                scrambled = word[shift:] + word[:shift]
            else:
                middle = list(word[self.kept : len(word) - self.kept])
                rng.shuffle(middle)
                scrambled = word[: self.kept] + "".join(middle) + word[len(word) - self.kept :]
            if scrambled != word:
                return scrambled


class CategoryLabels(SyntheticTask):
    """word_category_labels: items of two kinds, numbers and words, each kind under a made-up label that
    only the context tells. `stream` (the evaluation splits) keeps one mapping, drawn first from its rng;
    `demonstrations` draws a fresh one per document, never with a label of the evaluation mapping."""

    description = "Give each item the label of its kind:\n"
    delimiter = "\n"
    max_gen_toks = 8
    NUMBERS = range(10, 1000)
    LABEL_LETTERS = (3, 5)

    def mapping(self, rng: random.Random, excluded: Collection[str] = ()) -> tuple[str, str]:
        """Labels for (numbers, words): two different random lowercase strings, none in `excluded`."""
        labels: list[str] = []
        while len(labels) < 2:
            label = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(*self.LABEL_LETTERS)))
            if label not in excluded and label not in labels:
                labels.append(label)
        return labels[0], labels[1]

    def instances(self, rng: random.Random, words: Sequence[str], labels: tuple[str, str]) -> Iterator[Example]:
        if not words:
            raise GptlabError(f"task {self.name}: the word list is empty")
        while True:
            if rng.random() < 0.5:
                item, label = str(rng.choice(self.NUMBERS)), labels[0]
            else:
                item, label = rng.choice(words), labels[1]
            yield Example(item, f"{item} =", f" {label}")

    def stream(self, rng: random.Random, words: Sequence[str]) -> Iterator[Example]:
        return self.instances(rng, words, self.mapping(rng))

    def space(self, words: Sequence[str]) -> int:
        return len(self.NUMBERS) + len(set(words))

    def demonstrations(
        self, rng: random.Random, words: Sequence[str], evaluation: Sequence[Example]
    ) -> Callable[[int], list[Example]]:
        used = {e.completion[1:] for e in evaluation}

        def document(count: int) -> list[Example]:
            examples = self.instances(rng, words, self.mapping(rng, used))
            return [next(examples) for _ in range(count)]

        return document


def _tasks() -> dict[str, SyntheticTask]:
    tasks: list[SyntheticTask] = []
    for digits in (2, 3, 4, 5):
        tasks.append(Arithmetic(f"arithmetic_{digits}d_plus", f"{digits}D+", digits, "plus"))
        tasks.append(Arithmetic(f"arithmetic_{digits}d_minus", f"{digits}D-", digits, "minus"))
    tasks.append(Arithmetic("arithmetic_2d_times", "2Dx", 2, "times"))
    tasks.append(OneDigitComposite("arithmetic_1dc", "1DC"))
    tasks.append(WordTask("word_cycle_letters", "CL"))
    tasks.append(WordTask("word_anagrams1", "A1", kept=1))
    tasks.append(WordTask("word_anagrams2", "A2", kept=2))
    tasks.append(WordTask("word_random_insertion", "RI"))
    tasks.append(WordTask("word_reversed", "RW"))
    tasks.append(CategoryLabels("word_category_labels", "gptlab: novel labels"))
    return {task.name: task for task in tasks}


SYNTHETIC_TASKS: dict[str, SyntheticTask] = _tasks()


def get_task(name: str) -> SyntheticTask:
    if name not in SYNTHETIC_TASKS:
        raise GptlabError(f"unknown synthetic task {name!r} (known: {', '.join(SYNTHETIC_TASKS)})")
    return SYNTHETIC_TASKS[name]


def load_words(path: str | os.PathLike | None = None) -> list[str]:
    """Candidate words, most frequent first: gptlab's list, or the lowercase words of 4-15 letters of a
    text file (a word list or any corpus; lines starting with # are skipped), its CORPUS_WORDS most
    frequent."""
    path = WORDS_FILE if path is None else Path(path)
    lines = [line for line in read_text(path).splitlines() if not line.startswith("#")]
    counts = Counter(word for line in lines for word in _WORD.findall(line))
    if not counts:
        raise GptlabError(f"{path} holds no lowercase word of 4 to 15 letters")
    return [w for w, _ in counts.most_common(CORPUS_WORDS)]


def make_splits(
    name: str, n: int, seed: int, words: Sequence[str], fewshot: int
) -> tuple[list[Example], list[Example]]:
    """The test and few-shot splits: n and `fewshot` distinct instances, none in both."""
    task = get_task(name)
    if n < 1 or fewshot < 0:
        raise GptlabError(f"task {name}: n must be at least 1 and fewshot at least 0, got {n} and {fewshot}")
    if n + fewshot > task.space(words):
        raise GptlabError(
            f"task {name} has {task.space(words)} distinct instances (with this word list, for a word task), "
            f"fewer than the {n} + {fewshot} asked for"
        )
    seen: set[str] = set()
    drawn: list[Example] = []
    for example in task.stream(random.Random(f"{name}:{seed}"), words):
        if example.key not in seen:
            seen.add(example.key)
            drawn.append(example)
            if len(drawn) == n + fewshot:
                return drawn[:n], drawn[n:]
    raise AssertionError("the stream is endless")


def synthetic_task(
    name: str,
    directory: str | os.PathLike,
    n: int = 2000,
    seed: int = 0,
    words: str | os.PathLike | None = None,
    *,
    fewshot: int = 500,
) -> Path:
    """Write `name`.yaml, `name`.jsonl (n test instances) and `name`.fewshot.jsonl (`fewshot` others) into
    `directory`; return the YAML's path. The YAML names its data by absolute path, as the harness reads
    relative paths from its working directory. `words`: a word list or corpus instead of gptlab's."""
    task = get_task(name)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    test, shots = make_splits(name, n, seed, load_words(words), fewshot)
    files = {"test": directory / f"{name}.jsonl", "train": directory / f"{name}.fewshot.jsonl"}
    for split, examples in (("test", test), ("train", shots)):
        atomic.write_text(files[split], "".join(json.dumps(e.doc()) + "\n" for e in examples))
    config: dict[str, Any] = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {split: str(path.resolve()) for split, path in files.items()}},
        "output_type": "generate_until",
        "test_split": "test",
        "fewshot_split": "train",
        "description": task.description,
        "doc_to_text": "{{context}}",
        "doc_to_target": "{{completion}}",
        "target_delimiter": "",
        "fewshot_delimiter": task.delimiter,
        "generation_kwargs": {"until": ["\n"], "do_sample": False, "max_gen_toks": task.max_gen_toks},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0, "gpt3_name": task.paper, "n": n, "seed": seed, "fewshot": fewshot,
                     "words": str(Path(words).resolve()) if words is not None else "gptlab"},
    }
    yaml_path = directory / f"{name}.yaml"
    atomic.write_text(yaml_path, yaml.dump(config, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000))
    return yaml_path


class _Dumper(yaml.SafeDumper):
    """Writes strings holding line breaks as "...\\n..." on one line, as task files are written by hand."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style='"' if "\n" in text else None)


_Dumper.add_representer(str, _represent_str)


def demonstration(task: SyntheticTask, examples: Sequence[Example]) -> str:
    """Consecutive solved examples in the task's K-shot prompt format."""
    return task.description + task.delimiter.join(e.context + e.completion for e in examples)


def write_demonstration_corpus(
    out: str | os.PathLike,
    text: Sequence[str | os.PathLike],
    tasks: Sequence[str] = tuple(SYNTHETIC_TASKS),
    *,
    documents: int = 1000,
    examples: tuple[int, int] = (4, 16),
    chunk_chars: int = 2000,
    held_out: int = 2000,
    held_out_seed: int = 0,
    fewshot: int = 500,
    words: str | os.PathLike | None = None,
    seed: int = 0,
) -> Path:
    """Write a JSONL pretraining corpus: the documents of `text` (files or folders as `gptlab train` reads
    them) cut at line ends into pieces of about `chunk_chars`, kept in order, with `documents`
    demonstration documents inserted at random places, each holding a random number in `examples` of
    consecutive instances of one task (tasks in turn). No demonstration is an instance of the evaluation
    splits that `synthetic_task(name, n=held_out, seed=held_out_seed, words=words, fewshot=fewshot)` writes.
    """
    from gptlab.sources import iter_documents  # the data readers only when a corpus is written

    if documents < 0 or not 1 <= examples[0] <= examples[1]:
        raise GptlabError(f"documents must be >= 0 and examples a range 1 <= low <= high, got {documents}, {examples}")
    if chunk_chars < 1:
        raise GptlabError(f"chunk_chars must be at least 1, got {chunk_chars}")
    if not tasks:
        raise GptlabError("name at least one synthetic task for the demonstrations")
    vocabulary = load_words(words)
    streams: list[tuple[SyntheticTask, Callable[[int], list[Example]]]] = []
    for name in tasks:
        test, shots = make_splits(name, held_out, held_out_seed, vocabulary, fewshot)
        if len(test) + len(shots) == get_task(name).space(vocabulary):
            raise GptlabError(f"task {name}: the evaluation splits use every instance; lower held_out or fewshot")
        task_rng = random.Random(f"{name}:{seed}:demonstrations")
        streams.append((get_task(name), get_task(name).demonstrations(task_rng, vocabulary, [*test, *shots])))
    pieces = [piece for doc in iter_documents(text) for piece in _chunks(doc.text, chunk_chars)]
    rng = random.Random(f"corpus:{seed}")
    order = ["text"] * len(pieces) + ["task"] * documents
    rng.shuffle(order)
    records, texts, demos = [], iter(pieces), 0
    for kind in order:
        if kind == "text":
            records.append({"id": f"text:{len(records)}", "text": next(texts)})
            continue
        task, document = streams[demos % len(streams)]
        shown = document(rng.randint(*examples))
        records.append({"id": f"{task.name}:{demos}", "text": demonstration(task, shown), "task": task.name})
        demos += 1
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return out


def _without(examples: Iterator[Example], excluded: set[str]) -> Iterator[Example]:
    return (e for e in examples if e.key not in excluded)


def _chunks(text: str, size: int) -> Iterator[str]:
    """Consecutive pieces of about `size` characters, cut after a line end where there is one."""
    start = 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            cut = text.rfind("\n", start, end)
            end = cut + 1 if cut >= start else end
        yield text[start:end]
        start = end
