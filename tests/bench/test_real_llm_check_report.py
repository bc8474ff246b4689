"""The real-model check's section says what was measured: the turns published of those asked (a run stopped at
its time slot), the load, and what the persona post-check did before the checks (bench/real_llm_check.py)."""

from __future__ import annotations

from bench.real_llm_check import markdown


def _result(**extra: object) -> dict:
    checks = {"every turn back exactly once": True, "every fact names its subject": False}
    return {"turns": 70, "turns_wanted": 120, "conversation": "conv-26", "context_tokens": 4096,
            "seconds_per_batch": {"mean": 200.0, "max": 400.0}, "checks": checks, "calls_by_purpose": {"persona": 2},
            "llm_calls": 12, "promoted_pages": 60, "calls_per_100_promoted": 20.0, "segments": 5, "facts": 9,
            "traits": 4, "themes": ["adoption plans"], "profile_summary": "The user plans to adopt.",
            "persona_runs": [{"pages": 14, "seconds": 150.0}], "reproduce": "python -m bench.real_llm_check",
            "load_average": {"start": [6.5, 5.0, 4.0], "end": [3.1, 4.0, 4.0]}, **extra}


def test_section_names_turns_load_and_post_check() -> None:
    text = markdown(_result(post_check={"persona_facts_repaired": 3, "persona_facts_rejected": 2,
                                        "persona_quality_retries": 1},
                            failures={"facts without a subject": ["She paints."]}))
    assert "The first 70 turns of LoCoMo conv-26 (of 120 asked" in text
    assert "load average 6.5 at the start and 3.1 at the end" in text
    assert "3 facts said in the third person, 2 dropped, 0 summaries rejected, 1 calls asked again" in text
    assert "| every fact names its subject | FAIL |" in text and "'She paints.'" in text


def test_a_check_tightened_after_the_run_shows_as_failed() -> None:
    text = markdown(_result(failures_after_tightening={"every fact names its subject (check of X)": ["Hi you!"]}))
    assert "| every fact names its subject (check of X) | FAIL |" in text


def test_a_run_of_every_turn_asked_does_not_claim_it_stopped() -> None:
    text = markdown(_result(turns_wanted=70))
    assert "asked" not in text.split("published with")[0] and "post-check" not in text
