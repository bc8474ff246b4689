"""Reading conversations from files into turns: JSON Lines, MemoryOS-style exports, LoCoMo."""

from __future__ import annotations

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
