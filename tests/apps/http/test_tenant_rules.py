"""The tenant namespace and the keyring, without a server: no id one tenant can write maps into another
tenant's namespace; keys never appear in errors; sessions and form tokens cannot be forged."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memoryos_workers.apps.http.auth import ForeignIdError, Keyring, Principal
from schemas.settings import Settings
from schemas.tenants import parse_api_keys, scoped_id, unscoped_id
from schemas.turns import ID_PATTERN, check_id

TENANTS = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,31}\Z")
IDS = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,100}\Z")


@given(TENANTS, TENANTS, IDS, IDS)
def test_scoped_ids_never_collide_across_tenants(a: str, b: str, x: str, y: str) -> None:
    stored = scoped_id(a, "user_id", x)
    check_id("user_id", stored)  # a stored id obeys the one id rule
    assert unscoped_id(a, stored) == x
    if a != b:  # tenant names hold no ":", so the first ":" ends the tenant: nothing crosses over
        assert stored != scoped_id(b, "user_id", y)
        assert unscoped_id(b, stored) is None


def test_look_alike_ids_stay_in_their_tenant() -> None:
    assert scoped_id("acme", "user_id", "globex:u1") == "acme:globex:u1"
    assert unscoped_id("globex", "acme:globex:u1") is None
    assert unscoped_id("acme", "acme:") is None and unscoped_id("acme", "acmex:u1") is None
    assert scoped_id("*", "user_id", "globex:u1") == "globex:u1"  # the admin names stored ids
    with pytest.raises(ValueError, match="user_id: at most 123 characters for tenant 'acme'"):
        scoped_id("acme", "user_id", "x" * 124)
    with pytest.raises(ValueError, match="^user_id: "):
        scoped_id("acme", "user_id", "bad id")
    with pytest.raises(ValueError, match="^user_id: "):
        scoped_id("acme", "user_id", "u1\n")


def test_key_errors_never_quote_a_key() -> None:
    secret = "s3cr3t-key-value"
    for text in (f"{secret}=ac:me", f"{secret}", f"{secret}=acme,{secret}=globex", "short=acme", f"{secret} x=acme"):
        with pytest.raises(ValueError) as caught:
            parse_api_keys(text)
        assert secret not in str(caught.value) and "short" not in str(caught.value)
    with pytest.raises(ValueError) as caught:
        Settings(api_keys=f"{secret}=a:b")
    assert secret not in str(caught.value)
    assert parse_api_keys(f" {secret}=acme , other-key-1=* ") == {secret: "acme", "other-key-1": "*"}
    assert ID_PATTERN  # the rule scoped ids are checked against


def test_keyring_sessions_and_form_tokens() -> None:
    ring = Keyring({"acme-key-00001": "acme", "globex-key-0002": "globex"}, "default_assistant")
    assert ring.principal("acme-key-00001") == Principal("acme", "default_assistant")
    assert ring.principal("acme-key-00002") is None and ring.principal("") is None
    cookie = ring.session_for("globex-key-0002", now=1000.0)
    assert cookie is not None and "globex-key" not in cookie
    assert ring.from_session(cookie, now=1001.0) == Principal("globex", "default_assistant")
    assert ring.from_session(cookie, now=1000.0 + 13 * 3600) is None  # expired
    key_id, expires, mac = cookie.split(".")
    assert ring.from_session(f"{key_id}.{int(expires) + 3600}.{mac}", now=1001.0) is None  # extended: refused
    assert ring.from_session(f"{key_id}.{expires}.{'0' * len(mac)}", now=1001.0) is None
    assert Keyring({"acme-key-00001": "acme"}, "d").from_session(cookie, now=1001.0) is None  # key revoked


def test_outward_refuses_a_foreign_id() -> None:
    acme = Principal("acme", "default_assistant")
    assert acme.outward({"user_id": "acme:u1", "pages": [{"assistant_id": "acme:bot"}]}) == {
        "user_id": "u1", "pages": [{"assistant_id": "bot"}]}
    with pytest.raises(ForeignIdError):
        acme.outward({"items": [{"user_id": "globex:u1"}]})
    assert acme.outward({"user_id": "acme:u1", "assistant_id": "globex:bot"}) == {"user_id": "u1", "assistant_id": None}
    assert acme.assistant(None) == "acme:default_assistant"
