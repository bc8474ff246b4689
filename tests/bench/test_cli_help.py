"""`python -m bench --help` and each part's `--help` print their help (a "%" in a part's first docstring line,
"50% of ingest", made argparse raise TypeError instead)."""

from __future__ import annotations

import pytest

from bench.__main__ import main
from bench.parts import ORDER


@pytest.mark.parametrize("argv", [["--help"], *([part, "--help"] for part in ORDER)])
def test_help_prints_and_exits_zero(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m bench")
    if argv == ["--help"]:
        assert "retrieval_load" in out and "50% and 150%" in out
