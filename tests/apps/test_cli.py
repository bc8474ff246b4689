"""The `memoryos` command, run as a subprocess: import (idempotent, progress bar only on a terminal),
inspect, export and forget on a store a real worker process has populated."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PREFIX
from tests.processes import WorkerProcess

pytestmark = pytest.mark.integration

CLI_PREFIX = f"{PREFIX}-cli"
REPO = Path(__file__).resolve().parents[2]
LOCOMO = Path(__file__).resolve().parents[3] / "shared" / "data" / "locomo" / "conv-26.json"


@pytest.fixture
def cli_env(tmp_path: Path, fake_llm, redis_client) -> Iterator[dict[str, str]]:  # noqa: ANN001
    env = {
        **os.environ,
        "MEMORYOS_KEY_PREFIX": CLI_PREFIX,
        "MEMORYOS_DATA_DIR": str(tmp_path / "data"),
        "MEMORYOS_OPENAI_BASE_URL": fake_llm.base_url,
        "MEMORYOS_OPENAI_API_KEY": "k",
        "PYTHONPATH": str(REPO),
    }
    yield env
    keys = list(redis_client.scan_iter(match=f"{CLI_PREFIX}*", count=1000))
    for start in range(0, len(keys), 500):
        redis_client.delete(*keys[start : start + 500])


def _cli(env: dict[str, str], *args: str, **kwargs) -> subprocess.CompletedProcess:  # noqa: ANN003
    return subprocess.run(
        [sys.executable, "-m", "memoryos_workers.apps.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


def _write_jsonl(path: Path, user: str | None, n: int) -> Path:
    rows = []
    for i in range(n):
        row = {
            "user_input": f"turn {i}: I went hiking in the Alps and tried a new pasta recipe",
            "agent_response": f"reply {i}: sounds great, tell me more",
            "turn_id": f"cli-turn-{i}",
        }
        if user:
            row["user_id"] = user
        rows.append(json.dumps(row))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_import_locomo_twice_stores_each_turn_once(cli_env: dict[str, str], redis_client) -> None:  # noqa: ANN001
    if not LOCOMO.exists():
        pytest.skip(f"{LOCOMO} is missing")
    from memoryos_workers.ops.importers import locomo_turns

    expected = len(locomo_turns(LOCOMO, "loco"))
    for _ in range(2):
        res = _cli(cli_env, "import", str(LOCOMO), "--user", "loco")
        assert res.returncode == 0, res.stderr
        assert f"published {expected} turns for 1 user(s)" in res.stdout
        assert "%|" not in res.stderr  # pipes, not a terminal: no progress bar
        assert int(redis_client.hget(f"{CLI_PREFIX}:{{u:loco}}:state", "seq")) == expected
    assert redis_client.zcard(f"{CLI_PREFIX}:{{u:loco}}:ids") == expected


def test_progress_bar_only_on_a_terminal(cli_env: dict[str, str], tmp_path: Path) -> None:
    data = _write_jsonl(tmp_path / "turns.jsonl", "tty_user", 5)
    piped = _cli(cli_env, "import", str(data))
    assert piped.returncode == 0, piped.stderr
    assert "%|" not in piped.stderr

    master, slave = pty.openpty()
    # A fresh pseudo-terminal is 0 columns wide, and tqdm would draw a bar of width 0.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "memoryos_workers.apps.cli", "import", str(data)],
        env=cli_env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO once the child has closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(120)
    proc.stdout.close()
    os.close(master)
    shown = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, shown
    assert "importing turns.jsonl" in shown and "turn" in shown and "%|" in shown, shown


def _turn_ids(export_stdout: str) -> list[str]:
    records = [json.loads(line) for line in export_stdout.splitlines() if line.strip()]
    return [r["turn_id"] for r in records if r["type"] == "turn"]


def test_inspect_export_forget_on_a_populated_store(cli_env: dict[str, str], tmp_path: Path) -> None:
    """While a worker holds the embedded store the commands go to it over RPC; once it is gone they open
    the store themselves. Both give the same answers."""
    from producers.pending import PendingWork
    from producers.publish import Publisher
    from schemas.settings import Settings

    user, other = "cli_user", "cli_other"
    data = _write_jsonl(tmp_path / "cli.jsonl", user, 30)
    res = _cli(cli_env, "import", str(data))
    assert res.returncode == 0, res.stderr
    res = _cli(cli_env, "import", str(_write_jsonl(tmp_path / "other.jsonl", other, 20)))
    assert res.returncode == 0, res.stderr

    worker = WorkerProcess("cli", cli_env, tmp_path, concurrency=2).start()
    try:
        work = PendingWork(Publisher(Settings(key_prefix=CLI_PREFIX, data_dir=tmp_path / "data")))
        for u in (user, other):
            work.wait_idle(u, timeout=120, flush=True)
        res = _cli(cli_env, "inspect", user)
        assert res.returncode == 0 and "over RPC" in res.stderr, res.stderr
        assert re.search(r"MID-TERM: [1-9]\d* pages in [1-9]\d* segments", res.stdout), res.stdout
        remote_inspect = res.stdout
        res = _cli(cli_env, "export", user)
        assert res.returncode == 0 and "over RPC" in res.stderr, res.stderr
        remote_ids = _turn_ids(res.stdout)
        assert sorted(remote_ids) == sorted(f"cli-turn-{i}" for i in range(30)), remote_ids
        res = _cli(cli_env, "dead-letters", "list")
        assert res.returncode == 0 and res.stdout.strip() == "no dead letters", res.stdout + res.stderr
        res = _cli(cli_env, "stats")
        assert res.returncode == 0 and re.search(r"^workers_alive\s+1$", res.stdout, re.MULTILINE), res.stdout
        res = _cli(cli_env, "forget", other, "--yes")
        assert res.returncode == 0 and "over RPC" in res.stderr, res.stderr
        assert re.search(r"pages [1-9]\d*", res.stdout), res.stdout
        # Re-embedding under a running worker would mix models: refused, naming the worker, nothing asked.
        res = _cli(cli_env, "reembed", "--yes")
        assert res.returncode == 2 and f"cli-{os.getpid()}@" in res.stderr and "stop them first" in res.stderr, (
            res.stdout + res.stderr
        )
    finally:
        # The embedded store belongs to one process: the CLI can open it only once the worker is gone.
        worker.stop()

    res = _cli(cli_env, "export", other)
    assert res.returncode == 0 and "over RPC" not in res.stderr, res.stderr
    assert _turn_ids(res.stdout) == [], "forgotten over RPC: nothing left"
    res = _cli(cli_env, "export", user)
    assert _turn_ids(res.stdout) == remote_ids, "the same export, locally and over RPC"
    res = _cli(cli_env, "inspect", user)
    # Segment heats decay with time between the two runs; the rest is the same.
    assert re.sub(r"\d+\.\d+", "H", res.stdout) == re.sub(r"\d+\.\d+", "H", remote_inspect)

    # An export is importable: its turn records are read, the derived ones skipped, nothing doubled.
    exported = tmp_path / "export.jsonl"
    exported.write_text(_cli(cli_env, "export", user).stdout, encoding="utf-8")
    res = _cli(cli_env, "import", str(exported))
    assert res.returncode == 0 and res.stdout.startswith("published 30 turns for 1 user(s)"), res.stdout + res.stderr
    assert sorted(_turn_ids(_cli(cli_env, "export", user).stdout)) == sorted(remote_ids)

    res = _cli(cli_env, "reembed", "--yes")
    assert res.returncode == 0, res.stderr
    assert re.match(r"re-embedded with sentence-transformers/all-MiniLM-L6-v2@\w+: pages [1-9]\d*, segments",
                    res.stdout), res.stdout
    assert _turn_ids(_cli(cli_env, "export", user).stdout) == remote_ids, "the same pages, re-embedded"
    res = _cli(cli_env, "bm25-terms")  # pages written by this version carry their terms already
    assert res.returncode == 0 and res.stdout.strip() == "BM25 terms added to 0 page(s)", res.stdout + res.stderr

    res = _cli(cli_env, "inspect", user)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "SHORT-TERM" in out and "MID-TERM" in out and "PROFILE" in out, out
    mid = out.split("MID-TERM", 1)[1].split("PROFILE", 1)[0]
    assert re.search(r"^\s+\d+\.\d+\s+\d+\s+\d+\s", mid, re.MULTILINE), f"no segment line:\n{out}"

    res = _cli(cli_env, "export", user)
    assert res.returncode == 0, res.stderr
    ids = _turn_ids(res.stdout)
    assert sorted(ids) == sorted(f"cli-turn-{i}" for i in range(30)), ids

    res = _cli(cli_env, "forget", user, "--yes")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("removed: "), res.stdout
    assert re.search(r"\w+ [1-9]\d*", res.stdout), res.stdout

    res = _cli(cli_env, "export", user)
    assert res.returncode == 0, res.stderr
    assert _turn_ids(res.stdout) == []

    res = _cli(cli_env, "inspect", "bad/user")
    assert res.returncode == 2
    assert "bad/user" in res.stderr, res.stderr


def test_reembed_without_redis_refuses_unless_told_the_workers_are_stopped(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "MEMORYOS_REDIS_URL": "redis://127.0.0.1:1/0"}  # nothing listens on port 1
    res = _cli(env, "reembed", "--yes")
    assert res.returncode == 2 and "--skip-worker-check" in res.stderr, res.stdout + res.stderr
    assert not Path(env["MEMORYOS_DATA_DIR"]).exists(), "refused before opening the store"
    res = _cli(env, "reembed", "--yes", "--skip-worker-check")
    assert res.returncode == 0 and res.stdout.startswith("re-embedded with "), res.stdout + res.stderr


def test_stats_shows_the_backlog_and_how_late_the_most_overdue_work_is(cli_env: dict[str, str], redis_client,  # noqa: ANN001
                                                                      tmp_path: Path) -> None:
    import time

    res = _cli(cli_env, "stats")
    assert res.returncode == 0 and re.search(r"^sweep_overdue_s\s+0$", res.stdout, re.MULTILINE), res.stdout
    assert re.search(r"^workers_alive\s+0$", res.stdout, re.MULTILINE), "no worker of this deployment runs"
    assert re.search(r"^backlog_pages\s+0$", res.stdout, re.MULTILINE), res.stdout
    assert _cli(cli_env, "import", str(_write_jsonl(tmp_path / "late.jsonl", "late_user", 25))).returncode == 0
    # No worker runs: make the user's work due 42 s ago, as if the workers had been down that long.
    redis_client.zadd(f"{CLI_PREFIX}:sweep", {"late_user": time.time() - 42})
    res = _cli(cli_env, "stats")
    assert res.returncode == 0, res.stderr
    shown = dict(line.split(None, 1) for line in res.stdout.splitlines() if line.strip())
    assert shown["users_in_sweep_index"].strip() == "1"
    assert 42 <= float(shown["sweep_overdue_s"]) < 60, res.stdout
    # 25 turns, no worker: 10 in short-term, one batch of 10 waiting, 5 waiting to fill the next batch.
    assert {k: shown[k].strip() for k in ("backlog_users", "pending_batches", "backlog_pages", "backlog_buffered")} == {
        "backlog_users": "1", "pending_batches": "1", "backlog_pages": "10", "backlog_buffered": "5"}, res.stdout
    assert 0 <= float(shown["backlog_oldest_s"]) < 120, res.stdout
    assert shown["retrieval_servers"].strip() == "0" and shown["retrieval_requests_waiting"].strip() == "0"


def test_stats_shows_llm_calls_and_tokens_per_100_turns_by_purpose(cli_env: dict[str, str], redis_client) -> None:  # noqa: ANN001
    stats_key = f"{CLI_PREFIX}:stats"
    before = redis_client.hgetall(stats_key)
    redis_client.hset(stats_key, mapping={
        "pages_promoted": 200, "llm_calls": 23, "llm_prompt_tokens": 40_000, "llm_completion_tokens": 10_000,
        "llm_calls_segmentation": 19, "llm_prompt_tokens_segmentation": 25_000,
        "llm_completion_tokens_segmentation": 5_000, "llm_calls_persona": 3, "llm_prompt_tokens_persona": 14_000,
        "llm_completion_tokens_persona": 4_000, "llm_calls_retry": 1, "llm_prompt_tokens_retry": 2_000,
        "segment_fallbacks": 0,
        "segment_fallback_pages": 2,
    })
    try:
        res = _cli(cli_env, "stats")
    finally:
        redis_client.delete(stats_key)
        if before:
            redis_client.hset(stats_key, mapping=before)
    assert res.returncode == 0, res.stderr
    lines = {line.split()[0]: line.split()[1:] for line in res.stdout.splitlines() if line.startswith("  ")}
    assert "per 100 promoted turns (200 promoted):" in res.stdout
    assert lines["all"] == ["11.5", "calls", "25000", "tokens"]
    assert lines["segmentation"] == ["9.5", "calls", "15000", "tokens"]
    assert lines["persona"][:3] == ["1.5", "calls", "9000"] and lines["retry"][:1] == ["0.5"]
    assert lines["fallback"][:1] == ["0.0"] and lines["fallbacks"] == ["0", "batch(es),", "2", "page(s)"]


def _tiers(export_stdout: str) -> dict[str, int]:
    tiers: dict[str, int] = {}
    for line in export_stdout.splitlines():
        record = json.loads(line)
        if record["type"] == "turn":
            tiers[record["tier"]] = tiers.get(record["tier"], 0) + 1
    return tiers


def test_import_wait_without_a_worker_processes_the_turns_itself(cli_env: dict[str, str], tmp_path: Path) -> None:
    """No worker runs (the embedded default, a first try): --wait runs an in-process worker instead of
    waiting ten minutes for one, and leaves the store closed and promoted for the next command."""
    data = _write_jsonl(tmp_path / "wait.jsonl", "wait_user", 25)
    res = _cli(cli_env, "import", str(data), "--wait")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "no worker of this deployment answers" in res.stderr and "in-process worker" in res.stderr, res.stderr
    res = _cli(cli_env, "export", "wait_user")
    assert res.returncode == 0 and "over RPC" not in res.stderr, res.stderr
    assert _tiers(res.stdout) == {"short_term": 10, "mid_term": 15}, res.stdout  # nothing left pending


def test_import_wait_waits_on_a_running_worker(cli_env: dict[str, str], tmp_path: Path) -> None:
    worker = WorkerProcess("cli-wait", cli_env, tmp_path, concurrency=2).start()
    try:
        res = _cli(cli_env, "import", str(_write_jsonl(tmp_path / "w.jsonl", "waited_user", 25)), "--wait")
        assert res.returncode == 0 and "in-process" not in res.stderr, res.stdout + res.stderr
        res = _cli(cli_env, "export", "waited_user")
        assert res.returncode == 0 and "over RPC" in res.stderr, res.stderr
        assert _tiers(res.stdout) == {"short_term": 10, "mid_term": 15}, res.stdout
    finally:
        worker.stop()


def test_a_store_held_by_no_worker_is_reported_at_once(cli_env: dict[str, str], tmp_path: Path) -> None:
    """Another process (not a worker) holds the embedded store: commands that would wait on a worker say so
    instead of waiting for an answer that cannot come; the imported turns stay in Redis."""
    from memoryos_workers.runtime import Runtime
    from schemas.settings import Settings

    holder = Runtime(Settings(key_prefix=CLI_PREFIX, data_dir=Path(cli_env["MEMORYOS_DATA_DIR"])))
    holder.warm_up()  # this test process holds the store and runs no worker
    try:
        res = _cli(cli_env, "export", "held_user")
        assert res.returncode == 2 and "no worker of this deployment answers" in res.stderr, res.stderr
        res = _cli(cli_env, "import", str(_write_jsonl(tmp_path / "held.jsonl", "held_user", 12)), "--wait")
        assert res.returncode == 2, res.stdout + res.stderr
        assert "published 12 turns" in res.stdout and "wait in Redis" in res.stderr, res.stdout + res.stderr
    finally:
        holder.close()
    res = _cli(cli_env, "export", "held_user")
    assert res.returncode == 0 and sum(_tiers(res.stdout).values()) == 12, res.stdout + res.stderr


def test_bad_ids_are_usage_errors_naming_the_argument(cli_env: dict[str, str], tmp_path: Path, redis_client) -> None:  # noqa: ANN001
    data = _write_jsonl(tmp_path / "anon.jsonl", None, 3)
    for args, named in (
        (["import", str(data), "--user", "has space"], "--user"),
        (["import", str(data), "--user", "ok", "--assistant", "a/b"], "--assistant"),
        (["export", "u1\n"], "USER"),
        (["forget", "../etc", "--yes"], "USER"),
        (["dead-letters", "list", "x" * 129], "USER"),
    ):
        res = _cli(cli_env, *args)
        assert res.returncode == 2 and f"error: {named}: " in res.stderr and "not a valid id" in res.stderr, (
            args, res.stderr
        )
    assert list(redis_client.scan_iter(match=f"{CLI_PREFIX}:{{u:*", count=1000)) == [], "nothing stored"
