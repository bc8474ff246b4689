"""Word stems computed once per stored text: a page's at write time (kept in its payload), anything else
through a cache by text; the context a retrieval fits is the same either way, and pages stored before
their payload kept stems still work."""

from __future__ import annotations

from datetime import datetime, timezone

from memoryos_workers.memory.pages import PAGES, page_payload, page_point_id
from memoryos_workers.vectorstore import PointIn
from schemas import words
from schemas.turns import Page

TEXTS = [
    ("Yesterday my sister Ana and I finally finished the kitchen renovation!", "Painting, paints: how did it go?"),
    ("I'm training for the Lisbon marathon — 30 km on Sunday.", "Über-ambitious; don't forget to rest."),
    ("", "Only the assistant spoke."),
]


def _page(user: str, seq: int, text: tuple[str, str]) -> Page:
    return Page(seq=seq, user_id=user, turn_id=f"{user}-t{seq}", user_input=text[0], agent_response=text[1],
                timestamp=datetime(2024, 1, 1, seq, tzinfo=timezone.utc))


def test_stems_stored_at_write_time_equal_those_computed_at_read_time() -> None:
    for seq, text in enumerate(TEXTS):
        payload = page_payload(_page("u", seq, text), "b1", "model")
        assert payload["stems_version"] == words.STEMS_VERSION
        computed = words.compute_stems(words.page_text(*text))
        assert set(payload["stems"].split()) == computed and payload["stems"] == " ".join(sorted(computed))
        words.clear_stems_cache()
        words.remember_stems(payload)
        assert words.content_stems(words.page_text(*text)) == computed


def test_old_or_stale_payloads_are_recomputed_not_trusted() -> None:
    text = TEXTS[0]
    old = {"user_input": text[0], "agent_response": text[1]}  # written before pages kept stems
    stale = {**old, "stems": "wrong", "stems_version": words.STEMS_VERSION + 1}
    for payload in (old, stale):
        words.clear_stems_cache()
        words.remember_stems(payload)
        assert words.content_stems(words.page_text(*text)) == words.compute_stems(words.page_text(*text))


def test_the_cache_is_bounded_and_hands_out_copies() -> None:
    words.clear_stems_cache()
    first = words.content_stems("painting paints")
    first.add("changed")
    assert words.content_stems("painting paints") == {"paint"}
    for i in range(words.STEM_CACHE_SIZE + 10):
        words.content_stems(f"text number {i}")
    assert len(words._CACHE) == words.STEM_CACHE_SIZE


def test_a_retrieval_fits_the_same_context_from_old_payloads(runtime, user_id: str) -> None:  # noqa: ANN001
    """Pages written with stems and the same pages rewritten as an old payload (no stems) give the same
    fitted context: the stored stems are only a shortcut."""
    rt = runtime
    pages = [_page(user_id, seq + 1, TEXTS[seq % 2]) for seq in range(6)]
    rt.pages.upsert(pages, batch_id="b1")
    stored = rt.pages.all_for_user(user_id)
    assert all(set(h.payload["stems"].split()) == words.compute_stems(words.page_text(
        h.payload["user_input"], h.payload["agent_response"])) for h in stored)
    old_points = []
    for hit in rt.store.get(PAGES, [h.id for h in stored], with_vectors=True):
        payload = {k: v for k, v in hit.payload.items() if k not in ("stems", "stems_version")}
        assert hit.id == page_point_id(user_id, payload["turn_id"])
        old_points.append(PointIn(id=hit.id, vector=hit.vector, payload=payload))
    rt.store.upsert(PAGES, old_points)  # dense only: BM25 vectors dropped, so compare the dense-found pages
    assert all("stems" not in h.payload for h in rt.pages.all_for_user(user_id))
    words.clear_stems_cache()
    without = rt.retriever.with_fusion(use_sparse=False).retrieve_for(
        user_id, "How did the kitchen renovation go?", max_tokens=400)
    words.clear_stems_cache()
    rt.pages.upsert(pages, batch_id="b1")
    again = rt.retriever.with_fusion(use_sparse=False).retrieve_for(
        user_id, "How did the kitchen renovation go?", max_tokens=400)
    assert without.pages and without.to_prompt() == again.to_prompt()


def test_derived_texts_keep_their_stems_only_for_their_own_text() -> None:
    """A fact's, a summary's or a trait's stored stems are used for exactly the text they were computed from,
    under the current version; anything else is computed again."""
    text = "Painting and paints: the user paints landscapes."
    stored = words.text_stems(text)
    assert words.stems_for(stored, text) == " ".join(sorted(words.compute_stems(text)))
    assert words.stems_for(stored, text + " Also sculpture.") is None  # the text changed since
    assert words.stems_for(f"{words.STEMS_VERSION + 1}:{stored.partition(':')[2]}", text) is None
    assert words.stems_for(None, text) is None and words.stems_for("paint", text) is None
    assert words.stems_for(words.text_stems(""), "") == ""
    words.clear_stems_cache()
    words.remember_text_stems(stored, text + "!")  # not its text: nothing remembered
    assert len(words._CACHE) == 0 and words.content_stems(text + "!") == words.compute_stems(text + "!")


def test_facts_profile_and_segments_are_written_with_their_stems(runtime, user_id: str) -> None:  # noqa: ANN001
    from memoryos_workers.memory.persona_store import KNOWLEDGE, PROFILES, profile_point_id
    from memoryos_workers.memory.segments import SEGMENTS
    from schemas.memory import SegmentAssignment, SegmentPlan
    from schemas.persona import Fact, Trait, UserProfile

    rt = runtime
    summary, trait = "Paints landscapes on weekends.", words.trait_text("hobby: art", "paints a lot")
    rt.persona.put_profile(UserProfile(user_id=user_id, summary=summary,
                                       traits=[Trait(dimension="hobby: art", level="high", evidence="paints a lot")]))
    rt.persona.add_facts("user", user_id, None, [Fact(text="The user's sister Ana paints murals.", date="")], {})
    rt.segments.write(user_id, None, SegmentPlan(assignments=[SegmentAssignment(
        topic_index=0, segment_id="00000000-0000-0000-0000-0000000000a1", merged=False, theme="art",
        summary_parts=["They talked about painting."], keywords=["paint"], page_indices=[])]), {})
    profile = rt.store.get(PROFILES, [profile_point_id(user_id)])[0].payload
    fact = rt.store.scroll(KNOWLEDGE, filter={"user_id": user_id})[0].payload
    segment = rt.store.scroll(SEGMENTS, filter={"user_id": user_id})[0].payload
    for stored, text in ((fact["text_stems"], fact["text"]), (segment["summary_stems"], segment["summary"]),
                         (profile["stems"][0], summary), (profile["stems"][1], trait)):
        assert words.stems_for(stored, text) == " ".join(sorted(words.compute_stems(text)))
    words.clear_stems_cache()
    rt.persona.get_profile(user_id)  # reading them puts their stems in the cache: no computing on a fit
    assert len(words._CACHE) == 2


def test_candidates_fit_as_the_pages_they_become() -> None:
    """The fitting gives the same parts from a retrieval's candidates (with their stored stems, some stale) as
    from the same pages as models (stems computed), and returns models."""
    from producers.context.fit import fit
    from producers.context.parts import PageCandidate, Parts, RetrievedPage

    candidates = []
    for i in range(12):
        text = TEXTS[i % 2]
        summary, chain = f"Topic {i // 3}: kitchens and marathons", f"Chain {i}: painting the kitchen"
        candidates.append(PageCandidate(
            turn_id=f"t{i}", user_input=text[0], agent_response=text[1],
            timestamp=PageCandidate.parse_time(f"2024-01-0{1 + i // 4}T10:00:00+02:00"), metadata={},
            score=1.0 / (1 + i), segment_id=f"s{i // 3}", segment_summary=summary, chain_summary=chain, seq=i,
            theme="", found_by=["dense"], stems=words.stored_stems(*text)["stems"] if i % 3 else None,
            segment_stems=words.text_stems(summary), chain_stems=words.text_stems(chain if i % 2 else "other")))
    models = [c.page() for c in candidates]
    assert all(isinstance(m, RetrievedPage) for m in models)
    for budget in (300, 600, 2000):
        words.clear_stems_cache()
        from_models = fit(Parts("How is the kitchen painting going?", pages=models), budget)
        words.clear_stems_cache()
        from_candidates = fit(Parts("How is the kitchen painting going?", pages=candidates), budget)
        assert from_candidates == from_models and from_models.pages
        assert all(isinstance(p, RetrievedPage) for p in from_candidates.pages)
