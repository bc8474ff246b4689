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
