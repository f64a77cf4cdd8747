//! End-to-end lifecycle: ibwarden brings the gateway back by itself after the JVM is killed,
//! crashes, hangs, loses its display or does its nightly auto-restart, and stops it the way a
//! user would. The real binary, its own Xvfb, the simulator; assertions on the simulator's
//! record and on what ibwarden told systemd.

mod common;
mod warden;

use std::io::Write;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use common::*;
use warden::Warden;

const LOGIN: Duration = Duration::from_secs(60);
/// A relaunch in live mode may wait up to a TOTP step (30 s) for an unused code.
const RELOGIN: Duration = Duration::from_secs(120);

fn jvm_pids(rec: &Record) -> Vec<u32> {
    rec.events()
        .iter()
        .filter(|e| is_ev(e, "start"))
        .filter_map(|e| e["pid"].as_u64().map(|p| p as u32))
        .collect()
}

fn code_steps(rec: &Record) -> Vec<u64> {
    rec.events()
        .iter()
        .filter(|e| is_ev(e, "code") && e["verdict"] == "accepted")
        .filter_map(|e| e["step"].as_u64())
        .collect()
}

/// Sends one control command without waiting for a reply (a crashing JVM sends none).
fn control_no_reply(install: &SimInstall, cmd: &str) {
    let port = install.control_port();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("control connect");
    s.write_all(format!("{cmd}\n").as_bytes())
        .expect("control write");
}

#[test]
fn sigkill_of_the_jvm_comes_back_ready_with_the_next_code_step() {
    let install = SimInstall::new(&Scenario::new());
    let mut w = Warden::start(&install, "live", "");
    w.wait_ready(LOGIN);
    let rec = install.record();
    let first = jvm_pids(&rec)[0];
    kill(Pid::from_raw(first as i32), Signal::SIGKILL).expect("kill the JVM");
    w.wait_ready_again(RELOGIN);
    let pids = jvm_pids(&rec);
    assert_eq!(pids.len(), 2, "one relaunch: {pids:?}");
    let steps = code_steps(&rec);
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert!(
        steps[1] > steps[0],
        "a new step after the restart: {steps:?}"
    );
    assert!(w.log().contains("jvm was killed"), "{}", w.log_tail(30));
    w.stop_and_wait(Duration::from_secs(60));
}

#[test]
fn a_real_jvm_crash_is_reported_with_its_crash_file_and_recovered() {
    let install = SimInstall::new(&Scenario::new());
    let mut w = Warden::start(&install, "paper", "");
    w.wait_ready(LOGIN);
    control_no_reply(&install, "crash");
    w.wait_ready_again(LOGIN);
    let reports: Vec<_> = warden::walk(&w.state_dir.join("jvm"))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("hs_err_pid"))
        })
        .collect();
    assert_eq!(reports.len(), 1, "the crash report is kept: {reports:?}");
    let log = w.log();
    assert!(log.contains("jvm crashed"), "{}", w.log_tail(30));
    assert!(
        log.contains(&reports[0].display().to_string()),
        "the crash report is named in the notification"
    );
    w.stop_and_wait(Duration::from_secs(60));
}

#[test]
fn a_hung_jvm_is_detected_by_the_probe_and_restarted() {
    let install = SimInstall::new(&Scenario::new());
    let mut w = Warden::start(&install, "paper", "");
    w.wait_ready(LOGIN);
    let first = jvm_pids(&install.record())[0];
    // SIGSTOP: the windows stay, the API stops answering.
    kill(Pid::from_raw(first as i32), Signal::SIGSTOP).expect("stop the JVM");
    w.wait_ready_again(LOGIN);
    assert!(
        w.log().contains("API stopped answering"),
        "{}",
        w.log_tail(30)
    );
    assert!(!ibwarden::procfs::is_alive(first), "the hung JVM is gone");
    w.stop_and_wait(Duration::from_secs(60));
}

#[test]
fn killing_xvfb_brings_back_display_and_gateway() {
    let install = SimInstall::new(&Scenario::new());
    let mut w = Warden::start(&install, "paper", "");
    w.wait_ready(LOGIN);
    let line = w.wait_log("Xvfb started", Duration::from_secs(5));
    let xvfb: i32 = line
        .split("pid=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("Xvfb pid in the log");
    kill(Pid::from_raw(xvfb), Signal::SIGKILL).expect("kill Xvfb");
    w.wait_ready_again(LOGIN);
    assert_eq!(jvm_pids(&install.record()).len(), 2);
    assert!(
        w.log().matches("Xvfb started").count() >= 2,
        "a new display was started"
    );
    w.stop_and_wait(Duration::from_secs(60));
}

#[test]
fn nightly_restart_relaunches_with_the_token_and_types_nothing() {
    // 60 s scaled by the test time factor (0.05): the gateway restarts itself 3 s after login.
    let install = SimInstall::new(&Scenario::new().set("nightly_restart_after_s", 60));
    let mut w = Warden::start(&install, "live", "");
    w.wait_ready(LOGIN);
    w.wait_ready_again(LOGIN);
    let rec = install.record();
    let evs = rec.events();
    let starts: Vec<_> = evs.iter().filter(|e| is_ev(e, "start")).collect();
    assert!(starts.len() >= 2);
    assert!(
        starts[1]["restart"].is_string(),
        "relaunched with -Drestart: {:?}",
        starts[1]
    );
    let logins: Vec<_> = evs.iter().filter(|e| is_ev(e, "logged_in")).collect();
    assert_eq!(logins[1]["via"], "token", "{logins:?}");
    assert_eq!(
        code_steps(&rec).len(),
        1,
        "no code typed for the token login"
    );
    let creds = evs
        .iter()
        .filter(|e| is_ev(e, "login_attempt") && e["verdict"] == "ok")
        .count();
    assert_eq!(creds, 1, "credentials typed once");
    w.stop_and_wait(Duration::from_secs(60));
}

#[test]
fn kill_9_of_ibwarden_then_a_new_start_leaves_exactly_one_jvm() {
    let install = SimInstall::new(&Scenario::new());
    let mut w = Warden::start(&install, "paper", "");
    w.wait_ready(LOGIN);
    w.child.signal_group(Signal::SIGKILL);
    w.child.wait_exit(Duration::from_secs(10));
    w.restart_process();
    w.wait_ready_again(LOGIN);
    let settings = format!("-DjtsConfigDir={}", install.settings_dir.display());
    let jvms = processes_with(&settings);
    assert_eq!(jvms.len(), 1, "exactly one gateway JVM: {jvms:?}");
    w.stop_and_wait(Duration::from_secs(60));
}

#[test]
fn sigterm_closes_the_gateway_through_its_own_window() {
    let install = SimInstall::new(&Scenario::new());
    let mut w = Warden::start(&install, "paper", "");
    w.wait_ready(LOGIN);
    let status = w.stop_and_wait(Duration::from_secs(60));
    assert!(status.success(), "ibwarden exits 0 on SIGTERM: {status:?}");
    let evs = install.record().events();
    assert!(
        evs.iter().any(|e| is_ev(e, "window_close_request")),
        "WM_DELETE_WINDOW sent"
    );
    let exit = evs
        .iter()
        .rev()
        .find(|e| is_ev(e, "exit"))
        .expect("the gateway exited by itself");
    assert_eq!(exit["reason"], "window_closed", "{exit}");
}

#[test]
fn sighup_reloads_a_good_config_and_refuses_a_broken_one() {
    let install = SimInstall::new(&Scenario::new());
    let mut w = Warden::start(&install, "paper", "");
    w.wait_ready(LOGIN);
    let good = std::fs::read_to_string(&w.config).expect("config");
    std::fs::write(
        &w.config,
        format!("{good}\n[health]\nlisen = \"127.0.0.1:1\"\n"),
    )
    .expect("break it");
    w.child.signal_group(Signal::SIGHUP);
    w.wait_notify("RELOADING=1", Duration::from_secs(10), |m| {
        m.lines().any(|l| l == "RELOADING=1")
    });
    let line = w.wait_log("reload refused", Duration::from_secs(10));
    assert!(line.contains("lisen"), "the error names the key: {line}");
    // Still running, still ready, on the old configuration.
    assert!(w.child.try_wait().is_none());
    std::fs::write(&w.config, &good).expect("restore");
    w.child.signal_group(Signal::SIGHUP);
    w.wait_log("configuration reloaded", Duration::from_secs(10));
    w.wait_notify("READY after the reload", Duration::from_secs(10), |m| {
        m.contains("READY=1") && m.contains("STATUS=ready (configuration reloaded)")
    });
    w.stop_and_wait(Duration::from_secs(60));
}

fn ibwarden_cli(w: &Warden, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ibwarden"))
        .args(args)
        .arg("--config")
        .arg(&w.config)
        .env("HOME", w.dir.path())
        .output()
        .expect("run the ibwarden CLI")
}

#[test]
fn ibwarden_stop_closes_the_gateway_and_a_second_instance_is_refused() {
    let install = SimInstall::new(&Scenario::new());
    let mut w = Warden::start(&install, "paper", "");
    w.wait_ready(LOGIN);
    // A second `run` on the same config must not start a second gateway.
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_ibwarden"))
        .args(["run", "--config"])
        .arg(&w.config)
        .env("HOME", w.dir.path())
        .output()
        .expect("second run");
    assert!(!second.status.success(), "a second instance started");
    assert_eq!(jvm_pids(&install.record()).len(), 1);
    // `status` reads the running instance.
    let st = ibwarden_cli(&w, &["status", "--json"]);
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(
        st.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&text).expect("status JSON");
    assert_eq!(v["ready"], true, "{v}");
    assert_eq!(v["phase"], "Ready", "{v}");
    // `stop` closes the gateway through its own window, then ibwarden exits 0.
    let out = ibwarden_cli(&w, &["stop"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = w.child.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status:?}");
    let evs = install.record().events();
    let exit = evs
        .iter()
        .rev()
        .find(|e| is_ev(e, "exit"))
        .expect("gateway exit");
    assert_eq!(exit["reason"], "window_closed", "{exit}");
}

#[test]
fn no_full_login_inside_the_maintenance_window_then_exactly_one() {
    // A maintenance window (30 min, plus a 5 s delay) that ends within the next minute.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let start = (now + 60 - 30 * 60) / 60 * 60;
    let ends = start + 30 * 60 + 5;
    let hhmm = format!("{:02}:{:02}", (start / 3600) % 24, (start / 60) % 60);
    let extra = format!(
        "[schedule]\ntimezone = \"UTC\"\nmaintenance_start = \"{hhmm}\"\nmaintenance_delay = \"5s\"\nweekly_cold_restart = \"off\"\n"
    );
    let install = SimInstall::new(&Scenario::new());
    let mut w = Warden::start(&install, "paper", &extra);
    w.wait_log("nightly maintenance", Duration::from_secs(30));
    w.wait_ready(Duration::from_secs(150));
    let attempts: Vec<_> = install
        .record()
        .events()
        .into_iter()
        .filter(|e| is_ev(e, "login_attempt"))
        .collect();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    let t = attempts[0]["t"].as_u64().expect("t") / 1000;
    assert!(
        t >= ends,
        "logged in at {t}, inside the window that ends at {ends}"
    );
    w.stop_and_wait(Duration::from_secs(60));
}

#[test]
fn the_systemd_watchdog_is_pinged_from_the_main_loop() {
    let install = SimInstall::new(&Scenario::new());
    // WATCHDOG_USEC=2 s: ibwarden pings at half that.
    let mut w = Warden::start_env(&install, "paper", "", &[("WATCHDOG_USEC", "2000000")]);
    w.wait_ready(LOGIN);
    w.drain_notifications();
    let before = w
        .notifications
        .iter()
        .filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
        .count();
    for _ in 0..3 {
        let seen = w
            .notifications
            .iter()
            .filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
            .count();
        w.wait_notify("another WATCHDOG=1", Duration::from_secs(5), |m| {
            m.lines().any(|l| l == "WATCHDOG=1")
        });
        // wait_notify returns any (possibly old) match; make sure the count grows.
        while w
            .notifications
            .iter()
            .filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
            .count()
            <= seen
        {
            w.wait_notify("a new WATCHDOG=1", Duration::from_secs(5), |_| true);
            w.drain_notifications();
        }
    }
    let after = w
        .notifications
        .iter()
        .filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
        .count();
    assert!(after >= before + 3, "watchdog pings: {before} -> {after}");
    w.stop_and_wait(Duration::from_secs(60));
}

#[test]
fn expired_token_after_the_nightly_restart_means_a_full_login_with_a_code() {
    // Sunday: the nightly auto-restart finds its token expired; the gateway says so in a
    // `Gateway` dialog and a full login with the second factor follows.
    let sc = Scenario::new()
        .set("nightly_restart_after_s", 60)
        .set("token_expired", true);
    let install = SimInstall::new(&sc);
    let mut w = Warden::start(&install, "live", "");
    w.wait_ready(LOGIN);
    w.wait_ready_again(RELOGIN);
    let rec = install.record();
    let evs = rec.events();
    let tokens: Vec<_> = evs.iter().filter(|e| is_ev(e, "restart_token")).collect();
    assert!(
        tokens.iter().any(|t| t["expired"] == true),
        "the relaunch used the (expired) token: {tokens:?}"
    );
    let steps = code_steps(&rec);
    assert_eq!(
        steps.len(),
        2,
        "a second code for the full login: {steps:?}"
    );
    assert!(steps[1] > steps[0]);
    let logins: Vec<_> = evs.iter().filter(|e| is_ev(e, "logged_in")).collect();
    assert_eq!(
        logins.last().map(|l| l["via"].clone()),
        Some("credentials".into())
    );
    w.stop_and_wait(Duration::from_secs(60));
}

#[test]
fn ibwarden_screenshot_shows_the_login_window() {
    // A wrong password halts ibwarden with the login window on screen.
    let install = SimInstall::new(&Scenario::new());
    let mut w = Warden::start_password(&install, "live", "not-the-password");
    w.wait_log("invalid username or password", Duration::from_secs(60));
    // The `Login failed` dialog is dismissed; the frame is back to the login window.
    install
        .record()
        .wait_for("back at the login window", Duration::from_secs(30), |e| {
            is_ev(e, "login_reset")
        });
    let out = w.dir.path().join("shot.png");
    let tesseract = require_tool("tesseract", "tesseract-ocr");
    // The frame re-enables its controls right after the reset is recorded; take
    // screenshots until the login window is painted enabled (deadline-bound).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut text = String::new();
    while std::time::Instant::now() < deadline {
        let o = ibwarden_cli(&w, &["screenshot", "--out", out.to_str().expect("utf-8")]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let png = std::fs::read(&out).expect("png written");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let ocr = std::process::Command::new(&tesseract)
            .arg(&out)
            .arg("stdout")
            .args(["--psm", "6"])
            .output()
            .expect("tesseract");
        text = String::from_utf8_lossy(&ocr.stdout).into_owned();
        if text.contains("Log In") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(text.contains("Log In"), "OCR of the screenshot: {text}");
    w.stop_and_wait(Duration::from_secs(60));
}

#[test]
fn a_rejected_password_is_not_retried_after_a_restart_of_ibwarden() {
    let install = SimInstall::new(&Scenario::new());
    let mut w = Warden::start_password(&install, "live", "not-the-password");
    // The notification is the first action after the halt's state save has returned (actions
    // run in order, a save durable before the next). The core's `phase` line names the
    // reason earlier, while the save is still queued: a kill right after that line can and
    // lose the halt (the window is that one save), and the next start tries once more.
    w.wait_log("notify kind=LoginFailed", Duration::from_secs(60));
    // ibwarden dies hard (kill -9 of its whole group, as an OOM kill would) and is started
    // again: the halt must survive in the state file.
    w.child.signal_group(Signal::SIGKILL);
    w.child.wait_exit(Duration::from_secs(10));
    w.restart_process();
    w.wait_log("rejected earlier", Duration::from_secs(60));
    let attempts = |install: &SimInstall| {
        install
            .record()
            .events()
            .iter()
            .filter(|e| is_ev(e, "login_attempt"))
            .count()
    };
    assert_eq!(
        attempts(&install),
        1,
        "the wrong password was typed once, ever"
    );
    // The person fixes the secret and restarts: one more login, which succeeds.
    let mut set = std::process::Command::new(env!("CARGO_BIN_EXE_ibwarden"))
        .args(["secret", "set", "password", "--config"])
        .arg(&w.config)
        .env("HOME", w.dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("secret set");
    set.stdin
        .take()
        .expect("stdin")
        .write_all(format!("{TEST_PASSWORD}\n").as_bytes())
        .expect("write password");
    let out = set.wait_with_output().expect("secret set");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o = ibwarden_cli(&w, &["restart"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    w.wait_ready(Duration::from_secs(120));
    assert_eq!(attempts(&install), 2);
    w.stop_and_wait(Duration::from_secs(60));
}
