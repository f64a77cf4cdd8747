//! The README's first command keeps working: `scripts/demo` logs in to the bundled simulator
//! with the real binary and reports ready.

use std::process::Command;

/// Runs `scripts/demo <args> --until-ready` with the test's binary and checks what every demo
/// must do: exit 0, report ready, and never print the demo account's password. Returns the
/// demo's stdout for the checks of each variant.
fn demo_until_ready(args: &[&str]) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts/demo"))
        .args(args)
        .arg("--until-ready")
        .env("IBWARDEN_BIN", env!("CARGO_BIN_EXE_ibwarden"))
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| panic!("run scripts/demo {args:?}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo {args:?} failed: {:?}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stderr.contains("demo: ready after"), "{stderr}");
    // The password of the demo account never shows up in what the demo printed.
    assert!(!stdout.contains("demo-Passw0rd!") && !stderr.contains("demo-Passw0rd!"));
    stdout.into_owned()
}

#[test]
fn the_demo_reaches_ready_and_stops_cleanly() {
    let stdout = demo_until_ready(&[]);
    assert!(stdout.contains(" ready "), "{stdout}");
}

#[test]
fn the_client_portal_demo_reaches_ready_and_stops_cleanly() {
    let stdout = demo_until_ready(&["--clientportal"]);
    assert!(
        stdout.contains("browser login finished outcome=LoggedIn"),
        "{stdout}"
    );
}
