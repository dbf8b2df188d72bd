"""A small demo corpus for the README's tour, made offline from the Python standard library.

A fresh clone has no data and the tour must not need a download, so `gptlab data example DIR`
writes every input the tour names from text that every Python installation has: the standard
library's docstrings, which are well-formed English prose. Each `gptlab data` stage then has
something to do: machine-made junk for the quality filter, near-duplicates for dedup (within the
crawl and of webtext), benchmark passages inside crawl documents for decontamination, and one
broken JSONL line to show that bad records are counted, not fatal. The output is the same on every
run with the same Python.
"""

from __future__ import annotations

import ast
import functools
import json
import random
import sysconfig
from collections.abc import Iterable
from pathlib import Path

from gptlab import atomic
from gptlab.data.stdlib import stdlib_sources
from gptlab.errors import GptlabError

MIN_WORDS = 20  # shorter docstrings are one-liners, not prose
INPUT_BYTES = 1_000_000  # input.txt: about tinyshakespeare's size
PAGE_CHARS = 1000  # a document of curated/, webtext/ or crawl/ joins a file's docstrings up to this
BOOKS = 8  # the packages with the most docstring text become books/
TOPICS, PER_TOPIC, TOPIC_CHARS = 3, 150, 400  # tasks/: which package a docstring is from, for `gptlab finetune`
# How many pages each folder takes, in this order, from one shuffled pool.
SPLIT = {"curated": 300, "webtext": 100, "crawl": 200, "crawl_sample": 25, "evals": 10}
JUNK = {"crawl": 250, "crawl_sample": 200}
NEAR_DUPLICATED = 25  # crawl documents given two edited copies each, and webtext documents given one
CONTAMINATED = 40  # crawl documents that benchmark passages quote (enough for some to pass the filter)

_MENU = "Home About Blog Shop Contact Login Register Cart FAQ Careers Press Sitemap Support Deals".split()
_SPAM = (
    "click here", "free download", "best price guaranteed", "limited time offer", "buy now", "order today",
    "subscribe to our newsletter", "we use cookies", "accept all cookies", "share on facebook", "tweet this",
    "read more", "terms of service", "privacy policy", "all rights reserved", "sign up today", "top 10 deals",
    "you won't believe", "100% free", "casino bonus", "cheap flights", "hot offers near you", "win a prize",
)


def write_example(out: Path) -> dict[str, str]:
    """Write the demo corpus under `out`; returns each file or folder written, with what it holds."""
    by_file = _docstrings()
    pages = _pages(by_file)
    needed = sum(SPLIT.values())
    if len(pages) < needed:
        raise GptlabError(f"this Python's standard library has {len(pages)} pages of docstrings; the example needs {needed}")
    rng = random.Random(0)
    pool = rng.sample(pages, len(pages))
    parts, start = {}, 0
    for name, count in SPLIT.items():
        parts[name], start = pool[start : start + count], start + count

    crawl_docs = [(f"prose-{i:04d}", text) for i, text in enumerate(parts["crawl"])]
    crawl_docs += [(f"junk-{i:04d}", _junk(rng)) for i in range(JUNK["crawl"])]
    for i, text in enumerate(parts["crawl"][CONTAMINATED : CONTAMINATED + NEAR_DUPLICATED]):
        crawl_docs += [(f"near-dup-{i:04d}-{copy}", _edit(text, rng)) for copy in "ab"]
    crawl_docs += [(f"webtext-copy-{i:04d}", _edit(text, rng)) for i, text in enumerate(parts["webtext"][:NEAR_DUPLICATED])]
    rng.shuffle(crawl_docs)
    sample = [(f"prose-{i:04d}", text) for i, text in enumerate(parts["crawl_sample"])]
    sample += [(f"junk-{i:04d}", _junk(rng)) for i in range(JUNK["crawl_sample"])]
    rng.shuffle(sample)
    contaminated = [_passage(text, rng) for text in parts["crawl"][:CONTAMINATED]]
    benchmark = contaminated + [_passage(text, rng) for text in parts["evals"]]
    by_package: dict[str, list[str]] = {}
    for name, docs in by_file.items():
        by_package.setdefault(name.split("/")[0].removesuffix(".py"), []).extend(docs)
    books = sorted(by_package.items(), key=lambda item: -sum(map(len, item[1])))[:BOOKS]
    input_text = docstring_text(by_file)
    topics = [{"text": doc[:TOPIC_CHARS], "label": name} for name, docs in books[:TOPICS] for doc in docs[:PER_TOPIC]]
    rng.shuffle(topics)
    held_out = len(topics) // 5

    half = len(crawl_docs) // 2
    files = {
        "input.txt": input_text + "\n",
        "curated/part-0.jsonl": _jsonl((f"curated-{i:04d}", t) for i, t in enumerate(parts["curated"])),
        "crawl_sample/part-0.jsonl": _jsonl(sample),
        "crawl/part-0.jsonl": _jsonl(crawl_docs[:half]),
        "crawl/part-1.jsonl": _jsonl(crawl_docs[half:]) + '{"id": "broken", "text": "a record cut off mid-\n',
        "webtext/part-0.jsonl": _jsonl((f"webtext-{i:04d}", t) for i, t in enumerate(parts["webtext"])),
        "evals/benchmark.jsonl": _jsonl((f"question-{i:02d}", t) for i, t in enumerate(benchmark)),
        **{f"books/{name}.txt": "\n\n".join(docs) + "\n" for name, docs in books},
        "tasks/topic-train.jsonl": "".join(json.dumps(row) + "\n" for row in topics[held_out:]),
        "tasks/topic-valid.jsonl": "".join(json.dumps(row) + "\n" for row in topics[:held_out]),
    }
    try:
        for name, text in files.items():
            atomic.write_text(out / name, text)
    except OSError as e:
        raise GptlabError(f"cannot write the example corpus to {out}: {e.strerror or e}") from None
    return {
        "input.txt": f"{len(input_text) / 1e6:.1f} MB of docstrings as one plain-text file",
        "books/": f"{len(books)} plain-text books, one package's docstrings each",
        "curated/": f"{len(parts['curated'])} pages of docstrings (the classifier's high-quality examples)",
        "crawl_sample/": f"{len(sample)} documents of raw crawl, mostly junk (its low-quality examples)",
        "crawl/": f"{len(crawl_docs)} documents: prose, junk, near-duplicates, benchmark text; 1 broken line",
        "webtext/": f"{len(parts['webtext'])} pages of docstrings, {NEAR_DUPLICATED} of them near-copied into crawl/",
        "evals/": f"{len(benchmark)} benchmark passages, {CONTAMINATED} of them also in crawl/",
        "tasks/": f"{len(topics)} docstrings labelled with their package, {TOPICS} classes (topic-train/-valid.jsonl)",
    }


def docstring_text(by_file: dict[str, list[str]] | None = None, max_chars: int = INPUT_BYTES) -> str:
    """The standard library's long docstrings as one text, paragraphs apart: about tinyshakespeare's size of
    English prose on any machine, for `input.txt` and for tests that need real text."""
    by_file = _docstrings() if by_file is None else by_file
    return "\n\n".join(doc for docs in by_file.values() for doc in docs)[:max_chars]


@functools.cache
def _docstrings() -> dict[str, list[str]]:
    """Long, example-free docstrings of the standard library (tests left out), by file."""
    root = Path(sysconfig.get_paths()["stdlib"])
    found: dict[str, list[str]] = {}
    seen: set[str] = set()
    for path in stdlib_sources():
        name = path.relative_to(root).as_posix()
        if any(p in ("test", "tests", "idle_test") or p.startswith("test_") for p in name.split("/")):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, ValueError):
            continue  # lib2to3's fixtures and the like
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            doc = ast.get_docstring(node)
            if doc and len(doc.split()) >= MIN_WORDS and ">>>" not in doc and doc not in seen:
                seen.add(doc)
                found.setdefault(name, []).append(doc)
    return found


def _pages(by_file: dict[str, list[str]]) -> list[str]:
    """A file's docstrings in runs of at least PAGE_CHARS, like the paragraphs of a web page;
    long documents give the classifier and MinHash enough words to be sure."""
    pages = []
    for docs in by_file.values():
        page: list[str] = []
        for doc in docs:
            page.append(doc)
            if sum(map(len, page)) >= PAGE_CHARS:
                pages.append("\n\n".join(page))
                page = []
    return pages


def _jsonl(docs: Iterable[tuple[str, str]]) -> str:
    return "".join(json.dumps({"id": doc_id, "text": text}) + "\n" for doc_id, text in docs)


def _junk(rng: random.Random) -> str:
    """Web boilerplate and spam, or sentences of random letters: what a quality classifier trained
    on curated text learns to score low."""
    if rng.random() < 0.5:
        lines = [" | ".join(rng.sample(_MENU, 8))]
        lines += [f"{rng.choice(_SPAM).capitalize()}! {rng.choice(_SPAM)} - {rng.choice(_SPAM)}" for _ in range(rng.randint(6, 20))]
        lines.append(f"(c) {rng.randint(2005, 2025)} Example Media. {rng.choice(_SPAM).title()}.")
        return "\n".join(lines)
    letters = "etaoinshrdlucmfwypvbgkqjxz"
    words = ["".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(rng.randint(60, 200))]
    return " ".join(words).capitalize() + "."


def _edit(text: str, rng: random.Random) -> str:
    """A near-duplicate: about one word in fifty replaced or dropped, as a re-crawled page differs."""
    words = text.split(" ")
    for _ in range(max(1, len(words) // 50)):
        i = rng.randrange(len(words))
        if rng.random() < 0.5:
            del words[i]
        else:
            words[i] = rng.choice(words)
    return " ".join(words)


def _passage(text: str, rng: random.Random) -> str:
    """A 30-word run of a document, as a reading-comprehension benchmark quotes its source."""
    words = text.split()
    start = rng.randrange(len(words) - 30 + 1)
    return " ".join(words[start : start + 30])
