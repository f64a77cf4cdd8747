//! End-to-end: the real `ibwarden run` binary, a real Xvfb (its own), the gateway simulator.
//! Assertions are on what the simulator received (its record) and on what ibwarden told
//! systemd (a test `NOTIFY_SOCKET`), never on ibwarden's internals.

mod common;
mod warden;

use std::time::Duration;

use common::*;
use warden::Warden;

const LOGIN: Duration = Duration::from_secs(60);

fn attempts(rec: &Record) -> Vec<serde_json::Value> {
    rec.events()
        .into_iter()
        .filter(|e| is_ev(e, "login_attempt"))
        .collect()
}

fn codes(rec: &Record) -> Vec<serde_json::Value> {
    rec.events()
        .into_iter()
        .filter(|e| is_ev(e, "code"))
        .collect()
}

#[test]
fn live_login_with_totp_reaches_ready_in_one_attempt() {
    let install = SimInstall::new(&Scenario::new());
    let mut w = Warden::start(&install, "live", "");
    let ready = w.wait_ready(LOGIN);
    assert!(
        ready.contains("STATUS=ready"),
        "status: {ready:?}\n{}",
        w.log_tail(80)
    );
    let rec = install.record();
    let a = attempts(&rec);
    assert_eq!(a.len(), 1, "exactly one login attempt: {a:?}");
    assert_eq!(a[0]["username"], TEST_USER);
    assert_eq!(a[0]["password"], TEST_PASSWORD);
    assert_eq!(a[0]["verdict"], "ok");
    let c = codes(&rec);
    assert_eq!(c.len(), 1, "one code typed: {c:?}");
    assert_eq!(c[0]["verdict"], "accepted");
    // READY came only after the simulator answered an API handshake (our probe).
    let evs = rec.events();
    let ready_idx = evs
        .iter()
        .position(|e| is_ev(e, "api_start"))
        .expect("the probe reached START_API");
    assert!(evs[..ready_idx].iter().any(|e| is_ev(e, "logged_in")));
    w.assert_no_secret_in_logs(&install);
    w.stop_and_wait(Duration::from_secs(60));
}

#[test]
fn paper_login_accepts_the_warning_and_types_no_code() {
    let install = SimInstall::new(&Scenario::new());
    let mut w = Warden::start(&install, "paper", "");
    w.wait_ready(LOGIN);
    let rec = install.record();
    let a = attempts(&rec);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["mode"], "paper");
    assert!(codes(&rec).is_empty(), "no code in paper mode");
    assert!(rec.events().iter().any(|e| is_ev(e, "button")
        && e["window"] == "Warning"
        && e["button"] == "I understand and accept"));
    w.stop_and_wait(Duration::from_secs(60));
}

#[test]
fn device_chooser_picks_the_mobile_authenticator() {
    let sc = Scenario::new().set("devices", "IB Key,Mobile Authenticator app");
    let install = SimInstall::new(&sc);
    let mut w = Warden::start(&install, "live", "");
    w.wait_ready(LOGIN);
    let rec = install.record();
    let dev: Vec<_> = rec
        .events()
        .into_iter()
        .filter(|e| is_ev(e, "device"))
        .collect();
    assert_eq!(dev.len(), 1, "{dev:?}");
    assert_eq!(dev[0]["device"], "Mobile Authenticator app");
    assert_eq!(codes(&rec).len(), 1);
    w.stop_and_wait(Duration::from_secs(60));
}

#[test]
fn older_window_titles_work() {
    for title in ["IB Gateway", "Interactive Brokers Gateway"] {
        let install = SimInstall::new(&Scenario::new().set("title", title));
        let mut w = Warden::start(&install, "live", "");
        w.wait_ready(LOGIN);
        assert_eq!(attempts(&install.record()).len(), 1, "title {title}");
        w.stop_and_wait(Duration::from_secs(60));
    }
}

#[test]
fn jvm_cmdline_and_environ_hold_no_secret() {
    let install = SimInstall::new(&Scenario::new());
    let mut w = Warden::start(&install, "live", "");
    w.wait_ready(LOGIN);
    let rec = install.record();
    let start = rec
        .events()
        .into_iter()
        .find(|e| is_ev(e, "start"))
        .expect("start event");
    let pid = start["pid"].as_u64().expect("pid");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    for hay in [&cmdline, &environ] {
        let text = String::from_utf8_lossy(hay);
        assert!(!text.contains(TEST_PASSWORD), "password leaked: {text}");
        assert!(!text.contains(TEST_TOTP_SECRET), "activation code leaked");
    }
    // The JVM's environment is exactly the allowed set.
    let keys: Vec<String> = String::from_utf8_lossy(&environ)
        .split('\0')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.split('=').next().unwrap_or("").to_string())
        .collect();
    for k in &keys {
        assert!(
            [
                "PATH",
                "HOME",
                "LANG",
                "LC_ALL",
                "DISPLAY",
                "XAUTHORITY",
                "DBUS_SESSION_BUS_ADDRESS"
            ]
            .contains(&k.as_str()),
            "unexpected JVM env var {k}"
        );
    }
    w.assert_no_secret_in_logs(&install);
    w.stop_and_wait(Duration::from_secs(60));
}

#[test]
fn the_opt_in_atspi_reader_reads_the_device_chooser() {
    let sc = Scenario::new().set("devices", "IB Key,Mobile Authenticator app");
    let install = SimInstall::new(&sc);
    let mut w = Warden::start_with(&install, "live", "content_reader = \"atspi\"\n", "");
    w.wait_ready(LOGIN);
    let rec = install.record();
    let dev: Vec<_> = rec
        .events()
        .into_iter()
        .filter(|e| is_ev(e, "device"))
        .collect();
    assert_eq!(dev.len(), 1, "{dev:?}");
    assert_eq!(dev[0]["device"], "Mobile Authenticator app");
    assert_eq!(codes(&rec).len(), 1);
    assert!(
        !w.log().contains("AT-SPI unavailable"),
        "the AT-SPI bus started: {:?}",
        w.log().lines().find(|l| l.contains("AT-SPI unavailable"))
    );
    w.stop_and_wait(Duration::from_secs(60));
}
