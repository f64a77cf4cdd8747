//! The README's first command keeps working: `scripts/demo` logs in to the bundled simulator
//! with the real binary and reports ready.

use std::process::Command;

#[test]
fn the_demo_reaches_ready_and_stops_cleanly() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts/demo"))
        .arg("--until-ready")
        .env("IBWARDEN_BIN", env!("CARGO_BIN_EXE_ibwarden"))
        .current_dir(root)
        .output()
        .expect("run scripts/demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {:?}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stderr.contains("demo: ready after"), "{stderr}");
    assert!(stdout.contains(" ready "), "{stdout}");
    // The password of the demo account never shows up in what the demo printed.
    assert!(!stdout.contains("demo-Passw0rd!") && !stderr.contains("demo-Passw0rd!"));
}

#[test]
fn the_client_portal_demo_reaches_ready_and_stops_cleanly() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts/demo"))
        .args(["--clientportal", "--until-ready"])
        .env("IBWARDEN_BIN", env!("CARGO_BIN_EXE_ibwarden"))
        .current_dir(root)
        .output()
        .expect("run scripts/demo --clientportal");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {:?}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stderr.contains("demo: ready after"), "{stderr}");
    assert!(
        stdout.contains("browser login finished outcome=LoggedIn"),
        "{stdout}"
    );
    assert!(!stdout.contains("demo-Passw0rd!") && !stderr.contains("demo-Passw0rd!"));
}
