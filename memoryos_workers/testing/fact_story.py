"""A user's life over two years in which facts change: home (twice, once with a date she states), job
(twice), partner (then corrected by the person), pet (given away, then another), diet, plans, a car sold,
and facts that never change. Read by fact_responder's rules; used by the facts test and `bench facts`.

Each period is chatted in one sitting, then flushed (its pages analysed) before the next, as months apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

S = "The user"
PERIODS: list[tuple[str, list[str]]] = [
    ("2023-01-10", ["I live in Paris and I love it.", "I work as a nurse.", "My partner is Tom.",
                    "I have a dog named Rex.", "I'm vegetarian these days.", "My plan is to run a marathon.",
                    "I bought a Renault Clio.", "My sister is called Ana.", "I was born in Lisbon.",
                    "My favourite colour is green."]),
    ("2023-05-03", ["Big news: I moved to Berlin in 2023-04."]),
    ("2023-09-12", ["I now work as a teacher."]),
    ("2024-01-20", ["My partner is now Sam."]),
    ("2024-03-02", ["I gave away my dog, sadly."]),
    ("2024-04-15", ["I adopted a cat named Miso."]),
    ("2024-06-01", ["I'm vegan now."]),
    ("2024-08-09", ["My plan is now to learn to sail."]),
    ("2024-10-10", ["I moved to Vancouver."]),
    ("2024-12-01", ["I sold my car."]),
    ("2025-02-01", ["I now work as a principal."]),
]
SMALL_TALK = ["How are you today?", "Tell me a joke, please.", "What a rainy afternoon.", "Thanks, that helps!",
              "Any idea for dinner?", "Good morning!", "Ha, nice one.", "I'm a bit tired.", "See you later.",
              "What's a good book?", "Okay.", "Hmm, interesting."]
# The person's correction after the story: the partner's name was Samuel, not Sam.
CORRECTION = (f"{S}'s partner is Sam.", f"{S}'s partner is Samuel.")
NOW = "2025-03-01T12:00:00+00:00"


@dataclass(frozen=True)
class NowQuestion:
    query: str
    current: str | None  # the fact text the prompt must hold as current (None: nothing holds now)
    stale: tuple[str, ...]  # fact texts that must not be shown as current


@dataclass(frozen=True)
class BeforeQuestion:
    query: str
    old: str  # the fact text, shown with its window
    window: str  # e.g. "2023-01 to 2023-04"
    options: dict[str, Any] = field(default_factory=dict)


NOW_QUESTIONS = [
    NowQuestion("Where does she live now?", f"{S} lives in Vancouver.",
                (f"{S} lives in Paris.", f"{S} lives in Berlin.")),
    NowQuestion("What is her job now?", f"{S} works as a principal.",
                (f"{S} works as a nurse.", f"{S} works as a teacher.")),
    NowQuestion("Who is her partner now?", CORRECTION[1], (f"{S}'s partner is Tom.", CORRECTION[0])),
    NowQuestion("Which pet does she have now?", f"{S} has a cat named Miso.", (f"{S} has a dog named Rex.",)),
    NowQuestion("What is her diet now?", f"{S}'s diet: vegan.", (f"{S}'s diet: vegetarian.",)),
    NowQuestion("What does she plan to do now?", f"{S} plans to learn to sail.", (f"{S} plans to run a marathon.",)),
    NowQuestion("Which car does she drive now?", None, (f"{S} owns a Renault Clio.",)),
    NowQuestion("What is the name of her sister?", f"{S}'s sister is called Ana.", ()),
    NowQuestion("Where was she born?", f"{S} was born in Lisbon.", ()),
    NowQuestion("What is her favourite colour?", f"{S}'s favourite colour is green.", ()),
]
BEFORE_QUESTIONS = [
    BeforeQuestion("Where did she live before Berlin?", f"{S} lives in Paris.", "2023-01 to 2023-04"),
    BeforeQuestion("Where did she live before Vancouver?", f"{S} lives in Berlin.", "2023-04 to 2024-10"),
    BeforeQuestion("What was her job before teaching?", f"{S} works as a nurse.", "2023-01 to 2023-09"),
    BeforeQuestion("Which dog did she have before the cat?", f"{S} has a dog named Rex.", "2023-01 to 2024-03"),
    BeforeQuestion("Which car did she have?", f"{S} owns a Renault Clio.", "2023-01 to 2024-12",
                   {"fact_history": True}),
    BeforeQuestion("What was her diet in 2023?", f"{S}'s diet: vegetarian.", "2023-01 to 2024-06",
                   {"filters": {"since": "2023-01-01", "until": "2023-12-31"}}),
]
UNRELATED = [f"{S}'s sister is called Ana.", f"{S} was born in Lisbon.", f"{S}'s favourite colour is green."]
# Facts that changed (supersessions, retirements and the person's correction): at least 10.
CHANGES = 10


def turns(user_id: str) -> list[list[dict[str, Any]]]:
    """The turns of each period: its lines, then small talk enough to push them out of short-term."""
    return story_turns(scripted(), user_id)


def fact_lines(prompt: str) -> list[str]:
    """The user-knowledge lines of a prompt."""
    lines, inside = [], False
    for line in prompt.splitlines():
        if line.startswith("User knowledge:"):
            inside = True
            continue
        if inside and not line.startswith("- "):
            break
        if inside:
            lines.append(line)
    return lines


def shown_as_current(prompt: str, text: str) -> bool:
    return any(f'"{text}"' in line and "no longer true" not in line for line in fact_lines(prompt))


def shown_with_window(prompt: str, text: str, window: str) -> bool:
    return any(f'"{text}"' in line and window in line for line in fact_lines(prompt))


# -- a longer generated story: one of six kinds of fact changes each month ------------------------------
_VALUES = {
    "home": (["Oslo", "Porto", "Quito", "Hanoi", "Dakar", "Lima", "Riga", "Perth", "Cusco", "Tunis"],
             "I moved to {v}.", "{s} lives in {v}.", "Where does she live now?", "Where did she live before {v}?"),
    "job": (["baker", "pilot", "lawyer", "dentist", "plumber", "chemist", "farmer", "editor", "nurse", "judge"],
            "I now work as a {v}.", "{s} works as a {v}.", "What is her job now?", "What was her job before {v}?"),
    "partner": (["Ines", "Omar", "Yuki", "Pavel", "Amara", "Jonas", "Lena", "Tariq", "Noor", "Felix"],
                "My partner is now {v}.", "{s}'s partner is {v}.", "Who is her partner now?",
                "Who was her partner before {v}?"),
    "pet": (["Bolt", "Nala", "Ziggy", "Pip", "Mochi", "Rufus", "Kiwi", "Loki", "Juno", "Tofu"],
            "I adopted a dog named {v}.", "{s} has a dog named {v}.", "Which pet does she have now?",
            "Which pet did she have before {v}?"),
    "diet": (["vegetarian", "vegan", "pescatarian", "eating meat again"], "I'm {v} now.", "{s}'s diet: {v}.",
             "What is her diet now?", "What was her diet before {v}?"),
    "plan": (["learn Greek", "climb Kilimanjaro", "open a cafe", "write a novel", "learn to sail", "run a marathon"],
             "My plan is now to {v}.", "{s} plans to {v}.", "What does she plan to do now?",
             "What did she plan before {v}?"),
}


@dataclass(frozen=True)
class Story:
    periods: list[tuple[str, list[str]]]
    now: list[NowQuestion]
    before: list[BeforeQuestion]
    unrelated: list[str]
    changes: int
    correction: tuple[str, str] | None = None


def scripted() -> Story:
    return Story(PERIODS, NOW_QUESTIONS, BEFORE_QUESTIONS, UNRELATED, CHANGES, CORRECTION)


def generated(months: int = 36, seed: int = 7) -> Story:
    """`months` monthly periods from 2020-01: the first states every kind and the stable facts, each later
    one changes one kind to a value it has not had yet. Questions: each kind now, and for each change the
    value before it, with the months it held."""
    import random

    rng = random.Random(seed)
    kinds = list(_VALUES)
    held: dict[str, list[tuple[str, int]]] = {k: [(_VALUES[k][0][0], 0)] for k in kinds}
    periods = [("2020-01-10", [_VALUES[k][1].format(v=held[k][0][0]) for k in kinds] + [
        "My sister is called Ana.", "I was born in Lisbon.", "My favourite colour is green."])]
    for month in range(1, months):
        kind = rng.choice([k for k in kinds if len(held[k]) < len(_VALUES[k][0])])
        value = _VALUES[kind][0][len(held[kind])]
        held[kind].append((value, month))
        periods.append((f"{2020 + month // 12}-{month % 12 + 1:02d}-10", [_VALUES[kind][1].format(v=value)]))

    def label(month: int) -> str:
        return f"{2020 + month // 12}-{month % 12 + 1:02d}"

    now, before, changes = [], [], 0
    for kind in kinds:
        _, _, fact, ask_now, ask_before = _VALUES[kind]
        texts = [fact.format(s=S, v=v) for v, _ in held[kind]]
        now.append(NowQuestion(ask_now, texts[-1], tuple(texts[:-1])))
        for (old, start), (new, end) in zip(held[kind], held[kind][1:], strict=False):
            before.append(BeforeQuestion(ask_before.format(v=new), fact.format(s=S, v=old),
                                         f"{label(start)} to {label(end)}"))
            changes += 1
    return Story(periods, now, before, UNRELATED, changes)


def story_turns(story: Story, user_id: str) -> list[list[dict[str, Any]]]:
    """The turns of each period of `story` (as `turns` does for the scripted one)."""
    out = []
    for day, lines in story.periods:
        period = [(line, "Thanks for telling me!") for line in lines]
        period += [(SMALL_TALK[i % len(SMALL_TALK)], "Sure!") for i in range(12)]
        out.append([{"user_id": user_id, "user_input": u, "agent_response": a,
                     "timestamp": f"{day}T{9 + i // 60:02d}:{i % 60:02d}:00+00:00"} for i, (u, a) in enumerate(period)])
    return out
