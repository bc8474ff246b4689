"""POST /v1/users/{user}/retrieve with the retrieval options (max_tokens, now, filters) through real HTTP:
the budget bounds the prompt, filters narrow what is found, a bad filter is a 422 naming it, and a tenant's
filters.assistant_id stays inside the tenant."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.apps.http.conftest import Api, turns

pytestmark = pytest.mark.integration

QUERY = {"query": "climbing marathon lasagna Lisbon novel"}


def _turns(start: int, reply: str, assistant_id: str) -> list[dict[str, Any]]:
    """turns() (all in March 2025) with the assistant's words marked, so its facts can be told apart."""
    return [{**t, "agent_response": f"{reply} {i}", "assistant_id": assistant_id}
            for i, t in enumerate(turns(40, reply.lower(), start))]


def _retrieve(c: httpx.Client, uid: str, **options: Any) -> dict[str, Any]:
    res = c.post(f"/v1/users/{uid}/retrieve", json={**QUERY, **options})
    assert res.status_code == 200, res.text
    return res.json()  # type: ignore[no-any-return]


def test_budget_time_and_filters_reach_retrieval_and_stay_in_the_tenant(api: Api, uid: str) -> None:
    # acme's assistant "coach" talks to acme's user; then the admin (who names stored ids) gives the same user
    # facts of *globex's* assistant "coach". Forty turns each, so each has persona batches of its own.
    with api.client("acme") as c:
        assert c.post(f"/v1/users/{uid}/turns", json=_turns(0, "Acmeown", "coach")).status_code == 202
    api.wait_idle(f"acme:{uid}")
    with api.client("*") as admin:
        res = admin.post(f"/v1/users/acme:{uid}/turns", json=_turns(40, "Globexonly", "globex:coach"))
        assert res.status_code == 202, res.text
    api.wait_idle(f"acme:{uid}")

    with api.client("acme") as c:
        # max_tokens bounds the prompt; without a budget the same context is longer than every bound tried.
        whole = _retrieve(c, uid, max_tokens=0)
        assert whole["pages"] and whole["short_term"]
        for budget in (150, 400):
            fitted = _retrieve(c, uid, max_tokens=budget)
            assert fitted["prompt_tokens"] <= budget < whole["prompt_tokens"], (budget, fitted["prompt_tokens"])

        # Every turn is in March 2025: since April leaves nothing, since March leaves what there was.
        assert _retrieve(c, uid, max_tokens=0, filters={"since": "2025-03-01"})["pages"]
        late = _retrieve(c, uid, max_tokens=0, filters={"since": "2025-04-01T00:00:00Z"})
        assert late["pages"] == [] and late["short_term"] == []
        # `now` reaches retrieval: "yesterday" asked on 3 March 2025 is searched within 2 March.
        for now, day in (("2025-03-03T12:00:00Z", "2025-03-02"), ("2025-03-11T12:00:00Z", "2025-03-10")):
            asked = _retrieve(c, uid, query="What did I do yesterday?", now=now, max_tokens=0)
            dated = {p["timestamp"][:10] for p in asked["pages"] if "date" in p["found_by"]}
            assert dated == {day}, (now, dated)

        for bad in ({"since": "not a date"}, {"until": 5}, {"assistant_id": "no spaces please"}):
            res = c.post(f"/v1/users/{uid}/retrieve", json={**QUERY, "filters": bad})
            assert res.status_code == 422, (bad, res.text)
            assert [d["field"] for d in res.json()["detail"]] == ["body.filters"], res.text
            assert f"filters.{next(iter(bad))}" in res.text, res.text

        # A tenant's filters.assistant_id is one of its own assistants: "globex:coach" is acme's
        # "globex:coach", which has said nothing, never globex's coach; "coach" is acme's own.
        foreign = c.post(f"/v1/users/{uid}/retrieve", json={**QUERY, "max_tokens": 0,
                                                            "filters": {"assistant_id": "globex:coach"}})
        assert foreign.status_code == 200, foreign.text
        assert "Globexonly" not in foreign.text and foreign.json()["assistant_knowledge"] == []
        assert foreign.json()["pages"] == []
        own = _retrieve(c, uid, max_tokens=0, filters={"assistant_id": "coach"})
        facts = own["assistant_knowledge"]
        assert facts and all("Acmeown" in f["text"] for f in facts), facts
        assert own["pages"] and all(p["agent_response"].startswith("Acmeown") for p in own["pages"])

    # Control: facts of globex's coach exist for this user; the admin, naming it by its stored id, reads them.
    with api.client("*") as admin:
        theirs = _retrieve(admin, f"acme:{uid}", max_tokens=0, assistant_id="globex:coach")
        # (Their words may be acme's: a persona batch that spans both assistants files its assistant facts
        # under its last page's assistant.)
        assert theirs["assistant_knowledge"]
