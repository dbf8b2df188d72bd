"""GPT-3's synthetic tasks: right answers, the paper's formats, files lm-evaluation-harness runs as they
are, answer metrics as the harness and SQuAD compute them, and a demonstration corpus free of test items."""

from __future__ import annotations

import json
import re
import string

import pytest

from gptlab.errors import GptlabError
from gptlab.eval.synthetic import (
    SYNTHETIC_TASKS,
    UNSCRAMBLE,
    WordTask,
    load_words,
    make_splits,
    synthetic_task,
    write_demonstration_corpus,
)
from gptlab.eval.text_metrics import f1
from gptlab.sources import iter_documents

ARITHMETIC = re.compile(r"Q: What is (\d+) (plus|minus|times) (\d+)\?\nA:")
COMPOSITE = re.compile(r"Q: What is (\(\d [-+*] \d\) [-+*] \d|\d [-+*] \(\d [-+*] \d\))\?\nA:")
WORDS = load_words()


def test_task_names_cover_the_paper():
    assert sorted(task.paper for task in SYNTHETIC_TASKS.values() if task.name != "word_category_labels") == sorted(
        ["2D+", "2D-", "3D+", "3D-", "4D+", "4D-", "5D+", "5D-", "2Dx", "1DC", "CL", "A1", "A2", "RI", "RW"]
    )
    assert "arithmetic_2d_plus" in SYNTHETIC_TASKS and "word_reversed" in SYNTHETIC_TASKS


@pytest.mark.parametrize("name", [n for n in SYNTHETIC_TASKS if n.startswith("arithmetic_") and n != "arithmetic_1dc"])
def test_arithmetic_answers_and_operand_range(name):
    digits = int(name.split("_")[1][0])
    test, _ = make_splits(name, 300, 0, WORDS, 0)
    operands = []
    for example in test:
        a, op, b = ARITHMETIC.fullmatch(example.context).groups()
        a, b = int(a), int(b)
        assert example.completion == f" {a + b if op == 'plus' else a - b if op == 'minus' else a * b}"
        operands += [a, b]
    assert max(operands) < 10**digits
    assert max(operands) >= 0.9 * 10**digits and min(operands) < 10 ** (digits - 1)  # uniform over [0, 10^n)


def test_one_digit_composite_answers_and_both_groupings():
    test, _ = make_splits("arithmetic_1dc", 300, 0, WORDS, 0)
    for example in test:
        expression = COMPOSITE.fullmatch(example.context).group(1)
        assert example.completion == f" {eval(expression)}"  # only digits, + - * and parentheses
    assert {e.context[11] == "(" for e in test} == {True, False}
    assert {op for e in test for op in "+-*" if op in e.context} == {"+", "-", "*"}


def _inverse(name: str, scrambled: str, word: str) -> bool:
    """Whether `scrambled` is `word` manipulated as the task says (and not the word itself)."""
    if scrambled == word:
        return False
    if name == "word_cycle_letters":
        return any(word[i:] + word[:i] == scrambled for i in range(1, len(word)))
    if name == "word_anagrams1":
        return scrambled[0] + scrambled[-1] == word[0] + word[-1] and sorted(scrambled) == sorted(word)
    if name == "word_anagrams2":
        return scrambled[:2] + scrambled[-2:] == word[:2] + word[-2:] and sorted(scrambled) == sorted(word)
    if name == "word_random_insertion":
        inserted = scrambled[1::2]
        return scrambled[::2] == word and len(inserted) == len(word) - 1 and all(
            c in string.punctuation + " " and c != "=" for c in inserted)
    return scrambled == word[::-1]


@pytest.mark.parametrize("name", [n for n, t in SYNTHETIC_TASKS.items() if isinstance(t, WordTask)])
def test_word_tasks_manipulate_common_words(name):
    test, _ = make_splits(name, 300, 0, WORDS, 0)
    for example in test:
        assert example.context.endswith(" =") and example.completion.startswith(" ")
        word, scrambled = example.completion[1:], example.context[:-2]
        assert word in WORDS and 4 <= len(word) <= 15
        assert _inverse(name, scrambled, word), (scrambled, word)


def test_splits_are_disjoint_and_reproducible():
    for name in ("arithmetic_2d_times", "word_anagrams2"):
        test, shots = make_splits(name, 500, 3, WORDS, 200)
        assert len({e.key for e in test} | {e.key for e in shots}) == 700
        assert (test, shots) == make_splits(name, 500, 3, WORDS, 200)
        assert test != make_splits(name, 500, 4, WORDS, 200)[0]


def test_words_from_a_users_corpus(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The quick brown foxes jumped over lazy dogs; quick foxes JUMP.\nan ox is big\n" * 3)
    assert load_words(corpus) == ["quick", "foxes", "brown", "jumped", "over", "lazy", "dogs"]
    yaml_path = synthetic_task("word_reversed", tmp_path / "t", n=4, fewshot=2, words=corpus)
    answers = [json.loads(line)["completion"] for name in ("word_reversed.jsonl", "word_reversed.fewshot.jsonl")
               for line in (yaml_path.parent / name).read_text().splitlines()]
    assert sorted(answers) == sorted(f" {w}" for w in ["quick", "foxes", "brown", "jumped", "lazy", "dogs"])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda d: synthetic_task("arithmetic_6d_plus", d), "unknown synthetic task 'arithmetic_6d_plus'"),
        (lambda d: synthetic_task("word_reversed", d, n=5000, fewshot=1000), "fewer than the 5000 \\+ 1000"),
        (lambda d: synthetic_task("arithmetic_2d_plus", d, n=0), "n must be at least 1"),
        (lambda d: synthetic_task("word_reversed", d, words=d / "missing.txt"), "no such file"),
    ],
)
def test_bad_requests_are_one_line_errors(tmp_path, call, message):
    with pytest.raises(GptlabError, match=message) as info:
        call(tmp_path)
    assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def harness_tasks(tmp_path_factory):
    """Two materialised tasks as lm-evaluation-harness loads them from their YAML files."""
    from lm_eval import tasks

    directory = tmp_path_factory.mktemp("synthetic")
    for name in ("arithmetic_3d_minus", "word_anagrams1"):
        synthetic_task(name, directory, n=20, fewshot=10)
    manager = tasks.TaskManager(include_path=str(directory), include_defaults=False)
    return directory, manager.load(["arithmetic_3d_minus", "word_anagrams1"])["tasks"]


@pytest.mark.parametrize("name, description, delimiter", [
    ("arithmetic_3d_minus", "", "\n\n"),
    ("word_anagrams1", UNSCRAMBLE, "\n"),
])
def test_lm_eval_builds_the_papers_prompts(harness_tasks, name, description, delimiter):
    directory, loaded = harness_tasks
    task = loaded[name]
    docs = list(task.test_docs())
    mine = [json.loads(line) for line in (directory / f"{name}.jsonl").read_text().splitlines()]
    shots = [json.loads(line) for line in (directory / f"{name}.fewshot.jsonl").read_text().splitlines()]
    assert [dict(d) for d in docs] == mine
    doc = docs[0]
    assert task.fewshot_context(doc, num_fewshot=0) == description + doc["context"]
    solved = {s["context"] + s["completion"] for s in shots}
    two_shot = task.fewshot_context(doc, num_fewshot=2)
    assert two_shot.startswith(description) and two_shot.endswith(delimiter + doc["context"])
    examples = two_shot[len(description):-len(delimiter + doc["context"])].split(delimiter)
    assert len(examples) == 2 and set(examples) <= solved
    assert task.config.generation_kwargs["until"] == ["\n"]
    # the harness's exact match scores the answer as generated after "A:" / "=": with its leading space
    assert task.process_results(doc, [doc["completion"]])["exact_match"] == 1.0
    assert task.process_results(doc, [doc["completion"] + "0"])["exact_match"] == 0.0


def test_paper_examples_zero_shot(harness_tasks):
    """Figures G.43 and G.22 of the paper, in the format the tasks write."""
    directory, loaded = harness_tasks
    assert loaded["arithmetic_3d_minus"].fewshot_context({"context": "Q: What is 17 minus 14?\nA:", "completion": " 3"},
                                                          0) == "Q: What is 17 minus 14?\nA:"
    assert loaded["word_anagrams1"].fewshot_context({"context": "skicts =", "completion": " sticks"}, 0) == (
        "Please unscramble the letters into a word, and write that word:\nskicts =")


def test_exact_match_scores_arithmetic_answers():
    """gptlab eval reports the harness's own exact match: an answer's sign counts."""
    from lm_eval.api import metrics

    assert metrics.exact_match_hf_evaluate(["28"], ["-28"])["exact_match"] == 0.0
    assert metrics.exact_match_hf_evaluate([" 124"], [" 124"])["exact_match"] == 1.0


def test_f1_is_squads():
    from lm_eval.tasks.qasper import metrics as qasper  # SQuAD v1.1's script, as the harness ships it

    pairs = [("the cat sat", "a cat sat down"), ("Marcel Duchamp", "marcel duchamp"), ("Paris, France!", "paris"),
             ("red red blue", "red blue blue green"), ("an apple", "pear"), ("The  U.S.", "the us")]
    for prediction, reference in pairs:
        assert f1(prediction, reference) == pytest.approx(qasper.f1_abstractive([prediction], [reference]))
    assert f1("the cat sat", "a cat sat down") == pytest.approx(0.8)  # P = 1, R = 2/3
    assert f1("the", "a") == 1.0 and f1("", "cat") == 0.0  # both empty after normalising: no-answer agreement


def test_demonstration_corpus_interleaves_and_holds_out_eval_items(tmp_path):
    text = "".join(f"Line {i} of an ordinary document.\n" for i in range(400))
    (tmp_path / "text.txt").write_text(text)
    tasks = ["arithmetic_2d_plus", "word_reversed"]
    options = dict(documents=20, examples=(3, 6), chunk_chars=500, held_out=2500, held_out_seed=7, fewshot=2500, seed=1)
    out = write_demonstration_corpus(tmp_path / "corpus.jsonl", [tmp_path / "text.txt"], tasks, **options)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records == [{"id": d.id, "text": d.text, **d.metadata} for d in iter_documents([out])]
    ordinary = [r for r in records if "task" not in r]
    assert "".join(r["text"] for r in ordinary) == text and all(len(r["text"]) <= 500 for r in ordinary)
    demos = [r for r in records if "task" in r]
    assert len(demos) == 20 and {r["task"] for r in demos} == set(tasks)
    assert records.index(demos[0]) > 0 or records.index(demos[-1]) < len(records) - 1  # interleaved, not appended
    # the evaluation splits hold 5000 of the 10,000 sums and 5000 of the ~5600 usable words, so demonstrations
    # drawn without excluding them would hit them many times over
    excluded = {name: {e.key for split in make_splits(name, 2500, 7, WORDS, 2500) for e in split} for name in tasks}
    for record in demos:
        if record["task"] == "arithmetic_2d_plus":
            examples = record["text"].split("\n\n")
            for example in examples:
                question, answer = example.rsplit(" ", 1)
                a, _, b = ARITHMETIC.fullmatch(question).groups()
                assert int(answer) == int(a) + int(b) and question not in excluded["arithmetic_2d_plus"]
        else:
            assert record["text"].startswith(UNSCRAMBLE)
            examples = record["text"][len(UNSCRAMBLE):].split("\n")
            for example in examples:
                scrambled, word = example.split(" = ")
                assert scrambled == word[::-1] and word not in excluded["word_reversed"]
        assert 3 <= len(examples) <= 6
    again = write_demonstration_corpus(tmp_path / "again.jsonl", [tmp_path / "text.txt"], tasks, **options)
    assert again.read_text() == out.read_text()


LABELS = re.compile(r"(\d+|[a-z]{4,15}) = ([a-z]{3,5})")


def test_category_labels_format_and_one_evaluation_mapping(tmp_path):
    test, shots = make_splits("word_category_labels", 300, 0, WORDS, 100)
    assert len({e.key for e in test + shots}) == 400
    mapping = {}
    for example in test + shots:
        item, label = LABELS.fullmatch(example.context + example.completion).groups()
        assert example.context == f"{item} =" and example.key == item
        assert (10 <= int(item) < 1000) if item.isdigit() else item in WORDS
        mapping.setdefault(item.isdigit(), set()).add(label)
    assert len(mapping[True]) == len(mapping[False]) == 1 and mapping[True] != mapping[False]  # one mapping
    assert {e.key.isdigit() for e in test[:20]} == {True, False}
    assert make_splits("word_category_labels", 300, 1, WORDS, 100)[0][0].completion not in {
        label for labels in mapping.values() for label in labels}  # another seed, another mapping
    # K = 2 prompts as the eval runner draws and builds them: the shots carry the instance's mapping
    from gptlab.eval.tasks import load_tasks

    task = load_tasks([str(synthetic_task("word_category_labels", tmp_path, n=20, fewshot=10))]).tasks[
        "word_category_labels"]
    task.set_fewshot_seed(seed=1234)
    for doc in task.eval_docs:
        header, first, second, query = task.fewshot_context(doc, num_fewshot=2).split("\n")
        assert header == "Give each item the label of its kind:" and query == doc["context"]
        labels = {item.isdigit(): label for item, label in (LABELS.fullmatch(line).groups() for line in (first, second))}
        if doc["context"][0].isdigit() in labels:
            assert " " + labels[doc["context"][0].isdigit()] == doc["completion"] == task.doc_to_target(doc)


def test_category_label_demonstrations_never_use_the_evaluation_mapping(tmp_path):
    (tmp_path / "text.txt").write_text("An ordinary line.\n" * 50)
    options = dict(documents=300, examples=(4, 16), held_out=300, held_out_seed=0, fewshot=100, seed=0)
    out = write_demonstration_corpus(tmp_path / "c.jsonl", [tmp_path / "text.txt"], ["word_category_labels"], **options)
    evaluation = {e.completion[1:] for split in make_splits("word_category_labels", 300, 0, WORDS, 100) for e in split}
    demos = [json.loads(line) for line in out.read_text().splitlines() if '"task"' in line]
    seen = set()
    for record in demos:
        lines = record["text"].split("\n")
        assert lines[0] == "Give each item the label of its kind:" and 4 <= len(lines) - 1 <= 16
        mapping = {}
        for line in lines[1:]:
            item, label = LABELS.fullmatch(line).groups()
            assert mapping.setdefault(item.isdigit(), label) == label  # one mapping within a document
        assert not set(mapping.values()) & evaluation
        if len(mapping) == 2:
            assert mapping[True] != mapping[False]
        seen.add(tuple(sorted(mapping.items())))
    assert len(seen) > 0.95 * len(demos)  # a fresh mapping per document
