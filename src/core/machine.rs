//! The supervisor state machine for one gateway.
//!
//! # Contract (quinn-style)
//!
//! - Feed events with [`Supervisor::handle`] and expired deadlines with
//!   [`Supervisor::handle_timeout`]; both take the current [`Now`], which must not go back.
//! - After each call, drain [`Supervisor::poll_action`] until `None` and execute the actions
//!   in order (a [`Action::SaveState`] must be durable before the next action runs: the
//!   state it carries is what makes a TOTP step or a login attempt count across a crash).
//! - Sleep until [`Supervisor::poll_timeout`], then call `handle_timeout`.
//!
//! The machine never reads a clock, never does IO and never sees a secret: it refers to
//! credentials through [`SecretRef`].

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::dialog::{self, Answer, DialogKind};
use super::domain::{Program, SecondFactor, SessionPolicy, TradingMode};
use super::schedule::{self, ScheduledEvent, Scheduler};
use super::timer::{Timer, TimerTable};
use super::types::{KeyStep, LauncherEvent, NamedKey, ProbeOutcome, SecretRef, WindowInfo};
use crate::totp;

// TWS's in-frame second factor and exit path. A child module (file `src/core/tws.rs`) so its
// glue can use the machine's private state; its decisions are pure functions.
#[path = "tws.rs"]
mod tws;

/// Logins in one JVM that may go back to the login window without an error (silent drops,
/// unapproved pushes) before ibwarden stops and asks a person (ibg-controller stops after 8).
const MAX_LOGIN_RESETS: u32 = 8;

/// How long the login frame may sit idle after a token relaunch before ibwarden types.
const TOKEN_GRACE: Duration = Duration::from_secs(15);

/// After WM_DELETE_WINDOW, how long the gateway has to exit before SIGTERM.
const CLOSE_GRACE: Duration = Duration::from_secs(15);

/// After SIGTERM, how long the JVM has to exit before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(10);

/// A stop must have ended by then, whatever the gateway does: then SIGKILL.
const STOP_DEADLINE: Duration = Duration::from_secs(120);

/// Stop requests (SIGTERM, SIGINT, `ibwarden stop`) that still mean "stop cleanly": Ctrl-C
/// in a shell script often delivers SIGINT and the script's own SIGTERM together. Only the
/// next one kills the gateway.
const GRACEFUL_STOP_REQUESTS: u32 = 2;

/// The current time, monotonic and wall-clock, as read by the driver.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    /// Monotonic time, for deadlines.
    pub mono: Instant,
    /// Unix time in milliseconds, for TOTP steps and the persisted attempt history.
    pub unix_ms: u64,
}

/// What the core needs from the configuration (plain values, no IO).
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Gateway or TWS.
    pub program: Program,
    /// Live or paper.
    pub trading_mode: TradingMode,
    /// The second-factor device to pick in the chooser.
    pub second_factor: SecondFactor,
    /// Existing-session policy.
    pub existing_session: SessionPolicy,
    /// At most this many failed logins per rolling hour, across restarts.
    pub max_failed_logins_per_hour: u32,
    /// A TOTP code with less validity left than this is not typed.
    pub min_code_validity: Duration,
    /// Rejected codes tolerated in one login before stopping.
    pub max_code_rejections: u32,
    /// How long to wait for an IB Key push approval.
    pub ib_key_wait: Duration,
    /// The login frame must appear within this after launch.
    pub launch_timeout: Duration,
    /// From the login frame to API ready (waits for a fresh code are added on top).
    pub login_timeout: Duration,
    /// Probe interval once ready.
    pub probe_interval: Duration,
    /// Probe interval while waiting for the API to come up after login.
    pub probe_retry: Duration,
    /// Consecutive failed probes (once ready) that mean the gateway hangs.
    pub failures_before_restart: u32,
    /// How long an IB link loss (1100) may last before a restart.
    pub link_lost_grace: Duration,
    /// First back-off delay before a relaunch; doubles up to `backoff_max`.
    pub backoff_initial: Duration,
    /// Back-off cap.
    pub backoff_max: Duration,
    /// Whether a content reader (OCR, AT-SPI) can read dialog text.
    pub content_reader: bool,
    /// First wait before logging in again after the gateway went back to its login window
    /// without an error (2FA timeout, silently dropped login); doubles up to 600 s. IBKR's
    /// limiter punishes quick re-logins (`reference/peers.md` §16: 60/120/240/480/600 s).
    pub relogin_backoff: Duration,
    /// Ping-pong guard: this many session takeovers (a `Re-login is required` after ready, or
    /// an existing session continued) within `pingpong_window` mean another session keeps
    /// fighting for the account (`reference/peers.md` §17.5).
    pub pingpong_max: u32,
    /// The ping-pong guard's window.
    pub pingpong_window: Duration,
    /// How long the guard holds the session dialog back before answering it.
    pub pingpong_backoff: Duration,
    /// Seed for back-off jitter (the core reads no RNG).
    pub seed: u64,
    /// IBKR's calendar: no full login inside the nightly maintenance window; a code-0 exit
    /// around the reset is the nightly auto-restart. `None`: no calendar (unit tests).
    pub schedule: Option<super::schedule::Schedule>,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            program: Program::Gateway,
            trading_mode: TradingMode::Live,
            second_factor: SecondFactor::AuthenticatorApp,
            existing_session: SessionPolicy::Primary,
            max_failed_logins_per_hour: 3,
            min_code_validity: Duration::from_secs(8),
            max_code_rejections: 2,
            ib_key_wait: Duration::from_secs(180),
            launch_timeout: Duration::from_secs(90),
            login_timeout: Duration::from_secs(180),
            probe_interval: Duration::from_secs(30),
            // Cheap (a refused loopback connect): ready within ~0.3 s of the API listening.
            probe_retry: Duration::from_millis(300),
            failures_before_restart: 3,
            link_lost_grace: Duration::from_secs(300),
            backoff_initial: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            content_reader: false,
            relogin_backoff: Duration::from_secs(60),
            pingpong_max: 5,
            pingpong_window: Duration::from_secs(300),
            pingpong_backoff: Duration::from_secs(600),
            seed: 0x9E37_79B9_7F4A_7C15,
            schedule: None,
        }
    }
}

/// State that must survive a crash of ibwarden, the JVM or the machine (the state file,
/// `crate::state`, is this struct as JSON).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Persisted {
    /// The last TOTP step typed into the gateway; never typed again.
    pub last_totp_step: Option<u64>,
    /// Unix seconds of login submissions that have not (yet) succeeded. A submission is
    /// recorded before Enter is pressed, and removed when that login reaches ready.
    pub failed_logins: Vec<u64>,
    /// IBKR rejected the username or password (unix seconds). While set, no login is typed,
    /// also after a restart of ibwarden or the machine: a person fixes the secret and runs
    /// `ibwarden restart` (or `ibwarden secret set password`, which clears it).
    pub credentials_rejected: Option<u64>,
}

/// How urgent a notification is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Good news (recovered).
    Info,
    /// Something a person may want to look at.
    Warning,
    /// A person must act.
    Critical,
}

/// Why the machine wants a person told something. One variant per event kind, so the
/// notifier can deduplicate and send "recovered" when it clears.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    /// Invalid username or password: logins stopped.
    LoginFailed,
    /// Codes rejected too often: logins stopped.
    CodeRejected,
    /// An IB Key push needs approval on the phone.
    HumanApproval,
    /// The failed-login budget is spent: waiting.
    LockoutGuard,
    /// The JVM crashed.
    Crash,
    /// Restarts keep failing.
    RestartLoop,
    /// A dialog nobody knows.
    UnknownDialog,
    /// The IBKR password expires soon.
    PasswordExpiring,
    /// A competing session keeps taking ours.
    SessionConflict,
    /// The gateway is ready again after a problem.
    Recovered,
}

/// What a keyboard action came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeResult {
    /// Every key was sent with the focus in the window.
    Done,
    /// The window did not have (or lost) the focus; no key went elsewhere.
    FocusLost,
    /// The window is gone or X failed.
    Failed(String),
}

/// An event from the outside world.
#[derive(Clone, Debug)]
pub enum Input {
    /// Begin: launch the gateway.
    Start,
    /// The JVM was spawned.
    Spawned {
        /// Its pid.
        pid: u32,
        /// Launched with `-Drestart=`: the gateway should log itself in with its token.
        with_token: bool,
    },
    /// The JVM could not be spawned.
    SpawnFailed {
        /// Why.
        reason: String,
    },
    /// The JVM exited.
    Exited {
        /// Exit code, if it exited normally.
        code: Option<i32>,
        /// Signal number, if killed by one.
        signal: Option<i32>,
        /// The crash report, if one was written.
        hs_err: Option<String>,
    },
    /// A top-level window was mapped on the gateway's display (any client: the core keeps
    /// only the JVM's own windows, by [`WindowInfo::pid`] and [`WindowInfo::ancestry`]).
    Mapped(WindowInfo),
    /// A window was unmapped.
    Unmapped(u32),
    /// A window was destroyed.
    Destroyed(u32),
    /// A window's title changed.
    TitleChanged {
        /// The window.
        id: u32,
        /// The new title.
        title: String,
    },
    /// A keyboard action finished.
    Typed {
        /// The ticket of the [`Action::Type`].
        ticket: u64,
        /// How it went.
        result: TypeResult,
    },
    /// Text read from a window by the content reader (`None`: could not read).
    WindowText {
        /// The window.
        window: u32,
        /// Its text.
        text: Option<String>,
    },
    /// An API probe finished.
    Probe(ProbeOutcome),
    /// The X display died (the driver restarts it before the next launch).
    DisplayLost,
    /// A person or systemd asked to stop.
    Stop,
    /// A person asked for a restart.
    Restart,
    /// A scheduled event is due (daily restart, weekly cold restart, closedown).
    Scheduled(super::schedule::ScheduledEvent),
    /// A line of the gateway's `launcher.log` that means something.
    GatewayLog(LauncherEvent),
    /// The display asked for with [`Action::StartDisplay`] is up (watcher and typist on it).
    DisplayReady,
    /// The display could not be started.
    DisplayFailed {
        /// Why.
        reason: String,
    },
    /// SIGHUP: the configuration was re-read and validated; apply it.
    Reconfigure(Box<CoreConfig>),
    /// SIGHUP: the configuration file has errors; the running configuration stays.
    ReloadRefused,
    /// An [`Action::SaveState`] could not be made durable.
    StateNotSaved {
        /// Why (an IO error; never a secret).
        reason: String,
    },
    /// A person connected to the display (VNC takeover): type nothing until they leave.
    HumanConnected,
    /// The person disconnected.
    HumanLeft,
}

/// Something the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Action {
    /// Start the JVM (with `-Drestart=` if `use_restart_token` and a token exists).
    Launch {
        /// Use the gateway's auto-restart token if there is one.
        use_restart_token: bool,
    },
    /// Focus `window` (WM_TAKE_FOCUS, verified) and type `steps`; answer with
    /// [`Input::Typed`].
    Type {
        /// Correlates the answer.
        ticket: u64,
        /// The top-level to type into.
        window: u32,
        /// What to type.
        steps: Vec<KeyStep>,
    },
    /// Read the window's text; answer with [`Input::WindowText`].
    ReadText {
        /// The window.
        window: u32,
        /// Its title as last seen (the AT-SPI reader finds windows by title).
        title: String,
    },
    /// Start the display (Xvfb, or connect to the configured one) with its window watcher
    /// and typist; answer with [`Input::DisplayReady`] or [`Input::DisplayFailed`].
    StartDisplay,
    /// Save a screenshot (PNG in the state dir) of a window, or the whole display.
    Screenshot {
        /// The window, or `None` for the whole display.
        window: Option<u32>,
        /// Short reason, used in the file name.
        reason: &'static str,
    },
    /// Run one API probe; answer with [`Input::Probe`].
    Probe,
    /// Ask the gateway to close the way a user would (WM_DELETE_WINDOW to its main window).
    /// The core escalates on its own deadlines: [`Action::TerminateGateway`], then
    /// [`Action::KillGateway`]; the exit arrives as [`Input::Exited`].
    CloseGateway {
        /// The main window to send WM_DELETE_WINDOW to.
        main_window: u32,
    },
    /// SIGTERM (and SIGCONT, in case it is stopped) to the JVM's process group.
    TerminateGateway,
    /// SIGKILL to the JVM's process group (it hangs, its display is gone, or the stop
    /// deadline passed).
    KillGateway,
    /// Persist this state atomically before the next action.
    SaveState(Persisted),
    /// Tell a person.
    Notify {
        /// What kind of event (for deduplication).
        kind: NoticeKind,
        /// How urgent.
        severity: Severity,
        /// What happened and what to do.
        message: String,
    },
    /// The state changed: log it and send `STATUS=` (with `READY=1` when `sd_ready`).
    Status {
        /// True only after a passing API probe.
        ready: bool,
        /// One line for people.
        text: String,
        /// Send systemd `READY=1`: the first time the API probe passes, and at the end of a
        /// reload while it passes (fail closed: never otherwise).
        sd_ready: bool,
    },
    /// Give up and exit the process with this code.
    Exit(i32),
}

/// Where the machine is. Phase-specific facts live in their variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not started.
    Idle,
    /// Launch requested (the display first, if needed), waiting for the spawn.
    Launching {
        /// The launch may use the gateway's auto-restart token (no credentials).
        use_restart_token: bool,
    },
    /// JVM running; logging in (see the private `Login` record).
    LoggingIn,
    /// Logged in as far as windows go; waiting for the API probe to pass.
    AwaitApi,
    /// The API answered: ready.
    Ready,
    /// The JVM is being stopped before a relaunch.
    Restarting {
        /// What follows the back-off once it has exited.
        then: Next,
    },
    /// Waiting before the next launch or login attempt.
    Backoff {
        /// What comes when the wait is over.
        then: Next,
    },
    /// Stopped logging in: a person must act (invalid password, codes rejected, ...).
    Halted {
        /// What they were told.
        why: NoticeKind,
    },
    /// Stopping for good.
    Stopping {
        /// Stop requests so far (see [`GRACEFUL_STOP_REQUESTS`]).
        requests: u32,
    },
    /// Stopped; the process exits.
    Stopped,
}

/// What the login attempt in progress has done so far.
#[derive(Clone, Debug, Default)]
struct Login {
    /// The login frame.
    frame: Option<u32>,
    /// Credentials submitted (Enter pressed on Log In) in this attempt.
    submitted: bool,
    /// The frame showed a progress title after the submission.
    saw_progress: bool,
    /// The last progress title seen.
    last_progress: Option<String>,
    /// Times the 2FA dialog was re-read after the device choice (it changes in place).
    rereads: u32,
    /// Logins in this JVM that went back to the login window without an error.
    resets: u32,
    /// The device chooser was answered.
    chose_device: bool,
    /// TOTP steps typed in this attempt.
    codes_typed: u32,
    /// IBKR sent an IB Key push in this attempt (a prompt on the person's phone).
    pushed: bool,
    /// The code entry dialog waiting for its code (while a fresh step is awaited).
    code_dialog: Option<u32>,
    /// Existing-session dialogs seen in this JVM (IBC counts per run: the second one means
    /// the other session is a primary that took the session back).
    existing_seen: u32,
    /// This JVM continued past an existing session (so its handoff dialog is confirmed).
    continued: bool,
    /// This JVM has been logged in and ready (IBC's `LOGGED_IN`: an existing-session dialog
    /// now means another session is taking ours).
    was_ready: bool,
    /// This launch used the auto-restart token: no credentials expected.
    token_login: bool,
    /// TWS: watching the `Login` frame for the in-frame second factor.
    tws: tws::TwsWatch,
}

#[derive(Clone, Debug)]
struct Window {
    info: WindowInfo,
    kind: DialogKind,
    /// Waiting for the content reader.
    reading: bool,
    /// Already answered or deliberately left alone.
    handled: bool,
}

#[derive(Clone, Debug)]
struct PendingType {
    window: u32,
    steps: Vec<KeyStep>,
    tries: u32,
    /// Read the window's text again once the keys are in (it changes in place).
    reread: bool,
}

/// A session dialog held back by the ping-pong guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Deferred {
    window: u32,
    answer: Answer,
    /// The phase to return to once answered.
    then: Phase,
}

/// What to do when a back-off ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Launch a JVM.
    Launch {
        /// With the gateway's auto-restart token, if there is one.
        use_restart_token: bool,
    },
    /// Log in again in the running JVM.
    Relogin,
}

impl Phase {
    /// The variant's name, for `status` and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Idle => "Idle",
            Phase::Launching { .. } => "Launching",
            Phase::LoggingIn => "LoggingIn",
            Phase::AwaitApi => "AwaitApi",
            Phase::Ready => "Ready",
            Phase::Restarting { .. } => "Restarting",
            Phase::Backoff { .. } => "Backoff",
            Phase::Halted { .. } => "Halted",
            Phase::Stopping { .. } => "Stopping",
            Phase::Stopped => "Stopped",
        }
    }
}

/// The supervisor of one gateway.
pub struct Supervisor {
    cfg: CoreConfig,
    persisted: Persisted,
    phase: Phase,
    /// Why the machine waits or halted, for `status`.
    reason: String,
    pid: Option<u32>,
    windows: HashMap<u32, Window>,
    login: Login,
    timers: TimerTable,
    actions: VecDeque<Action>,
    next_ticket: u64,
    pending: HashMap<u64, PendingType>,
    /// Tickets of keyboard actions waiting for [`Timer::RetryInput`] (several windows can
    /// lose the focus at once, e.g. a storm of dialogs).
    retry_tickets: Vec<u64>,
    probe_in_flight: bool,
    probe_failures: u32,
    link_lost_since: Option<Instant>,
    consecutive_restarts: u32,
    rng: u64,
    ready_once: bool,
    /// A person is on the display: keyboard actions are held, not sent.
    human: bool,
    /// Tickets of keyboard actions held while a person is connected.
    held: Vec<u64>,
    /// When sessions were taken over (either way), for the ping-pong guard.
    takeovers: VecDeque<Instant>,
    /// The ping-pong notice was sent; cleared when the takeovers stop.
    pingpong_notified: bool,
    /// A session dialog held back by the ping-pong guard.
    deferred: Option<Deferred>,
    /// The display (watcher + typist) is up.
    display_up: bool,
    /// The launch in progress waits for the display.
    launch_after_display: bool,
    /// The last [`Action::Status`] said the API answers.
    serving: bool,
    /// systemd got `READY=1` (once per process; reloads send it again).
    sd_ready_sent: bool,
    /// IBKR's calendar: fires each planned event once, from wall time.
    scheduler: Option<Scheduler>,
    /// Counters for `status` and metrics.
    pub stats: Stats,
}

/// Counters reported by `status` and `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Login submissions.
    pub logins: u64,
    /// Times the machine reached ready.
    pub readies: u64,
    /// Relaunches, by reason.
    pub restarts: Vec<(String, u64)>,
    /// Unix ms of the last time ready was reached.
    pub last_ready_unix_ms: Option<u64>,
}

impl Stats {
    fn count_restart(&mut self, reason: &str) {
        if let Some(e) = self.restarts.iter_mut().find(|(r, _)| r == reason) {
            e.1 += 1;
        } else {
            self.restarts.push((reason.to_string(), 1));
        }
    }
}

impl Supervisor {
    /// A new machine with the persisted state loaded by the driver.
    pub fn new(cfg: CoreConfig, persisted: Persisted) -> Self {
        let rng = cfg.seed | 1;
        Supervisor {
            cfg,
            persisted,
            phase: Phase::Idle,
            reason: String::new(),
            pid: None,
            windows: HashMap::new(),
            login: Login::default(),
            timers: TimerTable::default(),
            actions: VecDeque::new(),
            next_ticket: 1,
            pending: HashMap::new(),
            retry_tickets: Vec::new(),
            probe_in_flight: false,
            probe_failures: 0,
            link_lost_since: None,
            consecutive_restarts: 0,
            rng,
            ready_once: false,
            human: false,
            held: Vec::new(),
            takeovers: VecDeque::new(),
            pingpong_notified: false,
            deferred: None,
            display_up: false,
            launch_after_display: false,
            serving: false,
            sd_ready_sent: false,
            scheduler: None,
            stats: Stats::default(),
        }
    }

    /// True while the API probe passes (what `/readyz` and `status` report).
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready && self.serving
    }

    /// The next planned calendar event (its name and unix ms), for `status`.
    pub fn next_scheduled(&self, now: Now) -> Option<(String, u64)> {
        self.scheduler
            .as_ref()
            .and_then(|s| s.upcoming_for_status(schedule::timestamp_from_unix_ms(now.unix_ms)))
    }

    /// The current phase.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// Why the machine is waiting or halted (empty when there is nothing to say).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The persisted state as it stands.
    pub fn persisted(&self) -> &Persisted {
        &self.persisted
    }

    /// The JVM's pid, if one runs.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Failed logins still allowed in the rolling hour at `now`.
    pub fn login_budget_left(&self, now: Now) -> u32 {
        let cutoff = now.unix_ms / 1000;
        let recent = self
            .persisted
            .failed_logins
            .iter()
            .filter(|&&t| t + 3600 > cutoff)
            .count() as u32;
        self.cfg.max_failed_logins_per_hour.saturating_sub(recent)
    }

    /// The next action to execute.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When to call [`Supervisor::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Feed one event.
    pub fn handle(&mut self, now: Now, input: Input) {
        self.poll_schedule(now);
        match input {
            Input::Start => self.launch(now, true),
            Input::DisplayReady => {
                self.display_up = true;
                if std::mem::take(&mut self.launch_after_display) {
                    if let Phase::Launching { use_restart_token } = self.phase {
                        self.push(Action::Launch { use_restart_token });
                    }
                }
            }
            Input::DisplayFailed { reason } => {
                self.display_up = false;
                self.launch_after_display = false;
                if let Phase::Launching { .. } = self.phase {
                    let then = self.relaunch();
                    self.backoff(now, &format!("display failed: {reason}"), then);
                }
            }
            Input::Reconfigure(cfg) => self.reconfigure(now, *cfg),
            Input::ReloadRefused => {
                self.end_reload("configuration reload refused: the file has errors")
            }
            Input::StateNotSaved { reason } => {
                // Without durable state a TOTP step or a login attempt could be replayed after
                // a crash: nothing queued after the save may run; stop instead.
                self.actions.clear();
                tracing::error!(%reason, "cannot persist state; stopping");
                if self.pid.is_some() {
                    self.push(Action::KillGateway);
                }
                self.timers.clear();
                self.set_phase(Phase::Stopped, "cannot persist state");
                self.push(Action::Exit(1));
            }
            Input::Spawned { pid, with_token } => self.on_spawned(now, pid, with_token),
            Input::SpawnFailed { reason } => {
                self.pid = None;
                let then = self.relaunch();
                self.backoff(now, &format!("spawn failed: {reason}"), then);
            }
            Input::Exited {
                code,
                signal,
                hs_err,
            } => self.on_exited(now, code, signal, hs_err),
            Input::Mapped(info) => self.on_mapped(now, info),
            Input::Unmapped(id) | Input::Destroyed(id) => self.on_gone(id),
            Input::TitleChanged { id, title } => self.on_title(now, id, title),
            Input::Typed { ticket, result } => self.on_typed(now, ticket, result),
            Input::WindowText { window, text } => self.on_text(now, window, text),
            Input::Probe(outcome) => self.on_probe(now, outcome),
            Input::DisplayLost => {
                self.display_up = false;
                if self.pid.is_some()
                    && !matches!(self.phase, Phase::Stopping { .. } | Phase::Stopped)
                {
                    self.push(Action::KillGateway);
                    let then = Next::Launch {
                        use_restart_token: true,
                    };
                    self.set_phase(Phase::Restarting { then }, "the X display died");
                }
            }
            Input::Stop => match &mut self.phase {
                Phase::Stopped => {}
                Phase::Stopping { requests } => {
                    *requests += 1;
                    if *requests <= GRACEFUL_STOP_REQUESTS {
                        tracing::info!(
                            "already stopping cleanly; one more stop request kills the gateway"
                        );
                    } else if self.pid.is_some() {
                        tracing::warn!("stop requested again: killing the gateway");
                        self.push(Action::KillGateway);
                    }
                }
                _ => self.stop(now, 1),
            },
            Input::Restart => {
                if matches!(self.phase, Phase::Stopping { .. } | Phase::Stopped) {
                    return;
                }
                // A person asked: they fixed what made logins stop.
                if self.persisted.credentials_rejected.take().is_some() {
                    self.push(Action::SaveState(self.persisted.clone()));
                }
                self.consecutive_restarts = 0;
                self.restart(now, "restart requested", false);
            }
            Input::GatewayLog(ev) => self.on_gateway_log(now, ev),
            Input::HumanConnected => {
                self.human = true;
                // Nothing may restart or time out under a person's hands.
                for t in [
                    Timer::LoginDeadline,
                    Timer::LaunchDeadline,
                    Timer::IbKeyDeadline,
                    Timer::TokenGrace,
                ] {
                    self.timers.stop(t);
                }
                self.status_line("a person is connected over VNC; ibwarden types nothing");
            }
            Input::HumanLeft => {
                self.human = false;
                for ticket in std::mem::take(&mut self.held) {
                    if let Some(p) = self.pending.get(&ticket) {
                        if self.windows.contains_key(&p.window) {
                            let (window, steps) = (p.window, p.steps.clone());
                            self.push(Action::Type {
                                ticket,
                                window,
                                steps,
                            });
                        }
                    }
                }
                if matches!(self.phase, Phase::LoggingIn | Phase::AwaitApi) {
                    self.timers
                        .set(Timer::LoginDeadline, now.mono + self.cfg.login_timeout);
                }
                if self.login.code_dialog.is_some() {
                    self.timers.set(Timer::TotpDue, now.mono);
                }
                if matches!(
                    self.phase,
                    Phase::LoggingIn | Phase::AwaitApi | Phase::Ready
                ) {
                    self.timers.set(Timer::ProbeDue, now.mono);
                }
                self.status_line("the person left the display; ibwarden resumes");
            }
            Input::Scheduled(ev) => self.on_scheduled(now, ev),
        }
    }

    /// Handle every expired deadline (and the calendar).
    pub fn handle_timeout(&mut self, now: Now) {
        self.poll_schedule(now);
        for timer in self.timers.take_expired(now.mono) {
            self.on_timer(now, timer);
        }
    }

    /// A planned event is due (daily restart, weekly cold restart, closedown).
    fn on_scheduled(&mut self, now: Now, ev: ScheduledEvent) {
        use ScheduledEvent as E;
        if matches!(
            self.phase,
            Phase::Stopping { .. } | Phase::Stopped | Phase::Halted { .. }
        ) {
            return;
        }
        self.consecutive_restarts = 0;
        match ev {
            E::DailyRestart => self.restart(now, "daily restart", false),
            // Sunday's token expiry: a full login with the second factor.
            E::WeeklyColdRestart => self.restart(now, "weekly cold restart", true),
            E::Closedown => self.stop(now, 0),
        }
    }

    /// Fires due calendar events from wall time (DST and clock jumps are the scheduler's
    /// business) and re-arms [`Timer::Calendar`] for the next look at the clock.
    fn poll_schedule(&mut self, now: Now) {
        let Some(sched) = self.scheduler.as_mut() else {
            if let Some(s) = self.cfg.schedule.clone() {
                self.scheduler = Some(Scheduler::new(
                    s,
                    schedule::timestamp_from_unix_ms(now.unix_ms),
                ));
                self.poll_schedule(now);
            }
            return;
        };
        let wall = schedule::timestamp_from_unix_ms(now.unix_ms);
        let polled = sched.poll(wall);
        let next = now.mono + sched.next_check(wall);
        self.timers.set(Timer::Calendar, next);
        for m in &polled.missed {
            tracing::warn!(event = %m.event, "scheduled event missed (clock jump or suspend)");
        }
        if let Some(f) = polled.fired {
            tracing::info!(event = %f.event, "scheduled event");
            self.on_scheduled(now, f.event);
        }
    }

    /// SIGHUP with a valid file: every value takes effect where the core uses it (the
    /// maintenance guard and the calendar, probe cadence, login policy), now.
    fn reconfigure(&mut self, now: Now, mut cfg: CoreConfig) {
        // The jitter stream is the process's, not the file's.
        cfg.seed = self.cfg.seed;
        let probe_changed = cfg.probe_interval != self.cfg.probe_interval;
        if let (Some(sched), Some(s)) = (self.scheduler.as_mut(), cfg.schedule.clone()) {
            sched.set_schedule(s);
        } else {
            self.scheduler = None;
        }
        self.cfg = cfg;
        if probe_changed && self.phase == Phase::Ready && !self.probe_in_flight {
            self.timers
                .set(Timer::ProbeDue, now.mono + self.cfg.probe_interval);
        }
        self.poll_schedule(now);
        self.end_reload("configuration reloaded");
    }

    /// The end of a reload: systemd expects `READY=1`, which is only ever sent while the API
    /// probe passes (fail closed); otherwise the status says what the machine waits for.
    fn end_reload(&mut self, outcome: &str) {
        if self.is_ready() {
            self.push(Action::Status {
                ready: true,
                text: format!("ready ({outcome})"),
                sd_ready: true,
            });
        } else {
            let text = self.reason.clone();
            self.push(Action::Status {
                ready: false,
                text,
                sd_ready: false,
            });
        }
    }

    // ----- lifecycle ---------------------------------------------------------------------

    fn launch(&mut self, now: Now, use_restart_token: bool) {
        if matches!(self.phase, Phase::Stopping { .. } | Phase::Stopped) {
            return;
        }
        self.windows.clear();
        self.pending.clear();
        self.retry_tickets.clear();
        self.login = Login::default();
        self.deferred = None;
        self.probe_failures = 0;
        self.link_lost_since = None;
        self.timers.clear();
        if self.display_up {
            self.push(Action::Launch { use_restart_token });
        } else {
            self.launch_after_display = true;
            self.push(Action::StartDisplay);
        }
        self.timers
            .set(Timer::LaunchDeadline, now.mono + self.cfg.launch_timeout);
        self.poll_schedule(now);
        self.set_phase(
            Phase::Launching { use_restart_token },
            "launching the gateway",
        );
    }

    fn on_spawned(&mut self, now: Now, pid: u32, with_token: bool) {
        self.pid = Some(pid);
        self.login.token_login = with_token;
        self.set_phase(Phase::LoggingIn, "waiting for the login window");
        // After an auto-restart the gateway logs itself in: watch the API from the start.
        // In a normal launch, probing early costs a refused connection per second and
        // catches a gateway that needs no login.
        self.timers
            .set(Timer::ProbeDue, now.mono + self.cfg.probe_retry);
    }

    fn on_exited(&mut self, now: Now, code: Option<i32>, signal: Option<i32>, hs: Option<String>) {
        self.pid = None;
        self.windows.clear();
        self.pending.clear();
        self.probe_in_flight = false;
        for t in [
            Timer::LaunchDeadline,
            Timer::LoginDeadline,
            Timer::ProbeDue,
            Timer::TotpDue,
            Timer::RetryInput,
            Timer::IbKeyDeadline,
            Timer::StopDeadline,
            Timer::CloseGrace,
            Timer::TermGrace,
        ] {
            self.timers.stop(t);
        }
        let how = match (code, signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("signal {s}"),
            (None, None) => "unknown status".to_string(),
        };
        match self.phase {
            Phase::Stopping { .. } | Phase::Stopped => {
                self.set_phase(Phase::Stopped, "stopped");
                self.push(Action::Exit(0));
                return;
            }
            Phase::Halted { .. } => {
                // Stay halted; a person restarts us.
                return;
            }
            Phase::Restarting { then } => {
                // We stopped it on purpose; relaunch after the back-off.
                self.backoff(now, "relaunching", then);
                return;
            }
            _ => {}
        }
        let crashed = code == Some(134) || signal == Some(6) || signal == Some(11) || hs.is_some();
        let reason = if crashed {
            let report = hs.clone().unwrap_or_else(|| "no crash report".into());
            self.push(Action::Notify {
                kind: NoticeKind::Crash,
                severity: Severity::Warning,
                message: format!(
                    "The gateway JVM crashed ({how}); crash report kept at {report}. Restarting it."
                ),
            });
            "jvm crashed"
        } else if code == Some(0) {
            // The nightly auto-restart exits 0 after writing its token: relaunch quickly.
            let nightly = self.cfg.schedule.as_ref().is_some_and(|s| {
                s.is_nightly_reset_exit(super::schedule::timestamp_from_unix_ms(now.unix_ms))
            });
            if nightly {
                self.consecutive_restarts = 0;
                "nightly auto-restart"
            } else {
                "jvm exited cleanly (auto-restart)"
            }
        } else if code == Some(1) {
            "jvm lost its X connection"
        } else if signal.is_some() || matches!(code, Some(137) | Some(143)) {
            "jvm was killed"
        } else {
            "jvm exited"
        };
        self.stats.count_restart(reason);
        tracing::warn!(reason, status = %how, "gateway exited");
        self.backoff(
            now,
            reason,
            Next::Launch {
                use_restart_token: true,
            },
        );
    }

    /// Stop the JVM (if any) and launch again after a back-off.
    fn restart(&mut self, now: Now, reason: &str, full_login: bool) {
        self.stats.count_restart(reason);
        let next = Next::Launch {
            use_restart_token: !full_login,
        };
        if self.pid.is_some() {
            self.close_gateway(now);
            self.set_phase(Phase::Restarting { then: next }, reason);
        } else {
            self.backoff(now, reason, next);
        }
    }

    /// What a failed launch retries: the same kind of launch.
    fn relaunch(&self) -> Next {
        match self.phase {
            Phase::Launching { use_restart_token } => Next::Launch { use_restart_token },
            Phase::Backoff { then } | Phase::Restarting { then } => then,
            _ => Next::Launch {
                use_restart_token: true,
            },
        }
    }

    fn backoff(&mut self, now: Now, reason: &str, then: Next) {
        let delay = self.next_backoff();
        self.consecutive_restarts += 1;
        if self.consecutive_restarts == 5 {
            self.push(Action::Notify {
                kind: NoticeKind::RestartLoop,
                severity: Severity::Warning,
                message: format!(
                    "The gateway has failed to come up {} times in a row (last: {reason}). \
                     ibwarden keeps retrying with back-off; check `ibwarden status` and the logs.",
                    self.consecutive_restarts
                ),
            });
        }
        self.timers.set(Timer::BackoffEnd, now.mono + delay);
        self.set_phase(
            Phase::Backoff { then },
            &format!("{reason}; next attempt in {}s", delay.as_secs()),
        );
    }

    fn next_backoff(&mut self) -> Duration {
        let exp = self.consecutive_restarts.min(16);
        let base = self
            .cfg
            .backoff_initial
            .saturating_mul(1u32 << exp.min(16))
            .min(self.cfg.backoff_max);
        // ±20 % jitter from a seeded xorshift: spreads several instances apart.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let frac = (self.rng % 401) as f64 / 1000.0 - 0.2;
        base.mul_f64(1.0 + frac).min(self.cfg.backoff_max)
    }

    /// Stop for good; `requests` counts this one if a person or systemd asked.
    fn stop(&mut self, now: Now, requests: u32) {
        if matches!(self.phase, Phase::Stopping { .. } | Phase::Stopped) {
            return;
        }
        self.timers.clear();
        if self.pid.is_some() {
            self.close_gateway(now);
            self.timers
                .set(Timer::StopDeadline, now.mono + STOP_DEADLINE);
            self.set_phase(Phase::Stopping { requests }, "stopping the gateway");
        } else {
            self.set_phase(Phase::Stopped, "stopped");
            self.push(Action::Exit(0));
        }
    }

    /// Close the gateway the way a user would: a hard-killed JVM can strand IBKR's
    /// server-side session for a long time. Escalates on [`Timer::CloseGrace`] and
    /// [`Timer::TermGrace`].
    fn close_gateway(&mut self, now: Now) {
        match self.login.frame {
            Some(main_window) => {
                self.push(Action::CloseGateway { main_window });
                self.timers.set(Timer::CloseGrace, now.mono + CLOSE_GRACE);
            }
            None => {
                self.push(Action::TerminateGateway);
                self.timers.set(Timer::TermGrace, now.mono + TERM_GRACE);
            }
        }
    }

    fn halt(&mut self, reason: &str, kind: NoticeKind, message: String) {
        self.timers.clear();
        self.push(Action::Notify {
            kind,
            severity: Severity::Critical,
            message,
        });
        self.set_phase(Phase::Halted { why: kind }, reason);
    }

    // ----- windows -------------------------------------------------------------------------

    fn on_mapped(&mut self, now: Now, info: WindowInfo) {
        // Only the JVM's windows (its pid or a descendant's: a launcher may fork it).
        let Some(jvm) = self.pid else {
            return;
        };
        if info.pid != Some(jvm) && !info.ancestry.contains(&jvm) {
            tracing::debug!(window = info.id, title = %info.title, pid = ?info.pid,
                "ignoring a window that is not the gateway's");
            return;
        }
        if matches!(self.phase, Phase::Stopping { .. } | Phase::Stopped) {
            self.exit_confirm_while_stopping(info);
            return;
        }
        if info.width <= dialog::STUB_MAX_SIDE || info.height <= dialog::STUB_MAX_SIDE {
            // AWT maps 1x1 helper windows of the same process: not dialogs, never reported.
            tracing::debug!(window = info.id, title = %info.title, "stub window ignored");
            return;
        }
        let (kind, needs_text) = dialog::classify(&info.title, info.transient_for.is_some());
        tracing::debug!(window = info.id, title = %info.title, ?kind, "window mapped");
        let id = info.id;
        let reading = needs_text && self.cfg.content_reader;
        self.windows.insert(
            id,
            Window {
                info,
                kind,
                reading,
                handled: false,
            },
        );
        if reading {
            self.read_text(id);
        } else {
            self.on_window(now, id, kind, None);
        }
    }

    fn on_text(&mut self, now: Now, window: u32, text: Option<String>) {
        let Some(w) = self.windows.get_mut(&window) else {
            return;
        };
        if !w.reading {
            return;
        }
        w.reading = false;
        if self.login.tws.reads(window) {
            self.tws_frame_text(now, window, text);
            return;
        }
        let kind = match &text {
            Some(t) => dialog::refine(w.kind, t),
            None => w.kind,
        };
        w.kind = kind;
        tracing::debug!(window, ?kind, "window text read");
        self.on_window(now, window, kind, text.as_deref());
    }

    fn on_gone(&mut self, id: u32) {
        if self.windows.remove(&id).is_some() && self.login.code_dialog == Some(id) {
            self.login.code_dialog = None;
            self.timers.stop(Timer::TotpDue);
        }
        if self.login.frame == Some(id) {
            self.login.frame = None;
        }
    }

    fn on_title(&mut self, now: Now, id: u32, title: String) {
        let Some(w) = self.windows.get_mut(&id) else {
            return;
        };
        let (kind, _) = dialog::classify(&title, w.info.transient_for.is_some());
        w.info.title = title;
        if Some(id) != self.login.frame {
            return;
        }
        match kind {
            DialogKind::Progress => {
                self.login.saw_progress = true;
                self.login.last_progress = Some(w.info.title.clone());
                let line = format!("gateway: {}", w.info.title);
                self.status_line(&line);
            }
            DialogKind::GatewayFrame | DialogKind::TwsMainWindow
                if self.login.saw_progress && self.phase == Phase::LoggingIn =>
            {
                // The frame becomes the main window after `Starting application...` (IBC's
                // login-complete signal); from an earlier progress title it went back to the
                // login window: the attempt ended without an error dialog. The title can
                // change faster than the watcher reads it, so `Starting application...` may
                // never be seen: after `Initializing environment...` (IBKR accepted the login)
                // nothing but success follows without a dialog; the API probe confirms it and
                // the login deadline covers the rest.
                let done = matches!(
                    self.login.last_progress.as_deref(),
                    Some("Starting application...") | Some("Initializing environment...")
                );
                if done {
                    self.await_api(now);
                } else {
                    self.login_reset(now);
                }
            }
            _ => {}
        }
    }

    fn on_window(&mut self, now: Now, id: u32, kind: DialogKind, text: Option<&str>) {
        use DialogKind as K;
        match kind {
            K::TwsLoginFrame if self.tws_login_frame_again(now, id) => {}
            K::GatewayFrame | K::TwsLoginFrame => {
                if self.login.frame.is_none() && self.phase == Phase::LoggingIn {
                    self.login.frame = Some(id);
                    self.timers.stop(Timer::LaunchDeadline);
                    self.timers
                        .set(Timer::LoginDeadline, now.mono + self.cfg.login_timeout);
                    if self.login.submitted {
                        return;
                    }
                    if self.login.token_login {
                        // The gateway logs itself in with its auto-restart token; type
                        // nothing unless it stays on the login frame.
                        self.timers.set(Timer::TokenGrace, now.mono + TOKEN_GRACE);
                        self.status_line("auto-restart: the gateway logs in with its token");
                        return;
                    }
                    self.submit_credentials(now);
                }
            }
            K::TwsMainWindow => self.tws_main_window(now, id),
            K::Progress | K::ShutdownProgress => {}
            K::IbKeyPrompt => {
                if self.cfg.trading_mode == TradingMode::Paper {
                    self.leave_alone(now, id, "a second-factor dialog in paper mode");
                    return;
                }
                // IBKR chose (or the person configured) a push to the phone: no code to type.
                self.leave_alone(now, id, "IB Key push: waiting for the person");
                self.ib_key_wait(now);
            }
            K::SecondFactor | K::CodeEntry => {
                if self.cfg.trading_mode == TradingMode::Paper {
                    self.leave_alone(now, id, "a second-factor dialog in paper mode");
                    return;
                }
                if self.cfg.second_factor == SecondFactor::IbKey {
                    self.ib_key_wait(now);
                } else {
                    self.type_code(now, id);
                }
            }
            K::DeviceChooser => {
                if self.login.chose_device {
                    // Swing has not repainted the dialog yet, or the choice did not take.
                    if self.login.rereads < 5 {
                        self.login.rereads += 1;
                        if let Some(w) = self.windows.get_mut(&id) {
                            w.reading = true;
                            w.kind = DialogKind::SecondFactor;
                        }
                        self.read_text(id);
                    } else {
                        self.leave_alone(now, id, "the device chooser came back");
                    }
                    return;
                }
                self.login.chose_device = true;
                // JList type-ahead selects the first entry starting with the typed prefix
                // (`reference/x11-java.md` §3.3); keys must be ≥5 ms apart and a pause must
                // follow the selection before Enter presses OK.
                let prefix: String = self
                    .cfg
                    .second_factor
                    .label()
                    .split_whitespace()
                    .next()
                    .unwrap_or("M")
                    .to_string();
                // The dialog then shows the code entry in place (no new window): read it
                // again once the keys are in.
                self.type_into_then_reread(
                    id,
                    vec![
                        KeyStep::Text(prefix),
                        KeyStep::PauseMs(200),
                        KeyStep::Key(NamedKey::Enter),
                    ],
                );
                if self.cfg.second_factor == SecondFactor::IbKey {
                    self.ib_key_wait(now);
                }
            }
            K::PaperWarning => self.answer(id, Answer::Default),
            K::Warning => {
                if self.cfg.trading_mode == TradingMode::Paper && !self.cfg.content_reader {
                    // Titles only: in paper mode the `Warning` dialog is the paper notice.
                    self.answer(id, Answer::Default);
                } else {
                    self.unknown(now, id, text);
                }
            }
            K::ExistingSession => self.existing_session(now, id),
            K::LoginHandoff => match self.cfg.existing_session {
                SessionPolicy::Primary => self.answer(id, Answer::Default),
                // The handoff confirms the choice made at `Existing session detected`. IBC
                // exits 1110 here for primaryoverride although it chose to continue (its
                // comment assumes only primary continues): confirming is what that choice meant.
                SessionPolicy::PrimaryOverride if self.login.continued => {
                    self.answer(id, Answer::Default)
                }
                SessionPolicy::Manual => self.manual_session(now, id),
                SessionPolicy::PrimaryOverride | SessionPolicy::Secondary => {
                    // IBC exits here (1110); we let the other session have it and wait.
                    self.answer(id, Answer::Second);
                    self.halt(
                        "another session holds the account",
                        NoticeKind::SessionConflict,
                        "Another session holds the IBKR account and the session policy lets it \
                         keep it. Run `ibwarden restart` when the gateway should take over."
                            .into(),
                    );
                }
            },
            K::ReloginRequired => {
                // Another session took ours: a takeover for the ping-pong guard.
                if self.login.was_ready && self.takeover_storm(now) {
                    self.defer(now, id, Answer::Default, Phase::AwaitApi);
                    return;
                }
                self.answer(id, Answer::Default);
                if matches!(self.phase, Phase::Ready | Phase::AwaitApi) {
                    self.relogin_pressed(now);
                }
            }
            K::LoginFailed => {
                self.answer(id, Answer::Default);
                self.persisted.credentials_rejected = Some(now.unix_ms / 1000);
                self.push(Action::SaveState(self.persisted.clone()));
                self.halt(
                    "invalid username or password",
                    NoticeKind::LoginFailed,
                    "IBKR rejected the username or password. ibwarden stopped logging in so the \
                     account is not locked. Fix the secret (`ibwarden secret set password`) and \
                     run `ibwarden restart`."
                        .into(),
                );
            }
            K::TooManyAttempts => {
                let wait = text.and_then(dialog::parse_lockout_wait).unwrap_or(300) + 3;
                self.answer(id, Answer::Default);
                self.push(Action::Notify {
                    kind: NoticeKind::LockoutGuard,
                    severity: Severity::Warning,
                    message: format!(
                        "IBKR reports too many failed login attempts; waiting {wait} s before \
                         the next one."
                    ),
                });
                self.timers
                    .set(Timer::BackoffEnd, now.mono + Duration::from_secs(wait));
                self.timers.stop(Timer::LoginDeadline);
                self.set_phase(
                    Phase::Backoff {
                        then: Next::Relogin,
                    },
                    &format!("IBKR rate limit: waiting {wait} s"),
                );
            }
            K::LoginError => {
                // IBC cold-restarts here: the JVM's state after a login error is unknown.
                self.answer(id, Answer::Default);
                self.restart(now, "login error", false);
            }
            K::ConnectionFailed => {
                // OK brings the login window back: log in again in the same JVM after an
                // exponential back-off (a new JVM re-arms IBKR's limiter and costs a minute).
                self.answer(id, Answer::Default);
                self.timers.stop(Timer::LoginDeadline);
                self.timers.stop(Timer::TotpDue);
                self.login.code_dialog = None;
                self.login.submitted = false;
                self.backoff(now, "connection to the IBKR server failed", Next::Relogin);
            }
            K::TokenExpired => {
                self.answer(id, Answer::Default);
                self.timers.stop(Timer::TokenGrace);
                self.login.token_login = false;
                if self.phase == Phase::LoggingIn
                    && self.login.frame.is_some()
                    && !self.login.submitted
                {
                    // The login window waits behind the dialog: a full login, second factor
                    // included, in this JVM.
                    tracing::warn!("the auto-restart token expired; logging in fully");
                    self.submit_credentials(now);
                } else {
                    self.restart(now, "security token expired", true);
                }
            }
            K::GatewayMessage | K::ProgressModal => {
                // Its OK cancels the login: never press it.
                self.leave_alone(now, id, "a `Gateway` progress dialog");
            }
            K::PasswordNotice => {
                let days = text.and_then(dialog::parse_password_days);
                let msg = match days {
                    Some(d) => format!(
                        "The IBKR password expires in {d} days. Change it in the Client Portal, \
                         then `ibwarden secret set password`."
                    ),
                    None => "IBKR shows a password notice. Change the password in the Client \
                             Portal, then `ibwarden secret set password`."
                        .to_string(),
                };
                self.push(Action::Notify {
                    kind: NoticeKind::PasswordExpiring,
                    severity: Severity::Warning,
                    message: msg,
                });
                self.answer(id, Answer::Default);
            }
            K::TipOfTheDay | K::NewerVersion => self.answer(id, Answer::Default),
            K::AcceptIncoming => {
                self.leave_alone(now, id, "incoming API connection prompt (manual)");
            }
            K::ExitConfirm => {
                if matches!(
                    self.phase,
                    Phase::Stopping { .. } | Phase::Restarting { .. }
                ) {
                    self.answer(id, Answer::Default);
                } else {
                    self.leave_alone(now, id, "exit confirmation we did not ask for");
                }
            }
            K::BidAskNotice | K::ApiWriteAccess => self.tws_dialog(now, id, kind),
            K::Unknown => self.unknown(now, id, text),
        }
    }

    /// IBC's `ExistingSessionDetectedDialogHandler` (`reference/ibc.md` §1.7): `logged_in` is
    /// IBC's `LOGGED_IN`, i.e. this JVM has completed a login (the dialog then answers a
    /// re-login after another session displaced ours); `existing_seen` counts per JVM like
    /// IBC's per-run flag.
    fn existing_session(&mut self, now: Now, id: u32) {
        self.login.existing_seen += 1;
        let logged_in = self.login.was_ready;
        let answer = match self.cfg.existing_session {
            SessionPolicy::Manual => None,
            SessionPolicy::Secondary => Some(Answer::Second),
            SessionPolicy::Primary | SessionPolicy::PrimaryOverride if !logged_in => {
                if self.login.existing_seen == 1 {
                    Some(Answer::Default)
                } else {
                    Some(Answer::Second)
                }
            }
            SessionPolicy::Primary => Some(Answer::Default),
            SessionPolicy::PrimaryOverride => Some(Answer::Second),
        };
        match answer {
            Some(Answer::Default) if self.takeover_storm(now) => {
                self.login.continued = true;
                let then = if matches!(self.phase, Phase::AwaitApi | Phase::Ready) {
                    Phase::AwaitApi
                } else {
                    Phase::LoggingIn
                };
                self.defer(now, id, Answer::Default, then);
            }
            Some(a) => {
                tracing::info!(policy = ?self.cfg.existing_session, answer = ?a, "existing session");
                self.answer(id, a);
                if a == Answer::Default {
                    self.login.continued = true;
                }
                if a == Answer::Second {
                    self.halt(
                        "another session holds the account",
                        NoticeKind::SessionConflict,
                        "Another IBKR session holds the account and the session policy yields \
                         to it. Run `ibwarden restart` when the gateway should take over."
                            .into(),
                    );
                }
            }
            None => self.manual_session(now, id),
        }
    }

    /// `manual`: a person answers the session dialog on the gateway's display. The login
    /// deadline stops (a relaunch would only bring the dialog back and spend the failed-login
    /// budget); whatever the person chooses, the machine follows the windows from there.
    fn manual_session(&mut self, now: Now, id: u32) {
        self.leave_alone(now, id, "session dialog: manual policy");
        self.timers.stop(Timer::LoginDeadline);
        let title = self
            .windows
            .get(&id)
            .map(|w| w.info.title.clone())
            .unwrap_or_default();
        self.push(Action::Notify {
            kind: NoticeKind::SessionConflict,
            severity: Severity::Critical,
            message: format!(
                "The gateway shows {title:?}: another IBKR session uses the account. The session \
                 policy is manual: answer the dialog on the gateway's display, or set \
                 [login] existing_session."
            ),
        });
        self.status_line("another session uses the account: waiting for a person (manual policy)");
    }

    /// Records a session takeover and says whether the ping-pong guard trips: `pingpong_max`
    /// takeovers within `pingpong_window`.
    fn takeover_storm(&mut self, now: Now) -> bool {
        let window = self.cfg.pingpong_window;
        while let Some(&t) = self.takeovers.front() {
            if now.mono.duration_since(t) >= window {
                self.takeovers.pop_front();
            } else {
                break;
            }
        }
        if self.takeovers.is_empty() {
            self.pingpong_notified = false;
        }
        self.takeovers.push_back(now.mono);
        self.takeovers.len() as u32 >= self.cfg.pingpong_max.max(1)
    }

    /// Holds a session dialog back for `pingpong_backoff`, telling the person once.
    fn defer(&mut self, now: Now, id: u32, answer: Answer, then: Phase) {
        let wait = self.cfg.pingpong_backoff;
        if !self.pingpong_notified {
            self.pingpong_notified = true;
            self.push(Action::Notify {
                kind: NoticeKind::SessionConflict,
                severity: Severity::Warning,
                message: format!(
                    "Another IBKR session keeps taking the account ({} takeovers within {} s). \
                     ibwarden waits {} s before taking it back. Log out the other session \
                     (IBKR Mobile, Client Portal, another gateway) or set [login] \
                     existing_session = \"secondary\".",
                    self.takeovers.len(),
                    self.cfg.pingpong_window.as_secs(),
                    wait.as_secs()
                ),
            });
        }
        if let Some(w) = self.windows.get_mut(&id) {
            w.handled = true;
        }
        tracing::warn!(
            window = id,
            wait_s = wait.as_secs(),
            "session ping-pong: holding back"
        );
        self.deferred = Some(Deferred {
            window: id,
            answer,
            then,
        });
        self.timers.stop(Timer::LoginDeadline);
        self.timers.set(Timer::DeferredAnswer, now.mono + wait);
        self.set_phase(
            Phase::Backoff {
                then: Next::Relogin,
            },
            &format!(
                "another session keeps taking the account; answering in {} s",
                wait.as_secs()
            ),
        );
    }

    /// `Re-login` was pressed after a session drop: the gateway logs in again by itself.
    fn relogin_pressed(&mut self, now: Now) {
        self.login.saw_progress = false;
        self.set_phase(Phase::AwaitApi, "re-login after a session drop");
        self.timers
            .set(Timer::LoginDeadline, now.mono + self.cfg.login_timeout);
        // Probing may have lapsed (a held-back answer): the API decides when it is ready.
        if !self.probe_in_flight {
            self.timers
                .set(Timer::ProbeDue, now.mono + self.cfg.probe_retry);
        }
    }

    fn unknown(&mut self, now: Now, id: u32, text: Option<&str>) {
        let Some(w) = self.windows.get(&id) else {
            return;
        };
        let msg = format!(
            "The gateway shows a dialog ibwarden does not know: title {:?}, {}x{}{}. It was left \
             alone; a screenshot is in the state directory.",
            w.info.title,
            w.info.width,
            w.info.height,
            text.map(|t| format!(", text {:?}", t.trim()))
                .unwrap_or_default()
        );
        self.push(Action::Screenshot {
            window: Some(id),
            reason: "unknown-dialog",
        });
        self.push(Action::Notify {
            kind: NoticeKind::UnknownDialog,
            severity: Severity::Warning,
            message: msg,
        });
        self.leave_alone(now, id, "unknown dialog");
    }

    fn leave_alone(&mut self, _now: Now, id: u32, why: &str) {
        if let Some(w) = self.windows.get_mut(&id) {
            w.handled = true;
            tracing::info!(window = id, title = %w.info.title, why, "dialog left alone");
        }
    }

    fn answer(&mut self, id: u32, answer: Answer) {
        if let Some(w) = self.windows.get_mut(&id) {
            w.handled = true;
            tracing::info!(window = id, title = %w.info.title, ?answer, "answering dialog");
        }
        self.type_into(id, answer.keys());
    }

    // ----- login -------------------------------------------------------------------------

    fn submit_credentials(&mut self, now: Now) {
        let Some(frame) = self.login.frame else {
            return;
        };
        if self.persisted.credentials_rejected.is_some() {
            // Rejected before (maybe by an earlier run): never retry a wrong password.
            self.halt(
                "invalid username or password (rejected earlier)",
                NoticeKind::LoginFailed,
                "IBKR rejected the username or password earlier, so ibwarden does not type it \
                 again. Fix the secret (`ibwarden secret set password`), then run \
                 `ibwarden restart`."
                    .into(),
            );
            return;
        }
        // Never a full login inside IBKR's nightly maintenance (+ delay): peers saw a login
        // 8 s after the reset cascade into a 35-60 minute lockout (`peers.md` §16).
        if let Some(until) = self.cfg.schedule.as_ref().and_then(|s| {
            s.full_login_blocked_until(super::schedule::timestamp_from_unix_ms(now.unix_ms))
        }) {
            let wait_ms = (until.as_millisecond() - now.unix_ms as i64).max(1000) as u64;
            let at = self
                .cfg
                .schedule
                .as_ref()
                .map(|s| s.format_local(until))
                .unwrap_or_default();
            self.timers.stop(Timer::LoginDeadline);
            self.timers
                .set(Timer::BackoffEnd, now.mono + Duration::from_millis(wait_ms));
            self.set_phase(
                Phase::Backoff {
                    then: Next::Relogin,
                },
                &format!("inside IBKR's nightly maintenance; full login at {at}"),
            );
            return;
        }
        // The failed-login budget, across restarts of everything.
        let now_s = now.unix_ms / 1000;
        self.persisted.failed_logins.retain(|&t| t + 3600 > now_s);
        if self.persisted.failed_logins.len() as u32 >= self.cfg.max_failed_logins_per_hour {
            let oldest = self
                .persisted
                .failed_logins
                .iter()
                .min()
                .copied()
                .unwrap_or(now_s);
            let wait = (oldest + 3600).saturating_sub(now_s).max(1);
            self.push(Action::Notify {
                kind: NoticeKind::LockoutGuard,
                severity: Severity::Warning,
                message: format!(
                    "{} logins failed in the last hour; ibwarden waits {wait} s before the next \
                     one so IBKR does not lock the account.",
                    self.persisted.failed_logins.len()
                ),
            });
            self.timers.stop(Timer::LoginDeadline);
            self.timers
                .set(Timer::BackoffEnd, now.mono + Duration::from_secs(wait));
            self.set_phase(
                Phase::Backoff {
                    then: Next::Relogin,
                },
                &format!("failed-login budget spent; next login in {wait} s"),
            );
            return;
        }
        self.persisted.failed_logins.push(now_s);
        self.push(Action::SaveState(self.persisted.clone()));
        self.login.submitted = true;
        self.login.saw_progress = false;
        self.login.codes_typed = 0;
        self.login.pushed = false;
        self.login.chose_device = false;
        self.stats.logins += 1;
        let steps = self.credential_steps();
        self.type_into(frame, steps);
        self.tws_submitted();
        self.set_phase(Phase::LoggingIn, "credentials submitted");
    }

    /// Keys for the login frame, from its focus order (`tests/simulator/README.md`): focus
    /// starts in the username field; Shift+Tab walks back over `Paper Trading` and `Live
    /// Trading` (toggles in a group: Space selects the focused one). Select-all before each
    /// field makes a retry after lost focus idempotent.
    fn credential_steps(&self) -> Vec<KeyStep> {
        use KeyStep::*;
        use NamedKey::*;
        let mut steps = Vec::new();
        match self.cfg.trading_mode {
            TradingMode::Live => steps.extend([
                Key(ShiftTab),
                Key(ShiftTab),
                PauseMs(50),
                Key(Space),
                Key(Tab),
                Key(Tab),
            ]),
            TradingMode::Paper => steps.extend([Key(ShiftTab), PauseMs(50), Key(Space), Key(Tab)]),
        }
        steps.extend([
            PauseMs(100),
            Key(SelectAll),
            Secret(SecretRef::Username),
            Key(Tab),
            PauseMs(100),
            Key(SelectAll),
            Secret(SecretRef::Password),
            PauseMs(150),
            Key(Enter),
        ]);
        steps
    }

    fn type_code(&mut self, now: Now, dialog: u32) {
        if self.login.codes_typed > 0 {
            // The code dialog came back: the last code was rejected.
            if self.login.codes_typed > self.cfg.max_code_rejections {
                self.halt(
                    "codes rejected",
                    NoticeKind::CodeRejected,
                    format!(
                        "IBKR rejected {} authenticator codes in a row. Check the clock \
                         (`ibwarden check`) and the activation code (`ibwarden totp` against the \
                         phone), then run `ibwarden restart`.",
                        self.login.codes_typed
                    ),
                );
                return;
            }
            tracing::warn!(
                rejected = self.login.codes_typed,
                "authenticator code rejected; waiting for the next step"
            );
        }
        self.login.code_dialog = Some(dialog);
        let plan = totp::plan(
            now.unix_ms,
            self.cfg.min_code_validity,
            self.persisted.last_totp_step,
        );
        if plan.wait.is_zero() {
            self.send_code(now, dialog, plan.step);
        } else {
            tracing::info!(
                wait_ms = plan.wait.as_millis() as u64,
                "waiting for a fresh authenticator code"
            );
            self.timers.set(Timer::TotpDue, now.mono + plan.wait);
            // A deliberate wait does not count against the login deadline.
            if let Some(d) = self.timers.get(Timer::LoginDeadline) {
                self.timers.set(Timer::LoginDeadline, d + plan.wait);
            }
            self.status_line("waiting for a fresh authenticator code");
        }
    }

    fn send_code(&mut self, now: Now, dialog: u32, step: u64) {
        let plan = totp::plan(
            now.unix_ms,
            self.cfg.min_code_validity,
            self.persisted.last_totp_step,
        );
        if plan.step != step || !plan.wait.is_zero() {
            // Woken early or late: re-plan.
            self.timers.set(Timer::TotpDue, now.mono + plan.wait);
            return;
        }
        self.persisted.last_totp_step = Some(step);
        self.push(Action::SaveState(self.persisted.clone()));
        self.login.codes_typed += 1;
        self.login.code_dialog = None;
        self.type_into(
            dialog,
            vec![
                KeyStep::Key(NamedKey::SelectAll),
                KeyStep::Secret(SecretRef::TotpCode { step }),
                KeyStep::PauseMs(150),
                KeyStep::Key(NamedKey::Enter),
            ],
        );
        self.status_line("authenticator code sent");
    }

    fn ib_key_wait(&mut self, now: Now) {
        self.login.pushed = true;
        if self.timers.get(Timer::IbKeyDeadline).is_some() {
            return;
        }
        self.push(Action::Notify {
            kind: NoticeKind::HumanApproval,
            severity: Severity::Critical,
            message: format!(
                "IBKR sent an IB Key push: approve the login on your phone within {} s.",
                self.cfg.ib_key_wait.as_secs()
            ),
        });
        self.timers
            .set(Timer::IbKeyDeadline, now.mono + self.cfg.ib_key_wait);
        if let Some(d) = self.timers.get(Timer::LoginDeadline) {
            self.timers
                .set(Timer::LoginDeadline, d.max(now.mono + self.cfg.ib_key_wait));
        }
        self.status_line("waiting for IB Key approval on the phone");
    }

    fn await_api(&mut self, now: Now) {
        self.set_phase(Phase::AwaitApi, "logged in; waiting for the API");
        if !self.probe_in_flight {
            self.timers.set(Timer::ProbeDue, now.mono);
        }
    }

    /// The gateway went back to its login window without saying why (2FA timed out, IB Key
    /// not approved, a login silently dropped by IBKR). Log in again in the same JVM after a
    /// growing wait: a new JVM re-arms IBKR's limiter, and quick retries get punished.
    fn login_reset(&mut self, now: Now) {
        self.login.resets += 1;
        self.login.submitted = false;
        self.login.saw_progress = false;
        self.login.last_progress = None;
        self.login.code_dialog = None;
        for t in [Timer::LoginDeadline, Timer::TotpDue, Timer::IbKeyDeadline] {
            self.timers.stop(t);
        }
        // IBKR never rejected the credentials (no error dialog: a silent drop), so this
        // attempt is not a failed login for the budget. An IB Key push nobody approved
        // stays counted: each attempt is a prompt on the person's phone, and the budget is
        // what caps them per hour (no prompt storm).
        if !self.login.pushed && self.persisted.failed_logins.pop().is_some() {
            self.push(Action::SaveState(self.persisted.clone()));
        }
        if self.login.resets > MAX_LOGIN_RESETS {
            self.halt(
                "IBKR keeps dropping the login",
                NoticeKind::RestartLoop,
                format!(
                    "IBKR dropped {} logins in a row without an error. Another session probably \
                     holds the account's login slot: open IBKR Mobile once to free it, then run \
                     `ibwarden restart`.",
                    self.login.resets - 1
                ),
            );
            return;
        }
        let exp = (self.login.resets - 1).min(4);
        let wait = self
            .cfg
            .relogin_backoff
            .saturating_mul(1 << exp)
            .min(Duration::from_secs(600));
        tracing::warn!(
            resets = self.login.resets,
            wait_s = wait.as_secs(),
            "back at the login window without an error; logging in again later"
        );
        if self.login.resets == 3 {
            self.push(Action::Notify {
                kind: NoticeKind::RestartLoop,
                severity: Severity::Warning,
                message: "IBKR keeps dropping the login without an error. If another session \
                          (IBKR Mobile, Client Portal) is stuck, open IBKR Mobile once to free \
                          it; ibwarden keeps retrying with growing waits."
                    .into(),
            });
        }
        self.timers.set(Timer::BackoffEnd, now.mono + wait);
        self.set_phase(
            Phase::Backoff {
                then: Next::Relogin,
            },
            &format!(
                "login went back to the login window; next login in {} s",
                wait.as_secs()
            ),
        );
    }

    fn relogin(&mut self, now: Now) {
        // Re-drive Log In on the same login frame (a new JVM re-arms IBKR's limiter).
        if self.pid.is_none() {
            self.launch(now, false);
            return;
        }
        match self.login.frame {
            Some(_) => {
                self.set_phase(Phase::LoggingIn, "logging in again");
                self.login.submitted = false;
                self.timers
                    .set(Timer::LoginDeadline, now.mono + self.cfg.login_timeout);
                self.submit_credentials(now);
            }
            None => self.restart(now, "login window gone", false),
        }
    }

    // ----- typing --------------------------------------------------------------------------

    fn type_into(&mut self, window: u32, steps: Vec<KeyStep>) {
        self.type_with(window, steps, false);
    }

    fn type_into_then_reread(&mut self, window: u32, steps: Vec<KeyStep>) {
        self.type_with(window, steps, true);
    }

    fn type_with(&mut self, window: u32, steps: Vec<KeyStep>, reread: bool) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.pending.insert(
            ticket,
            PendingType {
                window,
                steps: steps.clone(),
                tries: 1,
                reread,
            },
        );
        if self.human {
            self.held.push(ticket);
            return;
        }
        self.push(Action::Type {
            ticket,
            window,
            steps,
        });
    }

    /// A line of `launcher.log`: IBKR's side of the login, which titles cannot show.
    fn on_gateway_log(&mut self, now: Now, ev: LauncherEvent) {
        use LauncherEvent as L;
        match ev {
            // `AuthTimeoutMonitor-CCP: Timeout!` with no `NS_AUTH_START`: IBKR dropped the
            // login without a word (a concurrent session holds the slot). Log in again in
            // the same JVM on the growing ladder.
            L::SilentDrop if self.phase == Phase::LoggingIn && self.login.submitted => {
                tracing::warn!("IBKR dropped the login silently (launcher.log)");
                self.login_reset(now);
            }
            // `Login has completed`: the gateway's own word, independent of title timing.
            L::LoginCompleted if self.phase == Phase::LoggingIn => {
                tracing::info!("the gateway reports the login completed (launcher.log)");
                self.await_api(now);
            }
            other => tracing::debug!(event = ?other, "launcher.log"),
        }
    }

    fn on_typed(&mut self, now: Now, ticket: u64, result: TypeResult) {
        let Some(mut p) = self.pending.remove(&ticket) else {
            return;
        };
        if self.tws_typed(now, ticket, &result) {
            return;
        }
        match result {
            TypeResult::Done => {
                if p.reread {
                    if let Some(w) = self.windows.get_mut(&p.window) {
                        w.reading = true;
                        w.kind = DialogKind::SecondFactor;
                        self.read_text(p.window);
                    }
                }
            }
            TypeResult::FocusLost if p.tries < 6 && self.windows.contains_key(&p.window) => {
                tracing::warn!(window = p.window, tries = p.tries, "focus lost; retrying");
                p.tries += 1;
                self.pending.insert(ticket, p);
                if !self.retry_tickets.contains(&ticket) {
                    self.retry_tickets.push(ticket);
                }
                self.timers
                    .set(Timer::RetryInput, now.mono + Duration::from_millis(300));
            }
            TypeResult::FocusLost | TypeResult::Failed(_) => {
                tracing::warn!(window = p.window, ?result, "keyboard input failed");
                if self.windows.contains_key(&p.window) {
                    self.push(Action::Screenshot {
                        window: None,
                        reason: "input-failed",
                    });
                }
            }
        }
    }

    // ----- probing -------------------------------------------------------------------------

    fn on_probe(&mut self, now: Now, outcome: ProbeOutcome) {
        self.probe_in_flight = false;
        match (&self.phase, outcome) {
            (
                Phase::LoggingIn | Phase::AwaitApi,
                ProbeOutcome::Up {
                    link_lost: true, ..
                },
            ) => {
                // The API still listens after a session drop, but the gateway is not logged
                // in to IBKR until the link is back (a re-login in progress).
                self.timers
                    .set(Timer::ProbeDue, now.mono + self.cfg.probe_retry);
            }
            (
                Phase::LoggingIn | Phase::AwaitApi,
                ProbeOutcome::Up {
                    server_version,
                    accounts,
                    ..
                },
            ) => {
                self.timers.stop(Timer::LoginDeadline);
                self.timers.stop(Timer::LaunchDeadline);
                self.timers.stop(Timer::IbKeyDeadline);
                // The login succeeded: it is not a failed one.
                if self.login.submitted {
                    self.persisted.failed_logins.pop();
                    self.push(Action::SaveState(self.persisted.clone()));
                }
                let recovered = self.ready_once && self.consecutive_restarts > 0;
                self.consecutive_restarts = 0;
                self.probe_failures = 0;
                self.ready_once = true;
                self.login.was_ready = true;
                self.stats.readies += 1;
                self.stats.last_ready_unix_ms = Some(now.unix_ms);
                self.phase = Phase::Ready;
                self.reason.clear();
                self.push(Action::Status {
                    ready: true,
                    text: format!(
                        "ready: API up (server version {server_version}, accounts {})",
                        accounts.join(",")
                    ),
                    sd_ready: false,
                });
                if recovered {
                    self.push(Action::Notify {
                        kind: NoticeKind::Recovered,
                        severity: Severity::Info,
                        message: "The gateway is logged in and its API answers again.".into(),
                    });
                }
                self.timers
                    .set(Timer::ProbeDue, now.mono + self.cfg.probe_interval);
            }
            (Phase::LoggingIn | Phase::AwaitApi, ProbeOutcome::Down { .. }) => {
                self.timers
                    .set(Timer::ProbeDue, now.mono + self.cfg.probe_retry);
            }
            (Phase::Ready, ProbeOutcome::Up { link_lost, .. }) => {
                self.probe_failures = 0;
                if link_lost {
                    if self.link_lost_since.is_none() {
                        let line = format!(
                            "ready, but the gateway's link to IBKR is down (1100); restart if it \
                             lasts {} s",
                            self.cfg.link_lost_grace.as_secs()
                        );
                        tracing::warn!("IB link lost (1100)");
                        self.status_line(&line);
                    }
                    let since = *self.link_lost_since.get_or_insert(now.mono);
                    if now.mono.duration_since(since) >= self.cfg.link_lost_grace {
                        self.restart(now, "IB link lost too long", false);
                        return;
                    }
                    // Probe again soon: the link's return is what clients wait for.
                    self.timers.set(
                        Timer::ProbeDue,
                        now.mono + self.cfg.probe_interval.min(Duration::from_secs(10)),
                    );
                    return;
                } else if self.link_lost_since.take().is_some() {
                    tracing::info!("IB link restored");
                    self.reason.clear();
                    self.push(Action::Status {
                        ready: true,
                        text: "ready: the gateway's link to IBKR is back".into(),
                        sd_ready: false,
                    });
                }
                self.timers
                    .set(Timer::ProbeDue, now.mono + self.cfg.probe_interval);
            }
            (Phase::Ready, ProbeOutcome::Down { reason }) => {
                self.probe_failures += 1;
                tracing::warn!(failures = self.probe_failures, %reason, "API probe failed");
                if self.probe_failures >= self.cfg.failures_before_restart {
                    self.push(Action::Status {
                        ready: false,
                        text: format!("API not answering: {reason}"),
                        sd_ready: false,
                    });
                    self.restart(now, "API stopped answering", false);
                } else {
                    self.timers
                        .set(Timer::ProbeDue, now.mono + self.cfg.probe_retry);
                }
            }
            _ => {}
        }
    }

    // ----- timers --------------------------------------------------------------------------

    fn on_timer(&mut self, now: Now, timer: Timer) {
        match timer {
            Timer::LaunchDeadline => {
                if matches!(self.phase, Phase::Launching { .. } | Phase::LoggingIn)
                    && self.login.frame.is_none()
                {
                    self.push(Action::Screenshot {
                        window: None,
                        reason: "no-login-window",
                    });
                    self.restart(now, "login window did not appear", false);
                }
            }
            Timer::LoginDeadline => {
                if matches!(self.phase, Phase::LoggingIn | Phase::AwaitApi) {
                    self.push(Action::Screenshot {
                        window: None,
                        reason: "login-timeout",
                    });
                    self.restart(now, "login did not complete in time", false);
                }
            }
            Timer::TotpDue => {
                if let Some(dialog) = self.login.code_dialog {
                    let plan = totp::plan(
                        now.unix_ms,
                        self.cfg.min_code_validity,
                        self.persisted.last_totp_step,
                    );
                    self.send_code(now, dialog, plan.step);
                }
            }
            Timer::ProbeDue => {
                if matches!(
                    self.phase,
                    Phase::LoggingIn | Phase::AwaitApi | Phase::Ready
                ) && !self.probe_in_flight
                    && self.pid.is_some()
                {
                    self.probe_in_flight = true;
                    self.push(Action::Probe);
                }
            }
            Timer::BackoffEnd => {
                if let Phase::Backoff { then } = self.phase {
                    match then {
                        Next::Launch { use_restart_token } => self.launch(now, use_restart_token),
                        Next::Relogin => self.relogin(now),
                    }
                }
            }
            Timer::RetryInput => {
                for ticket in std::mem::take(&mut self.retry_tickets) {
                    if let Some(p) = self.pending.get(&ticket) {
                        if self.human {
                            self.held.push(ticket);
                        } else if self.windows.contains_key(&p.window) {
                            self.push(Action::Type {
                                ticket,
                                window: p.window,
                                steps: p.steps.clone(),
                            });
                        } else {
                            self.pending.remove(&ticket);
                        }
                    }
                }
            }
            Timer::IbKeyDeadline => {
                if matches!(self.phase, Phase::LoggingIn) {
                    self.restart(now, "IB Key approval timed out", false);
                }
            }
            Timer::TokenGrace => {
                if self.phase == Phase::LoggingIn
                    && !self.login.saw_progress
                    && !self.login.submitted
                {
                    tracing::warn!("the auto-restart token did not log in; logging in fully");
                    self.login.token_login = false;
                    self.submit_credentials(now);
                }
            }
            Timer::TwsWatch => self.tws_watch_tick(now),
            Timer::StopDeadline => {
                if matches!(self.phase, Phase::Stopping { .. }) {
                    self.push(Action::KillGateway);
                }
            }
            Timer::CloseGrace => {
                if self.pid.is_some() {
                    tracing::warn!("gateway did not close from its window; sending SIGTERM");
                    self.push(Action::TerminateGateway);
                    self.timers.set(Timer::TermGrace, now.mono + TERM_GRACE);
                }
            }
            Timer::TermGrace => {
                if self.pid.is_some() {
                    tracing::warn!("gateway did not exit on SIGTERM; sending SIGKILL");
                    self.push(Action::KillGateway);
                }
            }
            Timer::Calendar => {}
            Timer::DeferredAnswer => {
                let Some(d) = self.deferred.take() else {
                    return;
                };
                if !matches!(self.phase, Phase::Backoff { .. }) {
                    return;
                }
                if self.windows.contains_key(&d.window) {
                    tracing::info!(
                        window = d.window,
                        "session ping-pong back-off over: answering"
                    );
                    // Taking the session back is a takeover too: if the other side is still
                    // at it, the guard trips again soon, without a second notice.
                    self.takeovers.push_back(now.mono);
                    self.type_into(d.window, d.answer.keys());
                }
                // Gone meanwhile or answered: either way the probe and the login deadline
                // decide from here, so the machine never waits in back-off for nothing.
                match d.then {
                    Phase::AwaitApi => self.relogin_pressed(now),
                    _ => {
                        self.set_phase(Phase::LoggingIn, "continuing the login");
                        self.timers
                            .set(Timer::LoginDeadline, now.mono + self.cfg.login_timeout);
                    }
                }
            }
        }
    }

    // ----- helpers -------------------------------------------------------------------------

    fn push(&mut self, mut action: Action) {
        if let Action::Status {
            ready, sd_ready, ..
        } = &mut action
        {
            self.serving = *ready;
            if *ready && !self.sd_ready_sent {
                *sd_ready = true;
            }
            if *sd_ready {
                self.sd_ready_sent = true;
            }
        }
        self.actions.push_back(action);
    }

    /// Asks for a window's text (the reader gets its title too).
    fn read_text(&mut self, window: u32) {
        let title = self
            .windows
            .get(&window)
            .map(|w| w.info.title.clone())
            .unwrap_or_default();
        self.push(Action::ReadText { window, title });
    }

    fn set_phase(&mut self, phase: Phase, reason: &str) {
        if self.phase != phase {
            tracing::info!(from = ?self.phase, to = ?phase, reason, "phase");
        }
        self.phase = phase;
        self.reason = reason.to_string();
        self.push(Action::Status {
            ready: false,
            text: reason.to_string(),
            sd_ready: false,
        });
    }

    fn status_line(&mut self, text: &str) {
        self.reason = text.to_string();
        self.push(Action::Status {
            ready: false,
            text: text.to_string(),
            sd_ready: false,
        });
    }
}
