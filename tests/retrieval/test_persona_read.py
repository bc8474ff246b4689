"""Which facts a retrieval keeps beside the nearest ones, chosen from payloads before any entry is built."""

from memoryos_workers.memory.fact_recency import latest_and_replaced, latest_confirmed
from memoryos_workers.vectorstore import Hit


def _fact(n: int, **payload: object) -> Hit:
    return Hit(id=f"00000000-0000-0000-0000-{n:012d}", score=0.0,
               payload={"fact_id": f"f{n}", "owner": "user:u", **payload})


def test_latest_are_the_most_recently_confirmed_current_facts_earlier_created_first_on_ties() -> None:
    hits = [_fact(1, confirmed_at=5.0), _fact(2, confirmed_at=9.0), _fact(3, confirmed_at=5.0),
            _fact(4, confirmed_at=7.0, status="superseded"), _fact(5, confirmed_at=5.0)]
    _, latest = latest_and_replaced(hits, 3)
    assert [h.payload["fact_id"] for h in latest] == ["f2", "f1", "f3"]


def test_older_payloads_are_ordered_by_their_last_update_then_creation() -> None:
    hits = [_fact(1, created_at=8.0), _fact(2, updated_at=3.0, created_at=1.0), _fact(3, created_at=2.0)]
    _, latest = latest_and_replaced(hits, 2)
    assert [h.payload["fact_id"] for h in latest] == ["f1", "f2"]


def test_a_fact_under_the_history_owner_without_status_is_not_current() -> None:
    hits = [_fact(1, confirmed_at=9.0, owner="was:user:u"), _fact(2, confirmed_at=1.0)]
    assert [h.payload["fact_id"] for h in latest_and_replaced(hits, 5)[1]] == ["f2"]


def test_replaced_are_the_facts_a_found_one_replaced_unless_found_themselves() -> None:
    hits = [_fact(1, superseded_by="f9", status="superseded"), _fact(2, superseded_by="f3", status="superseded"),
            _fact(3, confirmed_at=1.0), _fact(4, superseded_by="f3", status="superseded")]
    before, _ = latest_and_replaced(hits, 1, {"f3", "f4"})
    assert [h.payload["fact_id"] for h in before] == ["f2"]
    assert latest_and_replaced(hits, 1)[0] == [], "nothing found: nothing replaced to add"


# --- the indexed read retrieval uses instead of all the user's facts -----------------------------------

import pytest  # noqa: E402

from memoryos_workers.embeddings.stub import StubEmbedder  # noqa: E402
from memoryos_workers.memory.persona_store import KNOWLEDGE, PersonaStore  # noqa: E402
from memoryos_workers.vectorstore import PointIn  # noqa: E402
from memoryos_workers.vectorstore.edge import EdgeStore  # noqa: E402
from schemas.persona import Fact  # noqa: E402
from schemas.settings import Settings  # noqa: E402


@pytest.fixture
def persona(tmp_path):  # noqa: ANN001, ANN201
    store = EdgeStore(tmp_path / "vectors", "t")
    yield PersonaStore(store, StubEmbedder(), Settings(key_prefix="t", data_dir=tmp_path))
    store.close()


def _confirm(persona: PersonaStore, user: str, texts: list[str], at: float) -> None:
    ids = [h.id for h in persona.in_order("user", user) if h.payload["text"] in texts]
    persona.store.set_payload(KNOWLEDGE, ids, {"confirmed_at": at})


def test_latest_confirmed_keeps_what_reading_every_fact_keeps(persona: PersonaStore) -> None:
    texts = [f"The user likes thing number {i}." for i in range(12)]
    persona.add_facts("user", "u", None, [Fact(text=t, date="") for t in texts], {})  # one call: all tied
    persona.add_facts("user", "v", None, [Fact(text="Another user's fact.", date="")], {})
    for n in (1, 3, 5, 20):
        expected = latest_and_replaced(persona.in_order("user", "u"), n)[1]
        assert [h.id for h in latest_confirmed(persona, "user", "u", n) or []] == [h.id for h in expected]
    _confirm(persona, "u", texts[7:9], 2e9)  # confirmed later: they lead, then the earliest created of the tie
    _confirm(persona, "u", texts[3:4], 3e9)
    for n in (1, 2, 3, 5, 20):
        expected = latest_and_replaced(persona.in_order("user", "u"), n)[1]
        got = latest_confirmed(persona, "user", "u", n) or []
        assert [h.id for h in got] == [h.id for h in expected]
    assert [h.payload["text"] for h in latest_confirmed(persona, "user", "u", 4) or []] == [
        texts[3], texts[7], texts[8], texts[0]]


def test_a_fact_without_confirmed_at_makes_it_read_them_all(persona: PersonaStore) -> None:
    persona.add_facts("user", "u", None, [Fact(text="The user swims.", date="")], {})
    old = "00000000-0000-0000-0000-000000000001"
    persona.store.upsert(KNOWLEDGE, [PointIn(id=old, vector=[0.1] * persona.embedder.dim,
                                             payload={"kind": "user", "owner": "user:u", "text": "Old fact.",
                                                      "user_id": "u", "created_ms": 1})])
    assert latest_confirmed(persona, "user", "u", 3) is None


def test_ties_are_found_whatever_the_time_reads_back_as(persona: PersonaStore) -> None:
    """The store's float index and the payload read back may differ in the last bit for some times (about
    one in five writes of `time.time()` here)."""
    for user in range(30):
        texts = [f"The user collects item number {i}." for i in range(6)]
        persona.add_facts("user", f"u{user}", None, [Fact(text=t, date="") for t in texts], {})
        for n in (1, 3):
            expected = latest_and_replaced(persona.in_order("user", f"u{user}"), n)[1]
            got = latest_confirmed(persona, "user", f"u{user}", n) or []
            assert [h.id for h in got] == [h.id for h in expected]


def test_the_assistant_search_runs_only_when_the_assistant_has_facts_for_the_user(persona: PersonaStore) -> None:
    """read_unembedded counts them beside the embedding; persona_for then skips the search for none."""
    from memoryos_workers.retrieval.persona_read import persona_for, read_unembedded
    from schemas.query import RetrievalRequest

    persona.add_facts("assistant", "u", "bot", [Fact(text="The assistant answers in French.", date="")], {})
    vector = persona.embedder.embed_query("French")
    searched: list[str] = []
    search = persona.search
    persona.search = lambda kind, *a, **k: searched.append(kind) or search(kind, *a, **k)  # type: ignore[method-assign]
    for user, assistant, has in (("u", "bot", True), ("u", "other", False), ("v", "bot", False)):
        read = read_unembedded(persona, user, False, 5, assistant)
        assert read.assistant_facts is has
        searched.clear()
        _, _, facts = persona_for(persona, read, RetrievalRequest.of(user, "French?"), vector, 5, assistant, None)
        assert [e.text for e in facts] == (["The assistant answers in French."] if has else [])
        assert ("assistant" in searched) is has
    read = read_unembedded(persona, "u", False, 5)  # not counted: searched as before
    assert read.assistant_facts is None
    searched.clear()
    assert persona_for(persona, read, RetrievalRequest.of("u", "French?"), vector, 5, "bot", None)[2]
    assert "assistant" in searched
