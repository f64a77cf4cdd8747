//! Tests of the parent module.

use std::time::Instant;

use super::super::{CoreConfig, Input, Persisted, ProbeOutcome};
use super::*;

const FRAME: u32 = 0x500007;
const MAIN: u32 = 0x500099;
const DIALOG: u32 = 0x500035;
const PID: u32 = 777;

struct H {
    sv: Supervisor,
    now: Now,
}

impl H {
    fn new(mode: TradingMode, reader: bool) -> H {
        let cfg = CoreConfig {
            program: Program::Tws,
            trading_mode: mode,
            content_reader: reader,
            ..CoreConfig::default()
        };
        H {
            sv: Supervisor::new(cfg, Persisted::default()),
            // 08:00:05 UTC: 25 s left in the current TOTP step.
            now: Now {
                mono: Instant::now(),
                unix_ms: 1_795_507_205_000,
            },
        }
    }

    fn input(&mut self, i: Input) -> Vec<Action> {
        self.sv.handle(self.now, i);
        self.drain()
    }

    /// The actions so far; a display asked for comes up at once.
    fn drain(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(a) = self.sv.poll_action() {
            if a == Action::StartDisplay {
                self.sv.handle(self.now, Input::DisplayReady);
            }
            // The screen model sees the form as typed (its checks: src/core/tests).
            if let Action::CheckForm { ticket, .. } = &a {
                let checked = Input::FormChecked {
                    ticket: *ticket,
                    verdict: crate::core::FormVerdict::Matches,
                    targets: Default::default(),
                };
                self.sv.handle(self.now, checked);
            }
            out.push(a);
        }
        out
    }

    fn win(id: u32, title: &str) -> WindowInfo {
        WindowInfo {
            ancestry: Vec::new(),
            id,
            pid: Some(PID),
            title: title.into(),
            transient_for: (id == DIALOG).then_some(FRAME),
            x: 100,
            y: 100,
            width: 540,
            height: 360,
        }
    }

    fn map(&mut self, id: u32, title: &str) -> Vec<Action> {
        self.input(Input::Mapped(H::win(id, title)))
    }

    /// Advances virtual time by `d`, firing deadlines and answering reads with `text`;
    /// keys complete at once.
    fn run(&mut self, d: Duration, text: Option<&str>) -> Vec<Action> {
        let end = self.now.mono + d;
        let mut all = Vec::new();
        let mut queue = Vec::new();
        loop {
            while let Some(a) = queue.pop() {
                let more = self.react(&a, text);
                all.push(a);
                queue.extend(more.into_iter().rev());
            }
            let Some(at) = self.sv.poll_timeout() else {
                break;
            };
            if at > end {
                break;
            }
            let dt = at.saturating_duration_since(self.now.mono);
            self.now.mono += dt;
            self.now.unix_ms += dt.as_millis() as u64;
            self.sv.handle_timeout(self.now);
            queue.extend(self.drain().into_iter().rev());
        }
        let rest = end.saturating_duration_since(self.now.mono);
        self.now.mono += rest;
        self.now.unix_ms += rest.as_millis() as u64;
        all
    }

    fn react(&mut self, a: &Action, text: Option<&str>) -> Vec<Action> {
        match a {
            Action::Type { ticket, .. } => self.input(Input::Typed {
                ticket: *ticket,
                result: TypeResult::Done,
            }),
            Action::ReadText { window, .. } => self.input(Input::WindowText {
                window: *window,
                text: text.map(str::to_string),
            }),
            Action::Probe => self.input(Input::Probe(ProbeOutcome::Down {
                reason: "refused".into(),
            })),
            _ => Vec::new(),
        }
    }

    /// Start, spawn, map `Login`, complete the credential keys.
    fn logged_in_keys(&mut self) -> Vec<Action> {
        self.input(Input::Start);
        self.input(Input::Spawned {
            pid: PID,
            with_token: false,
        });
        let a = self.map(FRAME, "Login");
        let ticket = typed_into(&a, FRAME)
            .first()
            .map(|(t, _)| *t)
            .expect("credentials typed");
        // The fill, then the `Log In` press it brings.
        let a = self.input(Input::Typed {
            ticket,
            result: TypeResult::Done,
        });
        let commit = typed_into(&a, FRAME)
            .first()
            .map(|(t, _)| *t)
            .expect("Log In pressed after the fill");
        self.input(Input::Typed {
            ticket: commit,
            result: TypeResult::Done,
        })
    }
}

fn typed_into(actions: &[Action], window: u32) -> Vec<(u64, Vec<KeyStep>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Type {
                ticket,
                window: w,
                steps,
            } if *w == window => Some((*ticket, steps.clone())),
            _ => None,
        })
        .collect()
}

fn has_code(steps: &[KeyStep]) -> bool {
    steps
        .iter()
        .any(|s| matches!(s, KeyStep::Secret(SecretRef::TotpCode { .. })))
}

const LOGIN_TEXT: &str = "LOGIN\nAPI Type IB API FIX CTCI\nTrading Mode Live Trading Paper Trading\nUsername\nPassword\nLog In\nAuthenticating...";
const CODE_TEXT: &str =
    "SECOND FACTOR AUTHENTICATION\nEnter Mobile Authenticator app code\nOK Cancel";

#[test]
fn frame_text_classifies() {
    assert_eq!(classify_frame_text(LOGIN_TEXT), FrameContent::Login);
    assert_eq!(classify_frame_text(CODE_TEXT), FrameContent::CodeEntry);
    assert_eq!(
        classify_frame_text(
            "SECOND FACTOR AUTHENTICATION\nSelect second factor device\nIB Key\nMobile Authenticator app\nOK Cancel"
        ),
        FrameContent::DeviceChooser
    );
    assert_eq!(
        classify_frame_text(
            "SECOND FACTOR AUTHENTICATION\nA notification has been sent to your IB Key device. Please approve it.\nCancel"
        ),
        FrameContent::IbKeyPush
    );
    assert_eq!(
        classify_frame_text("SECOND FACTOR AUTHENTICATI0N"),
        FrameContent::SecondFactor
    );
    assert_eq!(classify_frame_text("~~ ::"), FrameContent::Other);
}

/// What a key sequence does to a window with `stops` focus stops in a cycle, starting
/// at `start`: the stop where `Space` lands and whether `Enter` was pressed.
fn walk(stops: u32, start: u32, keys: &[KeyStep]) -> (u32, bool) {
    let mut at = start;
    let mut enter = false;
    let mut space_at = u32::MAX;
    for k in keys {
        match k {
            KeyStep::Key(NamedKey::Tab) => at = (at + 1) % stops,
            KeyStep::Key(NamedKey::ShiftTab) => at = (at + stops - 1) % stops,
            KeyStep::Key(NamedKey::Enter) => enter = true,
            KeyStep::Key(NamedKey::Space) => space_at = at,
            _ => {}
        }
    }
    (space_at, enter)
}

#[test]
fn fallback_keys_press_ok_in_the_code_entry_and_nothing_in_the_login_panel() {
    let keys = fallback_code_keys(42);
    assert_eq!(FALLBACK_TABS, 7);
    // Code entry: code field (0) → OK (1) → Cancel (2).
    assert_eq!(walk(CODE_ENTRY_STOPS, 0, &keys), (1, false));
    // Login panel: IB API, FIX, Live, Paper, username (4), password (5), Log In (6). From
    // either text field the Space lands back in that field: no button is pressed.
    for field in [4, 5] {
        assert_eq!(walk(LOGIN_PANEL_STOPS, field, &keys), (field, false));
    }
    // The code is typed exactly once, before the Tabs.
    let codes = keys
        .iter()
        .filter(|k| matches!(k, KeyStep::Secret(_)))
        .count();
    assert_eq!(codes, 1);
    assert!(keys
        .iter()
        .all(|k| !matches!(k, KeyStep::Secret(SecretRef::Password))));
}

#[test]
fn titles_only_types_the_safe_keys_once_the_frame_is_alone() {
    let mut h = H::new(TradingMode::Live, false);
    h.logged_in_keys();
    // Nothing before the settle time.
    let early = h.run(FALLBACK_SETTLE - Duration::from_millis(300), None);
    assert!(typed_into(&early, FRAME).is_empty(), "{early:?}");
    let a = h.run(Duration::from_secs(1), None);
    let typed = typed_into(&a, FRAME);
    assert_eq!(typed.len(), 1, "{a:?}");
    assert_eq!(
        typed[0].1,
        fallback_code_keys(
            typed[0]
                .1
                .iter()
                .find_map(|k| match k {
                    KeyStep::Secret(SecretRef::TotpCode { step }) => Some(*step),
                    _ => None,
                })
                .expect("a code")
        )
    );
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::SaveState(p) if p.last_totp_step.is_some())));
    // The main window ends the watch; no further code.
    h.map(MAIN, "DU1234567 Interactive Brokers");
    let later = h.run(FALLBACK_RETRY * 2, None);
    assert!(typed_into(&later, FRAME).is_empty());
    assert_eq!(h.sv.phase(), &Phase::AwaitApi);
}

#[test]
fn titles_only_waits_for_a_fresh_step_during_the_settle_time() {
    let mut h = H::new(TradingMode::Live, false);
    // 7 s left in the step: under `min_code_validity` (8 s), so the next step's code.
    h.now.unix_ms = 1_795_507_223_000;
    h.logged_in_keys();
    let early = h.run(Duration::from_millis(6_800), None);
    assert!(typed_into(&early, FRAME).is_empty(), "{early:?}");
    let a = h.run(Duration::from_millis(600), None);
    let typed = typed_into(&a, FRAME);
    assert_eq!(typed.len(), 1, "the wait overlaps the settle time: {a:?}");
    assert!(typed[0]
        .1
        .contains(&KeyStep::Secret(SecretRef::TotpCode { step: 59_850_241 })));
}

#[test]
fn titles_only_never_types_a_code_while_a_dialog_is_open() {
    let mut h = H::new(TradingMode::Live, false);
    h.logged_in_keys();
    h.run(Duration::from_millis(500), None);
    // A `Gateway` dialog (left open: its OK may cancel the login): no code, ever.
    h.input(Input::Mapped(WindowInfo {
        transient_for: Some(FRAME),
        ..H::win(DIALOG, "Gateway")
    }));
    assert_eq!(h.sv.phase(), &Phase::LoggingIn);
    let a = h.run(Duration::from_secs(60), None);
    assert!(
        a.iter()
            .all(|x| !matches!(x, Action::Type { steps, .. } if has_code(steps))),
        "{a:?}"
    );
}

#[test]
fn titles_only_waits_while_the_frame_shows_a_progress_title() {
    let mut h = H::new(TradingMode::Live, false);
    h.logged_in_keys();
    h.input(Input::TitleChanged {
        id: FRAME,
        title: "Authenticating...".into(),
    });
    let a = h.run(FALLBACK_SETTLE * 3, None);
    assert!(typed_into(&a, FRAME).is_empty(), "{a:?}");
    h.input(Input::TitleChanged {
        id: FRAME,
        title: "Login".into(),
    });
    let soon = h.run(FALLBACK_SETTLE - Duration::from_millis(500), None);
    assert!(typed_into(&soon, FRAME).is_empty(), "{soon:?}");
    let a = h.run(Duration::from_secs(1), None);
    assert_eq!(typed_into(&a, FRAME).len(), 1, "{a:?}");
}

#[test]
fn titles_only_waits_after_a_dialog_goes_away() {
    let mut h = H::new(TradingMode::Live, false);
    h.logged_in_keys();
    h.run(Duration::from_secs(1), None);
    let a = h.input(Input::Mapped(WindowInfo {
        transient_for: Some(FRAME),
        ..H::win(DIALOG, "Existing session detected")
    }));
    assert_eq!(typed_into(&a, DIALOG).len(), 1, "continue login: {a:?}");
    h.run(Duration::from_secs(6), None);
    h.input(Input::Destroyed(DIALOG));
    let soon = h.run(FALLBACK_SETTLE - Duration::from_millis(500), None);
    assert!(typed_into(&soon, FRAME).is_empty(), "{soon:?}");
    let a = h.run(Duration::from_secs(1), None);
    assert_eq!(typed_into(&a, FRAME).len(), 1, "{a:?}");
}

#[test]
fn titles_only_retries_once_then_leaves_it_to_the_deadline() {
    let mut h = H::new(TradingMode::Live, false);
    h.logged_in_keys();
    let a = h.run(FALLBACK_SETTLE + FALLBACK_RETRY * 4, None);
    let codes: Vec<_> = typed_into(&a, FRAME)
        .into_iter()
        .filter(|(_, s)| has_code(s))
        .collect();
    assert_eq!(codes.len() as u32, FALLBACK_MAX_CODES, "{a:?}");
}

#[test]
fn reader_types_the_code_when_the_frame_shows_the_code_entry() {
    let mut h = H::new(TradingMode::Live, true);
    h.logged_in_keys();
    // While the frame shows the login panel: reads, no keys.
    let a = h.run(Duration::from_secs(5), Some(LOGIN_TEXT));
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::ReadText { window, .. } if *window == FRAME)));
    assert!(typed_into(&a, FRAME).is_empty(), "{a:?}");
    let a = h.run(Duration::from_secs(2), Some(CODE_TEXT));
    // The code, a look at the field (the harness sees it right), then OK.
    let typed = typed_into(&a, FRAME);
    assert_eq!(typed.len(), 2, "{a:?}");
    assert!(has_code(&typed[0].1));
    assert!(!typed[0].1.contains(&KeyStep::Key(NamedKey::Enter)));
    assert!(a.iter().any(|x| matches!(x, Action::CheckForm { .. })));
    assert_eq!(typed[1].1.last(), Some(&KeyStep::Key(NamedKey::Enter)));
    // The frame still shows the code entry for a moment: not a rejection.
    let a = h.run(CODE_SETTLE - Duration::from_millis(800), Some(CODE_TEXT));
    assert!(typed_into(&a, FRAME).is_empty(), "{a:?}");
}

#[test]
fn reader_that_cannot_read_hands_over_to_the_fallback() {
    let mut h = H::new(TradingMode::Live, true);
    h.logged_in_keys();
    let a = h.run(FALLBACK_SETTLE + Duration::from_secs(3), None);
    let typed = typed_into(&a, FRAME);
    assert_eq!(typed.len(), 1, "{a:?}");
    assert_eq!(typed[0].1.last(), Some(&KeyStep::Key(NamedKey::Space)));
}

#[test]
fn paper_login_types_no_code() {
    let mut h = H::new(TradingMode::Paper, false);
    h.logged_in_keys();
    let a = h.run(Duration::from_secs(60), None);
    assert!(
        a.iter()
            .all(|x| !matches!(x, Action::Type { steps, .. } if has_code(steps))),
        "{a:?}"
    );
}

#[test]
fn stop_closes_the_main_window_and_confirms_the_exit() {
    let mut h = H::new(TradingMode::Paper, false);
    h.logged_in_keys();
    h.map(MAIN, "DU1234567 Interactive Brokers (Simulated Trading)");
    h.input(Input::Destroyed(FRAME));
    h.input(Input::Probe(ProbeOutcome::Up {
        server_version: 176,
        accounts: vec!["DU1234567".into()],
        link_lost: false,
    }));
    assert_eq!(h.sv.phase(), &Phase::Ready);
    let a = h.input(Input::Stop);
    assert!(
        a.contains(&Action::CloseGateway { main_window: MAIN }),
        "{a:?}"
    );
    let a = h.input(Input::Mapped(WindowInfo {
        transient_for: Some(MAIN),
        ..H::win(DIALOG, "Are you sure you want to exit?")
    }));
    assert_eq!(typed_into(&a, DIALOG).len(), 1, "Yes: {a:?}");
    // Not asked by us: left alone.
    let mut h = H::new(TradingMode::Paper, false);
    h.logged_in_keys();
    h.map(MAIN, "DU1234567 Interactive Brokers (Simulated Trading)");
    let a = h.input(Input::Mapped(WindowInfo {
        transient_for: Some(MAIN),
        ..H::win(DIALOG, "Are you sure you want to exit?")
    }));
    assert!(typed_into(&a, DIALOG).is_empty(), "{a:?}");
}

#[test]
fn relogin_frame_is_not_typed_into_but_relaunched() {
    let mut h = H::new(TradingMode::Paper, false);
    h.logged_in_keys();
    h.map(MAIN, "DU1234567 Interactive Brokers (Simulated Trading)");
    h.input(Input::Destroyed(FRAME));
    h.input(Input::Probe(ProbeOutcome::Up {
        server_version: 176,
        accounts: vec!["DU1234567".into()],
        link_lost: false,
    }));
    h.input(Input::Mapped(WindowInfo {
        transient_for: Some(MAIN),
        ..H::win(DIALOG, "Re-login is required")
    }));
    h.input(Input::Destroyed(DIALOG));
    h.input(Input::Destroyed(MAIN));
    let a = h.map(FRAME + 1, "Login");
    assert!(typed_into(&a, FRAME + 1).is_empty(), "{a:?}");
    assert!(
        a.contains(&Action::CloseGateway {
            main_window: FRAME + 1
        }),
        "{a:?}"
    );
    assert!(matches!(h.sv.phase(), Phase::Restarting { .. }));
    let a = h.input(Input::Exited {
        code: Some(0),
        signal: None,
        hs_err: None,
    });
    assert!(a.iter().any(|x| matches!(x, Action::Status { .. })));
    let a = h.run(Duration::from_secs(10), None);
    assert!(
        a.contains(&Action::Launch {
            use_restart_token: false
        }),
        "a full login: {a:?}"
    );
}

#[test]
fn tws_dialogs_have_safe_policies() {
    let mut h = H::new(TradingMode::Paper, false);
    h.logged_in_keys();
    h.map(MAIN, "DU1234567 Interactive Brokers (Simulated Trading)");
    let a = h.input(Input::Mapped(WindowInfo {
        transient_for: Some(MAIN),
        ..H::win(DIALOG, "Bid, Ask and Last Size Display Update")
    }));
    assert_eq!(typed_into(&a, DIALOG).len(), 1, "{a:?}");
    let a = h.input(Input::Mapped(WindowInfo {
        transient_for: Some(MAIN),
        ..H::win(
            DIALOG + 1,
            "API client needs write access action confirmation",
        )
    }));
    assert!(typed_into(&a, DIALOG + 1).is_empty(), "{a:?}");
    assert!(a.iter().any(|x| matches!(x, Action::Notify { .. })));
}
