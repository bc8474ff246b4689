"""Celery's broker, apart from memory when MEMORYOS_BROKER_URL says so.

Unset, the broker is the memory Redis (MEMORYOS_REDIS_URL), exactly as before. `amqp://` names RabbitMQ:
the same queues and routing (one direct exchange per queue, named after it), declared as quorum queues
(replicated, so a RabbitMQ node lost takes no task with it), every publish confirmed by the broker
(publisher confirms) and tasks acknowledged after they ran (late acks, the worker's setting). Another
`redis://` is a Redis of its own for Celery. A Redis Cluster cannot be Celery's broker (kombu's Redis
transport needs its keys on one server), so memory on a cluster needs MEMORYOS_BROKER_URL.

Why a separate broker: the broker's traffic (every task twice, acks, the workers' polls) then no longer
shares memory Redis's one core, and RabbitMQ hands a dead worker's unacknowledged tasks to another worker
as soon as its connection drops, where the Redis transport waits out a visibility timeout. Either way the
truth stays in memory Redis (batch states and the sweep index), so a task lost with a broker is sent again.

Isolation: on Redis the deployment's key prefix reaches Celery's keys (global_keyprefix); on RabbitMQ give
each deployment its own virtual host (amqp://user:password@host:5672/VHOST).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kombu import Exchange, Queue

from producers.cluster import is_cluster_url
from producers.errors import redact_url
from producers.wire.keys import Keys
from schemas.settings import Settings

log = logging.getLogger("memoryos.broker")

AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
QUORUM = {"x-queue-type": "quorum"}


def broker_url(settings: Settings) -> str:
    """The URL Celery connects to: MEMORYOS_BROKER_URL, else the memory Redis (as before)."""
    url = settings.broker_url or settings.redis_url
    if is_cluster_url(url):
        raise ValueError(cluster_broker_message())
    return url


def cluster_broker_message() -> str:
    return ("MEMORYOS_REDIS_URL names a Redis Cluster, which cannot be Celery's broker: set MEMORYOS_BROKER_URL "
            "to RabbitMQ (amqp://user:password@host:5672/vhost) or to a plain redis:// server")


def is_amqp(url: str) -> bool:
    return url.split("://", 1)[0].lower() in AMQP_SCHEMES


def separate(settings: Settings) -> bool:
    """True when Celery's messages live somewhere else than memory."""
    return bool(settings.broker_url) and settings.broker_url != settings.redis_url


def queues(names: tuple[str, ...], settings: Settings) -> list[Queue]:
    """The queues both sides declare (a producer that declared a queue differently from the worker would
    make RabbitMQ refuse the worker's declaration): quorum queues on RabbitMQ, plain lists on Redis."""
    if not is_amqp(broker_url(settings)):
        return [Queue(name) for name in names]
    return [Queue(name, Exchange(name, type="direct"), routing_key=name, queue_arguments=QUORUM) for name in names]


def celery_broker_config(settings: Settings) -> dict[str, Any]:
    """The broker's part of the Celery configuration both sides share."""
    url = broker_url(settings)
    prefix = Keys(settings.key_prefix).celery
    if is_amqp(url):
        return {
            "broker_url": url,
            "result_backend": None,  # results are never read: RPC answers come through memory Redis
            "broker_transport_options": {
                "confirm_publish": True,  # a send returns once RabbitMQ has the message (publisher confirms)
            },
            "task_default_queue_type": "quorum",
            "task_create_missing_queue_type": "quorum",
            # AMQP heartbeats every 30 s: a connection to a RabbitMQ that vanished without closing it is
            # noticed within about a minute and the worker reconnects (Celery's default is 120 s).
            "broker_heartbeat": 30,
        }
    # Longer than the longest task plus any countdown, so acks_late never re-delivers live work.
    visibility = max(3600, int(settings.lock_ttl * 10))
    return {
        "broker_url": url,
        "result_backend": url,
        "broker_transport_options": {
            "global_keyprefix": prefix,
            "visibility_timeout": visibility,
            # kombu waits for ever on a socket by default: a Redis gone without closing the connection (a
            # failover, a dropped NAT entry) would hang a publish, or a worker closing its channel, for good.
            # BRPOP asks Redis for a reply within a second, so 30 s never cuts a live connection.
            "socket_timeout": 30,
            "socket_connect_timeout": 5,
        },
        "result_backend_transport_options": {"global_keyprefix": prefix},
    }


def queue_depths(settings: Settings, names: tuple[str, ...]) -> Callable[[], dict[str, int]] | None:
    """A reader of the messages waiting per queue when the broker is not the memory Redis (None when it is:
    the counters read them in their own round trip)."""
    if not separate(settings):
        return None
    url = broker_url(settings)
    prefix = Keys(settings.key_prefix).celery

    def read() -> dict[str, int]:
        try:
            return _amqp_depths(url, names) if is_amqp(url) else _redis_depths(url, prefix, names)
        except Exception as exc:  # noqa: BLE001 - a gauge missing is no reason to fail the whole stats read
            log.warning("could not read queue lengths from the broker %s (%s)", redact_url(url), type(exc).__name__)
            return {}

    return read


def _amqp_depths(url: str, names: tuple[str, ...]) -> dict[str, int]:
    """Ready messages per queue (a passive declare: it never creates a queue); 0 for a queue not declared yet."""
    from kombu import Connection

    out: dict[str, int] = {}
    with Connection(url, connect_timeout=3) as conn:
        for name in names:
            channel = conn.channel()
            try:
                out[name] = int(channel.queue_declare(queue=name, passive=True).message_count)
            except conn.channel_errors:
                out[name] = 0  # 404: no worker or producer declared it yet
            finally:
                try:
                    channel.close()
                except conn.connection_errors + conn.channel_errors:
                    pass
    return out


def _redis_depths(url: str, prefix: str, names: tuple[str, ...]) -> dict[str, int]:
    from producers.connection import redis_client

    client = redis_client(url)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.llen(prefix + name)
    return dict(zip(names, (int(n) for n in pipe.execute()), strict=True))


def describe(settings: Settings) -> str:
    """The broker for logs and errors, without its password."""
    return redact_url(broker_url(settings))
