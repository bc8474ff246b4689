"""Bad input is rejected with the field named, and nothing already stored changes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from schemas.settings import Settings
from schemas.turns import Turn, check_id, check_text

GOOD = {"user_id": "u1", "user_input": "hello", "agent_response": "hi"}


class NotJson:
    pass


BAD_CASES = [
    ("user_id", {"user_id": ""}),
    ("user_id", {"user_id": "a/b"}),
    ("user_id", {"user_id": "../etc"}),
    ("user_id", {"user_id": "has space"}),
    ("user_id", {"user_id": "x" * 200}),
    ("user_id", {"user_id": 42}),
    ("user_id", {"user_id": None}),
    ("user_id", {"user_id": "u1\n"}),
    ("assistant_id", {"assistant_id": "bad/id"}),
    ("turn_id", {"turn_id": "bad id"}),
    ("turn_id", {"turn_id": "-starts-with-dash"}),
    ("user_input", {"user_input": "x" * 32_001}),
    ("agent_response", {"agent_response": "y" * 1_000_000}),
    ("user_input", {"user_input": "nul\x00byte"}),
    ("user_input", {"user_input": "lone \ud800 surrogate"}),
    ("user_input", {"user_input": 123}),
    ("agent_response", {"agent_response": ["list"]}),
    ("user_input and agent_response", {"user_input": "   ", "agent_response": "\n\t"}),
    ("user_input and agent_response", {"user_input": "", "agent_response": ""}),
    ("timestamp", {"timestamp": "yesterday-ish"}),
    ("timestamp", {"timestamp": "2025-13-45T99:00:00"}),
    ("timestamp", {"timestamp": 12345}),
    ("metadata", {"metadata": {"x": NotJson()}}),
    ("metadata", {"metadata": {"blob": "z" * 9000}}),
    ("metadata", {"metadata": "not a dict"}),
    ("metadata", {"metadata": {"nan": float("nan")}}),
    ("metadata", {"metadata": {"k": "nul\x00"}}),
    ("unexpected", {"unexpected": "field"}),
]


@pytest.mark.parametrize(("field", "patch"), BAD_CASES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_CASES)])
def test_bad_turn_names_the_field(field: str, patch: dict) -> None:
    with pytest.raises(ValidationError) as info:
        Turn.model_validate({**GOOD, **patch})
    message = str(info.value)
    assert field.split(" ")[0] in message


@pytest.mark.parametrize("bad", ["", "a/b", "../etc", "has space", "x" * 129, "u1\n", "-dash", 42, None])
def test_one_id_rule_for_every_entry_point(bad: object) -> None:
    """check_id is what the CLI, MCP, the Memoryos class, tasks and RPC use; Turn applies the same rule."""
    with pytest.raises(ValueError, match=r"^assistant_id: ") as info:
        check_id("assistant_id", bad)
    assert "valid id" in str(info.value) or "must be a string" in str(info.value) or "required" in str(info.value)
    with pytest.raises(ValidationError, match="user_id"):
        Turn.model_validate({**GOOD, "user_id": bad})
    assert check_id("assistant_id", None, required=False) is None
    assert check_id("user_id", "user@example.com:42+x") == "user@example.com:42+x"


def test_text_check_names_the_field() -> None:
    assert check_text("query", "  ok ") == "  ok "
    assert check_text("hint", "", required=False) == ""
    for bad, reason in ((" \n", "blank"), (3, "must be a string"), ("a\x00b", "NUL"), ("x" * 11, "over the limit")):
        with pytest.raises(ValueError, match=f"^query: .*{reason}"):
            check_text("query", bad, 10)


def test_good_edge_cases_are_kept_exactly() -> None:
    text = "emoji 🧠 and CJK 記憶 and RTL שלום"
    turn = Turn.model_validate({**GOOD, "user_input": text, "agent_response": "", "metadata": {"ok": [1, 2.5, None]}})
    assert turn.user_input == text
    assert len(Turn.model_validate({**GOOD, "user_input": "x" * 32_000}).user_input) == 32_000
    assert Turn.model_validate({**GOOD, "user_id": "a" * 128}).user_id == "a" * 128
    assert Turn.model_validate({**GOOD, "user_id": "user@example.com:42+x"}).user_id


def test_timestamps_keep_zone_and_read_naive_in_configured_zone() -> None:
    aware = Turn.model_validate({**GOOD, "timestamp": "2025-05-01T14:30:00+02:00"})
    assert aware.timestamp.utcoffset() == timedelta(hours=2)
    assert Turn.model_validate({**GOOD, "timestamp": "2025-05-01T12:00:00Z"}).timestamp.tzinfo is not None
    paris = Settings(timezone="Europe/Paris")
    naive = Turn.model_validate({**GOOD, "timestamp": "2025-05-01T14:30:00"}, context={"timezone": paris.tz})
    assert naive.timestamp.utcoffset() == timedelta(hours=2)
    default = Turn.model_validate({**GOOD, "timestamp": datetime(2025, 1, 1, 9, 0)})
    assert default.timestamp.tzinfo == timezone.utc
    now = Turn.model_validate(GOOD).timestamp
    assert abs((datetime.now(timezone.utc) - now).total_seconds()) < 5
    assert ZoneInfo("Europe/Paris") == paris.tz


def test_limits_come_from_settings_context() -> None:
    Turn.model_validate({**GOOD, "user_input": "x" * 50}, context={"max_text_chars": 50})
    with pytest.raises(ValidationError, match="MEMORYOS_MAX_TEXT_CHARS"):
        Turn.model_validate({**GOOD, "user_input": "x" * 51}, context={"max_text_chars": 50})
    with pytest.raises(ValidationError, match="metadata"):
        Turn.model_validate({**GOOD, "metadata": {"a": "b" * 20}}, context={"max_metadata_bytes": 16})


def test_unknown_timezone_setting_is_rejected() -> None:
    with pytest.raises(ValidationError, match="time zone"):
        Settings(timezone="Mars/Olympus")


def _snapshot(client, keys) -> dict:  # noqa: ANN001
    out = {}
    for key in (keys.stm, keys.buf, keys.state, keys.ids, keys.batches):
        kind = client.type(key)
        out[key] = {
            "list": lambda k: client.lrange(k, 0, -1),
            "hash": client.hgetall,
            "zset": lambda k: client.zrange(k, 0, -1, withscores=True),
            "none": lambda k: None,
        }[kind](key)
    return out


def test_publish_rejects_bad_input_and_changes_nothing(publisher, user_id, settings) -> None:  # noqa: ANN001
    n = settings.short_term_capacity + 3
    good = [{"user_id": user_id, "user_input": f"q{i}", "agent_response": "a"} for i in range(n)]
    publisher.publish_many(good)
    keys = publisher.keys.user(user_id)
    before = _snapshot(publisher.redis, keys)
    for _field, patch in BAD_CASES:
        bad = {**GOOD, **patch}
        if "user_id" not in patch:
            bad["user_id"] = user_id
        with pytest.raises(ValidationError):
            publisher.publish(bad)
        # A bulk with one bad turn stores none of the good ones either.
        with pytest.raises(ValueError, match="turn #1"):
            publisher.publish_many([{"user_id": user_id, "user_input": "fine", "agent_response": "ok"}, bad])
    with pytest.raises(TypeError):
        publisher.publish_many(["not a turn"])
    assert _snapshot(publisher.redis, keys) == before
