//! The repository stands alone: a user's clone has nothing beside it. No file of the
//! project reads or cites a path outside the repository, so a clone tests green anywhere.

use std::fs;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name == "target" || name == ".git" || name.starts_with("target-") {
            continue;
        }
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn no_file_reads_or_cites_anything_outside_the_repository() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(&root, &mut files);
    assert!(files.len() > 50, "walked only {} files", files.len());
    // Built from pieces so this file does not match itself.
    let needles = [
        format!("../{}", "shared"),
        format!("{}/reference", "shared"),
        format!("reference/{}", "ibc.md"),
        format!("reference/{}", "peers.md"),
        format!("{}.md §", "ibc"),
        format!("{}.md §", "peers"),
        format!("{}.md §", "x11-java"),
        format!("{}.md §", "tws-api"),
        format!("{}/testdata", "shared"),
    ];
    let mut hits = Vec::new();
    for f in &files {
        let Ok(text) = fs::read_to_string(f) else {
            continue; // binary
        };
        for (n, line) in text.lines().enumerate() {
            if needles.iter().any(|needle| line.contains(needle.as_str())) {
                hits.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(hits.is_empty(), "outside references:\n{}", hits.join("\n"));
}
