//! Arrows point down: a module may import its own floor or a lower one, never a higher one, and
//! the roles never import each other (they talk over the wire). The floors, bottom up:
//!
//! 0. kernels and support: `search`, `julia`, `particles` (pure computation), `time`, `procfs`,
//!    `shutdown`, `telemetry`, `buffers`, and `records` (the jobs, tasks and results that are
//!    both the wire format and the storage format);
//! 1. the wire: `protocol`;
//! 2. the shared pieces above it: `backend` (the remote backend speaks the wire) and the job
//!    kinds, `jobs`;
//! 3. roles: `master`, `worker`, `agent`, `collector`;
//! 4. command-line commands: `client`, a module of the binary, not of the library;
//! 5. local orchestration of a whole grid on this machine: `local` (it drives the grid through
//!    the same commands a user types), also a module of the binary;
//! 6. the binary: `main.rs`.
//!
//! So only the binary (`main.rs` and its `local` module) reaches the command-line commands of
//! `client`: no library module can, and none of its files names them.
//!
//! The test reads every `.rs` file under `src/`, resolves each `crate::`, `super::` and
//! `gridwatch::` path to the top-level module it names, and fails on any import that points up.
//!
//! Inside a module, the same holds between its files: the children of a module (its files and
//! directories) must not import each other in a circle, which would make them one unit split
//! over several files. A second test resolves each path to the child of the module it enters
//! and fails on any such circle, also between the top-level modules (two modules sharing a
//! floor may import each other one way only).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The floor of each top-level module; a module not listed fails the test until it is placed.
const FLOORS: &[(&str, u32)] = &[
    ("search", 0),
    ("julia", 0),
    ("particles", 0),
    ("time", 0),
    ("procfs", 0),
    ("buffers", 0),
    ("shutdown", 0),
    ("telemetry", 0),
    ("records", 0),
    ("protocol", 1),
    ("backend", 2),
    ("jobs", 2),
    ("master", 3),
    ("worker", 3),
    ("agent", 3),
    ("collector", 3),
    ("client", 4),
    ("local", 5),
    // The examples and manual pages, built from the binary's command tree.
    ("manual", 5),
    ("main", 6),
];

/// The roles: each is its own process, and reaches another only through the protocol.
const ROLES: &[&str] = &["master", "worker", "agent", "collector"];

fn floor(module: &str) -> Option<u32> {
    FLOORS
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, floor)| *floor)
}

/// Where a source file sits in the module tree: `src/a/b.rs` → `["a", "b"]`, `src/a/mod.rs` →
/// `["a"]`, `src/lib.rs` → `[]`, `src/main.rs` → `["main"]`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs").to_string();
        if stem != "mod" && stem != "lib" {
            parts.push(stem);
        }
    }
    parts
}

/// The source without comments, string and character literals, so that prose and messages
/// that mention a module do not count as imports.
fn code_only(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &source[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').unwrap_or(rest.len());
            i += end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map(|e| e + 2).unwrap_or(rest.len());
            i += end;
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let hashes = rest[1..].chars().take_while(|c| *c == '#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let open_len = 2 + hashes;
            let end = rest[open_len..]
                .find(&close)
                .map(|e| open_len + e + close.len())
                .unwrap_or(rest.len());
            out.push_str("\"\"");
            i += end;
        } else if rest.starts_with('"') {
            let mut j = 1;
            while j < rest.len() {
                match rest.as_bytes()[j] {
                    b'\\' => j += 2,
                    b'"' => break,
                    _ => j += 1,
                }
            }
            out.push_str("\"\"");
            i += (j + 1).min(rest.len());
        } else if rest.starts_with("'\\") {
            // An escaped character literal: '\n', '\'', '\u{..}'.
            let end = rest[3..].find('\'').map(|e| e + 4).unwrap_or(rest.len());
            out.push_str("' '");
            i += end;
        } else if rest.starts_with('\'') && rest.chars().nth(2) == Some('\'') {
            // A plain character literal ('x'); a lifetime ('a) has no closing quote there.
            let end = rest
                .char_indices()
                .nth(2)
                .map(|(e, _)| e + 1)
                .unwrap_or(rest.len());
            out.push_str("' '");
            i += end;
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Reads the identifiers a path continues with after `position`: one name, or every first name
/// of a `{a, b::c}` group.
fn names_after(code: &str, position: usize) -> Vec<String> {
    let rest = &code[position..];
    if let Some(group) = rest.strip_prefix('{') {
        let mut names = Vec::new();
        let mut depth = 1;
        let mut at_element_start = true;
        let mut current = String::new();
        for c in group.chars() {
            if depth == 1 && at_element_start {
                if is_ident_char(c) {
                    current.push(c);
                    continue;
                }
                if c.is_whitespace() && current.is_empty() {
                    continue;
                }
                if !current.is_empty() {
                    names.push(std::mem::take(&mut current));
                }
                at_element_start = false;
            }
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ',' if depth == 1 => at_element_start = true,
                _ => {}
            }
        }
        return names;
    }
    let name: String = rest.chars().take_while(|c| is_ident_char(*c)).collect();
    if name.is_empty() {
        Vec::new()
    } else {
        vec![name]
    }
}

/// The top-level modules `source` (the file at `module`) refers to, other than its own.
fn imports(module: &[String], source: &str) -> BTreeSet<String> {
    let code = code_only(source);
    let mut found = BTreeSet::new();
    let starts_word =
        |at: usize| !matches!(code[..at].chars().next_back(), Some(c) if is_ident_char(c));
    for prefix in ["crate::", "gridwatch::"] {
        for (at, _) in code.match_indices(prefix) {
            if starts_word(at) {
                found.extend(names_after(&code, at + prefix.len()));
            }
        }
    }
    for (at, _) in code.match_indices("super::") {
        if !starts_word(at) || code[..at].ends_with("super::") {
            continue;
        }
        // Count the chain `super::super::…` and climb that many levels. A file's own items sit
        // one level below its module path, so `super` from `a/b.rs` is `a`.
        let mut depth = 0;
        let mut end = at;
        while code[end..].starts_with("super::") {
            depth += 1;
            end += "super::".len();
        }
        if depth >= module.len() {
            found.extend(names_after(&code, end));
        } else {
            found.insert(module[0].clone());
        }
    }
    let own = module.first().cloned().unwrap_or_default();
    found.retain(|name| *name != own && floor(name).is_some());
    found
}

/// Every upward or sideways-between-roles import in `module`'s `source`, as messages.
fn violations(module: &[String], source: &str) -> Vec<String> {
    let Some(top) = module.first() else {
        return Vec::new();
    };
    let Some(own_floor) = floor(top) else {
        return vec![format!(
            "module `{top}` has no floor: add it to FLOORS in tests/layering.rs"
        )];
    };
    imports(module, source)
        .into_iter()
        .filter_map(|target| {
            let target_floor = floor(&target)?;
            if target_floor > own_floor {
                Some(format!(
                    "`{top}` (floor {own_floor}) imports `{target}` (floor {target_floor}): arrows point down"
                ))
            } else if ROLES.contains(&top.as_str()) && ROLES.contains(&target.as_str()) {
                Some(format!(
                    "role `{top}` imports role `{target}`: roles talk over the protocol"
                ))
            } else {
                None
            }
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_imports_a_higher_floor_or_another_role() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut problems = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src/");
        let source = std::fs::read_to_string(file).expect("readable source");
        for problem in violations(&module_path(relative), &source) {
            problems.push(format!("{}: {problem}", relative.display()));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// The paths `code` continues with at `position`: one chain of names (`a::b::c`), or one chain
/// per element of a `{a, b::c}` group; a chain ending in `*` or a group ends where it stops.
fn paths_after(code: &str, position: usize) -> Vec<Vec<String>> {
    let rest = &code[position..];
    let name: String = rest.chars().take_while(|c| is_ident_char(*c)).collect();
    if !name.is_empty() {
        let after = position + name.len();
        if code[after..].starts_with("::") {
            return paths_after(code, after + 2)
                .into_iter()
                .map(|mut tail| {
                    tail.insert(0, name.clone());
                    tail
                })
                .collect();
        }
        return vec![vec![name]];
    }
    if !rest.starts_with('{') {
        return vec![Vec::new()];
    }
    let mut paths = Vec::new();
    let mut depth = 0;
    let mut element = position + 1;
    let skip_space = |at: usize| {
        at + code[at..]
            .chars()
            .take_while(|c| c.is_whitespace())
            .map(char::len_utf8)
            .sum::<usize>()
    };
    for (offset, c) in rest.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    paths.extend(paths_after(code, skip_space(element)));
                    break;
                }
            }
            ',' if depth == 1 => {
                paths.extend(paths_after(code, skip_space(element)));
                element = position + offset + 1;
            }
            _ => {}
        }
    }
    paths
}

/// Every path `source` (the file at `module`) names through `crate::`, `gridwatch::`, `super::`
/// or `self::`, as segments from the crate root.
fn absolute_paths(module: &[String], source: &str) -> Vec<Vec<String>> {
    let code = code_only(source);
    let starts_word =
        |at: usize| !matches!(code[..at].chars().next_back(), Some(c) if is_ident_char(c));
    let mut found = Vec::new();
    for prefix in ["crate::", "gridwatch::"] {
        for (at, _) in code.match_indices(prefix) {
            if starts_word(at) {
                found.extend(paths_after(&code, at + prefix.len()));
            }
        }
    }
    for (at, _) in code.match_indices("super::") {
        if !starts_word(at) || code[..at].ends_with("super::") {
            continue;
        }
        let mut depth = 0;
        let mut end = at;
        while code[end..].starts_with("super::") {
            depth += 1;
            end += "super::".len();
        }
        let base = &module[..module.len().saturating_sub(depth)];
        for tail in paths_after(&code, end) {
            found.push(base.iter().cloned().chain(tail).collect());
        }
    }
    for (at, _) in code.match_indices("self::") {
        if starts_word(at) {
            for tail in paths_after(&code, at + "self::".len()) {
                found.push(module.iter().cloned().chain(tail).collect());
            }
        }
    }
    found
}

/// An import between two children of one module: `from` (a file or directory under `parent`)
/// names `to`, another child of `parent`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct SiblingImport {
    parent: Vec<String>,
    from: String,
    to: String,
}

/// The sibling imports of the file at `module`: where a path it names leaves its own branch of
/// the module tree, the child it enters (if that child is a module, per `is_module`).
fn sibling_imports(
    module: &[String],
    source: &str,
    is_module: &dyn Fn(&[String]) -> bool,
) -> BTreeSet<SiblingImport> {
    let mut found = BTreeSet::new();
    for path in absolute_paths(module, source) {
        let common = module.iter().zip(&path).take_while(|(a, b)| a == b).count();
        if common >= module.len() || common >= path.len() {
            continue;
        }
        if is_module(&path[..=common]) {
            found.insert(SiblingImport {
                parent: module[..common].to_vec(),
                from: module[common].clone(),
                to: path[common].clone(),
            });
        }
    }
    found
}

/// Every group of children of one module that import each other in a circle, as messages naming
/// the module, the children and the imports between them.
fn cycles(imports: &BTreeSet<SiblingImport>) -> Vec<String> {
    let mut parents: Vec<&Vec<String>> = imports.iter().map(|i| &i.parent).collect();
    parents.dedup();
    let mut problems = Vec::new();
    for parent in parents {
        let edges: Vec<(&str, &str)> = imports
            .iter()
            .filter(|i| &i.parent == parent)
            .map(|i| (i.from.as_str(), i.to.as_str()))
            .collect();
        let reach = |start: &str| {
            let mut seen = BTreeSet::new();
            let mut stack = vec![start];
            while let Some(node) = stack.pop() {
                for (from, to) in &edges {
                    if *from == node && seen.insert(*to) {
                        stack.push(to);
                    }
                }
            }
            seen
        };
        let mut reported: BTreeSet<&str> = BTreeSet::new();
        let nodes: BTreeSet<&str> = edges.iter().map(|(from, _)| *from).collect();
        for node in nodes {
            if reported.contains(node) {
                continue;
            }
            let ahead = reach(node);
            if !ahead.contains(node) {
                continue;
            }
            let circle: BTreeSet<&str> = ahead
                .iter()
                .copied()
                .filter(|other| reach(other).contains(node))
                .collect();
            reported.extend(circle.iter().copied());
            let arrows: Vec<String> = edges
                .iter()
                .filter(|(from, to)| circle.contains(from) && circle.contains(to))
                .map(|(from, to)| format!("{from} → {to}"))
                .collect();
            let name = if parent.is_empty() {
                "the crate root".to_string()
            } else {
                format!("`{}`", parent.join("::"))
            };
            problems.push(format!(
                "in {name}, {} import each other: {}",
                circle.into_iter().collect::<Vec<_>>().join(", "),
                arrows.join(", ")
            ));
        }
    }
    problems
}

#[test]
fn no_files_of_a_module_import_each_other_in_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let sources: Vec<(Vec<String>, String)> = files
        .iter()
        .map(|file| {
            let relative = file.strip_prefix(&src).expect("under src/");
            let source = std::fs::read_to_string(file).expect("readable source");
            (module_path(relative), source)
        })
        .collect();
    let modules: BTreeSet<Vec<String>> = sources.iter().map(|(m, _)| m.clone()).collect();
    let is_module = |path: &[String]| modules.contains(path);
    let mut imports = BTreeSet::new();
    for (module, source) in &sources {
        imports.extend(sibling_imports(module, source, &is_module));
    }
    let problems = cycles(&imports);
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

// The checker itself, on crafted sources: it must be able to fail.

fn path(text: &str) -> Vec<String> {
    module_path(Path::new(text))
}

#[test]
fn module_paths_follow_the_file_layout() {
    assert_eq!(path("protocol/mod.rs"), ["protocol"]);
    assert_eq!(path("protocol/handshake.rs"), ["protocol", "handshake"]);
    assert_eq!(path("time.rs"), ["time"]);
    assert_eq!(path("main.rs"), ["main"]);
    assert!(path("lib.rs").is_empty());
}

#[test]
fn an_upward_import_is_reported() {
    let source = "use crate::master::MasterState;\nuse crate::search::Pattern;\n";
    let found = violations(&path("protocol/message.rs"), source);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("`protocol` (floor 1) imports `master` (floor 3)"));
}

#[test]
fn grouped_nested_and_inline_paths_are_all_seen() {
    let source = r#"
        use crate::{
            backend::{Queue, Store},
            client::connect::MasterClient,
        };
        fn f() { let _ = crate::agent::AgentConfig::default(); }
    "#;
    let found = imports(&path("worker/mod.rs"), source);
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["agent", "backend", "client"]
    );
    let problems = violations(&path("worker/mod.rs"), source);
    assert_eq!(problems.len(), 2, "{problems:?}");
}

#[test]
fn super_paths_resolve_against_the_file_position() {
    // From a nested file, `super::` stays inside the module: no import of another one.
    assert!(imports(
        &path("master/cmd/status.rs"),
        "use super::super::MasterState;"
    )
    .is_empty());
    // From a top-level file, `super::` is the crate root.
    let found = imports(&path("search/mod.rs"), "use super::client::format;");
    assert_eq!(found.into_iter().collect::<Vec<_>>(), ["client"]);
}

#[test]
fn comments_and_strings_are_not_imports() {
    let source = r#"
        //! Talks to crate::master over the wire.
        /* crate::client is above us */
        const HELP: &str = "see crate::client::monitor";
        const RAW: &str = r"crate::agent";
        fn f<'a>(x: &'a str) -> char { 'c' }
    "#;
    assert!(imports(&path("protocol/mod.rs"), source).is_empty());
}

#[test]
fn roles_may_not_import_each_other_and_unplaced_modules_are_named() {
    let problems = violations(&path("collector/mod.rs"), "use crate::agent::hello;");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("roles talk over the protocol"));
    let unplaced = violations(&path("gadgets/mod.rs"), "");
    assert!(unplaced[0].contains("has no floor"), "{unplaced:?}");
}

#[test]
fn files_importing_each_other_are_a_cycle_and_a_chain_is_not() {
    let modules = [
        path("backend/mod.rs"),
        path("backend/redis/mod.rs"),
        path("backend/redis/queue.rs"),
        path("backend/redis/store.rs"),
        path("backend/redis/keys.rs"),
        path("master/mod.rs"),
        path("master/forget.rs"),
        path("master/http/mod.rs"),
        path("master/http/api.rs"),
    ];
    let is_module = |p: &[String]| modules.iter().any(|m| m == p);
    let mut imports = BTreeSet::new();
    let files = [
        (
            "backend/redis/queue.rs",
            "use super::store::{push, verdict};",
        ),
        ("backend/redis/store.rs", "use super::keys::JOBS;"),
        (
            "backend/redis/keys.rs",
            "use crate::backend::RefusalReason;",
        ),
        ("master/forget.rs", "use super::http::snapshot::views;"),
        (
            "master/http/api.rs",
            "let _ = crate::master::{state, forget::forget_worker};",
        ),
    ];
    for (file, source) in files {
        imports.extend(sibling_imports(&path(file), source, &is_module));
    }
    assert_eq!(cycles(&imports).len(), 1, "{:?}", cycles(&imports));
    assert!(cycles(&imports)[0].contains("in `master`, forget, http import each other"));
    // Closing the chain queue → store → keys makes a second circle.
    imports.extend(sibling_imports(
        &path("backend/redis/keys.rs"),
        "use super::queue::parse_token;",
        &is_module,
    ));
    let found = cycles(&imports);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("in `backend::redis`, keys, queue, store import each other"));
}
