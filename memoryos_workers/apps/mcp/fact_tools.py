"""MCP tools for a person correcting memory (the same operations as the HTTP /facts routes, through the
one memory interface): list_facts, add_fact, correct_fact, delete_fact. Every answer names the fact_id;
each change is recorded with who made it (the key's tenant over HTTP, "mcp" over stdio)."""

from __future__ import annotations

from typing import Any

from memoryos_workers.apps.mcp import arguments as check
from memoryos_workers.apps.mcp.arguments import in_thread
from memoryos_workers.apps.mcp.sdk import Context
from memoryos_workers.apps.mcp.service import MemoryService
from memoryos_workers.apps.mcp.tenancy import Tenancy
from schemas.persona import KnowledgeEntry

FACT_TOOLS = {"list_facts", "add_fact", "correct_fact", "delete_fact"}


def _fact(entry: KnowledgeEntry) -> dict[str, Any]:
    return {"fact_id": entry.fact_id, "text": entry.text, "status": entry.status, "held": entry.window(),
            "pinned": entry.pinned, "origin": entry.origin, "superseded_by": entry.superseded_by}


def register(server: Any, service: MemoryService, tenancy: Tenancy) -> None:
    """Adds the fact tools to `server`."""

    def who(principal: Any) -> str:
        return f"api-key:{principal.tenant}" if principal is not None else "mcp"

    async def run(ctx: Context | None, user_id: str | None, call: Any) -> dict[str, Any]:
        """`call(memory, user, by)` off the event loop, for the tenant's user (else the configured one)."""
        principal = tenancy.principal(ctx)
        uid, _ = tenancy.ids(principal, check.user_id(user_id))

        def work() -> dict[str, Any]:
            memory = service.memory()
            user = uid or memory.settings.user_id
            value = call(memory, user, who(principal))
            facts = {"facts": [_fact(e) for e in value]} if isinstance(value, list) else _fact(value)
            return {"status": "success", "user_id": user, **facts}

        return tenancy.outward(principal, await in_thread(work))

    @server.tool()
    async def list_facts(history: bool = False, user_id: str | None = None, ctx: Context | None = None,
                         ) -> dict[str, Any]:
        """The facts known about the user, each with its fact_id and since when it holds.

        Args:
            history: Also the facts no longer true (replaced or retired), with the window they held.
            user_id: The user; the server's configured user when omitted.
        """
        history = check.flag("history", history)
        return await run(ctx, user_id, lambda memory, user, by: memory.list_facts(user, history=history))

    @server.tool()
    async def add_fact(text: str, pinned: bool = False, user_id: str | None = None, ctx: Context | None = None,
                       ) -> dict[str, Any]:
        """Add a fact about the user, e.g. "Lea lives in Berlin.".

        Args:
            text: The fact, one self-contained sentence.
            pinned: A pinned fact is never replaced or retired by the background extraction.
            user_id: The user; the server's configured user when omitted.
        """
        text = check.text("text", text)
        pinned = check.flag("pinned", pinned)
        return await run(ctx, user_id, lambda memory, user, by: memory.add_fact(user, text, pinned=pinned, by=by))

    @server.tool()
    async def correct_fact(fact_id: str, text: str | None = None, pinned: bool | None = None,
                           user_id: str | None = None, ctx: Context | None = None) -> dict[str, Any]:
        """Correct a fact: new text replaces it (the old one is kept as history), or pin/unpin it.

        Args:
            fact_id: The fact's id, as list_facts names it.
            text: The corrected fact.
            pinned: Pin (true) or unpin (false) the fact.
            user_id: The user; the server's configured user when omitted.
        """
        text = None if text is None else check.text("text", text)
        pinned = None if pinned is None else check.flag("pinned", pinned)
        return await run(ctx, user_id, lambda memory, user, by: memory.correct_fact(
            user, fact_id, text=text, pinned=pinned, by=by))

    @server.tool()
    async def delete_fact(fact_id: str, user_id: str | None = None, ctx: Context | None = None) -> dict[str, Any]:
        """Delete a fact about the user.

        Args:
            fact_id: The fact's id, as list_facts names it.
            user_id: The user; the server's configured user when omitted.
        """
        return await run(ctx, user_id, lambda memory, user, by: memory.delete_fact(user, fact_id, by=by))
