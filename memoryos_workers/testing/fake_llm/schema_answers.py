"""A deterministic instance of a JSON schema: the answer the fake LLM gives when nothing scripts one.

The workers ask for structured outputs with a ``json_schema`` response format, so a fake that answers
every schema validly lets a test run the whole pipeline and script only the answers it is about.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

_MAX_DEPTH = 12
_STRING_FORMATS: dict[str, str] = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "duration": "P1D",
    "email": "x@example.com",
    "idn-email": "x@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "iri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
_PATTERN_CANDIDATES = ("x", "a", "A", "0", "1", "aa", "abc", "a1", "x-1", "a_b", "aaaa", "0000", "ab12")


def generate_from_schema(schema: Mapping[str, Any]) -> Any:
    """Return a deterministic instance of ``schema`` (JSON Schema as emitted by pydantic v2).

    Why not a library: only the standard library is allowed, and the subset pydantic emits
    (objects, arrays, enums, const, anyOf/oneOf/allOf, $ref into $defs, numeric/string bounds,
    tuples via prefixItems) is small. The instance is the *simplest* valid one -- every property
    present, first enum member, first non-null union branch -- so tests can predict it.
    """
    return _Generator(schema).generate(schema, depth=0, variant=0)


class _Generator:
    """Walks a schema; keeps the root so ``$ref`` pointers can be resolved."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root

    def resolve(self, ref: str) -> Mapping[str, Any]:
        """Resolve a local JSON pointer such as ``#/$defs/Topic``."""
        if not ref.startswith("#"):
            raise ValueError(f"only local $ref are supported, got {ref!r}")
        node: Any = self.root
        for part in ref.lstrip("#").split("/"):
            if not part:
                continue
            part = part.replace("~1", "/").replace("~0", "~")
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node

    def generate(self, schema: Any, depth: int, variant: int) -> Any:
        """Generate one instance; ``variant`` makes array items distinct (uniqueItems)."""
        if schema is True or not isinstance(schema, Mapping):
            return "x"
        if "$ref" in schema:
            target = self.resolve(schema["$ref"])
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            merged = {**target, **siblings} if siblings else target
            return self.generate(merged, depth + 1, variant)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema and schema["enum"]:
            return self._enum(list(schema["enum"]), variant)
        for key in ("anyOf", "oneOf"):
            if key in schema and schema[key]:
                return self.generate(self._pick_branch(schema[key], depth), depth + 1, variant)
        if "allOf" in schema and schema["allOf"]:
            return self.generate(self._merge_all_of(schema), depth + 1, variant)

        schema_type = schema.get("type")
        if isinstance(schema_type, list):
            non_null = [t for t in schema_type if t != "null"]
            if not non_null or (depth > _MAX_DEPTH and "null" in schema_type):
                return None
            schema_type = non_null[0]
        if schema_type is None:
            if "properties" in schema or "additionalProperties" in schema:
                schema_type = "object"
            elif "items" in schema or "prefixItems" in schema:
                schema_type = "array"
            else:
                return "x"  # `Any`: pydantic emits {}
        if schema_type == "object":
            return self._object(schema, depth, variant)
        if schema_type == "array":
            return self._array(schema, depth, variant)
        if schema_type == "string":
            return self._string(schema, variant)
        if schema_type == "integer":
            return int(self._number(schema, variant, integer=True))
        if schema_type == "number":
            return self._number(schema, variant, integer=False)
        if schema_type == "boolean":
            return self._boolean(variant)
        if schema_type == "null":
            return None
        return "x"

    def _enum(self, values: list[Any], variant: int) -> Any:
        return values[variant % len(values)]

    def _boolean(self, variant: int) -> bool:
        return variant % 2 == 0

    def _pick_branch(self, branches: list[Any], depth: int) -> Any:
        """First non-null branch -- or null when recursion gets deep (recursive models)."""
        non_null = [b for b in branches if not (isinstance(b, Mapping) and b.get("type") == "null")]
        if depth > _MAX_DEPTH and len(non_null) < len(branches):
            return {"type": "null"}
        return non_null[0] if non_null else {"type": "null"}

    def _merge_all_of(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        """Shallow merge of allOf members (older pydantic wraps a $ref in allOf to add a description)."""
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        properties: dict[str, Any] = dict(merged.get("properties", {}))
        required: list[str] = list(merged.get("required", []))
        for part in schema["allOf"]:
            while isinstance(part, Mapping) and "$ref" in part:
                part = {**self.resolve(part["$ref"]), **{k: v for k, v in part.items() if k != "$ref"}}
            if not isinstance(part, Mapping):
                continue
            for key, value in part.items():
                if key == "properties":
                    properties.update(value)
                elif key == "required":
                    required.extend(r for r in value if r not in required)
                else:
                    merged.setdefault(key, value)
        if properties:
            merged["properties"] = properties
        if required:
            merged["required"] = required
        return merged

    def _object(self, schema: Mapping[str, Any], depth: int, variant: int) -> dict[str, Any]:
        properties: Mapping[str, Any] = schema.get("properties", {})
        result = {name: self.generate(sub, depth + 1, 0) for name, sub in properties.items()}
        for name in schema.get("required", []):  # required but undeclared (rare): anything goes
            result.setdefault(name, "x")
        extra = schema.get("additionalProperties")
        i = 0
        while len(result) < int(schema.get("minProperties", 0)):
            key = f"key{variant}_{i}" if variant else f"key{i}"
            result[key] = self.generate(extra, depth + 1, i) if isinstance(extra, Mapping) else "x"
            i += 1
        return result

    def _array(self, schema: Mapping[str, Any], depth: int, variant: int) -> list[Any]:
        prefix: list[Any] = list(schema.get("prefixItems", []))
        min_items = int(schema.get("minItems", 0 if depth > _MAX_DEPTH else 1))
        max_items = schema.get("maxItems")
        count = max(min_items, len(prefix)) if prefix else min_items
        if max_items is not None:
            count = min(count, int(max_items))
        items_schema = schema.get("items", {})
        out: list[Any] = []
        for i in range(count):
            sub = prefix[i] if i < len(prefix) else items_schema
            if sub is False:
                break
            out.append(self.generate(sub, depth + 1, i + variant))
        return out

    def _string(self, schema: Mapping[str, Any], variant: int) -> str:
        fmt = schema.get("format")
        if fmt in _STRING_FORMATS and variant == 0:
            return _STRING_FORMATS[fmt]
        value = "x" if variant == 0 else f"x{variant}"
        min_len = int(schema.get("minLength", 0))
        max_len = schema.get("maxLength")
        pattern = schema.get("pattern")
        compiled = None
        if pattern:
            try:
                compiled = re.compile(pattern)
            except re.error:
                compiled = None
        if compiled is not None and not compiled.search(value):
            value = _string_for_pattern(compiled, variant)
        if len(value) < min_len:
            padded = value + "x" * (min_len - len(value))
            if compiled is None or compiled.search(padded):
                value = padded
        if max_len is not None and len(value) > int(max_len):
            value = value[: int(max_len)]
        return value

    def _number(self, schema: Mapping[str, Any], variant: int, *, integer: bool) -> float | int:
        """Smallest in-range value (``minimum`` or 0), honouring exclusive bounds and multipleOf."""
        lo, lo_excl = _tightest(schema.get("minimum"), schema.get("exclusiveMinimum"), lower=True)
        hi, hi_excl = _tightest(schema.get("maximum"), schema.get("exclusiveMaximum"), lower=False)
        if integer:
            if lo is not None:
                lo, lo_excl = (math.floor(lo) + 1 if lo_excl else math.ceil(lo)), False
            if hi is not None:
                hi, hi_excl = (math.ceil(hi) - 1 if hi_excl else math.floor(hi)), False

        def ok(v: float) -> bool:
            if lo is not None and (v < lo or (lo_excl and v == lo)):
                return False
            return not (hi is not None and (v > hi or (hi_excl and v == hi)))

        if lo is not None:
            base: float = lo + 1 if lo_excl else lo
            if not ok(base) and hi is not None:
                base = (lo + hi) / 2
        elif hi is not None:
            base = 0 if ok(0) else hi - 1
        else:
            base = 0
        value = base + variant if ok(base + variant) else base
        multiple = schema.get("multipleOf")
        if multiple:
            up = math.ceil(value / multiple) * multiple
            value = up if ok(up) else math.floor(value / multiple) * multiple
        return int(value) if integer else float(value)


def _tightest(inclusive: Any, exclusive: Any, *, lower: bool) -> tuple[float | None, bool]:
    """Combine an inclusive and an exclusive bound into the tighter one (value, is_exclusive)."""
    def num(v: Any) -> float | None:
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    inc, exc = num(inclusive), num(exclusive)
    if inc is None:
        return exc, exc is not None
    if exc is None:
        return inc, False
    if lower:
        return (exc, True) if exc >= inc else (inc, False)
    return (exc, True) if exc <= inc else (inc, False)


_CATEGORY_CHARS = {
    "CATEGORY_DIGIT": "0",
    "CATEGORY_NOT_DIGIT": "a",
    "CATEGORY_SPACE": " ",
    "CATEGORY_NOT_SPACE": "a",
    "CATEGORY_WORD": "a",
    "CATEGORY_NOT_WORD": "-",
}


def _string_for_pattern(compiled: re.Pattern[str], variant: int) -> str:
    """A string matching ``compiled`` (``pattern`` constraint), built from the parsed regex.

    Walks the stdlib's own regex parse tree (first branch, minimum repeats, first char of a
    class), then verifies with ``search``; falls back to a few fixed candidates. Good enough for
    the codes/ids patterns that appear in response models.
    """
    try:
        from re import _parser as sre_parse  # type: ignore[attr-defined]  # Python >= 3.11
    except ImportError:  # pragma: no cover - Python 3.10
        import sre_parse  # type: ignore[no-redef]

    def emit(items: Any) -> str:
        out: list[str] = []
        for op, av in items:
            name = str(op)
            if name == "LITERAL":
                out.append(chr(av))
            elif name == "NOT_LITERAL":
                out.append("x" if chr(av) != "x" else "y")
            elif name == "ANY":
                out.append("x")
            elif name == "IN":
                out.append(in_class(av))
            elif name == "CATEGORY":
                out.append(_CATEGORY_CHARS.get(str(av), "a"))
            elif name == "BRANCH":
                out.append(emit(av[1][0]))
            elif name == "SUBPATTERN":
                out.append(emit(av[-1]))
            elif name == "ATOMIC_GROUP":
                out.append(emit(av))
            elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                low, _high, sub = av
                out.append(emit(sub) * low)
            # AT (anchors), ASSERT, ASSERT_NOT, GROUPREF...: contribute nothing
        return "".join(out)

    def in_class(items: Any) -> str:
        negate = bool(items) and str(items[0][0]) == "NEGATE"
        if negate:
            for candidate in "xa0_- ":
                if not _in_set(items[1:], candidate):
                    return candidate
            return "x"
        op, av = items[0]
        if str(op) == "LITERAL":
            return chr(av)
        if str(op) == "RANGE":
            return chr(av[0])
        if str(op) == "CATEGORY":
            return _CATEGORY_CHARS.get(str(av), "a")
        return "x"

    def _in_set(items: Any, char: str) -> bool:
        code = ord(char)
        for op, av in items:
            name = str(op)
            if name == "LITERAL" and av == code:
                return True
            if name == "RANGE" and av[0] <= code <= av[1]:
                return True
            if name == "CATEGORY" and re.fullmatch(_CATEGORY_REGEX.get(str(av), "(?!)"), char):
                return True
        return False

    candidates: list[str] = []
    try:
        candidates.append(emit(sre_parse.parse(compiled.pattern, compiled.flags)))
    except Exception:  # private parser API: any surprise just means "use fallbacks"
        pass
    candidates.extend(_PATTERN_CANDIDATES)
    for candidate in candidates:
        if variant:
            varied = f"{candidate}{variant}"
            if compiled.search(varied):
                return varied
        if compiled.search(candidate):
            return candidate
    return "x"


_CATEGORY_REGEX = {
    "CATEGORY_DIGIT": r"\d",
    "CATEGORY_NOT_DIGIT": r"\D",
    "CATEGORY_SPACE": r"\s",
    "CATEGORY_NOT_SPACE": r"\S",
    "CATEGORY_WORD": r"\w",
    "CATEGORY_NOT_WORD": r"\W",
}
