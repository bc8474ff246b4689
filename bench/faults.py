"""Fault scenarios: turns published, found afterwards and duplicates, as the fault tests measured them.

Not a part that `python -m bench` runs: the figures come from the tests themselves (they need worker
and redis-server processes of their own), which record their rows in bench/results/faults.json when
MEMORYOS_FAULT_RESULTS names that file; `python -m bench report` renders them like any other section.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .common import RESULTS, md_table, meta

RESULT = RESULTS / "faults.json"
COMMAND = ("MEMORYOS_FAULT_RESULTS=bench/results/faults.json python -m pytest -s tests/system/test_redis_restart.py "
           "tests/system/test_failover.py")
_FIXED = ("scenario", "published", "found", "duplicates")


def record(row: dict[str, Any], path: str | None = None) -> Path | None:
    """Puts a scenario's row in the results file named by MEMORYOS_FAULT_RESULTS (replacing that scenario's
    previous row); does nothing when it is unset, so an ordinary test run leaves bench/results alone."""
    target = path or os.environ.get("MEMORYOS_FAULT_RESULTS")
    if not target:
        return None
    file = Path(target)
    result = json.loads(file.read_text()) if file.exists() else {"rows": []}
    rows = [r for r in result.get("rows", []) if r.get("scenario") != row["scenario"]]
    result.update(rows=[*rows, row], meta=meta())
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return file


def markdown(result: dict[str, Any]) -> str:
    rows = [
        (r["scenario"], r["published"], r["found"], r["duplicates"],
         ", ".join(f"{k} {json.dumps(v)}" for k, v in r.items() if k not in _FIXED))
        for r in result.get("rows", [])
    ]
    return "\n\n".join([
        "## 8. Fault scenarios",
        "Each row is one run of a fault test against real processes (a private redis-server, worker processes "
        "or the in-process worker, the embedded store, real embeddings, the fake LLM over HTTP). `found` counts "
        "the published turns found afterwards in any tier (store, pending and dead batches, buffer, short-term) "
        "read raw, so a turn stored twice shows as a duplicate; every found turn is also exported exactly once. "
        "`first_promotion_after_return_s` is the time from the restarted Redis answering to the first batch "
        "promoted after it, with the tests' lock TTL of 3 s, stale-kick delay of 4 s and sweep every 1 s; at the "
        "defaults (30 s, 60 s and 5 s) a promotion lost with the crash waits for the same re-kick, so expect up to "
        "about a minute there (not measured). The `cluster-*` rows come from tests/system/test_failover.py: memory "
        "on a private 6-node Redis Cluster, Celery on RabbitMQ, a worker process; `published` counts the turns "
        "whose publish returned (acknowledged), `lost` those missing afterwards. In the failover rows a master is "
        "SIGKILLed while its replica lags (its link cut a second before), then the worker; with min replicas 1 "
        "nothing acknowledged may be lost, with 0 the row says what was.",
        md_table(("scenario", "published", "found", "duplicates", "details"), rows, align="lrrrl"),
        f"Reproduce: `{COMMAND}`, then `python -m bench report` (needs Redis at `MEMORYOS_REDIS_URL` and "
        "`redis-server` on the PATH).",
    ])
