"""The persona post-check through the real pipeline (fake LLM over HTTP): a model whose persona answer is
copied chat is asked once more with the reasons, never twice, and what is stored passes the checks the
real-model benchmark applies (bench/real_llm_check.py)."""

from __future__ import annotations

from typing import Any

import pytest

from memoryos_workers.counters import read_counters
from memoryos_workers.pipeline.persona_quality import fact_without_subject, summary_problems
from memoryos_workers.testing.responders import data_block, default_responder, schema_name

pytestmark = pytest.mark.integration

STORY = [
    ("I moved to Berlin last month for a new job.", "Wow, congratulations on the move! How is it going?"),
    ("My new job is as a UX designer at a small studio.", "That sounds exciting, I'm happy for you."),
    ("I adopted a cat called Pimenta from the shelter.", "What a lovely name!"),
    ("Thanks! Lovely weather today, isn't it?", "It is, enjoy it."),
]
GOOD = {"profile": {"summary": "The user is a UX designer who moved to Berlin and has a cat, Pimenta.",
                    "traits": []},
        "user_facts": [{"text": "The user lives in Berlin.", "date": "", "page": 0, "supersedes": [], "confirms": []},
                       {"text": "The user works as a UX designer.", "date": "", "page": 1, "supersedes": [],
                        "confirms": []}],
        "retired": [], "assistant_facts": []}


def _chat_answer(data: dict[str, Any]) -> dict[str, Any]:
    """What the 0.5B model wrote: the assistant's line as the summary, turns copied as facts."""
    pages = data["pages"]
    return {"profile": {"summary": pages[0]["assistant"], "traits": []},
            "user_facts": [{"text": p["assistant"], "date": "", "page": p["index"], "supersedes": [], "confirms": []}
                           for p in pages],
            "retired": [], "assistant_facts": []}


def _responder(improves: bool, seen: list[str]):  # noqa: ANN202
    def respond(request: dict[str, Any]) -> Any:
        if schema_name(request) != "persona":
            return default_responder(request)
        last = request["messages"][-1]["content"]
        retry = "previous answer was rejected" in last
        seen.append("retry" if retry else "first")
        return GOOD if retry and improves else _chat_answer(data_block(request) or {"pages": []})

    return respond


def _run(private_runtime, fake_llm, improves: bool) -> tuple[Any, list[str]]:  # noqa: ANN001
    seen: list[str] = []
    fake_llm.responder = _responder(improves, seen)
    rt = private_runtime(short_term_capacity=1, promotion_batch_size=10)
    user = f"persona-retry-{improves}"
    rt.publisher.publish_many([{"user_id": user, "user_input": u, "agent_response": a} for u, a in STORY * 3])
    rt.pending.check(user, force=True)
    rt.promoter.run(user)
    rt.persona_worker.extract(user, force=True)
    return rt, seen, user


def test_a_copied_turn_is_asked_again_once_and_the_better_answer_is_stored(private_runtime, fake_llm) -> None:  # noqa: ANN001
    rt, seen, user = _run(private_runtime, fake_llm, improves=True)
    assert seen == ["first", "retry"]
    stats = read_counters(rt.redis, rt.keys)
    assert stats.get("llm_calls_retry") == 1 and stats.get("persona_quality_retries") == 1
    profile = rt.persona.get_profile(user)
    said = [t for pair in STORY for t in pair]
    assert profile is not None and summary_problems(profile.summary, said) == []
    facts = [f.text for f in rt.persona.list("user", user)]
    assert facts and not any(fact_without_subject(f) for f in facts)


def test_a_model_that_does_no_better_is_not_asked_a_third_time(private_runtime, fake_llm) -> None:  # noqa: ANN001
    rt, seen, user = _run(private_runtime, fake_llm, improves=False)
    assert seen == ["first", "retry"]
    profile = rt.persona.get_profile(user)
    assert profile is None or not profile.summary  # the chat line is not stored as the summary
    assert rt.persona.list("user", user) == []  # nor the copied turns as facts
