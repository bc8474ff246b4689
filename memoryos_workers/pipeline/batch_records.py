"""Writes on one user's batches while a worker holds the user's lock: the one place that knows the fencing
token. Every write goes through a fenced script that checks the token (and that the batch still exists:
a forgotten user's batch is never recreated) and raises `LockLost` when another worker took over, so the
caller stops writing.

Promotion and mid-term analysis both write through it; "store the pages before any LLM call" is said once,
here (`store_pages`).
"""

from __future__ import annotations

from typing import Any

from memoryos_workers.memory.pages import PageStore
from producers.wire.keys import UserKeys
from producers.wire.scripts import Scripts
from producers.wire.state import Batch


class LockLost(Exception):
    """Another worker took over the user's lock (or the user was forgotten); this one must stop writing."""


class BatchRecords:
    def __init__(self, scripts: Scripts, keys: UserKeys, token: str, pages: PageStore) -> None:
        self.scripts = scripts
        self.keys = keys
        self.token = token
        self.pages = pages

    def record(self, batch_id: str, **fields: Any) -> None:
        """Progress on a batch (its state, its analysis, ...), so a retried task resumes there."""
        args: list[Any] = [self.token, batch_id]
        for name, value in fields.items():
            args += [name, value]
        self._fenced(self.scripts.batch_update(keys=self.keys.script_keys(), args=args))

    def store_pages(self, batch: Batch) -> None:
        """Pages are stored before any LLM call, so an LLM outage never makes a turn unretrievable.
        Idempotent: deterministic point ids, and a stored batch is not stored again."""
        if batch.state == "pending":
            self.pages.upsert(batch.pages, batch.batch_id)
            self.record(batch.batch_id, state="stored")

    def apply_segments(self, batch_id: str, args: list[Any]) -> None:
        """Once per batch: the segments' lengths, access times and heat (segment_apply.lua's arguments
        after the token and the batch id)."""
        self._fenced(self.scripts.segment_apply(keys=self.keys.script_keys(), args=[self.token, batch_id, *args]))

    def done(self, batch_id: str) -> None:
        """The finished batch leaves the head of the queue (a second call finds it gone)."""
        self._fenced(self.scripts.batch_done(keys=self.keys.script_keys(), args=[self.token, batch_id]))

    def failed(self, batch_id: str, error: str, not_before: float, max_attempts: int, now: float) -> tuple[int, str]:
        """A failed attempt: (attempts, "retry") with the retry scheduled, or (attempts, "dead")."""
        attempts, outcome = self.scripts.batch_failed(
            keys=self.keys.script_keys(), args=[self.token, batch_id, error, repr(not_before), max_attempts, now]
        )
        self._fenced(attempts)
        return int(attempts), str(outcome)

    @staticmethod
    def _fenced(result: Any) -> None:
        if int(result) == -1:
            raise LockLost()
