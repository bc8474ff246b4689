"""`memoryos mcp --transport http` with the HTTP API's keys and tenants: 401 without a valid key, each key's
tenant has its own users (look-alike ids included), answers name ids as the tenant knows them; without
keys the server refuses any address but loopback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis
from mcp import ClientSession

from producers.wire.keys import Keys
from tests.apps.test_mcp import _call, _env, prefix  # noqa: F401 - the prefix fixture
from tests.processes import free_port

pytestmark = pytest.mark.integration
KEYS = {"acme": "acme-mcp-key-0001", "globex": "globex-mcp-key-0002"}


def _wait_for_port(process: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "the MCP server did not start"
            time.sleep(0.2)


async def _session_calls(url: str, key: str, calls: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60) as client, \
            streamable_http_client(url, http_client=client) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        return [await _call(session, tool, **args) for tool, args in calls]


def test_mcp_over_http_takes_the_api_keys_and_tenants(tmp_path, fake_llm, prefix, redis_client: redis.Redis,  # noqa: ANN001, F811
                                                      ) -> None:
    port, key_prefix = free_port(), prefix("mcp-keys")
    env = {**_env(tmp_path, fake_llm, key_prefix),
           "MEMORYOS_API_KEYS": ",".join(f"{k}={t}" for t, k in KEYS.items())}
    log = tmp_path / "server.log"
    with log.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "memoryos_workers.apps.mcp", "--transport", "http", "--port", str(port)],
            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        _wait_for_port(process, port, log)
        for headers in ({}, {"Authorization": "Bearer wrong-key-0000"}, {"Authorization": KEYS["acme"]}):
            res = httpx.post(url, headers={**headers, "Accept": "application/json, text/event-stream"},
                             json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
            assert res.status_code == 401 and res.headers["www-authenticate"] == "Bearer", res.text

        def add(user: str | None, text: str) -> tuple[str, dict[str, Any]]:
            args: dict[str, Any] = {"user_input": text, "agent_response": "noted"}
            return ("add_memory", {**args, "user_id": user} if user else args)

        acme = anyio.run(_session_calls, url, KEYS["acme"], [
            add("u1", "acme secret plan"), add("globex:u1", "acme look-alike"), add(None, "acme default user"),
            ("retrieve_memory", {"query": "secret plan", "user_id": "u1"}),
        ])
        globex = anyio.run(_session_calls, url, KEYS["globex"], [
            add("u1", "globex secret plan"),
            ("retrieve_memory", {"query": "secret plan", "user_id": "u1"}),
            ("retrieve_memory", {"query": "look-alike", "user_id": "globex:u1"}),
            ("get_user_profile", {"user_id": "acme:u1"}),
        ])
    finally:
        process.terminate()
        process.wait(30)
    assert [a["user_id"] for a in acme[:3]] == ["u1", "globex:u1", "mcp_user"]
    assert acme[3]["assistant_id"] == "mcp_bot"  # the tenant's own default assistant, named as it knows it
    assert [t["user_input"] for t in acme[3]["short_term_memory"]] == ["acme secret plan"]
    assert [t["user_input"] for t in globex[1]["short_term_memory"]] == ["globex secret plan"]
    assert globex[2]["short_term_memory"] == [] and globex[3]["user_id"] == "acme:u1"
    assert "acme" not in json.dumps(globex[:3])
    keys = Keys(key_prefix)
    stored = {u: redis_client.lrange(keys.user(u).stm, 0, -1) for u in
              ("acme:u1", "acme:globex:u1", "acme:mcp_user", "globex:u1", "u1", "globex:acme:u1")}
    assert {u for u, turns in stored.items() if turns} == {"acme:u1", "acme:globex:u1", "acme:mcp_user", "globex:u1"}
    assert all(json.loads(t)["assistant_id"] == f"{u.split(':')[0]}:mcp_bot" for u, ts in stored.items() for t in ts)
    assert all(key not in log.read_text() for key in KEYS.values())


def test_mcp_over_http_without_keys_listens_on_loopback_only(tmp_path, fake_llm, prefix) -> None:  # noqa: ANN001, F811
    env = _env(tmp_path, fake_llm, prefix("mcp-nokeys"))
    env.pop("MEMORYOS_API_KEYS", None)
    done = subprocess.run(
        [sys.executable, "-c", "from memoryos_workers.apps.cli import main; main()", "mcp", "--transport", "http",
         "--host", "0.0.0.0", "--port", str(free_port())],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "MEMORYOS_API_KEYS" in done.stderr, done.stderr[-2000:]
