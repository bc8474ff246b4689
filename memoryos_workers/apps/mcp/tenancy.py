"""Keys and tenants for MCP over HTTP: the HTTP API's keys (MEMORYOS_API_KEYS) and its namespace rule
(apps/http/auth: `Keyring`, `Principal`, over schemas/tenants), so a key reaches the same users through
either door, and no call of one tenant names, reads or writes another's.

- HTTP with keys: every request needs `Authorization: Bearer KEY` (401 before the MCP session sees it);
  a tool's `user_id` (default MEMORYOS_USER_ID) and the assistant (MEMORYOS_ASSISTANT_ID) are the
  tenant's own, and answers name them as the tenant knows them.
- HTTP without keys: only on a loopback address, as before (anyone who can connect can read and write
  every user's memory, which the log says); on any other address the server refuses to start.
- stdio: the client started the server itself: no keys, ids as given.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from memoryos_workers.apps.http.auth import Keyring, NoKeysError, Principal
from memoryos_workers.apps.mcp.sdk import ToolError
from schemas.settings import Settings

log = logging.getLogger("memoryos.mcp")


def keyring_for(settings: Settings, host: str) -> Keyring | None:
    """The keys an HTTP server on `host` checks; None (no check) only on a loopback address."""
    keys = settings.tenant_keys()
    if keys:
        return Keyring(keys, settings.assistant_id)
    if not _loopback(host):
        raise NoKeysError(
            f"refusing to serve MCP on {host} without keys: anyone who can connect could read and write every "
            "user's memory. Set MEMORYOS_API_KEYS (KEY=TENANT pairs, as for `memoryos serve`) or listen on "
            "127.0.0.1"
        )
    log.warning("MEMORYOS_API_KEYS is not set: MCP over HTTP on %s serves every user's memory to anyone who can "
                "connect to this machine's loopback address", host)
    return None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _token(header: str) -> str | None:
    kind, _, token = header.partition(" ")
    return token.strip() if kind.lower() == "bearer" and token.strip() else None


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return _token(value.decode("latin-1"))
    return None


class RequireKey:
    """401 for an HTTP request without a valid key, before the MCP transport reads it."""

    def __init__(self, app: ASGIApp, keyring: Keyring) -> None:
        self.app = app
        self.keyring = keyring

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _bearer(scope) if scope["type"] == "http" else None
        if scope["type"] == "http" and (token is None or self.keyring.principal(token) is None):
            body = json.dumps({"error": "a valid API key is required: send 'Authorization: Bearer KEY' "
                                        "(keys are set in MEMORYOS_API_KEYS)"}).encode()
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


class Tenancy:
    """What a tool call may name: resolved from the HTTP request that carried it."""

    def __init__(self, keyring: Keyring | None = None) -> None:
        self.keyring = keyring

    def principal(self, ctx: Any) -> Principal | None:
        try:
            request = ctx.request_context.request  # the HTTP request that carried the call; None on stdio
        except (AttributeError, ValueError):
            request = None
        if self.keyring is None or request is None:
            return None  # stdio, or HTTP on loopback without keys
        token = _token(request.headers.get("authorization", ""))
        principal = self.keyring.principal(token) if token else None
        if principal is None:  # RequireKey refused it already; never serve a call without its tenant
            raise ToolError("a valid API key is required")
        return principal

    @staticmethod
    def ids(principal: Principal | None, user_id: str | None) -> tuple[str | None, str | None]:
        """(user, assistant) to open the memory for: the tenant's own, or as given without a tenant."""
        if principal is None:
            return user_id, None
        from memoryos_workers.apps.mcp.arguments import _as_tool_error
        from schemas.settings import get_settings

        user = _as_tool_error(lambda: principal.user(user_id or get_settings().user_id))
        return user, principal.assistant(None)

    @staticmethod
    def outward(principal: Principal | None, result: dict[str, Any]) -> dict[str, Any]:
        return result if principal is None else principal.outward(result)  # type: ignore[no-any-return]
