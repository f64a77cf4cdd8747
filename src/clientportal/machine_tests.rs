//! Unit tests of the Client Portal machine, with virtual time.

use super::*;

const T0: u64 = 59_866_667 * 30_000 + 3_000; // 3 s into a step

fn up() -> AuthStatus {
    AuthStatus {
        authenticated: true,
        connected: true,
        competing: false,
    }
}

fn started(m: &mut Machine) {
    assert_eq!(m.on(Input::Start, T0), vec![Action::Launch]);
    assert_eq!(m.on(Input::JvmStarted, T0), vec![Action::Status]);
}

/// The outcome of the login attempt in progress.
fn done(m: &Machine, outcome: LoginOutcome) -> Input {
    Input::Login {
        attempt: m.logins(),
        outcome,
    }
}

fn login_step(actions: &[Action]) -> Option<u64> {
    actions.iter().find_map(|a| match a {
        Action::Login { step, .. } => Some(*step),
        _ => None,
    })
}

#[test]
fn no_session_logs_in_once_and_is_ready_after_auth_status() {
    let mut m = Machine::new(Settings::default(), Persisted::default());
    started(&mut m);
    let a = m.on(Input::Api(ApiReply::Unauthorized), T0);
    let step = login_step(&a).expect("a login");
    // The step is saved as used before the login action.
    let save = a
        .iter()
        .position(|x| matches!(x, Action::Save(p) if p.last_totp_step == Some(step)));
    let login = a.iter().position(|x| matches!(x, Action::Login { .. }));
    assert!(save < login && save.is_some(), "{a:?}");
    assert_eq!(
        m.on(done(&m, LoginOutcome::LoggedIn), T0 + 5_000),
        vec![Action::Status]
    );
    assert!(!m.is_ready());
    m.on(Input::Api(ApiReply::Status(up())), T0 + 6_000);
    assert!(m.is_ready());
    assert_eq!(m.next_wake_ms(), Some(T0 + 66_000), "tickle a minute later");
    assert_eq!(m.on(Input::Timer, T0 + 66_000), vec![Action::Tickle]);
}

#[test]
fn an_expired_session_is_reauthenticated_then_fully_logged_in_when_that_fails() {
    let mut m = Machine::new(Settings::default(), Persisted::default());
    started(&mut m);
    m.on(Input::Api(ApiReply::Status(up())), T0);
    assert!(m.is_ready());
    let down = AuthStatus {
        authenticated: false,
        ..up()
    };
    assert_eq!(
        m.on(Input::Api(ApiReply::Status(down)), T0 + 60_000),
        vec![Action::Reauthenticate]
    );
    assert!(!m.is_ready());
    // Still not authenticated at the deadline: a full login.
    let a = m.on(Input::Timer, T0 + 60_000 + 60_000);
    assert!(login_step(&a).is_some(), "{a:?}");
}

#[test]
fn a_rejected_password_halts_and_the_halt_is_saved_first_and_survives() {
    let mut m = Machine::new(Settings::default(), Persisted::default());
    started(&mut m);
    m.on(Input::Api(ApiReply::Unauthorized), T0);
    let a = m.on(done(&m, LoginOutcome::WrongCredentials), T0 + 3_000);
    let saved = a
        .iter()
        .position(|x| matches!(x, Action::Save(p) if p.credentials_rejected.is_some()))
        .expect("saved");
    let told = a
        .iter()
        .position(|x| {
            matches!(
                x,
                Action::Notify {
                    kind: NoticeKind::LoginFailed,
                    ..
                }
            )
        })
        .expect("told");
    assert!(saved < told);
    assert_eq!(m.phase(), &Phase::Halted(HaltWhy::LoginFailed));
    // A new process with that state types nothing.
    let mut again = Machine::new(Settings::default(), m.persisted().clone());
    let a = again.on(Input::Start, T0 + 10_000);
    assert!(!a.contains(&Action::Launch), "{a:?}");
    assert_eq!(again.phase(), &Phase::Halted(HaltWhy::LoginFailed));
    // A person fixes it and restarts.
    let a = again.on(Input::Restart, T0 + 20_000);
    assert!(a.contains(&Action::Launch));
    assert!(again.persisted().credentials_rejected.is_none());
}

#[test]
fn a_rejected_code_waits_for_the_next_step_and_never_reuses_one() {
    let mut m = Machine::new(Settings::default(), Persisted::default());
    started(&mut m);
    let first = login_step(&m.on(Input::Api(ApiReply::Unauthorized), T0)).expect("login");
    let a = m.on(done(&m, LoginOutcome::CodeRejected), T0 + 4_000);
    let second = login_step(&a).expect("another login");
    assert_eq!(second, first + 1, "the next step");
    let wait = a.iter().find_map(|x| match x {
        Action::Login { wait, .. } => Some(*wait),
        _ => None,
    });
    assert_eq!(wait, Some(Duration::from_millis(30_000 - 7_000)));
    // Three in a row halt.
    m.on(done(&m, LoginOutcome::CodeRejected), T0 + 40_000);
    m.on(done(&m, LoginOutcome::CodeRejected), T0 + 80_000);
    assert_eq!(m.phase(), &Phase::Halted(HaltWhy::CodeRejected));
}

#[test]
fn the_budget_is_never_exceeded_and_the_wait_is_told() {
    let mut st = Persisted::default();
    for i in 0..3 {
        st.record_failed_login(T0 / 1000 - 600 + i, HOUR_SECS);
    }
    let mut m = Machine::new(Settings::default(), st);
    started(&mut m);
    let a = m.on(Input::Api(ApiReply::Unauthorized), T0);
    assert!(login_step(&a).is_none(), "{a:?}");
    assert!(a.iter().any(|x| matches!(
        x,
        Action::Notify {
            kind: NoticeKind::LockoutGuard,
            ..
        }
    )));
    assert_eq!(m.phase(), &Phase::Waiting);
    let wake = m.next_wake_ms().expect("a wake");
    assert!(wake > T0 + 2_900_000 && wake < T0 + 3_100_000, "{wake}");
}

#[test]
fn a_login_that_never_submitted_does_not_spend_the_budget() {
    let mut m = Machine::new(Settings::default(), Persisted::default());
    started(&mut m);
    m.on(Input::Api(ApiReply::Unauthorized), T0);
    for i in 0..5u64 {
        let a = m.on(
            done(&m, LoginOutcome::NotSubmitted("no login form".into())),
            T0 + i * 10_000,
        );
        assert!(!a.iter().any(|x| matches!(x, Action::Save(_))), "{a:?}");
        let wake = m.next_wake_ms().expect("a retry");
        let a = m.on(Input::Timer, wake);
        assert!(login_step(&a).is_some(), "retried, budget intact: {a:?}");
    }
    assert_eq!(m.login_budget_left(T0 + 60_000), 3);
}

#[test]
fn a_competing_session_follows_the_policy() {
    let competing = AuthStatus {
        competing: true,
        ..up()
    };
    let mut m = Machine::new(Settings::default(), Persisted::default());
    started(&mut m);
    let a = m.on(Input::Api(ApiReply::Status(competing)), T0);
    assert!(login_step(&a).is_some(), "primary takes it over: {a:?}");

    let mut m = Machine::new(
        Settings {
            existing_session: SessionPolicy::Secondary,
            ..Settings::default()
        },
        Persisted::default(),
    );
    started(&mut m);
    let a = m.on(Input::Api(ApiReply::Status(competing)), T0);
    assert!(login_step(&a).is_none(), "{a:?}");
    assert!(a.iter().any(|x| matches!(
        x,
        Action::Notify {
            kind: NoticeKind::SessionConflict,
            ..
        }
    )));
    assert!(!m.is_ready());
    assert_eq!(m.on(Input::Timer, T0 + 60_000), vec![Action::Status]);
    m.on(Input::Api(ApiReply::Status(up())), T0 + 61_000);
    assert!(m.is_ready(), "once the other session ends");
}

#[test]
fn a_crash_is_relaunched_with_back_off_and_stop_waits_for_the_jvm() {
    let mut m = Machine::new(Settings::default(), Persisted::default());
    started(&mut m);
    m.on(Input::Api(ApiReply::Status(up())), T0);
    let a = m.on(Input::JvmExited { code: Some(1) }, T0 + 1_000);
    assert!(a.iter().any(|x| matches!(
        x,
        Action::Notify {
            kind: NoticeKind::Crash,
            ..
        }
    )));
    assert!(!m.is_ready());
    assert_eq!(m.on(Input::Timer, T0 + 3_000), vec![Action::Launch]);
    m.on(Input::JvmStarted, T0 + 3_100);
    assert_eq!(m.on(Input::Stop, T0 + 4_000), vec![Action::StopGateway]);
    assert_eq!(
        m.on(Input::JvmExited { code: Some(0) }, T0 + 5_000),
        vec![Action::Exit(0)]
    );
}

#[test]
fn the_port_has_a_deadline() {
    let mut m = Machine::new(Settings::default(), Persisted::default());
    started(&mut m);
    m.on(Input::Api(ApiReply::Down("refused".into())), T0);
    assert_eq!(m.on(Input::Timer, T0 + 1_000), vec![Action::Status]);
    assert_eq!(m.on(Input::Timer, T0 + 120_000), vec![Action::Kill]);
}

fn login_attempt(actions: &[Action]) -> Option<u64> {
    actions.iter().find_map(|a| match a {
        Action::Login { attempt, .. } => Some(*attempt),
        _ => None,
    })
}

#[test]
fn an_outcome_counts_only_for_the_attempt_it_answers() {
    let mut m = Machine::new(Settings::default(), Persisted::default());
    started(&mut m);
    let first = login_attempt(&m.on(Input::Api(ApiReply::Unauthorized), T0)).expect("a login");
    // The first login overruns its deadline: the browser is told to close, the attempt
    // counts as failed, and a back-off follows.
    let deadline = m.next_wake_ms().expect("a deadline");
    let a = m.on(Input::Timer, deadline);
    assert!(a.contains(&Action::AbortLogin), "{a:?}");
    let budget = m.login_budget_left(deadline);
    // Its late "logged in" changes nothing, during the back-off or once the next attempt runs.
    let late = |attempt| Input::Login {
        attempt,
        outcome: LoginOutcome::LoggedIn,
    };
    assert_eq!(m.on(late(first), deadline + 500), vec![]);
    let retry = m.next_wake_ms().expect("the back-off's end");
    let second = login_attempt(&m.on(Input::Timer, retry)).expect("a second login");
    assert_ne!(first, second);
    assert_eq!(m.on(late(first), retry + 1_000), vec![]);
    assert_eq!(*m.phase(), Phase::LoggingIn);
    // A stale "wrong password" cannot halt the account either.
    let stale_wrong = Input::Login {
        attempt: first,
        outcome: LoginOutcome::WrongCredentials,
    };
    assert_eq!(m.on(stale_wrong, retry + 1_500), vec![]);
    assert!(m.persisted().credentials_rejected.is_none());
    assert_eq!(m.login_budget_left(retry + 1_500), budget);
    // The awaited attempt's outcome is taken.
    assert_eq!(m.on(late(second), retry + 2_000), vec![Action::Status]);
    assert_eq!(m.logins(), 2);
}

#[test]
fn a_login_in_progress_is_abandoned_when_the_gateway_dies_or_ibwarden_stops() {
    let mut m = Machine::new(Settings::default(), Persisted::default());
    started(&mut m);
    let first = login_attempt(&m.on(Input::Api(ApiReply::Unauthorized), T0)).expect("a login");
    assert!(m.logging_in());
    let a = m.on(Input::JvmExited { code: None }, T0 + 2_000);
    assert_eq!(a.first(), Some(&Action::AbortLogin), "{a:?}");
    assert!(!m.logging_in());
    // Relaunched; the old login's outcome arrives while the new gateway starts.
    let relaunch = m.next_wake_ms().expect("back-off");
    assert_eq!(m.on(Input::Timer, relaunch), vec![Action::Launch]);
    m.on(Input::JvmStarted, relaunch);
    let stale = Input::Login {
        attempt: first,
        outcome: LoginOutcome::LoggedIn,
    };
    assert_eq!(m.on(stale, relaunch + 100), vec![]);
    assert_eq!(*m.phase(), Phase::WaitHttp);
    // A stop while logging in closes the browser before the gateway.
    m.on(Input::Api(ApiReply::Unauthorized), relaunch + 200);
    assert!(m.logging_in());
    assert_eq!(
        m.on(Input::Stop, relaunch + 300),
        vec![Action::AbortLogin, Action::StopGateway]
    );
    assert_eq!(m.restarts(), &[("crash".to_string(), 1)]);
}

#[test]
fn an_api_answer_that_arrives_after_the_gateway_died_is_ignored() {
    let mut m = Machine::new(Settings::default(), Persisted::default());
    started(&mut m);
    m.on(Input::Api(ApiReply::Status(up())), T0);
    assert!(m.is_ready());
    m.on(Input::JvmExited { code: None }, T0 + 1_000);
    assert!(!m.is_ready());
    // The tickle sent just before the crash answers "authenticated" late.
    assert_eq!(m.on(Input::Api(ApiReply::Status(up())), T0 + 1_100), vec![]);
    assert!(!m.is_ready(), "no gateway runs");
    assert_eq!(*m.phase(), Phase::Waiting);
}

#[test]
fn the_counters_say_what_happened() {
    let mut m = Machine::new(Settings::default(), Persisted::default());
    started(&mut m);
    m.on(Input::Api(ApiReply::Status(up())), T0);
    assert_eq!(m.last_status(), Some((up(), T0)));
    let down = AuthStatus {
        authenticated: false,
        ..up()
    };
    m.on(Input::Api(ApiReply::Status(down)), T0 + 60_000);
    assert_eq!(m.reauthentications(), 1);
    assert_eq!(m.last_status(), Some((down, T0 + 60_000)));
    assert_eq!(m.on(Input::Restart, T0 + 61_000), vec![Action::Kill]);
    assert_eq!(m.restarts(), &[("requested".to_string(), 1)]);
    assert_eq!(m.logins(), 0);
}

#[test]
fn a_401_right_after_the_login_is_waited_out_and_one_while_ready_is_asked_again() {
    let mut m = Machine::new(Settings::default(), Persisted::default());
    started(&mut m);
    m.on(Input::Api(ApiReply::Unauthorized), T0);
    assert_eq!(
        m.on(done(&m, LoginOutcome::LoggedIn), T0 + 5_000),
        vec![Action::Status]
    );
    // The gateway answers 401 for a while after the page said "logged in": no new login.
    for i in 0..5 {
        let t = T0 + 6_000 + i * 1_000;
        assert_eq!(m.on(Input::Api(ApiReply::Unauthorized), t), vec![]);
        assert_eq!(m.on(Input::Timer, t + 1_000), vec![Action::Status]);
    }
    m.on(Input::Api(ApiReply::Status(up())), T0 + 12_000);
    assert!(m.is_ready());
    assert_eq!(m.logins(), 1);
    // While ready: one 401 is asked again, a second in a row means the session is gone.
    assert_eq!(
        m.on(Input::Api(ApiReply::Unauthorized), T0 + 70_000),
        vec![]
    );
    assert_eq!(m.on(Input::Timer, T0 + 71_000), vec![Action::Tickle]);
    m.on(Input::Api(ApiReply::Status(up())), T0 + 71_100);
    assert_eq!(
        m.on(Input::Api(ApiReply::Unauthorized), T0 + 131_000),
        vec![]
    );
    assert_eq!(m.on(Input::Timer, T0 + 132_000), vec![Action::Tickle]);
    let a = m.on(Input::Api(ApiReply::Unauthorized), T0 + 132_100);
    assert!(login_step(&a).is_some(), "{a:?}");
    assert_eq!(m.logins(), 2);
}

#[test]
fn a_login_answered_only_by_401s_fails_at_its_deadline() {
    let mut m = Machine::new(Settings::default(), Persisted::default());
    started(&mut m);
    m.on(Input::Api(ApiReply::Unauthorized), T0);
    m.on(done(&m, LoginOutcome::LoggedIn), T0 + 5_000);
    let budget = m.login_budget_left(T0 + 5_000);
    m.on(Input::Api(ApiReply::Unauthorized), T0 + 6_000);
    // auth_timeout (60 s) after the login: it counts as failed, and the next one follows.
    let a = m.on(Input::Timer, T0 + 65_000);
    assert!(login_step(&a).is_some(), "{a:?}");
    assert_eq!(m.login_budget_left(T0 + 65_000), budget - 1);
}
