#!/usr/bin/env python3
"""Retrieval quality of a running Spindle over the Debian FAQ evaluation set.

For every question title in corpus/eval-queries.{en,zh}.jsonl (one relevant
document each: its own section), asks POST /api/chat/stream with top_k=10 and
a `lang` filter, reads the `sources` event, and reports nDCG@10 and
recall@10 per language. The `sources` are what the configured retriever and
reranker chose, so this measures the pipeline of the manifest being served.

Usage: python3 scripts/eval-retrieval.py [BASE_URL]   (default http://127.0.0.1:3000)
"""
import json
import math
import pathlib
import sys
import urllib.request

BASE = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:3000"
CORPUS = pathlib.Path(__file__).resolve().parent.parent / "corpus"


def sources(query, lang):
    body = json.dumps({"query": query, "top_k": 10, "filters": {"lang": lang}}).encode()
    req = urllib.request.Request(BASE + "/api/chat/stream", data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as res:
        event = None
        for raw in res:
            line = raw.decode("utf-8").rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "sources":
                return [s["id"] for s in json.loads(line[6:])]
            elif line == "":
                event = None
    raise RuntimeError("no sources event for " + query)


def main():
    print("| language | queries | nDCG@10 | recall@10 |")
    print("|---|---|---|---|")
    for lang in ("en", "zh"):
        queries = [json.loads(l) for l in (CORPUS / f"eval-queries.{lang}.jsonl").read_text(encoding="utf-8").splitlines() if l]
        ndcg = recall = 0.0
        for q in queries:
            ids = sources(q["query"], lang)
            relevant = set(q["relevant"])
            dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ids[:10]) if d in relevant)
            ideal = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), 10)))
            ndcg += dcg / ideal
            recall += len(relevant & set(ids[:10])) / len(relevant)
        n = len(queries)
        print(f"| {lang} | {n} | {ndcg / n:.3f} | {recall / n:.3f} |")


if __name__ == "__main__":
    main()
