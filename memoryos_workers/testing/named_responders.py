"""The test model's responders by the name a benchmark gives on its command line (`--responder`)."""

from __future__ import annotations

from typing import Any

from memoryos_workers.testing.fact_responder import fact_responder
from memoryos_workers.testing.persona_responder import persona_responder
from memoryos_workers.testing.responders import default_responder

RESPONDERS: dict[str, Any] = {
    "default": default_responder,  # fixed, generic answers
    "persona": persona_responder,  # facts and a summary derived from the pages shown: the persona measurable
    "rule": fact_responder,  # a few kinds of fact kept true over time by rule (the facts story)
}


def responder_named(name: str) -> Any:
    try:
        return RESPONDERS[name]
    except KeyError:
        raise ValueError(f"unknown responder {name!r}: one of {', '.join(RESPONDERS)}") from None
