//! `spin.toml`'s `[variables]` is the one source of truth for the app's
//! variables; these tests check every other place that names one against it:
//!
//! - the components' code: every variable it reads is passed to it by
//!   `[component.ID.variables]` (of the component itself when it is an HTTP
//!   component, else of every component whose dependencies inherit its
//!   configuration) and refers to a `[variables]` entry with a default or
//!   `required`; no passed variable goes unread;
//! - docs/configuration.md documents every variable, with spin.toml's
//!   default, and the variable tables of README.md and docs/ name no
//!   variable spin.toml lacks and show no other default.
//!
//! The code is read as text: a reader is `spin_sdk::variables::get` or any
//! function that passes one of its parameters on to a reader as the name
//! (`variable_or`, `variable_u64`, a private `timeout(name, ..)`), found
//! by a fixed point over the sources under `components/`. A call whose
//! name argument is neither a string literal nor such a parameter fails
//! the test, so a read cannot hide behind a computed name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// spin.toml, as plain TOML.
struct Manifest {
    variables: toml::Table,
    components: toml::Table,
    triggered: BTreeSet<String>,
}

impl Manifest {
    fn load() -> Manifest {
        let m: toml::Table = toml::from_str(&read(&root().join("spin.toml"))).expect("spin.toml parses");
        let table = |v: Option<&toml::Value>| v.and_then(toml::Value::as_table).cloned().unwrap_or_default();
        let triggered = m
            .get("trigger")
            .and_then(|t| t.get("http"))
            .and_then(toml::Value::as_array)
            .map(|ts| ts.iter().filter_map(|t| t.get("component")?.as_str().map(String::from)).collect())
            .unwrap_or_default();
        Manifest { variables: table(m.get("variables")), components: table(m.get("component")), triggered }
    }

    fn component_variables(&self, id: &str) -> BTreeMap<String, String> {
        self.components[id]
            .get("variables")
            .and_then(toml::Value::as_table)
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
            .unwrap_or_default()
    }

    /// The components whose `[component.ID.variables]` component `id` reads.
    fn configuring(&self, id: &str) -> BTreeSet<String> {
        if self.triggered.contains(id) {
            return BTreeSet::from([id.to_string()]);
        }
        let gives_variables = |inherit: Option<&toml::Value>| match inherit {
            Some(toml::Value::Boolean(b)) => *b,
            Some(toml::Value::Array(caps)) => caps.iter().any(|c| c.as_str() == Some("variables")),
            _ => false,
        };
        self.components
            .iter()
            .filter(|(_, c)| {
                c.get("dependencies_inherit_configuration").and_then(toml::Value::as_bool) == Some(true)
                    || c.get("dependencies").and_then(toml::Value::as_table).is_some_and(|deps| {
                        deps.values().any(|d| {
                            d.get("component").and_then(toml::Value::as_str) == Some(id)
                                && gives_variables(d.get("inherit_configuration"))
                        })
                    })
            })
            .map(|(pid, _)| pid.clone())
            .collect()
    }

    /// The spin.toml component built from the crate named `package`.
    fn component_of_package(&self, package: &str) -> Option<String> {
        let stem = package.replace('-', "_");
        self.components
            .iter()
            .find(|(_, c)| {
                c.get("source")
                    .and_then(toml::Value::as_str)
                    .and_then(|s| Path::new(s).file_stem())
                    .is_some_and(|f| f.to_string_lossy() == stem)
            })
            .map(|(id, _)| id.clone())
    }
}

/// The names each `{{ name }}` of `template` refers to.
fn references(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else { break };
        names.push(rest[start + 2..start + len].trim().to_string());
        rest = &rest[start + len + 2..];
    }
    names
}

// ---- reading Rust sources as text --------------------------------------

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `text` with comments blanked and the contents of string and char
/// literals blanked (quotes kept), same length, so brackets and commas in
/// it are code.
fn mask(text: &[char]) -> Vec<char> {
    let mut out = text.to_vec();
    let n = text.len();
    let at = |i: usize| text.get(i).copied().unwrap_or('\0');
    let blank = |out: &mut Vec<char>, from: usize, to: usize| {
        for c in &mut out[from..to.min(n)] {
            if *c != '\n' {
                *c = ' ';
            }
        }
    };
    let mut i = 0;
    while i < n {
        let c = text[i];
        if c == '/' && at(i + 1) == '/' {
            let end = (i..n).find(|&j| text[j] == '\n').unwrap_or(n);
            blank(&mut out, i, end);
            i = end;
        } else if c == '/' && at(i + 1) == '*' {
            let (mut depth, mut j) = (1, i + 2);
            while j < n && depth > 0 {
                if text[j] == '/' && at(j + 1) == '*' {
                    depth += 1;
                    j += 2;
                } else if text[j] == '*' && at(j + 1) == '/' {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if c == 'r'
            && (i == 0 || !is_ident(text[i - 1]) || (text[i - 1] == 'b' && (i < 2 || !is_ident(text[i - 2]))))
            && {
                let hashes = (i + 1..n).take_while(|&j| text[j] == '#').count();
                at(i + 1 + hashes) == '"'
            }
        {
            let hashes = (i + 1..n).take_while(|&j| text[j] == '#').count();
            let start = i + 2 + hashes;
            let mut j = start;
            while j < n && !(text[j] == '"' && (1..=hashes).all(|h| at(j + h) == '#')) {
                j += 1;
            }
            blank(&mut out, start, j);
            i = j + 1 + hashes;
        } else if c == '"' {
            let mut j = i + 1;
            while j < n && text[j] != '"' {
                j += if text[j] == '\\' { 2 } else { 1 };
            }
            blank(&mut out, i + 1, j);
            i = j + 1;
        } else if c == '\'' && at(i + 1) == '\\' {
            let end = (i + 3..n).find(|&j| text[j] == '\'').unwrap_or(n);
            blank(&mut out, i + 1, end);
            i = end + 1;
        } else if c == '\'' && at(i + 2) == '\'' {
            blank(&mut out, i + 1, i + 2);
            i += 3;
        } else {
            i += 1;
        }
    }
    out
}

/// The index of the bracket closing the one at `open`.
fn closing(masked: &[char], open: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (j, &c) in masked.iter().enumerate().skip(open) {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

/// The top-level comma-separated pieces of `masked[from..to]`, as ranges.
fn split_args(masked: &[char], from: usize, to: usize) -> Vec<(usize, usize)> {
    let mut pieces = Vec::new();
    let (mut depth, mut start) = (0i32, from);
    for j in from..to {
        match masked[j] {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            '<' if masked[..j].last() != Some(&'-') => depth += 1,
            '>' if masked[..j].last() != Some(&'-') && masked[..j].last() != Some(&'=') => depth -= 1,
            ',' if depth == 0 => {
                pieces.push((start, j));
                start = j + 1;
            }
            _ => {}
        }
    }
    if masked[start..to].iter().any(|c| !c.is_whitespace()) {
        pieces.push((start, to));
    }
    pieces
}

fn text_of(chars: &[char], (from, to): (usize, usize)) -> String {
    chars[from..to].iter().collect::<String>().trim().to_string()
}

struct Function {
    name: String,
    public: bool,
    params: Vec<String>,
    body: (usize, usize),
}

struct SourceFile {
    path: PathBuf,
    package: String,
    text: Vec<char>,
    masked: Vec<char>,
    functions: Vec<Function>,
}

impl SourceFile {
    fn parse(path: PathBuf, package: String) -> SourceFile {
        let text: Vec<char> = read(&path).chars().collect();
        let masked = mask(&text);
        let mut functions = Vec::new();
        let s: String = masked.iter().collect();
        let chars_before = |byte: usize| s[..byte].chars().count();
        for (byte, _) in s.match_indices("fn ") {
            let i = chars_before(byte);
            if i > 0 && is_ident(masked[i - 1]) {
                continue;
            }
            let mut j = i + 3;
            let name: String =
                masked[j..].iter().skip_while(|c| c.is_whitespace()).take_while(|&&c| is_ident(c)).collect();
            if name.is_empty() {
                continue;
            }
            j = (j..masked.len()).find(|&k| masked[k] == '(' || masked[k] == '{' || masked[k] == ';').unwrap_or(j);
            if masked[j] != '(' {
                continue;
            }
            let Some(close) = closing(&masked, j) else { continue };
            let params = split_args(&masked, j + 1, close)
                .into_iter()
                .map(|r| {
                    let p = text_of(&masked, r);
                    p.split(':').next().unwrap_or("").trim().trim_start_matches("mut ").trim().to_string()
                })
                .collect();
            let Some(open) = (close..masked.len()).find(|&k| masked[k] == '{' || masked[k] == ';') else { continue };
            if masked[open] == ';' {
                continue;
            }
            let Some(end) = closing(&masked, open) else { continue };
            let line_start = masked[..i].iter().rposition(|&c| c == '\n').map_or(0, |p| p + 1);
            let public =
                masked[line_start..i].iter().collect::<String>().split_whitespace().any(|w| w.starts_with("pub"));
            functions.push(Function { name, public, params, body: (open, end) });
        }
        SourceFile { path, package, text, masked, functions }
    }

    fn line(&self, i: usize) -> usize {
        self.masked[..i].iter().filter(|&&c| c == '\n').count() + 1
    }

    fn enclosing(&self, i: usize) -> Option<&Function> {
        self.functions.iter().filter(|f| f.body.0 < i && i < f.body.1).min_by_key(|f| f.body.1 - f.body.0)
    }

    /// Each call of `name` in the file: its position and argument ranges.
    fn calls(&self, name: &str) -> Vec<(usize, Vec<(usize, usize)>)> {
        let s: String = self.masked.iter().collect();
        let target: Vec<char> = name.chars().collect();
        let mut out = Vec::new();
        for (byte, _) in s.match_indices(name) {
            let i = s[..byte].chars().count();
            let before = if i > 0 { self.masked[i - 1] } else { ' ' };
            if is_ident(before) || before == '.' {
                continue;
            }
            let prefix: String = self.masked[i.saturating_sub(3)..i].iter().collect();
            if prefix == "fn " {
                continue;
            }
            let after = i + target.len();
            let Some(open) = (after..self.masked.len()).find(|&k| !self.masked[k].is_whitespace()) else { continue };
            if self.masked[open] != '(' {
                continue;
            }
            let Some(close) = closing(&self.masked, open) else { continue };
            out.push((i, split_args(&self.masked, open + 1, close)));
        }
        out
    }
}

/// A function that reads the variable named by its argument `arg`.
#[derive(Clone, PartialEq)]
struct Reader {
    name: String,
    arg: usize,
    /// Where it is defined; `None` for spin-sdk's.
    file: Option<PathBuf>,
    public: bool,
}

/// One read of a variable in code.
struct Read {
    package: String,
    variable: String,
    at: String,
    /// The default argument right after the name, for the listing.
    default: Option<String>,
}

struct Scan {
    reads: Vec<Read>,
    unresolved: Vec<String>,
}

/// The package each crate under `components/` is, and the packages it
/// depends on.
fn crates() -> BTreeMap<PathBuf, (String, BTreeSet<String>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root().join("components")];
    while let Some(dir) = stack.pop() {
        let cargo = dir.join("Cargo.toml");
        if cargo.is_file() {
            let t: toml::Table = toml::from_str(&read(&cargo)).unwrap();
            let name = t["package"]["name"].as_str().unwrap().to_string();
            let deps = t
                .get("dependencies")
                .and_then(toml::Value::as_table)
                .map(|d| {
                    d.iter()
                        .map(|(k, v)| v.get("package").and_then(toml::Value::as_str).unwrap_or(k).to_string())
                        .collect()
                })
                .unwrap_or_default();
            out.insert(dir.clone(), (name, deps));
        }
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() && p.file_name().is_some_and(|n| n != "target" && n != "node_modules") {
                stack.push(p);
            }
        }
    }
    out
}

fn scan() -> Scan {
    let crates = crates();
    let mut files = Vec::new();
    let mut stack = vec![root().join("components")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() && p.file_name().is_some_and(|n| n != "target" && n != "node_modules") {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let package = crates
                    .iter()
                    .filter(|(d, _)| p.starts_with(d))
                    .max_by_key(|(d, _)| d.components().count())
                    .map(|(_, (n, _))| n.clone())
                    .unwrap_or_default();
                files.push(SourceFile::parse(p, package));
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut readers = vec![Reader { name: "variables::get".into(), arg: 0, file: None, public: true }];
    let mut reads = Vec::new();
    let mut unresolved = Vec::new();
    let mut done = 0;
    while done < readers.len() {
        let reader = readers[done].clone();
        done += 1;
        for f in &files {
            let elsewhere = reader.file.as_ref().is_some_and(|d| *d != f.path);
            if elsewhere && (!reader.public || f.functions.iter().any(|g| g.name == reader.name)) {
                continue;
            }
            for (at, args) in f.calls(&reader.name) {
                let where_ = format!("{}:{}", f.path.strip_prefix(root()).unwrap_or(&f.path).display(), f.line(at));
                let Some(&range) = args.get(reader.arg) else {
                    unresolved.push(format!("{where_}: `{}` without its name argument", reader.name));
                    continue;
                };
                let arg = text_of(&f.text, range);
                if arg.len() >= 2 && arg.starts_with('"') && arg.ends_with('"') && !arg.contains('\\') {
                    reads.push(Read {
                        package: f.package.clone(),
                        variable: arg[1..arg.len() - 1].to_string(),
                        at: where_,
                        default: args.get(reader.arg + 1).map(|&r| text_of(&f.text, r)),
                    });
                    continue;
                }
                let wrapper = f.enclosing(at).and_then(|g| g.params.iter().position(|p| *p == arg).map(|k| (g, k)));
                match wrapper {
                    Some((g, k)) => {
                        let new = Reader { name: g.name.clone(), arg: k, file: Some(f.path.clone()), public: g.public };
                        if !readers.contains(&new) {
                            readers.push(new);
                        }
                    }
                    None => unresolved.push(format!(
                        "{where_}: `{}({arg}, ..)` reads a variable whose name is not a string literal",
                        reader.name
                    )),
                }
            }
        }
    }
    Scan { reads, unresolved }
}

/// The spin.toml components that run the code of `package`: the ones built
/// from it or from a crate that depends on it.
fn components_running(m: &Manifest, package: &str) -> BTreeSet<String> {
    let crates: BTreeMap<String, BTreeSet<String>> = crates().into_values().collect();
    let mut users = BTreeSet::from([package.to_string()]);
    loop {
        let more: BTreeSet<String> = crates
            .iter()
            .filter(|(name, deps)| !users.contains(*name) && deps.iter().any(|d| users.contains(d)))
            .map(|(name, _)| name.clone())
            .collect();
        if more.is_empty() {
            break;
        }
        users.extend(more);
    }
    users.iter().filter_map(|p| m.component_of_package(p)).collect()
}

#[test]
fn every_variable_the_code_reads_is_declared_in_spin_toml() {
    let m = Manifest::load();
    let scan = scan();
    assert!(
        scan.reads.iter().any(|r| r.variable == "llm_url"),
        "the scan found no read of llm_url: has the variables helper changed?"
    );
    // A read the scan cannot follow is a problem too: its variable is unknown.
    let mut problems = scan.unresolved.clone();
    let mut passed_and_read: BTreeSet<(String, String)> = BTreeSet::new();
    for read in &scan.reads {
        let running = components_running(&m, &read.package);
        if running.is_empty() {
            println!("not in spin.toml, not checked: {} reads {} ({})", read.package, read.variable, read.at);
        }
        for id in running {
            let configuring = m.configuring(&id);
            if configuring.is_empty() {
                problems.push(format!(
                    "{}: component `{id}` reads `{}`, but no component passes it variables",
                    read.at, read.variable
                ));
            }
            for p in configuring {
                passed_and_read.insert((p.clone(), read.variable.clone()));
                if !m.component_variables(&p).contains_key(&read.variable) {
                    problems.push(format!(
                        "{}: component `{id}` reads `{}`, which is not in [component.{p}.variables] of spin.toml",
                        read.at, read.variable
                    ));
                }
            }
        }
    }
    let mut referenced = BTreeSet::new();
    for (id, component) in &m.components {
        for (name, template) in m.component_variables(id) {
            if m.configuring(id).is_empty() && !m.triggered.contains(id) {
                continue;
            }
            if !passed_and_read.contains(&(id.clone(), name.clone())) {
                problems.push(format!("[component.{id}.variables] passes `{name}`, which no code it runs reads"));
            }
            for var in references(&template) {
                match m.variables.get(&var) {
                    None => problems.push(format!(
                        "[component.{id}.variables] {name} = {template:?} refers to `{var}`, which [variables] does not declare"
                    )),
                    Some(def) if def.get("default").is_none() && def.get("required").and_then(toml::Value::as_bool) != Some(true) => {
                        problems.push(format!("[variables] {var} has neither a default nor `required = true`"))
                    }
                    Some(_) => {}
                }
                referenced.insert(var);
            }
        }
        for entry in component.get("allowed_outbound_hosts").and_then(toml::Value::as_array).into_iter().flatten() {
            referenced.extend(references(entry.as_str().unwrap_or_default()));
        }
    }
    for var in m.variables.keys() {
        if !referenced.contains(var) {
            problems.push(format!(
                "[variables] declares `{var}`, which no component variable or allowed_outbound_hosts entry uses"
            ));
        }
    }
    assert!(problems.is_empty(), "spin.toml and the code disagree:\n{}", problems.join("\n"));

    // spin.toml's default is the one source of truth: a literal default the
    // code still carries (for a manifest that leaves the variable out) must
    // say the same. `""` means "unset", handled by the code below the read;
    // named constants are listed for the reader.
    let mut disagree = Vec::new();
    for r in &scan.reads {
        let declared = m.variables.get(&r.variable).and_then(|d| d.get("default")).and_then(toml::Value::as_str);
        let code = r.default.as_deref().unwrap_or("(none)");
        let literal = code
            .strip_prefix('"')
            .and_then(|c| c.strip_suffix('"'))
            .map(str::to_string)
            .or_else(|| code.chars().all(|c| c.is_ascii_digit() || c == '_').then(|| code.replace('_', "")));
        match (literal.as_deref(), declared) {
            (Some(""), _) | (None, _) => {
                println!(
                    "{}: {} code default {code} / spin.toml default {:?}",
                    r.at,
                    r.variable,
                    declared.unwrap_or("")
                )
            }
            (Some(code), Some(declared)) if code == declared => {}
            (Some(code), declared) => disagree.push(format!(
                "{}: `{}` defaults to {code:?} in the code, {:?} in spin.toml",
                r.at,
                r.variable,
                declared.unwrap_or("(none)")
            )),
        }
    }
    assert!(disagree.is_empty(), "code defaults disagree with spin.toml:\n{}", disagree.join("\n"));
}

/// The rows of every Markdown table whose header starts with `variable`:
/// (line number, the variables the first cell names, the default cell).
fn variable_rows(doc: &str) -> Vec<(usize, Vec<String>, Option<String>)> {
    enum State {
        Outside,
        OtherTable,
        /// In a variables table; the index of its `default` column.
        Variables(Option<usize>),
    }
    let mut rows = Vec::new();
    let mut state = State::Outside;
    for (n, line) in doc.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with('|') {
            state = State::Outside;
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        match state {
            State::Outside => {
                state = if matches!(cells[0], "variable" | "variables") {
                    State::Variables(cells.iter().position(|c| *c == "default"))
                } else {
                    State::OtherTable
                }
            }
            State::OtherTable => {}
            State::Variables(column) => {
                if cells[0].chars().all(|c| matches!(c, '-' | ':' | ' ')) {
                    continue;
                }
                let names = cells[0].split('`').skip(1).step_by(2).map(String::from).collect();
                rows.push((n + 1, names, column.and_then(|c| cells.get(c)).map(|c| c.to_string())));
            }
        }
    }
    rows
}

/// Whether a documented default cell says `expected` (spin.toml's).
fn shows_default(cell: &str, expected: &str) -> bool {
    if expected.is_empty() {
        return cell.is_empty() || cell.to_ascii_lowercase().starts_with("empty");
    }
    cell.contains(&format!("`{expected}`")) || cell.split([' ', '(']).next() == Some(expected)
}

#[test]
fn the_docs_document_every_variable_with_its_default() {
    let m = Manifest::load();
    let complete = root().join("docs/configuration.md");
    assert!(complete.is_file(), "docs/configuration.md, where every variable is documented, is missing");
    let mut docs = vec![root().join("README.md")];
    let mut in_docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    in_docs.sort();
    docs.extend(in_docs);
    let mut problems = Vec::new();
    for doc in docs {
        let rel = doc.strip_prefix(root()).unwrap().display().to_string();
        let mut documented = BTreeSet::new();
        for (line, names, cell) in variable_rows(&read(&doc)) {
            for name in names {
                match m.variables.get(&name) {
                    None => problems.push(format!("{rel}:{line}: `{name}` is not declared in spin.toml's [variables]")),
                    Some(def) => {
                        let default = def.get("default").and_then(toml::Value::as_str);
                        match (&cell, default) {
                            (Some(cell), Some(d)) if !shows_default(cell, d) => problems.push(format!(
                                "{rel}:{line}: `{name}` documented with default {cell:?}, spin.toml has {d:?}"
                            )),
                            (Some(cell), None) if !cell.contains("required") => problems.push(format!(
                                "{rel}:{line}: `{name}` has no default in spin.toml, documented with default {cell:?}"
                            )),
                            _ => {}
                        }
                    }
                }
                documented.insert(name);
            }
        }
        if doc == complete {
            for var in m.variables.keys().filter(|v| !documented.contains(*v)) {
                problems.push(format!("{rel}: `{var}` is in spin.toml's [variables] but in no variables table"));
            }
        }
    }
    assert!(problems.is_empty(), "the docs and spin.toml disagree:\n{}", problems.join("\n"));
}
