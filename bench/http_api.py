"""The HTTP API (`memoryos serve`, one uvicorn process): POST .../turns latency with 1, 16 and 64 concurrent
clients and turns/s (single and bulk), POST .../retrieve latency, each beside the direct Python call
measured in the same run (`Publisher.publish`, `publish_many`, in-process retrieval).

The server runs as its own process with a tenant key (the tenant namespace mapping is part of every
request), its access log off and no worker (publishing is measured on its own, as in `bench publish`;
full batches send a promote task to a queue nobody consumes, under a private key prefix deleted at the
end). The load comes from this process: asyncio clients on keep-alive HTTP/1.1 connections over
loopback, each sending its next request when the previous answer is in (closed loop).

Retrieval: a store of --users x --pages pages (generated dialogue in segments, as in `bench retrieval`)
is first timed in-process here, then handed to the server and timed through HTTP. Each HTTP answer also
carries the server's own retrieval time (`timings_ms.total`), so "added by HTTP" is measured per request:
the client's round trip minus the retrieval inside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from .common import (
    ROOT,
    bench_settings,
    cleanup,
    finish,
    fmt,
    image_md,
    md_table,
    percentile,
    pyplot,
    reproduce_md,
    save_figure,
    summary,
)

TENANT, KEY = "bench", "bench-key-" + uuid.uuid4().hex
FLOORS = {"p50_added_ms": 3.0, "single_rps": 1500, "bulk_turns_s": 10_000, "retrieve_added_ms": 2.0}


# --- the load generator -------------------------------------------------------------------------------


class _Conn:
    """One keep-alive HTTP/1.1 connection; requests are sent one at a time (closed loop)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        headers = await self.reader.readuntil(b"\r\n\r\n")
        status = int(headers[9:12])
        length = 0
        for line in headers.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)


async def _clients(port: int, requests: list[tuple[str, bytes]], concurrency: int, expect: int,
                   ) -> tuple[list[float], float, list[bytes]]:
    """Send `requests` over `concurrency` connections; every latency, the wall time, the answers."""
    conns = [_Conn(*await asyncio.open_connection("127.0.0.1", port)) for _ in range(concurrency)]
    latencies: list[float] = []
    answers: list[bytes] = []
    queue = iter(requests)

    async def run(conn: _Conn) -> None:
        for path, body in queue:
            t0 = time.perf_counter()
            status, answer = await conn.post(path, body)
            latencies.append(time.perf_counter() - t0)
            if status != expect:
                raise RuntimeError(f"HTTP {status} for {path}: {answer[:300]!r}")
            answers.append(answer)

    t0 = time.perf_counter()
    await asyncio.gather(*(run(c) for c in conns))
    wall = time.perf_counter() - t0
    for conn in conns:
        conn.writer.close()
    return latencies, wall, answers


def _load(port: int, requests: list[tuple[str, bytes]], concurrency: int, expect: int = 202,
          ) -> tuple[list[float], float, list[bytes]]:
    try:
        import uvloop

        return uvloop.run(_clients(port, requests, concurrency, expect))  # type: ignore[no-any-return]
    except ImportError:
        return asyncio.run(_clients(port, requests, concurrency, expect))


# --- the server -----------------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(settings: Any, log: Path) -> tuple[subprocess.Popen, int]:
    import httpx

    port = _free_port()
    env = dict(os.environ, MEMORYOS_KEY_PREFIX=settings.key_prefix, MEMORYOS_DATA_DIR=str(settings.data_dir),
               MEMORYOS_REDIS_URL=settings.redis_url, MEMORYOS_API_KEYS=f"{KEY}={TENANT}",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("MEMORYOS_QDRANT_URL", None)
    cmd = [sys.executable, "-m", "memoryos_workers.apps.cli", "serve", "--port", str(port), "--no-worker",
           "--no-access-log"]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"memoryos serve exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"memoryos serve did not start:\n{log.read_text()[-3000:]}")


def _cpu_seconds(pid: int) -> float | None:
    """The process's CPU time (user + system), Linux only: what a request costs the server whatever else
    runs on the machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


# --- what is measured ----------------------------------------------------------------------------------


def _turn(i: int) -> dict[str, Any]:
    return {"user_input": f"message {i} " * 8, "agent_response": f"reply {i} " * 8, "turn_id": uuid.uuid4().hex}


def _direct(settings: Any, n: int, chunk: int, users: int) -> dict[str, Any]:
    """The Python calls the API wraps, in this process, on the same Redis."""
    from producers.publish import Publisher

    publisher = Publisher(settings)
    stored = f"{TENANT}:direct"
    for i in range(300):  # scripts loaded, connection warm, Celery's client loaded by a first full batch
        publisher.publish({**_turn(i), "user_id": f"{stored}-{i % users}"})
    single = []
    for i in range(n):
        turn = {**_turn(i), "user_id": f"{stored}-{i % users}"}
        t0 = time.perf_counter()
        publisher.publish(turn)
        single.append(time.perf_counter() - t0)
    turns = [{**_turn(i), "user_id": f"{stored}-bulk-{(i // chunk) % users}"} for i in range(n * 2)]
    t0 = time.perf_counter()
    for start in range(0, len(turns), chunk):
        publisher.publish_many(turns[start:start + chunk])
    bulk_wall = time.perf_counter() - t0
    return {"single": summary(single), "single_rate": n / sum(single), "bulk_turns_s": len(turns) / bulk_wall}


def _http_publish(port: int, pid: int, n: int, chunk: int, users: int, concurrencies: list[int]) -> dict[str, Any]:
    def singles(tag: str, count: int) -> list[tuple[str, bytes]]:
        return [(f"/v1/users/{tag}-{i % users}/turns", json.dumps(_turn(i)).encode()) for i in range(count)]

    def cpu_us(before: float | None, count: int) -> float | None:
        after = _cpu_seconds(pid)
        return None if before is None or after is None else (after - before) * 1e6 / count

    _load(port, singles("warm", 300), 4)
    rows = []
    for c in concurrencies:
        count = n if c == 1 else n * 2
        before = _cpu_seconds(pid)
        latencies, wall, _ = _load(port, singles(f"c{c}", count), c)
        rows.append({"concurrency": c, **summary(latencies), "requests": count, "rps": count / wall,
                     "server_cpu_us": cpu_us(before, count)})
    bulk_rows = []
    for c in (1, 4):  # new turn ids each round: a repeated turn_id is deduplicated, which costs less
        bulk = [(f"/v1/users/bulk{c}-{i % users}/turns", json.dumps([_turn(j) for j in range(chunk)]).encode())
                for i in range(max(4, n * 2 // chunk))]
        before = _cpu_seconds(pid)
        latencies, wall, _ = _load(port, bulk, c)
        bulk_rows.append({"concurrency": c, **summary(latencies), "requests": len(bulk),
                          "turns_s": len(bulk) * chunk / wall, "server_cpu_us": cpu_us(before, len(bulk) * chunk)})
    return {"single": rows, "bulk": bulk_rows}


def _retrieval(settings: Any, users: int, pages: int, queries: int, seed: int) -> tuple[list, dict[str, Any]]:
    """Builds the store and times in-process retrieval; returns the calls to replay over HTTP."""
    from memoryos_workers.runtime import Runtime

    from .retrieval import _query, build_store

    rng = random.Random(seed)
    rt = Runtime(settings)
    try:
        build_store(rt, users, pages, rng, prefix=f"{TENANT}:u")
        calls = [(f"u{rng.randrange(users)}", _query(rng)) for _ in range(queries)]
        retriever = rt.retriever
        for user, query in calls:  # warm, as the HTTP pass will be
            retriever.retrieve_for(f"{TENANT}:{user}", query)
        local = []
        for user, query in calls:
            t0 = time.perf_counter()
            retriever.retrieve_for(f"{TENANT}:{user}", query)
            local.append(time.perf_counter() - t0)
    finally:
        rt.close()  # the server opens the store next
    return calls, summary(local)


def _http_retrieval(port: int, calls: list[tuple[str, str]]) -> dict[str, Any]:
    requests = [(f"/v1/users/{u}/retrieve", json.dumps({"query": q}).encode()) for u, q in calls]
    _load(port, requests, 1, expect=200)  # warm: the store's files read in, as in-process
    latencies, _, answers = _load(port, requests, 1, expect=200)
    inside = [json.loads(a)["timings_ms"]["total"] / 1000 for a in answers]
    added = [outer - inner for outer, inner in zip(latencies, inside, strict=True)]
    return {"http": summary(latencies), "server_retrieval": summary(inside),
            "added_p50_ms": percentile(added, 50) * 1000, "added_p99_ms": percentile(added, 99) * 1000}


def run(n: int = 3000, chunk: int = 500, users: int = 200, concurrency: str = "1,16,64", store_users: int = 20,
        pages: int = 500, queries: int = 300, seed: int = 7) -> dict[str, Any]:
    levels = [int(c) for c in concurrency.split(",") if c]
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="memoryos-bench-http-") as tmp:
        settings = bench_settings(data_dir=Path(tmp) / "data")
        try:
            calls, local = _retrieval(settings, store_users, pages, queries, seed)
            direct = _direct(settings, n, chunk, users)
            proc, port = _start_server(settings, Path(tmp) / "server.log")
            try:
                http = _http_publish(port, proc.pid, n, chunk, users, levels)
                retrieval = _http_retrieval(port, calls)
            finally:
                _stop(proc)
        finally:
            from producers.connection import redis_client

            cleanup(redis_client(settings.redis_url), settings.key_prefix)
    result = {
        "n": n, "chunk": chunk, "users": users, "store_pages": store_users * pages, "queries": queries,
        "direct": direct, "http": http, "retrieval": {"in_process": local, **retrieval},
        "cpus": os.cpu_count(), "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "reproduce": f"python -m bench http_api --n {n} --chunk {chunk} --users {users} --concurrency {concurrency} "
                     f"--store-users {store_users} --pages {pages} --queries {queries} --seed {seed}",
    }
    return finish("http_api", result, _print, _plot)


# --- reporting -------------------------------------------------------------------------------------------


def _rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    d, r = result["direct"], result["retrieval"]
    out = [("direct `Publisher.publish` (baseline)", fmt(d["single"]["p50_ms"], 3), fmt(d["single"]["p99_ms"], 3),
            fmt(d["single_rate"]), "—", "1.00x", "—")]
    for row in result["http"]["single"]:
        out.append((f"POST …/turns, one turn, {row['concurrency']} client(s)", fmt(row["p50_ms"], 3),
                    fmt(row["p99_ms"], 3), fmt(row["rps"]), f"+{row['p50_ms'] - d['single']['p50_ms']:.2f} ms",
                    f"{row['p50_ms'] / d['single']['p50_ms']:.2f}x", _cpu(row)))
    out.append((f"direct `publish_many`, {result['chunk']} per call (baseline)", "—", "—",
                fmt(d["bulk_turns_s"]) + " turns/s", "—", "1.00x", "—"))
    for row in result["http"]["bulk"]:
        out.append((f"POST …/turns, {result['chunk']} turns, {row['concurrency']} client(s)", fmt(row["p50_ms"], 2),
                    fmt(row["p99_ms"], 2), fmt(row["turns_s"]) + " turns/s", "—",
                    f"{row['turns_s'] / d['bulk_turns_s']:.2f}x turns/s", _cpu(row, "turn")))
    out.append(("in-process retrieval (baseline)", fmt(r["in_process"]["p50_ms"], 2), fmt(r["in_process"]["p99_ms"], 2),
                "—", "—", "1.00x", "—"))
    out.append(("POST …/retrieve, 1 client", fmt(r["http"]["p50_ms"], 2), fmt(r["http"]["p99_ms"], 2), "—",
                f"+{r['added_p50_ms']:.2f} ms (per request)",
                f"{r['http']['p50_ms'] / r['in_process']['p50_ms']:.2f}x", "—"))
    return out


def _cpu(row: dict[str, Any], unit: str = "request") -> str:
    us = row.get("server_cpu_us")
    return "—" if us is None else f"{us:,.0f} µs/{unit} ({1e6 / us:,.0f}/s per core)"


HEADERS = ("", "p50 ms", "p99 ms", "req/s (or turns/s)", "p50 added by HTTP", "vs baseline", "server CPU")


def _floors(result: dict[str, Any]) -> list[tuple[str, str, bool]]:
    d, single = result["direct"], {r["concurrency"]: r for r in result["http"]["single"]}
    best = max(result["http"]["single"], key=lambda r: r["rps"])
    best_single = best["rps"]
    cpu = f"; server CPU {_cpu(best)}" if best.get("server_cpu_us") else ""
    best_bulk = max(r["turns_s"] for r in result["http"]["bulk"])
    one = single.get(1)
    added = one["p50_ms"] - d["single"]["p50_ms"] if one else float("nan")
    r_added = result["retrieval"]["added_p50_ms"]
    return [
        (f"…/turns p50 at 1 client within {FLOORS['p50_added_ms']:g} ms of a direct publish_turn",
         f"+{added:.2f} ms", added <= FLOORS["p50_added_ms"]),
        (f"one process sustains {FLOORS['single_rps']:,} single-turn requests/s",
         f"{best_single:,.0f} req/s at {best['concurrency']} clients{cpu}", best_single >= FLOORS["single_rps"]),
        (f"one process sustains {FLOORS['bulk_turns_s']:,} turns/s in bulk", f"{best_bulk:,.0f} turns/s",
         best_bulk >= FLOORS["bulk_turns_s"]),
        (f"…/retrieve: HTTP adds at most {FLOORS['retrieve_added_ms']:g} ms at p50", f"+{r_added:.2f} ms",
         r_added <= FLOORS["retrieve_added_ms"]),
    ]


def _print(result: dict[str, Any]) -> None:
    print(f"\nHTTP API benchmark: one `memoryos serve` process, {result['cpus']} CPUs shared with the load generator "
          f"(load average {result['load_average'][0]:.1f} before, {result['load_average'][1]:.1f} after)")
    for row in [HEADERS, *_rows(result)]:
        print(f"{row[0]:48} {row[1]:>8} {row[2]:>8} {row[3]:>18} {row[4]:>24} {row[5]:>16} {row[6]:>28}")
    for name, value, met in _floors(result):
        print(f"floor: {name}: {value} ({'met' if met else 'NOT met'})")


def _plot(result: dict[str, Any]) -> Path:
    plt = pyplot()
    rows = result["http"]["single"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = [r["concurrency"] for r in rows]
    ax1.plot(xs, [r["p50_ms"] for r in rows], "o-", label="HTTP p50")
    ax1.plot(xs, [r["p99_ms"] for r in rows], "s--", label="HTTP p99")
    ax1.axhline(result["direct"]["single"]["p50_ms"], color="grey", linestyle=":", label="direct publish_turn p50")
    ax1.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="ms per request",
            title="POST /v1/users/{id}/turns latency")
    ax1.set_xticks(xs, [str(x) for x in xs])
    ax1.legend()
    ax2.bar([str(x) for x in xs], [r["rps"] for r in rows], color="tab:blue", label="single-turn requests/s")
    if all(r.get("server_cpu_us") for r in rows):
        ax2.plot([str(x) for x in xs], [1e6 / r["server_cpu_us"] for r in rows], "D", color="tab:green",
                 label="one fully used core at the measured server CPU")
    ax2.axhline(FLOORS["single_rps"], color="tab:red", linestyle="--", label=f"floor {FLOORS['single_rps']:,} req/s")
    ax2.set(xlabel="concurrent clients", ylabel="requests/s (one API process)", title="throughput")
    ax2.legend()
    return save_figure(fig, "http_api.png")


def markdown(result: dict[str, Any]) -> str:
    floors = md_table(("floor (issue 15)", "measured", ""),
                      [(n, v, "met" if m else "**not met**") for n, v, m in _floors(result)], align="lrl")
    load = result.get("load_average")
    shared = (f" The machine was shared with other engineers' test runs during this run: load average "
              f"{load[0]:.1f} at the start and {load[1]:.1f} at the end on {result['cpus']} CPUs, so absolute "
              "figures here are pessimistic." if load and max(load) > (result["cpus"] or 1) else "")
    return "\n\n".join([
        "## 9. HTTP API",
        f"One `memoryos serve` process (uvicorn, access log off, no worker), a tenant key, loopback; the "
        f"load generator (asyncio, keep-alive connections, closed loop) runs in the benchmark's process on the "
        f"same {result['cpus']} CPUs. {result['n']:,} single-turn requests at 1 client and twice that at higher "
        f"concurrency, over {result['users']} users; bulk requests of {result['chunk']} turns. Retrieval: "
        f"{result['store_pages']:,} pages, {result['queries']} queries, top_k=10; \"added by HTTP\" is each "
        "request's round trip minus the server's own retrieval time reported in the same answer. \"server CPU\" "
        "is the API process's CPU time (user + system, from /proc) per request or turn, and the rate one fully "
        "used core would give at that cost: it does not depend on what else runs on the machine." + shared,
        md_table(HEADERS, _rows(result)),
        floors,
        image_md("HTTP API latency and throughput", "http_api.png"),
        reproduce_md(result["reproduce"]),
    ])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=3000, help="single-turn requests at 1 client (twice at higher)")
    parser.add_argument("--chunk", type=int, default=500, help="turns per bulk request")
    parser.add_argument("--users", type=int, default=200, help="users the published turns spread over")
    parser.add_argument("--concurrency", default="1,16,64", help="concurrent clients, comma-separated")
    parser.add_argument("--store-users", type=int, default=20, help="users of the retrieval store")
    parser.add_argument("--pages", type=int, default=500, help="mid-term pages per user of the retrieval store")
    parser.add_argument("--queries", type=int, default=300, help="timed retrievals, in-process and over HTTP")
    parser.add_argument("--seed", type=int, default=7)
