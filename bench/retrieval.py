"""Retrieval: latency in-process and over RPC against store size, beside one query embedding (the floor),
and LoCoMo evidence recall@k beside a plain dense top-k over all pages of the conversation.

Latency: pages with generated everyday text (drawn from a pool of 3000 turns, so filling costs the pool's
embeddings, not the store size's) are written straight into the embedded store (no LLM), in segments of
10 consecutive pages per user, spread over --users users, each with a full short-term list
in Redis. The store grows through --sizes; at each size, retrieval is timed in this process, then the
store is handed to a real worker process (`celery -A memoryos_workers worker -Q memoryos.retrieval`,
started with this run's private key prefix and data folder) and timed again through producers'
RetrievalClient. Both are timed warm, after one untimed pass over the same queries (a store just opened
reads its files in on first touch: a first pass is about twice as slow).

Recall: each LoCoMo conversation is ingested through the real pipeline (publish, Promoter, fake LLM from
the tests) as its own user of one store (so BM25's IDF spans tenants, as in production), with a
short-term capacity of --stm pages, then flushed. A question's recall is the share of
its evidence dia_ids found in the retrieved pages; "pages" counts only the top-k mid-term pages (the
short-term page is left out of the search, so it is the strict comparison); "+STM" adds the short-term
pages the context also returns, as MemoryOS does.

Split by job: retrieval_build.py (the generated store), retrieval_latency.py, retrieval_recall.py; this module
is the entry point and keeps the names other parts import from it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .common import finish
from .retrieval_build import (  # noqa: F401 - imported from here by other parts
    _ACTIONS,
    _PEOPLE,
    _THINGS,
    _WHEN,
    DEFAULT_FACTS,
    SEGMENT_PAGES,
    _query,
    _turn,
    build_store,
)
from .retrieval_latency import _latency, _plot_latency, _print_latency, markdown_latency
from .retrieval_recall import (  # noqa: F401 - imported from here by other parts
    CATEGORIES,
    CHECKED,
    LOCOMO,
    TUNED,
    _evidence,
    _ingest,
    _plot_by_category,
    _plot_recall,
    _print_recall,
    _recall,
    markdown_recall,
    question_time,
)

DEFAULT_SIZES = "10000,100000"
DEFAULT_USERS = 1000


def markdown(result: dict[str, Any]) -> str:
    """Both sections; `result` is what `run` returns (keys "latency" and/or "recall")."""
    out = []
    if "latency" in result:
        out.append(markdown_latency(result["latency"]))
    if "recall" in result:
        out.append(markdown_recall(result["recall"]))
    return "\n\n".join(out)


# --- entry point ------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """What json.dump then json.load gives (int keys become strings), so run() and markdown() read the
    same shape."""
    return json.loads(json.dumps(value, default=str))


def run(
    sizes: str = DEFAULT_SIZES,
    users: int = DEFAULT_USERS,
    queries: int = 300,
    facts: int = DEFAULT_FACTS,
    rpc: bool = True,
    conversations: str = "conv-26,conv-30",
    ks: str = "5,10,20",
    stm: int = 1,
    skip_latency: bool = False,
    skip_recall: bool = False,
    seed: int = 7,
) -> dict[str, Any]:
    size_list = [int(s) for s in sizes.split(",") if s]
    k_list = sorted({int(k) for k in ks.split(",") if k} | {10})
    out: dict[str, Any] = {}
    if not skip_latency:
        rows = _latency(size_list, users, queries, rpc, seed, facts)
        latency = _jsonable({
            "users": users, "queries": queries, "facts": facts, "rows": rows,
            "reproduce": f"python -m bench retrieval --skip-recall --sizes {sizes} --users {users} "
                         f"--facts {facts} --queries {queries} --seed {seed}" + ("" if rpc else " --no-rpc"),
        })
        out["latency"] = finish("retrieval_latency", latency, _print_latency, lambda r: _plot_latency(r["rows"]))
    if not skip_recall:
        recall = _recall([c for c in conversations.split(",") if c], k_list, stm)
        recall = _jsonable(dict(recall, stm=stm, reproduce=f"python -m bench retrieval --skip-latency "
                                f"--conversations {conversations} --ks {','.join(map(str, k_list))} --stm {stm}"))
        recall["ks"] = [str(k) for k in k_list]  # as the keys of the recall dicts
        out["recall"] = finish("retrieval_recall", recall, _print_recall,
                               lambda r: f"{_plot_recall(r)}, {_plot_by_category(r)}")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="store sizes in pages, e.g. 10000,100000")
    parser.add_argument("--users", type=int, default=DEFAULT_USERS, help="users the pages are spread over")
    parser.add_argument("--facts", type=int, default=DEFAULT_FACTS, help="user facts per user (each also has a "
                        "profile of eight traits)")
    parser.add_argument("--queries", type=int, default=300, help="timed queries per size and path")
    parser.add_argument("--no-rpc", dest="rpc", action="store_false", help="skip the RPC measurement")
    parser.add_argument("--conversations", default="conv-26,conv-30")
    parser.add_argument("--ks", default="5,10,20")
    parser.add_argument("--stm", type=int, default=1, help="short-term capacity while ingesting LoCoMo")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-recall", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
