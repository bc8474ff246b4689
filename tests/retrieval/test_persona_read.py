"""Which facts a retrieval keeps beside the nearest ones, chosen from payloads before any entry is built."""

from memoryos_workers.memory.persona_store import latest_and_replaced
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
