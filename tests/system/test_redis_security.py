"""A deployment whose Redis wants a password and speaks only TLS, configured through MEMORYOS_REDIS_URL
alone: a private redis-server (TLS port only, self-signed certificate, requirepass), a real worker
process, publish, promotion, retrieval over RPC. Secrets never reach the worker's log, and wrong
credentials or a plain connection to the TLS port fail with errors that say what to fix and hide the
password.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

import producers
from producers.errors import RedisUnavailableError
from producers.pending import PendingWork
from producers.publish import Publisher
from schemas.settings import Settings
from tests.conftest import PREFIX
from tests.processes import PrivateRedis, WorkerProcess, free_port

pytestmark = pytest.mark.integration

API_KEY = f"sk-test-{uuid.uuid4().hex}"


def test_password_and_tls_through_the_redis_url(tmp_path: Path, fake_llm) -> None:  # noqa: ANN001
    password = f"pw-{uuid.uuid4().hex}"
    server = PrivateRedis(free_port(), tmp_path / "redis", persistent=False, password=password, tls=True).start()
    assert server.url.startswith("rediss://") and "ssl_ca_certs=" in server.url
    prefix = f"{PREFIX}-tls"
    env = {
        **os.environ,
        "MEMORYOS_REDIS_URL": server.url,
        "MEMORYOS_KEY_PREFIX": prefix,
        "MEMORYOS_DATA_DIR": str(tmp_path / "data"),
        "MEMORYOS_OPENAI_BASE_URL": fake_llm.base_url,
        "MEMORYOS_OPENAI_API_KEY": API_KEY,
        "PYTHONUNBUFFERED": "1",
    }
    user = "tls-user"
    worker = WorkerProcess("tls", env, tmp_path, concurrency=2)
    try:
        worker.start()
        publisher = Publisher(Settings(redis_url=server.url, key_prefix=prefix, data_dir=tmp_path / "data"))
        turns = [
            {"user_id": user, "user_input": f"Day {i}: my pottery class made a {thing}",
             "agent_response": f"A {thing}, lovely!"}
            for i, thing in enumerate(["bowl", "mug", "vase", "plate", "teapot"] * 5)
        ]  # fmt: skip
        ids = publisher.publish_many(turns)
        PendingWork(publisher).wait_idle(user, timeout=120, flush=True)
        context = producers.retrieve(user, "What did my pottery class make?", publisher=publisher, timeout=30)
        found = {p.turn_id for p in context.short_term} | {p.turn_id for p in context.pages}
        assert [p.turn_id for p in context.short_term] == ids[-10:]
        assert context.pages and found <= set(ids)
        assert fake_llm.calls > 0, "the worker reached the LLM: promotion ran behind TLS"
    finally:
        worker.stop()
        server.stop()
    log = worker.tail(10**7)
    assert "memoryos worker ready" in log
    assert password not in log and API_KEY not in log, "a secret reached the worker's log"


def test_wrong_credentials_and_plain_connections_fail_clearly(tmp_path: Path) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    server = PrivateRedis(free_port(), tmp_path / "redis", persistent=False, password=password, tls=True).start()
    turn = {"user_id": "u1", "user_input": "hello", "agent_response": "hi"}
    try:
        wrong = server.url.replace(password, "not-the-password")
        with pytest.raises(RedisUnavailableError, match="rejected the credentials.*MEMORYOS_REDIS_URL") as caught:
            Publisher(Settings(redis_url=wrong, key_prefix=f"{PREFIX}-tls2")).publish(turn)
        assert "not-the-password" not in str(caught.value) and "***@" in str(caught.value)

        plain = f"redis://:{password}@127.0.0.1:{server.port}/0"  # TLS port, plain client
        with pytest.raises(RedisUnavailableError, match="unreachable") as caught:
            Publisher(Settings(redis_url=plain, key_prefix=f"{PREFIX}-tls2")).publish(turn)
        assert password not in str(caught.value)
    finally:
        server.stop()
