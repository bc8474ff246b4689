"""A test model whose persona can be measured: its persona answers derive from the pages it is shown.

The default responder (responders.py) answers persona calls with one "The user said: ..." fact per page
and a summary of keywords, so a benchmark cannot tell what the persona adds to a prompt. This one reads
the pages as a careful model would, without an LLM:

* a **user fact** restates a first-person statement of the user in the third person with its subject
  named ("I adopted a cat" -> "The user adopted a cat."), dated by its page; questions, greetings and
  sentences without a first-person subject are not facts;
* an **assistant fact** restates what the assistant said it does or is ("I am ...", "I can ...");
* the **summary** is assembled from the strongest new facts and the current summary, in the third
  person, never longer than `SUMMARY_CHARS`;
* **traits** are the pages' recurring content words, each with a fact as evidence.

Segmentation calls are answered as the default responder answers them. Any field a future schema adds
(a fact's time window, what it supersedes) is filled with the simplest value that schema allows, so the
answer stays valid as the schema grows. The generic mode of the fake server is untouched: it never calls
a responder for json_schema requests.
"""

from __future__ import annotations

import re
from typing import Any

from memoryos_workers.memory.similarity import extract_keywords
from memoryos_workers.pipeline.fact_form import cut_at_word
from memoryos_workers.pipeline.fact_quotes import QUOTE_CHARS
from memoryos_workers.testing.fake_llm.schema_answers import generate_from_schema
from memoryos_workers.testing.responders import data_block, schema_name, segmentation_answer

SUMMARY_CHARS = 480  # a short portrait (a few sentences), within PROFILE_SUMMARY_TOKENS (120) round after round
MIN_FACT_WORDS = 4  # shorter first-person sentences ("I know!") state nothing durable

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
# First-person forms in the order they are replaced (longest first), with their third-person form ({s}: the
# subject, lower case; the sentence's first letter is raised at the end).
_PERSON = [
    (r"\bI'm\b", "{s} is"), (r"\bI am\b", "{s} is"), (r"\bI've\b", "{s} has"), (r"\bI'd\b", "{s} would"),
    (r"\bI'll\b", "{s} will"), (r"\bI was\b", "{s} was"), (r"(?i)\bmyself\b", "themself"),
    (r"(?i)\bmine\b", "{s}'s"), (r"(?i)\bmy\b", "{s}'s"), (r"\bme\b", "{s}"), (r"\bI\b", "{s}"),
]
_FIRST_PERSON = re.compile(r"\b(I|I'm|I've|I'd|I'll|my|My)\b")
_SMALL_TALK = re.compile(r"^(hey|hi|hello|thanks|thank you|wow|yeah|yes|no|ok|okay|lol|haha|bye|good ?night)\b",
                         re.IGNORECASE)


def third_person(sentence: str, subject: str = "The user") -> str:
    """The sentence with its first person replaced by `subject` (the fact names whom it is about)."""
    text = sentence.strip().rstrip("!").strip()
    for pattern, replacement in _PERSON:
        text = re.sub(pattern, replacement.format(s=subject.lower()), text)
    text = text[0].upper() + text[1:] if text else text
    return text if text.endswith((".", "?")) else text + "."


def statements(text: str) -> list[str]:
    """The sentences of `text` that state something about the speaker: first person, not a question or
    small talk, long enough to carry a fact."""
    out = []
    for sentence in _SENTENCE.split(text.replace("\n", " ")):
        s = sentence.strip()
        if (not s or s.endswith("?") or _SMALL_TALK.match(s) or not _FIRST_PERSON.search(s)
                or len(s.split()) < MIN_FACT_WORDS):
            continue
        out.append(s)
    return out


def _facts(pages: list[dict[str, Any]], side: str, subject: str, limit: int) -> list[dict[str, str]]:
    """The best `limit` statements of one side, one per page first (the longest), in page order."""
    found: list[tuple[int, int, str, str, str]] = []  # (length, page index, text, date, quote)
    for page in pages:
        best = sorted(statements(str(page.get(side, ""))), key=len, reverse=True)[:1]
        for s in best:
            found.append((len(s), int(page.get("index", 0)), third_person(s, subject), str(page.get("time", ""))[:10],
                          cut_at_word(s, QUOTE_CHARS)))
    chosen = sorted(sorted(found, key=lambda f: -f[0])[:limit], key=lambda f: f[1])
    # The quote (the statement it restates) goes where the schema has one (user facts); _complete drops it elsewhere.
    return [{"quote": quote, "text": text, "date": date} for _, _, text, date, quote in chosen]


def _summary(current: str, facts: list[dict[str, str]]) -> str:
    """The current summary's sentences plus the new facts, newest kept when over SUMMARY_CHARS."""
    sentences = [s for s in _SENTENCE.split(current.strip()) if s] + [f["text"] for f in facts]
    kept: list[str] = []
    for sentence in reversed(sentences):
        if sentence in kept:
            continue
        if sum(len(s) + 1 for s in kept) + len(sentence) > SUMMARY_CHARS:
            break
        kept.append(sentence)
    return " ".join(reversed(kept)) or "The user has said little about themself so far."


def _limits(request: dict[str, Any]) -> tuple[int, int, int]:
    """How many user facts, assistant facts and traits the request's schema allows."""
    schema = _schema(request)
    props = schema.get("properties", {})
    traits = props.get("profile", {}).get("properties", {}).get("traits", {})
    return (int(props.get("user_facts", {}).get("maxItems", 24)),
            int(props.get("assistant_facts", {}).get("maxItems", 8)), int(traits.get("maxItems", 10)))


def _schema(request: dict[str, Any]) -> dict[str, Any]:
    fmt = request.get("response_format") or {}
    return dict((fmt.get("json_schema") or {}).get("schema") or {})


def _complete(value: Any, schema: dict[str, Any]) -> Any:
    """`value` with every property the schema requires and it lacks filled by the schema's simplest value,
    and every property the schema does not allow removed."""
    if not schema:
        return value
    if isinstance(value, dict) and schema.get("type") == "object":
        props = schema.get("properties", {})
        out = {k: _complete(v, props[k]) for k, v in value.items() if k in props}
        for name in schema.get("required", []):
            if name not in out:
                out[name] = generate_from_schema(props[name])
        return out
    if isinstance(value, list) and "items" in schema:
        items = [_complete(v, schema["items"]) for v in value]
        return items[: schema.get("maxItems", len(items))]
    return value


def _recurring(texts: list[str], limit: int) -> list[str]:
    """Content words said on at least two pages (a trait recurs), most frequent first; with fewer than
    three pages, the top words of what there is."""
    per_page = [set(extract_keywords([t], limit=12)) for t in texts if t]
    ranked = extract_keywords(texts, limit=4 * limit)
    if len(per_page) < 3:
        return ranked[: min(limit, 3)]
    return [w for w in ranked if sum(w in words for words in per_page) >= 2][:limit]


def persona_answer(data: dict[str, Any], request: dict[str, Any] | None = None) -> dict[str, Any]:
    """The persona answer for the pages of `data` (see the module's docstring)."""
    request = request or {}
    current = data.get("current_profile") or {"summary": "", "traits": []}
    pages = list(data.get("pages") or [])
    n_user, n_assistant, n_traits = _limits(request)
    user_facts = _facts(pages, "user", "The user", n_user)
    assistant_facts = _facts(pages, "assistant", "The assistant", n_assistant)
    traits = []
    for word in _recurring([str(p.get("user", "")) for p in pages], n_traits):
        evidence = next((f["text"] for f in user_facts if word in f["text"].lower()), "")
        if evidence:
            traits.append({"dimension": f"interest: {word}", "level": "medium", "evidence": evidence})
    answer = {
        "profile": {"summary": _summary(str(current.get("summary") or ""), user_facts[:3]), "traits": traits},
        "user_facts": user_facts,
        "assistant_facts": assistant_facts,
    }
    return _complete(answer, _schema(request))


def persona_responder(request: dict[str, Any]) -> Any:
    """FakeLLM responder: persona calls as above, segmentation calls as the default responder."""
    data = data_block(request)
    if data is None:
        return None
    if schema_name(request) == "persona" or "current_profile" in data:
        return persona_answer(data, request)
    if schema_name(request) == "segmentation" or "pages" in data:
        return segmentation_answer(data)
    return None
