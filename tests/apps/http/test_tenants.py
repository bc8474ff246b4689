"""Tenant isolation on every endpoint: acme and globex each have a `u1`, and each names ids that look like
the other's stored ids (`globex:u1` from acme, `acme:u1` from globex). Nothing one tenant can send
reads, lists, replays or deletes the other's data; the admin key sees both."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest

from memoryos_workers.testing.responders import default_responder
from tests.apps.http.conftest import Api, turns
from tests.apps.http.test_api import _fail_persona_of
from tests.conftest import FAKE_LLM

pytestmark = pytest.mark.integration


def _stored(export_text: str) -> list[dict[str, Any]]:
    """Export records without heat, which moves with the clock (recency)."""
    return [{k: v for k, v in json.loads(line).items() if k != "heat"} for line in export_text.splitlines()]


@pytest.fixture(scope="module")
def world(api: Api) -> dict[str, Any]:
    """Each tenant's users with a secret word each; all promoted, personas built, one dead letter each."""
    run = uuid.uuid4().hex[:6]
    u1 = f"u1-{run}"
    users = {
        "acme": {u1: "acmesecret", f"globex:{u1}": "acmelookalike"},
        "globex": {u1: "globexsecret", f"acme:{u1}": "globexlookalike"},
    }
    FAKE_LLM.responder = _fail_persona_of("deadletterme")
    try:
        for tenant, named in users.items():
            with api.client(tenant) as c:
                for user, secret in named.items():
                    res = c.post(f"/v1/users/{user}/turns", json=turns(20, secret))
                    assert res.status_code == 202, res.text
                dead = c.post(f"/v1/users/dead-{run}/turns", json=turns(20, "deadletterme"))
                assert dead.status_code == 202
        for tenant, named in users.items():
            for user in [*named, f"dead-{run}"]:
                api.wait_idle(f"{tenant}:{user}")
        deadline = time.monotonic() + 60
        for tenant in users:
            with api.client(tenant) as c:
                while not c.get("/v1/dead-letters").json()["dead_letters"]:
                    assert time.monotonic() < deadline, f"no dead letter for {tenant}"
                    time.sleep(0.5)
    finally:
        FAKE_LLM.responder = default_responder
    return {"u1": u1, "users": users, "dead": f"dead-{run}", "run": run}


SECRETS = {"acme": ("acmesecret", "acmelookalike"), "globex": ("globexsecret", "globexlookalike")}


def _others(tenant: str) -> tuple[str, ...]:
    return SECRETS["globex" if tenant == "acme" else "acme"]


@pytest.mark.parametrize("tenant", ["acme", "globex"])
def test_reads_see_only_the_tenants_own_data(api: Api, world: dict[str, Any], tenant: str) -> None:
    with api.client(tenant) as c:
        for user, secret in world["users"][tenant].items():
            answers = {
                "retrieve": c.post(f"/v1/users/{user}/retrieve", json={"query": f"{secret} marathon climbing"}),
                "profile": c.get(f"/v1/users/{user}/profile"),
                "inspect": c.get(f"/v1/users/{user}"),
                "export": c.get(f"/v1/users/{user}/export"),
            }
            for name, res in answers.items():
                assert res.status_code == 200, (name, res.text)
                assert secret in res.text, name
                for other in _others(tenant):
                    assert other not in res.text, (name, user)
                assert f"{tenant}:" not in res.text, name  # stored ids never leave
            context = answers["retrieve"].json()
            assert context["user_id"] == user
            assert {p["user_id"] for p in context["short_term"]} == {user}
            records = [json.loads(line) for line in answers["export"].text.splitlines()]
            assert {r["user_id"] for r in records if "user_id" in r} == {user}
        run = world["run"]  # other tests of this server add users of their own
        listed = c.get("/v1/users", params={"limit": 1000}).json()["users"]
        assert {u for u in listed if run in u} == {*world["users"][tenant], world["dead"]}
        # Paging can never step out of the tenant's range, whatever `after` says.
        assert c.get("/v1/users", params={"after": "0", "limit": 1000}).json()["users"] == sorted(listed)
        assert c.get("/v1/users", params={"after": "zzzz"}).json()["users"] == []
        dead = c.get("/v1/dead-letters").json()["dead_letters"]
        assert {d["user_id"] for d in dead if run in d["user_id"]} == {world["dead"]}
        stats = c.get("/v1/stats").json()
        assert not any(isinstance(v, str) for v in stats.values())  # counts only, no ids


def test_a_tenant_cannot_reach_the_other_by_naming_stored_ids(api: Api, world: dict[str, Any]) -> None:
    u1 = world["u1"]
    with api.client("acme") as acme:
        # acme's "globex:u1" is acme's own look-alike user, never globex's u1.
        looked = acme.get(f"/v1/users/globex:{u1}/export").text
        assert "acmelookalike" in looked and "globexsecret" not in looked
        # An id that would need a second namespace does not fit, and an id of another form is invalid.
        assert acme.get(f"/v1/users/{'x' * 124}/export").status_code == 422
        assert acme.get("/v1/dead-letters", params={"user_id": f"globex:{u1}"}).json()["dead_letters"] == []


def test_facts_are_listed_added_corrected_pinned_and_deleted_within_the_tenant(api: Api, world: dict[str, Any],
                                                                             ) -> None:
    """Each answer names the fact_id; each change is recorded with the key's tenant; a fact of the other
    tenant's u1 cannot be read, corrected or deleted by naming its fact_id."""
    u1 = world["u1"]
    with api.client("acme") as acme, api.client("globex") as globex:
        added = acme.post(f"/v1/users/{u1}/facts", json={"text": "Ana lives in Porto.", "pinned": True})
        assert added.status_code == 200, added.text
        fact_id = added.json()["fact_id"]
        assert added.json()["fact"]["pinned"] and added.json()["fact"]["origin_by"] == "api-key:acme"
        fixed = acme.patch(f"/v1/users/{u1}/facts/{fact_id}", json={"text": "Ana lives in Braga."})
        assert fixed.status_code == 200, fixed.text
        new_id = fixed.json()["fact_id"]
        assert new_id != fact_id and fixed.json()["fact"]["pinned"], "the correction keeps the pin"
        now = acme.get(f"/v1/users/{u1}/facts").json()["facts"]
        every = acme.get(f"/v1/users/{u1}/facts", params={"history": "true"}).json()["facts"]
        assert new_id in {f["fact_id"] for f in now} and fact_id not in {f["fact_id"] for f in now}
        old = next(f for f in every if f["fact_id"] == fact_id)
        assert old["superseded_by"] == new_id and old["valid_until"]
        assert [(c["action"], c["by"]) for c in old["changes"]][-1] == ("corrected", "api-key:acme")
        assert '"superseded_by"' in acme.get(f"/v1/users/{u1}/export").text  # exported with its history
        # globex's u1 is another user: acme's fact ids are not found there.
        for res in (globex.patch(f"/v1/users/{u1}/facts/{new_id}", json={"pinned": False}),
                    globex.delete(f"/v1/users/{u1}/facts/{new_id}")):
            assert res.status_code == 404, res.text
        assert "Braga" not in globex.get(f"/v1/users/{u1}/facts", params={"history": "true"}).text
        assert globex.get(f"/v1/users/acme:{u1}/facts").status_code in (200, 404)
        assert "Braga" not in globex.get(f"/v1/users/acme:{u1}/facts").text
        assert acme.patch(f"/v1/users/{u1}/facts/nope", json={"pinned": True}).status_code == 422
        assert acme.patch(f"/v1/users/{u1}/facts/{new_id}", json={}).status_code == 422
        assert acme.post(f"/v1/users/{u1}/facts", json={"text": "  "}).status_code == 422
        gone = acme.delete(f"/v1/users/{u1}/facts/{new_id}")
        assert gone.status_code == 200 and gone.json()["fact_id"] == new_id
        assert acme.delete(f"/v1/users/{u1}/facts/{new_id}").status_code == 404
        exported = [json.loads(line) for line in acme.get(f"/v1/users/{u1}/export").text.splitlines()]
        [deleted] = [r for r in exported if r["type"] == "fact" and r.get("fact_id") == new_id]
        assert deleted["status"] == "deleted" and not deleted["text"] and "Braga" not in json.dumps(exported)
        assert (deleted["changes"][-1]["action"], deleted["changes"][-1]["by"]) == ("deleted", "api-key:acme")


def test_replay_and_delete_stay_in_the_tenant(api: Api, world: dict[str, Any]) -> None:
    u1, dead = world["u1"], world["dead"]
    with api.client("acme") as acme, api.client("globex") as globex, api.client("*") as admin:
        everyone = admin.get("/v1/users", params={"limit": 1000}).json()["users"]
        assert {f"acme:{u1}", f"globex:{u1}", f"acme:globex:{u1}", f"globex:acme:{u1}"} <= set(everyone)
        admin_dead = {d["user_id"] for d in admin.get("/v1/dead-letters").json()["dead_letters"]}
        assert {f"acme:{dead}", f"globex:{dead}"} <= admin_dead

        replayed = acme.post("/v1/dead-letters/replay").json()["replayed"]
        assert dead in replayed and all(not u.startswith("globex") for u in replayed)
        assert dead in {d["user_id"] for d in globex.get("/v1/dead-letters").json()["dead_letters"]}

        # acme forgets its own "u1" and its look-alike "globex:u1": globex's u1 and acme:u1 stay whole.
        before = {u: _stored(globex.get(f"/v1/users/{u}/export").text) for u in (u1, f"acme:{u1}")}
        for user in (u1, f"globex:{u1}"):
            gone = acme.delete(f"/v1/users/{user}")
            assert gone.status_code == 200 and gone.json()["removed"]["short_term"] == 10
            assert acme.get(f"/v1/users/{user}/export").status_code == 404
        for user, records in before.items():
            assert records and _stored(globex.get(f"/v1/users/{user}/export").text) == records
        listed = globex.get("/v1/users", params={"limit": 1000}).json()["users"]
        assert {u for u in listed if world["run"] in u} == {u1, f"acme:{u1}", dead}
        assert f"acme:{u1}" not in admin.get("/v1/users", params={"limit": 1000}).json()["users"]


def test_an_unknown_key_sees_nothing(api: Api, world: dict[str, Any]) -> None:
    with httpx.Client(base_url=api.url, headers={"Authorization": "Bearer globex-test-key-0003"}) as c:
        assert c.get("/v1/users").status_code == 401
        assert c.get(f"/v1/users/{world['u1']}/export").status_code == 401
