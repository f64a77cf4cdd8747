//! What the core is configured with (plain values, derived from the user's config in one
//! place, `driver::core_config`), what it persists, and what it counts.

use std::time::Duration;

use super::domain::{Program, SecondFactor, SessionPolicy, TradingMode, VerifyForm};

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
    /// Whether a filled form is seen before it is submitted.
    pub verify_form: VerifyForm,
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
    /// How long a healthy gateway gets to log out and exit after its window was closed,
    /// before SIGTERM (a JVM killed without a clean logout can strand IBKR's session for
    /// 15 minutes and more; peers give it at least 90 s).
    pub stop_grace: Duration,
    /// Whether a content reader (OCR, AT-SPI) can read dialog text.
    pub content_reader: bool,
    /// First wait before logging in again after the gateway went back to its login window
    /// without an error (2FA timeout, silently dropped login); doubles up to 600 s. IBKR's
    /// limiter punishes quick re-logins (users' reports: 60/120/240/480/600 s).
    pub relogin_backoff: Duration,
    /// Ping-pong guard: this many session takeovers (a `Re-login is required` after ready, or
    /// an existing session continued) within `pingpong_window` mean another session keeps
    /// fighting for the account (users' reports).
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
            verify_form: VerifyForm::Auto,
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
            stop_grace: Duration::from_secs(90),
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
    pub(crate) fn count_restart(&mut self, reason: &str) {
        if let Some(e) = self.restarts.iter_mut().find(|(r, _)| r == reason) {
            e.1 += 1;
        } else {
            self.restarts.push((reason.to_string(), 1));
        }
    }
}
