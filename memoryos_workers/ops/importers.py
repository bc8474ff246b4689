"""Reading conversations from files into turns: JSON Lines (`memoryos export` output too), a MemoryOS-style
JSON list, or a LoCoMo conversation. Parsing only: publishing and validation are the publisher's."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

_SESSION = re.compile(r"^session_(\d+)$")


def parse_locomo_date(text: str) -> datetime:
    """LoCoMo writes session dates like '1:56 pm on 8 May, 2023'; read as UTC."""
    return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=timezone.utc)


def locomo_turns(source: str | Path | dict[str, Any], user_id: str, assistant_id: str | None = None) -> list[dict]:
    """MemoryOS's own mapping: speaker_a's turn is user_input, the following speaker_b turn the
    agent_response, the timestamp the session date. dia_ids ride along in metadata for evaluation."""
    data = source if isinstance(source, dict) else json.loads(Path(source).read_text(encoding="utf-8"))
    conv = data["conversation"]
    sample = re.sub(r"[^A-Za-z0-9_.:@+-]", "-", str(data.get("sample_id", "locomo")))
    speaker_a = conv["speaker_a"]
    sessions = sorted((int(m.group(1)), key) for key in conv if (m := _SESSION.match(key)))
    turns: list[dict] = []
    for number, key in sessions:
        when = parse_locomo_date(conv[f"{key}_date_time"])
        utterances = conv[key]
        i = 0
        while i < len(utterances):
            first = utterances[i]
            if first["speaker"] == speaker_a:
                follows = i + 1 < len(utterances) and utterances[i + 1]["speaker"] != speaker_a
                reply = utterances[i + 1] if follows else None
                user_text, agent_text = first.get("text", ""), (reply or {}).get("text", "")
                dia_ids = [first["dia_id"]] + ([reply["dia_id"]] if reply else [])
                i += 2 if reply else 1
            else:
                user_text, agent_text, dia_ids = "", first.get("text", ""), [first["dia_id"]]
                i += 1
            turns.append({
                "user_id": user_id,
                "assistant_id": assistant_id,
                "user_input": user_text,
                "agent_response": agent_text,
                "timestamp": when,
                "turn_id": f"{sample}-{dia_ids[0]}",
                "metadata": {"dia_ids": dia_ids, "session": number},
            })
    return turns


_TURN_FIELDS = ("user_id", "assistant_id", "user_input", "agent_response", "timestamp", "turn_id", "metadata")


class ImportFileError(ValueError):
    """The file's shape is wrong (not its JSON syntax): the message says which record or option."""


def read_turns(path: str | Path, user_id: str | None = None, assistant_id: str | None = None) -> list[dict[str, Any]]:
    """The turns in a file, with `user_id` and `assistant_id` for records that name none. Turns without a
    turn_id get one from the file's content and position, so importing twice stores nothing twice.
    json.JSONDecodeError or UnicodeDecodeError when it is not JSON; ImportFileError when its shape is wrong."""
    text = Path(path).read_text(encoding="utf-8")
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    try:
        whole: Any = json.loads(text)
    except json.JSONDecodeError:
        whole = None  # JSON Lines
    if isinstance(whole, dict) and "conversation" in whole:
        if not user_id:
            raise ImportFileError("a LoCoMo file needs --user (its speakers are not user ids)")
        return locomo_turns(whole, user_id, assistant_id)
    if isinstance(whole, dict):
        whole = [whole]
    items = whole if isinstance(whole, list) else [json.loads(line) for line in text.splitlines() if line.strip()]
    turns = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ImportFileError(f"record {index + 1} is not a JSON object")
        if item.get("type", "turn") != "turn":
            continue  # `memoryos export` output: segments, profile and facts are derived, not imported
        turn = {k: item[k] for k in _TURN_FIELDS if k in item}
        if "meta_data" in item and "metadata" not in turn:
            turn["metadata"] = item["meta_data"]
        turn.setdefault("user_id", user_id)
        turn.setdefault("assistant_id", assistant_id)
        turn.setdefault("turn_id", f"import-{digest}-{index + 1}")
        turns.append(turn)
    return turns
