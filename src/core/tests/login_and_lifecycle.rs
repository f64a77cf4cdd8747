//! The login, the second factor, crashes, hangs and stops.

use super::*;

#[test]
fn live_login_types_credentials_then_a_fresh_code_then_waits_for_the_api() {
    let mut h = H::live();
    let a = h.open_login_frame();
    // The fill: username and password, no Enter, and nothing counted yet.
    let (w, steps) = &h.typed()[0];
    assert_eq!(*w, FRAME);
    assert!(has_secret(steps, SecretRef::Username) && has_secret(steps, SecretRef::Password));
    assert!(!steps.contains(&KeyStep::Key(NamedKey::Enter)), "{steps:?}");
    // Saved before any key (a state dir that cannot be written stops here), not yet counted.
    let save = a
        .iter()
        .position(|x| matches!(x, Action::SaveState(p) if p.failed_logins.is_empty()));
    let fill_at = a.iter().position(|x| matches!(x, Action::Type { .. }));
    assert!(
        save.expect("saved first") < fill_at.expect("filled"),
        "{a:?}"
    );
    let fill = match a.iter().find(|x| matches!(x, Action::Type { .. })) {
        Some(Action::Type { ticket, .. }) => *ticket,
        _ => panic!("the form is filled"),
    };
    let b = h.input(Input::Typed {
        ticket: fill,
        result: TypeResult::Done,
    });
    // Then the attempt is persisted, and only then `Log In` is pressed.
    let save = b
        .iter()
        .position(|x| matches!(x, Action::SaveState(p) if p.failed_logins.len() == 1));
    let commit = b.iter().position(
        |x| matches!(x, Action::Type { steps, .. } if steps.last() == Some(&KeyStep::Key(NamedKey::Enter))),
    );
    assert!(
        save.expect("attempt saved") < commit.expect("Log In pressed"),
        "{b:?}"
    );
    h.complete_typing(&b);

    h.input(Input::TitleChanged {
        id: FRAME,
        title: "Authenticating...".into(),
    });
    let a = h.map(DIALOG, "Second Factor Authentication");
    // 25 s left in the step: typed at once, the step is the current one.
    assert_eq!(h.code_steps(), vec![1_795_507_205 / 30]);
    assert!(
        matches!(a.iter().find(|x| matches!(x, Action::SaveState(_))),
        Some(Action::SaveState(p)) if p.last_totp_step == Some(1_795_507_205 / 30))
    );
    h.complete_typing(&a);
    h.input(Input::Destroyed(DIALOG));
    h.input(Input::TitleChanged {
        id: FRAME,
        title: "Starting application...".into(),
    });
    assert!(!h.ready());
    h.input(Input::TitleChanged {
        id: FRAME,
        title: "IBKR Gateway".into(),
    });
    assert_eq!(h.sv.phase(), &Phase::AwaitApi);
    // Probes that fail keep it not ready (fail closed).
    let a = h.step(Duration::from_secs(1)).expect("probe due");
    assert!(a.contains(&Action::Probe));
    h.input(Input::Probe(ProbeOutcome::Down {
        reason: "refused".into(),
    }));
    assert!(!h.ready());
    let a = h.step(Duration::from_secs(2)).expect("probe again");
    assert!(a.contains(&Action::Probe));
    h.probe_up();
    assert!(h.ready());
    assert_eq!(h.sv.phase(), &Phase::Ready);
    // A successful login is not a failed one.
    assert!(h.sv.persisted().failed_logins.is_empty());
}

#[test]
fn code_with_too_little_validity_waits_for_the_next_step() {
    let mut h = H::live();
    // 5 s left in the step; the minimum is 8 s.
    h.now.unix_ms = 1_795_507_225_000;
    let a = h.open_login_frame();
    h.complete_typing(&a);
    h.map(DIALOG, "Second Factor Authentication");
    assert!(h.code_steps().is_empty(), "no code with 5 s left");
    h.run_for(Duration::from_millis(4900));
    assert!(h.code_steps().is_empty(), "not before the next step begins");
    h.run_for(Duration::from_millis(200));
    let step = 1_795_507_225 / 30 + 1;
    assert_eq!(h.code_steps(), vec![step]);
}

#[test]
fn a_step_is_never_typed_twice_even_after_a_restart() {
    let step = 1_795_507_205 / 30;
    let mut h = H::new(
        CoreConfig::default(),
        Persisted {
            last_totp_step: Some(step),
            failed_logins: vec![],
            credentials_rejected: None,
        },
    );
    let a = h.open_login_frame();
    h.complete_typing(&a);
    h.map(DIALOG, "Second Factor Authentication");
    assert!(h.code_steps().is_empty());
    h.run_for(Duration::from_secs(30));
    assert_eq!(h.code_steps(), vec![step + 1]);
}

#[test]
fn two_rejected_codes_then_accepted_uses_three_steps() {
    let mut h = H::live();
    let a = h.open_login_frame();
    h.complete_typing(&a);
    for round in 0..3 {
        let a = h.map(DIALOG + round, "Second Factor Authentication");
        h.complete_typing(&a);
        while h.code_steps().len() < round as usize + 1 {
            let a = h.step(Duration::from_secs(31)).expect("waiting for a step");
            h.complete_typing(&a);
        }
        h.input(Input::Destroyed(DIALOG + round));
    }
    let steps = h.code_steps();
    assert_eq!(steps.len(), 3);
    assert!(steps[0] < steps[1] && steps[1] < steps[2]);
    h.input(Input::TitleChanged {
        id: FRAME,
        title: "Starting application...".into(),
    });
    h.input(Input::TitleChanged {
        id: FRAME,
        title: "IBKR Gateway".into(),
    });
    h.step(Duration::from_secs(1));
    h.probe_up();
    assert!(h.ready());
}

#[test]
fn too_many_rejected_codes_halt_and_notify() {
    let mut h = H::live();
    let a = h.open_login_frame();
    h.complete_typing(&a);
    for round in 0..4 {
        h.map(DIALOG + round, "Second Factor Authentication");
        let _ = h.step(Duration::from_secs(31));
        h.input(Input::Destroyed(DIALOG + round));
    }
    assert_eq!(h.code_steps().len(), 3);
    assert!(matches!(h.sv.phase(), Phase::Halted { .. }));
    assert!(h.log.iter().any(|a| matches!(
        a,
        Action::Notify {
            kind: NoticeKind::CodeRejected,
            ..
        }
    )));
}

#[test]
fn paper_login_accepts_the_warning_and_types_no_code() {
    let mut h = H::new(
        CoreConfig {
            trading_mode: TradingMode::Paper,
            ..CoreConfig::default()
        },
        Persisted::default(),
    );
    let a = h.open_login_frame();
    h.complete_typing(&a);
    let a = h.map(DIALOG, "Warning");
    let Some(Action::Type { window, steps, .. }) =
        a.iter().find(|x| matches!(x, Action::Type { .. }))
    else {
        panic!("warning not answered: {a:?}");
    };
    assert_eq!(*window, DIALOG);
    assert!(steps.contains(&KeyStep::Key(NamedKey::Enter)));
    assert!(h.code_steps().is_empty());
}

#[test]
fn invalid_password_stops_after_one_attempt() {
    let mut h = H::live();
    let a = h.open_login_frame();
    h.complete_typing(&a);
    let a = h.map(DIALOG, "Login failed");
    assert!(matches!(h.sv.phase(), Phase::Halted { .. }));
    // The halt is saved before the dialog is answered or anyone is told: a crash after the
    // first side effect cannot forget it.
    let first = a
        .iter()
        .find(|x| {
            matches!(
                x,
                Action::SaveState(_) | Action::Type { .. } | Action::Notify { .. }
            )
        })
        .expect("the rejection is acted on");
    assert!(
        matches!(first, Action::SaveState(p) if p.credentials_rejected.is_some()),
        "{a:?}"
    );
    // Nothing more happens for a long time: no relaunch, no second attempt.
    let mut t = 0;
    while let Some(a) = h.step(Duration::from_secs(3600)) {
        assert!(!a.iter().any(|x| matches!(x, Action::Launch { .. })));
        t += 1;
        assert!(t < 100);
    }
    let creds = h
        .typed()
        .iter()
        .filter(|(_, s)| has_secret(s, SecretRef::Password))
        .count();
    assert_eq!(creds, 1);
    assert!(h.log.iter().any(|a| matches!(
        a,
        Action::Notify {
            kind: NoticeKind::LoginFailed,
            severity: Severity::Critical,
            ..
        }
    )));
}

#[test]
fn spent_login_budget_waits_instead_of_typing() {
    let now_s = 1_795_507_205;
    let mut h = H::new(
        CoreConfig::default(),
        Persisted {
            last_totp_step: None,
            failed_logins: vec![now_s - 100, now_s - 50, now_s - 10],
            credentials_rejected: None,
        },
    );
    h.open_login_frame();
    assert!(h.typed().is_empty());
    assert!(matches!(h.sv.phase(), Phase::Backoff { .. }));
    assert_eq!(h.sv.login_budget_left(h.now), 0);
    // Nothing is typed until the oldest failure leaves the hour; then one attempt is made.
    h.run_for(Duration::from_secs(3600 - 101));
    assert!(h.typed().is_empty());
    let a = h.run_for(Duration::from_secs(3));
    assert!(a.iter().any(|x| matches!(x, Action::Type { .. })));
}

#[test]
fn progress_modal_and_unknown_dialogs_are_never_answered() {
    let mut h = H::live();
    let a = h.open_login_frame();
    h.complete_typing(&a);
    let a = h.map(DIALOG, "Gateway");
    assert!(!a.iter().any(|x| matches!(x, Action::Type { .. })));
    let a = h.map(DIALOG + 1, "Brand new dialog");
    assert!(!a.iter().any(|x| matches!(x, Action::Type { .. })));
    assert!(a.iter().any(|x| matches!(
        x,
        Action::Screenshot {
            window: Some(w),
            ..
        } if *w == DIALOG + 1
    )));
    assert!(a.iter().any(|x| matches!(
        x,
        Action::Notify {
            kind: NoticeKind::UnknownDialog,
            ..
        }
    )));
}

#[test]
fn gateway_dialog_text_decides_the_answer() {
    let mut h = H::new(
        CoreConfig {
            content_reader: true,
            ..CoreConfig::default()
        },
        Persisted::default(),
    );
    let a = h.open_login_frame();
    h.complete_typing(&a);
    let a = h.map(DIALOG, "Gateway");
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::ReadText { window, .. } if *window == DIALOG)));
    let a = h.input(Input::WindowText {
        window: DIALOG,
        text: Some("Connection to server failed: Server disconnected, please try again".into()),
    });
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::Type { window, .. } if *window == DIALOG)));
    // Not a new JVM: the login window comes back behind the dialog; log in again there
    // after a back-off.
    assert!(!a.iter().any(|x| matches!(x, Action::CloseGateway { .. })));
    assert!(matches!(h.sv.phase(), Phase::Backoff { .. }));
    h.input(Input::Destroyed(DIALOG));
    h.input(Input::TitleChanged {
        id: FRAME,
        title: "IBKR Gateway".into(),
    });
    let a = h.run_for(Duration::from_secs(5));
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::Type { window, steps, .. }
        if *window == FRAME && has_secret(steps, SecretRef::Password))));
    assert!(!h.log.iter().any(|x| matches!(
        x,
        Action::Launch {
            use_restart_token: false
        }
    )));
}

#[test]
fn an_expired_token_gets_a_full_login_in_the_same_jvm() {
    let mut h = H::new(
        CoreConfig {
            content_reader: true,
            ..CoreConfig::default()
        },
        Persisted::default(),
    );
    h.input(Input::Start);
    h.input(Input::Spawned {
        pid: PID,
        with_token: true,
    });
    h.map(FRAME, "IBKR Gateway");
    assert!(h.typed().is_empty(), "the token logs in by itself");
    h.map(DIALOG, "Gateway");
    let a = h.input(Input::WindowText {
        window: DIALOG,
        text: Some("Your security tokens have expired. Please log in again.\nOK".into()),
    });
    assert_eq!(answers_in(&a, DIALOG), vec![Answer::Default]);
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::Type { window, steps, .. }
        if *window == FRAME && has_secret(steps, SecretRef::Password))));
    assert!(!a.iter().any(|x| matches!(x, Action::CloseGateway { .. })));
}

fn existing_session_answer(policy: SessionPolicy, after_login: bool, seen: u32) -> Option<Answer> {
    let mut h = H::new(
        CoreConfig {
            existing_session: policy,
            ..CoreConfig::default()
        },
        Persisted::default(),
    );
    let a = h.open_login_frame();
    h.complete_typing(&a);
    if after_login {
        h.input(Input::TitleChanged {
            id: FRAME,
            title: "Starting application...".into(),
        });
        h.input(Input::TitleChanged {
            id: FRAME,
            title: "IBKR Gateway".into(),
        });
        h.step(Duration::from_secs(1));
        h.probe_up();
        assert!(h.ready());
    }
    let mut last = None;
    for i in 0..seen {
        let a = h.map(DIALOG + i, "Existing session detected");
        last = a.iter().find_map(|x| match x {
            Action::Type { steps, .. } if steps == &Answer::Default.keys() => Some(Answer::Default),
            Action::Type { steps, .. } if steps == &Answer::Second.keys() => Some(Answer::Second),
            _ => None,
        });
        h.input(Input::Destroyed(DIALOG + i));
    }
    last
}

#[test]
fn existing_session_policies_match_ibc() {
    use SessionPolicy::*;
    // Before login (IBC's scenarios 1-4).
    assert_eq!(existing_session_answer(Manual, false, 1), None);
    assert_eq!(
        existing_session_answer(Secondary, false, 1),
        Some(Answer::Second)
    );
    assert_eq!(
        existing_session_answer(Primary, false, 1),
        Some(Answer::Default)
    );
    assert_eq!(
        existing_session_answer(PrimaryOverride, false, 1),
        Some(Answer::Default)
    );
    assert_eq!(
        existing_session_answer(Primary, false, 2),
        Some(Answer::Second)
    );
    // After login (scenarios 5, 6).
    assert_eq!(
        existing_session_answer(Primary, true, 1),
        Some(Answer::Default)
    );
    assert_eq!(
        existing_session_answer(PrimaryOverride, true, 1),
        Some(Answer::Second)
    );
    assert_eq!(existing_session_answer(Manual, true, 1), None);
    assert_eq!(
        existing_session_answer(Secondary, true, 1),
        Some(Answer::Second)
    );
}

#[test]
fn crash_relaunches_after_backoff_and_notifies() {
    let mut h = H::live();
    h.open_login_frame();
    let a = h.input(Input::Exited {
        code: Some(134),
        signal: None,
        hs_err: Some("/state/hs_err_pid4242.log".into()),
    });
    assert!(a.iter().any(|x| matches!(
        x,
        Action::Notify {
            kind: NoticeKind::Crash,
            ..
        }
    )));
    assert!(matches!(h.sv.phase(), Phase::Backoff { .. }));
    let a = h.step(Duration::from_secs(10)).expect("backoff");
    assert!(a.contains(&Action::Launch {
        use_restart_token: true
    }));
}

#[test]
fn hang_detected_by_probes_restarts_the_gateway() {
    let mut h = H::live();
    let a = h.open_login_frame();
    h.complete_typing(&a);
    h.step(Duration::from_secs(1));
    h.probe_up();
    assert!(h.ready());
    let mut closed = false;
    for _ in 0..3 {
        let a = h.step(Duration::from_secs(31)).expect("probe due");
        assert!(a.contains(&Action::Probe));
        let a = h.input(Input::Probe(ProbeOutcome::Down {
            reason: "timed out".into(),
        }));
        closed |= a.iter().any(|x| matches!(x, Action::CloseGateway { .. }));
    }
    assert!(closed, "three failed probes restart the gateway");
    h.input(Input::Exited {
        code: None,
        signal: Some(9),
        hs_err: None,
    });
    let a = h.step(Duration::from_secs(10)).expect("relaunch");
    assert!(a.iter().any(|x| matches!(x, Action::Launch { .. })));
}

#[test]
fn focus_lost_retries_the_same_keys_and_never_elsewhere() {
    let mut h = H::live();
    let a = h.open_login_frame();
    let (ticket, steps) = a
        .iter()
        .find_map(|x| match x {
            Action::Type { ticket, steps, .. } => Some((*ticket, steps.clone())),
            _ => None,
        })
        .expect("typing");
    h.input(Input::Typed {
        ticket,
        result: TypeResult::FocusLost,
    });
    let a = h.step(Duration::from_secs(1)).expect("retry");
    assert!(a.contains(&Action::Type {
        ticket,
        window: FRAME,
        steps
    }));
}

#[test]
fn stop_closes_the_gateway_then_exits() {
    let mut h = H::live();
    h.open_login_frame();
    let a = h.input(Input::Stop);
    assert!(a.contains(&Action::CloseGateway { main_window: FRAME }));
    let a = h.input(Input::Exited {
        code: Some(0),
        signal: None,
        hs_err: None,
    });
    assert!(a.contains(&Action::Exit(0)));
}

/// The chooser with a reader, after the login: the harness sees the list as `sees`.
fn at_the_device_chooser(sees: FormVerdict) -> (H, Vec<Action>) {
    let mut h = H::new(
        CoreConfig {
            content_reader: true,
            ..CoreConfig::default()
        },
        Persisted::default(),
    );
    let a = h.open_login_frame();
    h.complete_typing(&a);
    h.sees = Some(sees);
    h.map(DIALOG, "Second Factor Authentication");
    let a = h.input(Input::WindowText {
        window: DIALOG,
        text: Some("Select second factor device\nIB Key\nMobile Authenticator app\nOK".into()),
    });
    (h, a)
}

#[test]
fn device_chooser_presses_ok_once_the_configured_row_is_seen_selected() {
    let (mut h, a) = at_the_device_chooser(FormVerdict::Matches);
    assert!(a.iter().any(|x| matches!(
        x,
        Action::CheckForm {
            form: FormCheck::Device,
            ..
        }
    )));
    let Some(Action::Type { steps, .. }) = a.iter().find(|x| matches!(x, Action::Type { .. }))
    else {
        panic!("chooser not answered: {a:?}")
    };
    assert_eq!(steps.last(), Some(&KeyStep::Key(NamedKey::Enter)));
    h.input(Input::Destroyed(DIALOG));
    h.map(DIALOG + 1, "Second Factor Authentication");
    h.input(Input::WindowText {
        window: DIALOG + 1,
        text: Some("Enter Mobile Authenticator app code".into()),
    });
    assert_eq!(h.code_steps().len(), 1);
}

#[test]
fn device_chooser_clicks_the_configured_row_when_another_is_selected() {
    let (h, a) = at_the_device_chooser(FormVerdict::Differs("another row".into()));
    let typed: Vec<&Vec<KeyStep>> = a
        .iter()
        .filter_map(|x| match x {
            Action::Type { steps, .. } => Some(steps),
            _ => None,
        })
        .collect();
    // A click on the row, checked again; never OK while the row is not seen selected.
    assert_eq!(typed[0][0], KeyStep::Click { x: 150, y: 90 });
    assert!(
        !typed
            .iter()
            .any(|s| s.contains(&KeyStep::Key(NamedKey::Enter))),
        "{typed:?}"
    );
    // The click went in: the list is looked at again, and once the row is seen selected,
    // OK.
    let Some(Action::Type { ticket, .. }) = a.iter().find(|x| matches!(x, Action::Type { .. }))
    else {
        panic!("{a:?}")
    };
    let mut h = h;
    h.sees = Some(FormVerdict::Matches);
    let b = h.input(Input::Typed {
        ticket: *ticket,
        result: TypeResult::Done,
    });
    assert!(
        b.iter().any(|x| matches!(
            x,
            Action::CheckForm {
                form: FormCheck::Device,
                ..
            }
        )),
        "{b:?}"
    );
    assert!(
        b.iter().any(|x| matches!(x, Action::Type { steps, .. }
            if steps.last() == Some(&KeyStep::Key(NamedKey::Enter)))),
        "{b:?}"
    );
}

#[test]
fn device_chooser_falls_back_to_type_ahead_when_the_list_cannot_be_read() {
    let (_h, a) = at_the_device_chooser(FormVerdict::Unseen("no OCR".into()));
    let Some(Action::Type { steps, .. }) = a.iter().find(|x| matches!(x, Action::Type { .. }))
    else {
        panic!("chooser not answered: {a:?}")
    };
    assert_eq!(steps[0], KeyStep::Text("Mobile".into()));
}

#[test]
fn back_at_the_login_window_relogs_in_after_a_growing_wait_in_the_same_jvm() {
    let mut h = H::live();
    let a = h.open_login_frame();
    h.complete_typing(&a);
    h.input(Input::TitleChanged {
        id: FRAME,
        title: "Authenticating...".into(),
    });
    // The 2FA dialog times out (an IB Key push nobody approved): back to the login window.
    h.input(Input::TitleChanged {
        id: FRAME,
        title: "IBKR Gateway".into(),
    });
    assert!(matches!(h.sv.phase(), Phase::Backoff { .. }));
    assert!(!h.ready());
    let creds = |h: &H| {
        h.typed()
            .iter()
            .filter(|(_, s)| has_secret(s, SecretRef::Password))
            .count()
    };
    h.run_for(Duration::from_secs(59));
    assert_eq!(creds(&h), 1, "no re-login before the wait");
    h.run_for(Duration::from_secs(2));
    assert_eq!(creds(&h), 2, "one re-login after 60 s");
    let launches = h
        .log
        .iter()
        .filter(|a| matches!(a, Action::Launch { .. }))
        .count();
    assert_eq!(launches, 1, "no new JVM for a re-login");
}

/// The fill's ticket from the actions that typed it.
pub(super) fn fill_ticket(a: &[Action]) -> u64 {
    match a
        .iter()
        .find(|x| matches!(x, Action::Type { window, .. } if *window == FRAME))
    {
        Some(Action::Type { ticket, .. }) => *ticket,
        _ => panic!("the login form is filled: {a:?}"),
    }
}

#[test]
fn a_fill_that_never_got_the_focus_is_sent_again_unchanged_then_submitted_once() {
    let mut h = H::live();
    let a = h.open_login_frame();
    let ticket = fill_ticket(&a);
    let first = h.typed()[0].1.clone();
    h.input(Input::Typed {
        ticket,
        result: TypeResult::FocusLost,
    });
    let retry = h.run_for(Duration::from_secs(1));
    let again = typed_of(&retry, ticket).expect("the same job again");
    assert_eq!(
        again, first,
        "nothing had been sent: the same keys are right"
    );
    let b = h.input(Input::Typed {
        ticket,
        result: TypeResult::Done,
    });
    assert_eq!(h.sv.persisted().failed_logins.len(), 1, "{b:?}");
    let enters = h
        .typed()
        .iter()
        .filter(|(_, s)| s.contains(&KeyStep::Key(NamedKey::Enter)))
        .count();
    assert_eq!(enters, 1, "Log In pressed once");
}

fn typed_of(a: &[Action], ticket: u64) -> Option<Vec<KeyStep>> {
    a.iter().find_map(|x| match x {
        Action::Type {
            ticket: t, steps, ..
        } if *t == ticket => Some(steps.clone()),
        _ => None,
    })
}

#[test]
fn a_clock_behind_the_last_step_waits_before_typing_anything_and_says_so() {
    // The last code typed was an hour ahead of this clock (it was moved back since).
    let step_now = 1_795_507_205 / 30;
    let mut h = H::new(
        CoreConfig::default(),
        Persisted {
            last_totp_step: Some(step_now + 120),
            ..Persisted::default()
        },
    );
    let a = h.open_login_frame();
    assert!(h.typed().is_empty(), "nothing typed: {a:?}");
    assert!(h.sv.persisted().failed_logins.is_empty());
    assert_eq!(notices(&h, NoticeKind::ClockBehind), 1);
    let wait = h.sv.poll_timeout().expect("a bounded wait") - h.now.mono;
    assert!(wait <= Duration::from_secs(600), "{wait:?}");
    assert!(
        h.sv.reason().contains("clock moved back"),
        "{}",
        h.sv.reason()
    );
    // An hour later the clock has caught up: the login goes ahead, with a fresh step.
    let mut typed = false;
    for _ in 0..12 {
        let a = h.run_for(Duration::from_secs(600));
        if h.typed().iter().any(|(w, _)| *w == FRAME) {
            typed = true;
            let _ = a;
            break;
        }
    }
    assert!(typed, "the login resumes once the clock has caught up");
}

#[test]
fn a_gateway_serving_the_other_modes_accounts_is_closed_and_never_ready() {
    use crate::core::machine::mode_of_accounts;
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    assert_eq!(
        mode_of_accounts(&s(&["DU1", "DF2"])),
        Some(TradingMode::Paper)
    );
    assert_eq!(mode_of_accounts(&s(&["U1", "F2"])), Some(TradingMode::Live));
    assert_eq!(mode_of_accounts(&s(&["U1", "DU2"])), None);
    assert_eq!(mode_of_accounts(&[]), None);
    for (mode, served) in [
        (TradingMode::Live, "DU1234567"),
        (TradingMode::Paper, "U1234567"),
    ] {
        let mut h = H::new(
            CoreConfig {
                trading_mode: mode,
                ..CoreConfig::default()
            },
            Persisted::default(),
        );
        let a = h.open_login_frame();
        h.complete_typing(&a);
        h.input(Input::TitleChanged {
            id: FRAME,
            title: "IBKR Gateway".into(),
        });
        h.step(Duration::from_secs(1));
        let a = h.input(Input::Probe(ProbeOutcome::Up {
            server_version: 176,
            accounts: vec![served.into()],
            link_lost: false,
        }));
        assert!(!h.ready(), "{mode:?}");
        assert!(matches!(h.sv.phase(), Phase::Halted { .. }), "{mode:?}");
        assert!(a.contains(&Action::TerminateGateway), "{a:?}");
        assert!(a.iter().any(|x| matches!(
            x,
            Action::Notify {
                kind: NoticeKind::WrongTradingMode,
                severity: Severity::Critical,
                ..
            }
        )));
        assert!(
            !a.iter()
                .any(|x| matches!(x, Action::Status { ready: true, .. })),
            "{a:?}"
        );
        // The JVM goes; nothing is relaunched.
        let a = h.input(Input::Exited {
            code: Some(0),
            signal: None,
            hs_err: None,
        });
        assert!(
            !a.iter().any(|x| matches!(x, Action::Launch { .. })),
            "{a:?}"
        );
        assert!(matches!(h.sv.phase(), Phase::Halted { .. }));
    }
}
