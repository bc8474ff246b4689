"""Test fixtures: a real Redis under a private key prefix, a real in-process Celery worker, the
embedded vector store in a temporary folder and the real embedding model.

The environment is set before memoryos_workers is imported, because the Celery app reads its
settings at import time (as it does in production).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator

import pytest
import redis

RUN_ID = uuid.uuid4().hex[:8]
PREFIX = f"mostest-{RUN_ID}"
DATA_DIR = tempfile.mkdtemp(prefix=f"memoryos-test-{RUN_ID}-")
os.environ.setdefault("MEMORYOS_REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ["MEMORYOS_KEY_PREFIX"] = PREFIX
os.environ["MEMORYOS_DATA_DIR"] = DATA_DIR
os.environ.pop("MEMORYOS_QDRANT_URL", None)
os.environ["MEMORYOS_OPENAI_API_KEY"] = "test-key-not-secret"
os.environ["MEMORYOS_LLM_BACKOFF_BASE"] = "0.01"
os.environ["MEMORYOS_LLM_BACKOFF_MAX"] = "0.05"
os.environ["MEMORYOS_LLM_TIMEOUT"] = "5"
# Tests that are about the deadline give their own; the rest want the full answer even on a busy machine.
os.environ["MEMORYOS_RETRIEVAL_DEADLINE_MS"] = "30000"
# Persona extraction after every drain (the default coalesces 50 pages per call): most tests look at the
# persona after one batch; tests/pipeline/test_persona_coalescing.py checks the defaults.
os.environ["MEMORYOS_PERSONA_MIN_PAGES"] = "1"

from memoryos_workers.testing.fake_llm import FakeLLM  # noqa: E402

# One fake OpenAI-compatible server for the session (real HTTP, the real openai client); tests
# script its answers and faults through the `fake_llm` fixture.
FAKE_LLM = FakeLLM().start()
os.environ["MEMORYOS_OPENAI_BASE_URL"] = FAKE_LLM.base_url

from producers.pending import PendingWork  # noqa: E402
from producers.publish import Publisher  # noqa: E402
from producers.wire.contract import ALL_QUEUES  # noqa: E402
from schemas.settings import Settings, get_settings  # noqa: E402


def _delete_prefix(client: redis.Redis, prefix: str) -> None:
    """Deletes only keys this run created (its own prefix); never FLUSHDB a shared Redis."""
    batch = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            client.delete(*batch)
            batch.clear()
    if batch:
        client.delete(*batch)


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    """The session's fake LLM with the default (competent) answers, counters reset; knobs restored after."""
    from memoryos_workers.testing.responders import default_responder

    FAKE_LLM.reset()
    FAKE_LLM.responder = default_responder
    yield FAKE_LLM
    FAKE_LLM.reset()
    for knob in ("latency", "error_rate", "timeout_rate", "malformed_rate"):
        setattr(FAKE_LLM, knob, 0)
    for knob in ("context_tokens", "stream_tokens_per_s", "stall_after_tokens", "truncate_at_tokens"):
        setattr(FAKE_LLM, knob, None)
    for flag in ("reject_json_schema", "generic", "reject_stream", "reject_stream_options", "ignore_stream",
                 "context_refusal_in_stream"):
        setattr(FAKE_LLM, flag, False)
    FAKE_LLM.reject_schema_keywords = ()
    FAKE_LLM.stream_usage = True
    FAKE_LLM.hang_seconds = 60.0
    FAKE_LLM.responder = default_responder


def pytest_sessionstart(session: pytest.Session) -> None:
    from memoryos_workers.testing.responders import default_responder

    FAKE_LLM.responder = default_responder


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    FAKE_LLM.stop()


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def redis_client(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.exit(f"tests need Redis at {settings.redis_url} (set MEMORYOS_REDIS_URL; `make test` starts one): {exc}")
    yield client
    _delete_prefix(client, PREFIX)
    client.close()
    shutil.rmtree(DATA_DIR, ignore_errors=True)


@pytest.fixture
def private_runtime(tmp_path, redis_client: redis.Redis, fake_llm):  # noqa: ANN001, ANN201
    """Builds Runtimes with their own key prefix and store folder (settings overridable), for Promoter and
    PersonaWorker driven directly in the test's thread; closed and cleaned afterwards."""
    from memoryos_workers.runtime import Runtime

    made: list[Runtime] = []

    def make(**overrides: object) -> Runtime:
        n = len(made)
        settings = Settings(
            key_prefix=f"{PREFIX}-mt{n}-{uuid.uuid4().hex[:8]}",
            data_dir=tmp_path / f"data{n}",
            openai_base_url=fake_llm.base_url,
            openai_api_key="k",
            retry_backoff_base=0.01,
            retry_backoff_max=0.05,
            **overrides,
        )
        rt = Runtime(settings)
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()
        _delete_prefix(redis_client, rt.settings.key_prefix + ":")


@pytest.fixture(scope="session")
def runtime(settings: Settings, redis_client: redis.Redis):  # noqa: ANN201
    from memoryos_workers.runtime import get_runtime

    rt = get_runtime()
    yield rt
    rt.close()


@pytest.fixture(scope="session")
def celery_worker(runtime):  # noqa: ANN001, ANN201
    """A real Celery worker (threads pool) in this process, consuming the run's own queues."""
    from celery.contrib.testing.worker import start_worker

    from memoryos_workers import app

    runtime.warm_up()
    with start_worker(
        app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        queues=list(ALL_QUEUES),
        shutdown_timeout=30,
        loglevel="WARNING",
    ) as worker:
        yield worker


@pytest.fixture
def publisher(runtime) -> Publisher:  # noqa: ANN001
    return runtime.publisher


@pytest.fixture
def pending(runtime) -> PendingWork:  # noqa: ANN001
    return runtime.pending


@pytest.fixture
def user_id() -> str:
    """A fresh user per test, so tests never see each other's turns."""
    return f"user-{uuid.uuid4().hex[:10]}"
