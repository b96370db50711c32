//! The floors of docs/architecture.md, held against the code: a module of the library
//! imports only modules on lower floors (the ground floor's small modules may use each
//! other), and clap is used only by the binary (`main.rs`, `cli/`). A new arrow up or
//! across a floor fails here with the file and the line that names the module.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The floors, lowest first, as docs/architecture.md draws them.
const FLOORS: &[&[&str]] = &[
    &[
        "store",
        "labelled",
        "samples",
        "fsutil",
        "failpoint",
        "progress",
        "remote",
        "error",
    ],
    &["onnx"],
    &["vision"],
    &["model"],
    &["classify", "eval"],
    &["job", "report"],
    &["train", "visualize", "ensemble"],
    &["cli"],
];

fn floor_of(module: &str) -> Option<usize> {
    FLOORS.iter().position(|f| f.contains(&module))
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/classify/stages/walk.rs` is `classify`);
/// the binary's files are `cli`.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    match first.as_str() {
        "main.rs" | "cli" => Some("cli".into()),
        "lib.rs" => None,
        name => Some(name.trim_end_matches(".rs").to_string()),
    }
}

/// The modules a file names through `crate::X` or `facebatch::X`, each with a line that
/// names it.
fn uses(text: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for line in text.lines() {
        for prefix in ["crate::", "facebatch::"] {
            let mut rest = line;
            while let Some(at) = rest.find(prefix) {
                let after = &rest[at + prefix.len()..];
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.entry(name).or_insert_with(|| line.trim().to_string());
                }
                rest = after;
            }
        }
    }
    found
}

#[test]
fn every_module_imports_only_from_lower_floors() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let Some(floor) = floor_of(&module) else {
            wrong.push(format!(
                "{}: module `{module}` is on no floor of docs/architecture.md",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (used, line) in uses(&text) {
            if used == module {
                continue;
            }
            // The ground floor's modules may use each other; above it, a floor's modules
            // are independent of each other.
            match floor_of(&used) {
                Some(f) if f < floor || (f == 0 && floor == 0) => {}
                _ => wrong.push(format!(
                    "{}: `{module}` (floor {floor}) uses `{used}`: {line}",
                    file.display()
                )),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports up or across a floor:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn only_the_binary_uses_clap() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let library: Vec<String> = files
        .iter()
        .filter(|f| module_of(&src, f).is_some_and(|m| m != "cli"))
        .filter(|f| std::fs::read_to_string(f).unwrap().contains("clap::"))
        .map(|f| f.display().to_string())
        .collect();
    assert!(library.is_empty(), "clap in the library: {library:?}");
}
