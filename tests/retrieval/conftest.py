"""Fixtures of the retrieval tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def retrieve_local(runtime):  # noqa: ANN001, ANN201
    """In-process retrieval on the session's runtime (the worker's store), with the public signature."""
    from memoryos_workers.in_process import retrieve

    return lambda *args, **kwargs: retrieve(*args, runtime=runtime, **kwargs)
