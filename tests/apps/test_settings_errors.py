"""A bad setting stops every entry point with one line on stderr that names the MEMORYOS_ variable and
what to do: the real commands (`memoryos serve` and the others, `memoryos worker`/`beat`, a plain
`celery -A memoryos_workers worker`/`beat`) as subprocesses, no traceback, a non-zero exit, and never a
secret (an API key, a password in a URL) echoed back."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from schemas.settings import Settings
from schemas.settings_errors import describe
from tests.processes import ROOT

SECRET = "s3cr3t-pw-9f2c"
MEMORYOS = (sys.executable, "-m", "memoryos_workers.apps.cli")
CELERY = (sys.executable, "-m", "celery", "-A", "memoryos_workers")


@dataclass(frozen=True)
class Case:
    name: str
    command: tuple[str, ...]
    env: dict[str, str]
    names: tuple[str, ...]  # the variables the line must name
    secrets: tuple[str, ...] = ()  # what it must never show


# `memoryos serve` with each kind of problem; then every other entry point with one of them.
CASES = [
    Case("serve-short-api-key", (*MEMORYOS, "serve"), {"MEMORYOS_API_KEYS": "abc123=acme"},
         ("MEMORYOS_API_KEYS",), ("abc123",)),
    Case("serve-redis-url-scheme", (*MEMORYOS, "serve"), {"MEMORYOS_REDIS_URL": f"http://admin:{SECRET}@cache:6379/0"},
         ("MEMORYOS_REDIS_URL",), (SECRET, "cache")),
    Case("serve-redis-url-port", (*MEMORYOS, "serve"), {"MEMORYOS_REDIS_URL": f"redis://:{SECRET}@cache:six/0"},
         ("MEMORYOS_REDIS_URL",), (SECRET,)),
    Case("serve-redis-url-db", (*MEMORYOS, "serve"), {"MEMORYOS_REDIS_URL": f"redis://:{SECRET}@cache:6379/zero"},
         ("MEMORYOS_REDIS_URL",), (SECRET,)),
    Case("serve-not-a-number", (*MEMORYOS, "serve"), {"MEMORYOS_SHORT_TERM_CAPACITY": "ten"},
         ("MEMORYOS_SHORT_TERM_CAPACITY",)),
    Case("serve-not-a-float", (*MEMORYOS, "serve"), {"MEMORYOS_LLM_TIMEOUT": "fast"}, ("MEMORYOS_LLM_TIMEOUT",)),
    Case("serve-out-of-range", (*MEMORYOS, "serve"), {"MEMORYOS_PROMOTION_BATCH_SIZE": "0"},
         ("MEMORYOS_PROMOTION_BATCH_SIZE",)),
    Case("serve-not-a-choice", (*MEMORYOS, "serve"), {"MEMORYOS_RETRIEVAL_ON_DEADLINE": "sometimes"},
         ("MEMORYOS_RETRIEVAL_ON_DEADLINE",)),
    Case("serve-across-settings", (*MEMORYOS, "serve"), {"MEMORYOS_KICK_STALE_AFTER": "2"},
         ("MEMORYOS_KICK_STALE_AFTER", "MEMORYOS_SWEEP_INTERVAL")),
    Case("serve-two-at-once", (*MEMORYOS, "serve"), {"MEMORYOS_API_KEYS": "abc123=acme", "MEMORYOS_HEAT_MU": "x"},
         ("MEMORYOS_API_KEYS", "MEMORYOS_HEAT_MU"), ("abc123",)),
    Case("memoryos-worker", (*MEMORYOS, "worker"), {"MEMORYOS_LLM_TIMEOUT": "fast"}, ("MEMORYOS_LLM_TIMEOUT",)),
    Case("memoryos-beat", (*MEMORYOS, "beat"), {"MEMORYOS_REDIS_URL": f"localhost:{SECRET}"},
         ("MEMORYOS_REDIS_URL",), (SECRET,)),
    Case("celery-worker", (*CELERY, "worker"), {"MEMORYOS_API_KEYS": "abc123=acme"}, ("MEMORYOS_API_KEYS",),
         ("abc123",)),
    Case("celery-beat", (*CELERY, "beat"), {"MEMORYOS_SWEEP_INTERVAL": "often"}, ("MEMORYOS_SWEEP_INTERVAL",)),
    Case("memoryos-mcp", (*MEMORYOS, "mcp"), {"MEMORYOS_MAX_TEXT_CHARS": "many"}, ("MEMORYOS_MAX_TEXT_CHARS",)),
    Case("memoryos-stats", (*MEMORYOS, "stats"), {"MEMORYOS_RESULT_EXPIRES": "1.5"}, ("MEMORYOS_RESULT_EXPIRES",)),
    Case("memoryos-inspect", (*MEMORYOS, "inspect", "u1"), {"MEMORYOS_TIMEZONE": "Mars/Olympus"},
         ("MEMORYOS_TIMEZONE",)),
]


def _run(case: Case, folder: Path) -> subprocess.CompletedProcess[str]:
    # No MEMORYOS_ variable of the test run leaks in, and no .env: the folder is empty.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYOS_") and k != "OPENAI_API_KEY"}
    env |= {"PYTHONPATH": str(ROOT), "MEMORYOS_KEY_PREFIX": "mostest-settings-never-used", **case.env}
    folder.mkdir()
    return subprocess.run(case.command, env=env, cwd=folder, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every command at once (each is a second of imports), so the module takes a few seconds."""
    base = tmp_path_factory.mktemp("settings-errors")
    with ThreadPoolExecutor(4) as pool:
        done = {c.name: pool.submit(_run, c, base / c.name) for c in CASES}
    return {name: future.result() for name, future in done.items()}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_bad_setting_is_one_line_naming_it(case: Case, results: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = results[case.name]
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0, f"exit 0 with a bad setting: {result.stderr[-2000:]}"
    assert len(lines) == 1, f"not one line:\n{result.stderr[-3000:]}"
    line = lines[0]
    assert line.startswith("error: invalid setting"), line
    assert "Traceback" not in result.stderr and "ValidationError" not in line
    for name in case.names:
        assert name in line, f"{name} not named: {line}"
    assert "environment or the .env file" in line  # what to do: where to fix it
    for secret in case.secrets:
        assert secret not in result.stderr + result.stdout, f"echoed {secret!r}: {line}"


def test_the_line_is_built_in_one_place() -> None:
    """What the commands print is describe()'s text: one format, whichever entry point."""
    with pytest.raises(Exception) as caught:  # noqa: B017 - pydantic's ValidationError
        Settings(short_term_capacity="ten", api_keys="abc123=acme")  # type: ignore[arg-type]
    line = describe(caught.value)  # type: ignore[arg-type]
    assert line.startswith("invalid settings MEMORYOS_SHORT_TERM_CAPACITY: input should be a valid integer")
    assert "; MEMORYOS_API_KEYS: entry 1: a key needs at least 8 characters" in line
    assert "abc123" not in line and "\n" not in line
