"""The drop-in Memoryos class: MemoryOS's README example runs unchanged apart from the import line.

Each script runs in its own process, as a user's program would (the class starts an in-process
worker and owns its embedded store), against the session's fake LLM over real HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PREFIX

pytestmark = pytest.mark.integration
DATA = Path(__file__).resolve().parents[1] / "data"


def _run(script: str, tmp_path: Path, fake_llm, redis_client, tag: str) -> subprocess.CompletedProcess:  # noqa: ANN001
    prefix = f"{PREFIX}-{tag}"
    env = {
        **os.environ,
        "MEMORYOS_KEY_PREFIX": prefix,
        "MEMORYOS_OPENAI_BASE_URL": fake_llm.base_url,
        "MEMORYOS_EMBEDDING_MODEL": "sentence-transformers/all-MiniLM-L6-v2",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    env.pop("MEMORYOS_DATA_DIR", None)
    try:
        return subprocess.run([sys.executable, str(DATA / script)], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=240)
    finally:
        for key in redis_client.scan_iter(match=f"{prefix}*", count=1000):
            redis_client.delete(key)


def test_memoryos_readme_example_runs_unchanged(tmp_path, fake_llm, redis_client) -> None:  # noqa: ANN001
    done = _run("memoryos_readme_example.py", tmp_path, fake_llm, redis_client, "readme")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "MemoryOS initialized successfully!" in done.stdout, done.stdout + done.stderr[-3000:]
    assert "Assistant: This is a fake answer." in done.stdout
    generation = [r for r in fake_llm.requests if not r.get("response_format")]
    assert len(generation) == 1
    prompt = json.dumps(generation[0]["messages"])
    assert "data scientist in San Francisco" in prompt and "What do you remember about my job?" in prompt
    assert (tmp_path / "simple_demo_data" / "vectors").is_dir()
    assert "BAAI/bge-m3" in done.stderr  # the ignored model is reported, not silently swapped


def test_memoryos_api_tour(tmp_path, fake_llm, redis_client) -> None:  # noqa: ANN001
    done = _run("memoryos_api_tour.py", tmp_path, fake_llm, redis_client, "tour")
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["answer"] == "This is a fake answer."
    assert "climbing" in out["profile"].lower()
    small = out["small_context"]  # the class retrieves within a token budget too
    assert small["max_tokens"] == 300 and 0 < small["tokens"] <= 300 and small["pages"] >= 1
    assert out["day_3"] == ["2025-06-03"]  # and takes filters
    stats = out["stats"]
    assert stats["short_term_memory"]["current_size"] == 5  # 30 turns + the recorded answer, capacity 5
    assert stats["pending_turns"] == 0 or stats["pending_turns"] == 1
    assert stats["mid_term_memory"]["pages"] >= 25 and stats["long_term_memory"]["has_profile"]
    assert stats["long_term_memory"]["user_knowledge"] >= 1
    assert all("knowledge" in k and "timestamp" in k for k in out["assistant_knowledge"])
    generation = [r for r in fake_llm.requests if not r.get("response_format")]
    prompt = json.dumps(generation[-1]["messages"])
    assert "coach" in prompt and "brief" in prompt and "Leo" in prompt


def test_bad_ids_are_rejected_naming_the_field_before_anything_opens() -> None:
    from memoryos_workers.apps.memoryos import Memoryos

    with pytest.raises(ValueError, match=r"^user_id: 'a/b' is not a valid id"):
        Memoryos(user_id="a/b")
    with pytest.raises(ValueError, match=r"^assistant_id: 'has space' is not a valid id"):
        Memoryos(user_id="ok", assistant_id="has space")
