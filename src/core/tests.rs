//! Deterministic tests of the core: virtual time, a scripted world, no IO.

use std::time::{Duration, Instant};

use super::dialog::Answer;
use super::*;

const FRAME: u32 = 0x400007;
const DIALOG: u32 = 0x400035;
const PID: u32 = 4242;

/// A harness in the style of quinn's test `Pair`: the machine, a clock, the actions so far.
struct H {
    sv: Supervisor,
    now: Now,
    log: Vec<Action>,
}

impl H {
    fn new(cfg: CoreConfig, persisted: Persisted) -> H {
        H {
            sv: Supervisor::new(cfg, persisted),
            // 2026-11-24 08:00:05 UTC: 25 s left in the current step.
            now: Now {
                mono: Instant::now(),
                unix_ms: 1_795_507_205_000,
            },
            log: Vec::new(),
        }
    }

    fn live() -> H {
        H::new(CoreConfig::default(), Persisted::default())
    }

    fn input(&mut self, input: Input) -> Vec<Action> {
        self.sv.handle(self.now, input);
        self.drain()
    }

    /// The actions so far; a display asked for comes up at once.
    fn drain(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(a) = self.sv.poll_action() {
            if a == Action::StartDisplay {
                self.sv.handle(self.now, Input::DisplayReady);
            }
            out.push(a);
        }
        self.log.extend(out.iter().cloned());
        out
    }

    /// Jump to the next deadline (if it is within `max`) and handle it.
    fn step(&mut self, max: Duration) -> Option<Vec<Action>> {
        let at = self.sv.poll_timeout()?;
        let dt = at.saturating_duration_since(self.now.mono);
        if dt > max {
            return None;
        }
        self.advance(dt);
        self.sv.handle_timeout(self.now);
        Some(self.drain())
    }

    /// Runs virtual time forward by up to `d`, handling every deadline on the way; probes
    /// are answered "down" (the API is not up yet) and keyboard actions complete.
    fn run_for(&mut self, d: Duration) -> Vec<Action> {
        let end = self.now.mono + d;
        let mut all = Vec::new();
        while let Some(at) = self.sv.poll_timeout() {
            if at > end {
                break;
            }
            let dt = at.saturating_duration_since(self.now.mono);
            self.advance(dt);
            self.sv.handle_timeout(self.now);
            let a = self.drain();
            self.complete_typing(&a);
            for x in &a {
                if *x == Action::Probe {
                    let b = self.input(Input::Probe(ProbeOutcome::Down {
                        reason: "refused".into(),
                    }));
                    all.extend(b);
                }
            }
            all.extend(a);
        }
        let rest = end.saturating_duration_since(self.now.mono);
        self.advance(rest);
        all
    }

    fn advance(&mut self, d: Duration) {
        self.now.mono += d;
        self.now.unix_ms += d.as_millis() as u64;
    }

    fn win(id: u32, title: &str, transient: bool) -> WindowInfo {
        WindowInfo {
            ancestry: Vec::new(),
            id,
            pid: Some(PID),
            title: title.into(),
            transient_for: transient.then_some(FRAME),
            x: 100,
            y: 100,
            width: 540,
            height: 300,
        }
    }

    fn map(&mut self, id: u32, title: &str) -> Vec<Action> {
        self.input(Input::Mapped(H::win(id, title, id != FRAME)))
    }

    /// Start, spawn, map the login frame; returns the credential-typing actions.
    fn open_login_frame(&mut self) -> Vec<Action> {
        let a = self.input(Input::Start);
        assert!(a.contains(&Action::Launch {
            use_restart_token: true
        }));
        self.input(Input::Spawned {
            pid: PID,
            with_token: false,
        });
        self.map(FRAME, "IBKR Gateway")
    }

    fn complete_typing(&mut self, actions: &[Action]) {
        for a in actions {
            if let Action::Type { ticket, .. } = a {
                self.input(Input::Typed {
                    ticket: *ticket,
                    result: TypeResult::Done,
                });
            }
        }
    }

    fn probe_up(&mut self) -> Vec<Action> {
        self.input(Input::Probe(ProbeOutcome::Up {
            server_version: 176,
            accounts: vec!["DU1234567".into()],
            link_lost: false,
        }))
    }

    fn typed(&self) -> Vec<(u32, Vec<KeyStep>)> {
        self.log
            .iter()
            .filter_map(|a| match a {
                Action::Type { window, steps, .. } => Some((*window, steps.clone())),
                _ => None,
            })
            .collect()
    }

    fn code_steps(&self) -> Vec<u64> {
        self.typed()
            .iter()
            .flat_map(|(_, s)| s.clone())
            .filter_map(|s| match s {
                KeyStep::Secret(SecretRef::TotpCode { step }) => Some(step),
                _ => None,
            })
            .collect()
    }

    fn ready(&self) -> bool {
        self.log
            .iter()
            .any(|a| matches!(a, Action::Status { ready: true, .. }))
    }
}

fn has_secret(steps: &[KeyStep], r: SecretRef) -> bool {
    steps.contains(&KeyStep::Secret(r))
}

#[test]
fn live_login_types_credentials_then_a_fresh_code_then_waits_for_the_api() {
    let mut h = H::live();
    let a = h.open_login_frame();
    // The attempt is persisted before any key is typed.
    let save = a.iter().position(|x| matches!(x, Action::SaveState(_)));
    let typ = a.iter().position(|x| matches!(x, Action::Type { .. }));
    assert!(save.expect("state saved") < typ.expect("credentials typed"));
    let (w, steps) = &h.typed()[0];
    assert_eq!(*w, FRAME);
    assert!(has_secret(steps, SecretRef::Username) && has_secret(steps, SecretRef::Password));
    assert_eq!(steps.last(), Some(&KeyStep::Key(NamedKey::Enter)));
    h.complete_typing(&a);

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
    h.map(DIALOG, "Login failed");
    assert!(matches!(h.sv.phase(), Phase::Halted { .. }));
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
    // Before login (ibc.md §1.7 scenarios 1-4).
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

#[test]
fn device_chooser_selects_the_configured_device_by_prefix() {
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
        text: Some("Select second factor device\nIB Key\nMobile Authenticator app\nOK".into()),
    });
    let Some(Action::Type { steps, .. }) = a.iter().find(|x| matches!(x, Action::Type { .. }))
    else {
        panic!("chooser not answered")
    };
    assert_eq!(steps[0], KeyStep::Text("Mobile".into()));
    h.input(Input::Destroyed(DIALOG));
    h.map(DIALOG + 1, "Second Factor Authentication");
    h.input(Input::WindowText {
        window: DIALOG + 1,
        text: Some("Enter Mobile Authenticator app code".into()),
    });
    assert_eq!(h.code_steps().len(), 1);
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

/// Reaches ready on a live login (credentials, the first code, the API).
fn to_ready(h: &mut H) {
    let a = h.open_login_frame();
    h.complete_typing(&a);
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

fn answers_in(a: &[Action], window: u32) -> Vec<Answer> {
    a.iter()
        .filter_map(|x| match x {
            Action::Type {
                window: w, steps, ..
            } if *w == window => {
                if steps == &Answer::Default.keys() {
                    Some(Answer::Default)
                } else if steps == &Answer::Second.keys() {
                    Some(Answer::Second)
                } else {
                    None
                }
            }
            _ => None,
        })
        .collect()
}

fn notices(h: &H, kind: NoticeKind) -> usize {
    h.log
        .iter()
        .filter(|a| matches!(a, Action::Notify { kind: k, .. } if *k == kind))
        .count()
}

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
        accounts: vec!["DU1234567".into()],
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
        crate::launcher_log::LauncherEvent::LoginCompleted,
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
        accounts: vec!["DU1234567".into()],
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
