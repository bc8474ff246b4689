"""What the context benchmark compares against, and how it reads an answer, kept apart from the runner.

* **Stock hybrid**: every page of the conversation ranked by BM25 (k1 1.2, b 0.75, over the page's
  lowercased words) and by cosine with the question, the two lists fused by reciprocal rank with the
  textbook k=60, then packed like plain dense. It is what anyone would build first with a hybrid store.
* **Answer in the prompt**: LoCoMo's evaluation (snap-research/locomo, `task_eval/evaluation.py`)
  normalises an answer by dropping commas, lowercasing, removing punctuation and the words a, an, the,
  and, then collapsing spaces; a short gold answer (at most `SHORT_ANSWER_WORDS` words so normalised) is
  in a prompt when its normalised words appear, in order and whole, in the normalised prompt. This counts
  what summaries, the profile and facts contribute, which the evidence share (dialogue turns) cannot.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

SHORT_ANSWER_WORDS = 5
RRF_K = 60.0
_PUNCT = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the|and)\b")
_WORD = re.compile(r"[a-z0-9]+")


def normalize_answer(text: str) -> str:
    """LoCoMo's normalize_answer: commas out, lower case, punctuation out, articles out, spaces collapsed."""
    text = str(text).replace(",", "").lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def short_answer(answer: object) -> str | None:
    """The normalised gold answer when it is short enough to look for in a prompt, else None."""
    if answer is None:
        return None
    norm = normalize_answer(str(answer))
    return norm if norm and len(norm.split()) <= SHORT_ANSWER_WORDS else None


def answer_in(answer: str, prompt_normalised: str) -> bool:
    """Whether the normalised answer's words appear whole and in order in the normalised prompt."""
    return f" {answer} " in f" {prompt_normalised} "


def bm25_order(texts: Sequence[str], query: str, k1: float = 1.2, b: float = 0.75) -> list[int]:
    """Indices of `texts` by BM25 score against `query`, best first (ties by index)."""
    docs = [_WORD.findall(t.lower()) for t in texts]
    avg = sum(len(d) for d in docs) / max(len(docs), 1)
    df: Counter[str] = Counter(w for d in docs for w in set(d))
    n = len(docs)
    terms = set(_WORD.findall(query.lower()))
    scores = []
    for doc in docs:
        tf = Counter(doc)
        score = 0.0
        for term in terms & tf.keys():
            idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
            score += idf * tf[term] * (k1 + 1) / (tf[term] + k1 * (1 - b + b * len(doc) / (avg or 1)))
        scores.append(score)
    return sorted(range(n), key=lambda i: (-scores[i], i))


def rrf(orders: Sequence[Sequence[int]], k: float = RRF_K) -> list[int]:
    """Reciprocal rank fusion of ranked index lists: sum of 1 / (k + rank), best first."""
    fused: dict[int, float] = {}
    for order in orders:
        for rank, i in enumerate(order):
            fused[i] = fused.get(i, 0.0) + 1.0 / (k + rank + 1)
    return sorted(fused, key=lambda i: (-fused[i], i))
