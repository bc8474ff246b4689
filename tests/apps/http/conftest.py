"""One `memoryos serve` for the HTTP tests: uvicorn in its own process, the embedded store and its
in-process Celery worker, the session's fake LLM over real HTTP, a Redis key prefix of its own.

Tests talk to it through real HTTP (httpx) with the keys of two tenants and an admin, and wait for
background work the way a Python backend would (producers' wait_idle on the stored id)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from producers.pending import PendingWork
from producers.publish import Publisher
from schemas.settings import Settings
from tests.conftest import FAKE_LLM, PREFIX, _delete_prefix
from tests.processes import ROOT, ApiServer

KEYS = {"acme": "acme-test-key-0001", "globex": "globex-test-key-0002", "*": "admin-test-key-0003"}
LIMITS = {"MEMORYOS_MAX_TEXT_CHARS": "2000", "MEMORYOS_API_MAX_TURNS": "50", "MEMORYOS_API_MAX_BODY_BYTES": "65536"}


def server_env(prefix: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MEMORYOS_KEY_PREFIX": prefix,
        "MEMORYOS_DATA_DIR": str(data_dir),
        "MEMORYOS_OPENAI_BASE_URL": FAKE_LLM.base_url,
        "MEMORYOS_OPENAI_API_KEY": "k",
        "MEMORYOS_API_KEYS": ",".join(f"{key}={tenant}" for tenant, key in KEYS.items()),
        # Persona failures dead-letter after two quick attempts; the in-process sweep looks every second.
        "MEMORYOS_MAX_ATTEMPTS": "2",
        "MEMORYOS_RETRY_BACKOFF_BASE": "0.05",
        "MEMORYOS_RETRY_BACKOFF_MAX": "0.2",
        "MEMORYOS_SWEEP_INTERVAL": "1",
        "MEMORYOS_KICK_STALE_AFTER": "3",
        **LIMITS,
        **extra,
    }
    env.pop("MEMORYOS_QDRANT_URL", None)
    return env


@dataclass
class Api:
    server: ApiServer
    prefix: str

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, tenant: str | None = "acme", **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {KEYS[tenant]}"} if tenant else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)

    def wait_idle(self, stored_user: str, timeout: float = 90) -> None:
        """Until the server's worker has done everything for the user (by its stored id, tenant:user)."""
        publisher = Publisher(Settings(key_prefix=self.prefix))
        PendingWork(publisher).wait_idle(stored_user, timeout=timeout, flush=True)


@pytest.fixture(scope="package")
def api(tmp_path_factory: pytest.TempPathFactory, redis_client: redis.Redis) -> Iterator[Api]:
    folder = tmp_path_factory.mktemp("api")
    prefix = f"{PREFIX}-http-{uuid.uuid4().hex[:6]}"
    server = ApiServer("embedded", server_env(prefix, folder / "data"), folder).start()
    try:
        yield Api(server, prefix)
    finally:
        server.stop()
        _delete_prefix(redis_client, prefix + ":")


@pytest.fixture
def uid() -> str:
    """A fresh user id per test (ids are per tenant: the same id is another user for another key)."""
    return f"u-{uuid.uuid4().hex[:8]}"


def turns(n: int, tag: str = "", start: int = 0) -> list[dict[str, Any]]:
    """A varied conversation: batches of ten are promoted, a four-page segment is hot at birth."""
    topics = [
        ("I went bouldering at the climbing gym after work", "Nice, how were the routes?"),
        ("I am training for a half marathon in October", "That is a great goal."),
        ("I cooked a vegetarian lasagna for my flatmates", "Sounds delicious."),
        ("My sister Ottilie moved to Lisbon and teaches cello there", "Lisbon is lovely."),
        ("I am reading a novel about lighthouse keepers", "What do you like about it?"),
    ]
    out = []
    for i in range(start, start + n):
        user, assistant = topics[i % len(topics)]
        out.append({"user_input": f"{user} {tag} (day {i})".replace("  ", " "), "agent_response": assistant,
                    "turn_id": f"t{i}-{tag or 'x'}", "timestamp": f"2025-03-{1 + i % 28:02d}T10:00:00Z"})
    return out
