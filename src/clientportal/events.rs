//! The Client Portal machine's vocabulary: what it is told ([`Input`]), what it asks for
//! ([`Action`]), where it is ([`Phase`]) and its knobs ([`Settings`]).

use std::time::Duration;

use crate::core::domain::SessionPolicy;
use crate::core::schedule::Schedule;
use crate::core::{NoticeKind, Persisted, Severity};

/// What `auth/status` (or a tickle) said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthStatus {
    /// The brokerage session is authenticated.
    pub authenticated: bool,
    /// The gateway is connected to IBKR.
    pub connected: bool,
    /// Another session (TWS, a phone, another gateway) competes for the account.
    pub competing: bool,
}

/// An answer of the gateway's API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiReply {
    /// A status (from `auth/status` or `tickle`).
    Status(AuthStatus),
    /// 401: no session at all; only a full login helps.
    Unauthorized,
    /// Nothing usable (connection refused, TLS, timeout, 5xx): the reason.
    Down(String),
}

/// How a browser login ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginOutcome {
    /// The page said the login succeeded.
    LoggedIn,
    /// The page said the username or password is wrong.
    WrongCredentials,
    /// The code was refused.
    CodeRejected,
    /// The second-factor list has no Mobile Authenticator option (a push-only account).
    NoAuthenticator,
    /// Too many attempts: IBKR locked logins for a while.
    Locked,
    /// Anything else after the credentials were submitted (a page not understood, a
    /// deadline): why. Counts as a failed login.
    Failed(String),
    /// It ended before the credentials were submitted (no browser, no login form, a field
    /// that did not hold what was typed): why. IBKR saw nothing, so the budget is not spent.
    NotSubmitted(String),
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Begin (after the state was loaded).
    Start,
    /// The gateway's JVM runs.
    JvmStarted,
    /// The gateway's JVM exited.
    JvmExited {
        /// Its exit code, if it exited by itself.
        code: Option<i32>,
    },
    /// An API answer (to the last [`Action::Status`], [`Action::Tickle`] or
    /// [`Action::Reauthenticate`]).
    Api(ApiReply),
    /// A browser login ended: the attempt it answers ([`Action::Login`]'s) and how.
    /// An outcome of any other attempt than the one awaited (a login the machine gave up
    /// on, one from before a crash) is ignored.
    Login {
        /// The attempt it answers.
        attempt: u64,
        /// How it ended.
        outcome: LoginOutcome,
    },
    /// The wake-up time ([`Machine::next_wake_ms`]) was reached.
    Timer,
    /// Stop for good (SIGTERM, `ibwarden stop`).
    Stop,
    /// A person asked for a restart (`ibwarden restart`): a halt is lifted.
    Restart,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Save this state atomically before doing anything else.
    Save(Persisted),
    /// Start the gateway's JVM.
    Launch,
    /// Kill the gateway's JVM (it is hung or must start over).
    Kill,
    /// Stop the gateway cleanly (logout, then SIGTERM, then SIGKILL after the grace).
    StopGateway,
    /// Ask `auth/status`.
    Status,
    /// `POST /tickle` (keeps the session; answers with the status).
    Tickle,
    /// `POST /iserver/reauthenticate`, then ask the status.
    Reauthenticate,
    /// Log in through the web page; type the code of `step` (after `wait`) if a code is
    /// asked.
    Login {
        /// This attempt's number: its outcome must carry it back.
        attempt: u64,
        /// The TOTP step whose code to type (already saved as used).
        step: u64,
        /// Wait this long before typing the code (the step has not begun yet).
        wait: Duration,
    },
    /// Abandon the browser login in progress (its deadline passed, the gateway went away,
    /// a stop or restart): close the browser; its outcome, if one still comes, is ignored.
    AbortLogin,
    /// Tell a person.
    Notify {
        /// What kind of notice.
        kind: NoticeKind,
        /// How urgent.
        severity: Severity,
        /// The text.
        text: String,
    },
    /// Everything stopped: exit with this code.
    Exit(i32),
}

/// Why logins stopped until a person acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HaltWhy {
    /// The password (or username) was rejected.
    LoginFailed,
    /// Codes were rejected `max_code_rejections` times in a row.
    CodeRejected,
    /// The account offers no authenticator-app login.
    NoAuthenticator,
}

/// Where the session is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not started.
    Idle,
    /// The JVM is being started.
    Launching,
    /// The JVM runs; waiting for its HTTPS port to answer.
    WaitHttp,
    /// The browser is logging in.
    LoggingIn,
    /// Logged in on the page; waiting for `auth/status` to say authenticated.
    Authenticating,
    /// Authenticated, connected, not competing.
    Ready,
    /// `reauthenticate` sent; waiting for authenticated again.
    Reauthenticating,
    /// Waiting before the next step (back-off, maintenance, budget, another session).
    Waiting,
    /// Logins stopped until a person acts.
    Halted(HaltWhy),
    /// Stopping the gateway.
    Stopping,
    /// Done.
    Stopped,
}

/// The knobs, from the config.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Time between tickles while ready (IBKR: about once a minute).
    pub tickle_interval: Duration,
    /// From the JVM's start to its HTTPS port answering, at most.
    pub http_timeout: Duration,
    /// From the start of a browser login to its outcome, at most (added to a code wait).
    pub login_timeout: Duration,
    /// From a login or reauthenticate to `authenticated: true`, at most.
    pub auth_timeout: Duration,
    /// Failed logins allowed within an hour before waiting.
    pub max_failed_logins_per_hour: u32,
    /// Rejected codes in a row before halting.
    pub max_code_rejections: u32,
    /// A code with less than this left is not typed.
    pub min_code_validity: Duration,
    /// What to do about a competing session.
    pub existing_session: SessionPolicy,
    /// First back-off after a failure; doubles up to `backoff_max`.
    pub backoff_initial: Duration,
    /// Longest back-off.
    pub backoff_max: Duration,
    /// API failures in a row while ready before the JVM counts as hung.
    pub failures_before_restart: u32,
    /// IBKR's calendar (maintenance window), if known.
    pub schedule: Option<Schedule>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            tickle_interval: Duration::from_secs(60),
            http_timeout: Duration::from_secs(120),
            login_timeout: Duration::from_secs(120),
            auth_timeout: Duration::from_secs(60),
            max_failed_logins_per_hour: 3,
            max_code_rejections: 3,
            min_code_validity: Duration::from_secs(8),
            existing_session: SessionPolicy::Primary,
            backoff_initial: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            failures_before_restart: 3,
            schedule: None,
        }
    }
}
