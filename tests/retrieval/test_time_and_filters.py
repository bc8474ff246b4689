"""Time as people say it and filters, end to end: real Redis, the Celery worker, the embedded store, real
embeddings, the fake LLM for segmentation. Turns sit on known days with look-alike turns on other days."""

from __future__ import annotations

import uuid

import pytest

import producers
from producers.wire.contract import RETRIEVE_TASK
from producers.wire.knobs import set_user_knobs
from schemas.knobs import UserKnobs

CLIMB = ("I went bouldering at the climbing gym with Marta and we finally topped the purple route.",
         "Well done to you both! The purple route is a tough one.")
NOW = "2025-05-14T15:00:00+00:00"  # a Wednesday


def _filler(user_id: str, n: int, day: str = "2025-04-02") -> list[dict]:
    """Turns on other subjects that push the turns under test out of short-term into the store."""
    things = ["the garden", "my Spanish course", "the book club", "the kitchen renovation", "my job interview",
              "the wedding plans", "the chess tournament", "the volunteer shift"]
    return [{"user_id": user_id, "user_input": f"Some news about {things[i % len(things)]}, part {i}.",
             "agent_response": "Thanks for the update!", "timestamp": f"{day}T10:{i:02d}:00+00:00"}
            for i in range(n)]


def _stored(runtime, pending, turns: list[dict]) -> list[str]:  # noqa: ANN001
    """Publishes the turns, then enough filler that they all leave short-term, and waits until stored."""
    user_id = turns[0]["user_id"]
    ids = runtime.publisher.publish_many(turns)
    runtime.publisher.publish_many(_filler(user_id, runtime.settings.short_term_capacity + 2))
    pending.wait_idle(user_id, timeout=120, flush=True)
    assert {h.payload["turn_id"] for h in runtime.pages.get(user_id, ids)} == set(ids)
    return ids


@pytest.fixture(scope="module")
def climbing_days(celery_worker, runtime):  # noqa: ANN001, ANN201
    """The same words on last Tuesday, the Tuesday before, the Monday between and this morning."""
    from memoryos_workers.testing.responders import default_responder
    from tests.conftest import FAKE_LLM

    FAKE_LLM.responder = default_responder
    user_id = f"climb-{uuid.uuid4().hex[:8]}"
    days = {"last_tuesday": "2025-05-13T18:00:00+00:00", "tuesday_before": "2025-05-06T18:00:00+00:00",
            "monday": "2025-05-12T18:00:00+00:00", "today": "2025-05-14T09:00:00+00:00"}
    ids = []
    for ts in days.values():  # other talk between them, as in a conversation, so none is another's neighbour
        ids.append(runtime.publisher.publish({"user_id": user_id, "user_input": CLIMB[0], "agent_response": CLIMB[1],
                                              "timestamp": ts}))
        runtime.publisher.publish_many(_filler(user_id, 3, ts[:10]))
    _stored(runtime, runtime.pending, _filler(user_id, 1))
    return user_id, dict(zip(days, ids, strict=True))


def _order(context, ids: dict[str, str]) -> list[str]:  # noqa: ANN001
    names = {turn_id: name for name, turn_id in ids.items()}
    return [names[p.turn_id] for p in context.pages if p.turn_id in names]


def test_last_tuesday_finds_tuesdays_turn_ahead_of_the_same_words_on_other_days(climbing_days, retrieve_local,
                                                                              publisher) -> None:  # noqa: ANN001
    user_id, ids = climbing_days
    question = "What did I do at the climbing gym last Tuesday?"
    local = retrieve_local(user_id, question, now=NOW, max_tokens=0)
    order = _order(local, ids)
    assert order[0] == "last_tuesday", order
    assert set(order) == set(ids)
    dated = [p.turn_id for p in local.pages if "date" in p.found_by and p.turn_id in ids.values()]
    assert dated == [ids["last_tuesday"]]  # of the look-alikes, only it is found by the search within that day
    remote = producers.retrieve(user_id, question, now=NOW, max_tokens=0, publisher=publisher)
    assert _order(remote, ids) == order
    # Asked a week earlier, "last Tuesday" is the Tuesday before: the question's time decides, not the clock.
    earlier = retrieve_local(user_id, question, now="2025-05-07T12:00:00+00:00", max_tokens=0)
    assert _order(earlier, ids)[0] == "tuesday_before"
    # "yesterday" from Wednesday afternoon is the same Tuesday; "this morning" is today's turn.
    assert _order(retrieve_local(user_id, "Where was I climbing yesterday?", now=NOW, max_tokens=0), ids)[0] == (
        "last_tuesday")
    assert _order(retrieve_local(user_id, "Where did I go climbing this morning?", now=NOW, max_tokens=0),
                  ids)[0] == "today"


def test_the_users_own_time_zone_decides_what_yesterday_is(celery_worker, runtime, retrieve_local,
                                                         fake_llm) -> None:  # noqa: ANN001
    """23:30 UTC on 13 May is already 14 May in Tokyo: with the user's zone knob set to Tokyo, "yesterday"
    asked on 15 May (Tokyo) is that turn, not the same words at 23:30 UTC on 14 May."""
    tokyo, utc = f"tz-tokyo-{uuid.uuid4().hex[:6]}", f"tz-utc-{uuid.uuid4().hex[:6]}"
    set_user_knobs(runtime.redis, runtime.keys.user(tokyo), UserKnobs(timezone="Asia/Tokyo"))
    found = {}
    for user_id in (tokyo, utc):
        turns = [{"user_id": user_id, "user_input": CLIMB[0], "agent_response": CLIMB[1], "timestamp": ts}
                 for ts in ("2025-05-13T23:30:00+00:00", "2025-05-14T23:30:00+00:00")]
        first, second = _stored(runtime, runtime.pending, turns)
        context = retrieve_local(user_id, "Who did I go climbing with yesterday?", now="2025-05-15T12:00:00",
                                 max_tokens=0)
        found[user_id] = _order(context, {"13th UTC": first, "14th UTC": second})
    assert found[tokyo][0] == "13th UTC"  # 14 May in Tokyo
    assert found[utc][0] == "14th UTC"
    with pytest.raises(ValueError, match="unknown time zone"):
        UserKnobs(timezone="Mars/Olympus")


@pytest.fixture(scope="module")
def labelled_turns(celery_worker, runtime):  # noqa: ANN001, ANN201
    """24 turns over six days, two assistants, two channels; the last ones stay in short-term and pending."""
    user_id = f"filt-{uuid.uuid4().hex[:8]}"
    turns = []
    for i in range(24):
        turns.append({
            "user_id": user_id, "assistant_id": "coach" if i % 2 else "tutor",
            "user_input": f"Garden note {i}: the tomatoes and the basil need water.",
            "agent_response": "I will remind you.", "timestamp": f"2025-05-0{1 + i % 6}T12:{i:02d}:00+00:00",
            "metadata": {"channel": "web" if i % 3 else "app", "priority": i % 4},
        })
    ids = runtime.publisher.publish_many(turns[:14])
    runtime.pending.wait_idle(user_id, timeout=120, flush=True)
    ids += runtime.publisher.publish_many(turns[14:])  # these stay in Redis: short-term and a pending batch
    return user_id, dict(zip(ids, turns, strict=True))


FILTERS = [
    {"since": "2025-05-03", "until": "2025-05-04"},
    {"assistant_id": "coach"},
    {"metadata": {"channel": "app"}},
    {"metadata": {"channel": "web", "priority": 1}},
    {"since": "2025-05-02T00:00:00+00:00", "assistant_id": "tutor", "metadata": {"channel": "web"}},
]


def _expected(turn: dict, flt: dict) -> bool:
    day = turn["timestamp"][:10]
    return (day >= flt.get("since", "0")[:10] and day <= flt.get("until", "9")[:10]
            and flt.get("assistant_id", turn["assistant_id"]) == turn["assistant_id"]
            and all(turn["metadata"].get(k) == v for k, v in flt.get("metadata", {}).items()))


@pytest.mark.parametrize("flt", FILTERS, ids=[str(i) for i in range(len(FILTERS))])
def test_filters_hold_for_pages_short_term_and_pending_turns(labelled_turns, runtime, retrieve_local, publisher,
                                                             flt) -> None:  # noqa: ANN001
    user_id, turns = labelled_turns
    expected = {turn_id for turn_id, turn in turns.items() if _expected(turn, flt)}
    assert expected and expected != set(turns)
    local = retrieve_local(user_id, "When do the tomatoes need water?", filters=flt, top_k=100, max_tokens=0)
    assert set(local.turn_ids()) == expected
    assert {p.turn_id for p in local.short_term} and {p.turn_id for p in local.pages}  # both kinds were filtered
    remote = producers.retrieve(user_id, "When do the tomatoes need water?", filters=flt, top_k=100, max_tokens=0,
                                publisher=publisher)
    assert set(remote.turn_ids()) == expected


BAD = [
    ({"filters": {"colour": "red"}}, "filters.colour"),
    ({"filters": {"since": "last week"}}, "filters.since"),
    ({"filters": {"until": 20250501}}, "filters.until"),
    ({"filters": {"since": "2025-05-04", "until": "2025-05-01"}}, "filters.until"),
    ({"filters": {"assistant_id": "not valid!"}}, "filters.assistant_id"),
    ({"filters": {"metadata": {"channel": 1.5}}}, "filters.metadata.channel"),
    ({"filters": {"metadata": {"channel": None}}}, "filters.metadata.channel"),
    ({"filters": {"metadata": {"a.b": "x"}}}, "filters.metadata"),
    ({"filters": {"metadata": ["web"]}}, "filters.metadata"),
    ({"filters": "channel=web"}, "filters"),
    ({"now": "tomorrow at noon"}, "now"),
    ({"now": 1715000000}, "now"),
    ({"max_tokens": 50}, "max_tokens"),
    ({"max_tokens": -1}, "max_tokens"),
]


@pytest.mark.parametrize(("change", "field"), BAD, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD)])
def test_invalid_options_are_rejected_naming_the_field(change, field, retrieve_local, publisher) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=rf"^{field}:"):
        retrieve_local("valid-user", "What did I say?", **change)
    with pytest.raises(ValueError, match=rf"^{field}:"):  # rejected before anything is sent
        producers.retrieve("valid-user", "What did I say?", publisher=publisher, timeout=0.2, **change)


def test_the_worker_checks_what_it_is_sent_too(celery_worker, publisher) -> None:  # noqa: ANN001
    """A sender that skips the client's checks gets the worker's ValueError, naming the field."""
    from producers.retrieve import client_for

    client = client_for(publisher)
    with pytest.raises(ValueError, match=r"^filters\.colour:"):
        client.call(RETRIEVE_TASK, ["valid-user", "What did I say?"], {"filters": {"colour": "red"}}, timeout=10)
    with pytest.raises(ValueError, match=r"^filters\.until:"):  # naive and aware bounds, compared in the user's zone
        client.call(RETRIEVE_TASK, ["valid-user", "What did I say?"],
                    {"filters": {"since": "2025-05-04T12:00:00", "until": "2025-05-04T10:00:00+00:00"}}, timeout=10)
