"""A settings problem as one line: which MEMORYOS_ variable, what is wrong, where to fix it.

Every entry point (each `memoryos` command, `celery -A memoryos_workers ...`) reads the settings through
`get_settings()`, which raises `SettingsError` with this line instead of pydantic's multi-line report
(and the 40-line traceback around it). The line never quotes a value: a value may be an API key or a
URL with a password (Settings also hides input in pydantic's own messages).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError as SourceError

ENV_PREFIX = "MEMORYOS_"
WHERE = "the environment or the .env file"


class SettingsError(ValueError):
    """The settings cannot be read; str() is one line naming each bad MEMORYOS_ variable."""


@contextmanager
def exit_on_settings_error(code: int = 2) -> Iterator[None]:
    """What an entry point does with a SettingsError: the line on stderr, exit `code`, no traceback."""
    try:
        yield
    except SettingsError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(code) from None


def env_name(field: str) -> str:
    """MEMORYOS_<FIELD>, or the variable itself when pydantic reports an alias (OPENAI_API_KEY)."""
    upper = field.upper()
    return upper if upper.startswith(ENV_PREFIX) or field.isupper() else ENV_PREFIX + upper


def describe(exc: ValidationError | SourceError) -> str:
    """One line for a failed `Settings()`: each problem as `VARIABLE: message`, then where to fix them."""
    if isinstance(exc, ValidationError):
        problems = list(_problems(exc.errors(include_input=False, include_url=False)))
    else:  # a complex value that is not JSON: pydantic-settings names the field in quotes
        field = str(exc).split('"')[1] if str(exc).count('"') >= 2 else ""
        problems = [f"{env_name(field)}: could not be parsed" if field else "a value could not be parsed"]
    head = "invalid setting" if len(problems) == 1 else "invalid settings"
    return f"{head} {'; '.join(problems)} (fix {'it' if len(problems) == 1 else 'them'} in {WHERE})"


def _problems(errors: Iterable[Mapping[str, Any]]) -> Iterable[str]:
    for err in errors:
        message = " ".join(str(err.get("msg", "invalid")).removeprefix("Value error, ").split())
        loc = [str(part) for part in err.get("loc", ())]
        if not loc:  # a check across settings: its message names the variables itself
            yield message
            continue
        name = env_name(loc[0])
        message = message.removeprefix(name).lstrip(": ") if message.startswith(name) else message
        yield f"{name}{'.' + '.'.join(loc[1:]) if loc[1:] else ''}: {_lower_first(message)}"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text
