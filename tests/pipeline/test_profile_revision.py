"""The profile is revised, not replaced (issue 22, item 3): pure merge rules, without services."""

from __future__ import annotations

from collections import Counter

from memoryos_workers.pipeline.answer_schemas import persona_schema, read_persona
from memoryos_workers.pipeline.profile_merge import MAX_EVIDENCE_TURNS, merge_profile, prompt_profile
from schemas.persona import ProfileUpdate, TraitUpdate, UserProfile


def _merge(old: UserProfile | None, traits: list[TraitUpdate], seen: list[tuple[str, float]],
           counts: Counter | None = None) -> UserProfile:
    return merge_profile(old, ProfileUpdate(summary="Lea is a cook who hikes.", traits=traits), user_id="lea",
                         now=999.0, llm_model="m", prompt_version="v", seen=seen, counts=counts)


HIKING = TraitUpdate(dimension="interest: hiking", level="high", evidence="Lea hikes every weekend.")


def test_a_trait_confirmed_twice_keeps_one_entry_with_both_evidence_turns_and_the_later_time() -> None:
    first = _merge(None, [HIKING], [("t1", 100.0)])
    again = TraitUpdate(id="T1", dimension="interest: hiking", level="high", evidence="Lea climbed Mont Blanc.")
    counts: Counter = Counter()
    second = _merge(first, [again], [("t7", 700.0)], counts)
    assert len(second.traits) == 1
    trait = second.traits[0]
    assert trait.evidence_turns == ["t1", "t7"] and trait.first_seen == 100.0 and trait.last_seen == 700.0
    assert counts["refreshed"] == 1 and trait.revisions == []


def test_a_copied_trait_is_no_new_evidence() -> None:
    first = _merge(None, [HIKING], [("t1", 100.0)])
    copy = TraitUpdate(id="T1", **HIKING.model_dump(exclude={"id", "page"}))
    second = _merge(first, [copy], [("t9", 900.0)])
    assert second.traits[0].evidence_turns == ["t1"] and second.traits[0].last_seen == 100.0


def test_a_redelivered_answer_does_not_double_the_evidence() -> None:
    first = _merge(None, [HIKING], [("t1", 100.0)])
    again = TraitUpdate(id="T1", dimension="interest: hiking", level="high", evidence="Lea climbed Mont Blanc.")
    once = _merge(first, [again], [("t7", 700.0)])
    twice = _merge(once, [again], [("t7", 700.0)])
    assert twice.traits[0].evidence_turns == ["t1", "t7"] and twice.traits[0].last_seen == 700.0


def test_evidence_turns_are_bounded() -> None:
    profile = _merge(None, [HIKING], [("t0", 0.0)])
    for i in range(1, 20):
        update = TraitUpdate(id="T1", dimension="interest: hiking", level="high", evidence=f"Hike number {i}.")
        profile = _merge(profile, [update], [(f"t{i}", float(i))])
    turns = profile.traits[0].evidence_turns
    assert len(turns) == MAX_EVIDENCE_TURNS and turns[-1] == "t19"


def test_evidence_against_a_trait_revises_it_with_that_evidence() -> None:
    diet = TraitUpdate(dimension="diet: vegetarian", level="high", evidence="Lea never eats meat.")
    first = _merge(None, [diet, HIKING], [("t1", 100.0), ("t2", 200.0)])
    against = TraitUpdate(id="T1", dimension="diet: vegetarian", level="low", evidence="Lea eats steak again.")
    counts: Counter = Counter()
    second = _merge(first, [against], [("t8", 800.0)], counts)
    assert [t.dimension for t in second.traits] == ["diet: vegetarian", "interest: hiking"]
    trait = second.traits[0]
    assert (trait.level, trait.evidence, trait.evidence_turns, trait.last_seen) == (
        "low", "Lea eats steak again.", ["t8"], 800.0)
    was = trait.revisions[-1]
    assert (was.level, was.evidence, was.evidence_turns, was.by_turn) == ("high", "Lea never eats meat.", ["t1"], "t8")
    assert counts["revised"] == 1
    # Delivered again: already revised, so nothing changes twice.
    third = _merge(second, [against], [("t8", 800.0)])
    assert len(third.traits[0].revisions) == 1


def test_a_named_trait_may_be_renamed_within_its_category_only() -> None:
    diet = TraitUpdate(dimension="diet: vegetarian", level="high", evidence="Lea never eats meat.")
    first = _merge(None, [diet, HIKING], [("t1", 100.0), ("t2", 200.0)])
    vegan = TraitUpdate(id="T1", dimension="diet: vegan", level="high", evidence="Lea dropped dairy too.")
    second = _merge(first, [vegan], [("t3", 300.0)])
    assert [t.dimension for t in second.traits] == ["diet: vegan", "interest: hiking"]
    assert second.traits[0].revisions[-1].dimension == "diet: vegetarian"
    counts: Counter = Counter()
    across = TraitUpdate(id="T2", dimension="diet: pescatarian", level="medium", evidence="Lea eats fish.")
    third = _merge(second, [across], [("t4", 400.0)], counts)
    assert counts["ignored"] == 1 and third.traits[1].dimension == "interest: hiking"
    assert [t.dimension for t in third.traits] == ["diet: vegan", "interest: hiking", "diet: pescatarian"]


def test_an_unmentioned_trait_survives() -> None:
    diet = TraitUpdate(dimension="diet: vegetarian", level="high", evidence="Lea never eats meat.")
    first = _merge(None, [diet, HIKING], [("t1", 100.0), ("t2", 200.0)])
    cooking = TraitUpdate(dimension="interest: cooking", level="medium", evidence="Lea bakes bread.")
    second = _merge(first, [cooking], [("t3", 300.0)])
    assert [t.dimension for t in second.traits] == ["diet: vegetarian", "interest: hiking", "interest: cooking"]
    assert second.traits[0] == first.traits[0]


def test_a_profile_stored_before_trait_evidence_loads_and_is_refreshed() -> None:
    stored = {"user_id": "lea", "summary": "Lea hikes.", "traits": [
        {"dimension": "interest: hiking", "level": "high", "evidence": "Lea hikes."}]}
    old = UserProfile.model_validate(stored)
    assert old.traits[0].evidence_turns == [] and old.traits[0].last_seen is None
    again = TraitUpdate(dimension="interest: hiking", level="high", evidence="Lea hiked the Alps.")
    new = _merge(old, [again], [("t5", 500.0)])
    assert new.traits[0].evidence_turns == ["t5"] and new.traits[0].last_seen == 500.0


def test_the_call_is_shown_trait_ids_and_may_name_only_those() -> None:
    profile = _merge(None, [HIKING], [("t1", 100.0)])
    shown = prompt_profile(profile)
    assert shown == {"summary": profile.summary, "traits": [
        {"id": "T1", "dimension": "interest: hiking", "level": "high", "evidence": "Lea hikes every weekend."}]}
    trait = persona_schema(3, 2048, (), ["T1"])["properties"]["profile"]["properties"]["traits"]["items"]
    assert trait["properties"]["id"]["enum"] == ["", "T1"] and trait["properties"]["page"]["enum"] == [0, 1, 2]
    answer = read_persona({"profile": {"summary": "s", "traits": [
        {"id": "T1", "dimension": "interest: hiking", "level": "low", "evidence": "e", "page": 2},
        {"dimension": "interest: chess", "level": "low", "evidence": "e"},  # an older answer's shape
        {"id": 3, "dimension": "interest: go", "level": "low", "evidence": "e", "page": True}]},
        "user_facts": [], "assistant_facts": []})
    assert answer is not None
    assert [(t.id, t.page) for t in answer.profile.traits] == [("T1", 2), ("", None), ("", None)]
