"""examples/node/chat_backend.mjs, run with the machine's `node` against `memoryos serve`: a chat backend in
another language publishes and retrieves through the HTTP API alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.apps.http.conftest import KEYS, Api
from tests.processes import ROOT

pytestmark = pytest.mark.integration
EXAMPLE = ROOT / "examples" / "node" / "chat_backend.mjs"


def test_node_chat_backend_publishes_and_retrieves(api: Api, uid: str) -> None:
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.fail("Node.js is missing: run deploy/local/ensure-test-tools.sh as root (make test does), "
                    "or install Node 18+")
    env = {**os.environ, "MEMORYOS_API_URL": api.url, "MEMORYOS_API_KEY": KEYS["acme"], "MEMORYOS_USER": uid}
    done = subprocess.run([node, str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert out.rstrip().endswith("OK")
    assert f"published 3 turns in one request for {uid}" in out
    assert "refused as expected: HTTP 422" in out and "body: user_input and agent_response are both blank" in out
    assert "retrieved 4 recent turns" in out and '"user": "I just adopted a cat called Pimenta"' in out

    with api.client("acme") as acme, api.client("globex") as globex:
        records = [json.loads(line) for line in acme.get(f"/v1/users/{uid}/export").text.splitlines()]
        assert len(records) == 4 and records[0]["metadata"] == {"channel": "node-example"}
        assert globex.get(f"/v1/users/{uid}/export").status_code == 404  # the key's tenant only
