"""What HTTP answers when a person's edit meets a running extraction (the test holds the user's persona lock
in Redis, as an extraction does): the edit waits for it, and past the wait a 503 with Retry-After, nothing
changed."""

from __future__ import annotations

import threading
import time

from memoryos_workers.ops.fact_ops import EDIT_WAIT_S
from producers.publish import Publisher
from schemas.settings import Settings
from tests.apps.http.conftest import Api, turns


def test_an_edit_waits_for_a_running_extraction_then_answers_503(api: Api, uid: str) -> None:
    keys = Publisher(Settings(key_prefix=api.prefix)).keys.user(f"acme:{uid}")
    with api.client("acme") as acme:
        assert acme.post(f"/v1/users/{uid}/turns", json=turns(2, "lock")).status_code == 202
        added = acme.post(f"/v1/users/{uid}/facts", json={"text": "Ana lives in Porto."})
        assert added.status_code == 200, added.text
        fact_id = added.json()["fact_id"]
        redis = Publisher(Settings(key_prefix=api.prefix)).redis
        assert redis.set(keys.persona_lock, "held-by-test", nx=True, px=60_000)
        try:
            started = time.monotonic()
            busy = acme.patch(f"/v1/users/{uid}/facts/{fact_id}", json={"text": "Ana lives in Braga."})
            waited = time.monotonic() - started
        finally:
            redis.delete(keys.persona_lock)
        assert busy.status_code == 503, busy.text
        assert busy.headers["Retry-After"] and "nothing was changed" in busy.json()["error"]
        assert waited >= EDIT_WAIT_S * 0.9, "it waited for the extraction first"
        texts = [f["text"] for f in acme.get(f"/v1/users/{uid}/facts", params={"history": "true"}).json()["facts"]]
        assert texts == ["Ana lives in Porto."]
        # Released within the wait: the edit goes through once the extraction is done.
        assert redis.set(keys.persona_lock, "held-by-test", nx=True, px=60_000)
        threading.Timer(1.0, redis.delete, args=(keys.persona_lock,)).start()
        fixed = acme.patch(f"/v1/users/{uid}/facts/{fact_id}", json={"text": "Ana lives in Braga."})
        assert fixed.status_code == 200, fixed.text
        assert fixed.json()["fact"]["text"] == "Ana lives in Braga."
