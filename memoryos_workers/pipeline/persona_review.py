"""The post-check of a persona answer, before anything of it is stored (paper section 3.3's long-term tier).

A schema-enforcing server guarantees the answer's shape, not that it is a persona: a small model wrote a
line of chat as the profile summary and copied turns as facts (pipeline/persona_quality.py has the checks).
Here each answer is reviewed: facts whose only fault is the grammatical person are said in the third
person, facts are put in their shape (pipeline/fact_form.py: no "The user said that he ...", whole sentences,
no exclamations, one fact said once), facts that cannot tell whom they are about are dropped, the summary
keeps its sentences that describe the user. When the summary is rejected or most facts are, the call is asked
ONCE more with the reasons appended (counted under the purpose "retry"); the second answer is reviewed the
same way and only what passes is kept. It never loops. A summary sentence or fact the call's input does not
support (persona_quality.grounded: invented; an assistant fact must be supported by the assistant's own lines)
is dropped without a retry: a model that invents does so again, and the call's cost stays the design's.
Counted (persona_facts_repaired, persona_facts_rejected, persona_summaries_rejected, persona_quality_retries,
persona_facts_near_copies, persona_facts_chat, persona_facts_quoted, persona_traits_invented,
persona_traits_copied) and logged by user id only: no content in logs. The user's facts, summary and traits
must be said in the user's own lines or what memory already holds about the user; traits are put in their shape
(pipeline/trait_form.py). A user fact whose text fails but whose quote stands in a user line is kept as that
line says it (pipeline/fact_quotes.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from memoryos_workers.llm.base import LLM, LLMError, LLMTruncated
from memoryos_workers.llm.spend import Spend
from memoryos_workers.pipeline.answer_schemas import AnyJSON, parse_partial, read_persona
from memoryos_workers.pipeline.fact_form import near_copy, sentences, shape
from memoryos_workers.pipeline.fact_quotes import quoted_sentences
from memoryos_workers.pipeline.persona_quality import (
    Memory,
    claims_nothing,
    fact_without_subject,
    grounded,
    grounded_sentences,
    is_chat_sentence,
    refusal,
    repair_fact,
    repair_summary,
    source_stems,
    trim_summary,
    words,
)
from memoryos_workers.pipeline.trait_form import review_traits
from schemas.persona import Fact, PersonaExtraction
from schemas.turns import Page

log = logging.getLogger("memoryos.persona")

USER_SUBJECT = "The user"
# An assistant fact whose subject is the user ("Lately, the user has been ..."): the real 0.5B model put user
# facts in the assistant's list, where they would stand as the assistant's and twice beside the user's.
_ABOUT_THE_USER = re.compile(r"^\W*(\w+,\s*)?the user\b", re.IGNORECASE)
ASSISTANT_SUBJECT = "The assistant"


@dataclass
class Review:
    """What of one answer passes, and why the rest did not."""

    value: PersonaExtraction
    repaired: int = 0
    rejected: int = 0
    written: int = 0  # facts the model wrote
    invented_facts: int = 0  # dropped as not supported by what the call was shown
    invented_sentences: int = 0
    near_copies: int = 0  # facts that were another fact of the answer, or a shown one, said again
    # Dropped as chat without a retry (as invented ones are): the retry asks for named subjects, and a line of
    # exclamations asked again is another; counted among `rejected` it made the test model's every "The user
    # said: <line>" answer a retry (bench llm_cost, regular mode: 13.5 calls per 100 promoted turns, over 12).
    chat: int = 0
    quoted: int = 0  # user facts whose text failed, kept as their quote's user line says them (fact_quotes)
    invented_traits: int = 0  # evidence not said in the user's lines or what memory holds (trait_form)
    copied_traits: int = 0  # evidence another trait of the answer has, or a field name for a dimension
    summary_rejected: bool = False
    reasons: list[str] = field(default_factory=list)

    @property
    def needs_retry(self) -> bool:
        return self.summary_rejected or (self.rejected >= 2 and 2 * self.rejected > self.written)


def _passing(text: str, subject: str, sources: frozenset[str], memory: Memory | None) -> tuple[str, str]:
    """The fact's text in its shape and "" when it passes; else "" and why not: "rejected" (no subject: a
    retry asks for one), "chat" (a refusal, or nothing with a subject left once its exclamations are dropped:
    "... was the best! Such a special moment.") or "invented" (not said in the call's input)."""
    if refusal(text):  # the model declined: nothing about anyone, and asking again would not help
        return "", "chat"
    repaired = repair_fact(text, subject)
    if repaired is None:
        return "", "rejected"
    shaped, _ = shape(repaired)
    if not shaped or fact_without_subject(shaped) or claims_nothing(shaped):
        return "", "chat"
    if not grounded(shaped, sources, memory):
        return "", "invented"
    return shaped, ""


def _from_quote(fact: Fact, subject: str, lines: Sequence[str]) -> str:
    """The fact as its quote's user line says it, in the third person (pipeline/fact_quotes.py); "" when the
    quote is in no user line or that line says nothing with a subject (a question, small talk)."""
    source = quoted_sentences(fact.quote, lines) if fact.quote else None
    if not source:
        return ""
    claims = " ".join(s for s in sentences(source) if not is_chat_sentence(s))
    # The same checks as the model's own text, against the quoted line (which says it by construction).
    shaped, why = _passing(claims, subject, source_stems([source]), None) if claims else ("", "chat")
    return "" if why or is_chat_sentence(shaped) else shaped


def _facts(facts: Sequence[Fact], subject: str, sources: frozenset[str], known: Sequence[str] = (),
           memory: Memory | None = None, lines: Sequence[str] = ()) -> tuple[list[Fact], dict[str, int]]:
    """The facts that pass (repaired where only their person or their shape is wrong: fact_form.shape), and
    counts: repaired, rejected (no subject), invented, near copies, chat (_passing) and quoted (a fact whose
    text failed, said as its quote's user line says it: `lines`, the user's lines, only for user facts). A
    fact said twice in one answer (a small model loops, or writes a line again cut shorter) is one fact: the
    longer is kept, the other dropped, not rejected. A near copy of a `known` fact (one the call was shown)
    takes that fact's text: the store then finds it as its own nearest neighbour and confirms it
    (PersonaStore.add_facts), instead of storing it a second time in other words."""
    kept: list[Fact] = []
    counts = dict.fromkeys(("repaired", "rejected", "invented", "copies", "chat", "quoted"), 0)
    for fact in facts:
        shaped, why = _passing(fact.text, subject, sources, memory)
        if why:
            shaped = _from_quote(fact, subject, lines)
            if not shaped:
                counts[why] += 1
                continue
            counts["quoted"] += 1
        same = next((i for i, k in enumerate(kept) if near_copy(k.text, shaped)), None)
        if same is not None:
            counts["copies"] += 1
            if len(shaped) > len(kept[same].text):  # the longer is the whole one ("... started looking into")
                kept[same] = fact.model_copy(update={"text": shaped})
            continue
        stored = next((k for k in known if near_copy(k, shaped) and len(words(k)) >= len(words(shaped))), None)
        if stored is not None:
            counts["copies"] += 1
            shaped = stored.strip()
        elif shaped != fact.text.strip() and not why:
            counts["repaired"] += 1
        kept.append(fact.model_copy(update={"text": shaped}))
    return kept, counts


def review(value: PersonaExtraction, pages: Sequence[Page], known: Sequence[str] = (),
           assistant_known: Sequence[str] = (), known_facts: Sequence[str] = ()) -> Review:
    """The answer with its repairs applied and its rejected parts removed (a rejected summary is left empty:
    the profile merge then keeps the stored one). `known`: what else the call was shown about the user (the
    stored summary, traits and user facts), which the summary and user facts may restate; `assistant_known`:
    the assistant facts it was shown, which assistant facts may restate; `known_facts`: the user facts it was
    shown, of which a near copy becomes a confirmation (_facts)."""
    turns = [p.user_input for p in pages] + [p.agent_response for p in pages]
    # What the user is, has or did comes from the user's own lines and what memory already holds about the user,
    # not from the assistant's: the 0.5B model wrote the assistant's "I ran a charity race" into the user's
    # summary ("She recently ran a charity race ...") and into every trait's evidence.
    # Memory (`known`) supports only words a claim restates, never its unsaid ones (persona_quality.grounded).
    sources, memory = source_stems(p.user_input for p in pages), Memory.of(known)
    user, u = _facts(value.user_facts, USER_SUBJECT, sources, known_facts, memory, [p.user_input for p in pages])
    # What the assistant is or did comes from its own lines and shown assistant facts, not from `known`: the
    # 0.5B model credited user lines, shown user facts and the profile's words to the assistant.
    said_by_assistant = source_stems(p.agent_response for p in pages)
    mine = [f for f in value.assistant_facts if not _ABOUT_THE_USER.match(f.text)]
    assistant, a = _facts(mine, ASSISTANT_SUBJECT, said_by_assistant, assistant_known, Memory.of(assistant_known))
    a["rejected"] += len(value.assistant_facts) - len(mine)  # about the user in the assistant's list: not its own
    written = value.profile.summary.strip()
    summary = repair_summary(written, turns, USER_SUBJECT) if written else ""
    summary_rejected = bool(written) and not summary
    summary, invented = grounded_sentences(summary, sources, memory)
    summary = trim_summary(summary)
    traits, traits_invented, traits_copied = review_traits(value.profile.traits, sources, memory)
    profile = value.profile.model_copy(update={"summary": summary, "traits": traits})
    out = Review(
        value=value.model_copy(update={"profile": profile, "user_facts": user, "assistant_facts": assistant}),
        repaired=u["repaired"] + a["repaired"], rejected=u["rejected"] + a["rejected"],
        written=len(value.user_facts) + len(value.assistant_facts), summary_rejected=summary_rejected,
        invented_facts=u["invented"] + a["invented"], invented_sentences=invented,
        near_copies=u["copies"] + a["copies"], chat=u["chat"] + a["chat"], quoted=u["quoted"],
        invented_traits=traits_invented, copied_traits=traits_copied,
    )
    if out.summary_rejected:
        out.reasons.append("The profile summary was a line of chat (first person, a question, words addressed to "
                           "someone, a pronoun for its subject, or a turn copied as said). Write it as 2-4 sentences "
                           "about the user in the third person, each starting with 'The user', in your own words.")
    if out.rejected:
        out.reasons.append(f"{out.rejected} of {out.written} facts did not say whom they are about (they opened with "
                           "a pronoun or an exclamation, or spoke as 'I' or 'we'). Start every user fact with the "
                           "user's name or 'The user' and every assistant fact with 'The assistant'; leave out small "
                           "talk.")
    return out


def retry_messages(messages: Sequence[dict[str, str]], reasons: Sequence[str]) -> list[dict[str, str]]:
    """The same prompt with the reasons appended to its last message (no stored text in them)."""
    *head, last = [dict(m) for m in messages]
    last["content"] += "\nYour previous answer was rejected: " + " ".join(reasons) + " Answer again."
    return [*head, last]


def reviewed(
    value: PersonaExtraction,
    pages: Sequence[Page],
    ask: Callable[[list[str]], PersonaExtraction | None],
    count: Callable[..., None],
    user_id: str,
    known: Sequence[str] = (),
    assistant_known: Sequence[str] = (),
    known_facts: Sequence[str] = (),
) -> PersonaExtraction:
    """The answer's parts that pass; asks once more through `ask(reasons)` (None: no second answer) when the
    summary or most facts are rejected, keeping the better reviewed summary and facts of the two."""
    first = review(value, pages, known, assistant_known, known_facts)
    counters = {"persona_facts_repaired": first.repaired, "persona_facts_rejected": first.rejected,
                "persona_summaries_rejected": int(first.summary_rejected),
                "persona_facts_invented": first.invented_facts,
                "persona_summary_sentences_invented": first.invented_sentences,
                "persona_facts_near_copies": first.near_copies, "persona_facts_chat": first.chat,
                "persona_facts_quoted": first.quoted,
                "persona_traits_invented": first.invented_traits, "persona_traits_copied": first.copied_traits}
    best = first
    if first.needs_retry:
        log.info("persona answer for user %s rejected (summary: %s, %d of %d facts); asking once more",
                 user_id, first.summary_rejected, first.rejected, first.written)
        counters["persona_quality_retries"] = 1
        again = ask(first.reasons)
        if again is not None:
            second = review(again, pages, known, assistant_known, known_facts)
            counters["persona_facts_invented"] += second.invented_facts
            counters["persona_summary_sentences_invented"] += second.invented_sentences
            counters["persona_facts_near_copies"] += second.near_copies
            counters["persona_facts_chat"] += second.chat
            counters["persona_facts_quoted"] += second.quoted
            counters["persona_traits_invented"] += second.invented_traits
            counters["persona_traits_copied"] += second.copied_traits
            counters["persona_second_facts_rejected"] = second.rejected
            counters["persona_second_summaries_rejected"] = int(second.summary_rejected)
            best = _better(first, second)
    count(**{k: v for k, v in counters.items() if v})
    return best.value


def _better(first: Review, second: Review) -> Review:
    """The second answer, with the first's summary when only the first has one, or the first's facts when
    more of them passed."""
    value = second.value
    if not value.profile.summary and first.value.profile.summary:
        value = value.model_copy(update={"profile": first.value.profile})
    kept = len(first.value.user_facts) + len(first.value.assistant_facts)
    if kept > len(value.user_facts) + len(value.assistant_facts):
        value = value.model_copy(update={k: getattr(first.value, k) for k in
                                         ("user_facts", "assistant_facts", "retired")})
    return Review(value=value)


def ask_again(llm: LLM, messages: Sequence[dict[str, str]], schema: dict[str, Any], max_tokens: int,
              spend: Spend, check: Callable[[AnyJSON], None]) -> Callable[[list[str]], PersonaExtraction | None]:
    """`ask` for reviewed(): one call with the reasons appended, counted as a retry; its answer read as the
    first was (a cut answer's whole parts kept); None when it fails (the first answer's parts stand)."""

    def ask(reasons: list[str]) -> PersonaExtraction | None:
        sent = retry_messages(messages, reasons)
        room = max_tokens - max(0, llm.count_tokens(sent) - llm.count_tokens(list(messages)))
        try:
            answer = llm.structured(sent, AnyJSON, name="persona", schema=schema, max_tokens=room, check=check)
        except LLMTruncated as exc:
            spend.add("retry", exc.usage)
            return read_persona(parse_partial(exc.partial_text))
        except LLMError as exc:
            spend.add("retry", exc.usage)
            log.warning("the persona retry failed (%s); keeping what passed of the first answer", type(exc).__name__)
            return None
        spend.add("retry", answer.usage)
        return read_persona(answer.value.root)

    return ask
