"""A reranker written in Python: maximal marginal relevance over words.

Retrievers often return near-copies of one passage (the same FAQ answer in
two documents, overlapping chunks). This step keeps the most relevant
passage first, then repeatedly picks the passage that best trades relevance
to the question against overlap with what it already picked, so the
`top_n` sources say different things.

Relevance is the share of the question's words the passage contains (plus
the retriever's score, as a tie-breaker); overlap is the Jaccard similarity
of the two passages' word sets. `diversity` (0..1) weighs the two.

Built with componentize-py (see build.sh) against wit/step.wit.
"""

import asyncio
import re
from typing import List

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types

WORD = re.compile(r"\w+", re.UNICODE)
# Weight of "different from the passages already kept" against relevance.
DIVERSITY = 0.3
# Words of a passage considered: bounds the cost of long passages.
MAX_WORDS = 2000


def words(text: str) -> frozenset:
    return frozenset(w.lower() for w in WORD.findall(text)[:MAX_WORDS])


def jaccard(a: frozenset, b: frozenset) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def select(query: str, passages: List[types.Passage], top_n: int) -> List[types.Passage]:
    q = words(query)
    bags = [words((p.title or "") + " " + p.text) for p in passages]
    top_score = max((p.score for p in passages), default=0.0) or 1.0
    relevance = [
        (len(q & bag) / len(q) if q else 0.0) + 0.01 * (p.score / top_score)
        for p, bag in zip(passages, bags)
    ]
    chosen: List[int] = []
    left = list(range(len(passages)))
    while left and len(chosen) < top_n:
        def mmr(i: int) -> float:
            overlap = max((jaccard(bags[i], bags[j]) for j in chosen), default=0.0)
            return (1 - DIVERSITY) * relevance[i] - DIVERSITY * overlap

        # Ties keep the retriever's order.
        best = max(left, key=lambda i: (mmr(i), -i))
        left.remove(best)
        chosen.append(best)
    out = []
    for rank, i in enumerate(chosen):
        p = passages[i]
        p.score = float(len(chosen) - rank)
        out.append(p)
    return out


class Reranker(exports.Reranker):
    async def rerank(
        self, query: str, passages: List[types.Passage], top_n: int, request_id: str
    ) -> List[types.Passage]:
        if not query.strip():
            raise Err(types.StepError_InvalidInput("the query is empty"))
        # Suspend once before returning: a component-to-component call that
        # returns without ever suspending leaves its task record in the host
        # until the instance is dropped (about 2 KB per call).
        await asyncio.sleep(0)
        return select(query, passages, top_n)
