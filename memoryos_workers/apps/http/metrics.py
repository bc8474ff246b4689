"""/metrics in Prometheus text format (prometheus-client).

Two kinds of series:

- the deployment's, read from Redis at scrape time (memoryos_workers.counters.read_stats): the counters
  of the stats hash (LLM calls and tokens by purpose, fallbacks, retries, dead letters, waits for the
  token budget, degraded retrievals, ...), gauges (messages per queue, the ingestion backlog, the
  retrieval lane, users waiting for the sweep and how overdue it is), and the retrieval latency
  histogram. Every API process reports the same values (one Redis): aggregate them with max(), not
  sum(), or scrape one process.
- this process's own HTTP requests (`memoryos_http_*`), which do add up across processes.

A counter the workers start counting later appears as `memoryos_<name>_total` without a change here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memoryos_workers.counters import LATENCY_BUCKETS_MS, LLM_PURPOSES
from producers.wire.contract import ALL_QUEUES

GAUGES = {
    "users_in_sweep_index": "Users the pending-work sweep will look at.",
    "sweep_overdue_s": "Seconds the most overdue user's work is late (0 while workers keep up).",
    "users_with_dead_letters": "Users with dead-lettered batches or persona extractions.",
    "users_indexed": "Users in the user index (everyone who published and was not forgotten).",
    "pending_batches": "Batches waiting for a worker, across the users of the sweep index.",
    "backlog_pages": "Turns in batches waiting for a worker.",
    "backlog_users": "Users with batches waiting for a worker.",
    "backlog_oldest_s": "Seconds since the oldest turn waiting for a worker was published (0 with no backlog).",
    "backlog_buffered": "Turns out of short-term waiting to fill a batch (at most MEMORYOS_PROMOTION_MAX_WAIT).",
    "retrieval_servers": "Retrieval lane servers heard from lately.",
    "retrieval_requests_waiting": "Retrievals and persona reads no retrieval server thread has taken yet.",
}
GAUGE_NAMES = {"sweep_overdue_s": "sweep_overdue_seconds", "backlog_oldest_s": "backlog_oldest_seconds"}
LLM_FIELDS = ("calls", "prompt_tokens", "completion_tokens")
HISTOGRAM_FIELDS = {"retrievals", "retrieval_ms"} | {f"retrieval_ms_le_{b}" for b in (*LATENCY_BUCKETS_MS, "inf")}


class DeploymentCollector(Collector):
    """Reads the stats hash on each scrape; a scrape while Redis is down fails (answered with a 503)."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        stats = self.read()
        yield from _gauges(stats)
        yield from _llm(stats)
        yield _retrieval_histogram(stats)
        skip = set(GAUGES) | HISTOGRAM_FIELDS | {f"queue_{q}" for q in ALL_QUEUES}
        skip |= {f"llm_{f}" for f in LLM_FIELDS} | {f"llm_{f}_{p}" for f in LLM_FIELDS for p in LLM_PURPOSES}
        for name in sorted(set(stats) - skip):
            if isinstance(stats[name], int) and name.replace("_", "").isalnum():
                yield CounterMetricFamily(f"memoryos_{name}", f"Deployment counter {name} (memoryos stats).",
                                          value=stats[name])


def _gauges(stats: dict[str, Any]) -> Iterable[Metric]:
    for name, doc in GAUGES.items():
        yield GaugeMetricFamily(f"memoryos_{GAUGE_NAMES.get(name, name)}", doc, value=float(stats.get(name, 0)))
    queues = GaugeMetricFamily("memoryos_queue_length", "Messages waiting in a Celery queue.", labels=["queue"])
    for queue in ALL_QUEUES:
        queues.add_metric([queue], float(stats.get(f"queue_{queue}", 0)))
    yield queues


def _llm(stats: dict[str, Any]) -> Iterable[Metric]:
    """By purpose; what was counted before purposes were recorded (or by a caller without one) is
    `purpose="other"`, so the series still sum to the total."""
    for field in LLM_FIELDS:
        family = CounterMetricFamily(f"memoryos_llm_{field}", f"LLM {field.replace('_', ' ')} by purpose.",
                                     labels=["purpose"])
        split = {p: int(stats.get(f"llm_{field}_{p}", 0)) for p in LLM_PURPOSES}
        for purpose, value in split.items():
            family.add_metric([purpose], value)
        family.add_metric(["other"], max(0, int(stats.get(f"llm_{field}", 0)) - sum(split.values())))
        yield family


def _retrieval_histogram(stats: dict[str, Any]) -> Metric:
    """The stats hash counts each retrieval in one bucket; Prometheus buckets are cumulative."""
    buckets, total = [], 0
    for bound in LATENCY_BUCKETS_MS:
        total += int(stats.get(f"retrieval_ms_le_{bound}", 0))
        buckets.append((str(bound / 1000), total))
    total += int(stats.get("retrieval_ms_le_inf", 0))
    buckets.append(("+Inf", total))
    return HistogramMetricFamily(
        "memoryos_retrieval_latency_seconds", "In-process retrieval time (on workers and API processes).",
        buckets=buckets, sum_value=int(stats.get("retrieval_ms", 0)) / 1000,
    )


class HttpMetrics:
    """Per-process request counts and latencies by route template (never by raw path: ids stay out)."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter("memoryos_http_requests", "HTTP requests served by this API process.",
                                ["method", "route", "status"], registry=registry)
        self.latency = Histogram("memoryos_http_request_duration_seconds", "Time to the response's start.",
                                 ["method", "route"], registry=registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                route = getattr(scope.get("route"), "path", "unmatched")
                self.latency.labels(scope["method"], route).observe(time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.requests.labels(scope["method"], route, str(status)).inc()


def make_registry(read_stats: Callable[[], dict[str, Any]]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DeploymentCollector(read_stats))
    return registry
