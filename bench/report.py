"""Writes BENCHMARKS.md at the repository root from the saved results in bench/results/*.json.

Every section is rendered by its part's markdown() from the JSON alone, so `python -m bench report`
needs no Redis and runs nothing. A section whose JSON is missing says how to measure it; each says
when and at which commit it was measured, so results of different ages are visible as such.
"""

from __future__ import annotations

import json
import os
import platform
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from .common import RESULTS, ROOT, cpu_model, git_commit, md_table
from .parts import ORDER, load_part

OUTPUT = ROOT / "BENCHMARKS.md"
ANALYSIS = Path(__file__).resolve().parent / "analysis.md"


class Section(NamedTuple):
    number: int
    title: str
    module: str  # bench.<module>
    result: str  # bench/results/<result>.json
    render: str  # the module's function that renders it
    command: str  # what measures it


SECTIONS = (
    Section(1, "Publishing turns", "publish", "publish", "markdown", "python -m bench publish"),
    Section(2, "Ingestion throughput", "ingest", "ingest", "markdown", "python -m bench ingest"),
    Section(3, "Retrieval latency", "retrieval", "retrieval_latency", "markdown_latency",
            "python -m bench retrieval --skip-recall"),
    Section(4, "LoCoMo evidence recall", "retrieval", "retrieval_recall", "markdown_recall",
            "python -m bench retrieval --skip-latency"),
    Section(5, "LLM cost of ingestion", "llm_cost", "llm_cost", "markdown", "python -m bench llm_cost"),
    Section(6, "Where the time goes", "profiling", "profile", "markdown", "python -m bench profiling"),
    Section(7, "LLM token budget", "llm_budget", "llm_budget", "markdown", "python -m bench llm_budget"),
    Section(8, "Fault scenarios", "faults", "faults", "markdown",
            "MEMORYOS_FAULT_RESULTS=bench/results/faults.json python -m pytest -s tests/system/test_redis_restart.py"),
    Section(9, "HTTP API", "http_api", "http_api", "markdown", "python -m bench http_api"),
    Section(10, "Memory context within a token budget", "context", "context", "markdown", "python -m bench context"),
    Section(11, "Retrieval under load", "retrieval_load", "retrieval_load", "markdown",
            "python -m bench retrieval_load"),
    Section(12, "A real small model", "real_llm_check", "real_llm_check", "markdown",
            "python -m bench.real_llm_check --base-url URL (see bench/real_llm_check.py; not part of `make bench`)"),
    Section(13, "Scaling out: Redis Cluster, RabbitMQ, min replicas", "scale", "scale", "markdown",
            "python -m bench scale"),
    Section(14, "Facts over months", "facts", "facts", "markdown", "python -m bench facts"),
    Section(15, "Facts over months with a real small model", "facts", "facts_real", "markdown",
            "python -m bench facts --base-url URL (see bench/facts.py; not part of `make bench`)"),
)


def _load(section: Section) -> tuple[dict[str, Any] | None, Path]:
    path = RESULTS / f"{section.result}.json"
    if not path.exists():
        return None, path
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, path
    return (value if isinstance(value, dict) else None), path


def _provenance(result: dict[str, Any], path: Path) -> tuple[str, str]:
    meta = result.get("meta") or {}
    if meta.get("measured_at"):
        return meta["measured_at"], meta.get("commit", "not recorded")
    mtime = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"{mtime} (file time)", "not recorded"


def _not_measured(section: Section, why: str = "not measured yet") -> str:
    return f"## {section.number}. {section.title}\n\n_{why.capitalize()}; run `{section.command}`._"


def _render(section: Section) -> tuple[str, tuple[str, str] | None]:
    result, path = _load(section)
    if result is None:
        return _not_measured(section), None
    module = load_part(section.module)
    if module is None or not hasattr(module, section.render):
        return _not_measured(section, f"results exist but bench/{section.module}.py cannot render them"), None
    when = _provenance(result, path)
    try:
        text = getattr(module, section.render)(result).strip()
    except Exception as exc:  # noqa: BLE001 - one stale JSON must not lose the whole report
        traceback.print_exc()
        return _not_measured(section, f"the saved result could not be rendered ({type(exc).__name__}: {exc}); "
                                      "measure it again"), when
    head, _, rest = text.partition("\n")
    stamp = f"_Measured {when[0]} at commit `{when[1]}`._"
    return f"{head}\n\n{stamp}\n{rest}", when


def _header(rows: list[tuple[str, str, str]]) -> str:
    commit = git_commit()
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n\n".join([
        "# Benchmarks",
        "<!-- Generated by `python -m bench` (bench/report.py) from bench/results/*.json: edit bench/, "
        "not this file. -->",
        f"Generated {now} at commit `{commit}`, on {os.cpu_count()} CPUs ({cpu_model()}), Python "
        f"{platform.python_version()}, Redis on loopback. Every figure sits beside a baseline measured in the same "
        "run, as a ratio; each section says when it was measured. One run each on a shared, noisy machine: "
        "compare the ratios more than the absolute times, and p99s least of all.",
        "Reproduce everything with `make bench` (sets up the virtualenv, the offline model and Redis; options "
        "through `BENCH_ARGS`, e.g. `make bench BENCH_ARGS=\"retrieval --sizes 1000\"`), or one part with "
        f"`python -m bench <part>` (`python -m bench <part> --help` lists its options; parts: {', '.join(ORDER)}). "
        "`python -m bench report` only rewrites this file from the "
        "saved results. Every run uses a private Redis key prefix and deletes only its own keys.",
        md_table(("section", "measured", "commit"), rows, align="lll"),
    ])


def render() -> str:
    sections, rows = [], []
    for section in SECTIONS:
        text, when = _render(section)
        sections.append(text)
        rows.append((f"{section.number}. {section.title}", *(when or ("not yet", "—"))))
    if ANALYSIS.exists():
        sections.append(ANALYSIS.read_text().strip())
    return "\n\n".join([_header(rows), *sections]) + "\n"


def write(path: Path = OUTPUT) -> Path:
    path.write_text(render())
    return path
