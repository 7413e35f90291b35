#!/usr/bin/env python3
"""Turns the Debian FAQ HTML (Debian packages debian-faq, debian-faq-zh-cn)
into the bundled corpus and its evaluation queries.

Each numbered question section becomes one document whose text is the answer
body only (the question title is kept as `title` for display but is not part
of `text`, so a title query cannot match itself trivially). Every question
title becomes an evaluation query whose one relevant document is its section.

Usage: python3 scripts/make-corpus.py   (writes corpus/*.jsonl)
Needs: apt-get install -y debian-faq debian-faq-zh-cn (see docs/backends.md)
"""
import html.parser
import json
import pathlib
import re

FAQ = pathlib.Path("/usr/share/doc/debian/FAQ")
OUT = pathlib.Path(__file__).resolve().parent.parent / "corpus"
LANGS = {"en": (FAQ, ".en.html"), "zh": (FAQ / "zh-cn", ".zh-cn.html")}
MIN_CHARS = 40


class Sections(html.parser.HTMLParser):
    """Collects (id, title, body) for every <h2|h3 class="title"><a id=...> section."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.sections = []
        self.in_title = False
        self.skip = 0
        self.cur = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("h2", "h3") and a.get("class") == "title":
            self.in_title = True
            self.cur = {"id": None, "title": "", "body": []}
            self.sections.append(self.cur)
        elif tag == "a" and self.in_title and a.get("id") and self.cur["id"] is None:
            self.cur["id"] = a["id"]
        elif tag == "div" and (self.skip or a.get("class") in ("navfooter", "navheader", "toc")):
            # Count nested divs so the skipped block ends with its own </div>.
            self.skip += 1
        elif tag in ("p", "li", "pre", "br", "dt", "dd", "tr") and self.cur:
            self.cur["body"].append("\n")

    def handle_endtag(self, tag):
        if tag in ("h2", "h3") and self.in_title:
            self.in_title = False
        elif tag == "div" and self.skip:
            self.skip -= 1

    def handle_data(self, data):
        if self.skip or not self.cur:
            return
        if self.in_title:
            self.cur["title"] += data
        else:
            self.cur["body"].append(data)


def clean(text):
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    text = re.sub(r"\s*\n\s*", "\n", text)
    return re.sub(r"\n{2,}", "\n", text).strip()


def main():
    OUT.mkdir(exist_ok=True)
    for lang, (folder, suffix) in LANGS.items():
        docs, queries = [], []
        for page in sorted(folder.glob("*" + suffix)):
            if page.name.startswith(("index", "faqinfo")):
                continue
            parser = Sections()
            parser.feed(page.read_text(encoding="utf-8"))
            for s in parser.sections:
                body = clean("".join(s["body"]))
                title = clean(s["title"])
                # Strip the section number ("1.2. ") from the question.
                question = re.sub(r"^[0-9]+(\.[0-9]+)*\.?\s*", "", title)
                if not s["id"] or len(body) <= MIN_CHARS:
                    continue
                doc_id = f"{lang}:{s['id']}"
                docs.append({
                    "id": doc_id,
                    "title": question,
                    "text": body,
                    "url": f"https://www.debian.org/doc/manuals/debian-faq/{page.name.split('.')[0]}.{'en' if lang == 'en' else 'zh-cn'}.html#{s['id']}",
                    "metadata": {"lang": lang, "source": "debian-faq"},
                })
                queries.append({"query": question, "relevant": [doc_id], "lang": lang})
        with open(OUT / f"debian-faq.{lang}.jsonl", "w", encoding="utf-8") as f:
            for d in docs:
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
        with open(OUT / f"eval-queries.{lang}.jsonl", "w", encoding="utf-8") as f:
            for q in queries:
                f.write(json.dumps(q, ensure_ascii=False) + "\n")
        print(lang, len(docs), "documents")


if __name__ == "__main__":
    main()
