"""Answers the fake LLM gives to our prompts, as a competent model would, computed from the data
block of the request. They make the tests about our handling of answers, not about the model."""

from __future__ import annotations

import json
import re
from typing import Any

from memoryos_workers.memory.similarity import extract_keywords

_DATA = re.compile(r"<data>\n(.*)\n</data>", re.DOTALL)


def data_block(request: dict[str, Any]) -> dict[str, Any] | None:
    for message in request.get("messages", []):
        match = _DATA.search(str(message.get("content", "")))
        if match:
            return json.loads(match.group(1))
    return None


def schema_name(request: dict[str, Any]) -> str:
    fmt = request.get("response_format") or {}
    return (fmt.get("json_schema") or {}).get("name", "")


def segmentation_answer(data: dict[str, Any], split_on: str | None = None) -> dict[str, Any]:
    """One topic per call, or two when `split_on` names a word that marks the second subject; in the
    wire shape of memoryos_workers.pipeline.answer_schemas (each page names its topic)."""
    pages = data["pages"]
    groups: list[list[dict[str, Any]]] = [pages]
    if split_on:
        first = [p for p in pages if split_on not in p["user"].lower()]
        second = [p for p in pages if split_on in p["user"].lower()]
        groups = [g for g in (first, second) if g]
    topics, topic_of = [], {}
    for number, group in enumerate(groups):
        texts = [p["user"] + " " + p["assistant"] for p in group]
        keywords = extract_keywords(texts, limit=6)
        topics.append(
            {
                "theme": " ".join(keywords[:3]) or "chat",
                "summary": "The user talked about " + "; ".join(p["user"][:80] for p in group[:4]),
                "keywords": keywords,
            }
        )
        topic_of.update({p["index"]: number for p in group})
    return {
        "analysis": {
            "topics": topics,
            "pages": [
                {
                    "topic": topic_of[p["index"]],
                    "continues_previous": p["index"] > 0,
                    "chain_summary": f"Chain up to: {p['user'][:60]}",
                }
                for p in pages
            ],
        }
    }


def persona_answer(data: dict[str, Any]) -> dict[str, Any]:
    """Keeps the current profile and adds what the pages say: one fact per user utterance."""
    current = data.get("current_profile") or {"summary": "", "traits": []}
    pages = data["pages"]
    keywords = extract_keywords([p["user"] for p in pages], limit=3)
    summary = (current["summary"] + " " if current["summary"] else "") + (
        "The user talks about " + ", ".join(keywords) + "." if keywords else ""
    )
    traits = list(current["traits"]) + [
        {"dimension": f"interest: {k}", "level": "medium", "evidence": f"mentions {k}"} for k in keywords
    ]
    return {
        "profile": {"summary": summary.strip() or "A user.", "traits": traits},
        "user_facts": [
            {"text": f"The user said: {p['user'][:120]}", "date": p["time"][:10]} for p in pages if p["user"]
        ],
        "assistant_facts": [
            {"text": f"The assistant said: {p['assistant'][:120]}", "date": ""} for p in pages[:2] if p["assistant"]
        ],
    }


def default_responder(request: dict[str, Any]) -> Any:
    data = data_block(request)
    if data is None:
        return None
    if schema_name(request) == "persona" or "current_profile" in data:
        return persona_answer(data)
    if schema_name(request) == "segmentation" or "pages" in data:
        return segmentation_answer(data)
    return None
