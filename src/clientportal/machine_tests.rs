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
        m.on(Input::Login(LoginOutcome::LoggedIn), T0 + 5_000),
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
    let a = m.on(Input::Login(LoginOutcome::WrongCredentials), T0 + 3_000);
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
    let a = m.on(Input::Login(LoginOutcome::CodeRejected), T0 + 4_000);
    let second = login_step(&a).expect("another login");
    assert_eq!(second, first + 1, "the next step");
    let wait = a.iter().find_map(|x| match x {
        Action::Login { wait, .. } => Some(*wait),
        _ => None,
    });
    assert_eq!(wait, Some(Duration::from_millis(30_000 - 7_000)));
    // Three in a row halt.
    m.on(Input::Login(LoginOutcome::CodeRejected), T0 + 40_000);
    m.on(Input::Login(LoginOutcome::CodeRejected), T0 + 80_000);
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
            Input::Login(LoginOutcome::NotSubmitted("no login form".into())),
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
