"""What a chat backend imports: publish turns, retrieve memory context, wait for background work, the wire
contract.

Light by design (redis, celery's client side, schemas): it never imports memoryos_workers.
"""

from producers.errors import FactsBusy, MemoryOSError, RedisUnavailableError
from producers.pending import PendingWork, UserStatus, wait_idle
from producers.publish import Publisher, configure, default_publisher, publish_turn, publish_turns
from producers.replication import ReplicationError
from producers.retrieve import RetrievalClient, RetrievalTimeout, retrieve
from producers.wire.keys import Keys, UserKeys
from schemas.turns import Page, Turn

__all__ = [
    "FactsBusy",
    "Keys",
    "MemoryOSError",
    "Page",
    "PendingWork",
    "Publisher",
    "RedisUnavailableError",
    "ReplicationError",
    "RetrievalClient",
    "RetrievalTimeout",
    "Turn",
    "UserKeys",
    "UserStatus",
    "configure",
    "default_publisher",
    "publish_turn",
    "publish_turns",
    "retrieve",
    "wait_idle",
]
