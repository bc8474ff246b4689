"""Every endpoint of `memoryos serve` through real HTTP: a uvicorn process with the embedded store and its
in-process worker, real Redis, the fake LLM over HTTP. Bad input gets its status and changes nothing."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from memoryos_workers.testing.fake_llm import Fault
from memoryos_workers.testing.responders import data_block, default_responder
from tests.apps.http.conftest import Api, turns
from tests.conftest import FAKE_LLM

pytestmark = pytest.mark.integration


def export(client: httpx.Client, user: str) -> list[dict[str, Any]]:
    res = client.get(f"/v1/users/{user}/export")
    assert res.status_code == 200, res.text
    assert res.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in res.text.splitlines() if line]


def test_openapi_lists_every_endpoint_and_docs_serve(api: Api) -> None:
    with api.client(None) as anonymous:
        spec = anonymous.get("/openapi.json").json()
        docs = anonymous.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    paths = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert {
        ("/v1/users/{user_id}/turns", "post"), ("/v1/users/{user_id}/retrieve", "post"),
        ("/v1/users/{user_id}/profile", "get"), ("/v1/users/{user_id}/export", "get"),
        ("/v1/users/{user_id}", "delete"), ("/v1/users/{user_id}", "get"), ("/v1/users", "get"),
        ("/v1/dead-letters", "get"),
        ("/v1/dead-letters/replay", "post"), ("/v1/stats", "get"), ("/healthz", "get"), ("/readyz", "get"),
        ("/metrics", "get"),
    } <= paths
    body = spec["paths"]["/v1/users/{user_id}/turns"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"user_input", "agent_response", "turn_id"} <= set(body["oneOf"][0]["properties"])


def test_health_and_readiness(api: Api) -> None:
    with api.client(None) as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        ready = anonymous.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"redis": "ok", "vector_store": "ok"}
    assert ready.json()["reads"] == "in-process" and ready.json()["workers"] == "in-process"


def test_the_server_froze_its_start_up_heap_once_ready(api: Api) -> None:
    """`memoryos serve` owns its process: once the model and store are open it freezes what start-up loaded
    (memoryos_workers/heap.py), so full garbage collections inside requests skip it."""
    log = api.server.log.read_text(errors="replace")
    frozen = [line for line in log.splitlines() if "start-up heap frozen" in line]
    assert len(frozen) == 1, log[-2000:]
    assert int(frozen[0].split("frozen: ")[1].split()[0]) > 10_000  # the libraries, the model's session, ...


def test_publish_single_and_bulk_then_retrieve_pages_from_the_worker(api: Api, uid: str) -> None:
    with api.client() as c:
        cat = {"user_input": "My cat is called Pimenta", "agent_response": "Cute!", "turn_id": "cat-1",
               "metadata": {"channel": "web"}}
        one = c.post(f"/v1/users/{uid}/turns", json=cat)
        assert one.status_code == 202, one.text
        assert one.json() == {"user_id": uid, "turn_ids": ["cat-1"]}
        bulk = c.post(f"/v1/users/{uid}/turns", json=turns(24))
        assert bulk.status_code == 202, bulk.text
        assert bulk.json()["turn_ids"] == [t["turn_id"] for t in turns(24)]
        again = c.post(f"/v1/users/{uid}/turns", json=turns(24)[:5])  # turn_id is the idempotency key
        assert again.status_code == 202
        api.wait_idle(f"acme:{uid}")
        stored = [r for r in export(c, uid) if r["type"] == "turn"]
        assert len(stored) == 25 and len({r["turn_id"] for r in stored}) == 25
        assert {r["tier"] for r in stored} >= {"mid_term", "short_term"}

        res = c.post(f"/v1/users/{uid}/retrieve", json={"query": "What is my cat called?", "top_k": 5})
    assert res.status_code == 200, res.text
    answer = res.json()
    assert answer["user_id"] == uid and answer["query"] == "What is my cat called?"
    assert len(answer["pages"]) == 5 and answer["pages"][0]["turn_id"] == "cat-1"
    assert answer["pages"][0]["found_by"] and answer["pages"][0]["score"] > 0
    assert answer["pages"][0]["metadata"] == {"channel": "web"}
    assert len(answer["short_term"]) == 10
    assert "Pimenta" in answer["prompt"] and answer["prompt_tokens"] >= len(answer["prompt"]) // 4


def test_profile_export_and_forget(api: Api, uid: str) -> None:
    with api.client() as c:
        assert c.post(f"/v1/users/{uid}/turns", json=turns(25, "prof")).status_code == 202
        api.wait_idle(f"acme:{uid}")
        profile = c.get(f"/v1/users/{uid}/profile").json()
        assert profile["user_id"] == uid
        assert profile["profile"]["traits"] and profile["user_knowledge"] and profile["assistant_knowledge"]
        assert all(f["assistant_id"] == "default_assistant" for f in profile["assistant_knowledge"])

        records = export(c, uid)
        kinds = {r["type"] for r in records}
        assert {"turn", "segment", "profile", "fact"} <= kinds
        assert all(r.get("user_id", uid) == uid for r in records)

        listed = c.get("/v1/users", params={"limit": 1000}).json()["users"]
        assert uid in listed
        gone = c.delete(f"/v1/users/{uid}")
        assert gone.status_code == 200, gone.text
        removed = gone.json()["removed"]
        assert removed["short_term"] == 10 and removed["pages"] == 15 and removed["profile"] == 1
        # Forgotten: the user and its parts are not there any more (404 in the error shape), and listing
        # no longer names it.
        for part in ("", "/export", "/profile"):
            res = c.get(f"/v1/users/{uid}{part}")
            assert res.status_code == 404 and res.json()["error"].startswith("nothing is stored"), (part, res.text)
        assert uid not in c.get("/v1/users", params={"limit": 1000}).json()["users"]
        again = c.delete(f"/v1/users/{uid}").json()["removed"]
        assert set(again.values()) == {0}


def _fail_persona_of(marker: str) -> Any:
    def responder(request: dict[str, Any]) -> Any:
        data = data_block(request) or {}
        if "current_profile" in data and any(marker in p["user"] for p in data.get("pages", [])):
            return Fault.http(500, "persona model down")
        return default_responder(request)

    return responder


def test_dead_letters_listed_and_replayed(api: Api, uid: str) -> None:
    """A persona extraction that keeps failing is dead-lettered; replay after the fix builds the persona."""
    FAKE_LLM.responder = _fail_persona_of("deadmarker")
    try:
        with api.client() as c:
            assert c.post(f"/v1/users/{uid}/turns", json=turns(20, "deadmarker")).status_code == 202
            deadline = time.monotonic() + 60
            while not (rows := c.get("/v1/dead-letters", params={"user_id": uid}).json()["dead_letters"]):
                assert time.monotonic() < deadline, "no dead letter appeared"
                time.sleep(0.5)
    finally:
        FAKE_LLM.responder = default_responder
    assert rows[0]["user_id"] == uid and rows[0]["kind"] == "persona" and "persona model down" in rows[0]["error"]
    with api.client() as c:
        assert c.get(f"/v1/users/{uid}/profile").json()["profile"] is None
        replayed = c.post("/v1/dead-letters/replay", json={"user_id": uid})
        assert replayed.status_code == 200, replayed.text
        assert replayed.json()["replayed"][uid]["persona_pages"] > 0
        deadline = time.monotonic() + 60
        while c.get(f"/v1/users/{uid}/profile").json()["profile"] is None:
            assert time.monotonic() < deadline, "replay did not build the profile"
            time.sleep(0.5)
        assert c.get("/v1/dead-letters", params={"user_id": uid}).json()["dead_letters"] == []


def test_stats_and_metrics(api: Api, uid: str) -> None:
    with api.client() as c:
        c.post(f"/v1/users/{uid}/turns", json=turns(12, "metrics"))
        api.wait_idle(f"acme:{uid}")
        for _ in range(3):
            assert c.post(f"/v1/users/{uid}/retrieve", json={"query": "marathon"}).status_code == 200
        time.sleep(0.5)  # retrievals are counted off the request path
        stats = c.get("/v1/stats").json()
        text = c.get("/metrics").text
    assert stats["llm_calls"] >= 1 and stats["retrievals"] >= 3 and "queue_memoryos.ingest" in stats
    families = {f.name: f for f in text_string_to_metric_families(text)}
    by_purpose = {s.labels["purpose"]: s.value for s in families["memoryos_llm_calls"].samples}
    assert by_purpose["segmentation"] >= 1
    histogram = {s.name: s for s in families["memoryos_retrieval_latency_seconds"].samples if "le" not in s.labels}
    assert histogram["memoryos_retrieval_latency_seconds_count"].value >= 3
    buckets = [s.value for s in families["memoryos_retrieval_latency_seconds"].samples if s.labels.get("le")]
    assert buckets == sorted(buckets)  # cumulative
    assert {s.labels["queue"] for s in families["memoryos_queue_length"].samples} == {
        "memoryos.ingest", "memoryos.persona", "memoryos.retrieval"}
    assert "memoryos_pending_batches" in families and "memoryos_sweep_overdue_seconds" in families
    http = [s for s in families["memoryos_http_requests"].samples
            if s.labels.get("route") == "/v1/users/{user_id}/retrieve" and s.name.endswith("_total")]
    assert http and http[0].labels["status"] == "200" and http[0].value >= 3
    assert uid not in text  # routes by template: no ids in metrics


def test_keys(api: Api, uid: str) -> None:
    """401 without a valid key on every /v1 route and /metrics; the key never shows in an answer."""
    routes = [("post", f"/v1/users/{uid}/turns"), ("post", f"/v1/users/{uid}/retrieve"), ("get", "/v1/users"),
              ("get", f"/v1/users/{uid}"), ("get", f"/v1/users/{uid}/profile"), ("get", f"/v1/users/{uid}/export"),
              ("delete", f"/v1/users/{uid}"), ("get", "/v1/dead-letters"), ("post", "/v1/dead-letters/replay"),
              ("get", "/v1/stats"), ("get", "/metrics")]
    bad = [{}, {"Authorization": "Bearer wrong-key-000000"}, {"Authorization": "acme-test-key-0001"},
           {"Authorization": "Basic acme-test-key-0001"}, {"Authorization": "Bearer acme-test-key-0001x"}]
    with httpx.Client(base_url=api.url) as c:
        for method, path in routes:
            for headers in bad:
                res = c.request(method, path, headers=headers, json={"user_input": "x", "agent_response": "y"})
                assert res.status_code == 401, (method, path, headers, res.text)
                assert res.headers["www-authenticate"] == "Bearer"
                assert "acme-test-key" not in res.text
    assert "acme-test-key" not in api.server.tail(10**7)  # nor in the server's log
    with api.client() as c:  # nothing was stored by the refused requests
        assert c.get(f"/v1/users/{uid}/export").status_code == 404
