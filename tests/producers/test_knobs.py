"""Per-user settings (a MemoryOS object's capacities and thresholds), honoured over the deployment's by
the publish script and by workers, for two users sharing one publisher, worker and store."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from producers.wire import state
from producers.wire.knobs import set_user_knobs, user_knobs, user_settings
from schemas.knobs import UserKnobs
from schemas.settings import Settings


def test_knobs_round_trip_and_fall_back_to_the_deployment() -> None:
    base = Settings(short_term_capacity=10, mid_term_heat_threshold=5.0)
    knobs = UserKnobs(short_term_capacity=3, mid_term_similarity_threshold=0.25)
    stored = knobs.to_redis()
    assert stored == {"short_term_capacity": "3", "mid_term_similarity_threshold": "0.25"}
    again = UserKnobs.from_redis({**stored, "from_a_newer_version": "x"})
    assert again == knobs
    mine = again.apply(base)
    assert (mine.short_term_capacity, mine.mid_term_similarity_threshold) == (3, 0.25)
    assert mine.mid_term_heat_threshold == 5.0 and base.short_term_capacity == 10, "the deployment's untouched"
    assert UserKnobs().apply(base) is base


@pytest.mark.parametrize(
    ("field", "value"),
    [("short_term_capacity", 0), ("short_term_capacity", 10_001), ("mid_term_capacity", -1),
     ("long_term_knowledge_capacity", "many"), ("retrieval_queue_capacity", 0)],
)
def test_bad_knobs_are_rejected_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        UserKnobs.model_validate({field: value})


def test_each_user_keeps_their_own_capacities(celery_worker, runtime, publisher, pending, user_id, fake_llm) -> None:  # noqa: ANN001
    small, wide, default = user_id + "-small", user_id + "-wide", user_id + "-default"
    never_join = 10.0  # above any Fscore (cosine + Jaccard <= 2): every topic starts its own segment
    set_user_knobs(runtime.redis, runtime.keys.user(small), UserKnobs(
        short_term_capacity=3, mid_term_capacity=1, mid_term_heat_threshold=1e9,
        mid_term_similarity_threshold=never_join))
    set_user_knobs(runtime.redis, runtime.keys.user(wide), UserKnobs(mid_term_similarity_threshold=never_join))
    assert user_knobs(runtime.redis, runtime.keys.user(default)) == UserKnobs()
    topics = ["hiking in the Alps", "my sourdough starter", "the chess tournament", "learning Portuguese"]
    for user in (small, wide, default):
        publisher.publish_many([
            {"user_id": user, "user_input": f"Let me tell you about {topics[(i // 10) % 4]}, part {i}.",
             "agent_response": f"Tell me more about {topics[(i // 10) % 4]}."}
            for i in range(40)
        ])
        pending.wait_idle(user, timeout=120, flush=True)
    s = runtime.settings
    assert len(state.short_term(runtime.redis, runtime.keys.user(small))) == 3
    assert len(state.short_term(runtime.redis, runtime.keys.user(default))) == s.short_term_capacity
    assert user_settings(runtime.redis, runtime.keys.user(small), s).mid_term_capacity == 1
    assert len(runtime.segments.all_for_user(wide)) > 1, "the user's own similarity threshold"
    assert len(runtime.segments.all_for_user(small)) == 1, "evicted down to the user's mid-term capacity"
    assert len(runtime.segments.all_for_user(default)) < len(runtime.segments.all_for_user(wide))
    assert runtime.persona.get_profile(small) is None, "heat threshold out of reach: no persona extraction"
    assert runtime.persona.get_profile(default) is not None
