"""Every method of the Memoryos API on a 30-turn conversation (run by tests/apps/test_memoryos_facade.py)."""

import json

from memoryos_workers import Memoryos

memo = Memoryos(user_id="tour_user", openai_api_key="k", data_storage_path="./tour_data",
                assistant_id="tour_bot", short_term_capacity=5, mid_term_heat_threshold=5)
for i in range(30):
    memo.add_memory(f"I went climbing in the Alps on trip {i} with my brother Leo",
                    f"Climbing trip {i} sounds great!", timestamp=f"2025-06-{i % 28 + 1:02d}T10:00:00",
                    meta_data={"i": i})
forced = memo.force_mid_term_analysis()
answer = memo.get_response("Who do I go climbing with?", relationship_with_user="coach", style_hint="brief",
                           user_conversation_meta_data={"channel": "test"})
small = memo.retrieve("Who do I go climbing with?", max_tokens=300)
on_day_3 = memo.retrieve("Where did I climb?", filters={"since": "2025-06-03", "until": "2025-06-03"}, max_tokens=0)
print(json.dumps({
    "small_context": {"tokens": small.prompt_tokens(), "max_tokens": small.max_tokens, "pages": len(small.pages)},
    "day_3": sorted({p.timestamp.date().isoformat() for p in [*on_day_3.pages, *on_day_3.short_term]}),
    "forced": forced,
    "answer": answer,
    "profile": memo.get_user_profile_summary(),
    "assistant_knowledge": memo.get_assistant_knowledge_summary(),
    "stats": memo.get_memory_stats(),
}))
memo.close()
