//! Module layering check: the crate's modules must depend on each other as a
//! DAG, never in a cycle. This test reads `src/`, finds every path reference
//! (`use` lines, multi-line `use` groups and inline `crate::a::f(..)` paths)
//! from one file module to another, and fails listing each strongly connected
//! component with one `file:line` per edge, so a cycle gets caught when it
//! is introduced instead of growing quietly. Comments, string literals and
//! `#[cfg(test)] mod tests { .. }` blocks are ignored: unit tests may reach
//! anywhere. Std only: a small tokenizer plus a path scanner, tested below.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A token's text (an identifier, `::`, or one punctuation char) and line.
type Tok = (String, usize);
/// `(from, to)` module pair -> first `file:line` where the reference occurs.
type Edges = BTreeMap<(String, String), (String, usize)>;

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Skips a string body starting after its opening quote; `raw` is the number
/// of `#`s of a raw string (no escapes), `None` for an ordinary one.
fn skip_str(c: &[char], mut i: usize, raw: Option<usize>, line: &mut usize) -> usize {
    while i < c.len() {
        match (c[i], raw) {
            ('\n', _) => *line += 1,
            ('\\', None) => {
                if c.get(i + 1) == Some(&'\n') {
                    *line += 1;
                }
                i += 1;
            }
            ('"', None) => return i + 1,
            ('"', Some(h)) if (1..=h).all(|k| c.get(i + k) == Some(&'#')) => return i + 1 + h,
            _ => {}
        }
        i += 1;
    }
    i
}

/// Splits source into tokens, dropping comments, string/char literals and
/// lifetimes.
fn tokenize(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let (mut i, mut line, mut out) = (0, 1, Vec::new());
    while i < c.len() {
        let (ch, next) = (c[i], c.get(i + 1).copied());
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                let pair = (c[i], c.get(i + 1).copied());
                if pair == ('/', Some('*')) {
                    depth += 1;
                    i += 2;
                } else if pair == ('*', Some('/')) {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(c[i] == '\n');
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = skip_str(&c, i + 1, None, &mut line);
        } else if ch == '\'' {
            if next == Some('\\') {
                i += 3; // opening quote, backslash, escaped char
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1; // a lifetime or loop label: drop its name too
                while i < c.len() && is_ident_char(c[i]) {
                    i += 1;
                }
            }
        } else if is_ident_char(ch) {
            let start = i;
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let hashes = c[i..].iter().take_while(|&&x| x == '#').count();
            match (word.as_str(), c.get(i).copied()) {
                ("r" | "br" | "cr", Some('#' | '"')) if c.get(i + hashes) == Some(&'"') => {
                    i = skip_str(&c, i + hashes + 1, Some(hashes), &mut line);
                }
                ("r", Some('#')) if hashes == 1 => {
                    let s = i + 1; // raw identifier r#name
                    i = s;
                    while i < c.len() && is_ident_char(c[i]) {
                        i += 1;
                    }
                    out.push((c[s..i].iter().collect(), line));
                }
                ("b" | "c", Some('"')) => i = skip_str(&c, i + 1, None, &mut line),
                ("b", Some('\'')) => {} // byte char: the `'` branch skips it
                _ => out.push((word, line)),
            }
        } else if ch == ':' && next == Some(':') {
            out.push(("::".into(), line));
            i += 2;
        } else {
            out.push((ch.to_string(), line));
            i += 1;
        }
    }
    out
}

fn text(t: &[Tok], i: usize) -> &str {
    t.get(i).map_or("", |x| x.0.as_str())
}

/// Index just past the bracket group opening at `i`.
fn skip_group(t: &[Tok], mut i: usize, open: &str, close: &str) -> usize {
    let mut depth = 0;
    while i < t.len() {
        if text(t, i) == open {
            depth += 1;
        } else if text(t, i) == close {
            depth -= 1;
            if depth == 0 {
                return i + 1;
            }
        }
        i += 1;
    }
    i
}

/// Drops every `#[cfg(test)] [#[..]] [pub[(..)]] mod name { .. }` block.
fn strip_test_mods(t: Vec<Tok>) -> Vec<Tok> {
    const CFG_TEST: [&str; 7] = ["#", "[", "cfg", "(", "test", ")", "]"];
    let mut out = Vec::with_capacity(t.len());
    let mut i = 0;
    while i < t.len() {
        if CFG_TEST
            .iter()
            .enumerate()
            .all(|(k, s)| text(&t, i + k) == *s)
        {
            let mut j = i + CFG_TEST.len();
            while text(&t, j) == "#" && text(&t, j + 1) == "[" {
                j = skip_group(&t, j + 1, "[", "]");
            }
            if text(&t, j) == "pub" {
                j += 1;
                if text(&t, j) == "(" {
                    j = skip_group(&t, j, "(", ")");
                }
            }
            if text(&t, j) == "mod" && text(&t, j + 2) == "{" {
                i = skip_group(&t, j + 2, "{", "}");
                continue;
            }
        }
        out.push(t[i].clone());
        i += 1;
    }
    out
}

/// Parses a path (tree) from `i`, appending each full path, expanded over
/// `{..}` groups, with the line of its last segment. Returns the end index.
fn parse_tree(t: &[Tok], mut i: usize, mut path: Vec<String>, out: &mut Vec<Ref>) -> usize {
    let mut line = t.get(i).map_or(0, |x| x.1);
    loop {
        let s = text(t, i);
        if s == "{" {
            i += 1;
            loop {
                match text(t, i) {
                    "}" => return i + 1,
                    "" => return i,
                    "," => i += 1,
                    _ => {
                        i = parse_tree(t, i, path.clone(), out);
                        while !matches!(text(t, i), "," | "}" | "") {
                            i += 1; // `as alias`
                        }
                    }
                }
            }
        }
        if s.starts_with(|c: char| c.is_alphabetic() || c == '_') {
            path.push(s.to_string());
            line = t[i].1;
            i += 1;
            if text(t, i) == "::" && text(t, i + 1) != "<" {
                i += 1;
                continue;
            }
        } else if s == "*" {
            i += 1;
        }
        out.push((path, line));
        return i;
    }
}

/// An absolute module path (segments) and the line it was referenced on.
type Ref = (Vec<String>, usize);

/// Every `crate::`, `super::`, `self::` and (for declared `mod child;`) bare
/// `child::` path in `src`, made absolute from `module` (`a::b`), with
/// `self` segments dropped.
fn references(src: &str, module: &str) -> Vec<Ref> {
    let t = strip_test_mods(tokenize(src));
    let cur: Vec<String> = module.split("::").map(String::from).collect();
    let children: BTreeSet<&str> = (0..t.len())
        .filter(|&i| text(&t, i) == "mod" && text(&t, i + 2) == ";")
        .map(|i| text(&t, i + 1))
        .collect();
    let (mut out, mut free) = (Vec::new(), 0);
    for i in 0..t.len() {
        let (prev, s) = (if i > 0 { text(&t, i - 1) } else { "" }, text(&t, i));
        if i < free || text(&t, i + 1) != "::" || matches!(prev, "::" | ".") {
            continue;
        }
        if prev == "in" && i > 1 && text(&t, i - 2) == "(" {
            continue; // pub(in crate::x) is visibility, not a dependency
        }
        let (base, start) = match s {
            "crate" => (Vec::new(), i + 2),
            "self" => (cur.clone(), i + 2),
            "super" => {
                let (mut b, mut j) = (cur.clone(), i);
                while text(&t, j) == "super" && text(&t, j + 1) == "::" {
                    b.pop();
                    j += 2;
                }
                (b, j)
            }
            c if children.contains(c) => (cur.clone(), i),
            _ => continue,
        };
        free = parse_tree(&t, start, base, &mut out);
    }
    for (p, _) in &mut out {
        p.retain(|s| s != "self");
    }
    out
}

/// The longest prefix of `path` that is a known module.
fn resolve(path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| modules.contains(m))
}

/// Edges between `(module, display path, source)` files.
fn edges(files: &[(String, String, String)]) -> Edges {
    let modules: BTreeSet<String> = files.iter().map(|f| f.0.clone()).collect();
    let mut e = Edges::new();
    for (module, shown, src) in files {
        for (path, line) in references(src, module) {
            match resolve(&path, &modules) {
                Some(to) if to != *module => {
                    let at = (shown.clone(), line);
                    let slot = e.entry((module.clone(), to)).or_insert_with(|| at.clone());
                    *slot = slot.clone().min(at);
                }
                _ => {}
            }
        }
    }
    e
}

/// Strongly connected components of size > 1 (Tarjan), sorted.
fn cycles(e: &Edges) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        adj: BTreeMap<&'a str, Vec<&'a str>>,
        index: BTreeMap<&'a str, (usize, usize)>, // (index, lowlink)
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut Tarjan<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, (n, n));
        s.stack.push(v);
        for w in s.adj.get(v).cloned().unwrap_or_default() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.index[w].1.min(s.index[v].1);
                s.index.get_mut(v).unwrap().1 = low;
            } else if s.stack.contains(&w) {
                let low = s.index[w].0.min(s.index[v].1);
                s.index.get_mut(v).unwrap().1 = low;
            }
        }
        if s.index[v].0 == s.index[v].1 {
            let at = s.stack.iter().rposition(|x| *x == v).unwrap();
            let mut scc: Vec<String> = s.stack.drain(at..).map(String::from).collect();
            if scc.len() > 1 {
                scc.sort();
                s.found.push(scc);
            }
        }
    }
    let mut s = Tarjan {
        adj: BTreeMap::new(),
        index: BTreeMap::new(),
        stack: vec![],
        found: vec![],
    };
    for (from, to) in e.keys() {
        s.adj.entry(from).or_default().push(to);
        s.adj.entry(to).or_default();
    }
    let nodes: Vec<&str> = s.adj.keys().copied().collect();
    for v in nodes {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.found.sort();
    s.found
}

fn report(found: &[Vec<String>], e: &Edges) -> String {
    let mut r = format!(
        "{} module dependency cycle(s); the layering must be a DAG:\n",
        found.len()
    );
    for (n, scc) in found.iter().enumerate() {
        r += &format!(
            "\ncycle {} ({} modules): {}\n",
            n + 1,
            scc.len(),
            scc.join(", ")
        );
        for ((from, to), (file, line)) in e {
            if scc.contains(from) && scc.contains(to) {
                r += &format!("  {from} -> {to}  ({file}:{line})\n");
            }
        }
    }
    r
}

/// `(module, display path, source)` for every file module under `src/`.
fn read_tree(root: &Path, dir: &Path, out: &mut Vec<(String, String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|d| d.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let rel = p
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if p.is_dir() {
            if rel != "bin" {
                read_tree(root, &p, out);
            }
            continue;
        }
        let Some(stem) = rel.strip_suffix(".rs") else {
            continue;
        };
        if stem == "lib" || stem == "main" {
            continue;
        }
        let module = stem.strip_suffix("/mod").unwrap_or(stem).replace('/', "::");
        out.push((
            module,
            format!("src/{rel}"),
            std::fs::read_to_string(&p).unwrap(),
        ));
    }
}

#[test]
fn module_layering_is_a_dag() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    read_tree(&root, &root, &mut files);
    assert!(files.len() > 1, "no modules found under {}", root.display());
    let e = edges(&files);
    let found = cycles(&e);
    assert!(found.is_empty(), "{}", report(&found, &e));
}

fn paths(src: &str, module: &str) -> Vec<String> {
    references(src, module)
        .into_iter()
        .map(|(p, l)| format!("{}@{l}", p.join("::")))
        .collect()
}

#[test]
fn parser_skips_comments_strings_chars_and_test_mods() {
    let src = r####"
// crate::a::X
/// crate::b::X
//! crate::c::X
/* crate::d /* nested crate::e */ crate::f */
fn f<'a>(s: &'a str) -> char {
    let _ = ("crate::g", r#"crate::h "quoted""#, b"crate::i", '"', b'\'', '\\');
    crate::real::f(s); 'outer: loop { break 'outer; }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::hidden::X;
}
fn g() { crate::after::g() }
#[cfg(test)]
#[allow(dead_code)]
pub(crate) mod more_tests { fn t() { crate::hidden::t() } }
pub(in crate::vis) fn h() {}
"####;
    assert_eq!(paths(src, "m"), ["real::f@8", "after::g@15"]);
}

#[test]
fn parser_expands_groups_and_relative_paths() {
    let src = "use crate::{a::X,\n    b::{self, c::Y as Z, *},\n};\nuse super::super::p::Q;\nuse self::s::T;\n";
    assert_eq!(
        paths(src, "x::y::z"),
        [
            "a::X@1",
            "b@2",
            "b::c::Y@2",
            "b@2",
            "x::p::Q@4",
            "x::y::z::s::T@5"
        ]
    );
    // In a parent module, bare `child::` paths count, once, and `mod child;` does not.
    let parent = "pub mod kid;\nmod other;\npub use kid::K;\nfn f() { std::kid::x(); other::g(); crate::q::{kid::Z}; }\n";
    assert_eq!(
        paths(parent, "p"),
        ["p::kid::K@3", "p::other::g@4", "q::kid::Z@4"]
    );
    let files = |a: &str, b: &str| {
        vec![
            ("p".to_string(), "src/p/mod.rs".to_string(), a.to_string()),
            (
                "p::kid".to_string(),
                "src/p/kid.rs".to_string(),
                b.to_string(),
            ),
            (
                "q".to_string(),
                "src/q.rs".to_string(),
                "use crate::p::kid::K;".to_string(),
            ),
        ]
    };
    let e = edges(&files(
        "mod kid;\npub struct P;\nuse kid::K;",
        "use super::P;\npub struct K;",
    ));
    assert_eq!(cycles(&e), [["p", "p::kid"]]);
    assert!(report(&cycles(&e), &e).contains("p -> p::kid  (src/p/mod.rs:3)"));
    assert!(cycles(&edges(&files("mod kid;\npub use kid::K;", "pub struct K;"))).is_empty());
}
