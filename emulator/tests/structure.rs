//! The emulator's shape, checked from its source: no function longer than 120 lines, and dependencies between
//! the crate's top-level modules point one way (no import cycles — in particular `app` never names `arm`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FUNCTION_LINES: usize = 120;

/// Functions over the limit that another piece of work owns, by (file under `src/`, name). Each must still be
/// over the limit (the test fails once one is split, so the list only shrinks); nothing else may be.
const KNOWN_LONG: &[(&str, &str)] = &[
    // The Functions host simulator's restart loop (issue 14 point 5 work); to be split by that work.
    ("functions_host/process.rs", "run_once"),
];

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn all_sources() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    source_files(&src_dir(), &mut files);
    files.sort();
    files
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(&p).ok().map(|text| (p, text)))
        .collect()
}

/// Source text with comments, string and char literals blanked (newlines kept), so braces and words in them do
/// not count.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('#') || next == Some('"')) && is_raw_start(&chars, i) {
            // r"…" or r#"…"#
            let mut hashes = 0;
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            j += 1; // the opening quote
            while j < chars.len() {
                if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &ch in &chars[i..j.min(chars.len())] {
                out.push(blank(ch));
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && (chars.get(i + 2) == Some(&'\'') || next == Some('\\')) {
            // A char literal ('x' or '\n', '\''); a lifetime ('a) has no closing quote two chars on.
            let mut j = i + 1;
            if chars.get(j) == Some(&'\\') {
                j += 2;
            } else {
                j += 1;
            }
            while j < chars.len() && chars[j] != '\'' {
                j += 1;
            }
            for _ in i..=j.min(chars.len() - 1) {
                out.push(' ');
            }
            i = j + 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_raw_start(chars: &[char], i: usize) -> bool {
    let before = i.checked_sub(1).and_then(|b| chars.get(b));
    if before.is_some_and(|b| b.is_alphanumeric() || *b == '_') {
        return false;
    }
    let mut j = i + 1;
    while chars.get(j) == Some(&'#') {
        j += 1;
    }
    chars.get(j) == Some(&'"')
}

/// (name, first line, line count) of every function with a body.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let mut found = Vec::new();
    // Open functions: (name, start line, brace depth at which the body opened).
    let mut open: Vec<(String, usize, usize)> = Vec::new();
    let mut pending: Option<(String, usize)> = None;
    let mut depth = 0usize;
    // Open `(` and `[` since the pending signature began (`[u8; 4]` holds a `;` that does not end it).
    let mut nesting = 0usize;
    let mut line = 1usize;
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == '\n' {
            line += 1;
        } else if c == 'f'
            && bytes.get(i + 1) == Some(&'n')
            && bytes.get(i + 2).is_some_and(|c| c.is_whitespace())
            && (i == 0 || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_'))
        {
            let name: String = bytes[i + 2..]
                .iter()
                .skip_while(|c| c.is_whitespace())
                .take_while(|c| c.is_alphanumeric() || **c == '_')
                .collect();
            if !name.is_empty() {
                pending = Some((name, line));
                nesting = 0;
            }
        } else if (c == '(' || c == '[') && pending.is_some() {
            nesting += 1;
        } else if (c == ')' || c == ']') && pending.is_some() {
            nesting = nesting.saturating_sub(1);
        } else if c == ';' && pending.is_some() && nesting == 0 {
            // A declaration without a body (trait item) ends at `;` before any `{`.
            pending = None;
        } else if c == '{' {
            depth += 1;
            if let Some((name, start)) = pending.take() {
                open.push((name, start, depth));
            }
        } else if c == '}' {
            if let Some((_, _, d)) = open.last()
                && *d == depth
                && let Some((name, start, _)) = open.pop()
            {
                found.push((name, start, line - start + 1));
            }
            depth = depth.saturating_sub(1);
        }
        i += 1;
    }
    found
}

#[test]
fn no_emulator_function_is_longer_than_120_lines() {
    let sources = all_sources();
    assert!(sources.len() > 20, "the scan found too few source files");
    let mut counted = 0;
    let mut long = Vec::new();
    let mut known_seen = Vec::new();
    for (path, text) in &sources {
        let rel = path
            .strip_prefix(src_dir())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        for (name, start, lines) in functions(&code_only(text)) {
            counted += 1;
            if lines <= MAX_FUNCTION_LINES {
                continue;
            }
            if KNOWN_LONG.contains(&(rel.as_str(), name.as_str())) {
                known_seen.push((rel.clone(), name));
            } else {
                long.push(format!(
                    "{}:{start} `{name}` has {lines} lines",
                    path.display()
                ));
            }
        }
    }
    for (file, name) in KNOWN_LONG {
        assert!(
            known_seen.iter().any(|(f, n)| f == file && n == name),
            "{file} `{name}` is no longer over {MAX_FUNCTION_LINES} lines: remove it from KNOWN_LONG"
        );
    }
    assert!(counted > 300, "the scan found only {counted} functions");
    assert!(
        long.is_empty(),
        "functions above {MAX_FUNCTION_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_length_scan_measures_what_it_should() {
    let code = code_only(
        "fn a() {\n    let s = \"}\";\n    let c = '{';\n    // }\n}\ntrait T { fn b(&self); }\nfn c<'x>(v: &'x str, _: [u8; 2]) -> &'x str {\n    if true { v } else { v }\n}\n",
    );
    let found = functions(&code);
    assert_eq!(
        found,
        vec![("a".to_owned(), 1, 5), ("c".to_owned(), 7, 3)],
        "{code}"
    );
}

/// The crate's top-level module a file belongs to (`arm/tags.rs` → `arm`), or none for the crate root and binaries.
fn top_module(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src_dir()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    let name = first.trim_end_matches(".rs").to_owned();
    (!["lib", "main", "bin"].contains(&name.as_str())).then_some(name)
}

fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in all_sources() {
        let Some(module) = top_module(&path) else {
            continue;
        };
        let code = code_only(&text);
        let deps = graph.entry(module.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != module {
                deps.insert(name);
            }
        }
    }
    graph
}

fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_owned()];
    while let Some(m) = stack.pop() {
        for d in graph.get(&m).into_iter().flatten() {
            if d == to {
                return true;
            }
            if seen.insert(d.clone()) {
                stack.push(d.clone());
            }
        }
    }
    false
}

#[test]
fn module_dependencies_point_one_way() {
    let graph = module_graph();
    assert!(
        graph.get("arm").is_some_and(|d| d.contains("app")),
        "the scan should see `arm` use `app`: {graph:?}"
    );
    assert!(
        !graph.get("app").is_some_and(|d| d.contains("arm")),
        "`app` must not name `arm` (arm depends on app): {:?}",
        graph.get("app")
    );
    let mut cycles = Vec::new();
    for (module, deps) in &graph {
        for dep in deps {
            if graph.contains_key(dep) && reaches(&graph, dep, module) {
                cycles.push(format!("{module} -> {dep} -> … -> {module}"));
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
}
