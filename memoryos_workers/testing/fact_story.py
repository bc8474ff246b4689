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
    out = []
    for day, lines in PERIODS:
        period = [(line, "Thanks for telling me!") for line in lines]
        period += [(SMALL_TALK[i % len(SMALL_TALK)], "Sure!") for i in range(12)]
        out.append([{"user_id": user_id, "user_input": u, "agent_response": a,
                     "timestamp": f"{day}T{9 + i // 60:02d}:{i % 60:02d}:00+00:00"} for i, (u, a) in enumerate(period)])
    return out


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
