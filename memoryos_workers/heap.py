"""A serving process's start-up heap, frozen once it is warm so full garbage collections skip it.

A full (generation 2) collection walks every container object the process holds. Once the model, the store
adapters, the date parser's language data and the libraries are loaded, a serving process holds about 120k
of them for as long as it runs, and each full collection walked them all inside whichever request it
interrupted: on the latency benchmark's store (100k pages, 1,000 users; 60603cd) one collection per 300
retrievals, 48-50 ms, in the page stage of the request it hit, against a p50 of about 10 ms. After
`gc.freeze()` they sit in a permanent generation the collector skips; full collections then took 3-7 ms.

Called where our own processes finish warming up (`memoryos serve`, the Celery worker's start), not by the
library's `open_memory`: there a host application's own objects would be frozen too, and a cycle of them
dropped later would never be collected.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger("memoryos.heap")


def freeze_startup_heap() -> int:
    """Collects what start-up left as garbage, then freezes what remains; returns how many objects are frozen."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("start-up heap frozen: %d objects left out of full garbage collections", frozen)
    return frozen
