"""The shape of a fact: one short third-person claim, in whole sentences, said once (issue 21).

The real 0.5B model (bench/real_llm_check.py, conv-26's first 120 turns) stored facts that named their
subject and passed every check of pipeline/persona_quality.py, yet were not facts:
- reported lines: "The user said that he went to a LGBTQ support group yesterday ..." (a frame around a
  turn, and a gendered pronoun guessed for a transgender woman);
- cut mid-sentence: "... So, the user started looking into" (the schema's maxLength, FACT_CHARS, which a
  grammar-enforcing server applies by stopping the string wherever it is);
- chat: "Seeing the user's mentee's face light up ... was the best! Such a special moment.";
- near copies: the same line stored twice, once cut a word shorter.
These pure functions repair what can be repaired without changing what the fact says (the frame is removed
only when the pronoun after it is the subject the frame names; the sentences kept are the fact's own, in
order) and tell the rest apart; persona_review applies them, bench/real_llm_check reports them.

What is left: a user fact that still says he/she/his/her of the user ("The user struggled with his health")
cannot be told from one about a third party ("a trans girl and her family"), so no other pronoun is
changed; the prompt asks for none. A frame is removed only after "The user" or "The assistant" and only when
the verb after the pronoun reads the same of "The user" ("they built", "he'd", "he's moved" stay as written);
"Caroline said that she ..." and "The user said that the group ..." stay reported lines, which
bench/real_llm_check reports (persona_checks.fact_form_problems).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from memoryos_workers.pipeline.persona_quality import words
from schemas.words import compute_stems

# Longest fact a model may write, in characters: the persona schema's maxLength (answer_schemas); a server that
# enforces it stops the string there, mid-sentence. OpenAI strict mode refuses the keyword: shape() caps then.
FACT_CHARS = 200
# Longest fact kept, once repaired: FACT_CHARS and what the repairs add to a fact the server capped ("I" -> "the
# user" is 7 characters longer each time). Were it FACT_CHARS, a repaired first sentence of 195 characters would
# be cut by the post-check itself.
STORED_FACT_CHARS = FACT_CHARS + 80
# A fact is one claim: its first sentence, and a second that says more of the same (the model's second
# sentence was "It's a real inspiring true story about a trans girl and her family."); the third and later
# were the turn going on ("They've been instrumental in ...").
MAX_FACT_SENTENCES = 2
# Two facts whose content stems (schemas/words.py) overlap this much are one fact said twice. 0.8: the real
# run's copies ("... So, the user started looking into" / "... So, the user started") share all stems but one
# of 14 (0.93); facts that differ in the one thing they claim do not reach it ("The user lives in Berlin" /
# "... in Paris": 2 of 4, 0.5; "The user adopted a cat named Max in May" / "... in June": 5 of 7, 0.71).
NEAR_COPY = 0.8
# A fact that is the start of another, word for word, is that fact cut shorter; only from this many words
# on ("The user has" starts every fact).
PREFIX_WORDS = 4

_VERBS = r"(?:said|says|mentioned|mentions|told|tells|stated|states|explained|explains|shared|shares|noted|notes)"
# "The user said (that) he ...", "The user told Melanie (that) she ...", "The user mentioned to Melanie that they
# ...": the frame, then the pronoun that is the subject of what was said (group "who").
_FRAME = re.compile(
    r"^(?P<subject>the user|the assistant)\s+" + _VERBS
    + r"(?:\s+(?:to\s+)?(?!that\b|he\b|she\b|they\b|it\b|the\b)[A-Z][\w'-]*)?"  # "told Melanie", "mentioned to Mel"
    + r"(?:\s+that|\s*[:,])?\s+[\"“]?(?P<who>he|she|they|it|the user|the assistant)(?P<rest>\b.*)$",
    re.IGNORECASE | re.DOTALL,
)
# A line reported: a speaker, a verb of saying, perhaps whom to, then what was said ("that", a colon or comma, a
# quote, or a pronoun: "The user said he ..."). "The user shares a flat with Mel" is no report.
_REPORTED = re.compile(r"^(?:(?i:the user|the assistant)|[A-Z][a-z]+)\s+" + _VERBS
                       + r"(?:\s+(?:to\s+)?[A-Z][\w'-]*)??"  # "told Mel", "mentioned to Mel"
                       + r"(?:\s+that\b|\s*[:,]|\s*[\"“]|\s+(?:he|she|they|it|I|(?i:the user|the assistant))\b)")
# After "they", the verb agrees with a plural: said of "The user" it takes the singular. Only these (and past
# tenses, which do not change) are safe to change; "they love" could be "loves" but "they built" is no "builts".
_THEY_VERB = {"are": "is", "were": "was", "have": "has", "do": "does", "don't": "doesn't", "aren't": "isn't",
              "weren't": "wasn't", "haven't": "hasn't"}
_CONTRACTED = {"'s been": " has been", "'s got": " has got", "'s gone": " has gone", "'s": " is", "'ll": " will"}
_ABBREVIATION = re.compile(r"\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|vs|etc|e\.g|i\.e|[A-Z])\.$")
_END_MARK = re.compile(r"[.!?]+[\"”’')]*(?=\s|$)")
_SENTENCE_END = re.compile(r"[.!?]+[\"”’')]*$")


def cut_at_word(text: str, cap: int) -> str:
    """`text` within `cap` characters, cut after the last whole word that fits (no word broken)."""
    if len(text) <= cap:
        return text
    cut = text.rfind(" ", 0, cap + 1)
    return text[: cut if cut > 0 else cap].rstrip(" ,;:-")


def is_reported(fact: str) -> bool:
    """Whether a fact is a line reported ("The user said ...", "Caroline told Mel ..."), not a claim."""
    return bool(_REPORTED.match(fact.strip()))


def strip_frame(fact: str) -> str:
    """"The user said (that) he X" -> "The user X" when the pronoun after the frame is its subject (he, she,
    they, "it" of the assistant, or the subject named again); the verb's tense as written ("he loved" -> "The
    user loved"). The fact as it is when it is no such frame or when the verb after "they" cannot safely be made
    singular, or after a contraction that could be two words ("he'd": had or would)."""
    m = _FRAME.match(fact.strip())
    if m is None:
        return fact.strip()
    subject, who, rest = m.group("subject"), m.group("who").lower(), m.group("rest")
    if (who in ("the user", "the assistant") and who != subject.lower()) or (who == "it" and subject.lower() ==
                                                                              "the user"):
        return fact.strip()  # "The assistant said that the user ...", "The user said it ...": another's claim
    if rest.startswith("'") and who in ("the user", "the assistant"):
        return fact.strip()  # "told the user's mom": a possessive, no subject
    if rest.startswith("'"):  # "he's been", "they've"
        after = (words(rest[2:]) or [""])[0] if rest.startswith("'s") else ""
        if after.endswith("ed"):
            return fact.strip()  # "he's moved" (has) or "he's excited" (is): cannot be told
        table = {"'re": " is", "'ve": " has"} if who == "they" else _CONTRACTED
        short = next((c for c in table if rest.startswith(c)), None)
        if short is None:
            return fact.strip()  # "he'd": had or would, cannot be told
        rest = table[short] + rest[len(short):]
    elif who == "they":
        verb = (words(rest) or [""])[0]
        if verb in _THEY_VERB:
            rest = " " + _THEY_VERB[verb] + rest.strip()[len(verb):]
        elif not ((verb.endswith("ed") and not verb.endswith("eed")) or verb in _PAST):  # "they need": present
            return fact.strip()
    rest = rest.rstrip()
    if rest.endswith(("\"", "”")) and not re.search(r"[\"“]", rest[:-1]):  # the quote the frame opened
        rest = rest[:-1]
    return "The " + subject.split()[1].lower() + rest


_PAST = {"was", "went", "had", "did", "made", "felt", "saw", "took", "found", "met", "got", "became", "began",
         "bought", "left", "lost", "ran", "won", "wrote", "can", "could", "will", "would", "should", "might", "must"}


def sentences(text: str) -> list[str]:
    """The text's sentences, each with its end mark (and a closing quote after it); the last one may be a
    fragment without one. A full stop after a title or an initial ("Dr.", "J.") does not end a sentence."""
    out: list[str] = []
    start = 0
    for m in _END_MARK.finditer(text):
        piece = text[start : m.end()].strip()
        if _ABBREVIATION.search(piece):
            continue
        if piece:
            out.append(piece)
        start = m.end()
    tail = text[start:].strip()
    return [*out, tail] if tail else out


def ends_whole(sentence: str) -> bool:
    return bool(_SENTENCE_END.search(sentence.rstrip()))


def cut_mid_sentence(fact: str) -> bool:
    """A fact of more than one sentence whose last one has no end: cut where a length cap stopped it ("... So,
    the user started looking into"). A one-sentence fact without a full stop is whole (models often leave it
    out)."""
    parts = sentences(fact)
    return len(parts) > 1 and not ends_whole(parts[-1])


def _exclaims(sentence: str) -> bool:
    return sentence.rstrip("\"”’') ").endswith("!")


def shape(fact: str, cap: int = STORED_FACT_CHARS) -> tuple[str, bool]:
    """The fact in its shape: the reporting frame removed (strip_frame), a trailing fragment after a whole
    sentence dropped (cut by a cap: half a claim is not one), exclamations dropped with what follows them (a
    line of chat goes on as chat: "... was the best! Such a special moment."), then at most MAX_FACT_SENTENCES
    whole sentences within `cap`. Also whether it held an exclamation: the caller rejects what remains when it
    does not name its subject. "" when nothing is left."""
    text = strip_frame(fact)
    parts = sentences(text)
    if len(parts) > 1 and not ends_whole(parts[-1]):
        parts = parts[:-1]
    exclaimed = any(_exclaims(p) for p in parts)
    if exclaimed:
        parts = [p for p in parts if not _exclaims(p)]
    kept: list[str] = []
    for part in parts[:MAX_FACT_SENTENCES]:
        if len(" ".join([*kept, part])) > cap:
            break
        kept.append(part)
    if not kept and parts and len(parts[0]) > cap:
        # One sentence longer than the cap (only a server that does not enforce maxLength sends it): cut at the
        # last word that fits, so no word is broken; the claim's start is its subject and verb, kept whole.
        kept = [cut_at_word(parts[0], cap)]
    return " ".join(kept), exclaimed


def near_copy(a: str, b: str) -> bool:
    """Whether two facts are one said twice: one starts the other word for word (PREFIX_WORDS or more), or
    their content stems overlap NEAR_COPY or more (Jaccard)."""
    wa, wb = words(a), words(b)
    if wa == wb:
        return True
    short, long = (wa, wb) if len(wa) <= len(wb) else (wb, wa)
    if len(short) >= PREFIX_WORDS and long[: len(short)] == short:
        return True
    sa, sb = compute_stems(a), compute_stems(b)
    return bool(sa | sb) and len(sa & sb) / len(sa | sb) >= NEAR_COPY


def near_copies(facts: Sequence[str]) -> list[tuple[str, str]]:
    """The pairs of facts that are near copies of each other (bench/real_llm_check reports them)."""
    return [(a, b) for i, a in enumerate(facts) for b in facts[i + 1:] if near_copy(a, b)]
