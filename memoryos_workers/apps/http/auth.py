"""API keys and tenants: who a request is, and the one place its ids are mapped into its namespace.

A key arrives as `Authorization: Bearer KEY` (the inspector's pages use a signed session cookie made
from the key at login). Keys are compared in constant time, as SHA-256 digests, against every
configured key with no early exit, and they never reach a log line or an error message.

Every id a request names goes through `Principal.user` / `Principal.assistant` (schemas.tenants), and
every answer through `Principal.outward`, which maps stored ids back and refuses (a 500, never a leak)
to return a user id that is not the tenant's.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from schemas.tenants import ADMIN, prefix, scoped_id, unscoped_id

SESSION_COOKIE = "memoryos_ui"
SESSION_SECONDS = 12 * 3600


class NoKeysError(RuntimeError):
    """A server (the HTTP API, MCP over HTTP) would serve memory without MEMORYOS_API_KEYS where that is unsafe."""


class ForeignIdError(RuntimeError):
    """An answer held an id outside the tenant's namespace: a bug, answered with a 500, never sent."""


@dataclass(frozen=True)
class Principal:
    tenant: str
    default_assistant: str

    @property
    def admin(self) -> bool:
        return self.tenant == ADMIN

    @property
    def user_prefix(self) -> str:
        """What every stored id of this tenant starts with ("" for the admin)."""
        return "" if self.admin else prefix(self.tenant)

    def user(self, user_id: object, field: str = "user_id") -> str:
        """The stored id of a user this tenant names; ValueError naming the field."""
        return scoped_id(self.tenant, field, user_id)

    def assistant(self, assistant_id: object, field: str = "assistant_id") -> str:
        """The stored id of an assistant; without one, the deployment's default assistant *of this
        tenant*, so facts shared across an assistant's users never cross tenants."""
        return scoped_id(self.tenant, field, self.default_assistant if assistant_id is None else assistant_id)

    def filters(self, filters: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """Retrieval filters with an assistant id mapped to the tenant's stored one (the rest is checked by
        schemas.query.parse_filters)."""
        if not isinstance(filters, Mapping) or filters.get("assistant_id") is None:
            return filters
        return {**filters, "assistant_id": self.assistant(filters["assistant_id"], "filters.assistant_id")}

    def owns(self, stored_id: str) -> bool:
        return unscoped_id(self.tenant, stored_id) is not None

    def known_as(self, stored_id: str) -> str:
        external = unscoped_id(self.tenant, stored_id)
        if external is None:
            raise ForeignIdError(f"an answer for tenant {self.tenant!r} held an id of another namespace")
        return external

    def outward(self, value: Any) -> Any:
        """`value` (JSON-like) with every user_id and assistant_id mapped to the tenant's own ids. A user id
        of another namespace is a bug and raises; an assistant id of none of the tenant's (a turn a Python
        backend published with a bare assistant id) is only a label on the tenant's own data: null."""
        if self.admin:
            return value
        if isinstance(value, Mapping):
            return {k: self._field(k, v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.outward(v) for v in value]
        return value

    def _field(self, key: str, value: Any) -> Any:
        if key == "user_id" and isinstance(value, str):
            return self.known_as(value)
        if key == "assistant_id" and isinstance(value, str):
            return unscoped_id(self.tenant, value)
        return self.outward(value)


class Keyring:
    """The configured keys, held as digests."""

    def __init__(self, keys: Mapping[str, str], default_assistant: str) -> None:
        self._entries = [(_digest(key), tenant, key) for key, tenant in keys.items()]
        self.default_assistant = default_assistant

    def __bool__(self) -> bool:
        return bool(self._entries)

    def principal(self, presented: str) -> Principal | None:
        digest = _digest(presented)
        found: str | None = None
        for known, tenant, _key in self._entries:  # all of them: the time taken says nothing
            if hmac.compare_digest(known, digest):
                found = tenant
        return Principal(found, self.default_assistant) if found is not None else None

    # -- the inspector's session cookie: <key id>.<expiry>.<HMAC(key, ...)>, valid while the key is --
    def session_for(self, presented: str, now: float | None = None) -> str | None:
        digest = _digest(presented)
        for known, _tenant, key in self._entries:
            if hmac.compare_digest(known, digest):
                expires = int((time.time() if now is None else now) + SESSION_SECONDS)
                key_id = known.hex()[:16]
                return f"{key_id}.{expires}.{_mac(key, 'session', key_id, str(expires))}"
        return None

    def from_session(self, cookie: str | None, now: float | None = None) -> Principal | None:
        key, tenant = self._session_key(cookie, now)
        return Principal(tenant, self.default_assistant) if key is not None and tenant is not None else None

    def csrf_token(self, cookie: str) -> str:
        """Forms of the inspector carry this; it is bound to the session and worthless without it."""
        key, _tenant = self._session_key(cookie)
        return _mac(key, "csrf", cookie) if key is not None else ""

    def check_csrf(self, cookie: str | None, token: object) -> bool:
        expected = self.csrf_token(cookie) if cookie else ""
        return bool(expected) and isinstance(token, str) and hmac.compare_digest(expected, token)

    def _session_key(self, cookie: str | None, now: float | None = None) -> tuple[str | None, str | None]:
        parts = (cookie or "").split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            return None, None
        key_id, expires, mac = parts
        if int(expires) < (time.time() if now is None else now):
            return None, None
        found: tuple[str | None, str | None] = (None, None)
        for known, tenant, key in self._entries:
            if hmac.compare_digest(known.hex()[:16], key_id) and hmac.compare_digest(
                _mac(key, "session", key_id, expires), mac
            ):
                found = (key, tenant)
        return found


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def _mac(key: str, *parts: str) -> str:
    return hmac.new(key.encode("utf-8", "surrogatepass"), "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()


def keyring(request: Request) -> Keyring:
    return request.app.state.keyring  # type: ignore[no-any-return]


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


# Declares the bearer scheme in the OpenAPI document (and on each route that requires a key); the check
# itself is require_principal's, which reads the header as it always has.
BEARER = HTTPBearer(auto_error=False, scheme_name="apiKey", description="A key of MEMORYOS_API_KEYS.")


async def require_principal(
    request: Request, _declared: HTTPAuthorizationCredentials | None = Security(BEARER)
) -> Principal:
    """The FastAPI dependency of every /v1 route: 401 without a valid key. Async, because FastAPI runs a
    plain function dependency in a worker thread: a hop per request that cost more than the check."""
    token = bearer(request)
    principal = keyring(request).principal(token) if token else None
    if principal is None:
        raise HTTPException(
            status_code=401,
            detail="a valid API key is required: send 'Authorization: Bearer KEY' (keys are set in MEMORYOS_API_KEYS)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal
