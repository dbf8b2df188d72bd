"""GPT-3 decontamination: 13-gram collisions with benchmark text are cut out of training documents."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from helpers import run_cli

from gptlab.data.curate.decontaminate import (
    benchmark_ngrams,
    colliding_ngrams,
    decontaminate,
    find_collisions,
)
from gptlab.errors import GptlabError

QUESTION = "Which river flows through the ancient city of Baghdad, and into which sea does it finally empty?"
ANSWER = "The Tigris flows through Baghdad before joining the Euphrates to reach the Persian Gulf"
# QUESTION as a web page might quote it: other case, punctuation and spacing, same words
QUOTED = "which RIVER flows through the ancient-city of baghdad and into which sea... does it finally empty"
QUOTED_WORDS = 17
ANSWER_WORDS = 14


def _filler(chars: int, tag: str = "pad") -> str:
    """`chars` characters of words no benchmark contains."""
    return " ".join(f"{tag}{i}" for i in range(chars))[:chars]


@pytest.fixture(scope="module")
def ngrams() -> frozenset[int]:
    return benchmark_ngrams([QUESTION, ANSWER, "Too short to count."])


def test_benchmark_ngrams_are_every_13_word_window(ngrams):
    assert len(ngrams) == (QUOTED_WORDS - 12) + (ANSWER_WORDS - 12)
    assert benchmark_ngrams(["Too short to count, twelve words here: one two three four five."]) == frozenset()
    assert benchmark_ngrams([QUESTION, QUESTION.upper()]) == benchmark_ngrams([QUESTION])
    assert len(benchmark_ngrams([ANSWER], n=3)) == ANSWER_WORDS - 2
    with pytest.raises(GptlabError, match="at least 1"):
        benchmark_ngrams([ANSWER], n=0)


def test_collision_spans_point_into_the_original_text(ngrams):
    before, after = "Intro text. ", " -- end."
    text = before + QUOTED + after
    spans = find_collisions(text, ngrams)
    assert len(spans) == QUOTED_WORDS - 12
    start = len(before)
    assert spans[0] == (start, start + QUOTED.index("sea") + len("sea"))  # "which RIVER ... sea", 13 words
    assert spans[-1] == (start + QUOTED.index("the ancient"), start + len(QUOTED))
    assert [s for s, _ in spans] == sorted(s for s, _ in spans)


def test_contractions_and_unicode_case_match():
    benchmark = "Don't you know that l'école est fermée le dimanche, même pendant l’été, mon ami cher"
    ngrams = benchmark_ngrams([benchmark])
    assert find_collisions("DONT YOU KNOW THAT L'ÉCOLE EST FERMÉE LE DIMANCHE MÊME PENDANT L'ÉTÉ MON", ngrams)
    assert not find_collisions("Do not you know that l'école est fermée le dimanche même pendant l'été mon", ngrams)


def test_document_without_collisions_is_returned_unchanged(ngrams):
    text = _filler(1000) + " The Tigris flows through Baghdad. " + _filler(500)
    pieces, report = decontaminate(text, ngrams)
    assert pieces == [text]
    assert report == {
        "reason": "clean",
        "collisions": 0,
        "pieces": 1,
        "pieces_kept": 1,
        "pieces_dropped": 0,
        "chars_removed": 0,
    }


def test_collision_is_cut_out_with_200_characters_either_side(ngrams):
    head, tail = _filler(1000, "head") + " ", " " + _filler(800, "tail")
    text = head + QUOTED + tail
    pieces, report = decontaminate(text, ngrams)
    assert pieces == [text[: len(head) - 200], text[len(head) + len(QUOTED) + 200 :]]
    assert report == {
        "reason": "split",
        "collisions": QUOTED_WORDS - 12,
        "pieces": 2,
        "pieces_kept": 2,
        "pieces_dropped": 0,
        "chars_removed": len(QUOTED) + 400,
    }


def test_pieces_shorter_than_min_piece_are_dropped(ngrams):
    head, tail = _filler(350, "head") + " ", " " + _filler(800, "tail")
    text = head + QUOTED + tail
    pieces, report = decontaminate(text, ngrams)
    assert len(text[: len(head) - 200]) < 200
    assert pieces == [text[len(head) + len(QUOTED) + 200 :]]
    assert (report["reason"], report["pieces"], report["pieces_kept"], report["pieces_dropped"]) == ("split", 2, 1, 1)
    assert report["chars_removed"] == len(text) - len(pieces[0])

    pieces, report = decontaminate(text, ngrams, margin=0, min_piece=0)
    assert pieces == [head, tail]


def test_cuts_stop_at_the_document_edges(ngrams):
    tail = " " + _filler(600)
    pieces, report = decontaminate(QUOTED + tail, ngrams)
    assert pieces == [(QUOTED + tail)[len(QUOTED) + 200 :]]
    assert report["pieces"] == 1

    pieces, report = decontaminate(QUOTED, ngrams)
    assert pieces is None
    assert report == {
        "reason": "nothing_left",
        "collisions": QUOTED_WORDS - 12,
        "pieces": 0,
        "pieces_kept": 0,
        "pieces_dropped": 0,
        "chars_removed": len(QUOTED),
    }


def test_nearby_collisions_merge_into_one_cut(ngrams):
    text = _filler(600, "a") + " " + QUOTED + " " + _filler(300, "b") + " " + ANSWER + ". " + _filler(600, "c")
    pieces, report = decontaminate(text, ngrams)
    assert report["pieces"] == 2 and len(pieces) == 2  # 300 characters between them is under 2 x 200
    assert report["collisions"] == (QUOTED_WORDS - 12) + (ANSWER_WORDS - 12)


def _repeated(occurrences: int) -> str:
    gaps = [_filler(700, f"gap{i}x") for i in range(occurrences + 1)]  # 300 characters left after the cuts
    return gaps[0] + "".join(f" {QUOTED} {gap}" for gap in gaps[1:])


def test_document_split_into_more_than_max_pieces_is_dropped(ngrams):
    pieces, report = decontaminate(_repeated(9), ngrams)
    assert report["reason"] == "split" and report["pieces"] == report["pieces_kept"] == 10 == len(pieces)

    text = _repeated(10)
    pieces, report = decontaminate(text, ngrams)
    assert pieces is None
    assert report == {
        "reason": "too_many_pieces",
        "collisions": 10 * (QUOTED_WORDS - 12),
        "pieces": 11,
        "pieces_kept": 0,
        "pieces_dropped": 11,
        "chars_removed": len(text),
    }
    assert decontaminate(text, ngrams, max_pieces=11)[1]["reason"] == "split"


def test_ngrams_found_in_more_than_10_documents_are_ignored(ngrams):
    """The caller counts documents per n-gram across shards and passes the frequent ones as `ignore`."""
    common = [_filler(300, f"doc{i}x") + " " + ANSWER + " " + _filler(300, f"end{i}x") for i in range(11)]
    rare = _filler(600) + " " + QUOTED + " " + _filler(600)
    corpus = [*common, rare]
    documents_per_ngram = Counter(h for text in corpus for h in colliding_ngrams(text, ngrams))
    assert len(documents_per_ngram) == (ANSWER_WORDS - 12) + (QUOTED_WORDS - 12)
    frequent = {h for h, documents in documents_per_ngram.items() if documents > 10}
    assert frequent == colliding_ngrams(common[0], ngrams)

    pieces, report = decontaminate(common[0], ngrams, ignore=frequent)
    assert pieces == [common[0]] and report["reason"] == "clean"
    assert find_collisions(common[0], ngrams, ignore=frequent) == []
    assert decontaminate(rare, ngrams, ignore=frequent)[1]["reason"] == "split"


def test_bad_arguments_are_one_line_errors(ngrams):
    for kwargs in ({"margin": -1}, {"min_piece": -1}, {"max_pieces": 0}):
        with pytest.raises(GptlabError, match="decontaminate needs"):
            decontaminate("text", ngrams, **kwargs)


def test_the_stage_counts_documents_and_the_pieces_it_cuts_them_into_apart(tmp_path, capsys):
    """A document cut in two gives two records: 'N in -> N+1 out (10x% kept)' was the stage's summary."""
    split = _filler(1000, "head") + " " + QUOTED + " " + _filler(800, "tail")  # two pieces
    gone = QUOTED  # nothing left
    clean = [_filler(500, f"clean{i}x") for i in range(4)]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate([split, gone, *clean])))
    (tmp_path / "bench.jsonl").write_text(json.dumps({"text": QUESTION}) + "\n")
    out = tmp_path / "clean"
    result = run_cli(capsys, "data", "decontaminate", "--input", corpus, "--benchmark", tmp_path / "bench.jsonl",
                     "--output", out, "--workers", 1, "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (out / "00000.jsonl").read_text().splitlines()]
    documents = {r["id"].partition("#")[0] for r in records}
    assert (len(records), len(documents)) == (6, 5)  # d0's two pieces, d2..d5 whole; d1 removed
    stats = json.loads((out / "stats.json").read_text())
    assert (stats["documents_in"], stats["documents_out"], stats["pieces_out"]) == (6, 5, 6)
    assert "6 in -> 6 pieces out from 5 documents (83.3% kept)" in result.stdout
