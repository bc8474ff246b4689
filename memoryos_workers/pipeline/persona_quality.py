"""Whether a persona a model wrote is a persona, and the deterministic repairs that make it one where safe.

A small model (Qwen2.5-Coder-0.5B under llama.cpp, bench/real_llm_check.py) answered the persona call with
chat: the profile summary "I'm feeling a bit overwhelmed with the kids & work. What's up with you?", facts
that were turns copied as said ("Thanks, Melanie! My goal is to give kids a loving home."), themes copied
from turns. The schema cannot forbid that; these checks can see it. They are pure functions, shared by the
pipeline's post-check (pipeline/persona_review.py) and by the real-model benchmark, which reports them.

The checks: the summary describes the user in the third person and is not a copy of a turn (no run of
COPY_WORDS words said the same); a fact names whom it is about (no first person, it does not open with
a pronoun or an exclamation, whose referent is lost once the fact stands alone, and it is not chat
addressed to "you" or a question unless it opens with its subject); a theme is not a chat fragment.
A summary sentence or a fact is also grounded: half of its content words or more, and all but two at
most (5-letter stems, as everywhere, schemas/words.py), appear in what the call's pages say, or it restates
what memory holds (the stored summary, traits and facts: every word said there or in the pages, or one stored
item said again nearly word for word), else it is invented: the 0.5B model wrote "a 25-year-old male ...
anxiety and depression" of a user whose turns say none of it. The repairs change only the grammatical person, never
the content: "I adopted a cat" is "The user adopted a cat" (in a user fact the first person singular is the
user, in an assistant fact the assistant), and a summary keeps its sentences that are not chat. What cannot
be repaired is rejected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from schemas.words import compute_stems

_FIRST_PERSON = re.compile(r"\b(I|I'm|I've|I'd|I'll|[Mm]e|[Mm]y|[Mm]ine|[Mm]yself|[Ww]e|[Oo]urs?|[Oo]urselves|[Uu]s)\b")
_PLURAL = re.compile(r"\b(we|our|ours|us|ourselves|we're|we've|we'd|we'll)\b", re.IGNORECASE)
_SECOND_PERSON = re.compile(r"\b(you|your|yours|yourself|you're|you've|you'd|you'll)\b", re.IGNORECASE)
_PRONOUN_START = {"i", "he", "she", "they", "it", "we", "you", "my", "his", "her", "their", "our", "your",
                  "this", "that", "there", "that's", "it's", "i'm", "wow", "yes", "no", "oh"}
_CHAT_OPENERS = {"wow", "yes", "no", "oh", "hey", "hi", "hello", "thanks", "thank", "yeah", "yay", "aww", "haha",
                 "lol", "ok", "okay", "omg", "sure", "awesome", "cool", "great", "congrats", "congratulations",
                 "what", "how", "why", "sounds", "glad", "nice", "lovely", "good", "so", "such", "love",
                 # Agreement is a reply: the 0.5B model stored "Totally agree, Melanie. Relaxing and expressing
                 # ourselves is key." as a user fact (b5e8b6e).
                 "totally", "agree", "agreed", "absolutely", "definitely", "exactly", "indeed", "true", "right",
                 "same", "aw", "ha",
                 # A wish or a request has no subject: the 0.5B model stored the assistant's "Have a great time and
                 # learn a lot." as a user fact (d8fe291; both content words are in the user's lines too).
                 "have", "enjoy", "keep", "take", "let", "let's", "don't", "try", "remember", "hope", "stay", "be"}
_REPORTED = re.compile(r"^(the user|the assistant|[A-Z][a-z]+)('s)? (said|says|asked|asks|told|tells|mentioned)\b",
                       re.IGNORECASE)
_NAMED_OPENER = re.compile(r"^the (user|assistant)\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9']+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
GROUNDED_SHARE = 0.5  # of a sentence's content stems found in what the call was shown
# ... and at most this many stems nothing shown says: the share alone let "The user is a 25-year-old male who has
# been working in mental health for the past year" through (4 of 7 stems said; "male", "year-old" and "past"
# invented, of a transgender woman), while a short restatement ("lives" for "moved") must pass.
MAX_UNSUPPORTED = 2
# Words a portrait is framed with that no turn needs to say ("The user enjoys ..., often mentions ...").
_FRAME = compute_stems("""talks talked says said mentions mentioned discusses discussed enjoys enjoyed likes liked
    loves loved interested interests passionate values valued person people individual someone describes described
    shares shared often seems appears currently recently various different things someone who""")
COPY_WORDS = 6  # a run of this many words of a turn, said the same, is a copy
THEME_COPY_WORDS = 4
THEME_MAX_WORDS = 12

# First person singular -> the subject, longest forms first ({s}: the subject; {p}: its possessive).
_SINGULAR = [
    (r"\bI'm\b", "{s} is"), (r"\bI am\b", "{s} is"), (r"\bI've\b", "{s} has"), (r"\bI'd\b", "{s} would"),
    (r"\bI'll\b", "{s} will"), (r"\bI was\b", "{s} was"), (r"\bI have\b", "{s} has"), (r"\bI do\b", "{s} does"),
    (r"(?i)\bmyself\b", "themself"), (r"(?i)\bmine\b", "{p}"), (r"(?i)\bmy\b", "{p}"), (r"\bme\b", "{s}"),
]
_I_VERB = re.compile(r"\bI (really |also |just |always |never |still |often |usually |now )?([a-z]+)\b")
_NO_AGREEMENT = {"was", "were", "will", "would", "can", "could", "should", "shall", "might", "must", "may",
                 "had", "did", "used", "got", "went", "made", "felt", "saw", "took", "found", "met", "told",
                 "said", "thought", "knew", "became", "began", "bought", "left", "lost", "ran", "won", "wrote"}


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _runs(items: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(items[i : i + n]) for i in range(len(items) - n + 1)}


def copies_a_turn(text: str, turns: Iterable[str], n: int = COPY_WORDS) -> bool:
    """Whether `text` is a turn, or holds a run of `n` words of one (as long as the text is shorter than
    that, the whole text inside a turn counts)."""
    mine_words = words(text)
    if not mine_words:
        return False
    size = min(n, len(mine_words))
    mine = _runs(mine_words, size)
    return any(mine & _runs(words(turn), size) for turn in turns)


def summary_problems(summary: str, turns: Sequence[str]) -> list[str]:
    """Why a profile summary is not a third-person portrait (empty when it is)."""
    problems = []
    if not summary.strip():
        problems.append("empty")
    if _FIRST_PERSON.search(summary):
        problems.append(f"first person: {summary[:120]!r}")
    if copies_a_turn(summary, turns):
        problems.append(f"copies a turn: {summary[:120]!r}")
    if opens_with_pronoun(summary.strip()):
        problems.append(f"opens with a pronoun: {summary[:120]!r}")
    if refusal(summary):
        problems.append(f"a model declining its task: {summary[:120]!r}")
    sources = source_stems(turns)
    invented = [s for s in _SENTENCE_END.split(summary.strip()) if s.strip() and not grounded(s, sources)]
    problems += [f"invented (not in the turns: {', '.join(unsupported(s, sources)[:8])}): {s[:120]!r}"
                 for s in invented]
    return problems


# A model declining the task ("I'm sorry, I can't assist with that."): the real 0.5B model put it in the
# assistant facts at 080e2a8, and the first-person repair made it "The assistant is sorry, Caroline. the
# assistant can't assist with that.", said in the assistant's lines word for word but for "assist".
_REFUSAL = re.compile(
    r"\b(?:can['\u2019]?t|cannot|can not|unable to)\s+(?:assist|help)\s+with\s+(?:that|this)(?:\s+request)?\s*[.!]?\s*$"
    r"|\bI\s+(?:can['\u2019]?t|cannot|can not|am unable to|am not able to)\s+(?:assist|comply)\b"
    r"|\bI['\u2019]m\s+(?:unable|not able)\s+to\s+(?:assist|comply)\b|\bas an ai(?: language model| assistant)?,",
    re.IGNORECASE)


def refusal(text: str) -> bool:
    """Whether a text is a model declining its task, which is nothing about anyone."""
    return bool(_REFUSAL.search(text))


_VOCATIVE = re.compile(r"^\s*[A-Z][a-z]+,\s+")
_DEMONSTRATIVES = {"those", "these", "this", "that", "such"}
# A gerund phrase, then a dash or colon ("Researching adoption agencies - it's been a dream ..."): a headline
# before a clause, the shape of a user's line with "I" taken out.
_GERUND_HEAD = re.compile(r"^\W*([A-Za-z]{3,}ing)\b([^.!?:;\u2014\u2013]*?)\s*(?:\u2014|\u2013|\s-\s|:)\s*")
_HEAD_VERBS = {"is", "was", "are", "were", "has", "have", "had", "does", "did", "will", "would", "can", "could"}
_NOT_GERUNDS = {"thing", "nothing", "something", "anything", "everything", "morning", "evening", "spring", "king"}
_PERSON = re.compile(r"\bthe (?:user|assistant)\b", re.IGNORECASE)
_NAME = re.compile(r"\b[A-Z][a-z]+\b")


def gerund_fragment(fact: str) -> bool:
    """A fact that opens with a gerund phrase and a dash, whose first sentence then names no one: whose dream
    "Researching adoption agencies - it's been a dream to have a family" tells is lost once the fact stands
    alone (the real 0.5B model stored that line at 9d4c1b2; its second sentence naming "the user" does not
    say whose dream the first is). "Painting sunsets - it relaxes the user." names its subject and is kept,
    as is a gerund subject with its verb ("Volunteering at the shelter is Caroline's way to relax: ...")."""
    head = _GERUND_HEAD.match(fact)
    if head is None or head.group(1).lower() in _NOT_GERUNDS:
        return False
    head_words = words(head.group(1) + head.group(2))
    if len(head_words) > 6 or _HEAD_VERBS & set(head_words):
        return False
    rest = fact[head.end():]
    sentence = _SENTENCE_END.split(rest.strip(), maxsplit=1)[0]
    named = _PERSON.search(head.group(0) + " " + sentence) or _NAME.search(sentence, pos=1)
    return named is None


def fact_without_subject(fact: str) -> bool:
    """A fact names its subject: no first person, and it does not open with a pronoun, an
    exclamation or a greeting (who "she" is cannot be told once the fact stands alone; "Thanks, Melanie! ..."
    and "What a lovely name!" are chat), nor is it addressed to "you" or a question. A name and a comma before
    a line that has no subject of its own is a line addressed to someone: the real 0.5B model stored the
    assistant's "Caroline, those lessons are great - ..." as the user's only fact (c9fcd00)."""
    vocative = _VOCATIVE.match(fact)
    if vocative:
        rest = fact[vocative.end():]
        if (words(rest) or [""])[0] in _DEMONSTRATIVES or fact_without_subject(rest):
            return True
    if gerund_fragment(fact):
        return True
    first = (words(fact) or [""])[0]
    if _FIRST_PERSON.search(fact) or first in _PRONOUN_START or first in _CHAT_OPENERS:
        return True
    # Addressed to "you" or asking, and not opening with whom it is about: a line of chat ("Looks like you had a
    # great day! How was it?"). "The user said: ... you?" and "Caroline asked ...?" name their subject.
    return (bool(_SECOND_PERSON.search(fact)) or "?" in fact) and not _REPORTED.match(fact) \
        and not _NAMED_OPENER.match(fact)


_POSSESSIVE = re.compile(r"['’]s\b")


# Numbers are claims too (an age, a count, a year), written "#18"; content stems start with a letter, so "a
# 18-year-old" claimed only "year-" and "old" and passed (the real 0.5B model's summary at d8fe291, of a user
# whose age no line gives; its one line with 18 was "my 18th birthday ten years ago"). A number word counts as its
# digits ("three years" is said by "3 years"); an ordinal is not its cardinal ("18th" does not say "18").
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?(?:st|nd|rd|th)?(?![.,]?\d)", re.IGNORECASE)
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())} | {"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60",
                                                      "seventy": "70", "eighty": "80", "ninety": "90"}
_NUMBER_WORD = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)


def numbers(text: str) -> frozenset[str]:
    """The numbers a text states, as "#<digits>" (number words as their digits)."""
    found = {"#" + n.replace(",", "").lower() for n in _NUMBER.findall(text)}
    found |= {"#" + _NUMBER_WORDS[w.lower()] for w in _NUMBER_WORD.findall(text)}
    return frozenset(found)


def _claims(text: str) -> frozenset[str]:
    """The content stems a text states ("the user's" is "user": a possessive is not a word of its own), and its
    numbers (numbers())."""
    return compute_stems(_POSSESSIVE.sub("", text)) | numbers(text)


def claims_nothing(fact: str) -> bool:
    """A fact with no content word and no number beyond its frame ("The user said", stored at d8fe291: the
    grounding check passes a text that claims nothing, so the fact's own check must drop it)."""
    return not (_claims(fact) - _FRAME)


def source_stems(texts: Iterable[str]) -> frozenset[str]:
    """The content stems of what a persona call was shown, which its answer may say."""
    out: set[str] = set()
    for text in texts:
        out |= _claims(text)
    return frozenset(out)


def unsupported(text: str, sources: frozenset[str]) -> list[str]:
    """The content stems of `text` that nothing the call was shown has (sorted; frame words left out)."""
    return sorted(_claims(text) - _FRAME - sources)


RESTATES = 0.8  # stem Jaccard of a claim to one stored item at or above which the claim restates that item


@dataclass(frozen=True)
class Memory:
    """What memory already holds about a speaker, as a persona call was shown it (the stored summary, traits and
    facts): each item's content stems, and their union."""

    items: tuple[frozenset[str], ...] = ()
    stems: frozenset[str] = frozenset()

    @classmethod
    def of(cls, texts: Iterable[str]) -> Memory:
        items = tuple(_claims(t) - _FRAME for t in texts)
        return cls(items, frozenset().union(*items))

    def restates(self, stems: frozenset[str], sources: frozenset[str]) -> bool:
        """Whether a claim says nothing that neither the call's pages nor memory say, or is one stored item said
        again in a word or two of other words (RESTATES: the real 0.5B model rewrites a stored fact as it
        answers, "supports" as "committed to supporting")."""
        if stems <= sources | self.stems:
            return True
        return any(len(stems & item) >= RESTATES * len(stems | item) for item in self.items if item)


def grounded(text: str, sources: frozenset[str], memory: Memory | None = None) -> bool:
    """Whether at least GROUNDED_SHARE of the text's content stems are in `sources` (what the call's pages say)
    and at most MAX_UNSUPPORTED are not; or whether it restates what memory holds (Memory.restates). A text
    without content words claims nothing and passes.

    Memory supports words, never the tolerance: with memory's words counted as said, a stored trait's 2 unsaid
    words ("past year") were said at the next call, whose summary added 2 more ("a 25-year-old male ... for the
    past year", the real 0.5B model at c9fcd00): invention grew 2 words per call. Now it stops at one claim."""
    stems = _claims(text) - _FRAME
    # A number nothing shown says is invented whatever else is said: the tolerance is for a restatement's
    # words ("lives" for "moved"), and an age or a count is never one.
    if any(s.startswith("#") for s in stems - sources - (memory.stems if memory else frozenset())):
        return False
    said = len(stems & sources)
    if not stems or (said >= GROUNDED_SHARE * len(stems) and len(stems) - said <= MAX_UNSUPPORTED):
        return True
    return memory is not None and memory.restates(stems, sources)


def grounded_sentences(summary: str, sources: frozenset[str], memory: Memory | None = None) -> tuple[str, int]:
    """The summary's grounded sentences, and how many were left out as invented."""
    sentences = [s.strip() for s in _SENTENCE_END.split(summary.strip()) if s.strip()]
    kept = [s for s in sentences if grounded(s, sources, memory)]
    return " ".join(kept), len(sentences) - len(kept)


def theme_copies(themes: Iterable[str], turns: Sequence[str]) -> list[str]:
    """The themes that are chat fragments: a run of words of a turn, or longer than a theme."""
    return [t for t in themes if t and theme_is_copy(t, turns)]


def theme_is_copy(theme: str, turns: Sequence[str]) -> bool:
    n = len(words(theme))
    return n > THEME_MAX_WORDS or (n >= THEME_COPY_WORDS and copies_a_turn(theme, turns, THEME_COPY_WORDS))


def theme_or_keywords(theme: str, keywords: Sequence[str], turns: Sequence[str]) -> str:
    """`theme` when it is a theme; when it is a chat fragment, the topic named from its keywords (at most three
    words when they too would copy a turn: too short to be a copy); "" when there are none."""
    if not theme or not theme_is_copy(theme, turns):
        return theme
    joined = " ".join(k.strip() for k in keywords[:3] if k.strip())
    return joined if not theme_is_copy(joined, turns) else " ".join(joined.split()[: THEME_COPY_WORDS - 1])


# -- repairs -------------------------------------------------------------------------------------------


def _agree(match: re.Match[str], subject: str) -> str:
    """"I love" -> "<subject> loves": a present-tense verb after the first person takes the third person's -s."""
    adverb, verb = match.group(1) or "", match.group(2)
    if verb in _NO_AGREEMENT or verb.endswith("ed"):
        return f"{subject} {adverb}{verb}"
    if verb == "have":
        verb = "has"
    elif verb == "do":
        verb = "does"
    elif verb == "go":
        verb = "goes"
    elif re.search(r"(s|sh|ch|x|z|o)$", verb):
        verb += "es"
    elif re.search(r"[^aeiou]y$", verb):
        verb = verb[:-1] + "ies"
    else:
        verb += "s"
    return f"{subject} {adverb}{verb}"


def third_person(text: str, subject: str) -> str | None:
    """`text` with its first person singular said as `subject` ("I adopted a cat" -> "The user adopted a
    cat"); None when it speaks in the first person plural (whose "we" it is cannot be told)."""
    if _PLURAL.search(text):
        return None
    lower = subject[0].lower() + subject[1:] if subject.startswith(("The ", "the ")) else subject
    possessive = f"{lower}'s"
    out = text
    for pattern, replacement in _SINGULAR:
        out = re.sub(pattern, replacement.format(s=lower, p=possessive), out)
    out = _I_VERB.sub(lambda m: _agree(m, lower), out)
    out = re.sub(r"\bI\b", lower, out)
    out = re.sub(rf"([.!?]\s+){re.escape(lower)}\b", lambda m: m.group(1) + subject, out)  # a sentence's start
    return out[0].upper() + out[1:] if out else out


def repair_fact(text: str, subject: str) -> str | None:
    """The fact as it is when it names its subject; else said in the third person when only its grammatical
    person is wrong; None when it cannot be told whom it is about (it opens with a pronoun other than the
    first person, an exclamation or chat, or speaks for "we")."""
    text = text.strip()
    if not text:
        return None
    if not fact_without_subject(text):
        return text
    first = words(text)[0]
    if first in _PRONOUN_START - {"i", "i'm", "my"} or first in _CHAT_OPENERS:
        return None
    fixed = third_person(text, subject)
    return fixed if fixed is not None and not fact_without_subject(fixed) else None


_THIRD_PERSON_OPENER = {"he", "she", "they", "his", "her", "their", "him", "them", "it", "its"}


def opens_with_pronoun(sentence: str) -> bool:
    """A sentence whose subject is a pronoun. Opening a summary, whom it is about cannot be told (the 0.5B
    model's summary "She recently ran a charity race ..." was the assistant's line); after a sentence about the
    user ("Caroline is ... She wants to adopt children.") it reads as that sentence's subject and is kept."""
    return (words(sentence) or [""])[0].split("'")[0] in _THIRD_PERSON_OPENER  # "it's" opens with "it"


_WHOLE = (".", "!", "?", '"', "\u201d", ")")  # how a whole sentence ends


def trim_summary(summary: str) -> str:
    """The summary once its invented sentences are gone: a sentence whose subject is a pronoun cannot lead it
    (its antecedent may have been a dropped sentence: the 0.5B model's "The user is a 25-year-old male ... He
    has been involved in ..." at 0462d1c lost its invented first sentence and led with "He"), and a last
    sentence cut mid-word is dropped ("It's a lot to take in, but he'" was kept whole as a summary)."""
    parts = [p.strip() for p in _SENTENCE_END.split(summary.strip()) if p.strip()]
    while parts and opens_with_pronoun(parts[0]):
        parts.pop(0)
    if parts and (parts[-1].endswith(("'", "\u2019", ",")) or (len(parts) > 1 and not parts[-1].endswith(_WHOLE))):
        parts.pop()
    return " ".join(parts)


def is_chat_sentence(sentence: str) -> bool:
    """A sentence only a conversation has: a question, one addressed to "you", one opening with an
    exclamation or a greeting, or a model declining its task."""
    first = (words(sentence) or [""])[0]
    return (sentence.rstrip().endswith("?") or bool(_SECOND_PERSON.search(sentence)) or first in _CHAT_OPENERS
            or refusal(sentence))


def repair_summary(summary: str, turns: Sequence[str], subject: str = "The user") -> str:
    """The summary's sentences that describe the user: chat (a question, "you", an exclamation) and turns
    copied as said (in the first person) are dropped; a first-person sentence that copies nothing is said in
    the third person. A third-person sentence is kept even when it shares a run of words with a turn (a
    restatement: the benchmark's stricter copy test still reports it); a first sentence whose subject is a
    pronoun (opens_with_pronoun) is dropped. "" when nothing is left."""
    kept = []
    for sentence in _SENTENCE_END.split(summary.strip()):
        sentence = sentence.strip()
        if not sentence or is_chat_sentence(sentence) or (opens_with_pronoun(sentence) and not kept):
            continue
        if _FIRST_PERSON.search(sentence):
            if copies_a_turn(sentence, turns):
                continue
            fixed = third_person(sentence, subject)
            if fixed is None or _FIRST_PERSON.search(fixed):
                continue
            sentence = fixed
        kept.append(sentence)
    return " ".join(kept)
