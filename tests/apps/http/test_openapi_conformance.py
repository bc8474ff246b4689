"""The OpenAPI document describes exactly what `memoryos serve` sends: schemathesis (pinned in the dev
extra) generates requests from the document the server itself serves and checks every answer against it.

A real `memoryos serve` process (uvicorn, the embedded store and its in-process worker, the fake LLM over
HTTP, real Redis under a key prefix of its own), one tenant's key. The run is deterministic
(`--generation-deterministic`: derandomized, no example database, so the same document gives the same
cases) and fails on any 5xx and on any answer that does not match the document: an undocumented status,
content type or header, a body off its schema, a request the document calls invalid that is accepted, a
route that ignores the key, a deleted user that is still there, an Allow header that is wrong.

One check is left out: `positive_data_acceptance` (every request the document calls valid gets a 2xx).
Some input rules cannot be said in JSON Schema: since before until, a tenant's ids being shorter by its
prefix, no NUL anywhere in metadata, its size in bytes, what ISO 8601 parses. The document states them in
words and declares the 422 that names the field; everything JSON Schema can say (id patterns, bounds,
not blank, no unknown fields) it declares, and the run checks the server enforces it.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.apps.http.conftest import server_env
from tests.conftest import PREFIX, _delete_prefix
from tests.processes import ApiServer

pytestmark = pytest.mark.integration

KEY = "conformance-key-0001"
TENANT = "fuzz"
MAX_EXAMPLES = 100  # per operation and phase: about 1,800 cases, 20-60 s on a shared 2-core machine
SCHEMATHESIS = "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, redis_client: redis.Redis) -> Iterator[ApiServer]:
    folder = tmp_path_factory.mktemp("openapi")
    prefix = f"{PREFIX}-oas-{uuid.uuid4().hex[:6]}"
    env = server_env(prefix, folder / "data", MEMORYOS_API_KEYS=f"{KEY}={TENANT}")
    api = ApiServer("openapi", env, folder, args=("--no-access-log",)).start()
    try:
        yield api
    finally:
        api.stop()
        _delete_prefix(redis_client, prefix + ":")


def run_schemathesis(url: str, folder: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    report = folder / "events.ndjson"
    cmd = [
        sys.executable, "-c", SCHEMATHESIS, "run", f"{url}/openapi.json",
        "--header", f"Authorization: Bearer {KEY}",
        "--generation-deterministic", "--max-examples", str(MAX_EXAMPLES), "--workers", "1",
        "--checks", "all", "--exclude-checks", "positive_data_acceptance",
        "--request-timeout", "60", "--no-color", "--report", "ndjson", "--report-ndjson-path", str(report),
    ]  # fmt: skip
    # Its own folder as the working directory: no schemathesis.toml or .hypothesis of anyone else's.
    done = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=600)
    return done, report


def answers(report: Path) -> dict[str, collections.Counter[int]]:
    """Statuses answered per operation ("GET /v1/users/{user_id}"), from the run's event log."""
    out: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    for line in report.read_text().splitlines():
        finished = json.loads(line).get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished["recorder"]
        for case_id, interaction in recorder.get("interactions", {}).items():
            case = recorder["cases"][case_id]["value"]
            response = interaction.get("response")
            out[f"{case['method']} {case['path']}"][response["status_code"] if response else 0] += 1
    return out


def test_every_answer_matches_the_openapi_document(server: ApiServer, tmp_path: Path) -> None:
    document: dict[str, Any] = httpx.get(server.url + "/openapi.json", timeout=30).json()
    operations = {f"{method.upper()} {path}" for path, ops in document["paths"].items() for method in ops}
    assert "ValidationError" not in document["components"]["schemas"], "FastAPI's 422 model is still declared"

    started = time.monotonic()
    done, report = run_schemathesis(server.url, tmp_path)
    took = time.monotonic() - started
    assert done.returncode == 0, f"schemathesis found answers off the document:\n{done.stdout[-12000:]}"

    seen = answers(report)
    cases = sum(sum(c.values()) for c in seen.values())
    server_errors = {op: s for op, c in seen.items() for s in c if s >= 500 or s == 0}
    assert not server_errors, server_errors
    # Every operation of the document was called, and every /v1 one answered a 2xx to the tenant's key.
    assert operations <= set(seen), operations - set(seen)
    unanswered = sorted(op for op in operations if not any(200 <= s < 300 for s in seen[op]))
    assert not unanswered, f"never a 2xx: {unanswered}"
    assert all(seen[op][401] for op in operations if " /v1/" in op), "a /v1 route was never asked without a key"
    assert cases >= 1000, f"only {cases} cases: the run got smaller"
    print(f"schemathesis: {cases} cases over {len(operations)} operations in {took:.1f} s; statuses: "
          + "; ".join(f"{op} {dict(sorted(seen[op].items()))}" for op in sorted(operations)))
