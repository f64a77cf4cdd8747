//! The Client Portal session as a sans-IO state machine: inputs in, actions out, `now` a
//! parameter. The same guarantees as the IB Gateway core: a rejected password halts (and
//! the halt is saved before anything else happens), every code is typed at most once
//! (`last_totp_step` saved before the browser types it), failed logins are counted in the
//! persisted budget, full logins wait out IBKR's maintenance window, and every wait has a
//! deadline.

use std::time::Duration;

use crate::core::domain::SessionPolicy;
use crate::core::schedule::timestamp_from_unix_ms;
use crate::core::Persisted;
use crate::core::{NoticeKind, Severity};
use crate::totp;

pub use super::events::{
    Action, ApiReply, AuthStatus, HaltWhy, Input, LoginOutcome, Phase, Settings,
};

/// Poll interval while waiting for the port, for authentication or for a reauthenticate.
const POLL: Duration = Duration::from_secs(1);
/// How often a waiting-for-another-session instance looks again.
const COMPETING_POLL: Duration = Duration::from_secs(60);
/// How long IBKR locks logins after too many attempts (its message says 15 minutes).
const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// A code wait longer than this is told to a person (the clock moved back).
const CLOCK_WAIT_NOTICE: Duration = Duration::from_secs(120);
/// The failed-login budget's window.
const HOUR_SECS: u64 = 3600;

/// What the next [`Input::Timer`] means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wake {
    /// Ask the status again.
    Poll,
    /// Tickle.
    Tickle,
    /// The wait is over: log in.
    Login,
    /// The wait is over: launch.
    Launch,
}

/// The Client Portal session.
#[derive(Debug)]
pub struct Machine {
    s: Settings,
    state: Persisted,
    phase: Phase,
    reason: String,
    wake: Option<(u64, Wake)>,
    deadline_ms: Option<u64>,
    backoff: Duration,
    api_failures: u32,
    code_rejections: u32,
    /// The JVM runs (between JvmStarted and JvmExited).
    jvm: bool,
    /// A problem was told: the next ready says "recovered".
    told: bool,
    /// Competing sessions taken over within the last hour (unix seconds).
    takeovers: Vec<u64>,
    readies: u64,
    /// The last login attempt's number (0: none yet).
    attempt: u64,
    /// The attempt whose outcome is awaited, if one is.
    awaiting: Option<u64>,
    /// `reauthenticate` requests sent.
    reauthentications: u64,
    /// 401 answers in a row while ready.
    unauthorized: u32,
    /// Gateway relaunches by reason.
    restarts: Vec<(String, u64)>,
    /// The last status the API gave, and when (unix ms).
    last_status: Option<(AuthStatus, u64)>,
}

impl Machine {
    /// A machine with the persisted `state`.
    pub fn new(settings: Settings, state: Persisted) -> Machine {
        let backoff = settings.backoff_initial;
        Machine {
            s: settings,
            state,
            phase: Phase::Idle,
            reason: "starting".into(),
            wake: None,
            deadline_ms: None,
            backoff,
            api_failures: 0,
            code_rejections: 0,
            jvm: false,
            told: false,
            takeovers: Vec::new(),
            readies: 0,
            attempt: 0,
            awaiting: None,
            reauthentications: 0,
            unauthorized: 0,
            restarts: Vec::new(),
            last_status: None,
        }
    }

    /// Where it is.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// Why, in words.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Ready: authenticated, connected, not competing.
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// Times it became ready.
    pub fn readies(&self) -> u64 {
        self.readies
    }

    /// Browser logins started so far.
    pub fn logins(&self) -> u64 {
        self.attempt
    }

    /// A browser login is in progress.
    pub fn logging_in(&self) -> bool {
        self.awaiting.is_some()
    }

    /// `reauthenticate` requests sent so far.
    pub fn reauthentications(&self) -> u64 {
        self.reauthentications
    }

    /// Gateway relaunches by reason (`crash`, `hung`, `no web server`, `requested`).
    pub fn restarts(&self) -> &[(String, u64)] {
        &self.restarts
    }

    /// The last status the gateway's API gave, and when (unix ms).
    pub fn last_status(&self) -> Option<(AuthStatus, u64)> {
        self.last_status
    }

    /// The persisted state as it stands.
    pub fn persisted(&self) -> &Persisted {
        &self.state
    }

    /// Failed logins left in this hour's budget.
    pub fn login_budget_left(&self, now_ms: u64) -> u32 {
        let used = self.state.failed_logins_within(now_ms / 1000, HOUR_SECS) as u32;
        self.s.max_failed_logins_per_hour.saturating_sub(used)
    }

    /// When to send [`Input::Timer`] (unix ms), if anything is awaited.
    pub fn next_wake_ms(&self) -> Option<u64> {
        match (self.wake, self.deadline_ms) {
            (Some((w, _)), Some(d)) => Some(w.min(d)),
            (Some((w, _)), None) => Some(w),
            (None, d) => d,
        }
    }

    /// Feeds one input at `now_ms`; returns the actions, in order.
    pub fn on(&mut self, input: Input, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Start => self.start(now_ms, &mut out),
            Input::JvmStarted => {
                self.jvm = true;
                if self.phase == Phase::Launching {
                    self.set(Phase::WaitHttp, "waiting for the gateway's web server");
                    self.deadline_ms = Some(now_ms + ms(self.s.http_timeout));
                    out.push(Action::Status);
                }
            }
            Input::JvmExited { code } => self.jvm_exited(code, now_ms, &mut out),
            Input::Api(reply) => self.api(reply, now_ms, &mut out),
            Input::Login { attempt, outcome } => {
                self.login_outcome(attempt, outcome, now_ms, &mut out)
            }
            Input::Timer => self.timer(now_ms, &mut out),
            Input::Stop => {
                if !matches!(self.phase, Phase::Stopping | Phase::Stopped) {
                    self.abandon_login(&mut out);
                    self.wake = None;
                    self.deadline_ms = None;
                    if self.jvm {
                        self.set(Phase::Stopping, "stopping");
                        out.push(Action::StopGateway);
                    } else {
                        self.set(Phase::Stopped, "stopped");
                        out.push(Action::Exit(0));
                    }
                }
            }
            Input::Restart => {
                if matches!(self.phase, Phase::Stopping | Phase::Stopped) {
                    return out;
                }
                if self.state.credentials_rejected.take().is_some() {
                    out.push(Action::Save(self.state.clone()));
                }
                self.code_rejections = 0;
                self.backoff = self.s.backoff_initial;
                self.wake = None;
                self.deadline_ms = None;
                self.abandon_login(&mut out);
                if self.jvm {
                    self.count_restart("requested");
                    self.set(Phase::Launching, "restart requested");
                    out.push(Action::Kill);
                } else {
                    self.launch(&mut out);
                }
            }
        }
        out
    }

    /// Gives up the login in progress, if one is: its outcome will be ignored.
    fn abandon_login(&mut self, out: &mut Vec<Action>) {
        if self.awaiting.take().is_some() {
            out.push(Action::AbortLogin);
        }
    }

    fn count_restart(&mut self, why: &str) {
        match self.restarts.iter_mut().find(|(r, _)| r == why) {
            Some((_, n)) => *n += 1,
            None => self.restarts.push((why.to_string(), 1)),
        }
    }

    fn set(&mut self, phase: Phase, reason: impl Into<String>) {
        self.phase = phase;
        self.reason = reason.into();
    }

    fn start(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        if self.state.credentials_rejected.is_some() {
            self.halt(
                HaltWhy::LoginFailed,
                "IBKR rejected the username or password earlier, so ibwarden does not type it \
                 again. Fix the secret (`ibwarden secret set password`), then run `ibwarden \
                 restart`.",
                out,
            );
            return;
        }
        let _ = now_ms;
        self.launch(out);
    }

    fn launch(&mut self, out: &mut Vec<Action>) {
        self.set(Phase::Launching, "launching the Client Portal gateway");
        self.wake = None;
        self.deadline_ms = None;
        out.push(Action::Launch);
    }

    fn halt(&mut self, why: HaltWhy, text: &str, out: &mut Vec<Action>) {
        self.set(Phase::Halted(why), text.to_string());
        self.wake = None;
        self.deadline_ms = None;
        self.told = true;
        let kind = match why {
            HaltWhy::LoginFailed => NoticeKind::LoginFailed,
            HaltWhy::CodeRejected => NoticeKind::CodeRejected,
            HaltWhy::NoAuthenticator => NoticeKind::HumanStep,
        };
        out.push(Action::Notify {
            kind,
            severity: Severity::Critical,
            text: text.to_string(),
        });
    }

    fn wait_then(&mut self, now_ms: u64, wait: Duration, then: Wake, reason: String) {
        self.set(Phase::Waiting, reason);
        self.deadline_ms = None;
        self.wake = Some((now_ms + ms(wait), then));
    }

    /// Back-off before `then`, doubling.
    fn back_off(&mut self, now_ms: u64, then: Wake, why: &str) {
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(self.s.backoff_max);
        self.wait_then(
            now_ms,
            wait,
            then,
            format!("{why}; next attempt in {}s", wait.as_secs().max(1)),
        );
    }

    fn jvm_exited(&mut self, code: Option<i32>, now_ms: u64, out: &mut Vec<Action>) {
        self.jvm = false;
        // A login against a gateway that is gone cannot succeed; an outcome from it must
        // not be taken for the next gateway's.
        self.abandon_login(out);
        match self.phase {
            Phase::Stopping | Phase::Stopped => {
                self.set(Phase::Stopped, "stopped");
                out.push(Action::Exit(0));
            }
            Phase::Halted(_) => {}
            Phase::Launching => {
                // A restart killed it: start the new one.
                out.push(Action::Launch);
            }
            _ => {
                self.count_restart("crash");
                if code != Some(0) {
                    self.told = true;
                    out.push(Action::Notify {
                        kind: NoticeKind::Crash,
                        severity: Severity::Warning,
                        text: format!(
                            "The Client Portal gateway's JVM exited ({}); ibwarden starts it \
                             again.",
                            code.map_or("killed".to_string(), |c| format!("code {c}"))
                        ),
                    });
                }
                self.back_off(now_ms, Wake::Launch, "the gateway exited");
            }
        }
    }

    fn api(&mut self, reply: ApiReply, now_ms: u64, out: &mut Vec<Action>) {
        if !self.jvm {
            // An answer that was on its way when the gateway went away: it says nothing
            // about the next one.
            return;
        }
        if let ApiReply::Status(st) = reply {
            self.last_status = Some((st, now_ms));
        }
        match (&self.phase, reply) {
            (Phase::WaitHttp, ApiReply::Down(_)) => {
                self.wake = Some((now_ms + ms(POLL), Wake::Poll));
            }
            (Phase::WaitHttp, ApiReply::Unauthorized) => {
                self.full_login(now_ms, "no session: logging in", out);
            }
            (Phase::Ready, ApiReply::Unauthorized) => {
                // One 401 may be the gateway's own hiccup (it answers 401 for a moment
                // after a login, too): asked once more before a login spends a code.
                self.api_failures = 0;
                self.unauthorized += 1;
                if self.unauthorized >= 2 {
                    self.unauthorized = 0;
                    self.full_login(now_ms, "the session is gone (401): logging in", out);
                } else {
                    self.wake = Some((now_ms + ms(POLL), Wake::Poll));
                }
            }
            (Phase::WaitHttp, ApiReply::Status(st)) => {
                self.deadline_ms = None;
                self.judge(st, now_ms, out, true);
            }
            (Phase::Authenticating | Phase::Reauthenticating, ApiReply::Status(st)) => {
                if st.authenticated && st.connected && !st.competing {
                    self.ready(now_ms, out);
                } else if st.competing {
                    self.judge(st, now_ms, out, false);
                } else {
                    self.wake = Some((now_ms + ms(POLL), Wake::Poll));
                }
            }
            (Phase::Authenticating, ApiReply::Unauthorized) => {
                // Right after a login the gateway may answer 401 until it has taken the
                // session over from the page: asked again until the deadline, which counts
                // the login as failed. Logging in again at once would spend a code on a
                // login that succeeded.
                self.wake = Some((now_ms + ms(POLL), Wake::Poll));
            }
            (Phase::Reauthenticating, ApiReply::Unauthorized) => {
                self.full_login(
                    now_ms,
                    "reauthenticate failed (no session left): logging in",
                    out,
                );
            }
            (Phase::Authenticating | Phase::Reauthenticating, ApiReply::Down(_)) => {
                self.wake = Some((now_ms + ms(POLL), Wake::Poll));
            }
            (Phase::Ready, ApiReply::Status(st)) => {
                self.api_failures = 0;
                self.unauthorized = 0;
                if st.authenticated && st.connected && !st.competing {
                    self.wake = Some((now_ms + ms(self.s.tickle_interval), Wake::Tickle));
                } else {
                    self.judge(st, now_ms, out, false);
                }
            }
            (Phase::Ready, ApiReply::Down(why)) => {
                self.api_failures += 1;
                if self.api_failures >= self.s.failures_before_restart {
                    self.api_failures = 0;
                    self.told = true;
                    self.count_restart("hung");
                    self.set(
                        Phase::Launching,
                        format!("the gateway stopped answering ({why}): restarting it"),
                    );
                    out.push(Action::Kill);
                } else {
                    self.wake = Some((now_ms + ms(POLL * 5), Wake::Tickle));
                }
            }
            (Phase::Waiting, ApiReply::Status(st)) => {
                // Waiting out another session: look again.
                self.judge(st, now_ms, out, false);
            }
            (Phase::Waiting, ApiReply::Unauthorized) if self.wake.is_none() => {
                self.full_login(now_ms, "no session: logging in", out);
            }
            _ => {}
        }
    }

    /// A status outside the ready path: decide.
    fn judge(&mut self, st: AuthStatus, now_ms: u64, out: &mut Vec<Action>, fresh: bool) {
        if st.competing {
            self.competing(now_ms, out);
        } else if st.authenticated && st.connected {
            self.ready(now_ms, out);
        } else if st.authenticated || fresh || self.phase == Phase::Ready {
            // The SSO session lives but the brokerage session is down (IBKR's reset, a
            // dropped connection): reauthenticate first, a full login only if that fails.
            self.set(Phase::Reauthenticating, "reauthenticating the session");
            self.deadline_ms = Some(now_ms + ms(self.s.auth_timeout));
            self.wake = None;
            self.reauthentications += 1;
            out.push(Action::Reauthenticate);
        } else {
            self.wake = Some((now_ms + ms(POLL), Wake::Poll));
        }
    }

    fn competing(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        let now = now_ms / 1000;
        self.takeovers.retain(|&t| t + HOUR_SECS > now);
        let take = match self.s.existing_session {
            SessionPolicy::Primary => true,
            // Takes the session once; yields to a later login elsewhere.
            SessionPolicy::PrimaryOverride => self.takeovers.is_empty(),
            SessionPolicy::Secondary | SessionPolicy::Manual => false,
        };
        if take && self.takeovers.len() < 3 {
            self.takeovers.push(now);
            self.full_login(
                now_ms,
                "another session holds the account: taking it over",
                out,
            );
            return;
        }
        if !self.told {
            self.told = true;
            let text = if take {
                "Another session keeps taking this account's session (3 takeovers in an hour); \
                 ibwarden stopped fighting and waits. Close the other session (TWS, the \
                 mobile app, another gateway)."
            } else {
                "Another session holds this account; by login.existing_session ibwarden does \
                 not take it over and waits until it ends."
            };
            out.push(Action::Notify {
                kind: NoticeKind::SessionConflict,
                severity: Severity::Warning,
                text: text.into(),
            });
        }
        self.set(Phase::Waiting, "another session holds the account");
        self.deadline_ms = None;
        self.wake = Some((now_ms + ms(COMPETING_POLL), Wake::Poll));
    }

    fn ready(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        self.set(Phase::Ready, "ready: authenticated and connected");
        self.unauthorized = 0;
        self.readies += 1;
        self.deadline_ms = None;
        self.api_failures = 0;
        self.code_rejections = 0;
        self.backoff = self.s.backoff_initial;
        self.wake = Some((now_ms + ms(self.s.tickle_interval), Wake::Tickle));
        if self.told {
            self.told = false;
            out.push(Action::Notify {
                kind: NoticeKind::Recovered,
                severity: Severity::Info,
                text: "The Client Portal session is authenticated again.".into(),
            });
        }
    }

    /// A full browser login, if the calendar and the budget allow; else a wait.
    fn full_login(&mut self, now_ms: u64, why: &str, out: &mut Vec<Action>) {
        self.wake = None;
        self.deadline_ms = None;
        if let Some(until) = self
            .s
            .schedule
            .as_ref()
            .and_then(|s| s.full_login_blocked_until(timestamp_from_unix_ms(now_ms)))
        {
            let wait_ms = u64::try_from(until.as_millisecond())
                .unwrap_or(0)
                .saturating_sub(now_ms);
            self.wait_then(
                now_ms,
                Duration::from_millis(wait_ms),
                Wake::Login,
                "IBKR's maintenance window: the login waits for its end".into(),
            );
            return;
        }
        let now = now_ms / 1000;
        self.state.prune_failed_logins(now, HOUR_SECS);
        let used = self.state.failed_logins_within(now, HOUR_SECS) as u32;
        if used >= self.s.max_failed_logins_per_hour {
            let oldest = self.state.failed_logins.first().copied().unwrap_or(now);
            let wait = Duration::from_secs((oldest + HOUR_SECS + 1).saturating_sub(now));
            self.told = true;
            out.push(Action::Notify {
                kind: NoticeKind::LockoutGuard,
                severity: Severity::Warning,
                text: format!(
                    "{used} failed logins within an hour: ibwarden waits {} min before the \
                     next, so IBKR does not lock the account.",
                    wait.as_secs().div_ceil(60)
                ),
            });
            self.wait_then(
                now_ms,
                wait,
                Wake::Login,
                "failed-login budget spent".into(),
            );
            return;
        }
        let plan = totp::plan(now_ms, self.s.min_code_validity, self.state.last_totp_step);
        if plan.wait > CLOCK_WAIT_NOTICE {
            self.told = true;
            out.push(Action::Notify {
                kind: NoticeKind::ClockBehind,
                severity: Severity::Warning,
                text: format!(
                    "The clock is behind the last authenticator code used; the login waits \
                     {} s for a code that was never typed.",
                    plan.wait.as_secs()
                ),
            });
        }
        // The step counts as used from here: saved before the browser can type it.
        self.state.record_totp_step(plan.step);
        out.push(Action::Save(self.state.clone()));
        self.set(Phase::LoggingIn, why.to_string());
        self.deadline_ms = Some(now_ms + ms(plan.wait + self.s.login_timeout));
        // A login still running (there should be none) is superseded.
        self.abandon_login(out);
        self.attempt += 1;
        self.awaiting = Some(self.attempt);
        out.push(Action::Login {
            attempt: self.attempt,
            step: plan.step,
            wait: plan.wait,
        });
    }

    fn failed_login(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        self.state.record_failed_login(now_ms / 1000, HOUR_SECS);
        out.push(Action::Save(self.state.clone()));
    }

    fn login_outcome(
        &mut self,
        attempt: u64,
        outcome: LoginOutcome,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        if self.phase != Phase::LoggingIn || self.awaiting != Some(attempt) {
            return;
        }
        self.awaiting = None;
        match outcome {
            LoginOutcome::LoggedIn => {
                self.set(Phase::Authenticating, "logged in; waiting for the session");
                self.deadline_ms = Some(now_ms + ms(self.s.auth_timeout));
                self.wake = None;
                out.push(Action::Status);
            }
            LoginOutcome::WrongCredentials => {
                // Saved before it is told: a crash right after cannot forget the halt.
                self.state.credentials_rejected = Some(now_ms / 1000);
                self.failed_login(now_ms, out);
                self.halt(
                    HaltWhy::LoginFailed,
                    "IBKR rejected the username or password. ibwarden stopped logging in so \
                     the account is not locked. Fix the secret (`ibwarden secret set \
                     password`) and run `ibwarden restart`.",
                    out,
                );
            }
            LoginOutcome::CodeRejected => {
                self.code_rejections += 1;
                self.failed_login(now_ms, out);
                if self.code_rejections >= self.s.max_code_rejections {
                    self.halt(
                        HaltWhy::CodeRejected,
                        "IBKR rejected the authenticator code several times in a row: the \
                         clock or the activation code is wrong. Check `ibwarden totp` against \
                         the app, then run `ibwarden restart`.",
                        out,
                    );
                } else {
                    // The next code: the plan never repeats a step.
                    self.full_login(now_ms, "the code was rejected: the next one", out);
                }
            }
            LoginOutcome::NoAuthenticator => self.halt(
                HaltWhy::NoAuthenticator,
                "The login page offers no Mobile Authenticator option for this account (a \
                 push-only account): enrol the authenticator app in Client Portal, or log in \
                 by hand.",
                out,
            ),
            LoginOutcome::Locked => {
                self.failed_login(now_ms, out);
                self.told = true;
                out.push(Action::Notify {
                    kind: NoticeKind::LockoutGuard,
                    severity: Severity::Warning,
                    text: "IBKR locked logins after too many attempts; ibwarden waits 15 \
                           minutes."
                        .into(),
                });
                self.wait_then(now_ms, LOCKOUT, Wake::Login, "IBKR's login lockout".into());
            }
            LoginOutcome::Failed(why) => {
                self.failed_login(now_ms, out);
                self.back_off(now_ms, Wake::Login, &format!("login failed: {why}"));
            }
            LoginOutcome::NotSubmitted(why) => {
                self.back_off(now_ms, Wake::Login, &format!("login not attempted: {why}"));
            }
        }
    }

    fn timer(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        let deadline_due = self.deadline_ms.is_some_and(|d| d <= now_ms);
        let wake_due = self.wake.filter(|(w, _)| *w <= now_ms).map(|(_, k)| k);
        if deadline_due {
            self.deadline_ms = None;
            self.wake = None;
            match self.phase {
                Phase::WaitHttp => {
                    self.told = true;
                    self.count_restart("no web server");
                    self.set(
                        Phase::Launching,
                        "the gateway's web server did not answer in time: restarting it",
                    );
                    out.push(Action::Kill);
                }
                Phase::LoggingIn => {
                    self.abandon_login(out);
                    self.failed_login(now_ms, out);
                    self.back_off(now_ms, Wake::Login, "the login did not finish in time");
                }
                Phase::Authenticating => {
                    self.failed_login(now_ms, out);
                    self.full_login(now_ms, "not authenticated after the login: again", out);
                }
                Phase::Reauthenticating => {
                    self.full_login(now_ms, "reauthenticate did not bring the session back", out);
                }
                _ => {}
            }
            return;
        }
        let Some(kind) = wake_due else { return };
        self.wake = None;
        match kind {
            Wake::Poll | Wake::Tickle if self.phase == Phase::Ready => out.push(Action::Tickle),
            Wake::Poll | Wake::Tickle => out.push(Action::Status),
            Wake::Login => self.full_login(now_ms, "logging in", out),
            Wake::Launch => self.launch(out),
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
