"""The real model's cost sits in the LLM cost table, divided per promoted turn as the fake models' rows are."""

from __future__ import annotations

from bench.llm_cost import HEADERS, real_model_row


def test_the_real_models_row_is_per_promoted_turn() -> None:
    real = {"promoted_pages": 110, "turns": 120, "conversation": "conv-26",
            "calls_by_purpose": {"segmentation": 12, "persona": 11, "retry": 6, "fallback": 0},
            "tokens_by_purpose": {"segmentation": 26478, "persona": 29990, "retry": 15171, "fallback": 0},
            "meta": {"measured_at": "2026-12-05 14:23 UTC", "commit": "9d4c1b2"},
            "checks": {"0 segmentation fallbacks": True}}
    row = dict(zip(HEADERS, real_model_row(real), strict=True))
    assert row["ours: calls / 100 promoted"] == "26.4" and row["retries"] == "5.5" and row["segmentation"] == "10.9"
    assert row["turns published / promoted"] == "120 / 110" and "9d4c1b2" in row["fake model"]
    assert row["tokens / 100 promoted"].replace(",", "") == "65126"
    assert row["fallback batches (pages)"] == "0 (0)"
    failed = dict(real, checks={"0 segmentation fallbacks": False})
    assert dict(zip(HEADERS, real_model_row(failed), strict=True))["fallback batches (pages)"] == "some"
    assert real_model_row(None) is None and real_model_row({"promoted_pages": 0}) is None
