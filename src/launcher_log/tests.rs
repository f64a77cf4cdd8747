//! Unit tests of the parent module.

use super::*;
use LauncherEvent as E;

/// A line in the simulator's (and the gateway's) format.
fn l(level: &str, msg: &str) -> String {
    format!("2026-11-24 08:12:13.456 [KQ] {level} [JTS-AWT-EventQueue-0] - {msg}")
}

#[test]
fn classifies_the_simulator_markers() {
    let cases = [
        (
            l("INFO ", "Starting IB Gateway (simulator) pid 4242"),
            Some(E::GatewayStarting),
        ),
        (
            l("INFO ", "IB GATEWAY RESTART: restart=abcdefgh"),
            Some(E::TokenRestart),
        ),
        (
            l("INFO ", "AuthTimeoutMonitor-CCP: activate"),
            Some(E::AuthStarted),
        ),
        (l("INFO ", "NS_AUTH_START"), Some(E::AuthAccepted)),
        (
            l("WARN ", "AuthTimeoutMonitor-CCP: Timeout!"),
            Some(E::AuthTimeout),
        ),
        (l("WARN ", "Authentication failed"), Some(E::AuthFailed)),
        (
            l("INFO ", "Existing session detected"),
            Some(E::SessionPolicy),
        ),
        (
            l("INFO ", "Second factor authentication accepted"),
            Some(E::SecondFactor(SecondFactorOutcome::Accepted)),
        ),
        (
            l("WARN ", "Second factor authentication failed"),
            Some(E::SecondFactor(SecondFactorOutcome::Failed)),
        ),
        (
            l("WARN ", "Second factor authentication timed out"),
            Some(E::SecondFactor(SecondFactorOutcome::TimedOut)),
        ),
        (
            l("WARN ", "Connection to server failed"),
            Some(E::ConnectionFailed),
        ),
        (l("INFO ", "Login has completed"), Some(E::LoginCompleted)),
        (
            l("INFO ", "API server listening on port 4002"),
            Some(E::ApiListening { port: 4002 }),
        ),
        (
            l("WARN ", "Session disconnected: re-login is required"),
            Some(E::ReloginRequired),
        ),
        (
            l(
                "INFO ",
                "Restart in progress: the application will restart automatically",
            ),
            Some(E::RestartInProgress),
        ),
        (l("INFO ", "IB GATEWAY RESTART"), Some(E::RestartInProgress)),
        (
            l(
                "WARN ",
                "Autorestart token expired: authentication required",
            ),
            Some(E::TokenExpired),
        ),
        (
            l(
                "WARN ",
                "Restart requested but no autorestart token found: authentication required",
            ),
            Some(E::TokenMissing),
        ),
        (
            l("INFO ", "Exiting: nightly_restart"),
            Some(E::Exiting {
                reason: "nightly_restart".into(),
            }),
        ),
        (l("INFO ", "Login frame shown"), None),
        (l("INFO ", "Connecting to server"), None),
        (l("INFO ", "jtsConfigDir: /tmp/x/Jts"), None),
        (String::new(), None),
    ];
    for (line, want) in cases {
        assert_eq!(classify(&line), want, "line {line:?}");
    }
}

#[test]
fn classifies_real_gateway_phrasings() {
    // Bare markers as ibg-controller's tests write them, IBAutomater's and IBC's texts.
    assert_eq!(
        classify("AuthTimeoutMonitor-CCP: Timeout!"),
        Some(E::AuthTimeout)
    );
    assert_eq!(
        classify("2026-04-20 23:53:01.120 [CD] INFO  [JTS-AuthTimeoutMonitorThread-CCP-19] - AuthTimeoutMonitor-CCP: activate"),
        Some(E::AuthStarted)
    );
    assert_eq!(
        classify("... [JTS-Login-3] - NS_AUTH_START user=x"),
        Some(E::AuthAccepted)
    );
    assert_eq!(
        classify(&l(
            "INFO ",
            "The application will automatically restart in 60 seconds"
        )),
        Some(E::RestartInProgress)
    );
    assert_eq!(
        classify(&l("WARN ", "Auto-restart token expired")),
        Some(E::TokenExpired)
    );
    assert_eq!(
        classify(&l(
            "INFO ",
            "Your security tokens have expired. Please log in again."
        )),
        Some(E::TokenExpired)
    );
    assert_eq!(
        classify("API server listening on port notanumber"),
        None,
        "a malformed port is no event"
    );
    assert_eq!(
        classify(&(l("INFO ", "API server listening on port 4002") + "\r\n")),
        Some(E::ApiListening { port: 4002 })
    );
}

#[test]
fn exiting_reason_is_bounded() {
    let long = "x".repeat(1000);
    match classify(&l("INFO ", &format!("Exiting: {long}"))) {
        Some(E::Exiting { reason }) => assert_eq!(reason.len(), MAX_REASON),
        other => panic!("{other:?}"),
    }
}

fn feed_all(t: &mut Tracker, lines: &[String]) -> Vec<LauncherEvent> {
    lines.iter().filter_map(|x| t.feed(x)).collect()
}

#[test]
fn timeout_without_ns_auth_start_is_a_silent_drop() {
    let mut t = Tracker::new();
    let got = feed_all(
        &mut t,
        &[
            l("INFO ", "Starting IB Gateway (simulator) pid 1"),
            l("INFO ", "Login attempt 1 (live)"),
            l("INFO ", "AuthTimeoutMonitor-CCP: activate"),
            l("WARN ", "AuthTimeoutMonitor-CCP: Timeout!"),
        ],
    );
    assert_eq!(got, vec![E::GatewayStarting, E::AuthStarted, E::SilentDrop]);
}

#[test]
fn timeout_after_ns_auth_start_is_not_a_silent_drop() {
    let mut t = Tracker::new();
    let got = feed_all(
        &mut t,
        &[
            l("INFO ", "AuthTimeoutMonitor-CCP: activate"),
            l("INFO ", "NS_AUTH_START"),
            l("WARN ", "AuthTimeoutMonitor-CCP: Timeout!"),
        ],
    );
    assert_eq!(got, vec![E::AuthStarted, E::AuthAccepted, E::AuthTimeout]);
}

#[test]
fn timeout_with_no_activate_seen_is_not_called_a_silent_drop() {
    let mut t = Tracker::new();
    assert_eq!(
        t.feed(&l("WARN ", "AuthTimeoutMonitor-CCP: Timeout!")),
        Some(E::AuthTimeout)
    );
}

#[test]
fn each_drop_of_a_series_is_reported_and_a_later_accept_is_not_a_drop() {
    let mut t = Tracker::new();
    let mut lines = Vec::new();
    for n in 1..=3 {
        lines.push(l("INFO ", &format!("Login attempt {n} (live)")));
        lines.push(l("INFO ", "AuthTimeoutMonitor-CCP: activate"));
        lines.push(l("WARN ", "AuthTimeoutMonitor-CCP: Timeout!"));
    }
    lines.push(l("INFO ", "AuthTimeoutMonitor-CCP: activate"));
    lines.push(l("INFO ", "NS_AUTH_START"));
    lines.push(l("INFO ", "Login has completed"));
    let got = feed_all(&mut t, &lines);
    assert_eq!(
        got,
        vec![
            E::AuthStarted,
            E::SilentDrop,
            E::AuthStarted,
            E::SilentDrop,
            E::AuthStarted,
            E::SilentDrop,
            E::AuthStarted,
            E::AuthAccepted,
            E::LoginCompleted
        ]
    );
}

#[test]
fn a_new_jvm_forgets_the_old_attempt() {
    let mut t = Tracker::new();
    t.feed(&l("INFO ", "AuthTimeoutMonitor-CCP: activate"));
    t.feed(&l("INFO ", "Starting IB Gateway (simulator) pid 2"));
    assert_eq!(
        t.feed(&l("WARN ", "AuthTimeoutMonitor-CCP: Timeout!")),
        Some(E::AuthTimeout)
    );
}

#[test]
fn the_two_restart_markers_make_one_event() {
    let mut t = Tracker::new();
    let got = feed_all(
        &mut t,
        &[
            l(
                "INFO ",
                "Restart in progress: the application will restart automatically",
            ),
            l("INFO ", "IB GATEWAY RESTART"),
            l("INFO ", "Exiting: nightly_restart"),
        ],
    );
    assert_eq!(
        got,
        vec![
            E::RestartInProgress,
            E::Exiting {
                reason: "nightly_restart".into()
            }
        ]
    );
}

#[test]
fn read_all_reads_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("launcher.log");
    std::fs::write(
        &p,
        format!(
            "{}\n{}\n",
            l("INFO ", "AuthTimeoutMonitor-CCP: activate"),
            l("WARN ", "AuthTimeoutMonitor-CCP: Timeout!")
        ),
    )
    .expect("write");
    assert_eq!(
        read_all(&p).expect("read"),
        vec![E::AuthStarted, E::SilentDrop]
    );
    assert!(matches!(
        read_all(&dir.path().join("nope")),
        Err(LauncherLogError::Io { .. })
    ));
}
