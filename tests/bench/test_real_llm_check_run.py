"""The real-model check drives the workers in process; when the coalescing wait of the persona is over, the
promoter's own check sends the persona task to a broker this run does not consume. The check must then do
what the worker would and extract, or a slow model gets no persona call at all (seen twice with the 0.5B
model). Here the fake model (persona responder, real HTTP) stands in, slowed down so that the wait is
over by the next batch."""

from __future__ import annotations

import pytest

from memoryos_workers.testing.fake_llm import FakeLLM
from memoryos_workers.testing.persona_responder import persona_responder

pytestmark = pytest.mark.integration


def test_a_persona_task_sent_during_the_run_is_extracted(monkeypatch: pytest.MonkeyPatch, settings) -> None:  # noqa: ANN001
    from bench.real_llm_check import check

    # A slow model: each call takes longer than the coalescing wait, so the wait recorded after one batch is
    # over at the promoter's check of the next, which sends the task before the run can claim it.
    monkeypatch.setenv("MEMORYOS_PERSONA_MAX_DELAY", "0.3")
    monkeypatch.setenv("MEMORYOS_PERSONA_MIN_PAGES", "50")  # the default (the tests' settings lower it)
    monkeypatch.setenv("MEMORYOS_REDIS_URL", settings.redis_url)
    with FakeLLM(responder=persona_responder, latency=0.6) as llm:
        result = check(llm.base_url, "conv-26", 40, 8192, None)
    assert result["calls_by_purpose"]["persona"] >= 1, result["persona_runs"]
    assert any(not run.get("flush") for run in result["persona_runs"]), "extracted during the run, not at the end"
    assert result["checks"]["a non-empty profile"]
    assert result["checks"]["every turn back exactly once"]


def test_the_run_keeps_what_the_model_wrote_and_what_the_post_check_kept(monkeypatch: pytest.MonkeyPatch,
                                                                        settings) -> None:  # noqa: ANN001
    """A failed check must be readable: every persona answer reviewed during the run is in the results, with the
    facts the model wrote beside those kept, so "25 dropped as not said" can be read, not only counted."""
    from bench.real_llm_check import check
    from memoryos_workers.pipeline import persona_review

    review = persona_review.review
    monkeypatch.setenv("MEMORYOS_REDIS_URL", settings.redis_url)
    with FakeLLM(responder=persona_responder) as llm:
        result = check(llm.base_url, "conv-26", 40, 8192, None)
    answers = result["persona_answers"]
    assert len(answers) >= result["calls_by_purpose"]["persona"] >= 1  # each answer reviewed, retries too
    for answer in answers:
        assert answer["counts"]["written"] == len(answer["written"]["user_facts"]) + len(
            answer["written"]["assistant_facts"])
        assert len(answer["kept"]["user_facts"]) <= len(answer["written"]["user_facts"])
        # Each user fact's quote beside its text: the persona test model quotes the line it restates.
        assert len(answer["written"]["user_quotes"]) == len(answer["written"]["user_facts"])
        assert all(answer["written"]["user_quotes"])
    assert any(answer["written"]["user_facts"] for answer in answers)  # the persona test model writes facts
    assert persona_review.review is review  # the recording is undone
