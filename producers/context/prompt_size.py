"""A prompt's size as pages join it, without rendering it again.

Adding a page changes only the memory section and the notice above it (whether some turn is listed
without its time), so the prompt's length is that of the rest, measured once from the full render, plus
those two: the fitting's top-up tries pages one by one this way instead of rendering the whole prompt per
page tried. The sections come from render.py's own functions, so the size is the render's, character for
character.
"""

from __future__ import annotations

from collections.abc import Sequence

from producers.context.parts import Parts, RetrievedPage
from producers.context.render import memory_lines, memory_section, notice, page_line, timed_lines, untimed
from schemas.tokens import tokens_for_chars


class PromptSize:
    """The tokens of `fitted`'s prompt with other pages in place of its own (`chars`: its render's length).
    A page's line is rendered once per turn and time flag: the pages sized must hold, per turn, the same
    page (as the prompt holds it) every time."""

    def __init__(self, fitted: Parts, chars: int) -> None:
        self._recent_untimed = untimed(timed_lines(fitted.short_term))
        self._lines: dict[tuple[str, bool], str] = {}
        self._rest = chars - self._changing(memory_lines(fitted.pages, self._line))

    def _line(self, page: RetrievedPage, timed: bool) -> str:
        key = (page.turn_id, timed)
        line = self._lines.get(key)
        if line is None:
            line = self._lines[key] = page_line(page, timed)
        return line

    def _changing(self, memories: list[str]) -> int:
        return len(notice(self._recent_untimed or untimed(memories))) + len(memory_section(memories))

    def tokens(self, pages: Sequence[RetrievedPage]) -> int:
        """The prompt's tokens with `pages` (as the prompt holds them: summaries not kept already blanked)."""
        return tokens_for_chars(self._rest + self._changing(memory_lines(pages, self._line)))
