"""Facts over months, end to end (real Redis, the Celery worker, Qdrant Edge, fastembed; the test model
supersedes by rule): after the story, each "now" prompt holds the current value and no stale one shown as
current, each "before" question reaches the old value with its window, unrelated facts survive, a retried
extraction supersedes nothing twice, and forget removes the history."""

from __future__ import annotations

import time
import uuid

import pytest

from memoryos_workers.memory import fact_changes
from memoryos_workers.testing import fact_story as story
from memoryos_workers.testing.fact_responder import fact_responder

pytestmark = pytest.mark.integration


STORY_LINES = (*(line for _, lines in story.PERIODS for line in lines), *story.SMALL_TALK)


def persona_calls(llm, story_only: bool = False) -> int:  # noqa: ANN001
    """story_only counts the story's calls alone: the fake model is shared by the session, and an earlier
    module's user can still have persona work that the worker finishes while this story runs."""
    return sum(1 for r in llm.requests
               if (r.get("response_format") or {}).get("json_schema", {}).get("name") == "persona"
               and (not story_only or any(line in str(r.get("messages")) for line in STORY_LINES)))


@pytest.fixture(scope="module")
def lived(celery_worker, runtime):  # noqa: ANN001, ANN201
    from tests.conftest import FAKE_LLM

    FAKE_LLM.reset()
    FAKE_LLM.responder = fact_responder
    user_id = f"lea-{uuid.uuid4().hex[:8]}"
    extractions = 0
    for period in story.turns(user_id):
        runtime.publisher.publish_many(period)
        runtime.pending.wait_idle(user_id, timeout=120, flush=True)
        extractions += 1
    calls = persona_calls(FAKE_LLM, story_only=True)
    facts = runtime.persona.list("user", user_id)
    partner = next((e for e in facts if e.text == story.CORRECTION[0]), None)
    assert partner is not None, ("the story's partner fact", [(e.text, e.status) for e in facts],
                                 [(e.text, e.status) for e in runtime.persona.list("user", user_id, history=True)])
    fact_changes.correct(runtime.persona, user_id, partner.fact_id, text=story.CORRECTION[1], by="person:lea")
    yield user_id, calls, extractions
    runtime.forget(user_id) if hasattr(runtime, "forget") else None


def _prompt(runtime, user_id: str, query: str, **options) -> str:  # noqa: ANN001
    """Without a token budget: what is asked here is which facts retrieval reads and how they are labelled;
    how a budget shares room between facts and pages is producers/context/fit.py's (issue 21)."""
    return runtime.retriever.retrieve_for(user_id, query, now=story.NOW, max_tokens=0, **options).to_prompt()


def test_now_prompts_hold_the_current_value_and_no_stale_one(runtime, lived) -> None:  # noqa: ANN001
    user_id, _, _ = lived
    for q in story.NOW_QUESTIONS:
        prompt = _prompt(runtime, user_id, q.query)
        if q.current is not None:
            assert story.shown_as_current(prompt, q.current), (q.query, story.fact_lines(prompt))
        assert not [s for s in q.stale if story.shown_as_current(prompt, s)], (q.query, story.fact_lines(prompt))


def test_before_questions_reach_the_old_value_with_its_window(runtime, lived) -> None:  # noqa: ANN001
    user_id, _, _ = lived
    for q in story.BEFORE_QUESTIONS:
        prompt = _prompt(runtime, user_id, q.query, **q.options)
        assert story.shown_with_window(prompt, q.old, q.window), (q.query, story.fact_lines(prompt))


def test_history_is_kept_and_unrelated_facts_survive(runtime, lived) -> None:  # noqa: ANN001
    user_id, calls, extractions = lived
    current = {e.text: e for e in runtime.persona.list("user", user_id)}
    every = runtime.persona.list("user", user_id, history=True)
    assert all(t in current for t in story.UNRELATED)
    ended = [e for e in every if not e.current]
    assert len(ended) >= story.CHANGES, [(e.text, e.status) for e in ended]
    paris = next(e for e in every if e.text == f"{story.S} lives in Paris.")
    berlin = next(e for e in every if e.text == f"{story.S} lives in Berlin.")
    assert paris.superseded_by == berlin.fact_id and berlin.superseded_by == current[
        f"{story.S} lives in Vancouver."].fact_id
    assert paris.window() == "2023-01 to 2023-04", "the date Lea stated (2023-04) wins over the page's (05)"
    corrected = next(e for e in every if e.text == story.CORRECTION[0])
    new = current[story.CORRECTION[1]]
    assert corrected.status == "superseded" and corrected.changes[-1].by == "person:lea"
    assert new.origin == "person" and new.origin_by == "person:lea"
    car = next(e for e in every if "Renault" in e.text)
    assert car.status == "retired" and car.superseded_by is None
    assert all(e.source_turns for e in every if e.origin == "llm")
    assert calls == extractions, "one persona call per extraction: supersession costs no extra call"


def test_a_retried_extraction_supersedes_nothing_twice(runtime, lived, fake_llm) -> None:  # noqa: ANN001
    user_id, _, _ = lived
    fake_llm.responder = fact_responder
    before = {e.fact_id: (e.status, len(e.changes)) for e in runtime.persona.list("user", user_id, history=True)}
    traits_before = runtime.persona.get_profile(user_id).traits
    hits = runtime.pages.all_for_user(user_id)[-40:]  # as if the last calls' marks were lost: read again
    runtime.pages.mark_persona(user_id, [h.payload["turn_id"] for h in hits], "pending")
    keys = runtime.keys.user(user_id)
    for sid in {h.payload["segment_id"] for h in hits}:
        runtime.redis.hset(keys.seg_lbase, sid, 0)
    # extract() answers {} at once while another extraction holds the user's persona lock (the worker may
    # still be on the story's last kick under load): try again until it has read the pages.
    deadline = time.monotonic() + 60
    while not (done := runtime.persona_worker.extract(user_id, force=True)) and time.monotonic() < deadline:
        time.sleep(0.2)
    after = runtime.persona.list("user", user_id, history=True)
    assert persona_calls(fake_llm) >= 1, done
    for e in after:
        if e.fact_id in before and not e.current:
            assert (e.status, sum(c.action in ("superseded", "retired", "corrected") for c in e.changes)) == (
                before[e.fact_id][0], 1), e
    assert {e.text for e in after if e.current} >= {q.current for q in story.NOW_QUESTIONS if q.current}
    traits_after = {t.dimension: t for t in runtime.persona.get_profile(user_id).traits}
    for trait in traits_before:  # evidence read again is not evidence twice
        again = traits_after[trait.dimension]
        assert (again.evidence_turns, len(again.revisions)) == (trait.evidence_turns, len(trait.revisions))


def test_the_profile_is_revised_with_its_evidence(runtime, lived) -> None:  # noqa: ANN001
    """The test model names the shown diet trait when Lea's diet changes: one diet trait, revised by the page
    that says so, with what it was kept; the traits nothing mentions stay."""
    from schemas.persona import month

    user_id, _, _ = lived
    traits = runtime.persona.get_profile(user_id).traits
    diet = [t for t in traits if t.dimension.startswith("diet:")]
    assert [(t.dimension, t.level) for t in diet] == [("diet: vegan", "high")]
    vegan_turn = next(h.payload["turn_id"] for h in runtime.pages.all_for_user(user_id)
                      if h.payload["user_input"] == "I'm vegan now.")
    assert diet[0].evidence_turns == [vegan_turn] and month(diet[0].last_seen) == "2024-06"
    was = diet[0].revisions[-1]
    assert (was.dimension, was.by_turn, month(was.at)) == ("diet: vegetarian", vegan_turn, "2024-06")
    assert was.evidence_turns and was.evidence_turns != [vegan_turn]
    assert len(traits) > 1 and all(t.evidence_turns and t.last_seen for t in traits)


def test_pinned_facts_are_not_superseded_by_the_llm(runtime, fake_llm) -> None:  # noqa: ANN001
    user_id = f"pin-{uuid.uuid4().hex[:8]}"
    store = runtime.persona
    pinned = fact_changes.add(store, user_id, f"{story.S} lives in Porto.", pinned=True, by="key:test")
    plain = fact_changes.add(store, user_id, f"{story.S} works as a nurse.", by="key:test")
    from schemas.persona import Fact

    facts = [Fact(text=f"{story.S} lives in Rome.", date="", supersedes=["F1"]),
             Fact(text=f"{story.S} works as a cook.", date="", supersedes=["F2"])]
    out = store.add_facts("user", user_id, None, facts, {})
    shown = {"F1": pinned, "F2": plain}
    first = fact_changes.apply_links(store, facts, out["ids"], [1.7e9, 1.7e9], shown, [], 1.7e9)
    again = fact_changes.apply_links(store, facts, out["ids"], [1.7e9, 1.7e9], shown, ["F1"], 1.7e9)
    assert first["superseded"] == 1 and again == {"superseded": 0, "confirmed": 0, "retired": 0, "ignored": 0}
    assert fact_changes.one(store, user_id, pinned.fact_id).current
    assert fact_changes.one(store, user_id, plain.fact_id).superseded_by == out["ids"][1]
    store.delete_user(user_id)
    assert store.list("user", user_id, history=True) == []


def test_a_model_that_names_every_shown_fact_replaces_none(runtime) -> None:  # noqa: ANN001
    """What the real 0.5B model did: one new fact naming every shown id as superseded (and as confirmed),
    and a retire list of them all. More than MAX_NAMED names say nothing about which fact changed; one or
    two do; an id both superseded and confirmed is neither."""
    from schemas.persona import Fact

    user_id = f"many-{uuid.uuid4().hex[:8]}"
    store = runtime.persona
    olds = [fact_changes.add(store, user_id, f"{story.S} {text}.", by="key:test")
            for text in ("lives in Porto", "works as a nurse", "has a dog named Rex", "is vegan")]
    shown = {f"F{i + 1}": e for i, e in enumerate(olds)}
    facts = [Fact(text=f"{story.S} went to a support group.", date="", supersedes=list(shown), confirms=list(shown)),
             Fact(text=f"{story.S} plays chess on Sundays.", date="", supersedes=["F1", "F2", "F3"]),
             Fact(text=f"{story.S} lives in Rome.", date="", supersedes=["F1"]),
             Fact(text=f"{story.S} works as a cook.", date="", supersedes=["F2"], confirms=["F2"])]
    out = store.add_facts("user", user_id, None, facts, {})
    links = fact_changes.apply_links(store, facts, out["ids"], [1.7e9] * 4, shown, ["F2", "F3", "F4"], 1.7e9)
    # The first fact names all four both ways (neither), the second three, the retire list three.
    assert links["superseded"] == 1 and links["retired"] == 0 and links["ignored"] == 3 + 3
    now = {e.fact_id: e for e in store.list("user", user_id, history=True)}
    assert now[olds[0].fact_id].superseded_by == out["ids"][2], "one name is a change"
    assert all(now[e.fact_id].current for e in olds[1:]), "the rest stand"
    store.delete_user(user_id)

def test_a_shown_fact_said_again_is_stored_once_however_it_is_linked(runtime) -> None:  # noqa: ANN001
    """What the real 0.5B model stored twice on conv-26: a shown fact restated word for word and named as
    superseded and confirmed, or among every shown id, or as superseded alone. The extraction keeps a new fact
    apart from the facts `replaces` says it ends, so the restatement confirms its twin instead of standing
    beside it as a second current fact."""
    from schemas.persona import Fact

    user_id = f"twice-{uuid.uuid4().hex[:8]}"
    store = runtime.persona
    olds = [fact_changes.add(store, user_id, f"{story.S} {text}.", by="key:test")
            for text in ("went to a support group", "works as a nurse", "lives in Porto")]
    shown = {f"F{i + 1}": e for i, e in enumerate(olds)}
    facts = [Fact(text=olds[0].text, date="", supersedes=["F1"], confirms=["F1"]),
             Fact(text=olds[1].text, date="", supersedes=list(shown)),
             Fact(text=olds[2].text.lower(), date="", supersedes=["F3"])]
    keep_apart = [[shown[s].fact_id for s in fact_changes.replaces(f, shown)[0]] for f in facts]
    assert keep_apart == [[], [], []]
    out = store.add_facts("user", user_id, None, facts, {}, keep_apart=keep_apart)
    links = fact_changes.apply_links(store, facts, out["ids"], [1.7e9] * 3, shown, [], 1.7e9)
    assert out["ids"] == [e.fact_id for e in olds] and (out["added"], out["refreshed"]) == (0, 3)
    assert links["superseded"] == 0
    # Sorted: facts added within one millisecond share created_ms, the order the store lists them by.
    assert sorted(e.text for e in store.list("user", user_id, history=True)) == sorted(e.text for e in olds)
    store.delete_user(user_id)


def test_a_near_copy_of_a_shown_fact_confirms_it(runtime) -> None:  # noqa: ANN001
    """What the real 0.5B model stored twice on conv-26, once a word shorter: the post-check gives a near copy
    of a shown fact that fact's text (persona_review, fact_form.near_copy), which the store confirms."""
    from datetime import UTC, datetime

    from memoryos_workers.pipeline.persona_review import review
    from schemas.persona import Fact, PersonaExtraction, ProfileUpdate
    from schemas.turns import Page

    user_id = f"near-{uuid.uuid4().hex[:8]}"
    store = runtime.persona
    old = fact_changes.add(store, user_id, "The user struggled with mental health, and support the user got was "
                           "really helpful. So, the user started looking into counseling.", by="key:test")
    said = "I struggled with mental health, and support I got was really helpful. So, I started looking into"
    page = Page(user_id=user_id, turn_id="t1", seq=1, user_input=said, agent_response="Good.",
                timestamp=datetime(2023, 5, 8, tzinfo=UTC))
    answer = PersonaExtraction(profile=ProfileUpdate(summary="", traits=[]), assistant_facts=[], user_facts=[
        Fact(text="The user said that he struggled with mental health, and support the user got was really "
                  "helpful. So, the user started", date="")])
    got = review(answer, [page], known=[old.text], known_facts=[old.text])
    assert [f.text for f in got.value.user_facts] == [old.text] and got.near_copies == 1
    out = store.add_facts("user", user_id, None, got.value.user_facts, {})
    assert out["ids"] == [old.fact_id] and (out["added"], out["refreshed"]) == (0, 1)
    assert [e.text for e in store.list("user", user_id)] == [old.text]
    store.delete_user(user_id)


def test_export_holds_the_history_and_erase_removes_it(runtime, lived) -> None:  # noqa: ANN001
    from memoryos_workers.ops.user_data import collect_user_records

    user_id, _, _ = lived
    facts = [r for r in collect_user_records(runtime, user_id) if r["type"] == "fact" and r["kind"] == "user"]
    paris = next(r for r in facts if r["text"] == f"{story.S} lives in Paris.")
    assert paris["status"] == "superseded" and paris["valid_until"] and paris["superseded_by"]
    assert [c["action"] for c in paris["changes"]] == ["extracted", "superseded"]
    corrected = next(r for r in facts if r["text"] == story.CORRECTION[0])
    assert corrected["changes"][-1]["by"] == "person:lea" and corrected["changes"][-1]["action"] == "corrected"
    [profile] = [r for r in collect_user_records(runtime, user_id) if r["type"] == "profile"]
    diet = next(t for t in profile["traits"] if t["dimension"].startswith("diet:"))
    assert diet["evidence_turns"] and diet["last_seen"] and diet["revisions"][-1]["dimension"] == "diet: vegetarian"


def test_a_fact_stored_before_fact_times_reads_as_current(runtime) -> None:  # noqa: ANN001
    from memoryos_workers.memory.persona_store import KNOWLEDGE, fact_point_id
    from memoryos_workers.vectorstore import PointIn

    user_id = f"old-{uuid.uuid4().hex[:8]}"
    store = runtime.persona
    store.ensure()
    owner = store.owner("user", user_id, None)
    point = fact_point_id("user", owner, "Maya has a cat.")
    store.store.upsert(KNOWLEDGE, [PointIn(id=point, vector=store.embedder.embed(["Maya has a cat."])[0], payload={
        "kind": "user", "owner": owner, "text": "Maya has a cat.", "date": "", "user_id": user_id,
        "assistant_id": None, "scope_user": user_id, "created_at": 1.6e9, "created_ms": 1_600_000_000_000,
        "updated_at": 1.6e9})])
    [entry] = store.list("user", user_id)
    assert entry.current and entry.valid_from == 1.6e9 and entry.fact_id and entry.window() == "since 2020-09"
    corrected = fact_changes.correct(store, user_id, entry.fact_id, text="Maya has two cats.", by="key:k1")
    assert fact_changes.one(store, user_id, entry.fact_id).superseded_by == corrected.fact_id
    with pytest.raises(fact_changes.FactNotFound):
        fact_changes.one(store, f"other-{user_id}", corrected.fact_id)
    fact_changes.delete(store, user_id, corrected.fact_id, by="person:maya")
    assert [e.fact_id for e in store.list("user", user_id, history=True)] == [entry.fact_id]
    with pytest.raises(fact_changes.FactNotFound):
        fact_changes.delete(store, user_id, corrected.fact_id, by="person:maya")
    [tombstone] = [h for h in store.drawn_from(user_id, "user") if h.payload.get("status") == "deleted"]
    exported = store.timeline(tombstone)
    assert tombstone.payload["text"] == "" and exported["fact_id"] == corrected.fact_id
    assert (exported["changes"][-1]["action"], exported["changes"][-1]["by"]) == ("deleted", "person:maya")
    store.delete_user(user_id)
    assert store.drawn_from(user_id, "user") == []


def test_a_fact_of_another_kind_is_never_superseded(runtime) -> None:  # noqa: ANN001
    """What the real 0.5B model did with every id it saw: a user fact naming an assistant fact (or a retire
    list naming one) is not a change of the same thing: the link is ignored and counted."""
    from schemas.persona import Fact

    user_id = f"kind-{uuid.uuid4().hex[:8]}"
    store = runtime.persona
    advice = store.add_facts("assistant", user_id, "bot-a", [Fact(text="The assistant suggested Porto.", date="")],
                             {})
    [said] = store.find("assistant", user_id, advice["ids"], assistant_id="bot-a")
    home = fact_changes.add(store, user_id, f"{story.S} lives in Porto.", by="key:test")
    facts = [Fact(text=f"{story.S} lives in Rome.", date="", supersedes=["F1", "F2"])]
    out = store.add_facts("user", user_id, None, facts, {})
    links = fact_changes.apply_links(store, facts, out["ids"], [1.7e9], {"F1": said, "F2": home}, ["F1"], 1.7e9)
    assert links == {"superseded": 1, "confirmed": 0, "retired": 0, "ignored": 2}
    assert store.find("assistant", user_id, advice["ids"], assistant_id="bot-a")[0].current
    assert fact_changes.one(store, user_id, home.fact_id).superseded_by == out["ids"][0]
    store.delete_user(user_id)


def test_new_facts_of_one_call_that_replace_the_same_fact_replace_each_other_in_order(runtime) -> None:  # noqa: ANN001
    """Two moves in the pages of one call, both naming the shown home: Paris held until the first move,
    Berlin until the second, Vancouver is current; delivered again, nothing ends twice."""
    from schemas.persona import Fact

    user_id = f"chain-{uuid.uuid4().hex[:8]}"
    store = runtime.persona
    paris = fact_changes.add(store, user_id, f"{story.S} lives in Paris.", by="key:test")
    job = fact_changes.add(store, user_id, f"{story.S} works as a nurse.", by="key:test")
    facts = [Fact(text=f"{story.S} lives in Vancouver.", date="", supersedes=["F1"]),  # answered out of order
             Fact(text=f"{story.S} lives in Berlin.", date="", supersedes=["F1"])]
    t0 = time.time()  # Paris holds from now: the moves come after
    starts = [t0 + 200, t0 + 100]
    shown = {"F1": paris, "F2": job}
    out = store.add_facts("user", user_id, None, facts, {}, keep_apart=[[paris.fact_id], [paris.fact_id]])
    vancouver, berlin = out["ids"]
    first = fact_changes.apply_links(store, facts, out["ids"], starts, shown, [], t0 + 200)
    again = fact_changes.apply_links(store, facts, out["ids"], starts, shown, [], t0 + 200)
    assert first["superseded"] == 2 and again["superseded"] == 0
    every = {e.fact_id: e for e in store.list("user", user_id, history=True)}
    assert (every[paris.fact_id].superseded_by, every[paris.fact_id].valid_until) == (berlin, pytest.approx(t0 + 100))
    assert (every[berlin].superseded_by, every[berlin].valid_until) == (vancouver, pytest.approx(t0 + 200))
    assert every[vancouver].current and every[job.fact_id].current
    store.delete_user(user_id)


def test_forget_removes_the_profile_with_its_trait_evidence(runtime) -> None:  # noqa: ANN001
    from memoryos_workers.ops.user_data import collect_user_records, erase_user
    from memoryos_workers.pipeline.profile_merge import merge_profile
    from schemas.persona import ProfileUpdate, TraitUpdate

    user_id = f"forget-{uuid.uuid4().hex[:8]}"
    update = ProfileUpdate(summary="Lea hikes.", traits=[
        TraitUpdate(dimension="interest: hiking", level="high", evidence="Lea hikes every weekend.")])
    runtime.persona.put_profile(merge_profile(None, update, user_id=user_id, now=1.7e9, llm_model="m",
                                              prompt_version="v", seen=[("t-secret", 1.7e9)]))
    assert "t-secret" in str(list(collect_user_records(runtime, user_id)))
    erase_user(runtime, user_id, wait=1)
    assert runtime.persona.get_profile(user_id) is None
    assert "t-secret" not in str(list(collect_user_records(runtime, user_id)))
