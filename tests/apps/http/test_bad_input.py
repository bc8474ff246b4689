"""Bad input through real HTTP: each request gets its documented status (422 naming the field, 413 for a
body over a limit), never a 500, and nothing stored changes."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.apps.http.conftest import Api

pytestmark = pytest.mark.integration

OK = {"user_input": "hello", "agent_response": "hi"}
LONG = "x" * 2001  # the server runs with MEMORYOS_MAX_TEXT_CHARS=2000

# (body, field named in the 422) for POST /v1/users/{user}/turns
BAD_TURNS: list[tuple[Any, str]] = [
    ({"user_input": "", "agent_response": "  "}, "body"),
    ({"user_input": LONG, "agent_response": "hi"}, "body.user_input"),
    ({"user_input": "a\x00b", "agent_response": "hi"}, "body.user_input"),
    ({"user_input": "hi", "agent_response": 5}, "body.agent_response"),
    ({**OK, "metadata": "not an object"}, "body.metadata"),
    ({**OK, "metadata": {"k": "v" * 9000}}, "body.metadata"),
    ({**OK, "timestamp": "next tuesday"}, "body.timestamp"),
    ({**OK, "turn_id": "has space"}, "body.turn_id"),
    ({**OK, "turn_id": "x" * 129}, "body.turn_id"),
    ({**OK, "assistant_id": "../etc"}, "body.assistant_id"),
    ({**OK, "user_id": "someone-else"}, "body.user_id"),
    ({**OK, "colour": "blue"}, "body.colour"),
    ([OK, {"user_input": LONG, "agent_response": "x"}, OK], "body[1].user_input"),
    ([OK, "a string"], "body[1]"),
    ([], "body"),
    ("just a string", "body"),
    (42, "body"),
]
BAD_RETRIEVE: list[tuple[Any, str]] = [
    ({"query": ""}, "body.query"),
    ({"query": "   "}, "body.query"),
    ({"query": LONG}, "body.query"),
    ({"query": 7}, "body.query"),
    ({}, "body.query"),
    ({"query": "x", "top_k": 0}, "body.top_k"),
    ({"query": "x", "top_k": 101}, "body.top_k"),
    ({"query": "x", "top_k": "many"}, "body.top_k"),
    ({"query": "x", "assistant_id": "no spaces please"}, "body.assistant_id"),
    ({"query": "x", "filters_that_do_not_exist": 1}, "body.filters_that_do_not_exist"),
    ([1, 2], "body"),
]


def _fields(res: httpx.Response) -> list[str]:
    assert res.headers["content-type"].startswith("application/json"), res.text[:200]
    return [d["field"] for d in res.json()["detail"]]


def _state(c: httpx.Client, user: str) -> list[dict[str, Any]]:
    lines = c.get(f"/v1/users/{user}/export").text.splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "heat"} for line in lines]


def test_bad_input_is_refused_with_the_field_named_and_changes_nothing(api: Api, uid: str) -> None:
    with api.client() as c:
        assert c.post(f"/v1/users/{uid}/turns", json=[OK, {**OK, "turn_id": "keep-1"}]).status_code == 202
        before, users_before = _state(c, uid), c.get("/v1/users", params={"limit": 1000}).json()["users"]
        statuses = []

        for body, field in BAD_TURNS:
            res = c.post(f"/v1/users/{uid}/turns", json=body)
            statuses.append(res.status_code)
            assert res.status_code == 422, (body, res.text)
            assert field in _fields(res), (body, res.text)
            assert LONG not in res.text  # bad input is named, not echoed
        for raw, field in [(b"{not json", "body"), (b"\xff\xfe", "body"), (b"[" * 50_000, "body"), (b"", "body")]:
            res = c.post(f"/v1/users/{uid}/turns", content=raw, headers={"content-type": "application/json"})
            statuses.append(res.status_code)
            assert res.status_code == 422 and field in _fields(res), res.text

        for body, field in BAD_RETRIEVE:
            res = c.post(f"/v1/users/{uid}/retrieve", json=body)
            statuses.append(res.status_code)
            assert res.status_code == 422 and field in _fields(res), (body, res.text)

        for path in ("/v1/users/bad%20id/turns", f"/v1/users/{'y' * 124}/turns", "/v1/users/-leading-dash/turns",
                     "/v1/users/a%0A/turns"):
            res = c.post(path, json=OK)
            statuses.append(res.status_code)
            assert res.status_code == 422 and "path.user_id" in _fields(res), (path, res.text)
        for params, field in [({"limit": 0}, "query.limit"), ({"limit": "x"}, "query.limit"),
                              ({"after": "bad id"}, "query.after")]:
            res = c.get("/v1/users", params=params)
            statuses.append(res.status_code)
            assert res.status_code == 422 and field in _fields(res), res.text
        for method, path, kwargs, field in [
            ("get", "/v1/dead-letters", {"params": {"user_id": "bad id"}}, "query.user_id"),
            ("post", "/v1/dead-letters/replay", {"json": {"user_id": "bad id"}}, "body.user_id"),
            ("post", "/v1/dead-letters/replay", {"json": {"everyone": True}}, "body.everyone"),
            ("get", f"/v1/users/{uid}/profile", {"params": {"assistant_id": "bad id"}}, "query.assistant_id"),
        ]:
            res = c.request(method, path, **kwargs)
            statuses.append(res.status_code)
            assert res.status_code == 422 and field in _fields(res), (path, res.text)

        assert _state(c, uid) == before
        assert c.get("/v1/users", params={"limit": 1000}).json()["users"] == users_before
    assert max(statuses) < 500


def test_bodies_over_a_limit_get_413_and_store_nothing(api: Api, uid: str) -> None:
    many = [{**OK, "turn_id": f"many-{i}"} for i in range(51)]  # MEMORYOS_API_MAX_TURNS=50
    big = [{"user_input": "z" * 1900, "agent_response": "ok", "turn_id": f"big-{i}"} for i in range(40)]  # > 64 KiB

    def chunks() -> Any:
        data = json.dumps(big).encode()
        for start in range(0, len(data), 4096):
            yield data[start:start + 4096]

    with api.client() as c:
        over_count = c.post(f"/v1/users/{uid}/turns", json=many)
        assert over_count.status_code == 413 and "MEMORYOS_API_MAX_TURNS" in over_count.text
        declared = c.post(f"/v1/users/{uid}/turns", json=big)
        assert declared.status_code == 413 and "MEMORYOS_API_MAX_BODY_BYTES" in declared.text
        streamed = c.post(f"/v1/users/{uid}/turns", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413, streamed.text
        assert c.post(f"/v1/users/{uid}/turns", json=many[:50]).status_code == 202  # at the limit: fine
        stored = {json.loads(line)["turn_id"] for line in c.get(f"/v1/users/{uid}/export").text.splitlines()}
    assert stored == {f"many-{i}" for i in range(50)}


def test_unknown_routes_and_methods_are_not_500(api: Api) -> None:
    with api.client() as c:
        assert c.get("/v1/nothing-here").status_code == 404
        assert c.put("/v1/users/u1/turns", json=OK).status_code == 405
        assert c.get("/v1/users/a/b/c/d").status_code == 404


# Found by the schemathesis run (test_openapi_conformance.py) and mended; each also checked here by name.
@pytest.mark.parametrize(("body", "field"), [
    ({"query": "x", "top_k": "5"}, "body.top_k"),  # the document says integer: a string is not one
    ({"query": "x", "top_k": True}, "body.top_k"),
    ({"query": "x", "max_tokens": 99}, "body.max_tokens"),
    ({"query": "x", "filters": {"metadata": {"k\n": "v"}}}, "body.filters"),  # the key pattern, fully matched
])
def test_retrieve_takes_what_the_document_says(api: Api, body: dict[str, Any], field: str) -> None:
    with api.client() as c:
        res = c.post("/v1/users/someone/retrieve", json=body)
    assert res.status_code == 422 and _fields(res) == [field], res.text


def test_answers_the_document_declares(api: Api, uid: str) -> None:
    with api.client() as c:
        # A JSON null is a body, and not the object the document asks for (no body at all means "all").
        null = c.post("/v1/dead-letters/replay", content=b"null", headers={"content-type": "application/json"})
        assert null.status_code == 422 and _fields(null) == ["body"], null.text
        assert c.post("/v1/dead-letters/replay").status_code == 200
        # turn_id null is the default (a new id), as null is for every optional field.
        published = c.post(f"/v1/users/{uid}/turns", json={**OK, "turn_id": None})
        assert published.status_code == 202 and len(published.json()["turn_ids"][0]) == 32, published.text
        # 405 names every method of the path, not only those of the first route that matched it.
        refused = c.put(f"/v1/users/{uid}")
        assert refused.status_code == 405 and refused.headers["allow"] == "GET, DELETE"
        assert refused.json() == {"error": "Method Not Allowed", "detail": []}
        # An unknown user is not found, in the error shape; a known one is.
        missing = c.get("/v1/users/nobody-here-" + uid)
        assert missing.status_code == 404 and missing.json()["detail"] == [], missing.text
        assert c.get(f"/v1/users/{uid}").status_code == 200
