"""Shared helpers: a private key prefix per run, percentiles, cleanup of only what we created, and the
bits every part uses to save its result and render its BENCHMARKS.md section."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import redis

from schemas.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def bench_settings(**overrides: object) -> Settings:
    prefix = f"mosbench-{uuid.uuid4().hex[:8]}"
    return Settings(key_prefix=prefix, **overrides)  # type: ignore[arg-type]


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values_s: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(values_s, 50) * 1000,
        "p99_ms": percentile(values_s, 99) * 1000,
        "mean_ms": statistics.fmean(values_s) * 1000,
    }


def cleanup(client: redis.Redis, prefix: str) -> int:
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    return len(keys)


def redis_url() -> str:
    return os.environ.get("MEMORYOS_REDIS_URL", "redis://localhost:6379/0")


def reproduce(command: str) -> str:
    return f"reproduce: {command}  (Redis: {redis_url()})"


# --- provenance -------------------------------------------------------------------------------------


def git_commit() -> str:
    """`git rev-parse --short HEAD`, with "+dirty" when the work tree has uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
        # The benchmark's own outputs do not count: a run rewrites them.
        dirty = subprocess.run(["git", "status", "--porcelain", "--", ".", ":(exclude)bench/results",
                                ":(exclude)BENCHMARKS.md"], cwd=ROOT, capture_output=True, text=True, check=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "cpu_model": cpu_model(), "python": platform.python_version(),
            "platform": platform.platform(terse=True)}


def meta() -> dict[str, Any]:
    """When and where a result was measured; every part stores it under the key "meta"."""
    return {"measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": git_commit(),
            "machine": machine()}


def save_result(name: str, result: dict[str, Any]) -> Path:
    """Writes bench/results/<name>.json with the provenance added (result is updated in place)."""
    result.setdefault("meta", meta())
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return path


def load_result(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    value = json.loads(path.read_text())
    return value if isinstance(value, dict) else None


# --- rendering --------------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 2) -> str:
    """A number for a table: '—' when missing or NaN, thousands separators for big ones."""
    if value is None:
        return "—"
    if isinstance(value, float) and math.isnan(value):
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def ratio(a: Any, b: Any, digits: int = 2) -> str:
    try:
        if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
            return "—"
    except TypeError:
        return "—"
    return f"{a / b:.{digits}f}x"


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A markdown table; `align` is one letter per column, l or r (default: first left, others right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    marks = [":--" if a == "l" else "--:" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def reproduce_md(command: str) -> str:
    return f"Reproduce: `{command}` (needs Redis at `MEMORYOS_REDIS_URL`; `make bench` sets one up)."


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, name: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / name
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def image_md(alt: str, name: str) -> str:
    return f"![{alt}](bench/results/{name})"


def start_worker(settings: Settings, log_path: Path, queues: Sequence[str], threads: int, name: str,
                 **env: str) -> subprocess.Popen:
    """A real worker process (`celery -A memoryos_workers worker -P threads`) on this run's private key
    prefix and data folder, its output appended to log_path."""
    environment = dict(os.environ, MEMORYOS_KEY_PREFIX=settings.key_prefix, MEMORYOS_DATA_DIR=str(settings.data_dir),
                       MEMORYOS_REDIS_URL=settings.redis_url, **env)
    environment.pop("MEMORYOS_QDRANT_URL", None)
    cmd = [sys.executable, "-m", "celery", "-A", "memoryos_workers", "worker", "-Q", ",".join(queues),
           "-P", "threads", "-c", str(threads), "--without-heartbeat", "--without-mingle", "--without-gossip",
           "-n", f"{name}-{os.getpid()}@%h", "-l", "WARNING"]
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)


def stop_worker(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@contextmanager
def worker(settings: Settings, log_path: Path, queues: Sequence[str], threads: int, name: str,
           **env: str) -> Iterator[subprocess.Popen]:
    proc = start_worker(settings, log_path, queues, threads, name, **env)
    try:
        yield proc
    finally:
        stop_worker(proc)


def finish(name: str, result: dict[str, Any], show: Callable[[dict[str, Any]], None],
           plot: Callable[[dict[str, Any]], object] | None = None) -> dict[str, Any]:
    """What every part does with its result: print the table, save the JSON, draw the plot(s), and say
    how to reproduce it (result["reproduce"])."""
    show(result)
    save_result(name, result)
    if plot is not None:
        print(f"plot: {plot(result)}")
    print(reproduce(result["reproduce"]))
    return result
