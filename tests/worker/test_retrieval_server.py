"""The retrieval lane: requests in a Redis list, served by threads of their own in the process that owns the
store (a server on this session's runtime here, a prefork pool child below), answered through the caller's
reply list with the same errors as before. The Celery hosting is exercised by the tests that retrieve
through the session's in-process worker (tests/retrieval) and by worker processes (tests/system)."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

import producers
from memoryos_workers.counters import read_counters
from producers.errors import MemoryOSError
from producers.publish import Publisher
from producers.retrieve import client_for
from producers.wire.contract import RETRIEVE_TASK
from producers.wire.rpc import Request
from schemas.settings import Settings
from tests.conftest import PREFIX
from tests.processes import WorkerProcess


@pytest.fixture(scope="module")
def lane(runtime):  # noqa: ANN001, ANN201
    """Servers of their own rather than the session's Celery worker's, which an earlier fault test may have
    stopped (tests/system/test_redis_restart.py makes every consumer of this process die on a lost broker)."""
    from memoryos_workers.worker.retrieval_server import RetrievalServer

    server = RetrievalServer(runtime, threads=2).start()
    deadline = time.monotonic() + 60
    while client_for(runtime.publisher).lane()["retrieval_servers"] < 1:
        assert time.monotonic() < deadline, "the retrieval server did not announce itself"
        time.sleep(0.05)
    yield server
    server.stop()


def _turn(user_id: str, i: int) -> dict:
    return {"user_id": user_id, "user_input": f"I planted tomatoes, week {i}", "agent_response": f"Great ({i})"}


def test_the_lane_answers_and_announces_itself(lane, publisher, user_id) -> None:  # noqa: ANN001
    turn_id = publisher.publish(_turn(user_id, 1))
    context = producers.retrieve(user_id, "What did I plant?", publisher=publisher, on_deadline="raise")
    assert not context.degraded and context.turn_ids() == [turn_id]
    lane = client_for(publisher).lane()
    assert lane["retrieval_servers"] >= 1 and lane["retrieval_requests_waiting"] == 0


def test_a_malformed_request_is_dropped_and_the_lane_goes_on(lane, publisher, user_id) -> None:  # noqa: ANN001
    publisher.redis.rpush(publisher.keys.rpc_requests, "not json", '{"v": 99, "id": "x"}')
    publisher.publish(_turn(user_id, 1))
    assert producers.retrieve(user_id, "What did I plant?", publisher=publisher, on_deadline="raise").turn_ids()
    assert publisher.redis.llen(publisher.keys.rpc_requests) == 0


def test_a_request_long_past_its_deadline_is_not_computed(lane, publisher, redis_client, user_id) -> None:  # noqa: ANN001
    """Its caller answered itself from Redis long ago: no answer is pushed, the drop is counted."""
    before = int(read_counters(redis_client, publisher.keys).get("retrieval_requests_expired") or 0)
    request = Request(uuid.uuid4().hex, RETRIEVE_TASK, [user_id, "What did I plant?"], {}, time.time() - 30)
    publisher.redis.rpush(publisher.keys.rpc_requests, request.encode())
    deadline = time.monotonic() + 10
    while int(read_counters(redis_client, publisher.keys).get("retrieval_requests_expired") or 0) == before:
        assert time.monotonic() < deadline, "the request was not dropped"
        time.sleep(0.05)
    assert not redis_client.exists(publisher.keys.reply(request.request_id))


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"deadline_ms": 0}, "deadline_ms"),
    ({"deadline_ms": -5}, "deadline_ms"),
    ({"deadline_ms": True}, "deadline_ms"),
    ({"deadline_ms": "250"}, "deadline_ms"),
    ({"timeout": 0}, "timeout"),
    ({"on_deadline": "maybe"}, "on_deadline"),
    ({"deadline_ms": 100, "timeout": 0.1}, "deadline_ms and timeout"),
])
def test_bad_deadline_arguments_are_rejected_before_anything_is_sent(kwargs, field, publisher) -> None:  # noqa: ANN001
    waiting = publisher.redis.llen(publisher.keys.rpc_requests)
    with pytest.raises(ValueError, match=rf"^{field}:"):
        producers.retrieve("valid-user", "What did I say?", publisher=publisher, **kwargs)
    assert publisher.redis.llen(publisher.keys.rpc_requests) == waiting


@pytest.mark.integration
def test_a_prefork_worker_serves_the_lane_from_its_pool_child(tmp_path: Path, redis_client) -> None:  # noqa: ANN001
    """With a Qdrant server the pool forks: the parent must not run threads, its child serves the lane. The
    server here is unreachable, so the child's answer is the store's error, which reaches the caller as
    MemoryOSError rather than as a degraded answer or a timeout: a server took the request and answered."""
    prefix = f"{PREFIX}-prefork-{uuid.uuid4().hex[:6]}"
    unreachable = "http://127.0.0.1:9"  # the discard port: connection refused at once
    env = {**os.environ, "MEMORYOS_KEY_PREFIX": prefix, "MEMORYOS_QDRANT_URL": unreachable,
           "MEMORYOS_DATA_DIR": str(tmp_path / "unused")}
    settings = Settings(key_prefix=prefix, qdrant_url=unreachable)
    publisher = Publisher(settings)
    worker = WorkerProcess("prefork", env, tmp_path, concurrency=1, pool="prefork", ready_marker=" ready.").start()
    try:
        client = client_for(publisher)
        deadline = time.monotonic() + 60
        while client.lane()["retrieval_servers"] < 1:
            assert time.monotonic() < deadline, f"no retrieval server announced itself:\n{worker.tail()}"
            time.sleep(0.1)
        with pytest.raises(MemoryOSError, match="retrieval failed on the worker"):
            producers.retrieve("someone", "anything?", publisher=publisher, deadline_ms=60_000, on_deadline="raise")
    finally:
        worker.stop()
        for key in redis_client.scan_iter(match=f"{prefix}*", count=1000):
            redis_client.delete(key)
