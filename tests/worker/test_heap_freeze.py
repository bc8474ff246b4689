"""Which processes freeze their start-up heap (memoryos_workers/heap.py): a worker that owns its process and
`memoryos serve` do; a worker embedded in another application's process does not, since a cycle of the host's
frozen objects dropped later would never be collected."""

from __future__ import annotations

import gc
from types import SimpleNamespace
from typing import Any

import pytest

from memoryos_workers.heap import freeze_startup_heap
from memoryos_workers.worker import tasks
from memoryos_workers.worker.embedded import _ReadyWorker


@pytest.fixture
def freezes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    runtime = SimpleNamespace(settings=SimpleNamespace(embedded=True, qdrant_url=None, data_dir="/tmp/x"),
                              warm_up=lambda: calls.append(0))
    monkeypatch.setattr(tasks, "get_runtime", lambda: runtime)
    monkeypatch.setattr(tasks, "freeze_startup_heap", lambda: calls.append(1) or 0)
    return calls


def test_a_worker_that_owns_its_process_freezes_once_warm(freezes: list[int]) -> None:
    owner: Any = SimpleNamespace(controller=SimpleNamespace())  # celery's WorkController: no owns_process
    tasks._warm_up(sender=owner)
    assert freezes == [0, 1]  # warmed up, then frozen


def test_a_worker_embedded_in_an_application_does_not_freeze_its_host(freezes: list[int]) -> None:
    embedded: Any = SimpleNamespace(controller=SimpleNamespace(owns_process=_ReadyWorker.owns_process))
    tasks._warm_up(sender=embedded)
    assert freezes == [0]


def test_freezing_leaves_what_was_loaded_out_of_full_collections() -> None:
    before = gc.get_freeze_count()
    loaded = [[i] for i in range(1000)]  # containers the collector tracks
    try:
        frozen = freeze_startup_heap()
        assert frozen >= before + len(loaded)
        tracked = {id(o) for o in gc.get_objects()}
        assert not any(id(o) in tracked for o in loaded)  # a full collection no longer walks them
    finally:
        gc.unfreeze()
