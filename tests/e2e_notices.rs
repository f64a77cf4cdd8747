//! End-to-end: every documented dialog the catalogue learned from other tools' reports,
//! answered by its policy — the real binary against the simulator under Xvfb.
//!
//! - `Login Messages` after the code: `Resume login` once; again → left alone, a person told.
//! - `NSE Compliance`, `Exit Session Setting`, `Financial Advisor Warning` after login: closed
//!   with their default button, the gateway stays ready.
//! - A passkey the gateway cannot do: stop after one attempt, never loop.
//! - An account without the API (free trading): stop, never ready.
//! - 10.37.1q's hyphenated names (`IBKR-Gateway`, `Paper-Login`, `Live-Trading`): a normal
//!   login.

mod common;
mod warden;

use std::time::Duration;

use common::*;
use warden::Warden;

const READY: Duration = Duration::from_secs(90);

fn count(install: &SimInstall, ev: &str) -> usize {
    install
        .record()
        .events()
        .iter()
        .filter(|e| is_ev(e, ev))
        .count()
}

/// The button presses on windows titled `title`, by the simulator's record.
fn presses(install: &SimInstall, title: &str) -> Vec<String> {
    install
        .record()
        .events()
        .iter()
        .filter(|e| is_ev(e, "button") && e["window"] == title)
        .filter_map(|e| e["button"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn login_messages_are_resumed_once_and_a_second_time_left_to_a_person() {
    let install = SimInstall::new(&Scenario::new().set("login_messages", "once"));
    let mut w = Warden::start(&install, "live", "");
    w.wait_ready(READY);
    assert_eq!(presses(&install, "Login Messages"), ["Resume login"]);
    assert_eq!(count(&install, "login_attempt"), 1);
    w.stop_and_wait(Duration::from_secs(60));

    let install = SimInstall::new(&Scenario::new().set("login_messages", "always"));
    let mut w = Warden::start(&install, "live", "");
    w.wait_log("login messages came back", READY);
    w.wait_log("human_step", Duration::from_secs(10));
    assert_eq!(
        presses(&install, "Login Messages"),
        ["Resume login"],
        "pressed once only"
    );
    assert_eq!(count(&install, "login_attempt"), 1);
    w.stop_and_wait(Duration::from_secs(60));
}

#[test]
fn post_login_notices_are_closed_and_the_gateway_stays_ready() {
    for (notice, title, button) in [
        ("nse", "NSE Compliance", "OK"),
        ("exit_session", "Exit Session Setting", "Close"),
        ("fa_warning", "Financial Advisor Warning", "OK"),
    ] {
        let install = SimInstall::new(&Scenario::new().set("post_login_notice", notice));
        let mut w = Warden::start(&install, "paper", "");
        w.wait_ready(READY);
        let mut rec = install.record();
        rec.wait_for(&format!("{title} answered"), Duration::from_secs(30), |e| {
            is_ev(e, "button") && e["window"] == title
        });
        assert_eq!(presses(&install, title), [button], "{notice}");
        assert_eq!(count(&install, "login_attempt"), 1, "{notice}");
        w.stop_and_wait(Duration::from_secs(60));
    }
}

#[test]
fn a_passkey_login_stops_after_one_attempt_and_tells_a_person() {
    let install = SimInstall::new(&Scenario::new().set("passkey_required", true));
    let mut w = Warden::start(&install, "live", "");
    w.wait_log("IBKR requires a passkey", READY);
    // No loop: halted (a halted machine types nothing until `ibwarden restart`), after one
    // attempt in one JVM.
    assert_eq!(count(&install, "login_attempt"), 1);
    assert_eq!(count(&install, "start"), 1, "one JVM");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_ibwarden"))
        .args(["status", "--json", "--config"])
        .arg(&w.config)
        .env("HOME", w.dir.path())
        .output()
        .expect("status");
    let st: serde_json::Value = serde_json::from_slice(&st.stdout).expect("status json");
    assert_eq!(st["phase"], "Halted", "{st}");
    assert!(
        st["reason"].as_str().is_some_and(|r| r.contains("passkey")),
        "{st}"
    );
    w.stop_and_wait(Duration::from_secs(60));
}

#[test]
fn an_account_without_the_api_stops_and_is_never_ready() {
    let install = SimInstall::new(&Scenario::new().set("free_trading_account", true));
    let mut w = Warden::start(&install, "paper", "");
    w.wait_log("this account has no API", READY);
    w.drain_notifications();
    assert!(!w.sent_ready(), "{:?}", w.notifications);
    // Its OK was pressed (the paper account's own `Warning` is accepted too).
    let mut rec = install.record();
    rec.wait_for("the notice's OK", Duration::from_secs(10), |e| {
        is_ev(e, "button") && e["window"] == "Warning" && e["button"] == "OK"
    });
    w.stop_and_wait(Duration::from_secs(60));
}

#[test]
fn hyphenated_names_of_newer_versions_log_in_normally() {
    for mode in ["live", "paper"] {
        let install = SimInstall::new(&Scenario::new().set("hyphenated_names", true));
        let mut w = Warden::start(&install, mode, "");
        w.wait_ready(READY);
        let attempts: Vec<_> = install
            .record()
            .events()
            .into_iter()
            .filter(|e| is_ev(e, "login_attempt"))
            .collect();
        assert_eq!(attempts.len(), 1, "{mode}: {attempts:?}");
        assert_eq!(attempts[0]["mode"], mode);
        assert!(
            w.log().contains("the form holds what was typed"),
            "{mode}: seen"
        );
        w.stop_and_wait(Duration::from_secs(60));
    }
}

#[test]
fn a_gateway_that_serves_paper_accounts_to_a_live_config_is_closed_and_never_ready() {
    // The server hands the live login paper accounts (the same as a login that ended up in
    // the other mode): nothing may trade on them as if they were the live account.
    let install = SimInstall::new(&Scenario::new().set("accounts", "DU7654321"));
    let mut w = Warden::start(&install, "live", "");
    w.wait_log("notify kind=WrongTradingMode", READY);
    // The gateway is closed: its process exits and no API client can use it.
    w.wait_log("gateway JVM exited", Duration::from_secs(30));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", install.api_port)).is_err(),
        "the API port is closed"
    );
    w.drain_notifications();
    assert!(!w.sent_ready(), "{:?}", w.notifications);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ibwarden"))
        .args(["status", "--json", "--config"])
        .arg(&w.config)
        .env("HOME", w.dir.path())
        .output()
        .expect("status");
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(st["ready"], false, "{st}");
    assert!(
        st["phase"]
            .as_str()
            .is_some_and(|p| p.starts_with("Halted")),
        "{st}"
    );
    w.stop_and_wait(Duration::from_secs(60));
}
