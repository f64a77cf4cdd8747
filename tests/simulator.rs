//! The gateway simulator driven directly over X11 (XTest typing, WM_TAKE_FOCUS), without
//! ibwarden: window sequences, keyboard behaviour, verification, scenarios, the API port.
mod common;

use common::{is_ev, Scenario, Session, START_TIMEOUT, STEP_TIMEOUT};

#[test]
fn live_login_with_correct_code() {
    let mut s = Session::start(&Scenario::new());
    let (user, pw) = (common::TEST_USER, common::TEST_PASSWORD);
    s.type_login(user, pw);
    let attempt = s.rec.wait_ev("login_attempt", STEP_TIMEOUT);
    assert_eq!(attempt["verdict"], "ok");
    assert_eq!(attempt["username"], user);
    assert_eq!(attempt["password"], pw);
    assert_eq!(attempt["mode"], "live");
    s.rec
        .wait_window("Second Factor Authentication", STEP_TIMEOUT);
    let (code, step) = s.type_code();
    let checked = s.rec.wait_ev("code", STEP_TIMEOUT);
    assert_eq!(checked["code"], code.as_str());
    assert_eq!(checked["step"], step);
    assert_eq!(checked["verdict"], "accepted");
    s.rec.wait_ev("logged_in", STEP_TIMEOUT);
    s.rec.wait_ev("api_listen", STEP_TIMEOUT);
    let seq = s.rec.window_sequence();
    assert_eq!(
        seq,
        [
            "IBKR Gateway",
            "Authenticating...",
            "Second Factor Authentication",
            "Connecting to server...",
            "Initializing environment...",
            "Starting application...",
            "IBKR Gateway"
        ],
        "window sequence"
    );
    // Every key went to the right field.
    let typed = |field: &str| -> String {
        s.rec
            .events()
            .iter()
            .filter(|e| is_ev(e, "key") && e["field"] == field && e["char"].is_string())
            .map(|e| e["char"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(typed("username"), user);
    assert_eq!(typed("password"), pw);
    assert_eq!(typed("code"), code);
    let _ = START_TIMEOUT;
}
