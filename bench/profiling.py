"""Where the time goes: the hot paths under pyinstrument (a sampling profiler).

Four paths, each in this process and on the thread that runs it: (a) `publish_turn` (one at a time,
no worker), (b) in-process retrieval against a store of a few thousand pages (the retrieval benchmark's
generated dialogue), (c) promotion drains of one batch each (Promoter.run, the fake LLM from the tests
answering in 0 ms), (d) the persona extraction each of those drains asks for (PersonaWorker.extract).
For each, the full pyinstrument text output goes to bench/results/profile_<path>.txt, and the JSON
keeps the frames with the most self time, the self time per component (package) and our own functions
with the most time including their callees, all as shares of the profiled time.
"""

from __future__ import annotations

import argparse
import random
import re
import sysconfig
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .common import RESULTS, ROOT, bench_settings, cleanup, finish, fmt, md_table, reproduce_md

TOP = 6
PATHS = {
    "publish": "publish_turn",
    "retrieval": "in-process retrieval",
    "promotion": "promotion drain (fake LLM, 0 ms)",
    "persona": "persona extraction (fake LLM, 0 ms)",
}


# --- profiling and reading a session --------------------------------------------------------------


def _profile(name: str, fn: Callable[[], Any], interval: float) -> dict[str, Any]:
    from pyinstrument import Profiler

    profiler = Profiler(interval=interval, async_mode="disabled")
    profiler.start()
    fn()
    profiler.stop()
    session = profiler.last_session
    RESULTS.mkdir(exist_ok=True)
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    (RESULTS / f"profile_{name}.txt").write_text(text)
    root = session.root_frame()
    return {"duration_s": session.duration, "samples": session.sample_count,
            **_shares(root, session.duration or root.time)}


_STDLIB = {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
OURS = ("producers", "memoryos_workers", "schemas")
_PYBIND = re.compile(r"^pybind11_\w+\.")  # pybind11's mangled class name in front of a C++ function


def _component(path: str | None) -> str:
    """Who owns a Python file: our package, a third-party package or the standard library."""
    if not path or path.startswith("<"):
        return "native"
    p = Path(path)
    parts = p.parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1].split(".")[0]
    try:
        rel = p.resolve().relative_to(ROOT)
        return rel.parts[0] if len(rel.parts) > 1 else rel.name
    except ValueError:
        pass
    if any(str(p).startswith(s) for s in _STDLIB):
        return "stdlib"
    return p.stem


def _is_native(frame: Any) -> bool:
    return not frame.file_path or frame.file_path.startswith("<")


def _where(frame: Any) -> str:
    path = frame.file_path or ""
    parts = Path(path).parts
    if "site-packages" in parts:
        short = "/".join(parts[parts.index("site-packages") + 1 :])
    else:
        try:
            short = str(Path(path).resolve().relative_to(ROOT))
        except ValueError:
            short = frame.file_path_short or path
    return f"{short}:{frame.line_no}" if frame.line_no else short


def _name(frame: Any) -> str:
    name = _PYBIND.sub("", frame.function)
    return f"{frame.class_name}.{name}" if getattr(frame, "class_name", None) else name


def _describe(frame: Any, caller: Any) -> tuple[tuple[str, str], str]:
    """(function, where) and component of a frame; a C function is placed at its Python caller and
    counted to the caller's package (e.g. the ONNX runtime's `run`), or as socket I/O."""
    if not _is_native(frame):
        return (_name(frame), _where(frame)), _component(frame.file_path)
    where = f"native, called from {_where(caller)}" if caller is not None else "native"
    name = _name(frame)
    if name.startswith("socket."):
        return (name, where), "socket I/O (waiting on Redis or HTTP)"
    owner = _component(caller.file_path) if caller is not None else "native"
    if owner in OURS or owner in ("stdlib", "bench"):
        owner = f"native: {name.split('.')[0]}"
    return (name, where), owner


def _shares(root: Any, total: float) -> dict[str, Any]:
    """Self time per function (a frame's own time, not its callees') and per component, in % of total;
    and, for our own functions, time including callees."""
    by_frame: dict[tuple[str, str], float] = defaultdict(float)
    by_component: dict[str, float] = defaultdict(float)
    inclusive: dict[tuple[str, str], float] = defaultdict(float)

    def walk(frame: Any, caller: Any, ancestors: frozenset) -> None:
        """`caller`: the nearest Python (non-native) frame above."""
        if frame.is_synthetic:  # "[self]" and the like: time spent in the parent frame itself
            return
        key, component = _describe(frame, caller)
        if key not in ancestors and component in OURS:
            inclusive[key] += frame.time  # once per stack, so recursion does not count twice
        own = frame.time - sum(c.time for c in frame.children if not c.is_synthetic)
        if own > 0:
            by_frame[key] += own
            by_component[component] += own
        below = caller if _is_native(frame) else frame
        for child in frame.children:
            walk(child, below, ancestors | {key})

    walk(root, None, frozenset())

    def top(table: dict, n: int) -> list[tuple[Any, float]]:
        return sorted(((k, 100 * v / total) for k, v in table.items()), key=lambda kv: -kv[1])[:n]

    return {
        "top_self": [{"function": f, "where": w, "percent": p} for (f, w), p in top(by_frame, TOP)],
        "by_component": [{"component": c, "percent": p} for c, p in top(by_component, TOP)],
        # Without the entry points (nearly 100% by construction) and comprehensions (their function's time).
        "top_ours_inclusive": [{"function": f, "where": w, "percent": p} for (f, w), p in top(inclusive, 4 * TOP)
                               if p < 95 and not f.startswith("<")][:TOP],
    }


# --- the three paths ---------------------------------------------------------------------------------


def _publish(calls: int, interval: float) -> dict[str, Any]:
    from producers.publish import Publisher

    from .publish import _single

    settings = bench_settings()
    publisher = Publisher(settings)
    try:
        s = settings
        # Enough turns that every user's batch is cut and its task sent: Celery loaded, broker connected.
        _single(publisher, (s.short_term_capacity + s.promotion_batch_size) * 50, 50, tag="warm", progress=False)
        t0 = time.perf_counter()
        result = _profile("publish", lambda: _single(publisher, calls, 50, tag="prof", progress=False), interval)
        result["per_call_ms"] = 1000 * (time.perf_counter() - t0) / calls
    finally:
        cleanup(publisher.redis, settings.key_prefix)
    return dict(result, calls=calls, setup=f"{calls:,} publish_turn calls over 50 users, no worker")


def _retrieval(pages: int, users: int, calls: int, interval: float) -> dict[str, Any]:
    from memoryos_workers.runtime import Runtime

    from .retrieval import _query, build_store

    rng = random.Random(11)
    with tempfile.TemporaryDirectory(prefix="memoryos-bench-") as tmp:
        settings = bench_settings(data_dir=Path(tmp))
        rt = Runtime(settings)
        try:
            build_store(rt, users, max(1, pages // users), rng)
            retriever = rt.retriever
            queries = [(f"bench-{rng.randrange(users)}", _query(rng)) for _ in range(calls)]
            for user, query in queries[:20]:
                retriever.retrieve_for(user, query)

            def go() -> None:
                for user, query in queries:
                    retriever.retrieve_for(user, query)

            result = _profile("retrieval", go, interval)
        finally:
            rt.close()
            cleanup(rt.redis, settings.key_prefix)
    size = users * max(1, pages // users)
    return dict(result, calls=calls, per_call_ms=1000 * result["duration_s"] / calls,
                setup=f"{calls} retrievals (top_k=10) against {size:,} pages of {users} users, embedded store")


def _promotion(drains: int, interval: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Promotion drains, then the persona extraction each drain asks for (what the persona worker runs)."""
    from memoryos_workers.runtime import Runtime
    from memoryos_workers.testing.fake_llm import FakeLLM
    from memoryos_workers.testing.responders import default_responder

    from .retrieval import _turn

    rng = random.Random(5)
    with FakeLLM(latency=0.0) as llm, tempfile.TemporaryDirectory(prefix="memoryos-bench-") as tmp:
        llm.responder = default_responder
        settings = bench_settings(data_dir=Path(tmp), openai_base_url=llm.base_url, openai_api_key="bench")
        rt = Runtime(settings)
        s = rt.settings
        try:
            promoter, persona = rt.promoter, rt.persona_worker
            # Each user gets exactly one full batch: short-term capacity + one batch of turns.
            per_user = s.short_term_capacity + s.promotion_batch_size
            users = [f"drain-{i}" for i in range(drains + 1)]
            turns = [{"user_id": u, **dict(zip(("user_input", "agent_response"), _turn(rng), strict=True))}
                     for u in users for _ in range(per_user)]
            rt.publisher.publish_many(turns)
            promoter.run(users[0])  # warm up: model loaded, collections created, LLM client connected
            persona.extract(users[0])
            extracted: list[dict[str, int]] = []

            def drain() -> None:
                for user in tqdm(users[1:], desc="promotion drains", unit="drain", leave=False):
                    if promoter.run(user) != 1:
                        raise RuntimeError(f"expected one batch drained for {user}")

            def extract() -> None:
                for user in tqdm(users[1:], desc="persona extractions", unit="user", leave=False):
                    extracted.append(persona.extract(user))

            drained = _profile("promotion", drain, interval)
            extraction = _profile("persona", extract, interval)
        finally:
            rt.close()
            cleanup(rt.redis, settings.key_prefix)
    calls = sum(r.get("calls", 0) for r in extracted)
    drained.update(calls=drains, per_call_ms=1000 * drained["duration_s"] / drains,
                   setup=f"{drains} drains of one batch of {s.promotion_batch_size} turns each (one user each), "
                         "fake LLM at 0 ms on a thread of this process")
    extraction.update(calls=drains, per_call_ms=1000 * extraction["duration_s"] / drains,
                      setup=f"The persona extraction after each of those {drains} drains ({calls} LLM calls), "
                            "fake LLM at 0 ms")
    return drained, extraction


def run(publish_calls: int = 3000, pages: int = 3000, users: int = 30, retrievals: int = 300, drains: int = 8,
        interval: float = 0.0005) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    paths["publish"] = _publish(publish_calls, interval)
    paths["retrieval"] = _retrieval(pages, users, retrievals, interval)
    paths["promotion"], paths["persona"] = _promotion(drains, interval)
    result: dict[str, Any] = {
        "interval_s": interval, "paths": paths,
        "reproduce": f"python -m bench profiling --publish-calls {publish_calls} --pages {pages} --users {users} "
                     f"--retrievals {retrievals} --drains {drains} --interval {interval}",
    }
    return finish("profile", result, _print)


def _print(result: dict[str, Any]) -> None:
    for name, p in result["paths"].items():
        print(f"\nprofile {PATHS[name]}: {p['setup']}; {p['per_call_ms']:.2f} ms per call under the profiler "
              f"({p['samples']} samples) -> bench/results/profile_{name}.txt")
        print("  self time:  " + "; ".join(f"{f['function']} ({f['where']}) {f['percent']:.1f}%"
                                          for f in p["top_self"]))
        print("  components: " + ", ".join(f"{c['component']} {c['percent']:.1f}%" for c in p["by_component"]))


def markdown(result: dict[str, Any]) -> str:
    parts = [
        "## 6. Where the time goes",
        "Each hot path run under pyinstrument (sampling every "
        f"{result['interval_s'] * 1000:g} ms, the thread that runs it). *Self time* is time in the function itself, "
        "not in what it calls (for a call into C, such as a socket read or the ONNX runtime, that is the C "
        "code's time); *component* adds up self time by package. Shares are of the whole profiled time; the "
        "profiler adds its own overhead, so the per-call time here is above the unprofiled figures of sections "
        "1-3. In 6c and 6d the fake LLM is a server on another thread of the same process: the time it takes "
        "to build an answer (holding the GIL) shows up in the HTTP client's frames (`httpcore`), so read those "
        "as the LLM's time. Full call trees: `bench/results/profile_<path>.txt`.",
    ]
    for letter, (name, p) in zip("abcdefgh", result["paths"].items(), strict=False):
        parts.append(f"### 6{letter}. {PATHS[name]}")
        parts.append(f"{p['setup']}; {fmt(p['per_call_ms'])} ms per call under the profiler, "
                     f"{p['samples']:,} samples ([full output](bench/results/profile_{name}.txt)).")
        parts.append(md_table(("function (most self time)", "where", "% of total"),
                              [(f"`{f['function']}`", f"`{f['where']}`", fmt(f["percent"], 1))
                               for f in p["top_self"]], align="llr"))
        parts.append(md_table(("component (self time)", "% of total"),
                              [(c["component"], fmt(c["percent"], 1)) for c in p["by_component"]]))
        if p.get("top_ours_inclusive"):
            parts.append(md_table(("our function (including what it calls)", "where", "% of total"),
                                  [(f"`{f['function']}`", f"`{f['where']}`", fmt(f["percent"], 1))
                                   for f in p["top_ours_inclusive"]], align="llr"))
    parts.append(reproduce_md(result["reproduce"]))
    return "\n\n".join(parts)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--publish-calls", type=int, default=3000)
    parser.add_argument("--pages", type=int, default=3000, help="pages in the store for the retrieval path")
    parser.add_argument("--users", type=int, default=30, help="users the retrieval store's pages are spread over")
    parser.add_argument("--retrievals", type=int, default=300)
    parser.add_argument("--drains", type=int, default=8, help="promotion drains (one batch each)")
    parser.add_argument("--interval", type=float, default=0.0005, help="pyinstrument sampling interval, seconds")
