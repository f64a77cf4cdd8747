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
use super::types::{
    FormCheck, KeyStep, LauncherEvent, NamedKey, ProbeOutcome, SecretRef, WindowInfo,
};
use crate::totp;

use super::messages::{Action, Input, Now, TypeResult};
use super::notice::{NoticeKind, Severity};
use super::settings::{CoreConfig, Persisted, Stats};

mod lifecycle;
mod login;
mod probing;
#[cfg(test)]
pub(crate) use probing::mode_of_accounts;
mod seeing;
mod session;
// TWS's in-frame second factor and exit path.
mod tws;
mod windows;

/// Logins in one JVM that may go back to the login window without an error (silent drops,
/// unapproved pushes) before ibwarden stops and asks a person (ibg-controller stops after 8).
const MAX_LOGIN_RESETS: u32 = 8;

/// How long the login frame may sit idle after a token relaunch before ibwarden types.
const TOKEN_GRACE: Duration = Duration::from_secs(15);

/// A clock behind the last TOTP step by more than this is told to a person.
const CLOCK_WAIT_TELL: Duration = Duration::from_secs(120);

/// The longest single wait for a clock that moved back; the check runs again after it.
const CLOCK_WAIT_MAX: Duration = Duration::from_secs(600);

/// After WM_DELETE_WINDOW, how long a gateway that does not answer (hung, its API silent)
/// has to exit before SIGTERM; a healthy one gets `CoreConfig::stop_grace`.
const CLOSE_GRACE: Duration = Duration::from_secs(15);

/// The stop deadline's margin over the close and SIGTERM graces.
const STOP_MARGIN: Duration = Duration::from_secs(30);

/// After SIGTERM, how long the JVM has to exit before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(10);

/// A stop must have ended by then, whatever the gateway does: then SIGKILL.
const STOP_DEADLINE: Duration = Duration::from_secs(120);

/// Stop requests (SIGTERM, SIGINT, `ibwarden stop`) that still mean "stop cleanly": Ctrl-C
/// in a shell script often delivers SIGINT and the script's own SIGTERM together. Only the
/// next one kills the gateway.
const GRACEFUL_STOP_REQUESTS: u32 = 2;

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
    /// A check of a filled form in flight.
    check: Option<seeing::Checking>,
    /// Refills by target since the last matching check.
    refills: u32,
    /// `Login Messages` dialogs seen in this JVM.
    login_messages: u32,
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
    /// The login form's fill (mode, username, password; no Enter): its `Log In` press, the
    /// commit that spends a login attempt, follows only a complete fill that was seen.
    fill: bool,
    /// The code field's fill (no Enter) or a click on the chooser's row: its `OK` follows a
    /// check of this form.
    form: Option<FormCheck>,
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
            Input::FormChecked {
                ticket,
                verdict,
                targets,
            } => self.on_form_checked(now, ticket, verdict, targets),
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
