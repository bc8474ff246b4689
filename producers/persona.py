"""Long-term persona reads over RPC, for processes that do not own the vector store."""

from __future__ import annotations

import json

from producers.publish import Publisher
from producers.retrieve import client_for
from producers.wire.contract import READ_PERSONA_TASK
from schemas.persona import KnowledgeEntry, UserProfile
from schemas.turns import check_id


def get_user_profile(user_id: str, *, timeout: float | None = None, publisher: Publisher | None = None,
                     ) -> UserProfile | None:
    check_id("user_id", user_id)
    value = json.loads(client_for(publisher).call(READ_PERSONA_TASK, ["profile", user_id, None], {}, timeout=timeout))
    return UserProfile.model_validate(value) if value else None


def get_user_knowledge(user_id: str, *, timeout: float | None = None, publisher: Publisher | None = None,
                       ) -> list[KnowledgeEntry]:
    check_id("user_id", user_id)
    value = json.loads(client_for(publisher).call(READ_PERSONA_TASK, ["user", user_id, None], {}, timeout=timeout))
    return [KnowledgeEntry.model_validate(v) for v in value]


def get_assistant_knowledge(assistant_id: str, user_id: str | None = None, *, timeout: float | None = None,
                            publisher: Publisher | None = None) -> list[KnowledgeEntry]:
    """Facts the assistant may use with `user_id` (its own scope plus shared ones), or only the shared
    ones without a user: facts drawn from one user's dialogue never reach another by default."""
    check_id("assistant_id", assistant_id)
    check_id("user_id", user_id, required=False)
    answer = client_for(publisher).call(READ_PERSONA_TASK, ["assistant", user_id, assistant_id], {}, timeout=timeout)
    value = json.loads(answer)
    return [KnowledgeEntry.model_validate(v) for v in value]
