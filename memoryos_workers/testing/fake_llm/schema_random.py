"""An arbitrary instance of a JSON schema: what a server that enforces the schema may answer.

OpenAI's strict mode, llama.cpp grammars, vLLM guided decoding and Ollama's ``format`` guarantee an
answer the schema allows, nothing more: array lengths, numbers, enum members, union branches and
strings are the model's choice. The fake's ``generic`` mode answers so, drawing each within the
schema's bounds from a seeded RNG, so a test finds out whether the pipeline accepts everything its
schemas allow: an unbounded array gets up to four items more than its minimum, an unbounded number
may be negative, a string without ``minLength`` is sometimes empty.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

from memoryos_workers.testing.fake_llm.schema_answers import _MAX_DEPTH, _STRING_FORMATS, _Generator, _tightest

_WORDS = ("garden", "trip", "music", "coffee", "project", "family", "book", "weather", "work", "friend",
          "plan", "city", "dinner", "running", "painting", "exam", "movie", "dog", "recipe", "concert")  # fmt: skip


def random_from_schema(schema: Mapping[str, Any], rng: random.Random) -> Any:
    """An instance of ``schema`` drawn from ``rng`` (the same seed, the same instance)."""
    return _RandomGenerator(schema, rng).generate(schema, depth=0, variant=0)


class _RandomGenerator(_Generator):
    """The deterministic generator's walk, with each free choice drawn from the RNG."""

    def __init__(self, root: Mapping[str, Any], rng: random.Random) -> None:
        super().__init__(root)
        self.rng = rng

    def _enum(self, values: list[Any], variant: int) -> Any:
        return self.rng.choice(values)

    def _boolean(self, variant: int) -> bool:
        return self.rng.random() < 0.5

    def _pick_branch(self, branches: list[Any], depth: int) -> Any:
        if depth > _MAX_DEPTH:  # recursive models: stop descending
            return super()._pick_branch(branches, depth)
        return self.rng.choice(branches)

    def _array(self, schema: Mapping[str, Any], depth: int, variant: int) -> list[Any]:
        prefix: list[Any] = list(schema.get("prefixItems", []))
        low = int(schema.get("minItems", 0))
        high = int(schema["maxItems"]) if "maxItems" in schema else low + 4
        count = low if depth > _MAX_DEPTH else self.rng.randint(low, max(low, high))
        unique = bool(schema.get("uniqueItems"))
        out: list[Any] = []
        for i in range(count):
            sub = prefix[i] if i < len(prefix) else schema.get("items", {})
            if sub is False:
                break
            value = self.generate(sub, depth + 1, i + variant)
            for _ in range(20 if unique else 0):
                if value not in out:
                    break
                value = self.generate(sub, depth + 1, i + variant)
            if unique and value in out and len(out) >= low:
                break  # no distinct value left: stop once the minimum is met
            out.append(value)
        return out

    def _number(self, schema: Mapping[str, Any], variant: int, *, integer: bool) -> float | int:
        lo, lo_excl = _tightest(schema.get("minimum"), schema.get("exclusiveMinimum"), lower=True)
        hi, hi_excl = _tightest(schema.get("maximum"), schema.get("exclusiveMaximum"), lower=False)
        if lo is None:
            lo, lo_excl = (hi - 100 if hi is not None else -10), False
        if hi is None:
            hi, hi_excl = lo + 100, False
        step = schema.get("multipleOf")
        if integer or step:
            step = step or 1
            first = math.floor(lo / step) + 1 if lo_excl else math.ceil(lo / step)
            last = math.ceil(hi / step) - 1 if hi_excl else math.floor(hi / step)
            if last < first:
                return super()._number(schema, variant, integer=integer)
            value = self.rng.randint(first, last) * step
            return int(value) if integer else float(value)
        value = self.rng.uniform(lo, hi)
        if (lo_excl and value <= lo) or (hi_excl and value >= hi):
            value = (lo + hi) / 2
        return value

    def _string(self, schema: Mapping[str, Any], variant: int) -> str:
        if schema.get("format") in _STRING_FORMATS or schema.get("pattern"):
            return super()._string(schema, variant)
        min_len = int(schema.get("minLength", 0))
        max_len = int(schema["maxLength"]) if "maxLength" in schema else None
        if min_len == 0 and self.rng.random() < 0.1:
            return ""
        value = " ".join(self.rng.choice(_WORDS) for _ in range(self.rng.randint(1, 8)))
        while len(value) < min_len:
            value += " " + self.rng.choice(_WORDS)
        return value if max_len is None else value[:max_len]
