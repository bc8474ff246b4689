"""`memoryos demo` (what `make demo` runs) as a user runs it: its own process, the embedded store in a fresh
folder, the fake LLM over HTTP. It must finish, process every turn and say what each tier holds."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PREFIX

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_processes_the_sample_conversation_and_shows_every_tier(tmp_path, fake_llm, redis_client) -> None:  # noqa: ANN001
    prefix = f"{PREFIX}-demo"
    env = {**os.environ, "MEMORYOS_KEY_PREFIX": prefix, "MEMORYOS_DATA_DIR": str(tmp_path / "data"),
           "MEMORYOS_OPENAI_BASE_URL": fake_llm.base_url, "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run([sys.executable, "-m", "memoryos_workers.apps.cli", "demo"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=240)
        left = [k for k in redis_client.scan_iter(match=f"{prefix}*", count=1000) if "{u:demo-" in k]
    finally:
        for key in redis_client.scan_iter(match=f"{prefix}*", count=1000):
            redis_client.delete(key)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    user = re.search(r"user (demo-\w+), \d+ turns", out).group(1)
    assert re.search(rf"forgot user {user} \((\d+) records", out), out
    # The demo user is forgotten: a run leaves no user data behind in a shared Redis. `forget` keeps two counters
    # (ops/user_data.erase_user): the epoch it raised, which work still in flight checks before writing the user
    # back, and the lock's fencing counter, which must never go back.
    assert sorted(k.rsplit(":", 1)[1] for k in left) == ["epoch", "fence"], left
    published = int(re.search(r"user demo-\w+, (\d+) turns", out).group(1))
    short_term = int(re.search(r"short-term memory \(Redis\): (\d+) turns", out).group(1))
    pending = int(re.search(r"pending \(Redis, waiting for a worker\): (\d+) turns", out).group(1))
    pages = int(re.search(r"mid-term pages \(vector store\): (\d+) pages", out).group(1))
    assert pending == 0 and short_term == 10 and short_term + pages == published, out
    assert re.search(r"mid-term segments \(vector store, heat in Redis\): [1-9]", out), out
    assert "long-term persona: profile with" in out, out
    assert re.search(r"retrieval for 'What is the name of my cat\?' \([\d.]+ ms\):\n  \d\.\d{3}  user: ", out), out
    assert "background work done after" in out
