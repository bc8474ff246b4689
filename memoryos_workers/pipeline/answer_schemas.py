"""What each LLM call may answer, built for that call, and how an answer (or the valid part of one) is read.

A server that enforces the schema (OpenAI strict mode, llama.cpp grammars, vLLM guided decoding, Ollama
`format`) can only produce what the schema allows, so the schema allows exactly what the readers accept:
arrays as long as the batch, topic numbers that name a described topic, bounded counts. Shapes are chosen so
that invalid states cannot be written: each page carries its topic number (instead of topics listing page
indices that would have to partition the batch), and one `anyOf` branch per topic count ties the page's
topic numbers to the number of topics described. Only keywords every provider honours are used (`enum`,
`minItems`/`maxItems`, `anyOf`, `additionalProperties: false`, every property required), and `maxLength` on
the strings a small model rambles in (a theme, the profile summary, a fact): llama.cpp grammars and vLLM
enforce it, so a 0.5B model cannot paste a whole turn as a theme; OpenAI's strict mode refuses the keyword
("'maxLength' is not permitted"), and the client then sends the same schema without string lengths from then
on (llm/completion.py), enforced in every other respect; the profile summary is still capped when merged and a
rambling theme named from its keywords, as for any answer.

Servers that do not enforce it (json_object mode, a model that ignores the schema, an answer cut at the
token limit) can send anything: the readers keep every part that is whole and valid and report the rest as
missing, so the caller asks again only for that, or fills only that from the fallback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, RootModel, ValidationError
from pydantic_core import from_json

from memoryos_workers.memory.similarity import extract_keywords
from memoryos_workers.pipeline.fact_form import FACT_CHARS
from memoryos_workers.pipeline.fact_quotes import QUOTE_CHARS
from memoryos_workers.pipeline.persona_quality import theme_or_keywords
from memoryos_workers.pipeline.trait_form import DIMENSION_CHARS, EVIDENCE_CHARS
from schemas.memory import MAX_TOPICS, PageAnalysis, TopicAnalysis
from schemas.persona import Fact, PersonaExtraction, ProfileUpdate, TraitUpdate
from schemas.turns import Page

MAX_TOPIC_KEYWORDS = 8
MAX_TRAITS_PER_CALL = 10
MAX_ASSISTANT_FACTS = 8
MAX_USER_FACTS = 24
# What an answer costs, for sizing calls to the completion budget (tokens; generous for small models that
# write long summaries): per page of a segmentation answer, per topic, and the persona answer's fixed part.
SEGMENT_ANSWER_PER_PAGE = 70
SEGMENT_ANSWER_PER_TOPIC = 120
PERSONA_FIXED_TOKENS = 600  # the profile's summary and MAX_TRAITS_PER_CALL traits
PERSONA_FACT_TOKENS = 60  # a user fact's quote (a few words, at most QUOTE_CHARS) and its text
# Longest strings, in characters (the json_schema's maxLength): a theme of a few words, a summary that stays
# within PROFILE_SUMMARY_TOKENS (120) however it is tokenised; a fact's, FACT_CHARS, is fact_form's (a grammar stops
# the string at it mid-sentence: the post-check keeps its whole sentences).
THEME_CHARS = 60
SUMMARY_CHARS = 420


class AnyJSON(RootModel[Any]):
    """Accepts any JSON: the per-call readers below decide what of it is used."""


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def _array(items: dict[str, Any], low: int, high: int) -> dict[str, Any]:
    return {"type": "array", "items": items, "minItems": low, "maxItems": high}


_STRING = {"type": "string"}


# -- segmentation ------------------------------------------------------------------------------------


def max_topics(n_pages: int) -> int:
    return max(1, min(MAX_TOPICS, n_pages))


def segmentation_schema(n_pages: int) -> dict[str, Any]:
    """`analysis` is one of min(4, n) shapes, one per topic count k: exactly k topics, then exactly n pages
    in batch order, each naming one of the k topics."""
    if n_pages < 1:
        raise ValueError("a segmentation call needs at least one page")
    topic = _object({
        "theme": {**_STRING, "maxLength": THEME_CHARS},
        "summary": _STRING,
        "keywords": _array(_STRING, 0, MAX_TOPIC_KEYWORDS),
    })

    def branch(k: int) -> dict[str, Any]:
        page = _object({
            "topic": {"type": "integer", "enum": list(range(k))},
            "continues_previous": {"type": "boolean"},
            "chain_summary": _STRING,
        })
        return _object({"topics": _array(topic, k, k), "pages": _array(page, n_pages, n_pages)})

    return _object({"analysis": {"anyOf": [branch(k) for k in range(1, max_topics(n_pages) + 1)]}})


def segmentation_answer_tokens(n_pages: int) -> int:
    """The longest answer a call over n pages is expected to write."""
    return SEGMENT_ANSWER_PER_PAGE * n_pages + SEGMENT_ANSWER_PER_TOPIC * max_topics(n_pages) + 20


@dataclass
class SegmentationRead:
    """The valid part of a segmentation answer over `n` pages (page indices are the call's own, from 0)."""

    n: int
    pages: dict[int, PageAnalysis] = field(default_factory=dict)
    topics: list[TopicAnalysis] = field(default_factory=list)  # with page_indices, only topics in use
    problems: list[str] = field(default_factory=list)

    @property
    def missing(self) -> list[int]:
        return [i for i in range(self.n) if i not in self.pages]

    @property
    def complete(self) -> bool:
        return not self.missing


def parse_partial(text: str) -> Any:
    """The whole values of a JSON text cut anywhere (an answer stopped at the token limit)."""
    try:
        return from_json(text, allow_partial=True)
    except ValueError:
        return None


def read_segmentation(raw: Any, pages: Sequence[Page], shown: Sequence[str] = ()) -> SegmentationRead:
    """Reads what is valid. Everything the schema allows is read whole: blank themes, summaries and
    keywords are filled from the topic's own pages (not an error: the schema cannot forbid them), and so is a
    theme that copies a turn (persona_quality.theme_is_copy) or anything else the call was shown (`shown`: the
    previous page and the nearby segments' summaries; the real 0.5B model named a later batch's topic "gender
    identity and inclusion", 4 words of a turn of an earlier batch that a nearby summary carried)."""
    read = SegmentationRead(n=len(pages))
    body = raw.get("analysis", raw) if isinstance(raw, dict) else None
    if not isinstance(body, dict):
        read.problems.append("the answer is not an object with `analysis`")
        return read
    topics_raw = body.get("topics") if isinstance(body.get("topics"), list) else []
    pages_raw = body.get("pages") if isinstance(body.get("pages"), list) else []
    described = [_topic_fields(t) for t in topics_raw[:MAX_TOPICS]]
    if len(topics_raw) > MAX_TOPICS:
        read.problems.append(f"{len(topics_raw)} topics, only the first {MAX_TOPICS} are read")
    if len(pages_raw) != len(pages):
        read.problems.append(f"{len(pages_raw)} page analyses for {len(pages)} pages")
    chosen: dict[int, int] = {}  # page index -> topic number in the answer
    said = [p.user_input for p in pages] + [p.agent_response for p in pages] + list(shown)
    for i, item in enumerate(pages_raw[: len(pages)]):
        parsed = _page_fields(item, len(described))
        if parsed is None or described[parsed[0]] is None:
            continue
        chosen[i] = parsed[0]
        read.pages[i] = PageAnalysis(index=i, continues_previous=parsed[1], chain_summary=parsed[2])
    if read.missing:
        read.problems.append(f"pages {read.missing} have no valid analysis")
    for number in sorted(set(chosen.values())):
        theme, summary, keywords = described[number]  # type: ignore[misc]
        members = [i for i, t in chosen.items() if t == number]
        texts = [pages[i].user_input + " " + pages[i].agent_response for i in members]
        keywords = keywords or extract_keywords(texts, limit=MAX_TOPIC_KEYWORDS)
        theme = theme_or_keywords(theme, keywords, said)  # a chat fragment is no theme (a small model's habit)
        theme = theme or (" ".join(keywords[:3]) if keywords else "Conversation")
        summary = summary or f"{theme}: " + " / ".join(pages[i].user_input.strip()[:120] for i in members[:3])
        read.topics.append(TopicAnalysis(theme=theme, summary=summary, keywords=keywords, page_indices=members))
    read.topics = _one_per_theme(read.topics)
    return read


def _one_per_theme(topics: Sequence[TopicAnalysis]) -> list[TopicAnalysis]:
    """Topics of one answer named alike are one topic (pages, summaries and keywords joined). The real 0.5B
    model's first batch of conv-26 gave 4 topics in two pairs of one name ("painting colors blend", "relaxation
    expressing yourself swimming", named from their keywords): stored as 4 segments, each later batch's topic
    then joined one half or the other of the same subject."""
    out: dict[str, TopicAnalysis] = {}
    for topic in topics:
        key = " ".join(topic.theme.lower().split())
        first = out.get(key)
        if first is None:
            out[key] = topic
            continue
        summary = first.summary if topic.summary in first.summary else f"{first.summary} {topic.summary}"
        keywords = list(dict.fromkeys([*first.keywords, *topic.keywords]))[:MAX_TOPIC_KEYWORDS]
        out[key] = first.model_copy(update={"summary": summary, "keywords": keywords,
                                            "page_indices": sorted([*first.page_indices, *topic.page_indices])})
    return list(out.values())


def _topic_fields(item: Any) -> tuple[str, str, list[str]] | None:
    if not isinstance(item, dict):
        return None
    theme, summary, keywords = item.get("theme"), item.get("summary"), item.get("keywords")
    if not (isinstance(theme, str) and isinstance(summary, str) and isinstance(keywords, list)):
        return None
    words = [w for w in keywords if isinstance(w, str) and w.strip()][:MAX_TOPIC_KEYWORDS]
    return theme.strip(), summary.strip(), words


def _page_fields(item: Any, n_topics: int) -> tuple[int, bool, str] | None:
    if not isinstance(item, dict):
        return None
    topic, continues, chain = item.get("topic"), item.get("continues_previous"), item.get("chain_summary")
    if isinstance(topic, bool) or not isinstance(topic, int) or not 0 <= topic < n_topics:
        return None
    if not isinstance(continues, bool) or not isinstance(chain, str):
        return None
    return topic, continues, chain.strip()


# -- persona -----------------------------------------------------------------------------------------


def persona_limits(n_pages: int, completion_tokens: int = 2048) -> tuple[int, int]:
    """How many user and assistant facts one call may return: enough for the pages, bounded so the
    answer (profile, traits and facts of about PERSONA_FACT_TOKENS each) fits the completion budget."""
    room = max(3, (completion_tokens - PERSONA_FIXED_TOKENS) // PERSONA_FACT_TOKENS)
    user = max(2, min(MAX_USER_FACTS, 2 * n_pages, room * 3 // 4))
    return user, max(1, min(MAX_ASSISTANT_FACTS, n_pages, room - user))


def persona_schema(n_pages: int, completion_tokens: int = 2048, shown: Sequence[str] = (),
                   traits: Sequence[str] = ()) -> dict[str, Any]:
    """`shown`: the short ids of the current facts in the prompt. A user fact may name only those in
    `supersedes`/`confirms`, and `retired` only those (an enum: a schema-enforcing server cannot name a fact
    it was not shown); with none shown the lists must stay empty. `traits`: the shown traits' short ids, the
    only ones a trait's `id` may name ("" for a new trait)."""
    user_facts, assistant_facts = persona_limits(n_pages, completion_tokens)
    ids = _array({"type": "string", "enum": list(shown)}, 0, len(shown)) if shown else _array(_STRING, 0, 0)
    text = {**_STRING, "maxLength": FACT_CHARS}
    # The quote first: a grammar-constrained model writes properties in order, so it copies the user's words
    # before it restates them (pipeline/fact_quotes.py).
    user_fact = _object({"quote": {**_STRING, "maxLength": QUOTE_CHARS}, "text": text, "date": _STRING,
                         "page": {"type": "integer", "enum": list(range(n_pages))},
                         "supersedes": ids, "confirms": ids})
    fact = _object({"text": text, "date": _STRING})
    trait = _object({"id": {"type": "string", "enum": ["", *traits]},
                     "dimension": {**_STRING, "maxLength": DIMENSION_CHARS},
                     "level": {"type": "string", "enum": ["low", "medium", "high"]},
                     "evidence": {**_STRING, "maxLength": EVIDENCE_CHARS},
                     "page": {"type": "integer", "enum": list(range(n_pages))}})
    return _object({
        "profile": _object({"summary": {**_STRING, "maxLength": SUMMARY_CHARS},
                            "traits": _array(trait, 0, MAX_TRAITS_PER_CALL)}),
        "user_facts": _array(user_fact, 0, user_facts),
        "retired": ids,
        "assistant_facts": _array(fact, 0, assistant_facts),
    })


def read_persona(raw: Any) -> PersonaExtraction | None:
    """The profile when it is whole, with every whole fact; None when the profile itself is not valid
    (nothing of the answer can be used without it). A fact's links that are not lists of strings are
    dropped, not the fact; which ids count is the caller's (the ones it showed)."""
    if not isinstance(raw, dict):
        return None
    try:
        profile = ProfileUpdate(
            summary=_valid_str(raw.get("profile", {}), "summary"),
            traits=[t for t in map(_trait, _list((raw.get("profile") or {}).get("traits"))) if t is not None
                    ][:MAX_TRAITS_PER_CALL],
        )
    except (ValidationError, TypeError, AttributeError, KeyError):
        return None
    return PersonaExtraction(
        profile=profile,
        user_facts=[f for f in map(_linked, _list(raw.get("user_facts"))) if f is not None][:MAX_USER_FACTS],
        assistant_facts=_valid_items(Fact, [_plain(f) for f in _list(raw.get("assistant_facts"))
                                            if isinstance(f, dict)])[:MAX_ASSISTANT_FACTS],
        retired=_ids(raw.get("retired")),
    )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _ids(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {"text": item.get("text"), "date": item.get("date")}


def _linked(item: Any) -> Fact | None:
    if not isinstance(item, dict):
        return None
    page, quote = item.get("page"), item.get("quote")
    try:
        return Fact(**_plain(item), page=page if isinstance(page, int) and not isinstance(page, bool) else None,
                    quote=quote if isinstance(quote, str) else "",
                    supersedes=_ids(item.get("supersedes")), confirms=_ids(item.get("confirms")))
    except ValidationError:
        return None


def _trait(item: Any) -> TraitUpdate | None:
    """A whole trait; its `id` and `page` when they are of the right type (older answers have neither)."""
    if not isinstance(item, dict):
        return None
    short, page = item.get("id"), item.get("page")
    try:
        return TraitUpdate(dimension=item.get("dimension"), level=item.get("level"), evidence=item.get("evidence"),
                           id=short if isinstance(short, str) else "",
                           page=page if isinstance(page, int) and not isinstance(page, bool) else None)
    except ValidationError:
        return None


def _valid_str(obj: Any, name: str) -> str:
    value = obj[name]
    if not isinstance(value, str):
        raise TypeError(name)
    return value


def _valid_items(model: type[BaseModel], items: Any) -> list[Any]:
    out = []
    for item in items if isinstance(items, list) else []:
        try:
            out.append(model.model_validate(item))
        except ValidationError:
            continue
    return out
