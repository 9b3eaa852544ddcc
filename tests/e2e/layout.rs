//! Each crate's modules are layers: no module reaches, directly or through
//! others, back to itself. In an import circle every module depends on
//! every other, so none can be read, tested or changed on its own; this
//! test keeps circles from coming back.
//!
//! Module X refers to module Y when X's files write `crate::y` anywhere: in
//! a `use` (also inside a group, `use crate::{a, b::c}`, over several
//! lines) or inline (`crate::metrics::commit(..)`). A file belongs to its
//! top-level module: `actors/src/adapters/openai.rs` and
//! `actors/src/store/rollups.rs` are `adapters` and `store`.
//!
//! - Comments (`//`, doc comments, `/* */`) are ignored. String contents are
//!   not: attributes name paths in strings (`#[serde(default =
//!   "crate::x::f")]`), and a false circle fails loudly where a missed one
//!   would pass silently.
//! - `#[cfg(test)]` code counts like any other. A test module that imports
//!   from above its module ties the two together all the same, and keeping
//!   tests in their layer costs nothing.
//! - `crate::name` that is no module (an item of `lib.rs` or a re-export
//!   such as `crate::Credits`) is a reference to the crate root, and the
//!   root refers to the modules its own code names (`pub use
//!   money::Credits`): a module that imports through a root re-export is
//!   still seen.
//! - `web/src/main.rs` is the root of the binary, a crate of its own that
//!   uses the library from outside, so it is left out.
//!
//! Not seen: a `super::` path out of a top-level module (equal to
//! `crate::`; write `crate::` instead), and methods that one module adds
//! with an `impl` block to a type another module defines. The actors
//! crate has none left: its use cases are functions in `usecase/` over a
//! `Services` defined there, and `broker.rs` calls them by path.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The source directory of each crate, from the repository root.
const CRATES: &[&str] = &["src", "actors/src", "web/src"];

/// The node that stands for `lib.rs`.
const ROOT: &str = "crate root";

/// Module -> module it refers to -> where it first does (`file:line`).
type Graph = BTreeMap<String, BTreeMap<String, String>>;

#[test]
fn modules_refer_to_each_other_without_circles() {
    let repo = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let mut report = String::new();
    for dir in CRATES {
        let graph = graph(&repo.join(dir), dir);
        // A wrong path would find no module and so no circle.
        assert!(graph.len() > 2, "{dir}: only {:?}", graph.keys());
        for circle in circles(&graph) {
            let names: Vec<&str> = circle.iter().map(String::as_str).collect();
            writeln!(report, "{dir}: {} -> {}", names.join(" -> "), names[0]).unwrap();
            for (i, from) in names.iter().enumerate() {
                let to = names[(i + 1) % names.len()];
                writeln!(report, "    {from} -> {to}: {}", graph[*from][to]).unwrap();
            }
        }
    }
    assert!(
        report.is_empty(),
        "modules that refer back to themselves (each edge with where it is written):\n{report}"
    );
}

/// Which module refers to which in the crate whose source is in `dir`.
fn graph(dir: &Path, shown: &str) -> Graph {
    let mut files = Vec::new();
    rs_files(dir, &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|f| module_of(dir, f))
        .filter(|m| m != ROOT)
        .collect();
    let mut graph = Graph::new();
    for file in &files {
        let Some(from) = module_of(dir, file) else {
            continue;
        };
        let code = without_comments(&std::fs::read_to_string(file).unwrap());
        let mut refs = crate_refs(&code);
        if from == ROOT {
            refs.extend(bare_refs(&code, &modules));
        }
        let name = file.strip_prefix(dir).unwrap().display();
        for (target, line) in refs {
            let to = if modules.contains(&target) {
                target
            } else {
                ROOT.to_string()
            };
            if to != from {
                graph
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_insert_with(|| format!("{shown}/{name}:{line}"));
            }
        }
    }
    graph
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module `file` belongs to; `None` for a binary's root.
fn module_of(dir: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(dir).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?;
    if rel.components().count() > 1 {
        return Some(first.to_string());
    }
    match first.strip_suffix(".rs")? {
        "main" => None,
        "lib" => Some(ROOT.to_string()),
        module => Some(module.to_string()),
    }
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The identifier `s` starts with (empty if none).
fn ident(s: &str) -> &str {
    let end = s.find(|c| !is_ident(c)).unwrap_or(s.len());
    &s[..end]
}

fn line_at(code: &str, at: usize) -> usize {
    code[..at].matches('\n').count() + 1
}

/// The name after each `crate::` (each head of a `crate::{..}` group),
/// with its line.
fn crate_refs(code: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        // `$crate::` is this crate too; `oneflow_crate::` is not.
        if code[..at].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let line = line_at(code, at);
        let rest = code[at + "crate::".len()..].trim_start();
        match rest.strip_prefix('{') {
            Some(group) => out.extend(group_heads(group).into_iter().map(|n| (n, line))),
            None => out.push((ident(rest).to_string(), line)),
        }
    }
    out
}

/// The first name of each item of a group, `a` and `b` of `a, b::{c, d}}`.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 1;
    let mut at_item = true;
    let mut rest = group;
    while let Some(c) = rest.chars().next() {
        if depth == 1 && at_item && is_ident(c) {
            let name = ident(rest);
            heads.push(name.to_string());
            rest = &rest[name.len()..];
            at_item = false;
            continue;
        }
        match c {
            '{' => depth += 1,
            '}' if depth == 1 => break,
            '}' => depth -= 1,
            ',' if depth == 1 => at_item = true,
            _ => {}
        }
        rest = &rest[c.len_utf8()..];
    }
    heads
}

/// In `lib.rs`, paths start at the root without `crate::`: `money::Credits`
/// names `money`. Each module name that begins a path, with its line.
fn bare_refs(code: &str, modules: &BTreeSet<String>) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices("::") {
        let before = &code[..at];
        let start = before.rfind(|c| !is_ident(c)).map_or(0, |i| {
            i + before[i..].chars().next().map_or(1, char::len_utf8)
        });
        let name = &before[start..];
        let begins_path = !before[..start].ends_with(':');
        if begins_path && modules.contains(name) {
            out.push((name.to_string(), line_at(code, at)));
        }
    }
    out
}

/// `src` with its comments blanked out (their newlines kept, so line
/// numbers hold). String and char literals are copied whole, so a `//` or
/// `/*` inside one starts no comment.
fn without_comments(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        let end = match (c[i], next) {
            ('/', Some('/')) => {
                let end = c[i..]
                    .iter()
                    .position(|&x| x == '\n')
                    .map_or(c.len(), |n| i + n);
                i = end;
                continue;
            }
            ('/', Some('*')) => {
                let mut depth = 0;
                while i < c.len() {
                    match (c[i], c.get(i + 1).copied()) {
                        ('/', Some('*')) => (depth, i) = (depth + 1, i + 2),
                        ('*', Some('/')) => (depth, i) = (depth - 1, i + 2),
                        (x, _) => {
                            if x == '\n' {
                                out.push('\n');
                            }
                            i += 1;
                        }
                    }
                    if depth == 0 {
                        break;
                    }
                }
                continue;
            }
            ('"', _) => quoted_end(&c, i + 1),
            ('r', Some('"' | '#')) => raw_end(&c, i + 1).unwrap_or(i + 1),
            // A char literal: `'x'` or `'\n'`; otherwise a lifetime.
            ('\'', Some('\\')) => (i + 3..c.len())
                .find(|&j| c[j] == '\'')
                .map_or(c.len(), |j| j + 1),
            ('\'', Some(_)) if c.get(i + 2) == Some(&'\'') => i + 3,
            _ => i + 1,
        };
        out.extend(&c[i..end]);
        i = end;
    }
    out
}

/// Where a `"..."` string whose text starts at `i` ends (past its quote).
fn quoted_end(c: &[char], mut i: usize) -> usize {
    while i < c.len() {
        match c[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    c.len()
}

/// Where a raw string `r#.."..."#..` whose hashes start at `i` ends; `None`
/// if no quote follows them (a raw identifier such as `r#type`).
fn raw_end(c: &[char], i: usize) -> Option<usize> {
    let hashes = c[i..].iter().take_while(|&&x| x == '#').count();
    if c.get(i + hashes) != Some(&'"') {
        return None;
    }
    let mut j = i + hashes + 1;
    while j < c.len() {
        let closes = c
            .get(j + 1..j + 1 + hashes)
            .is_some_and(|h| h.iter().all(|&x| x == '#'));
        if c[j] == '"' && closes {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(c.len())
}

/// Every circle a depth-first walk meets, one per reference that leads back
/// into the walk's current path, as its modules in order.
fn circles(graph: &Graph) -> Vec<Vec<String>> {
    fn walk<'a>(
        graph: &'a Graph,
        module: &'a str,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
        found: &mut Vec<Vec<String>>,
    ) {
        path.push(module);
        for next in graph.get(module).into_iter().flat_map(BTreeMap::keys) {
            if let Some(i) = path.iter().position(|m| m == next) {
                found.push(path[i..].iter().map(|m| m.to_string()).collect());
            } else if !done.contains(next.as_str()) {
                walk(graph, next, path, done, found);
            }
        }
        path.pop();
        done.insert(module);
    }
    let mut found = Vec::new();
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if !done.contains(module.as_str()) {
            walk(graph, module, &mut Vec::new(), &mut done, &mut found);
        }
    }
    found
}

/// The parser on the forms it must handle, so a regression in it cannot
/// hide a circle.
#[test]
fn the_reference_finder_reads_every_form() {
    let code = without_comments(concat!(
        "use crate::a::X;\n",
        "use crate::{b, c::{D, E},\n    f::G as H};\n",
        "// use crate::commented;\n",
        "/// [`crate::doc`]\n",
        "let u = \"http://x\"; crate::inline::call(); /* crate::block */\n",
        "let q = '\"'; let s: &'static str = r#\"crate::in_raw\"#; pub(crate) fn f() {}\n",
        "oneflow_crate::not_ours(); $crate::m!();\n",
    ));
    let names: Vec<(String, usize)> = crate_refs(&code);
    let expect = [
        ("a", 1),
        ("b", 2),
        ("c", 2),
        ("f", 2),
        ("inline", 6),
        ("in_raw", 7),
        ("m", 8),
    ];
    let expect: Vec<(String, usize)> = expect.iter().map(|(n, l)| (n.to_string(), *l)).collect();
    assert_eq!(names, expect);

    let modules: BTreeSet<String> = ["money", "routes"].map(String::from).into();
    let root = "pub use money::Credits;\nlet x = oneflow::money::Y; routes::a::b();\n";
    assert_eq!(
        bare_refs(root, &modules),
        [("money".to_string(), 1), ("routes".to_string(), 2)]
    );

    let mut g = Graph::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        g.entry(a.into())
            .or_default()
            .insert(b.into(), String::new());
    }
    assert_eq!(circles(&g), [["a", "b", "c"].map(String::from).to_vec()]);
}
