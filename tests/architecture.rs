//! The shape ARCHITECTURE.md promises, checked: file sizes, the loop's size, and what the
//! sans-IO core may not import.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Code lines: comments and doc comments left out.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_start()))
        .filter(|(_, l)| !l.starts_with("//"))
}

#[test]
fn no_source_file_is_over_800_lines() {
    let mut long = Vec::new();
    for f in rust_files(&src()) {
        let n = std::fs::read_to_string(&f).map_or(0, |t| t.lines().count());
        if n > 800 {
            long.push(format!("{} ({n} lines)", f.display()));
        }
    }
    assert!(long.is_empty(), "split these: {long:#?}");
}

#[test]
fn the_driver_loop_stays_small() {
    let text = std::fs::read_to_string(src().join("driver/mod.rs")).expect("driver/mod.rs");
    let n = text.lines().count();
    assert!(
        n < 300,
        "src/driver/mod.rs has {n} lines; the loop must stay under 300"
    );
}

#[test]
fn the_core_does_no_io() {
    let forbidden = [
        "crate::config",
        "crate::launcher_log",
        "tokio",
        "std::fs",
        "std::net",
        "Instant::now",
        "SystemTime::now",
    ];
    let mut found = Vec::new();
    for f in rust_files(&src().join("core")) {
        let text = std::fs::read_to_string(&f).expect("read");
        for (n, line) in code_lines(&text) {
            for bad in forbidden {
                if line.contains(bad) {
                    found.push(format!("{}:{n}: {bad}", f.display()));
                }
            }
        }
    }
    // The core's unit tests build their clock from a real instant once (a base point);
    // they never read it again.
    found.retain(|f| {
        !((f.contains("/core/tests/") || f.contains("/tws/tests.rs"))
            && f.ends_with("Instant::now"))
    });
    assert!(found.is_empty(), "the core must stay sans-IO: {found:#?}");
}
