//! Competing sessions, the ping-pong guard, silent drops, IB Key and dialogs by text.

use super::*;

#[test]
fn session_ping_pong_backs_off_and_tells_the_person_once() {
    let mut h = H::live();
    to_ready(&mut h);
    // Another session keeps taking ours: every `Re-login is required` is a takeover.
    let mut deferred_at = None;
    for i in 0..8u32 {
        let id = DIALOG + i;
        let a = h.map(id, "Re-login is required");
        let answered = !answers_in(&a, id).is_empty();
        h.complete_typing(&a);
        if !answered {
            deferred_at = Some(i);
            break;
        }
        assert_eq!(h.sv.phase(), &Phase::AwaitApi);
        h.input(Input::Destroyed(id));
        // The re-login completes and the API is back before the next takeover.
        h.run_for(Duration::from_secs(20));
        h.probe_up();
        assert_eq!(h.sv.phase(), &Phase::Ready);
    }
    // The fifth takeover within 5 minutes is held back, with one notice.
    assert_eq!(deferred_at, Some(4));
    assert!(matches!(h.sv.phase(), Phase::Backoff { .. }));
    assert_eq!(notices(&h, NoticeKind::SessionConflict), 1);
    let held = DIALOG + 4;
    let a = h.run_for(Duration::from_secs(599));
    assert!(
        answers_in(&a, held).is_empty(),
        "not answered during the back-off"
    );
    assert!(!a.contains(&Action::Probe), "no probing while held back");
    let a = h.run_for(Duration::from_secs(2));
    assert_eq!(answers_in(&a, held), vec![Answer::Default]);
    assert_eq!(h.sv.phase(), &Phase::AwaitApi);
    // Probing resumes, so the re-login can reach ready.
    let a = h.step(Duration::from_secs(2)).expect("a probe is due");
    assert!(a.contains(&Action::Probe));
    h.input(Input::Destroyed(held));
    h.probe_up();
    // The other side keeps at it: the guard trips again after as many takeovers (taking it
    // back counted), without a second notice.
    let mut answered = 0;
    for i in 20..30u32 {
        let a = h.map(DIALOG + i, "Re-login is required");
        if answers_in(&a, DIALOG + i).is_empty() {
            break;
        }
        answered += 1;
        h.complete_typing(&a);
        h.input(Input::Destroyed(DIALOG + i));
        h.run_for(Duration::from_secs(20));
        h.probe_up();
    }
    assert_eq!(answered, 3);
    assert!(matches!(h.sv.phase(), Phase::Backoff { .. }));
    assert_eq!(notices(&h, NoticeKind::SessionConflict), 1);
}

#[test]
fn existing_session_after_a_relogin_uses_the_logged_in_rules() {
    use SessionPolicy::*;
    for (policy, want) in [
        (Primary, Some(Answer::Default)),
        (PrimaryOverride, Some(Answer::Second)),
        (Secondary, Some(Answer::Second)),
        (Manual, None),
    ] {
        let mut h = H::new(
            CoreConfig {
                existing_session: policy,
                ..CoreConfig::default()
            },
            Persisted::default(),
        );
        to_ready(&mut h);
        let a = h.map(DIALOG, "Re-login is required");
        assert_eq!(answers_in(&a, DIALOG), vec![Answer::Default]);
        h.complete_typing(&a);
        h.input(Input::Destroyed(DIALOG));
        // The re-login meets the other session.
        let a = h.map(DIALOG + 1, "Existing session detected");
        assert_eq!(
            answers_in(&a, DIALOG + 1).first().copied(),
            want,
            "{policy:?}"
        );
        match policy {
            Primary => assert_eq!(h.sv.phase(), &Phase::AwaitApi),
            PrimaryOverride | Secondary => assert!(matches!(h.sv.phase(), Phase::Halted { .. })),
            Manual => {
                assert_eq!(notices(&h, NoticeKind::SessionConflict), 1);
                // Nothing else happens while the person decides: no relaunch, no typing.
                let a = h.run_for(Duration::from_secs(3600));
                assert!(!a
                    .iter()
                    .any(|x| matches!(x, Action::Launch { .. } | Action::CloseGateway { .. })));
                assert!(answers_in(&a, DIALOG + 1).is_empty());
            }
        }
    }
}

#[test]
fn handoff_confirms_the_choice_made_at_the_existing_session_dialog() {
    use SessionPolicy::*;
    for (policy, want) in [
        (Primary, vec![Answer::Default, Answer::Default]),
        (PrimaryOverride, vec![Answer::Default, Answer::Default]),
    ] {
        let mut h = H::new(
            CoreConfig {
                existing_session: policy,
                ..CoreConfig::default()
            },
            Persisted::default(),
        );
        let a = h.open_login_frame();
        h.complete_typing(&a);
        let a = h.map(DIALOG, "Existing session detected");
        let mut got = answers_in(&a, DIALOG);
        h.input(Input::Destroyed(DIALOG));
        let a = h.map(DIALOG + 1, "Trading Login Handoff");
        got.extend(answers_in(&a, DIALOG + 1));
        assert_eq!(got, want, "{policy:?}");
        assert_eq!(h.sv.phase(), &Phase::LoggingIn);
    }
    // A handoff nobody chose to continue into is declined.
    let mut h = H::new(
        CoreConfig {
            existing_session: PrimaryOverride,
            ..CoreConfig::default()
        },
        Persisted::default(),
    );
    let a = h.open_login_frame();
    h.complete_typing(&a);
    let a = h.map(DIALOG, "Trading Login Handoff");
    assert_eq!(answers_in(&a, DIALOG), vec![Answer::Second]);
    assert!(matches!(h.sv.phase(), Phase::Halted { .. }));
}

#[test]
fn a_primary_yields_when_the_dialog_comes_back_after_a_relogin_in_the_same_jvm() {
    // IBC's scenario 4 counts per run, not per attempt: the second dialog in this JVM means
    // the other session is a primary that took it back.
    let mut h = H::live();
    let a = h.open_login_frame();
    h.complete_typing(&a);
    let a = h.map(DIALOG, "Existing session detected");
    assert_eq!(answers_in(&a, DIALOG), vec![Answer::Default]);
    h.input(Input::Destroyed(DIALOG));
    // The other session takes it back; the login window returns; a re-login follows.
    h.input(Input::TitleChanged {
        id: FRAME,
        title: "Authenticating...".into(),
    });
    h.input(Input::TitleChanged {
        id: FRAME,
        title: "IBKR Gateway".into(),
    });
    let a = h.run_for(Duration::from_secs(61));
    h.complete_typing(&a);
    let a = h.map(DIALOG + 1, "Existing session detected");
    assert_eq!(answers_in(&a, DIALOG + 1), vec![Answer::Second]);
    assert!(matches!(h.sv.phase(), Phase::Halted { .. }));
}

#[test]
fn ib_key_push_is_never_typed_into_and_the_person_is_told() {
    let mut h = H::new(
        CoreConfig {
            content_reader: true,
            ..CoreConfig::default()
        },
        Persisted::default(),
    );
    let a = h.open_login_frame();
    h.complete_typing(&a);
    h.map(DIALOG, "Second Factor Authentication");
    let a = h.input(Input::WindowText {
        window: DIALOG,
        text: Some(
            "A notification has been sent to your IB Key device. Please approve it to complete \
             the login.\nCancel"
                .into(),
        ),
    });
    // Configured for the authenticator app, but IBKR chose the push: no code, a notice.
    assert!(answers_in(&a, DIALOG).is_empty());
    assert!(h.code_steps().is_empty());
    assert_eq!(notices(&h, NoticeKind::HumanApproval), 1);
}

#[test]
fn logins_dropped_without_an_error_do_not_spend_the_budget_but_follow_the_ladder() {
    // IBKR never rejected the credentials (a silent drop): the failed-login budget is for
    // rejected credentials, and the growing ladder bounds these re-logins.
    let mut h = H::new(
        CoreConfig {
            max_failed_logins_per_hour: 2,
            ..CoreConfig::default()
        },
        Persisted::default(),
    );
    let a = h.open_login_frame();
    h.complete_typing(&a);
    let creds = |h: &H| {
        h.typed()
            .iter()
            .filter(|(_, s)| has_secret(s, SecretRef::Password))
            .count()
    };
    for (i, wait) in [60u64, 120, 240].into_iter().enumerate() {
        h.input(Input::TitleChanged {
            id: FRAME,
            title: "Authenticating...".into(),
        });
        h.input(Input::TitleChanged {
            id: FRAME,
            title: "IBKR Gateway".into(),
        });
        assert!(h.sv.persisted().failed_logins.is_empty());
        let a = h.run_for(Duration::from_secs(wait - 1));
        h.complete_typing(&a);
        assert_eq!(creds(&h), i + 1, "no re-login before {wait} s");
        let a = h.run_for(Duration::from_secs(2));
        h.complete_typing(&a);
        assert_eq!(creds(&h), i + 2, "re-login after {wait} s");
    }
    assert_eq!(
        h.sv.login_budget_left(h.now),
        1,
        "only the attempt in flight counts"
    );
}

#[test]
fn a_login_dropped_again_and_again_stops_and_asks_a_person() {
    let mut h = H::live();
    let a = h.open_login_frame();
    h.complete_typing(&a);
    // The ladder: 60, 120, 240, 480, then 600 s; the ninth drop in a row halts.
    for wait in [60u64, 120, 240, 480, 600, 600, 600, 600, 0] {
        h.input(Input::TitleChanged {
            id: FRAME,
            title: "Authenticating...".into(),
        });
        h.input(Input::TitleChanged {
            id: FRAME,
            title: "IBKR Gateway".into(),
        });
        if wait > 0 {
            let a = h.run_for(Duration::from_secs(wait + 1));
            h.complete_typing(&a);
        }
    }
    assert!(matches!(h.sv.phase(), Phase::Halted { .. }));
    assert!(notices(&h, NoticeKind::RestartLoop) >= 1);
}

#[test]
fn a_probe_with_the_ib_link_down_is_not_ready() {
    let mut h = H::live();
    to_ready(&mut h);
    let a = h.map(DIALOG, "Re-login is required");
    h.complete_typing(&a);
    assert_eq!(h.sv.phase(), &Phase::AwaitApi);
    h.step(Duration::from_secs(2));
    h.input(Input::Probe(ProbeOutcome::Up {
        server_version: 176,
        accounts: vec![h.account()],
        link_lost: true,
    }));
    assert_eq!(h.sv.phase(), &Phase::AwaitApi);
}

#[test]
fn titles_only_gives_the_safest_answer_to_every_ambiguous_dialog() {
    // content_reader = "none": no text ever arrives.
    let live = || {
        let mut h = H::live();
        let a = h.open_login_frame();
        h.complete_typing(&a);
        h
    };
    // `Gateway`: connection failed, token expired, or the progress modal whose OK cancels
    // the login. Left alone, no read requested.
    let mut h = live();
    let a = h.map(DIALOG, "Gateway");
    assert!(answers_in(&a, DIALOG).is_empty());
    assert!(!a
        .iter()
        .any(|x| matches!(x, Action::ReadText { window, .. } if *window == DIALOG)));
    // `Warning` in live mode is not the paper notice: screenshot, notice, left alone.
    let mut h = live();
    let a = h.map(DIALOG, "Warning");
    assert!(answers_in(&a, DIALOG).is_empty());
    assert_eq!(notices(&h, NoticeKind::UnknownDialog), 1);
    // `Login failed` without its text: bad credentials until proven otherwise (stop).
    let mut h = live();
    h.map(DIALOG, "Login failed");
    assert!(matches!(h.sv.phase(), Phase::Halted { .. }));
    // `Second Factor Authentication` without text: the configured device decides. For the
    // authenticator app that is a code (one code per step, bounded by the rejection limit);
    // for IB Key, nothing is typed.
    let mut h = live();
    h.map(DIALOG, "Second Factor Authentication");
    assert_eq!(h.code_steps().len(), 1);
    let mut h = H::new(
        CoreConfig {
            second_factor: crate::core::SecondFactor::IbKey,
            ..CoreConfig::default()
        },
        Persisted::default(),
    );
    let a = h.open_login_frame();
    h.complete_typing(&a);
    let a = h.map(DIALOG, "Second Factor Authentication");
    assert!(answers_in(&a, DIALOG).is_empty());
    assert!(h.code_steps().is_empty());
    assert_eq!(notices(&h, NoticeKind::HumanApproval), 1);
}

#[test]
fn stub_windows_are_ignored_but_any_real_unknown_window_is_reported() {
    let mut h = H::live();
    let a = h.open_login_frame();
    h.complete_typing(&a);
    let mut stub = H::win(DIALOG, "", false);
    stub.width = 1;
    stub.height = 1;
    let a = h.input(Input::Mapped(stub));
    assert!(a.is_empty(), "{a:?}");
    let a = h.map(DIALOG + 1, "");
    assert!(a.iter().any(|x| matches!(
        x,
        Action::Notify {
            kind: NoticeKind::UnknownDialog,
            ..
        }
    )));
}

#[test]
fn a_held_back_dialog_that_goes_away_does_not_leave_the_machine_waiting() {
    let mut h = H::new(
        CoreConfig {
            pingpong_max: 1,
            ..CoreConfig::default()
        },
        Persisted::default(),
    );
    to_ready(&mut h);
    let a = h.map(DIALOG, "Re-login is required");
    assert!(answers_in(&a, DIALOG).is_empty(), "held back");
    assert!(matches!(h.sv.phase(), Phase::Backoff { .. }));
    h.input(Input::Destroyed(DIALOG));
    h.run_for(Duration::from_secs(601));
    // Back to watching the API; if it stays down, the login deadline restarts the gateway.
    assert_eq!(h.sv.phase(), &Phase::AwaitApi);
    let a = h.run_for(Duration::from_secs(200));
    assert!(a.iter().any(|x| matches!(x, Action::CloseGateway { .. })));
}

#[test]
fn ib_key_pushes_the_gateway_times_out_stay_within_the_hourly_budget() {
    // Each unapproved push is a prompt on the person's phone: those attempts spend the
    // failed-login budget, so at most `max_failed_logins_per_hour` pushes per hour.
    let mut h = H::new(
        CoreConfig {
            max_failed_logins_per_hour: 2,
            second_factor: crate::core::SecondFactor::IbKey,
            ..CoreConfig::default()
        },
        Persisted::default(),
    );
    let a = h.open_login_frame();
    h.complete_typing(&a);
    let creds = |h: &H| {
        h.typed()
            .iter()
            .filter(|(_, s)| has_secret(s, SecretRef::Password))
            .count()
    };
    for round in 0..4u32 {
        if creds(&h) <= round as usize {
            // No login was submitted this round (the budget holds it back): no push either.
            h.run_for(Duration::from_secs(130));
            continue;
        }
        h.input(Input::TitleChanged {
            id: FRAME,
            title: "Authenticating...".into(),
        });
        h.map(DIALOG + round, "Second Factor Authentication");
        // The gateway's own 2FA timeout: back at the login window.
        h.input(Input::Destroyed(DIALOG + round));
        h.input(Input::TitleChanged {
            id: FRAME,
            title: "IBKR Gateway".into(),
        });
        let a = h.run_for(Duration::from_secs(130));
        h.complete_typing(&a);
    }
    assert_eq!(
        creds(&h),
        2,
        "two pushes, then the budget waits for the hour"
    );
    assert_eq!(notices(&h, NoticeKind::HumanApproval), 2);
    assert!(notices(&h, NoticeKind::LockoutGuard) >= 1);
    assert!(matches!(h.sv.phase(), Phase::Backoff { .. }));
}

#[test]
fn a_missed_starting_application_title_is_still_a_completed_login() {
    // The frame went `Initializing environment...` -> main window so fast that the watcher
    // never saw `Starting application...`: that is success, not a reset.
    let mut h = H::live();
    let a = h.open_login_frame();
    h.complete_typing(&a);
    for t in [
        "Authenticating...",
        "Initializing environment...",
        "IBKR Gateway",
    ] {
        h.input(Input::TitleChanged {
            id: FRAME,
            title: t.into(),
        });
    }
    assert_eq!(h.sv.phase(), &Phase::AwaitApi);
    h.step(Duration::from_secs(1));
    h.probe_up();
    assert!(h.ready());
}

#[test]
fn launcher_log_login_completed_means_await_the_api() {
    let mut h = H::live();
    let a = h.open_login_frame();
    h.complete_typing(&a);
    h.input(Input::TitleChanged {
        id: FRAME,
        title: "Authenticating...".into(),
    });
    h.input(Input::GatewayLog(
        crate::core::LauncherEvent::LoginCompleted,
    ));
    assert_eq!(h.sv.phase(), &Phase::AwaitApi);
    // The title that follows is not read as a return to the login window.
    h.input(Input::TitleChanged {
        id: FRAME,
        title: "IBKR Gateway".into(),
    });
    assert_eq!(h.sv.phase(), &Phase::AwaitApi);
}

#[test]
fn a_rejected_password_is_never_typed_again_until_a_person_restarts() {
    let mut h = H::live();
    let a = h.open_login_frame();
    h.complete_typing(&a);
    h.map(DIALOG, "Login failed");
    assert!(matches!(h.sv.phase(), Phase::Halted { .. }));
    let saved = h.sv.persisted().clone();
    assert!(saved.credentials_rejected.is_some(), "persisted");
    // A new run of ibwarden (restart, reboot) with that state types nothing.
    let mut h2 = H::new(CoreConfig::default(), saved);
    h2.open_login_frame();
    assert!(matches!(h2.sv.phase(), Phase::Halted { .. }));
    assert!(
        h2.typed().is_empty(),
        "nothing typed after an earlier rejection"
    );
    // `ibwarden restart` (a person fixed the secret) clears it and logs in again.
    h2.input(Input::Restart);
    assert!(h2.sv.persisted().credentials_rejected.is_none());
}

#[test]
fn ib_link_loss_is_reported_not_ready_and_ready_again_when_it_returns() {
    let mut h = H::live();
    to_ready(&mut h);
    let a = h.step(Duration::from_secs(31)).expect("probe due");
    assert!(a.contains(&Action::Probe));
    let a = h.input(Input::Probe(ProbeOutcome::Up {
        server_version: 176,
        accounts: vec![h.account()],
        link_lost: true,
    }));
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::Status { ready: false, text, .. } if text.contains("1100"))));
    assert_eq!(h.sv.phase(), &Phase::Ready);
    let a = h.step(Duration::from_secs(11)).expect("probe again soon");
    assert!(a.contains(&Action::Probe));
    let a = h.probe_up();
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::Status { ready: true, .. })));
}

/// A reader-equipped harness with the login submitted (the frame shows progress).
fn submitted_with_reader() -> H {
    let cfg = CoreConfig {
        content_reader: true,
        ..CoreConfig::default()
    };
    let mut h = H::new(cfg, Persisted::default());
    let a = h.open_login_frame();
    h.complete_typing(&a);
    h
}

#[test]
fn a_passkey_dialog_stops_logins_after_one_attempt() {
    let mut h = submitted_with_reader();
    h.map(DIALOG, "Gateway");
    let a = h.input(Input::WindowText {
        window: DIALOG,
        text: Some("Connection to server failed: Required Passkey is not".into()),
    });
    assert!(
        matches!(h.sv.phase(), Phase::Halted { .. }),
        "{:?}",
        h.sv.phase()
    );
    assert!(a.iter().any(|x| matches!(
        x,
        Action::Notify {
            kind: NoticeKind::HumanStep,
            ..
        }
    )));
    // Not a connection failure: no relaunch, and nothing more is typed into the frame.
    assert!(
        !a.iter().any(|x| matches!(x, Action::CloseGateway { .. })),
        "{a:?}"
    );
    let later = h.run_for(Duration::from_secs(600));
    assert!(
        !later
            .iter()
            .any(|x| matches!(x, Action::Type { window: FRAME, .. })
                || matches!(x, Action::Launch { .. })),
        "{later:?}"
    );
}

#[test]
fn login_messages_are_resumed_once_then_left_to_a_person() {
    let mut h = submitted_with_reader();
    let a = h.map(DIALOG, "Login Messages");
    assert_eq!(answers_in(&a, DIALOG), [Answer::Default]);
    h.input(Input::Destroyed(DIALOG));
    let b = h.map(DIALOG + 1, "Login Messages");
    assert!(answers_in(&b, DIALOG + 1).is_empty(), "{b:?}");
    assert!(b.iter().any(|x| matches!(
        x,
        Action::Notify {
            kind: NoticeKind::HumanStep,
            ..
        }
    )));
}

#[test]
fn an_expired_password_during_a_login_stops_logins() {
    let mut h = submitted_with_reader();
    h.map(DIALOG, "Password Notice");
    h.input(Input::WindowText {
        window: DIALOG,
        text: Some("Your password has expired. Please change it in Client Portal.".into()),
    });
    assert!(
        matches!(h.sv.phase(), Phase::Halted { .. }),
        "{:?}",
        h.sv.phase()
    );
}
