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
    /// What a form check sees, answered at once (`None`: the test answers it).
    sees: Option<FormVerdict>,
    /// Where the form's parts are, in the answer.
    targets: FormTargets,
    /// The configured mode: what the fake probe's accounts belong to.
    mode: TradingMode,
}

impl H {
    fn new(cfg: CoreConfig, persisted: Persisted) -> H {
        H {
            mode: cfg.trading_mode,
            sv: Supervisor::new(cfg, persisted),
            // 2026-11-24 08:00:05 UTC: 25 s left in the current step.
            now: Now {
                mono: Instant::now(),
                unix_ms: 1_795_507_205_000,
            },
            log: Vec::new(),
            sees: Some(FormVerdict::Matches),
            targets: FormTargets {
                username: Some((300, 180)),
                password: Some((300, 210)),
                live: Some((250, 150)),
                paper: Some((370, 150)),
                code: Some((200, 120)),
                device: Some((150, 90)),
            },
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
            if let (Action::CheckForm { ticket, .. }, Some(verdict)) = (&a, &self.sees) {
                let checked = Input::FormChecked {
                    ticket: *ticket,
                    verdict: verdict.clone(),
                    targets: self.targets,
                };
                self.sv.handle(self.now, checked);
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

    /// Every keyboard action in `actions` completes, and so do those their completion brings
    /// (the `Log In` press after the form's fill).
    fn complete_typing(&mut self, actions: &[Action]) {
        for a in actions {
            if let Action::Type { ticket, .. } = a {
                let more = self.input(Input::Typed {
                    ticket: *ticket,
                    result: TypeResult::Done,
                });
                self.complete_typing(&more);
            }
        }
    }

    /// An account of the configured mode, as IBKR numbers them (paper `D…`).
    fn account(&self) -> String {
        match self.mode {
            TradingMode::Paper => "DU1234567".into(),
            TradingMode::Live => "U1234567".into(),
        }
    }

    fn probe_up(&mut self) -> Vec<Action> {
        self.input(Input::Probe(ProbeOutcome::Up {
            server_version: 176,
            accounts: vec![self.account()],
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

mod login_and_lifecycle;
mod seeing;
mod sessions_and_dialogs;
