"""The MCP server through a real MCP client: `memoryos mcp` spawned over stdio, and streamable HTTP.

The server runs as its own process (the embedded store, an in-process worker), against the session's
fake LLM over real HTTP, under its own Redis key prefix and data folder.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from tests.conftest import PREFIX
from tests.processes import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TOOLS = {"add_memory", "retrieve_memory", "get_user_profile", "list_facts", "add_fact", "correct_fact",
         "delete_fact"}
NO_PROFILE = "No detailed user profile"

# An early turn whose details are told nowhere else, then a varied conversation about the same user.
EARLY = ("My sister Ottilie moved to Lisbon and teaches cello there", "Lisbon is lovely; give Ottilie my best!")
TOPICS = [
    ("I went bouldering at the climbing gym after work", "Nice, how were the routes?"),
    ("I am training for a half marathon in October", "That is a great goal."),
    ("I cooked a vegetarian lasagna for my flatmates", "Sounds delicious."),
    ("I am reading a novel about lighthouse keepers", "What do you like about it?"),
    ("My manager asked me to lead the data migration project", "Congratulations on the trust."),
]


def _turns(n: int) -> list[tuple[str, str]]:
    turns = [EARLY]
    for i in range(1, n):
        user, assistant = TOPICS[i % len(TOPICS)]
        turns.append((f"{user} (day {i})", assistant))
    return turns


def _env(tmp_path: Path, fake_llm: Any, prefix: str) -> dict[str, str]:
    env = {
        **os.environ,
        "MEMORYOS_KEY_PREFIX": prefix,
        "MEMORYOS_DATA_DIR": str(tmp_path / "data"),
        "MEMORYOS_OPENAI_BASE_URL": fake_llm.base_url,
        "MEMORYOS_OPENAI_API_KEY": "k",
        "MEMORYOS_USER_ID": "mcp_user",
        "MEMORYOS_ASSISTANT_ID": "mcp_bot",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("MEMORYOS_QDRANT_URL", None)
    env.pop("MEMORYOS_EXTERNAL_WORKERS", None)
    return env


@pytest.fixture
def prefix(redis_client) -> Iterator[Callable[[str], str]]:  # noqa: ANN001
    """Makes this test's key prefixes; their keys are deleted afterwards."""
    def clean(p: str) -> None:
        for key in redis_client.scan_iter(match=f"{p}*", count=1000):
            redis_client.delete(key)

    made: list[str] = []

    def make(tag: str) -> str:
        made.append(f"{PREFIX}-{tag}")
        return made[-1]

    yield make
    for p in made:
        clean(p)


def _is_error(result: Any) -> bool:
    return bool(getattr(result, "is_error", getattr(result, "isError", False)))


def _text(result: Any) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


def _data(result: Any) -> dict[str, Any]:
    assert not _is_error(result), _text(result)
    structured = getattr(result, "structured_content", getattr(result, "structuredContent", None))
    if isinstance(structured, dict) and "status" in structured:
        return structured
    return json.loads(_text(result))


async def _call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    return _data(await session.call_tool(tool, arguments))


async def _error(session: ClientSession, tool: str, field: str, **arguments: Any) -> str:
    result = await session.call_tool(tool, arguments)
    assert _is_error(result), f"{tool}({list(arguments)}) should fail, got {_text(result)[:300]}"
    message = _text(result)
    assert field in message, message
    return message


async def _wait_for_profile(session: ClientSession, timeout: float = 60.0) -> dict[str, Any]:
    """Until the background work has written the profile and both kinds of facts (written in that order)."""
    deadline = time.monotonic() + timeout
    while True:
        profile = await _call(session, "get_user_profile", include_assistant_knowledge=True)
        if profile["user_profile"] != NO_PROFILE and profile["user_knowledge"] and profile["assistant_knowledge"]:
            return profile
        assert time.monotonic() < deadline, f"no profile after {timeout:.0f} s: {profile}"
        await anyio.sleep(0.5)


def _found(text: str, items: list[dict[str, Any]]) -> bool:
    return any(text in item["user_input"] for item in items)


def test_mcp_over_stdio(tmp_path, fake_llm, prefix) -> None:  # noqa: ANN001
    """Lists the tools, adds turns, retrieves them, reads the profile; bad arguments are tool errors."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-c", "from memoryos_workers.apps.cli import main; main()", "mcp"],  # the `memoryos mcp` command
        env=_env(tmp_path, fake_llm, prefix("mcp")),
        cwd=str(tmp_path),
    )
    server_log = tmp_path / "server.log"

    async def scenario() -> None:
        with anyio.fail_after(110), server_log.open("w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                tools = {t.name: t for t in (await session.list_tools()).tools}
                assert set(tools) == TOOLS
                assert {"user_input", "agent_response", "timestamp", "meta_data", "user_id"} <= set(
                    tools["add_memory"].input_schema["properties"]
                    if hasattr(tools["add_memory"], "input_schema") else tools["add_memory"].inputSchema["properties"]
                )

                # 25 turns: the first 10 are promoted as one batch, a segment hot at birth, so a profile follows.
                for i, (user, assistant) in enumerate(_turns(25)):
                    added = await _call(
                        session, "add_memory", user_input=user, agent_response=assistant,
                        timestamp=f"2025-03-{i + 1:02d}T09:00:00", meta_data={"i": i},
                    )
                    assert added["status"] == "success" and added["turn_id"] and added["user_id"] == "mcp_user"
                    assert added["timestamp"].startswith(f"2025-03-{i + 1:02d}T09:00:00")

                # Bad arguments: errors naming the field, and the server keeps working.
                await _error(session, "add_memory", "user_input", user_input="   ", agent_response="ok")
                await _error(session, "add_memory", "agent_response", user_input="hi", agent_response="")
                await _error(session, "add_memory", "user_input", user_input="x" * 1_000_000, agent_response="ok")
                await _error(session, "add_memory", "user_id", user_input="hi", agent_response="ok", user_id="bad id!")
                await _error(session, "add_memory", "meta_data", user_input="hi", agent_response="ok",
                             meta_data="{not json")
                await _error(session, "add_memory", "meta_data", user_input="hi", agent_response="ok", meta_data="[1]")
                await _error(session, "add_memory", "meta_data", user_input="hi", agent_response="ok",
                             meta_data={"big": "y" * 20_000})
                await _error(session, "add_memory", "timestamp", user_input="hi", agent_response="ok",
                             timestamp="the day before yesterday")
                await _error(session, "add_memory", "agent_response", user_input="hi")  # missing argument
                await _error(session, "retrieve_memory", "max_results", query="cello", max_results=0)
                await _error(session, "retrieve_memory", "max_results", query="cello", max_results=101)
                await _error(session, "retrieve_memory", "query", query=" \n ")
                await _error(session, "retrieve_memory", "max_tokens", query="cello", max_tokens=10)
                await _error(session, "retrieve_memory", "user_id", query="cello", user_id="../etc/passwd")
                await _error(session, "get_user_profile", "user_id", user_id="x" * 200)

                # Retrieval right away: the early turn is in memory, pending or already promoted.
                found = await _call(session, "retrieve_memory", query="Where does my sister Ottilie live?")
                assert found["status"] == "success" and found["query"] == "Where does my sister Ottilie live?"
                for key in ("short_term_memory", "retrieved_pages", "retrieved_user_knowledge",
                            "retrieved_assistant_knowledge", "user_profile", "short_term_count", "total_pages_found"):
                    assert key in found, key
                assert found["short_term_count"] == len(found["short_term_memory"]) >= 10
                assert _found("Ottilie", found["short_term_memory"] + found["retrieved_pages"])
                recent = [t["user_input"] for t in found["short_term_memory"]]
                assert _turns(25)[24][0] in recent

                # Background work builds the profile; then the early turn is a mid-term page.
                profile = await _wait_for_profile(session)
                assert profile["user_id"] == "mcp_user" and profile["assistant_id"] == "mcp_bot"
                assert profile["user_knowledge_count"] == len(profile["user_knowledge"]) >= 1
                assert any("Ottilie" in k["knowledge"] for k in profile["user_knowledge"])
                assert profile["assistant_knowledge_count"] >= 1
                assert all({"knowledge", "timestamp"} <= set(k) for k in profile["user_knowledge"])
                bare = await _call(session, "get_user_profile", include_knowledge=False)
                assert "user_knowledge" not in bare and "assistant_knowledge" not in bare

                # A person corrects memory: every answer names the fact_id; the old fact stays as history.
                listed = await _call(session, "list_facts")
                assert listed["facts"] and all(f["fact_id"] and f["status"] == "current" for f in listed["facts"])
                added = await _call(session, "add_fact", text="Ottilie lives in Graz.", pinned=True)
                assert added["pinned"] and added["origin"] == "person"
                fixed = await _call(session, "correct_fact", fact_id=added["fact_id"], text="Ottilie lives in Linz.")
                assert fixed["fact_id"] != added["fact_id"] and fixed["pinned"]
                every = await _call(session, "list_facts", history=True)
                old = next(f for f in every["facts"] if f["fact_id"] == added["fact_id"])
                assert old["status"] == "superseded" and old["superseded_by"] == fixed["fact_id"]
                gone = await _call(session, "delete_fact", fact_id=fixed["fact_id"])
                assert gone["fact_id"] == fixed["fact_id"]
                await _error(session, "delete_fact", "fact_id", fact_id=fixed["fact_id"])
                await _error(session, "correct_fact", "fact_id", fact_id="nope", text="x")
                await _error(session, "add_fact", "text", text="  ")

                found = await _call(session, "retrieve_memory", query="Where does my sister Ottilie live?",
                                    relationship_with_user="coach", style_hint="brief", max_results=3)
                assert _found("Ottilie", found["retrieved_pages"]), found["retrieved_pages"]
                assert len(found["retrieved_pages"]) <= 3 and found["user_profile"] != NO_PROFILE
                page = next(p for p in found["retrieved_pages"] if "Ottilie" in p["user_input"])
                assert page["timestamp"].startswith("2025-03-01T09:00:00") and page["meta_data"] == {"i": 0}
                assert isinstance(page["meta_info"], str) and isinstance(page["score"], float)
                assert 0 < found["context_tokens"] <= found["max_tokens"] == 2000
                # Without a budget the facts come too; within one, a fact that repeats a page is left out.
                unbudgeted = await _call(session, "retrieve_memory", query="Where does my sister Ottilie live?",
                                         max_tokens=0)
                assert any("Ottilie" in k["knowledge"] for k in unbudgeted["retrieved_user_knowledge"])
                assert unbudgeted["max_tokens"] == 0 and unbudgeted["context_tokens"] > 0

                # A call naming another user stays with that user, both ways.
                other = await _call(session, "add_memory", user_input="My dog Biscuit loves the beach",
                                    agent_response="Biscuit sounds fun!", user_id="other_user")
                assert other["user_id"] == "other_user"
                theirs = await _call(session, "retrieve_memory", query="Tell me about Biscuit", user_id="other_user")
                assert theirs["user_id"] == "other_user"
                assert _found("Biscuit", theirs["short_term_memory"])
                assert not _found("Ottilie", theirs["short_term_memory"] + theirs["retrieved_pages"])
                assert theirs["user_profile"] == NO_PROFILE and theirs["retrieved_user_knowledge"] == []
                mine = await _call(session, "retrieve_memory", query="Tell me about Biscuit")
                assert not _found("Biscuit", mine["short_term_memory"] + mine["retrieved_pages"])
                their_profile = await _call(session, "get_user_profile", user_id="other_user")
                assert their_profile["user_profile"] == NO_PROFILE and their_profile["user_knowledge_count"] == 0

    try:
        anyio.run(scenario)
    except BaseException:
        print(server_log.read_text()[-5000:], file=sys.stderr)
        raise
    logged = server_log.read_text()
    assert "memory ready" in logged  # the log went to stderr (stdout carried only the protocol)


def test_mcp_over_streamable_http(tmp_path, fake_llm, prefix) -> None:  # noqa: ANN001
    from mcp.client.streamable_http import streamable_http_client

    port = free_port()
    server_log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "memoryos_workers.apps.mcp", "--transport", "http", "--port", str(port)],
        env=_env(tmp_path, fake_llm, prefix("mcp-http")), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=server_log,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the HTTP server did not start"
                time.sleep(0.2)

        async def scenario() -> None:
            async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write), ClientSession(
                read, write
            ) as session:
                await session.initialize()
                assert {t.name for t in (await session.list_tools()).tools} == TOOLS
                await _call(session, "add_memory", user_input=EARLY[0], agent_response=EARLY[1])
                found = await _call(session, "retrieve_memory", query="Ottilie")
                assert _found("Ottilie", found["short_term_memory"])
                await _error(session, "retrieve_memory", "max_results", query="Ottilie", max_results=500)
                assert (await _call(session, "get_user_profile"))["user_id"] == "mcp_user"

        anyio.run(scenario)
    finally:
        process.terminate()
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        server_log.close()
    logged = (tmp_path / "server.log").read_text()
    assert code == 0, logged[-3000:]
    assert "MCP server stopped" in logged


def test_example_client_config_runs_our_command() -> None:
    """deploy/mcp.json (Claude Desktop, Cline, Cursor) starts `memoryos mcp` with settings that exist."""
    from schemas.settings import Settings

    config = json.loads((ROOT / "deploy" / "mcp.json").read_text())
    server = config["mcpServers"]["memoryos"]
    assert server["command"] == "memoryos" and server["args"] == ["mcp"]
    known = {f"MEMORYOS_{name.upper()}" for name in Settings.model_fields}
    assert set(server["env"]) <= known, set(server["env"]) - known
    assert {"MEMORYOS_USER_ID", "MEMORYOS_ASSISTANT_ID", "MEMORYOS_OPENAI_API_KEY", "MEMORYOS_DATA_DIR"} <= set(
        server["env"]
    )
    scripts = (ROOT / "pyproject.toml").read_text()
    assert 'memoryos = "memoryos_workers.apps.cli:main"' in scripts
