//! What `spindle index` reads: files and folders (recursively) of
//! Markdown, HTML, PDF, plain text and JSON lines, each turned into
//! documents along its own structure. A Markdown or HTML file gives one
//! document per section (heading), titled with the file's title and the
//! heading path and linked to the section's anchor; a PDF one per page
//! (linked as `#page=N`, which PDF viewers open at that page); a text file
//! gives one document (the chunker splits them all by size, at paragraph
//! boundaries where it can). Every document carries the file it came from
//! (`source`), its format, its modification time and, unless the file says
//! it, its language.

use anyhow::{Context, bail};
use globset::{Glob, GlobSet, GlobSetBuilder};
use spindle_text::corpus::{Document, parse_jsonl};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The formats read, by file extension.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Format {
    JsonLines,
    Markdown,
    Html,
    Pdf,
    Text,
}

impl Format {
    pub fn of(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "jsonl" => Format::JsonLines,
            "md" | "markdown" => Format::Markdown,
            "html" | "htm" => Format::Html,
            "pdf" => Format::Pdf,
            "txt" | "text" => Format::Text,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Format::JsonLines => "jsonl",
            Format::Markdown => "markdown",
            Format::Html => "html",
            Format::Pdf => "pdf",
            Format::Text => "text",
        }
    }
}

/// The files under `paths` that have a known format, minus those matching
/// `exclude` (globs against the path as found), sorted. A path given
/// directly must exist and have a known format.
pub fn collect(paths: &[PathBuf], exclude: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    let mut set = GlobSetBuilder::new();
    for pattern in exclude {
        set.add(Glob::new(pattern).with_context(|| format!("--exclude {pattern:?}"))?);
    }
    let exclude = set.build()?;
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            walk(path, path, &exclude, &mut out)?;
        } else if Format::of(path).is_none() {
            bail!("{}: unknown format (use .md, .html, .pdf, .txt or .jsonl)", path.display());
        } else if !excluded(&exclude, Path::new(""), path) {
            out.push(path.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Whether `path` (found under `root`) matches an exclusion: as found, below
/// its root, or by its file name.
fn excluded(set: &GlobSet, root: &Path, path: &Path) -> bool {
    set.is_match(path)
        || path.strip_prefix(root).is_ok_and(|rel| set.is_match(rel))
        || path.file_name().is_some_and(|n| set.is_match(n))
}

fn walk(root: &Path, dir: &Path, exclude: &GlobSet, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        let hidden = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
        if hidden || excluded(exclude, root, &path) {
            continue;
        }
        if path.is_dir() {
            walk(root, &path, exclude, out)?;
        } else if Format::of(&path).is_some_and(|f| f != Format::JsonLines || !is_eval_file(&path)) {
            out.push(path);
        }
    }
    Ok(())
}

/// Evaluation queries next to a corpus are not documents.
fn is_eval_file(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("eval-"))
}

/// One section of a structured document.
#[derive(Debug, Default, PartialEq)]
struct Section {
    headings: Vec<String>,
    anchor: Option<String>,
    text: String,
}

/// The documents of one file. `base_url`, when given, is prefixed to the
/// file's path to make its links; otherwise links are `file://` URLs.
pub fn documents(path: &Path, bytes: &[u8], base_url: Option<&str>) -> anyhow::Result<Vec<Document>> {
    let format = Format::of(path).context("unknown format")?;
    let text = || std::str::from_utf8(bytes).map_err(|e| anyhow::anyhow!("not UTF-8 text ({e})"));
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("document").to_string();
    let (title, sections) = match format {
        Format::JsonLines => return parse_jsonl(text()?).map_err(anyhow::Error::msg),
        Format::Markdown => markdown(text()?),
        Format::Html => html(text()?),
        Format::Pdf => (None, pdf(bytes)?),
        Format::Text => (None, vec![Section { text: text()?.to_string(), ..Section::default() }]),
    };
    let title = title.unwrap_or(stem);
    let source = path.to_string_lossy().replace('\\', "/");
    let link = match base_url {
        Some(base) => format!("{}/{}", base.trim_end_matches('/'), source.trim_start_matches("./")),
        None => {
            url::Url::from_file_path(std::path::absolute(path)?).map(String::from).unwrap_or_else(|_| source.clone())
        }
    };
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_default();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut docs = Vec::new();
    for section in sections.into_iter().filter(|s| !s.text.trim().is_empty()) {
        let anchor = section.anchor.as_deref().unwrap_or("");
        // Two sections with one heading text: the second gets `-1`, as
        // GitHub numbers duplicate anchors.
        let n = seen.entry(anchor.to_string()).or_default();
        let anchor = if *n == 0 { anchor.to_string() } else { format!("{anchor}-{n}") };
        *n += 1;
        let id = if anchor.is_empty() { source.clone() } else { format!("{source}#{anchor}") };
        let url = if anchor.is_empty() { link.clone() } else { format!("{link}#{anchor}") };
        let heading_path = section.headings.join(" › ");
        let mut metadata = BTreeMap::from([
            ("source".to_string(), source.clone()),
            ("format".to_string(), format.name().to_string()),
            ("modified".to_string(), modified.clone()),
        ]);
        if !heading_path.is_empty() {
            metadata.insert("section".into(), heading_path.clone());
        }
        if let Some(lang) = spindle_text::lang::detect(&section.text) {
            metadata.insert("lang".into(), lang.into());
        }
        // The title, then the headings below it (the first heading is
        // often the title itself).
        let below = match section.headings.first() {
            Some(first) if *first == title => &section.headings[1..],
            _ => &section.headings[..],
        };
        let shown_title = if below.is_empty() { title.clone() } else { format!("{title} › {}", below.join(" › ")) };
        docs.push(Document {
            id,
            title: Some(shown_title),
            text: section.text.trim().to_string(),
            url: Some(url),
            metadata,
        });
    }
    Ok(docs)
}

/// A heading's anchor, as GitHub makes it: lower case, spaces to `-`,
/// punctuation dropped (letters of every script kept).
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Sections of a Markdown file, and its title (the first level-1 heading).
fn markdown(text: &str) -> (Option<String>, Vec<Section>) {
    use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};
    let mut title = None;
    let mut sections = vec![Section::default()];
    let mut stack: Vec<(HeadingLevel, String)> = Vec::new();
    let mut heading: Option<(HeadingLevel, String)> = None;
    for event in Parser::new(text) {
        match event {
            Event::Start(Tag::Heading { level, .. }) => heading = Some((level, String::new())),
            Event::End(TagEnd::Heading(_)) => {
                let Some((level, text)) = heading.take() else { continue };
                let text = text.trim().to_string();
                if level == HeadingLevel::H1 && title.is_none() {
                    title = Some(text.clone());
                }
                stack.retain(|(l, _)| *l < level);
                stack.push((level, text.clone()));
                sections.push(Section {
                    headings: stack.iter().map(|(_, t)| t.clone()).collect(),
                    anchor: Some(slug(&text)),
                    text: String::new(),
                });
            }
            Event::Text(t) | Event::Code(t) => match &mut heading {
                Some((_, h)) => h.push_str(&t),
                None => sections.last_mut().expect("one section at least").text.push_str(&t),
            },
            Event::SoftBreak | Event::HardBreak => sections.last_mut().expect("one section").text.push(' '),
            Event::End(TagEnd::Paragraph | TagEnd::Item | TagEnd::CodeBlock | TagEnd::TableRow) => {
                sections.last_mut().expect("one section").text.push('\n')
            }
            _ => {}
        }
    }
    (title, sections)
}

/// One section per page of a PDF, anchored `page=N`. Encrypted files and
/// files without any text (scans) are refused with the reason.
fn pdf(bytes: &[u8]) -> anyhow::Result<Vec<Section>> {
    use pdf_extract::{Document, PlainTextOutput, output_doc_page};
    // pdf-extract panics on some malformed files (it unwraps inside); one
    // bad file must be reported, not end the run.
    let pages = std::panic::catch_unwind(|| -> anyhow::Result<Vec<(u32, String)>> {
        let doc = Document::load_mem(bytes).map_err(|e| anyhow::anyhow!("not a readable PDF ({e})"))?;
        if doc.is_encrypted() {
            bail!("encrypted PDF: decrypt it first");
        }
        let mut pages = Vec::new();
        for page in doc.get_pages().into_keys() {
            let mut text = String::new();
            output_doc_page(&doc, &mut PlainTextOutput::new(&mut text), page)
                .map_err(|e| anyhow::anyhow!("page {page}: {e}"))?;
            pages.push((page, text));
        }
        Ok(pages)
    })
    .map_err(|_| anyhow::anyhow!("the PDF parser failed on this file"))??;
    if pages.iter().all(|(_, t)| t.trim().is_empty()) {
        bail!("no text in this PDF ({} page(s); scanned images need OCR first)", pages.len());
    }
    Ok(pages
        .into_iter()
        .map(|(n, text)| Section { headings: vec![format!("page {n}")], anchor: Some(format!("page={n}")), text })
        .collect())
}

/// Sections of an HTML page (one per `h1`-`h6`, anchored by its `id`), and
/// its title (`<title>`, else the first `h1`). Scripts, styles and
/// navigation are left out.
fn html(text: &str) -> (Option<String>, Vec<Section>) {
    use scraper::{Html, Node, Selector};
    let page = Html::parse_document(text);
    let title = Selector::parse("title")
        .ok()
        .and_then(|s| page.select(&s).next())
        .map(|t| t.text().collect::<String>().trim().to_string())
        .filter(|t| !t.is_empty());
    let mut sections = vec![Section::default()];
    let mut stack: Vec<(u8, String)> = Vec::new();
    let mut first_h1 = None;
    let body = Selector::parse("body").ok().and_then(|s| page.select(&s).next());
    let root = body.map(|b| *b).unwrap_or_else(|| *page.root_element());
    let mut todo = vec![root];
    while let Some(node) = todo.pop() {
        match node.value() {
            Node::Text(t) => sections.last_mut().expect("one section").text.push_str(t),
            Node::Element(e) => {
                let name = e.name();
                if matches!(name, "script" | "style" | "noscript" | "template" | "nav" | "head") {
                    continue;
                }
                if let Some(level) =
                    name.strip_prefix('h').and_then(|l| l.parse::<u8>().ok()).filter(|l| (1..=6).contains(l))
                {
                    let text: String = scraper::ElementRef::wrap(node)
                        .map(|h| h.text().collect::<String>())
                        .unwrap_or_default()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ");
                    if level == 1 && first_h1.is_none() {
                        first_h1 = Some(text.clone());
                    }
                    stack.retain(|(l, _)| *l < level);
                    stack.push((level, text.clone()));
                    let anchor = e.id().map(str::to_string).unwrap_or_else(|| slug(&text));
                    sections.push(Section {
                        headings: stack.iter().map(|(_, t)| t.clone()).collect(),
                        anchor: Some(anchor),
                        text: String::new(),
                    });
                    continue;
                }
                if matches!(name, "p" | "li" | "div" | "br" | "tr" | "pre" | "blockquote" | "section" | "article") {
                    sections.last_mut().expect("one section").text.push('\n');
                }
                // Children in document order: pushed in reverse.
                let children: Vec<_> = node.children().collect();
                todo.extend(children.into_iter().rev());
            }
            _ => {}
        }
    }
    for s in &mut sections {
        s.text = s
            .text
            .split('\n')
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
    }
    (title.or(first_h1), sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(name: &str, text: &str) -> Vec<Document> {
        documents(Path::new(name), text.as_bytes(), Some("https://docs.example.org")).unwrap()
    }

    #[test]
    fn pdf_pages_become_sections_and_unreadable_pdfs_say_why() {
        let bytes =
            spindle_testkit::pdf::write(&["Backups run nightly.\nThey keep 30 days.", "", "Restores take an hour."]);
        let d = documents(Path::new("ops/runbook.pdf"), &bytes, Some("https://docs.example.org")).unwrap();
        let ids: Vec<&str> = d.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["ops/runbook.pdf#page=1", "ops/runbook.pdf#page=3"]);
        assert!(d[0].text.contains("Backups run nightly.") && d[0].text.contains("30 days"), "{:?}", d[0].text);
        assert_eq!(d[1].title.as_deref(), Some("runbook › page 3"));
        assert_eq!(d[1].url.as_deref(), Some("https://docs.example.org/ops/runbook.pdf#page=3"));
        assert_eq!(d[1].metadata["format"], "pdf");

        let scan = spindle_testkit::pdf::write(&["", ""]);
        let err = documents(Path::new("scan.pdf"), &scan, None).unwrap_err().to_string();
        assert!(err.contains("no text in this PDF (2 page(s)"), "{err}");
        let err = documents(Path::new("bad.pdf"), b"%PDF-1.5 garbage", None).unwrap_err().to_string();
        assert!(err.contains("PDF"), "{err}");
    }

    #[test]
    fn markdown_is_split_by_heading_with_its_path_and_anchor() {
        let d = docs(
            "guide/install.md",
            "# Installing\nIntro text.\n\n## With apt\nRun `apt install x`.\n\n### Offline\nUse a mirror.\n\n## From source\nBuild it.\n",
        );
        let ids: Vec<&str> = d.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "guide/install.md#installing",
                "guide/install.md#with-apt",
                "guide/install.md#offline",
                "guide/install.md#from-source"
            ]
        );
        assert_eq!(d[2].title.as_deref(), Some("Installing › With apt › Offline"));
        assert_eq!(d[1].text, "Run apt install x.");
        assert_eq!(d[2].url.as_deref(), Some("https://docs.example.org/guide/install.md#offline"));
        assert_eq!(d[1].metadata["section"], "Installing › With apt");
        assert_eq!(d[1].metadata["lang"], "en");
        assert_eq!(d[1].metadata["format"], "markdown");
        assert_eq!(d[1].metadata["source"], "guide/install.md");
    }

    #[test]
    fn html_sections_follow_headings_and_leave_out_scripts() {
        let d = docs(
            "faq.html",
            r#"<html><head><title>FAQ</title><script>var x = 1;</script></head><body>
               <nav>Home | About</nav><h1>Questions</h1><p>Read this first.</p>
               <h2 id="apt">What is APT?</h2><p>APT installs <b>packages</b>.</p><script>alert(1)</script>
               <h2>如何安装？</h2><p>使用 apt 安装软件包。</p></body></html>"#,
        );
        assert_eq!(d.len(), 3, "{d:#?}");
        assert_eq!(d[1].id, "faq.html#apt");
        assert_eq!(d[1].text, "APT installs packages.");
        assert_eq!(d[1].title.as_deref(), Some("FAQ › Questions › What is APT?"));
        assert_eq!(d[2].id, "faq.html#如何安装");
        assert_eq!(d[2].metadata["lang"], "zh");
        assert!(d.iter().all(|d| !d.text.contains("alert") && !d.text.contains("Home")));
    }

    #[test]
    fn text_is_one_document_and_bad_bytes_are_an_error() {
        let d = docs("notes/readme.txt", "Plain notes about the mirror.\n\nSecond paragraph.");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].id, "notes/readme.txt");
        assert_eq!(d[0].title.as_deref(), Some("readme"));
        let err = documents(Path::new("x.txt"), &[0xff, 0xfe, 0x00], None).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }

    #[test]
    fn folders_are_read_recursively_without_what_is_excluded() {
        let dir = std::env::temp_dir().join(format!("spindle-index-files-{}", std::process::id()));
        for f in
            ["docs/a.md", "docs/drafts/b.md", "docs/sub/c.html", "docs/.hidden/d.md", "docs/e.png", "docs/f.tmp.md"]
        {
            std::fs::create_dir_all(dir.join(f).parent().unwrap()).unwrap();
            std::fs::write(dir.join(f), "x").unwrap();
        }
        let found = collect(&[dir.join("docs")], &["drafts/**".into(), "*.tmp.md".into()]).unwrap();
        let rel: Vec<String> = found.iter().map(|p| p.strip_prefix(&dir).unwrap().display().to_string()).collect();
        assert_eq!(rel, ["docs/a.md", "docs/sub/c.html"]);
        assert!(collect(&[dir.join("docs/e.png")], &[]).unwrap_err().to_string().contains("unknown format"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn duplicate_headings_get_numbered_anchors() {
        let d = docs("a.md", "## Usage\none\n## Usage\ntwo\n");
        assert_eq!(d.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["a.md#usage", "a.md#usage-1"]);
    }
}
