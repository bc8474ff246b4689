"""Publishing runs its Lua script by EVALSHA alone: no SCRIPT EXISTS on the way, one round trip per
publish, and a script Redis lost (SCRIPT FLUSH, a restart) is loaded again without the caller seeing it
or a turn being stored twice, whether the flush lands between two calls, inside one pipeline or before a
bulk call. A bulk call stores one script per user and leaves exactly what publishing the same turns
one at a time leaves.

Every test here counts commands (INFO commandstats) or flushes scripts, so they run against a private
redis-server of their own, never the shared one.
"""

from __future__ import annotations

import random
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from producers.errors import RedisUnavailableError
from producers.publish import TURNS_PER_SCRIPT, Publisher, page_json
from producers.wire import state
from producers.wire.knobs import set_user_knobs
from producers.wire.script_pipeline import ScriptPipeline
from producers.wire.scripts import lua_source
from schemas.knobs import UserKnobs
from schemas.settings import Settings
from tests.processes import PrivateRedis, free_port
from tests.producers.test_publish_failures import RecordingSender

CAPACITY = 5
BATCH = 4


def _port() -> int:
    """A free port no higher than 55535 (the range this machine leaves to tests)."""
    for _ in range(50):
        port = free_port()
        if port <= 55_535:
            return port
    for _ in range(200):
        port = random.randint(20_000, 55_535)
        try:
            with socket.create_server(("127.0.0.1", port)):
                return port
        except OSError:
            continue
    raise AssertionError("no free port at or below 55535")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    redis_server = PrivateRedis(_port(), Path(tmp_path_factory.mktemp("scripts-redis")), persistent=False).start()
    try:
        yield redis_server
    finally:
        redis_server.stop()


@pytest.fixture
def admin(server: PrivateRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url, decode_responses=True)
    yield client
    client.close()


def make(server: PrivateRedis, **overrides: Any) -> tuple[Publisher, RecordingSender]:
    values: dict[str, Any] = {"redis_url": server.url, "key_prefix": f"scripts-{uuid.uuid4().hex[:8]}",
                              "short_term_capacity": CAPACITY, "promotion_batch_size": BATCH}
    values.update(overrides)
    settings = Settings(**values)
    sender = RecordingSender(settings)
    client = redis.Redis.from_url(server.url, decode_responses=True)
    return Publisher(settings, client, sender=sender), sender


def turns(user: str, n: int, start: int = 0) -> list[dict[str, str]]:
    return [{"user_id": user, "user_input": f"q{i}", "agent_response": f"a{i}", "turn_id": f"{user}-t{i}"}
            for i in range(start, start + n)]


def calls(admin: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in admin.info("commandstats").items()}


def stored(pub: Publisher, user: str) -> list[tuple[int, str]]:
    """(seq, turn_id) of every page the user has in Redis: batches, buffer, short-term, in seq order."""
    keys = pub.keys.user(user)
    pages = [p for b in state.batches(pub.redis, keys) for p in b.pages]
    pages += state.buffered(pub.redis, keys) + state.short_term(pub.redis, keys)
    return sorted((p.seq, p.turn_id) for p in pages)


# -- no SCRIPT EXISTS, one round trip -----------------------------------------------------------


def test_publishing_sends_no_script_exists_and_one_round_trip_per_call(server: PrivateRedis, admin: redis.Redis,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pub, _ = make(server, short_term_capacity=1000)  # no batch is cut: no kick runs beside the publishes
    pub.publish(turns("warm", 1)[0])  # the script is loaded (or found) once
    admin.config_resetstat()

    writes: list[int] = []
    real_send = redis.connection.AbstractConnection.send_packed_command

    def counting_send(self: Any, command: Any, check_health: bool = True) -> None:
        if getattr(self, "port", None) == server.port:  # not another test's thread on the shared Redis
            writes.append(1)
        real_send(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting_send)
    for i in range(20):
        pub.publish(turns(f"one-{i % 4}", 1, start=i)[0])
    single_writes = len(writes)
    pub.publish_many([t for user in ("b1", "b2", "b3") for t in turns(user, 30)])
    monkeypatch.undo()

    assert single_writes == 20, "one write to Redis per publish: the scripts, the index updates, nothing before"
    assert len(writes) == 21, "and one for a bulk call"
    seen = calls(admin)
    assert "script|exists" not in seen and "script|load" not in seen
    assert seen["evalsha"] == 20 + 3, "a bulk call runs one script per user, not one per turn"


# -- NOSCRIPT: the script is loaded again, nothing is stored twice -------------------------------


def test_script_flush_between_two_publishes(server: PrivateRedis, admin: redis.Redis) -> None:
    pub, _ = make(server)
    pub.publish(turns("u", 1)[0])
    admin.script_flush()
    admin.config_resetstat()
    pub.publish(turns("u", 1, start=1)[0])
    seen = calls(admin)
    assert seen["script|load"] == 1 and seen["evalsha"] == 2, "refused once, loaded, run again"
    assert stored(pub, "u") == [(1, "u-t0"), (2, "u-t1")]
    pub.publish(turns("u", 1, start=1)[0])  # a retry of the same turn_id stores nothing new
    assert stored(pub, "u") == [(1, "u-t0"), (2, "u-t1")]


def test_script_flush_inside_one_pipeline(server: PrivateRedis, admin: redis.Redis) -> None:
    """The flush lands between two scripts of one pipeline: the first ran, the rest are refused and run
    again after the reload, in their order; the plain commands between them ran once."""
    pub, _ = make(server, short_term_capacity=100)
    script = pub.scripts.publish
    pub.publish(turns("warm", 1)[0])
    pipe = ScriptPipeline(pub.redis)
    params = (100, BATCH, "1000.0", 3600, 60_000, 1)

    def run(user: str, n: int, start: int = 0) -> None:
        pairs = [x for t in turns(user, n, start) for x in (t["turn_id"], page_json(pub.make_turn(t), 1000.0))]
        pipe.run(script, pub._publish_keys(user), (*params, *pairs))

    run("p1", 2)
    pipe.pipe.incr(f"{pub.keys.prefix}:between")
    pipe.pipe.script_flush()
    run("p2", 3)
    pipe.pipe.incr(f"{pub.keys.prefix}:between")
    run("p1", 2, start=2)
    replies = pipe.execute()

    assert [r for r in replies if isinstance(r, list)] == [[2, 0], [3, 0], [2, 0]]
    assert pub.redis.get(f"{pub.keys.prefix}:between") == "2", "commands other than scripts ran once"
    assert stored(pub, "p1") == [(1, "p1-t0"), (2, "p1-t1"), (3, "p1-t2"), (4, "p1-t3")], "in order, once"
    assert stored(pub, "p2") == [(1, "p2-t0"), (2, "p2-t1"), (3, "p2-t2")]


def test_script_flush_before_a_bulk_call(server: PrivateRedis, admin: redis.Redis) -> None:
    """Every script of the bulk call is refused; all are run again after one load, each user's turns in
    order (more than TURNS_PER_SCRIPT of one user make several scripts)."""
    pub, sender = make(server)
    pub.publish(turns("warm", 1)[0])
    admin.script_flush()
    admin.config_resetstat()
    big = TURNS_PER_SCRIPT + 7
    batch = turns("bulk-a", big) + turns("bulk-b", 3) + turns("bulk-c", 9)
    random.Random(3).shuffle(batch)  # users interleaved; each user's turns are stored in the order given
    pub.publish_many(batch)
    seen = calls(admin)
    assert seen["script|load"] == 1, "one load for every refused script"
    assert seen["evalsha"] == 2 * 4, "four scripts (two for bulk-a), each refused once and run once"
    for user, n in (("bulk-a", big), ("bulk-b", 3), ("bulk-c", 9)):
        order = [t["turn_id"] for t in batch if t["user_id"] == user]
        assert [turn_id for _, turn_id in stored(pub, user)] == order, f"{user}: every turn once, in call order"
        assert [seq for seq, _ in stored(pub, user)] == list(range(1, n + 1))
    pub.publish_many(batch)  # the whole call again: nothing new
    assert len(stored(pub, "bulk-a")) == big
    assert pub.followup.wait_empty(timeout=10)
    assert sorted(sender.promoted()) == ["bulk-a", "bulk-c"], "users whose batch was cut are kicked once"


def test_publish_after_a_redis_restart(server: PrivateRedis) -> None:
    """A restart loses every script (and, without persistence, the data): the next publish reconnects,
    gets NOSCRIPT, loads the script and stores the turn. Had Redis still been away, the caller would have
    seen RedisUnavailableError and retried with the same turn_id."""
    pub, _ = make(server)
    pub.publish(turns("r", 1)[0])
    server.stop()
    server.start()
    try:
        pub.publish(turns("r", 1, start=1)[0])
    except RedisUnavailableError:
        pub.publish(turns("r", 1, start=1)[0])  # the documented retry
    assert stored(pub, "r") == [(1, "r-t1")], "the data went with the restart; the new turn is stored once"
    assert pub.redis.script_exists(pub.scripts.publish.sha) == [True]


def test_errors_other_than_noscript_are_raised(server: PrivateRedis) -> None:
    pub, _ = make(server)
    pub.redis.set(pub.keys.user("wrong").stm, "not a list")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        pub.publish(turns("wrong", 1)[0])


# -- a bulk call leaves what one-at-a-time leaves -----------------------------------------------


def _snapshot(pub: Publisher, user: str, rename: str) -> dict[str, Any]:
    """What Redis holds for a user, with the other user's name and the publish times taken out."""
    keys = pub.keys.user(user)

    def pages(items: list) -> list[tuple]:
        return [(p.seq, p.turn_id.replace(user, rename), p.user_input, p.agent_response) for p in items]

    data = pub.redis.hgetall(keys.state)
    return {
        "short_term": pages(state.short_term(pub.redis, keys)),
        "buffered": pages(state.buffered(pub.redis, keys)),
        "batches": [(b.batch_id, b.state, pages(b.pages), b.extra.get("count"))
                    for b in state.batches(pub.redis, keys)],
        "seq": data.get("seq"), "batch_seq": data.get("batch_seq"), "buffer_waits": "buf_since" in data,
        "ids": sorted(i.replace(user, rename) for i in pub.redis.zrange(keys.ids, 0, -1)),
    }


# The publish script before issue 24, one turn per call (its body; the shared prelude is prepended): the
# oracle a call of many turns must agree with.
PER_TURN_PUBLISH = """
local turn_id = ARGV[1]
local now = tonumber(ARGV[5])
if redis.call('ZSCORE', K.ids, turn_id) then
  return {0, 0, '', 0}
end
local seq = redis.call('HINCRBY', K.state, 'seq', 1)
redis.call('ZADD', K.ids, now, turn_id)
redis.call('ZREMRANGEBYSCORE', K.ids, '-inf', now - tonumber(ARGV[6]))
redis.call('RPUSH', K.stm, '{"seq":' .. seq .. ',' .. string.sub(ARGV[2], 2))
local capacity = tonumber(redis.call('HGET', K.knobs, 'short_term_capacity') or ARGV[3])
while redis.call('LLEN', K.stm) > capacity do
  if redis.call('RPUSH', K.buf, redis.call('LPOP', K.stm)) == 1 then
    redis.call('HSET', K.state, 'buf_since', now)
  end
end
local batch_id = ''
local kick = 0
local batch_size = tonumber(ARGV[4])
if redis.call('LLEN', K.buf) >= batch_size then
  batch_id = make_batch(batch_size, now, ARGV[8])
  kick = claim_kick(ARGV[7])
end
return {1, seq, batch_id, kick}
"""


@pytest.mark.parametrize("capacity_knob", [None, 2])
def test_a_bulk_call_stores_what_publishing_one_at_a_time_stores(server: PrivateRedis,
                                                                 capacity_knob: int | None) -> None:
    """Three users get the same turns: through the per-turn script of before, through publish_turn one at a
    time, and through publish_turns in two calls (more than TURNS_PER_SCRIPT turns in the second, a turn_id
    twice in it, one published before). Redis ends up holding the same for all three."""
    pub, sender = make(server)
    oracle, one, bulk = "oracle", "one-at-a-time", "bulk"
    if capacity_knob is not None:
        for user in (oracle, one, bulk):
            set_user_knobs(pub.redis, pub.keys.user(user), UserKnobs(short_term_capacity=capacity_knob))
    rng = random.Random(capacity_knob or 0)
    first = turns("U", 3)
    second = turns("U", TURNS_PER_SCRIPT + 30, start=3)
    second.insert(5, dict(second[1]))  # a turn_id twice in one call
    second.insert(9, dict(first[0]))  # and one published before
    tail = second[40:]
    rng.shuffle(tail)  # any order the caller likes: all three get the same
    second[40:] = tail

    def as_user(items: list[dict[str, str]], user: str) -> list[dict[str, str]]:
        return [{**t, "user_id": user, "turn_id": t["turn_id"].replace("U", user)} for t in items]

    per_turn = pub.redis.register_script(lua_source("common") + "\n" + PER_TURN_PUBLISH)
    s = pub.settings
    for t in as_user(first, oracle) + as_user(second, oracle):
        turn, now = pub.make_turn(t), time.time()
        per_turn(keys=pub.keys.user(oracle).script_keys(), args=[
            turn.turn_id, page_json(turn, now), s.short_term_capacity, s.promotion_batch_size, repr(now),
            s.dedupe_window, int(s.kick_stale_after * 1000), 1])
    for t in as_user(first, one) + as_user(second, one):
        pub.publish(t)
    pub.publish_many(as_user(first, bulk))
    pub.publish_many(as_user(second, bulk))

    expected = _snapshot(pub, oracle, "X")
    assert _snapshot(pub, one, "X") == expected
    assert _snapshot(pub, bulk, "X") == expected
    assert int(expected["seq"]) == 3 + TURNS_PER_SCRIPT + 30, "the duplicate and the earlier turn_id stored nothing"
    assert expected["batches"] and all(len(b[2]) == BATCH for b in expected["batches"])
    assert pub.followup.wait_empty(timeout=10)
    assert sorted(sender.promoted()) == [bulk, one], "each publisher-fed user kicked once while the kick is fresh"


# -- the other script readers: the degraded retrieval and the backlog ------------------------------


def test_backlog_and_degraded_retrieval_send_no_script_exists_and_survive_a_flush(
        server: PrivateRedis, admin: redis.Redis) -> None:
    """Both run scripts on a pipeline; redis-py's Script there sends SCRIPT EXISTS first (one more round
    trip on a path that is already late, for the degraded answer). A flushed script is loaded again."""
    from producers.pending import read_backlog
    from producers.retrieve import RetrievalClient
    from schemas.query import RetrievalRequest

    pub, _ = make(server)
    pub.publish_many(turns("late", CAPACITY + BATCH))  # one batch cut, so the backlog has something
    client = RetrievalClient(pub.settings, pub.sender, pub.redis, pub.scripts)
    ask = RetrievalRequest.of("late", "what did I say?", deadline_ms=30, on_deadline="degrade")
    read_backlog(pub.redis, pub.keys, pub.scripts), client.retrieve(ask)  # the scripts are loaded once
    for flush in (False, True):
        if flush:
            admin.script_flush()
        admin.config_resetstat()
        backlog = read_backlog(pub.redis, pub.keys, pub.scripts)
        context = client.retrieve(ask)
        seen = calls(admin)
        assert "script|exists" not in seen
        assert seen.get("script|load", 0) == (2 if flush else 0), "each script loaded again once after a flush"
        assert backlog.batches == 1 and backlog.pages == BATCH
        assert context.degraded
        assert sorted(p.turn_id for p in context.short_term) == sorted(
            t["turn_id"] for t in turns("late", CAPACITY + BATCH)), "recent and pending turns, from the script"
