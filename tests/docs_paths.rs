//! The files that README.md, docs/guide.md and docs/design.md name exist:
//! a path from the repository's root (`net/src/resolve.rs`) where it says,
//! and a path relative to its section's crate (`task/raw.rs`,
//! `metrics/`) as the end of some file's or directory's path.

use std::path::{Path, PathBuf};

const DOCS: [&str; 3] = ["README.md", "docs/guide.md", "docs/design.md"];

/// Top-level directories: a path starting with one is from the root.
const ROOTS: [&str; 9] = [
    "benches/",
    "docs/",
    "examples/",
    "macros/",
    "net/",
    "reactor/",
    "runtime/",
    "src/",
    "tests/",
];

/// Every file and directory under `dir`, but `target/` and hidden ones.
fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        found.push(path.clone());
        if path.is_dir() {
            walk(&path, found);
        }
    }
}

/// Words of `text` in backquotes that name a source or documentation file
/// or a directory (`…/`), with their line numbers.
fn named_paths(text: &str) -> Vec<(usize, &str)> {
    let mut named = Vec::new();
    for (number, line) in text.lines().enumerate() {
        for (i, word) in line.split('`').enumerate() {
            let is_file = [".rs", ".md", ".toml", ".py"]
                .iter()
                .any(|ext| word.ends_with(ext));
            let is_dir = word.ends_with('/') && word.len() > 1;
            let pathlike = word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c));
            if i % 2 == 1 && pathlike && (is_file || is_dir) {
                named.push((number + 1, word));
            }
        }
    }
    named
}

#[test]
fn every_file_the_docs_name_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut tree = Vec::new();
    walk(root, &mut tree);
    let relative: Vec<String> = tree
        .iter()
        .map(|p| {
            let mut s = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                s.push('/');
            }
            format!("/{s}")
        })
        .collect();
    let mut missing = Vec::new();
    let mut checked = 0;
    for doc in DOCS {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        for (line, path) in named_paths(&text) {
            checked += 1;
            let exists = if ROOTS.iter().any(|r| path.starts_with(r)) {
                root.join(path).exists()
            } else {
                let end = format!("/{}", path.trim_start_matches("./"));
                relative.iter().any(|p| p.ends_with(&end))
            };
            if !exists {
                missing.push(format!("{doc}:{line}: {path}"));
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} paths found: the parsing is off"
    );
    assert!(missing.is_empty(), "no such file:\n{}", missing.join("\n"));
}
