"""What goes into a prompt with a token budget. Every candidate costs the tokens of its line(s)
(schemas.tokens, characters / 4) and is worth what it adds to the answer, so the context is chosen by
value per token:

* recent dialogue first, newest turn first, without gaps, up to a share of the budget;
* pages by their retrieval score, each if it still fits (value per token with the cost's weight tuned:
  `PackingParams.length_exponent`), leaving the persona's share and the derived reserve;
* the long-term persona in its own share (`PackingParams.persona_share`, MEMORYOS_PERSONA_SHARE), as the
  paper's prompt always carries it: the profile's summary (cut to the share if it is longer), then the
  traits and facts the query touches that say what the chosen pages do not; what the share leaves goes on;
* then what is derived from the dialogue (a topic's summary, a chain's overview, the profile, facts),
  each worth its relevance times the share of its words the chosen pages do not already say, within a
  reserve; a summary that repeats its pages is left out, and a segment's summary is said once;
* whatever budget is left goes to more pages; a page said at the time of the page above it is rendered
  without repeating that time (render.py), so the room this frees goes to more pages, each kept only
  if the whole prompt still fits.

A turn is never in the prompt twice, and the parts returned hold exactly what the prompt holds. The pages
given may be a retrieval's `PageCandidate`s: those kept are returned as `RetrievedPage` models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from producers.context.parts import AnyPage, PageCandidate, Parts, RetrievedPage
from producers.context.prompt_size import PromptSize
from producers.context.render import (
    chain_line,
    dialogue_line,
    fact_line,
    profile_summary_line,
    render,
    topic_line,
    trait_line,
)
from schemas.settings import DEFAULT_PERSONA_SHARE
from schemas.tokens import estimate_tokens, tokens_for_chars
from schemas.turns import Page
from schemas.words import content_stems, page_text, stems_for, trait_text


@dataclass(frozen=True)
class PackingParams:
    """How a budget is shared out. Chosen on LoCoMo conv-26 and checked on conv-30 (bench/context.py); both
    are in-sample: conv-30 was looked at while choosing (segment neighbours were kept on its figures)."""

    short_term_share: float = 0.25  # recent dialogue may take up to this share of the budget
    # The long-term persona's share (profile summary, relevant traits and facts), so a user with a profile
    # has it in every prompt instead of competing with pages on a measure that only counts dialogue.
    persona_share: float = DEFAULT_PERSONA_SHARE
    derived_share: float = 0.05  # summaries, profile and facts may take this share before pages take the rest
    min_novelty: float = 0.3  # a derived text must say at least this share of words the pages do not
    # An item's priority is value / tokens**this. 1 is value per token; 0 is value order, where the cost
    # only decides what still fits. Measured on conv-26 (bench/context.py, variant "value per token"): 0 held
    # more evidence at every budget (at short-term capacity 10 with the persona share: 0.55 against 0.42 at
    # 500 tokens, 0.82 against 0.76 at 2,000), since a short page is no more likely to be the evidence than a
    # long one of the same rank.
    length_exponent: float = 0.0
    profile_value: float = 0.5  # worth of the profile's summary (no query relevance to go by)
    trait_base: float = 0.2  # worth of a trait the query does not touch; up to 1 as it touches it
    fact_default: float = 0.3  # worth of a fact that came without a similarity score
    # A fact less similar to the query than this is not about it. all-MiniLM-L6-v2 scores a plain question
    # low against the fact that answers it ("What is her job now?" / "The user works as a principal.": 0.23;
    # python -m bench facts), so 0.25 kept 4 of 10 current facts out of the default prompt; 0.15 keeps them.
    min_fact_score: float = 0.15


DEFAULT_PACKING = PackingParams()
TOP_UP_MISSES = 3  # pages tried in vain before the top-up stops (each try renders the prompt once)


@dataclass(slots=True)
class _Item:
    kind: str  # page, topic, chain, profile, trait, user_fact, assistant_fact
    key: Any
    text: str  # what it renders as (one or more lines)
    value: float
    words: set[str] = field(default_factory=set)
    source: str = ""  # the stored text as kept, when it is not the whole (a profile summary cut to its share)
    tokens: int = field(init=False)  # asked for by every sort and fit test: counted once, when made

    def __post_init__(self) -> None:
        self.tokens = estimate_tokens(self.text + "\n")


def fit(ctx: Parts, max_tokens: int, params: PackingParams = DEFAULT_PACKING,
        max_pages: int | None = None) -> Parts:
    """The parts cut to `max_tokens` by value per token (see the module's docstring), with at most
    `max_pages` pages besides the recent dialogue."""
    empty = Parts(query=ctx.query)
    room = max_tokens - estimate_tokens(render(empty))
    if room <= 0:
        return empty
    persona_room = int(room * params.persona_share) if _has_persona(ctx) else 0
    short_term, used = _recent(ctx.short_term, int(room * params.short_term_share))
    room -= used
    seen = {p.turn_id for p in short_term}
    pages = [p for p in _unique(ctx.pages) if p.turn_id not in seen][:max_pages]
    chosen: dict[str, _Item] = {}
    page_items = _page_items(pages)
    reserve = int(room * params.derived_share)
    room -= _greedy(page_items, room - reserve - persona_room, chosen, params.length_exponent)
    persona = _persona_candidates(ctx, params)  # both shares weigh the same candidates: rendered once
    room -= _persona_share(ctx, pages, chosen, params, persona_room, persona)
    # The reserve and what the pages left compete by value per token: derived texts and the other pages.
    derived = _derived_items(ctx, pages, chosen, params, persona)
    _greedy(derived + page_items, room, chosen, params.length_exponent)
    fitted = _assemble(ctx, short_term, pages, chosen)
    # The estimates of the parts add up to the whole up to rounding; should the whole still be over (a
    # non-additive estimate), the least valuable items go until it fits.
    chars = len(render(fitted))
    while tokens_for_chars(chars) > max_tokens and chosen:
        del chosen[min(chosen, key=lambda ident: chosen[ident].value)]
        fitted = _assemble(ctx, short_term, pages, chosen)
        chars = len(render(fitted))
    return _top_up(ctx, short_term, pages, chosen, page_items, max_tokens, fitted, chars, params.length_exponent)


def _top_up(ctx: Parts, short_term: list[Page], pages: Sequence[AnyPage], chosen: dict[str, _Item],
            page_items: list[_Item], max_tokens: int, fitted: Parts, chars: int, exponent: float) -> Parts:
    """More pages into what the estimates left: each line was costed with its time, but a turn listed under
    one of the same time is rendered without it. Most valuable first, each kept only if the whole prompt
    still fits; stops after a few misses. `chars`: the length of `fitted`'s prompt (measured by the caller);
    each page tried is sized by the memory section alone (prompt_size.py). Only pages join, so the rest of
    `fitted` (profile, facts, the summaries kept) stands, and its pages are those kept, as the prompt holds
    them."""
    size = PromptSize(fitted, chars)
    slack = max_tokens - tokens_for_chars(chars)
    by_id = {p.turn_id: p for p in pages}
    kept = {p.turn_id: p for p in fitted.pages}  # as the prompt holds them
    topics, chains = _summaries_kept(chosen)
    misses = 0
    for item in sorted(page_items, key=lambda it: -it.value / max(it.tokens, 1) ** exponent):
        ident = f"page:{item.key}"
        page = by_id[item.key]
        if ident in chosen or item.value <= 0:
            continue
        if estimate_tokens(dialogue_line(page, timed=False) + "\n") > slack:
            continue  # not even without its time
        trial = {**kept, page.turn_id: _as_kept(page, topics, chains)}
        used = size.tokens([trial[p.turn_id] for p in pages if p.turn_id in trial])
        if used <= max_tokens:
            chosen[ident], kept, slack = item, trial, max_tokens - used
            continue
        misses += 1
        if misses >= TOP_UP_MISSES:
            break
    return replace(fitted, pages=[kept[p.turn_id] for p in pages if p.turn_id in kept])


def _unique(pages: Iterable[AnyPage]) -> list[AnyPage]:
    seen: set[str] = set()
    out = []
    for page in pages:
        if page.turn_id not in seen:
            seen.add(page.turn_id)
            out.append(page)
    return out


def _recent(turns: Sequence[Page], room: int) -> tuple[list[Page], int]:
    """The newest turns that fit, without a gap (a conversation read with holes misleads)."""
    kept: list[Page] = []
    used = 0
    seen: set[str] = set()
    for page in reversed(turns):
        if page.turn_id in seen:
            continue
        cost = estimate_tokens(dialogue_line(page) + "\n")
        if used + cost > room:
            break
        kept.append(page)
        seen.add(page.turn_id)
        used += cost
    return kept[::-1], used


def _page_items(pages: Sequence[AnyPage]) -> list[_Item]:
    top = max((p.score for p in pages), default=0.0)
    items = []
    for rank, page in enumerate(pages):
        # Scores are comparable within one result only: relative to the best, by rank when there are none.
        value = page.score / top if top > 0 else 1.0 / (1 + rank)
        items.append(_Item("page", page.turn_id, f"  {dialogue_line(page)}", value))
    return items


def _greedy(items: list[_Item], room: int, chosen: dict[str, _Item], exponent: float) -> int:
    """Adds the items of most value per token that fit in `room`; returns the tokens spent."""
    spent = 0
    # Value order when the cost does not weigh (the default): the same order, without a power per item.
    key = (lambda it: -it.value) if exponent == 0 else (lambda it: -it.value / max(it.tokens, 1) ** exponent)
    for item in sorted(items, key=key):
        ident = f"{item.kind}:{item.key}"
        if ident in chosen or item.value <= 0:
            continue
        if spent + item.tokens <= room:
            chosen[ident] = item
            spent += item.tokens
    return spent


def _has_persona(ctx: Parts) -> bool:
    profile = ctx.user_profile
    return bool((profile is not None and (profile.summary or profile.traits)) or ctx.user_knowledge
                or ctx.assistant_knowledge)


def _said(pages: Sequence[AnyPage], chosen: dict[str, _Item]) -> set[str]:
    """The words the chosen pages already say (a derived text is worth what it adds to them)."""
    said: set[str] = set()
    for page in pages:
        if f"page:{page.turn_id}" in chosen:
            said |= page_stems(page)
    return said


def page_stems(page: AnyPage) -> set[str]:
    """A page's content stems: those its payload keeps when retrieval passed them, else by its text."""
    return _stems(page.stems if isinstance(page, PageCandidate) else None, page_text(page.user_input,
                                                                                      page.agent_response))


def _stems(stored: str | None, text: str) -> set[str]:
    """`text`'s content stems: `stored` (schemas/words.py, joined by spaces) when given, else computed."""
    return set(stored.split()) if stored is not None else content_stems(text)


def _persona_share(ctx: Parts, pages: Sequence[AnyPage], chosen: dict[str, _Item], params: PackingParams,
                   room: int, persona: list[_Candidate]) -> int:
    """Fills the persona's share: the profile's summary whatever the query (cut at a word to the share when
    longer), then the traits and facts the query touches, by value, each if it fits. Returns the tokens spent."""
    if room <= 0:
        return 0
    spent = 0
    profile = ctx.user_profile
    if profile is not None and profile.summary:
        summary = _cut_to(profile.summary, room)
        if summary:
            item = _Item("profile", "summary", profile_summary_line(summary), 1.0, source=summary)
            chosen["profile:summary"] = item
            spent += item.tokens
    said = _said(pages, chosen)
    relevant: list[_Item] = []

    def add(kind: str, key: Any, text: str, source: str, relevance: float, touched: bool = True,
            timed: bool = False) -> None:
        words = content_stems(source)
        novelty = _novelty(words, said, timed, params)
        if touched and kind != "profile" and novelty >= params.min_novelty:
            relevant.append(_Item(kind, key, text, relevance * novelty, words))

    for args, options in persona:
        add(*args, **options)
    return spent + _greedy(relevant, room - spent, chosen, params.length_exponent)


def _novelty(words: set[str], said: set[str], timed: bool, params: PackingParams) -> float:
    """The share of a derived text's words the chosen pages do not say. A fact with a time is worth at least
    the minimum: when it held, and whether it still does, is what no page says, whatever its words."""
    novelty = len(words - said) / len(words) if words else 0.0
    return max(novelty, params.min_novelty) if timed else novelty


def _cut_to(summary: str, room: int) -> str:
    """The summary whole when its line fits `room` tokens, else its longest word-boundary prefix that does
    (with an ellipsis); empty when not even a few words fit."""
    if estimate_tokens(profile_summary_line(summary) + "\n") <= room:
        return summary
    words = summary.split()
    low, high = 0, len(words)
    while low < high:
        mid = (low + high + 1) // 2
        if estimate_tokens(profile_summary_line(" ".join(words[:mid]) + " …") + "\n") <= room:
            low = mid
        else:
            high = mid - 1
    return " ".join(words[:low]) + " …" if low >= 3 else ""


def _derived_items(
    ctx: Parts, pages: Sequence[AnyPage], chosen: dict[str, _Item], params: PackingParams,
    persona: list[_Candidate],
) -> list[_Item]:
    """Summaries, profile and facts, each worth its relevance times what it adds to the chosen pages."""
    by_id = {p.turn_id: p for p in pages}
    chosen_pages = [by_id[item.key] for item in chosen.values() if item.kind == "page"]
    said: set[str] = set()
    for page in chosen_pages:
        said |= page_stems(page)
    values = {p.turn_id: chosen[f"page:{p.turn_id}"].value for p in chosen_pages}
    items: list[_Item] = []

    def add(kind: str, key: Any, text: str, source: str, relevance: float, touched: bool = True,
            timed: bool = False, stored: str | None = None) -> None:
        # `stored`: its `text_stems`, when a page candidate had them
        words = _stems(stems_for(stored, source) if stored else None, source)
        novelty = _novelty(words, said, timed, params)
        if novelty >= params.min_novelty:
            items.append(_Item(kind, key, text, relevance * novelty, words))

    topics: dict[str, tuple[str, float, str | None]] = {}
    for page in chosen_pages:
        candidate = page if isinstance(page, PageCandidate) else None
        if page.segment_id and page.segment_summary:
            best = max(values[page.turn_id], topics.get(page.segment_id, ("", 0.0, None))[1])
            topics[page.segment_id] = (page.segment_summary, best, candidate and candidate.segment_stems)
        if page.chain_summary and page.chain_summary != page.segment_summary:
            add("chain", page.turn_id, chain_line(page.chain_summary), page.chain_summary, values[page.turn_id],
                stored=candidate and candidate.chain_stems)
    for segment_id, (summary, best, stored) in topics.items():
        add("topic", segment_id, topic_line(summary), summary, best, stored=stored)
    for args, options in persona:
        add(*args, **options)
    return items


_Candidate = tuple[tuple[Any, ...], dict[str, Any]]


def _persona_candidates(ctx: Parts, params: PackingParams) -> list[_Candidate]:
    """The profile's summary, traits and facts as the arguments each share's `add` weighs them by."""
    out: list[_Candidate] = []
    _persona_items(ctx, params, lambda *args, **options: out.append((args, options)))
    return out


def _persona_items(ctx: Parts, params: PackingParams, add: Callable[..., None]) -> None:
    profile = ctx.user_profile
    if profile is not None:
        if profile.summary:
            add("profile", "summary", profile_summary_line(profile.summary), profile.summary, params.profile_value)
        asked = content_stems(ctx.query)
        for i, trait in enumerate(profile.traits):
            words = content_stems(trait_text(trait.dimension, trait.evidence))
            touched = len(words & asked) / len(asked) if asked else 0.0
            add("trait", i, trait_line(trait), trait_text(trait.dimension, trait.evidence),
                params.trait_base + (1 - params.trait_base) * touched, touched=touched > 0)
    for kind, entries in (("user_fact", ctx.user_knowledge), ("assistant_fact", ctx.assistant_knowledge)):
        for entry in entries:
            relevance = params.fact_default if entry.score is None else max(0.0, min(1.0, entry.score))
            if relevance < params.min_fact_score:
                continue
            add(kind, entry.entry_id, fact_line(entry), entry.text, relevance, timed=bool(entry.window()))


def _assemble(ctx: Parts, short_term: list[Page], pages: Sequence[AnyPage], chosen: dict[str, _Item],
              ) -> Parts:
    """The context of the chosen items only: a dropped summary is blanked on its pages, a dropped trait
    or fact is not in the lists, so the structured fields hold what the prompt holds."""
    topics, chains = _summaries_kept(chosen)
    kept_pages = [_as_kept(p, topics, chains) for p in pages if f"page:{p.turn_id}" in chosen]
    profile = ctx.user_profile
    if profile is not None:
        traits = [t for i, t in enumerate(profile.traits) if f"trait:{i}" in chosen]
        kept = chosen.get("profile:summary")
        summary = (kept.source or profile.summary) if kept is not None else ""
        profile = profile.model_copy(update={"summary": summary, "traits": traits}) if summary or traits else None
    return replace(
        ctx,
        short_term=short_term,
        pages=kept_pages,
        user_profile=profile,
        user_knowledge=[e for e in ctx.user_knowledge if f"user_fact:{e.entry_id}" in chosen],
        assistant_knowledge=[e for e in ctx.assistant_knowledge if f"assistant_fact:{e.entry_id}" in chosen],
    )


def _summaries_kept(chosen: dict[str, _Item]) -> tuple[set[str], set[str]]:
    """The segments whose topic summary and the pages whose chain overview the chosen items keep."""
    topics = {item.key for item in chosen.values() if item.kind == "topic"}
    chains = {item.key for item in chosen.values() if item.kind == "chain"}
    return topics, chains


def _as_kept(page: AnyPage, topics: set[str], chains: set[str]) -> RetrievedPage:
    """The page as the prompt holds it: a summary not kept is blanked (a candidate becomes its model here)."""
    segment = page.segment_summary if page.segment_id in topics else ""
    chain = page.chain_summary if page.turn_id in chains else ""
    if isinstance(page, PageCandidate):
        return page.page(segment, chain)
    return page.model_copy(update={"segment_summary": segment, "chain_summary": chain})
