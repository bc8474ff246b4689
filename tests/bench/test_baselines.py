"""The context benchmark's answer check and stock hybrid (bench/baselines.py): a wrong normalisation or
fusion would make every answer-in-prompt figure and baseline row in BENCHMARKS.md wrong."""

from __future__ import annotations

from bench.baselines import answer_in, bm25_order, normalize_answer, rrf, short_answer


def test_normalised_as_locomo_evaluates() -> None:
    assert normalize_answer("The Adoption agency, and a Cat!") == "adoption agency cat"
    assert short_answer("Sweden") == "sweden"
    assert short_answer("a long answer of more than five words here") is None
    assert short_answer(None) is None and short_answer(",") is None


def test_answer_found_whole_and_in_order() -> None:
    prompt = normalize_answer('- [2023-05-08] {"user": "I went to Sweden, then to the Berlin zoo."}')
    assert answer_in("sweden", prompt) and answer_in("berlin zoo", prompt)
    assert not answer_in("swede", prompt) and not answer_in("zoo berlin", prompt)


def test_bm25_and_rank_fusion() -> None:
    texts = ["we talked about cats", "cats cats and the vet", "the weather was nice"]
    assert bm25_order(texts, "vet for my cats")[0] == 1
    assert bm25_order(texts, "weather")[0] == 2
    # Fused by 1 / (k + rank): second in two lists beats first in one list and absent from the other.
    assert rrf([[0, 1], [2, 1]], k=60) == [1, 0, 2]


def test_reader_scores_as_the_papers() -> None:
    from bench.reader import bleu1, f1

    assert f1("Sweden", "sweden") == 1.0 and f1("in Paris", "Sweden") == 0.0
    assert abs(f1("the art museum in Paris", "Paris museum") - 2 * (2 / 4) * 1 / (2 / 4 + 1)) < 1e-9
    # BLEU-1: clipped unigram precision times the brevity penalty exp(1 - ref / pred) for a short answer.
    assert bleu1("Paris", "Paris France") == __import__("math").exp(1 - 2)
    assert bleu1("", "x") == 0.0
