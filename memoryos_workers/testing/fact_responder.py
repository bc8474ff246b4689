"""A test model that keeps facts true over time by rule: it reads the user's lines for a few kinds of fact
(home, job, partner, pet, diet, plans, car, and some that never change), writes each as a third-person
fact, and names the shown current fact of the same kind as superseded (or retired, for "I gave away my
dog"). A fact of another kind is never named. Small talk and the assistant's lines give no fact.

It answers the persona call as a competent model would when it follows our schema; everything else goes to
the default responder. Used by the facts story (tests and `python -m bench facts`).
"""

from __future__ import annotations

import re
from typing import Any

from memoryos_workers.testing.responders import data_block, default_responder, persona_answer, schema_name

SUBJECT = "The user"
_NAME = r"([A-Z][\w'-]+(?: [A-Z][\w'-]+)?)"
# kind, pattern over the user's line, fact template, prefix every fact of this kind starts with
RULES: list[tuple[str, re.Pattern[str], str, str]] = [
    ("home", re.compile(rf"\bI (?:now )?(?:live|moved|have moved|just moved) (?:in|to) {_NAME}"),
     "{s} lives in {0}.", "{s} lives in "),
    ("job", re.compile(r"\bI (?:now )?work as an? ([a-z][a-z -]+?)(?:[.,!]| now| at )"),
     "{s} works as a {0}.", "{s} works as "),
    ("partner", re.compile(rf"\b[Mm]y (?:partner|girlfriend|boyfriend|wife|husband) is (?:now )?{_NAME}"),
     "{s}'s partner is {0}.", "{s}'s partner is "),
    ("pet", re.compile(rf"\bI (?:have|adopted|got) an? (dog|cat|parrot|rabbit) (?:named|called) {_NAME}"),
     "{s} has a {0} named {1}.", "{s} has a "),
    ("diet", re.compile(r"\bI(?: am|'m) (?:now )?(vegetarian|vegan|pescatarian|eating meat again)"),
     "{s}'s diet: {0}.", "{s}'s diet: "),
    ("plan", re.compile(r"\b[Mm]y plan is (?:now )?to ([^.!]+)"), "{s} plans to {0}.", "{s} plans to "),
    ("car", re.compile(r"\bI bought an? ([A-Z][\w-]+(?: [A-Z0-9][\w-]*)?)"), "{s} owns a {0}.", "{s} owns a "),
    ("sister", re.compile(rf"\b[Mm]y sister is called {_NAME}"), "{s}'s sister is called {0}.", "{s}'s sister "),
    ("birthplace", re.compile(rf"\bI was born in {_NAME}"), "{s} was born in {0}.", "{s} was born in "),
    ("colour", re.compile(r"\b[Mm]y favourite colour is (\w+)"), "{s}'s favourite colour is {0}.",
     "{s}'s favourite colour "),
]
RETIRE = [
    ("pet", re.compile(r"\bI (?:gave away|no longer have|lost) my (?:dog|cat|parrot|rabbit|pet)")),
    ("car", re.compile(r"\bI sold my car")),
    ("partner", re.compile(r"\b(?:we broke up|I am single|I'm single)")),
]
_DATE = re.compile(r"\b(?:since|in|from) (\d{4}-\d{2}(?:-\d{2})?)\b")


def kind_of(text: str) -> str | None:
    for kind, _, _, prefix in RULES:
        if text.startswith(prefix.format(s=SUBJECT)):
            return kind
    return None


def facts_of(line: str) -> list[tuple[str, str, str]]:
    """(kind, fact text, date) for each fact the line states."""
    found = []
    date = _DATE.search(line)
    for kind, pattern, template, _ in RULES:
        match = pattern.search(line)
        if match:
            found.append((kind, template.format(*match.groups(), s=SUBJECT), date.group(1) if date else ""))
    return found


def facts_answer(data: dict[str, Any]) -> dict[str, Any]:
    shown = {f["id"]: f["fact"] for f in data.get("current_facts") or []}
    by_kind: dict[str, list[str]] = {}
    for short, text in shown.items():
        kind = kind_of(text)
        if kind:
            by_kind.setdefault(kind, []).append(short)
    user_facts, retired = [], []
    for page in data["pages"]:
        for kind, pattern in RETIRE:
            if pattern.search(page["user"]):
                retired += [s for s in by_kind.pop(kind, [])]
        for kind, text, date in facts_of(page["user"]):
            same = [s for s in by_kind.get(kind, []) if shown[s] == text]
            other = [s for s in by_kind.get(kind, []) if shown[s] != text]
            user_facts.append({"text": text, "date": date, "page": page["index"], "supersedes": other,
                               "confirms": same})
            by_kind[kind] = same
    answer = persona_answer(data)
    profile = {**answer["profile"], "traits": _diet_traits(data, answer["profile"]["traits"])}
    return {"profile": profile, "user_facts": user_facts, "retired": retired, "assistant_facts": []}


def _diet_traits(data: dict[str, Any], traits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The profile's traits with the diet the pages state as a trait: it names the shown diet trait it
    revises (or restates), with the page that shows it, so the profile's revision by evidence is tested."""
    shown = next((t["id"] for t in (data.get("current_profile") or {}).get("traits", [])
                  if str(t.get("dimension", "")).startswith("diet:")), "")
    out = [t for t in traits if not str(t.get("dimension", "")).startswith("diet:")]
    for page in data["pages"]:
        for kind, text, _ in facts_of(page["user"]):
            if kind == "diet":
                diet = text.split(": ", 1)[1].rstrip(".")
                out = [t for t in out if not str(t.get("dimension", "")).startswith("diet:")]
                out.append({"id": shown, "dimension": f"diet: {diet}", "level": "high",
                            "evidence": page["user"][:120], "page": page["index"]})
    return out


def fact_responder(request: dict[str, Any]) -> Any:
    data = data_block(request)
    if data is not None and (schema_name(request) == "persona" or "current_profile" in data):
        return facts_answer(data)
    return default_responder(request)
