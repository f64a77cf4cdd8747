//! The real driver loop (`ibwarden::driver::drive`) and the real core, against a `FakeWorld`
//! under paused tokio time: a fake display, a fake gateway JVM (windows, exits, API), a fake
//! probe and a fake clock. It covers the lifecycle scenarios that need no X11 or Java, only
//! time: ready, a live code, crash, hang, nightly restart, maintenance, reload, stop
//! escalation, double signal and a state that cannot be saved. Virtual hours pass in
//! milliseconds; the end-to-end suites keep what needs the real X server and JVM.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ibwarden::control::{ControlReply, ControlRequest};
use ibwarden::core::schedule::{Schedule, WeekdayTime};
use ibwarden::core::{
    Action, CoreConfig, FormTargets, FormVerdict, Input, KeyStep, NamedKey, Now, Persisted,
    ProbeOutcome, SecretRef, Supervisor, TradingMode, TypeResult, WindowInfo,
};
use ibwarden::driver::{drive, Event, World};
use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;

/// What the fake gateway does; a test flips these while the loop runs.
#[derive(Debug, Default)]
struct Knobs {
    /// The JVM is frozen (SIGSTOP): the API does not answer, close and SIGTERM do nothing.
    hung: bool,
    /// A logged-in gateway that never finishes logging out after its window is closed.
    ignore_close: bool,
    /// The gateway's auto-restart token is accepted on a relaunch.
    token_valid: bool,
    /// Saving state fails (a full or read-only disk).
    disk_full: bool,
    /// The next reload: a new config, or refused.
    next_reload: Option<Result<CoreConfig, ()>>,
}

/// The gateway JVM the fake runs.
#[derive(Debug, Default)]
struct Jvm {
    /// Launch count; window ids and events carry it so a dead JVM's events are dropped.
    generation: u32,
    alive: bool,
    /// Logged in and serving the API.
    serving: bool,
    /// It wrote an auto-restart token (after a login, as the real gateway does).
    has_token: bool,
    /// The second-factor dialog is up.
    code_dialog: bool,
    /// A live account: the credentials bring the second-factor dialog.
    live: bool,
}

/// Everything the test can see: what the loop asked for, when (virtual ms from the start).
#[derive(Debug, Default)]
struct Shared {
    knobs: Knobs,
    jvm: Jvm,
    actions: Vec<(u64, Action)>,
}

type Handle = Arc<Mutex<Shared>>;

fn lock(h: &Handle) -> MutexGuard<'_, Shared> {
    h.lock().unwrap_or_else(|p| p.into_inner())
}

/// An event for the world, tagged with the JVM generation it belongs to.
#[derive(Debug)]
struct Msg {
    generation: u32,
    input: Input,
}

const PID_BASE: u32 = 5000;

fn frame_id(generation: u32) -> u32 {
    0x40_0000 + generation * 0x100 + 7
}

fn dialog_id(generation: u32) -> u32 {
    frame_id(generation) + 0x30
}

struct FakeWorld {
    shared: Handle,
    tx: UnboundedSender<Event<Msg>>,
    start: Instant,
    unix0_ms: u64,
}

impl FakeWorld {
    /// Sends `input` for JVM `generation` after `delay` (the fake gateway's own pace).
    fn later(&self, delay: Duration, generation: u32, input: Input) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Event::World(Msg { generation, input }));
        });
    }

    fn window(&self, id: u32, title: &str, transient_for: Option<u32>, generation: u32) -> Input {
        Input::Mapped(WindowInfo {
            id,
            pid: Some(PID_BASE + generation),
            ancestry: vec![1],
            title: title.into(),
            transient_for,
            x: 100,
            y: 100,
            width: 600,
            height: 400,
        })
    }

    /// `Starting application...`, then the main window, then the API serves.
    fn log_in(&self, generation: u32, after: Duration) {
        let frame = frame_id(generation);
        self.later(
            after,
            generation,
            Input::TitleChanged {
                id: frame,
                title: "Starting application...".into(),
            },
        );
        self.later(
            after + Duration::from_millis(400),
            generation,
            Input::TitleChanged {
                id: frame,
                title: "IBKR Gateway".into(),
            },
        );
        // `serving` flips when the title change is absorbed (see `absorb`).
    }

    fn exit_later(&self, delay: Duration, code: Option<i32>, signal: Option<i32>) {
        let generation = lock(&self.shared).jvm.generation;
        self.later(
            delay,
            generation,
            Input::Exited {
                code,
                signal,
                hs_err: None,
            },
        );
    }
}

impl World for FakeWorld {
    type Msg = Msg;

    fn now(&self) -> Now {
        let elapsed = self.start.elapsed();
        Now {
            mono: Instant::now().into_std(),
            unix_ms: self.unix0_ms + elapsed.as_millis() as u64,
        }
    }

    async fn execute(&mut self, action: Action) -> Option<Input> {
        let at = self.start.elapsed().as_millis() as u64;
        let (generation, alive, hung, ignore_close) = {
            let mut s = lock(&self.shared);
            s.actions.push((at, action.clone()));
            (
                s.jvm.generation,
                s.jvm.alive,
                s.knobs.hung,
                s.knobs.ignore_close,
            )
        };
        match action {
            Action::StartDisplay => {
                let _ = self.tx.send(Event::Input(Input::DisplayReady));
            }
            Action::Launch { use_restart_token } => {
                let (generation, with_token, token_valid) = {
                    let mut s = lock(&self.shared);
                    s.jvm.generation += 1;
                    s.jvm.alive = true;
                    s.jvm.serving = false;
                    s.jvm.code_dialog = false;
                    let with_token = use_restart_token && s.jvm.has_token;
                    s.jvm.has_token = false;
                    (s.jvm.generation, with_token, s.knobs.token_valid)
                };
                self.later(
                    Duration::from_millis(50),
                    generation,
                    Input::Spawned {
                        pid: PID_BASE + generation,
                        with_token,
                    },
                );
                let frame = self.window(frame_id(generation), "IBKR Gateway", None, generation);
                self.later(Duration::from_millis(1500), generation, frame);
                if with_token && token_valid {
                    self.log_in(generation, Duration::from_secs(3));
                }
            }
            // The fake display shows what was typed: every form check sees it right.
            Action::CheckForm { ticket, .. } => {
                let _ = self.tx.send(Event::Input(Input::FormChecked {
                    ticket,
                    verdict: FormVerdict::Matches,
                    targets: FormTargets::default(),
                }));
            }
            Action::Type {
                ticket,
                window,
                steps,
            } => {
                let _ = self.tx.send(Event::Input(Input::Typed {
                    ticket,
                    result: TypeResult::Done,
                }));
                let pressed = steps.contains(&KeyStep::Key(NamedKey::Enter));
                if !pressed || !alive || hung {
                    return None;
                }
                if window == frame_id(generation) {
                    let needs_code = lock(&self.shared).jvm.live;
                    if needs_code {
                        lock(&self.shared).jvm.code_dialog = true;
                        let dialog = self.window(
                            dialog_id(generation),
                            "Second Factor Authentication",
                            Some(frame_id(generation)),
                            generation,
                        );
                        self.later(Duration::from_millis(600), generation, dialog);
                    } else {
                        self.log_in(generation, Duration::from_millis(500));
                    }
                } else if window == dialog_id(generation) {
                    lock(&self.shared).jvm.code_dialog = false;
                    self.later(
                        Duration::from_millis(200),
                        generation,
                        Input::Destroyed(dialog_id(generation)),
                    );
                    self.log_in(generation, Duration::from_millis(500));
                }
            }
            Action::ReadText { window, .. } => {
                let _ = self
                    .tx
                    .send(Event::Input(Input::WindowText { window, text: None }));
            }
            Action::Probe => {
                let serving = lock(&self.shared).jvm.serving;
                // IBKR numbers paper accounts D…, live ones U….
                let account = if lock(&self.shared).jvm.live {
                    "U1234567"
                } else {
                    "DU1234567"
                };
                let (delay, outcome) = if alive && serving && !hung {
                    (
                        Duration::from_millis(5),
                        ProbeOutcome::Up {
                            server_version: 176,
                            accounts: vec![account.into()],
                            link_lost: false,
                        },
                    )
                } else if hung {
                    (
                        Duration::from_secs(5),
                        ProbeOutcome::Down {
                            reason: "timed out waiting for the handshake".into(),
                        },
                    )
                } else {
                    (
                        Duration::from_millis(2),
                        ProbeOutcome::Down {
                            reason: "connection refused".into(),
                        },
                    )
                };
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = tx.send(Event::Input(Input::Probe(outcome)));
                });
            }
            Action::CloseGateway { .. } => {
                if alive && !hung && !ignore_close {
                    // Logging out takes a moment, then the JVM exits 0.
                    self.exit_later(Duration::from_secs(2), Some(0), None);
                }
            }
            Action::TerminateGateway => {
                if alive && !hung {
                    self.exit_later(Duration::from_millis(300), Some(143), None);
                }
            }
            Action::KillGateway => {
                if alive {
                    self.exit_later(Duration::from_millis(10), None, Some(9));
                }
            }
            Action::SaveState(_) => {
                if lock(&self.shared).knobs.disk_full {
                    return Some(Input::StateNotSaved {
                        reason: "No space left on device (os error 28)".into(),
                    });
                }
            }
            Action::Screenshot { .. }
            | Action::Notify { .. }
            | Action::Status { .. }
            | Action::Exit(_) => {}
        }
        None
    }

    fn absorb(&mut self, msg: Msg) -> Option<Input> {
        let mut s = lock(&self.shared);
        if msg.generation != s.jvm.generation || !s.jvm.alive {
            return None; // from a JVM that is gone
        }
        match &msg.input {
            Input::Exited { .. } => {
                s.jvm.alive = false;
                s.jvm.serving = false;
            }
            Input::TitleChanged { title, .. } if title == "IBKR Gateway" => {
                s.jvm.serving = true;
                s.jvm.has_token = true;
            }
            _ => {}
        }
        Some(msg.input)
    }

    fn reload(&mut self) {
        let next = lock(&self.shared).knobs.next_reload.take();
        let input = match next {
            Some(Ok(cfg)) => Input::Reconfigure(Box::new(cfg)),
            Some(Err(())) | None => Input::ReloadRefused,
        };
        let _ = self.tx.send(Event::Input(input));
    }

    fn control(&mut self, req: ControlRequest) -> Option<Input> {
        let _ = req.reply.send(ControlReply::error("not in the fake"));
        None
    }

    fn publish(&mut self, _core: &Supervisor, _now: Now) {}

    fn tick(&mut self) {}

    async fn shutdown(&mut self) {}
}

/// One run: the core, the fake world, and the script that plays the outside.
struct Scenario {
    shared: Handle,
    tx: UnboundedSender<Event<Msg>>,
    start: Instant,
}

/// 2026-12-01 (a Tuesday) at `hh:mm:ss` America/New_York, as unix ms.
fn ny_unix_ms(h: i8, m: i8, s: i8) -> u64 {
    let z = Date::constant(2026, 12, 1)
        .at(h, m, s, 0)
        .in_tz("America/New_York")
        .expect("zone");
    z.timestamp().as_millisecond() as u64
}

fn schedule() -> Schedule {
    Schedule::new(
        TimeZone::get("America/New_York").expect("tz"),
        None,
        Some(WeekdayTime {
            weekday: Weekday::Sunday,
            time: Time::constant(1, 30, 0, 0),
        }),
        None,
        Time::constant(23, 45, 0, 0),
        Duration::from_secs(480),
    )
}

fn paper() -> CoreConfig {
    CoreConfig {
        trading_mode: TradingMode::Paper,
        schedule: Some(schedule()),
        seed: 7,
        ..CoreConfig::default()
    }
}

fn live() -> CoreConfig {
    CoreConfig {
        trading_mode: TradingMode::Live,
        schedule: Some(schedule()),
        seed: 7,
        ..CoreConfig::default()
    }
}

/// Runs `script` against the loop; returns the loop's exit code and what it asked for.
async fn run<F, Fut>(cfg: CoreConfig, unix0_ms: u64, script: F) -> (i32, Vec<(u64, Action)>)
where
    F: FnOnce(Scenario) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let shared: Handle = Arc::default();
    lock(&shared).jvm.live = cfg.trading_mode == TradingMode::Live;
    let (tx, mut rx): (_, UnboundedReceiver<Event<Msg>>) = unbounded_channel();
    let start = Instant::now();
    let mut world = FakeWorld {
        shared: shared.clone(),
        tx: tx.clone(),
        start,
        unix0_ms,
    };
    let mut core = Supervisor::new(cfg, Persisted::default());
    let scenario = Scenario {
        shared: shared.clone(),
        tx,
        start,
    };
    let (code, ()) = tokio::join!(drive(&mut core, &mut world, &mut rx), script(scenario));
    let actions = std::mem::take(&mut lock(&shared).actions);
    (code, actions)
}

impl Scenario {
    fn knobs(&self, f: impl FnOnce(&mut Knobs)) {
        f(&mut lock(&self.shared).knobs);
    }

    fn count(&self, pred: impl Fn(&Action) -> bool) -> usize {
        lock(&self.shared)
            .actions
            .iter()
            .filter(|(_, a)| pred(a))
            .count()
    }

    /// Virtual ms since the start.
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Lets virtual time run until `pred` holds on the actions so far; fails after `max`
    /// of virtual time.
    async fn until(&self, what: &str, max: Duration, pred: impl Fn(&[(u64, Action)]) -> bool) {
        let end = Instant::now() + max;
        loop {
            if pred(&lock(&self.shared).actions) {
                return;
            }
            assert!(
                Instant::now() < end,
                "{what}: not within {max:?}; actions: {:#?}",
                lock(&self.shared).actions
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the `n`th ready status.
    async fn ready(&self, n: usize, max: Duration) {
        self.until(&format!("ready #{n}"), max, |a| readies(a) >= n)
            .await;
    }

    fn send(&self, input: Input) {
        let _ = self.tx.send(Event::Input(input));
    }

    fn reload(&self) {
        let _ = self.tx.send(Event::Reload);
    }

    /// The JVM dies by itself (a crash with a report, or an exit).
    fn jvm_exits(&self, code: Option<i32>, signal: Option<i32>, hs_err: Option<&str>) {
        let generation = lock(&self.shared).jvm.generation;
        let _ = self.tx.send(Event::World(Msg {
            generation,
            input: Input::Exited {
                code,
                signal,
                hs_err: hs_err.map(str::to_string),
            },
        }));
    }

    /// Lets `d` of virtual time pass (the outside world doing nothing for a while).
    async fn idle(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

/// When the first action matching `pred` was asked for (virtual ms).
fn first(a: &[(u64, Action)], pred: impl Fn(&Action) -> bool) -> Option<u64> {
    a.iter().find(|(_, x)| pred(x)).map(|(t, _)| *t)
}

fn count(a: &[(u64, Action)], pred: impl Fn(&Action) -> bool) -> usize {
    a.iter().filter(|(_, x)| pred(x)).count()
}

/// Transitions into ready (not every status line while ready).
fn readies(a: &[(u64, Action)]) -> usize {
    transitions(a)
}

fn transitions(a: &[(u64, Action)]) -> usize {
    let mut ready = false;
    let mut n = 0;
    for (_, x) in a {
        if let Action::Status { ready: r, .. } = x {
            if *r && !ready {
                n += 1;
            }
            ready = *r;
        }
    }
    n
}

fn sd_readies(a: &[(u64, Action)]) -> usize {
    a.iter()
        .filter(|(_, a)| matches!(a, Action::Status { sd_ready: true, .. }))
        .count()
}

fn launches(a: &[(u64, Action)]) -> Vec<(u64, bool)> {
    a.iter()
        .filter_map(|(t, a)| match a {
            Action::Launch { use_restart_token } => Some((*t, *use_restart_token)),
            _ => None,
        })
        .collect()
}

/// Times of `Log In` presses (Enter into the login frame).
fn login_presses(a: &[(u64, Action)]) -> Vec<u64> {
    a.iter()
        .filter_map(|(t, a)| match a {
            Action::Type { window, steps, .. }
                if *window & 0xff == 7 && steps.contains(&KeyStep::Key(NamedKey::Enter)) =>
            {
                Some(*t)
            }
            _ => None,
        })
        .collect()
}

const MIN: Duration = Duration::from_secs(60);

/// 2026-12-01 10:00 America/New_York: far from any maintenance window.
const TEN_AM: u64 = 1_796_137_200_000;

#[test]
fn ten_am_is_ten_am() {
    assert_eq!(TEN_AM, ny_unix_ms(10, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn paper_login_reaches_ready_and_tells_systemd_once() {
    let (code, a) = run(paper(), TEN_AM, |s| async move {
        s.ready(1, MIN).await;
        // Probes keep passing for ten minutes: still one READY=1.
        s.idle(10 * MIN).await;
        assert!(s.count(|a| *a == Action::Probe) >= 15);
        s.send(Input::Stop);
    })
    .await;
    assert_eq!(code, 0);
    assert_eq!(sd_readies(&a), 1, "READY=1 exactly once");
    assert_eq!(login_presses(&a).len(), 1);
    assert_eq!(launches(&a).len(), 1);
    // Paper: no code typed.
    assert!(
        !a.iter().any(|(_, x)| matches!(x, Action::Type { steps, .. }
        if steps.iter().any(|s| matches!(s, KeyStep::Secret(SecretRef::TotpCode { .. })))))
    );
}

#[tokio::test(start_paused = true)]
async fn live_login_saves_the_code_step_before_typing_it() {
    let (code, a) = run(live(), ny_unix_ms(10, 0, 5), |s| async move {
        s.ready(1, 2 * MIN).await;
        s.send(Input::Stop);
    })
    .await;
    assert_eq!(code, 0);
    let typed_at = a
        .iter()
        .position(|(_, x)| {
            matches!(x, Action::Type { steps, .. }
            if steps.iter().any(|s| matches!(s, KeyStep::Secret(SecretRef::TotpCode { .. }))))
        })
        .expect("a code was typed");
    let Action::Type { steps, .. } = &a[typed_at].1 else {
        unreachable!()
    };
    let step = steps
        .iter()
        .find_map(|s| match s {
            KeyStep::Secret(SecretRef::TotpCode { step }) => Some(*step),
            _ => None,
        })
        .expect("step");
    let saved_at = a
        .iter()
        .position(|(_, x)| matches!(x, Action::SaveState(p) if p.last_totp_step == Some(step)))
        .expect("the step was saved");
    assert!(
        saved_at < typed_at,
        "saved at {saved_at}, typed at {typed_at}"
    );
    // The attempt was saved before Log In was pressed.
    let press = a
        .iter()
        .position(|(_, x)| {
            matches!(x, Action::Type { window, steps, .. }
            if *window & 0xff == 7 && steps.contains(&KeyStep::Key(NamedKey::Enter)))
        })
        .expect("Log In pressed");
    assert!(
        a[..press]
            .iter()
            .any(|(_, x)| matches!(x, Action::SaveState(p) if !p.failed_logins.is_empty())),
        "attempt counted before the press"
    );
}

#[tokio::test(start_paused = true)]
async fn a_crash_is_reported_and_the_gateway_relaunched_to_ready() {
    let (code, a) = run(paper(), TEN_AM, |s| async move {
        s.ready(1, MIN).await;
        s.jvm_exits(
            Some(134),
            None,
            Some("/var/lib/ibwarden/hs_err_pid5001.log"),
        );
        s.ready(2, 2 * MIN).await;
        s.send(Input::Stop);
    })
    .await;
    assert_eq!(code, 0);
    assert_eq!(launches(&a).len(), 2);
    assert!(a
        .iter()
        .any(|(_, x)| matches!(x, Action::Notify { message, .. }
        if message.contains("crashed") && message.contains("hs_err_pid5001.log"))));
}

#[tokio::test(start_paused = true)]
async fn a_hung_gateway_is_killed_after_the_probe_budget_and_relaunched() {
    let (code, a) = run(paper(), TEN_AM, |s| async move {
        s.ready(1, MIN).await;
        let hung_at = s.now_ms();
        s.knobs(|k| k.hung = true);
        s.until("kill", 5 * MIN, |a| {
            a.iter().any(|(_, x)| *x == Action::KillGateway)
        })
        .await;
        let killed_at = lock(&s.shared)
            .actions
            .iter()
            .find(|(_, x)| *x == Action::KillGateway)
            .map(|(t, _)| *t)
            .expect("kill");
        // Three probe intervals of 30 s, not the first failure.
        assert!(
            killed_at - hung_at >= 60_000,
            "killed after {} ms",
            killed_at - hung_at
        );
        s.knobs(|k| k.hung = false);
        s.ready(2, 3 * MIN).await;
        s.send(Input::Stop);
    })
    .await;
    assert_eq!(code, 0);
    assert_eq!(launches(&a).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn nightly_restart_relaunches_with_the_token_and_types_nothing() {
    let (code, a) = run(paper(), ny_unix_ms(23, 40, 0), |s| async move {
        s.knobs(|k| k.token_valid = true);
        s.ready(1, MIN).await;
        // 23:45:30: the gateway's own nightly restart exits 0 after writing its token.
        s.idle(Duration::from_secs(5 * 60 + 30) - Duration::from_millis(s.now_ms()))
            .await;
        s.jvm_exits(Some(0), None, None);
        s.ready(2, 2 * MIN).await;
        s.send(Input::Stop);
    })
    .await;
    assert_eq!(code, 0);
    let l = launches(&a);
    assert_eq!(l.len(), 2);
    assert!(l[1].1, "relaunched with the token");
    assert_eq!(
        login_presses(&a).len(),
        1,
        "no login typed after the nightly restart"
    );
}

#[tokio::test(start_paused = true)]
async fn an_expired_token_inside_maintenance_waits_for_the_window_to_end() {
    let t0 = ny_unix_ms(23, 40, 0);
    let (code, a) = run(paper(), t0, |s| async move {
        s.knobs(|k| k.token_valid = false);
        s.ready(1, MIN).await;
        s.idle(Duration::from_secs(5 * 60 + 30) - Duration::from_millis(s.now_ms()))
            .await;
        s.jvm_exits(Some(0), None, None);
        s.ready(2, 60 * MIN).await;
        s.send(Input::Stop);
    })
    .await;
    assert_eq!(code, 0);
    let presses = login_presses(&a);
    assert_eq!(presses.len(), 2, "{presses:?}");
    // The 30-minute window from 23:45, plus the 8-minute delay: no full login before 00:23,
    // and one soon after.
    let ends = ny_unix_ms(23, 45, 0) + 38 * 60_000 - t0;
    assert!(
        presses[1] >= ends,
        "full login at +{} ms, window ends at +{ends} ms",
        presses[1]
    );
    assert!(
        presses[1] < ends + 60_000,
        "full login at +{} ms",
        presses[1]
    );
}

#[tokio::test(start_paused = true)]
async fn a_reload_applies_the_probe_interval_and_says_ready_again() {
    let (code, a) = run(paper(), TEN_AM, |s| async move {
        s.ready(1, MIN).await;
        s.idle(MIN).await;
        let before = s.count(|a| *a == Action::Probe);
        s.idle(5 * MIN).await;
        let slow = s.count(|a| *a == Action::Probe) - before;
        s.knobs(|k| {
            k.next_reload = Some(Ok(CoreConfig {
                probe_interval: Duration::from_secs(5),
                ..paper()
            }))
        });
        s.reload();
        s.idle(Duration::from_secs(1)).await;
        let before = s.count(|a| *a == Action::Probe);
        s.idle(5 * MIN).await;
        let fast = s.count(|a| *a == Action::Probe) - before;
        assert!((9..=11).contains(&slow), "every 30 s: {slow} in 5 min");
        assert!((55..=61).contains(&fast), "every 5 s: {fast} in 5 min");
        // A refused reload keeps the running config and still ends with READY=1.
        let sd = sd_readies(&lock(&s.shared).actions);
        s.knobs(|k| k.next_reload = Some(Err(())));
        s.reload();
        s.until("READY after refused reload", MIN, |a| sd_readies(a) > sd)
            .await;
        let before = s.count(|a| *a == Action::Probe);
        s.idle(MIN).await;
        assert!(s.count(|a| *a == Action::Probe) - before >= 11);
        s.send(Input::Stop);
    })
    .await;
    assert_eq!(code, 0);
    assert_eq!(launches(&a).len(), 1, "a reload restarts nothing");
}

#[tokio::test(start_paused = true)]
async fn a_reloaded_schedule_moves_the_maintenance_guard() {
    let t0 = ny_unix_ms(22, 0, 0);
    let (code, a) = run(paper(), t0, |s| async move {
        s.knobs(|k| k.token_valid = false);
        s.ready(1, MIN).await;
        // Maintenance moved to 22:05 with a 10-minute delay.
        let mut cfg = paper();
        cfg.schedule = Some(Schedule::new(
            TimeZone::get("America/New_York").expect("tz"),
            None,
            None,
            None,
            Time::constant(22, 5, 0, 0),
            Duration::from_secs(600),
        ));
        s.knobs(|k| k.next_reload = Some(Ok(cfg)));
        s.reload();
        s.idle(Duration::from_secs(6 * 60) - Duration::from_millis(s.now_ms()))
            .await;
        s.jvm_exits(Some(0), None, None);
        s.ready(2, 60 * MIN).await;
        s.send(Input::Stop);
    })
    .await;
    assert_eq!(code, 0);
    let presses = login_presses(&a);
    assert_eq!(presses.len(), 2, "{presses:?}");
    // The reloaded window: 22:05 + 30 min + 10 min (the old one would allow it at once).
    let ends = ny_unix_ms(22, 45, 0) - t0;
    assert!(
        presses[1] >= ends,
        "full login at +{} ms before +{ends}",
        presses[1]
    );
    assert!(
        presses[1] < ends + 60_000,
        "full login at +{} ms",
        presses[1]
    );
}

#[tokio::test(start_paused = true)]
async fn stop_closes_the_gateway_through_its_window_and_exits_0() {
    let (code, a) = run(paper(), TEN_AM, |s| async move {
        s.ready(1, MIN).await;
        s.send(Input::Stop);
    })
    .await;
    assert_eq!(code, 0);
    assert!(a
        .iter()
        .any(|(_, x)| matches!(x, Action::CloseGateway { .. })));
    assert!(!a
        .iter()
        .any(|(_, x)| matches!(x, Action::TerminateGateway | Action::KillGateway)));
}

#[tokio::test(start_paused = true)]
async fn a_double_signal_still_closes_through_the_window_and_a_third_kills() {
    // Ctrl-C plus the demo's SIGTERM: two requests, a graceful close.
    let (code, a) = run(paper(), TEN_AM, |s| async move {
        s.ready(1, MIN).await;
        s.send(Input::Stop);
        s.send(Input::Stop);
    })
    .await;
    assert_eq!(code, 0);
    assert!(count(&a, |x| *x == Action::KillGateway) == 0);
    assert!(count(&a, |x| *x == Action::TerminateGateway) == 0);

    // A gateway that takes its time logging out: the third request kills it.
    let (code, a) = run(paper(), TEN_AM, |s| async move {
        s.knobs(|k| k.ignore_close = true);
        s.ready(1, MIN).await;
        s.send(Input::Stop);
        s.send(Input::Stop);
        s.idle(Duration::from_secs(10)).await;
        assert_eq!(s.count(|a| *a == Action::KillGateway), 0);
        s.send(Input::Stop);
    })
    .await;
    assert_eq!(code, 0);
    assert_eq!(count(&a, |x| *x == Action::KillGateway), 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_logout_gets_stop_grace_then_sigterm() {
    let cfg = CoreConfig {
        stop_grace: Duration::from_secs(90),
        ..paper()
    };
    let (code, a) = run(cfg, TEN_AM, |s| async move {
        s.knobs(|k| k.ignore_close = true);
        s.ready(1, MIN).await;
        s.send(Input::Stop);
    })
    .await;
    assert_eq!(code, 0);
    let at = |want: &Action| a.iter().find(|(_, x)| x == want).map(|(t, _)| *t);
    let close = first(&a, |x| matches!(x, Action::CloseGateway { .. })).expect("closed first");
    let term = at(&Action::TerminateGateway).expect("then SIGTERM");
    assert!(
        term - close >= 90_000,
        "SIGTERM {} ms after the close",
        term - close
    );
    assert_eq!(at(&Action::KillGateway), None, "SIGTERM was enough");
}

#[tokio::test(start_paused = true)]
async fn a_frozen_gateway_is_killed_at_the_stop_deadline() {
    let (code, a) = run(paper(), TEN_AM, |s| async move {
        s.ready(1, MIN).await;
        s.knobs(|k| k.hung = true);
        s.send(Input::Stop);
    })
    .await;
    assert_eq!(code, 0);
    let kill = first(&a, |x| *x == Action::KillGateway).expect("killed");
    let close = first(&a, |x| matches!(x, Action::CloseGateway { .. })).expect("closed first");
    assert!(a.iter().any(|(_, x)| *x == Action::TerminateGateway));
    assert!(
        kill - close <= 200_000,
        "killed {} ms after the close",
        kill - close
    );
}

#[tokio::test(start_paused = true)]
async fn a_state_that_cannot_be_saved_stops_before_any_login_is_pressed() {
    let (code, a) = run(paper(), TEN_AM, |s| async move {
        s.knobs(|k| k.disk_full = true);
    })
    .await;
    assert_eq!(code, 1);
    assert!(login_presses(&a).is_empty(), "nothing pressed: {a:#?}");
    assert!(a.iter().any(|(_, x)| *x == Action::KillGateway));
}
