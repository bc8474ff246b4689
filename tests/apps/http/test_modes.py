"""The API beside a worker process that owns the embedded store (reads over RPC), and the API while Redis
is down (503 with Retry-After, nothing lost, serving again once Redis is back)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.apps.http.conftest import KEYS, Api, server_env, turns
from tests.conftest import PREFIX, _delete_prefix
from tests.processes import ApiServer, PrivateRedis, WorkerProcess, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def rpc_api(tmp_path: Path, redis_client: redis.Redis) -> Iterator[Api]:
    prefix = f"{PREFIX}-httprpc-{uuid.uuid4().hex[:6]}"
    env = server_env(prefix, tmp_path / "data")
    worker = WorkerProcess("owner", env, tmp_path, concurrency=4).start()
    server = ApiServer("rpc", env, tmp_path).start()
    try:
        yield Api(server, prefix)
    finally:
        server.stop()
        worker.stop()
        _delete_prefix(redis_client, prefix + ":")


def test_reads_go_to_the_worker_that_owns_the_store(rpc_api: Api) -> None:
    with rpc_api.client(None) as anonymous:
        ready = anonymous.get("/readyz").json()
    assert ready["reads"] == "rpc" and ready["workers"] == "external" and ready["status"] == "ready"
    with rpc_api.client("acme") as acme, rpc_api.client("globex") as globex:
        assert acme.post("/v1/users/u1/turns", json=turns(25, "rpcacme")).status_code == 202
        assert globex.post("/v1/users/u1/turns", json=turns(3, "rpcglobex")).status_code == 202
        rpc_api.wait_idle("acme:u1")
        answer = acme.post("/v1/users/u1/retrieve", json={"query": "half marathon in October", "top_k": 3}).json()
        assert answer["user_id"] == "u1" and len(answer["pages"]) == 3 and "rpcacme" in answer["prompt"]
        assert "rpcglobex" not in json.dumps(answer)
        assert acme.get("/v1/users/u1/profile").json()["profile"]["traits"]
        assert acme.get("/v1/users/u1").json()["pages"] == 15
        records = [json.loads(line) for line in acme.get("/v1/users/u1/export").text.splitlines()]
        assert len([r for r in records if r["type"] == "turn"]) == 25
        assert "rpcacme" not in globex.get("/v1/users/u1/export").text
        assert acme.get("/v1/dead-letters").json() == {"dead_letters": []}
        assert acme.delete("/v1/users/u1").json()["removed"]["pages"] == 15
        assert acme.get("/v1/users/u1/export").status_code == 404
        assert "rpcglobex" in globex.get("/v1/users/u1/export").text


def test_redis_down_is_503_with_retry_after_and_nothing_is_lost(tmp_path: Path, redis_client: redis.Redis) -> None:
    private = PrivateRedis(free_port(), tmp_path / "redis").start()
    prefix = f"{PREFIX}-httpdown-{uuid.uuid4().hex[:6]}"
    env = {**server_env(prefix, tmp_path / "data"), "MEMORYOS_REDIS_URL": private.url}
    server = ApiServer("down", env, tmp_path, args=("--no-worker",)).start()
    api = Api(server, prefix)
    first = {"user_input": "stored before the outage", "agent_response": "ok", "turn_id": "before"}
    retry = {"user_input": "sent during the outage", "agent_response": "ok", "turn_id": "during"}
    try:
        with api.client("acme") as c, api.client(None) as anonymous:
            assert c.post("/v1/users/u1/turns", json=first).status_code == 202
            private.stop()
            calls = [
                c.post("/v1/users/u1/turns", json=retry), c.post("/v1/users/u1/retrieve", json={"query": "outage"}),
                c.get("/v1/users/u1/export"), c.get("/v1/users/u1"), c.get("/v1/users"), c.get("/v1/stats"),
                c.get("/v1/dead-letters"), c.delete("/v1/users/u1"), c.get("/metrics"), anonymous.get("/readyz"),
            ]
            for res in calls:
                assert res.status_code == 503, (res.request.url, res.text)
                assert int(res.headers["retry-after"]) > 0
                assert KEYS["acme"] not in res.text and private.url not in res.text
            assert "Redis" in calls[0].json()["error"] and "same turn_ids" in calls[0].json()["error"]
            assert anonymous.get("/healthz").status_code == 200

            private.start()  # the same data (AOF, fsync always): the outage lost nothing
            assert c.post("/v1/users/u1/turns", json=retry).status_code == 202
            assert c.post("/v1/users/u1/turns", json=first).status_code == 202  # a retry of a stored turn
            ids = [json.loads(line)["turn_id"] for line in c.get("/v1/users/u1/export").text.splitlines()]
            assert ids == ["before", "during"]
            assert anonymous.get("/readyz").status_code == 200
    finally:
        server.stop()
        private.stop()
