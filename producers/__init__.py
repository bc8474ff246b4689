"""What a chat backend imports: publish turns, retrieve memory context, wait for background work, the wire
contract.

Light by design (redis, celery's client side, schemas): it never imports memoryos_workers.
"""

from schemas.turns import Page, Turn

from .errors import MemoryOSError, RedisUnavailableError
from .keys import Keys, UserKeys
from .pending import PendingWork, UserStatus, wait_idle
from .publish import Publisher, configure, default_publisher, publish_turn, publish_turns
from .retrieve import RetrievalClient, RetrievalTimeout, retrieve

__all__ = [
    "Keys",
    "MemoryOSError",
    "Page",
    "PendingWork",
    "Publisher",
    "RedisUnavailableError",
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
