//! End-to-end: the real binary against the simulator perturbed the way real gateway versions
//! differ (another look, a username prefilled, a modeless dialog taking the focus while the
//! password is typed, the focus coming back elsewhere). Each must end ready with exactly one
//! login attempt whose recorded content is right, by the simulator's record.

mod common;
mod warden;

use std::time::Duration;

use common::*;
use warden::Warden;

/// Every `login_attempt` the simulator recorded.
fn attempts(install: &SimInstall) -> Vec<serde_json::Value> {
    install
        .record()
        .events()
        .into_iter()
        .filter(|e| is_ev(e, "login_attempt"))
        .collect()
}

/// Ready, one attempt, with the scenario's username and password in `mode`; and, live, one
/// accepted code. Then a clean stop.
fn ready_with_one_right_attempt(install: &SimInstall, mode: &str, extra: &str) -> Warden {
    let mut w = Warden::start(install, mode, extra);
    w.wait_ready(Duration::from_secs(90));
    let all = attempts(install);
    assert_eq!(
        all.len(),
        1,
        "exactly one login attempt: {all:?}\n{}",
        w.log_tail(40)
    );
    let a = &all[0];
    let (user, password) = match mode {
        "paper" => (
            install
                .scenario
                .get("paper_username")
                .unwrap_or(TEST_USER)
                .to_string(),
            install
                .scenario
                .get("paper_password")
                .unwrap_or(TEST_PASSWORD)
                .to_string(),
        ),
        _ => (
            install.scenario.username().to_string(),
            install.scenario.password().to_string(),
        ),
    };
    assert_eq!(a["username"].as_str(), Some(user.as_str()), "{a}");
    assert_eq!(a["password"].as_str(), Some(password.as_str()), "{a}");
    assert_eq!(a["mode"].as_str(), Some(mode), "{a}");
    assert_eq!(a["verdict"], "ok", "{a}");
    if mode == "live" {
        let codes: Vec<_> = install
            .record()
            .events()
            .into_iter()
            .filter(|e| is_ev(e, "code"))
            .collect();
        assert_eq!(codes.len(), 1, "{codes:?}");
        assert_eq!(codes[0]["verdict"], "accepted", "{codes:?}");
    }
    w.assert_no_secret_in_logs(install);
    w
}

#[test]
fn a_focus_thief_during_the_password_is_followed_by_a_verified_retype() {
    for focus_return in ["same", "other"] {
        let sc = Scenario::new()
            .set("focus_thief_after_chars", 3)
            .set("focus_return", focus_return);
        let install = SimInstall::new(&sc);
        let mut w = ready_with_one_right_attempt(&install, "live", "");
        let rec = install.record().events();
        assert!(
            rec.iter().any(|e| is_ev(e, "focus_thief")),
            "{focus_return}: the thief came"
        );
        let log = w.log();
        // Interrupted after 3 characters: the form was looked at, found short, filled again
        // by target, and seen right before Log In.
        let order = [
            "typing interrupted; looking at the form",
            "filling it again by target",
            "the form holds what was typed form=\"login form\"",
        ];
        let mut at = 0;
        for needle in order {
            let found = log[at..]
                .find(needle)
                .unwrap_or_else(|| panic!("{focus_return}: no {needle:?} after byte {at}"));
            at += found;
        }
        w.stop_and_wait(Duration::from_secs(60));
    }
}

#[test]
fn a_prefilled_username_is_replaced_not_appended() {
    let sc = Scenario::new().set("prefill_username", "someone_else");
    let install = SimInstall::new(&sc);
    let mut w = ready_with_one_right_attempt(&install, "live", "");
    w.stop_and_wait(Duration::from_secs(60));
}

#[test]
fn nimbus_and_flat_looks_log_in_live_and_paper_with_verified_forms() {
    for look in ["nimbus", "flat"] {
        for mode in ["live", "paper"] {
            let install = SimInstall::new(&Scenario::new().set("look", look));
            let mut w = ready_with_one_right_attempt(&install, mode, "");
            let log = w.log();
            assert!(
                log.contains("the form holds what was typed"),
                "{look} {mode}: the form was seen"
            );
            assert!(
                !log.contains("pressing as typed"),
                "{look} {mode}: nothing pressed unseen"
            );
            w.stop_and_wait(Duration::from_secs(60));
        }
    }
}
