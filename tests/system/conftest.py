"""Fixtures of the system tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from memoryos_workers.testing.rabbitmq import Vhost, unavailable


@pytest.fixture
def vhost() -> Iterator[Vhost]:
    """A RabbitMQ virtual host of the test's own on the machine's broker, deleted afterwards; the test is
    skipped, saying why, when no RabbitMQ answers."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    host = Vhost().create()
    try:
        yield host
    finally:
        host.delete()
