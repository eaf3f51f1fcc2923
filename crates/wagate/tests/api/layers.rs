//! The gateway's module graph, read from its sources: layers point down
//! (`domain` ← `store` ← `engine` ← `http` ← `app`), `store`, `auth`, `config` and `domain` never
//! reach `http` or `app`, and no two top-level modules of `src/` import each other in a loop.
//!
//! A module "references" another when any of its files names it: `crate::x` (also inside
//! `use crate::{x, y::z}` groups), or `super::x` where the `super`s climb to the crate root.
//! Comments and string literals are ignored; inline `mod m { .. }` blocks count for `super`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where a reference was seen, for the failure message.
type Seen = BTreeMap<(String, String), String>;

/// The top-level module graph: module → modules it references, and one place per edge.
struct Graph {
    edges: BTreeMap<String, BTreeSet<String>>,
    seen: Seen,
}

impl Graph {
    fn refs(&self, m: &str) -> BTreeSet<String> {
        self.edges.get(m).cloned().unwrap_or_default()
    }

    fn at(&self, from: &str, to: &str) -> &str {
        self.seen
            .get(&(from.to_owned(), to.to_owned()))
            .map(String::as_str)
            .unwrap_or("?")
    }

    /// Every cycle a depth-first walk meets (one per back edge), each as `a -> b -> a`.
    fn cycles(&self) -> Vec<Vec<String>> {
        fn walk(
            g: &Graph,
            m: &str,
            stack: &mut Vec<String>,
            done: &mut BTreeSet<String>,
            out: &mut Vec<Vec<String>>,
        ) {
            stack.push(m.to_owned());
            for n in g.refs(m) {
                if let Some(i) = stack.iter().position(|s| *s == n) {
                    let mut cycle = stack[i..].to_vec();
                    cycle.push(n.clone());
                    out.push(cycle);
                } else if !done.contains(&n) {
                    walk(g, &n, stack, done, out);
                }
            }
            stack.pop();
            done.insert(m.to_owned());
        }
        let mut out = Vec::new();
        let mut done = BTreeSet::new();
        for m in self.edges.keys() {
            if !done.contains(m) {
                walk(self, m, &mut Vec::new(), &mut done, &mut out);
            }
        }
        out
    }

    fn describe(&self, cycle: &[String]) -> String {
        let path = cycle.join(" -> ");
        let hops: Vec<String> = cycle
            .windows(2)
            .map(|w| format!("  {} -> {} at {}", w[0], w[1], self.at(&w[0], &w[1])))
            .collect();
        format!("{path}\n{}", hops.join("\n"))
    }
}

/// The text with comments, string literals and character literals blanked out (newlines kept,
/// so line numbers stay right).
fn code_only(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < c.len() {
        if char_at(&c, i) == '/' && char_at(&c, i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if char_at(&c, i) == '/' && char_at(&c, i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && char_at(&c, i + 1) == '*' {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && char_at(&c, i + 1) == '/' {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
        } else if char_at(&c, i) == 'r' && !(i > 0 && is_ident(c[i - 1])) && raw_string_at(&c, i) {
            // A raw string: r"..." or r#"..."#.
            let mut hashes = 0;
            i += 1;
            out.push(' ');
            while c[i] == '#' {
                hashes += 1;
                i += 1;
                out.push(' ');
            }
            i += 1;
            out.push(' ');
            'raw: while i < c.len() {
                if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
                    for _ in 0..=hashes {
                        out.push(' ');
                    }
                    i += hashes + 1;
                    break 'raw;
                }
                out.push(blank(c[i]));
                i += 1;
            }
        } else if char_at(&c, i) == '"' {
            out.push(' ');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < c.len() {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if char_at(&c, i) == '\''
            && (char_at(&c, i + 1) == '\\' || char_at(&c, i + 2) == '\'')
        {
            // A character literal ('x', '\n', '\u{1c}'); a lifetime ('a) has no closing quote.
            out.push(' ');
            i += 1;
            if c[i] == '\\' {
                // The backslash and the character it escapes (which may be a quote).
                out.push_str("  ");
                i += 2;
            }
            while i < c.len() && c[i] != '\'' {
                out.push(' ');
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Whether `r"` or `r#..#"` (a raw string) starts at `c[i] == 'r'`.
fn raw_string_at(c: &[char], i: usize) -> bool {
    let mut k = i + 1;
    while c.get(k) == Some(&'#') {
        k += 1;
    }
    c.get(k) == Some(&'"')
}

fn char_at(c: &[char], i: usize) -> char {
    c.get(i).copied().unwrap_or('\0')
}

fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// The first segments of a `{ a::b, c, d::{e, f} }` group starting at `c[i] == '{'`.
fn group_heads(c: &[char], mut i: usize) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut expect_head = true;
    while i < c.len() {
        match c[i] {
            '{' => {
                depth += 1;
                expect_head = depth == 1;
                i += 1;
            }
            '}' => {
                depth -= 1;
                i += 1;
                if depth == 0 {
                    break;
                }
            }
            ',' => {
                expect_head = depth == 1;
                i += 1;
            }
            ch if is_ident(ch) && expect_head => {
                let start = i;
                while i < c.len() && is_ident(c[i]) {
                    i += 1;
                }
                heads.push(c[start..i].iter().collect());
                expect_head = false;
            }
            _ => i += 1,
        }
    }
    heads
}

/// The top-level modules one file references. `module` is the file's module path below the
/// crate root (`["http", "sessions"]` for `src/http/sessions.rs`).
fn references_in(module: &[String], src: &str) -> Vec<(String, usize)> {
    let code = code_only(src);
    let c: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    let mut line = 1;
    let mut depth = 0usize;
    // Inline `mod name {` blocks open here: (name, brace depth inside the block).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut pending_mod: Option<String> = None;
    let word_at = |i: usize| -> (String, usize) {
        let mut j = i;
        while j < c.len() && is_ident(c[j]) {
            j += 1;
        }
        (c[i..j].iter().collect(), j)
    };
    let skip_ws = |mut i: usize| {
        while i < c.len() && c[i].is_whitespace() {
            i += 1;
        }
        i
    };
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
            continue;
        }
        if ch == '{' {
            depth += 1;
            if let Some(name) = pending_mod.take() {
                inline.push((name, depth));
            }
            i += 1;
            continue;
        }
        if ch == '}' {
            if inline.last().is_some_and(|(_, d)| *d == depth) {
                inline.pop();
            }
            depth = depth.saturating_sub(1);
            i += 1;
            continue;
        }
        if ch == ';' {
            pending_mod = None;
            i += 1;
            continue;
        }
        let starts_word = is_ident(ch) && (i == 0 || !is_ident(c[i - 1]));
        if !starts_word {
            i += 1;
            continue;
        }
        let (word, end) = word_at(i);
        if word == "mod" {
            let j = skip_ws(end);
            let (name, _) = word_at(j);
            if !name.is_empty() {
                pending_mod = Some(name);
            }
            i = end;
            continue;
        }
        // The module a path starts from: the crate root, or where its `super`s lead.
        let mut base: Option<Vec<String>> = None;
        let mut j = end;
        if word == "crate" && c.get(j) == Some(&':') && c.get(j + 1) == Some(&':') {
            base = Some(Vec::new());
            j += 2;
        } else if word == "super" && (i < 2 || c[i - 1] != ':' || c[i - 2] != ':') {
            let mut here: Vec<String> = module.to_vec();
            here.extend(inline.iter().map(|(n, _)| n.clone()));
            let mut k = i;
            loop {
                let (w, e) = word_at(k);
                if w == "super" && c.get(e) == Some(&':') && c.get(e + 1) == Some(&':') {
                    here.pop();
                    k = e + 2;
                } else {
                    break;
                }
            }
            if k != i {
                base = Some(here);
                j = k;
            }
        }
        if let Some(base) = base {
            if base.is_empty() {
                let j = skip_ws(j);
                if c.get(j) == Some(&'{') {
                    for head in group_heads(&c, j) {
                        found.push((head, line));
                    }
                } else {
                    let (head, _) = word_at(j);
                    if !head.is_empty() {
                        found.push((head, line));
                    }
                }
            }
            i = j.max(i + 1);
            continue;
        }
        i = end;
    }
    found
}

/// `mod x;` declarations of `lib.rs`.
fn top_modules(lib: &str) -> BTreeSet<String> {
    let code = code_only(lib);
    code.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            let name = l.strip_prefix("mod ")?.strip_suffix(';')?.trim();
            Some(name.to_owned())
        })
        .collect()
}

/// Names the crate root re-exports (`pub use app::{app, AppState};`), by the module they come
/// from, so `crate::AppState` counts as a reference to `app`.
fn root_reexports(lib: &str, tops: &BTreeSet<String>) -> BTreeMap<String, String> {
    let code = code_only(lib);
    let mut out = BTreeMap::new();
    for stmt in code.split(';') {
        let s = stmt.trim();
        let Some(rest) = s.strip_prefix("pub use ") else {
            continue;
        };
        let rest = rest.trim().trim_start_matches("crate::");
        let Some((module, names)) = rest.split_once("::") else {
            continue;
        };
        if !tops.contains(module) {
            continue;
        }
        let names = names.trim().trim_start_matches('{').trim_end_matches('}');
        for n in names.split(',') {
            let n = n.trim();
            let n = n.rsplit(" as ").next().unwrap_or(n).trim();
            let n = n.rsplit("::").next().unwrap_or(n).trim();
            if !n.is_empty() {
                out.insert(n.to_owned(), module.to_owned());
            }
        }
    }
    out
}

/// The graph of the top-level modules given each file's path (relative to `src/`) and text.
fn graph_of(lib: &str, files: &[(PathBuf, String)]) -> Graph {
    let tops = top_modules(lib);
    let reexports = root_reexports(lib, &tops);
    let mut edges: BTreeMap<String, BTreeSet<String>> =
        tops.iter().map(|t| (t.clone(), BTreeSet::new())).collect();
    let mut seen = Seen::new();
    for (rel, text) in files {
        let mut module: Vec<String> = rel
            .with_extension("")
            .components()
            .map(|p| p.as_os_str().to_string_lossy().into_owned())
            .collect();
        if module.last().is_some_and(|m| m == "mod") {
            module.pop();
        }
        let Some(top) = module.first().cloned() else {
            continue;
        };
        if !tops.contains(&top) {
            continue; // lib.rs, main.rs
        }
        for (head, line) in references_in(&module, text) {
            let target = if tops.contains(&head) {
                head
            } else if let Some(m) = reexports.get(&head) {
                m.clone()
            } else {
                continue;
            };
            if target == top {
                continue;
            }
            edges.entry(top.clone()).or_default().insert(target.clone());
            seen.entry((top.clone(), target))
                .or_insert_with(|| format!("src/{}:{line}", rel.display()));
        }
    }
    Graph { edges, seen }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn gateway_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    let files: Vec<(PathBuf, String)> = paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.strip_prefix(&src).unwrap().to_path_buf(), text)
        })
        .collect();
    graph_of(&lib, &files)
}

#[test]
fn lower_layers_never_reference_http_or_app() {
    let g = gateway_graph();
    for m in ["domain", "store", "engine", "http", "auth", "config", "app"] {
        assert!(g.edges.contains_key(m), "lib.rs declares no module `{m}`");
    }
    let mut wrong = Vec::new();
    for low in ["store", "auth", "config", "domain"] {
        for high in ["http", "app"] {
            if g.refs(low).contains(high) {
                wrong.push(format!("{low} -> {high} at {}", g.at(low, high)));
            }
        }
    }
    // The named layers, bottom first: each references only those below it.
    let layers = ["domain", "store", "engine", "http", "app"];
    for (i, low) in layers.iter().enumerate() {
        for high in &layers[i + 1..] {
            if g.refs(low).contains(*high) {
                let w = format!("{low} -> {high} at {}", g.at(low, high));
                if !wrong.contains(&w) {
                    wrong.push(w);
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "modules reference a layer above them:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn top_level_modules_form_no_cycle() {
    let g = gateway_graph();
    let cycles = g.cycles();
    let text: Vec<String> = cycles.iter().map(|c| g.describe(c)).collect();
    assert!(
        cycles.is_empty(),
        "the module graph of wagate/src has cycles:\n{}\n\nthe whole graph: {:#?}",
        text.join("\n"),
        g.edges
    );
}

/// The reader itself, on made-up sources: it sees `crate::`, groups, `super::` to the root,
/// root re-exports and inline modules, ignores comments and strings, and reports a cycle.
#[test]
fn the_reader_finds_references_and_cycles() {
    let lib = "pub mod a;\npub mod b;\nmod c;\npub mod d;\npub use d::{Thing, other as Alias};\n";
    let files = vec![
        (
            PathBuf::from("a/mod.rs"),
            "use crate::{b::X, domain_like};\n// crate::c in a comment\nconst S: &str = \"crate::c\";\n"
                .to_owned(),
        ),
        (
            PathBuf::from("a/deep.rs"),
            "fn f() -> super::super::c::Y { todo!() }\nfn g(x: &'static str) -> char { '{' }\n"
                .to_owned(),
        ),
        (
            PathBuf::from("b.rs"),
            "mod tests {\n    use super::*;\n    use super::super::a::Z;\n}\n".to_owned(),
        ),
        (PathBuf::from("c.rs"), "fn h(_: crate::Thing) {}\n".to_owned()),
        (PathBuf::from("d.rs"), "use super::{a, c};\n".to_owned()),
    ];
    let g = graph_of(lib, &files);
    let set = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(g.refs("a"), set(&["b", "c"]));
    assert_eq!(g.refs("b"), set(&["a"]));
    assert_eq!(g.refs("c"), set(&["d"]));
    assert_eq!(g.refs("d"), set(&["a", "c"]));
    assert_eq!(g.at("b", "a"), "src/b.rs:3");
    let cycles = g.cycles();
    assert!(
        cycles.contains(&vec!["a".to_owned(), "b".to_owned(), "a".to_owned()]),
        "{cycles:?}"
    );
    assert!(
        cycles.iter().any(|c| c.contains(&"d".to_owned())),
        "{cycles:?}"
    );
    assert!(g
        .describe(&cycles[0])
        .contains(&format!("{} -> {} at ", cycles[0][0], cycles[0][1])));
}
