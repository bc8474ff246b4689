"""Tenants: API keys name a tenant, and a tenant's user and assistant ids live in its own namespace.

The one rule, applied wherever a tenant's request names an id (the HTTP API, MCP over HTTP): the
stored id is `<tenant>:<id>`. A tenant name never contains the separator, so `acme:` prefixes exactly
acme's ids and no id a tenant can write maps into another tenant's namespace (acme's `globex:u1` is
stored as `acme:globex:u1`). The admin tenant (`*`) names stored ids as they are.

Stored ids still obey `schemas.turns.check_id` (`:` is in its alphabet), so everything behind the
API (Redis keys, vector payloads, the workers) needs no notion of tenants.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from schemas.turns import check_id

ADMIN = "*"  # the tenant of a key that may see every stored id
SEPARATOR = ":"
TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"
_TENANT = re.compile(TENANT_PATTERN)
MAX_ID = 128  # schemas.turns.ID_PATTERN's length
MIN_KEY_CHARS = 8


def check_tenant(name: str) -> str:
    if name != ADMIN and not _TENANT.fullmatch(name):
        raise ValueError(
            f"tenant {name[:40]!r}: letters, digits, _ and -, at most 32, starting with a letter or digit "
            f"(or {ADMIN} for an admin key that sees every tenant)"
        )
    return name


def parse_api_keys(text: str) -> dict[str, str]:
    """`key1=acme,key2=globex,key3=*` as {key: tenant}. Errors say which entry is wrong by position,
    never by quoting a key."""
    keys: dict[str, str] = {}
    for index, entry in enumerate((e.strip() for e in text.split(",")), start=1):
        if not entry:
            continue
        key, sep, tenant = entry.rpartition("=")
        key, tenant = key.strip(), tenant.strip()
        if not sep or not key:
            raise ValueError(f"MEMORYOS_API_KEYS entry {index}: expected KEY=TENANT (e.g. 'k3y...=acme')")
        if len(key) < MIN_KEY_CHARS or any(ch.isspace() for ch in key):
            raise ValueError(
                f"MEMORYOS_API_KEYS entry {index}: a key needs at least {MIN_KEY_CHARS} characters and no spaces "
                "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        if key in keys:
            raise ValueError(f"MEMORYOS_API_KEYS entry {index}: the same key appears twice")
        try:
            keys[key] = check_tenant(tenant)
        except ValueError as exc:
            raise ValueError(f"MEMORYOS_API_KEYS entry {index}: {exc}") from None
    return keys


def tenants(keys: Mapping[str, str]) -> set[str]:
    return set(keys.values())


def prefix(tenant: str) -> str:
    return tenant + SEPARATOR


def scoped_id(tenant: str, field: str, value: object) -> str:
    """The stored id for a tenant's `value`; ValueError naming `field` when it is not a valid id or
    would not fit once prefixed."""
    check_id(field, value)
    assert isinstance(value, str)  # check_id accepted it
    if tenant == ADMIN:
        return value
    room = MAX_ID - len(prefix(tenant))
    if len(value) > room:
        raise ValueError(f"{field}: at most {room} characters for tenant {tenant!r}, got {len(value)}")
    return prefix(tenant) + value


def unscoped_id(tenant: str, stored: str) -> str | None:
    """The id a tenant knows a stored id by, or None when it is not the tenant's."""
    if tenant == ADMIN:
        return stored
    head = prefix(tenant)
    return stored[len(head):] if stored.startswith(head) and len(stored) > len(head) else None
