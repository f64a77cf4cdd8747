//! Hostile files, end to end: the real `ibwarden run`, its own Xvfb, the gateway simulator.
//! A FIFO where the gateway's `launcher.log`, ibwarden's `state.json` or its pid file should
//! be; a password with a carriage return; a permissive umask. Each test asserts that the
//! supervisor stays responsive (`status` answers within 1 s), that what the simulator
//! received is right, and that it stops cleanly.

mod common;
mod warden;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use warden::Warden;

const LOGIN: Duration = Duration::from_secs(60);
/// What `status` must answer within, whatever the files around it are.
const STATUS_BOUND: Duration = Duration::from_secs(1);

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
}

/// `ibwarden status --json` for `w`, and how long it took.
fn status(w: &Warden) -> (Output, Duration) {
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_ibwarden"))
        .args(["status", "--json", "--config"])
        .arg(&w.config)
        .env("HOME", w.dir.path())
        .output()
        .expect("run ibwarden status");
    (out, t0.elapsed())
}

fn assert_status_answers(w: &Warden) -> serde_json::Value {
    let (out, took) = status(w);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "status failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < STATUS_BOUND, "status took {took:?}");
    serde_json::from_str(&text).expect("status JSON")
}

fn ok_logins(install: &SimInstall) -> usize {
    install
        .record()
        .events()
        .iter()
        .filter(|e| is_ev(e, "login_attempt") && e["verdict"] == "ok")
        .count()
}

fn stop(mut w: Warden) {
    let st = w.stop_and_wait(Duration::from_secs(60));
    assert!(st.success(), "exit {st:?}\n{}", w.log_tail(30));
}

/// A FIFO at `launcher.log` before `run` used to hang ibwarden for good before Xvfb, and a
/// real gateway opening it for appending blocks too. Now ibwarden removes it (the settings
/// dir is its own) and logs in as usual; status answers throughout.
#[test]
fn a_fifo_at_launcher_log_before_run_is_removed_and_the_login_happens() {
    let install = SimInstall::new(&Scenario::new());
    let log = install.settings_dir.join("launcher.log");
    mkfifo(&log);
    let mut w = Warden::start(&install, "paper", "");
    w.wait_log("gateway JVM started", LOGIN);
    assert_status_answers(&w);
    let ready = w.wait_ready(LOGIN);
    assert!(ready.contains("STATUS=ready"), "{ready}");
    let v = assert_status_answers(&w);
    assert_eq!(v["ready"], true, "{v}");
    assert!(
        w.log().contains("launcher.log was a FIFO or socket"),
        "{}",
        w.log_tail(40)
    );
    let meta = fs::symlink_metadata(&log).expect("a launcher.log again");
    assert!(
        meta.file_type().is_file(),
        "the gateway wrote a regular log"
    );
    assert_eq!(ok_logins(&install), 1);
    stop(w);
}

/// A FIFO swapped in for `launcher.log` while ready used to stall the runtime (status and
/// `/readyz` timed out, SIGTERM was ignored). Now status answers, the gateway stays ready,
/// and SIGTERM stops everything.
#[test]
fn a_fifo_swapped_in_for_launcher_log_while_ready_blocks_nothing() {
    let install = SimInstall::new(&Scenario::new());
    let mut w = Warden::start(&install, "paper", "");
    w.wait_ready(LOGIN);
    let log = install.settings_dir.join("launcher.log");
    fs::remove_file(&log).expect("rm launcher.log");
    mkfifo(&log);
    // The follower's next look is at the next change of the directory: make one.
    fs::write(install.settings_dir.join("poke"), "x").expect("poke");
    w.wait_log(
        "launcher log is not a regular file",
        Duration::from_secs(10),
    );
    for _ in 0..5 {
        let v = assert_status_answers(&w);
        assert_eq!(v["ready"], true, "{v}");
    }
    // Probes keep running: the gateway is still proven ready after two probe intervals.
    let probes = install
        .record()
        .events()
        .iter()
        .filter(|e| is_ev(e, "api_handshake"))
        .count();
    let mut rec = install.record();
    rec.set_cursor(rec.events().len());
    rec.wait_for(
        "two more API probes",
        Duration::from_secs(15),
        |e: &serde_json::Value| is_ev(e, "api_handshake"),
    );
    assert!(
        install
            .record()
            .events()
            .iter()
            .filter(|e| is_ev(e, "api_handshake"))
            .count()
            > probes
    );
    fs::remove_file(&log).expect("rm fifo");
    stop(w);
}

/// `state.json` replaced by a FIFO while running, then `ibwarden restart`: the restart's
/// state write replaces it atomically (a new file renamed over it, never opened), the
/// gateway comes back, and nothing waits on the FIFO.
#[test]
fn a_fifo_at_state_json_does_not_wedge_a_restart() {
    let install = SimInstall::new(&Scenario::new());
    let mut w = Warden::start(&install, "paper", "");
    w.wait_ready(LOGIN);
    let state = w.state_dir.join("state.json");
    fs::remove_file(&state).expect("rm state");
    mkfifo(&state);
    let out = Command::new(env!("CARGO_BIN_EXE_ibwarden"))
        .args(["restart", "--config"])
        .arg(&w.config)
        .env("HOME", w.dir.path())
        .output()
        .expect("ibwarden restart");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ready = w.wait_ready_again(LOGIN);
    assert!(ready.contains("STATUS=ready"), "{ready}");
    assert_status_answers(&w);
    assert_eq!(ok_logins(&install), 2);
    let meta = fs::symlink_metadata(&state).expect("state");
    assert!(
        meta.file_type().is_file(),
        "the state file is a regular file again"
    );
    stop(w);
}

/// A FIFO at the gateway pid file (read at start to find a stray gateway) is refused,
/// not waited on: the start goes on.
#[test]
fn a_fifo_at_the_pid_file_does_not_hang_the_start() {
    let install = SimInstall::new(&Scenario::new());
    // The state dir is made by the first start: plant the FIFO after a clean stop.
    let mut w = Warden::start(&install, "paper", "");
    w.wait_ready(LOGIN);
    let st = w.stop_and_wait(Duration::from_secs(60));
    assert!(st.success());
    let pid = w.state_dir.join("gateway.pid");
    let _ = fs::remove_file(&pid);
    mkfifo(&pid);
    w.restart_process();
    let ready = w.wait_ready_again(LOGIN);
    assert!(ready.contains("STATUS=ready"), "{ready}");
    assert!(w.log().contains("gateway.pid"), "{}", w.log_tail(40));
    stop(w);
}

/// A password file with a carriage return passed `check` and, at the login, typed nothing
/// while 3 failed logins were recorded. Now `run` refuses it before anything starts,
/// with exit 78 (systemd does not restart-loop), the fix named and the value not echoed;
/// the simulator saw no login at all.
#[test]
fn a_password_with_a_carriage_return_is_refused_before_anything_is_typed() {
    let install = SimInstall::new(&Scenario::new());
    let mut w = Warden::start(&install, "paper", "");
    w.wait_ready(LOGIN);
    let st = w.stop_and_wait(Duration::from_secs(60));
    assert!(st.success());
    let before = install.record().events().len();
    let pw = w.dir.path().join("password");
    // The value and a carriage return, no newline (a "\r\n" line end would be fine).
    fs::write(&pw, format!("{}\r", install.scenario.password())).expect("write");
    w.restart_process();
    let st = w.child.wait_exit(Duration::from_secs(30));
    assert_eq!(shell_exit_code(st), 78, "{}", w.log_tail(20));
    let log = w.log();
    assert!(
        log.contains("ends with a carriage return"),
        "{}",
        w.log_tail(20)
    );
    assert!(log.contains("fix:"), "{}", w.log_tail(20));
    assert!(
        !log.contains(install.scenario.password()),
        "the value is not echoed"
    );
    let after = install.record().events();
    assert!(
        !after[before..].iter().any(|e| is_ev(e, "login_attempt")),
        "nothing was typed"
    );
}

/// With a permissive umask (022), what ibwarden and the gateway create is private anyway.
#[test]
fn files_created_under_a_permissive_umask_are_private() {
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let install = SimInstall::new(&Scenario::new());
    // A settings dir ibwarden creates itself.
    let settings = install.root().join("fresh-settings");
    let extra = String::new();
    let mut w = Warden::start_config(&install, |state_dir| {
        Warden::config_text(&install, "paper", state_dir, &extra).replace(
            &format!("settings_dir = \"{}\"", install.settings_dir.display()),
            &format!("settings_dir = \"{}\"", settings.display()),
        )
    });
    nix::sys::stat::umask(old);
    w.wait_ready(LOGIN);
    let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&settings), 0o700, "settings dir");
    assert_eq!(mode(&w.state_dir), 0o700, "state dir");
    assert_eq!(mode(&w.state_dir.join("state.json")), 0o600, "state file");
    assert_eq!(
        mode(&settings.join("launcher.log")),
        0o600,
        "the gateway's own log"
    );
    stop(w);
}
