//! Telling a person: the one event model on top of the core's `Action::Notify`, deduplicated,
//! sent over any combination of three channels.
//!
//! - **desktop**: `org.freedesktop.Notifications.Notify` on a user's D-Bus session bus,
//!   urgency by severity;
//! - **command**: a configured program (argv, no shell) with the event in arguments and
//!   `IBWARDEN_*` environment variables;
//! - **webhook**: an HTTPS POST formatted for ntfy, Telegram, Slack or as generic JSON, with
//!   timeouts and retries. The URL is a secret (it carries tokens): only its scheme and host
//!   are ever logged.
//!
//! [`Notifier::notify`] never blocks and never fails its caller (the driver loop): it decides
//! synchronously whether the event is news ([`Dedup`]), then hands it to one worker task per
//! channel through a small bounded queue. A worker sends its events in order, one at a time, so
//! "recovered" never overtakes the failure it clears and at most three sends run at once. A
//! channel that fails is logged as ONE warning until it works again; later failures are
//! debug lines, so a missing desktop session does not fill the journal.
//!
//! Deduplication: an event kind stays *active* from its first notice until the core reports
//! [`NoticeKind::Recovered`]. While active it is not sent again, except the kinds that repeat
//! by nature (a crash, the lockout guard, an IB Key push, ...), which are re-sent at most once
//! per kind-specific interval ([`repeat_after`]). `Recovered` itself is sent only if
//! something was active, and says what cleared.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::config::{NotifyConfig, WebhookPreset};
use crate::core::{NoticeKind, Severity};
use crate::secret::{Secret, SecretSource};

/// Events queued per channel before new ones are dropped (a channel that hangs must not
/// grow memory; each send has its own timeout, so the queue drains).
const QUEUE_DEPTH: usize = 32;

/// Timeouts, retries and overrides. [`Tuning::default`] is what `ibwarden run` uses; tests
/// shorten the waits.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// Webhook: TCP (and TLS) connect timeout.
    pub webhook_connect_timeout: Duration,
    /// Webhook: timeout of one whole request.
    pub webhook_total_timeout: Duration,
    /// Webhook: waits before the 2nd, 3rd, ... try; tries = `len() + 1`.
    pub webhook_backoff: Vec<Duration>,
    /// Command hook: killed (with its process group) after this long.
    pub command_timeout: Duration,
    /// Desktop: connecting to the bus and the `Notify` call together.
    pub desktop_timeout: Duration,
    /// Desktop: use this D-Bus address instead of looking one up (`unix:path=...`).
    pub desktop_bus_address: Option<String>,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            webhook_connect_timeout: Duration::from_secs(5),
            webhook_total_timeout: Duration::from_secs(10),
            // 3 tries; a 4th would wait 4 s.
            webhook_backoff: vec![Duration::from_secs(1), Duration::from_secs(2)],
            command_timeout: Duration::from_secs(30),
            desktop_timeout: Duration::from_secs(5),
            desktop_bus_address: None,
        }
    }
}

/// How long a still-active kind stays quiet before it is told again; `None`: never (until
/// `Recovered`).
pub fn repeat_after(kind: NoticeKind) -> Option<Duration> {
    const MIN: u64 = 60;
    match kind {
        // A person must fix something; telling them again changes nothing.
        NoticeKind::LoginFailed
        | NoticeKind::CodeRejected
        | NoticeKind::SessionConflict
        | NoticeKind::ClockBehind
        | NoticeKind::WrongTradingMode => None,
        // Each push needs its own approval, but not a message per retry.
        NoticeKind::HumanApproval => Some(Duration::from_secs(5 * MIN)),
        NoticeKind::Crash => Some(Duration::from_secs(10 * MIN)),
        NoticeKind::LockoutGuard
        | NoticeKind::RestartLoop
        | NoticeKind::UnknownDialog
        | NoticeKind::FormUnseen
        | NoticeKind::HumanStep => Some(Duration::from_secs(60 * MIN)),
        NoticeKind::PasswordExpiring | NoticeKind::ApiUnavailable => {
            Some(Duration::from_secs(24 * 60 * MIN))
        }
        NoticeKind::Recovered => None,
    }
}

/// `login_failed`, ... (the `IBWARDEN_EVENT` value and the webhook's `kind`).
pub fn kind_name(kind: NoticeKind) -> &'static str {
    match kind {
        NoticeKind::LoginFailed => "login_failed",
        NoticeKind::CodeRejected => "code_rejected",
        NoticeKind::HumanApproval => "human_approval",
        NoticeKind::LockoutGuard => "lockout_guard",
        NoticeKind::Crash => "crash",
        NoticeKind::RestartLoop => "restart_loop",
        NoticeKind::UnknownDialog => "unknown_dialog",
        NoticeKind::PasswordExpiring => "password_expiring",
        NoticeKind::SessionConflict => "session_conflict",
        NoticeKind::ClockBehind => "clock_behind",
        NoticeKind::Recovered => "recovered",
        NoticeKind::FormUnseen => "form_unseen",
        NoticeKind::HumanStep => "human_step",
        NoticeKind::ApiUnavailable => "api_unavailable",
        NoticeKind::WrongTradingMode => "wrong_trading_mode",
    }
}

/// A short headline for people.
fn kind_title(kind: NoticeKind) -> &'static str {
    match kind {
        NoticeKind::LoginFailed => "login failed",
        NoticeKind::CodeRejected => "authenticator code rejected",
        NoticeKind::HumanApproval => "approve the login on your phone",
        NoticeKind::LockoutGuard => "failed-login budget spent",
        NoticeKind::Crash => "gateway crashed",
        NoticeKind::RestartLoop => "gateway keeps failing to start",
        NoticeKind::UnknownDialog => "unknown dialog",
        NoticeKind::PasswordExpiring => "IBKR password expires soon",
        NoticeKind::SessionConflict => "another session holds the account",
        NoticeKind::ClockBehind => "the clock moved back",
        NoticeKind::Recovered => "recovered",
        NoticeKind::FormUnseen => "the login form cannot be read",
        NoticeKind::HumanStep => "IBKR asks for a step only you can do",
        NoticeKind::ApiUnavailable => "IBKR offers no API for this account",
        NoticeKind::WrongTradingMode => "logged in to the wrong trading mode",
    }
}

/// `info`, `warning`, `critical`.
pub fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

/// One event, as the channels send it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Instance name (config stem or systemd instance).
    pub instance: String,
    /// What kind of event.
    pub kind: NoticeKind,
    /// How urgent.
    pub severity: Severity,
    /// Headline: `ibwarden <instance>: <what>`.
    pub title: String,
    /// What happened and what to do.
    pub message: String,
}

/// The deduplication rules (pure; `now` is a parameter so unit tests run virtual time).
#[derive(Debug, Default)]
pub struct Dedup {
    /// Active events by kind (and, for unknown dialogs, by message): when last sent.
    active: BTreeMap<(u8, String), (NoticeKind, Instant)>,
}

impl Dedup {
    fn key(kind: NoticeKind, message: &str) -> (u8, String) {
        // Different unknown dialogs are different events; for every other kind the message
        // varies (counts, waits) but the event is the same.
        let detail = if kind == NoticeKind::UnknownDialog {
            message.to_string()
        } else {
            String::new()
        };
        (kind as u8, detail)
    }

    /// Decides whether an event is news. For `Recovered`, returns the message to send
    /// (naming what cleared) if anything was active; otherwise the message unchanged.
    pub fn admit(&mut self, kind: NoticeKind, message: &str, now: Instant) -> Option<String> {
        if kind == NoticeKind::Recovered {
            // An expiring password is not fixed by a login: it stays (and repeats daily).
            let cleared: Vec<&'static str> = self
                .active
                .values()
                .filter(|(k, _)| *k != NoticeKind::PasswordExpiring)
                .map(|(k, _)| kind_title(*k))
                .collect();
            if cleared.is_empty() {
                return None;
            }
            let mut cleared = cleared;
            cleared.dedup();
            self.active
                .retain(|_, (k, _)| *k == NoticeKind::PasswordExpiring);
            return Some(format!("{message} (cleared: {})", cleared.join("; ")));
        }
        let key = Self::key(kind, message);
        if let Some((_, last)) = self.active.get(&key) {
            match repeat_after(kind) {
                Some(every) if now.saturating_duration_since(*last) >= every => {}
                _ => return None,
            }
        }
        self.active.insert(key, (kind, now));
        Some(message.to_string())
    }

    /// True while any event is active (a `Recovered` would be sent).
    pub fn any_active(&self) -> bool {
        !self.active.is_empty()
    }
}

/// Why one send failed. Never contains the webhook URL or a token.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No session bus could be found or reached.
    #[error("no session bus: {0}")]
    NoBus(String),
    /// The bus answered with an error (e.g. no notification daemon).
    #[error("d-bus: {0}")]
    Dbus(String),
    /// The send took too long.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The HTTP server answered with an error status.
    #[error("http status {0}")]
    Status(u16),
    /// The HTTP request failed before a status (connect, TLS, ...).
    #[error("{0}")]
    Http(String),
    /// The command could not be started.
    #[error("cannot run {program}: {error}")]
    Spawn {
        /// argv\[0\].
        program: String,
        /// The OS error.
        error: std::io::Error,
    },
    /// The command failed.
    #[error("{program} {status}{stderr}")]
    Exit {
        /// argv\[0\].
        program: String,
        /// How it ended.
        status: String,
        /// The start of its stderr (`: ...`), if any.
        stderr: String,
    },
}

impl SendError {
    /// Worth another try (webhook): connect errors, timeouts and 5xx; not 4xx.
    fn retryable(&self) -> bool {
        match self {
            SendError::Timeout(_) => true,
            SendError::Status(code) => *code >= 500,
            SendError::Http(msg) => msg.starts_with("cannot connect"),
            _ => false,
        }
    }
}

/// Sends and failures of one channel.
#[derive(Debug, Default)]
pub struct ChannelStats {
    /// Events delivered.
    pub sent: AtomicU64,
    /// Events that could not be delivered (after retries).
    pub failed: AtomicU64,
    /// Events dropped because the channel's queue was full.
    pub dropped: AtomicU64,
    /// Set after a failure was warned about; cleared by the next success.
    warned: AtomicBool,
    /// Set after a full queue was warned about; cleared by the next queued event.
    drop_warned: AtomicBool,
}

impl ChannelStats {
    /// `(sent, failed, dropped)`.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }
}

/// Counters for every channel.
#[derive(Debug, Default)]
pub struct NotifyStats {
    /// Events admitted by the deduplication.
    pub admitted: AtomicU64,
    /// Events suppressed as repeats.
    pub suppressed: AtomicU64,
    /// Desktop channel.
    pub desktop: ChannelStats,
    /// Command hook.
    pub command: ChannelStats,
    /// Webhook.
    pub webhook: ChannelStats,
}

/// The notifier: owns the dedup state and the channel workers. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    instance: Arc<str>,
    dedup: Arc<Mutex<Dedup>>,
    queues: Arc<Vec<(Channel, mpsc::Sender<Event>)>>,
    stats: Arc<NotifyStats>,
    /// Events queued or being sent, for [`Notifier::flush`].
    pending: Arc<AtomicUsize>,
    idle: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("instance", &self.instance)
            .field(
                "channels",
                &self
                    .queues
                    .iter()
                    .map(|(c, _)| c.name())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// One way of telling a person.
#[derive(Clone)]
enum Channel {
    Desktop(Arc<DesktopChannel>),
    Command(Arc<CommandChannel>),
    Webhook(Arc<WebhookChannel>),
}

impl Channel {
    fn name(&self) -> &'static str {
        match self {
            Channel::Desktop(_) => "desktop",
            Channel::Command(_) => "command",
            Channel::Webhook(_) => "webhook",
        }
    }

    fn stats<'a>(&self, stats: &'a NotifyStats) -> &'a ChannelStats {
        match self {
            Channel::Desktop(_) => &stats.desktop,
            Channel::Command(_) => &stats.command,
            Channel::Webhook(_) => &stats.webhook,
        }
    }

    async fn send(&self, ev: &Event) -> Result<(), SendError> {
        match self {
            Channel::Desktop(c) => c.send(ev).await,
            Channel::Command(c) => c.send(ev).await,
            Channel::Webhook(c) => c.send(ev).await,
        }
    }

    /// Where it sends, for logs (never the webhook's path or query).
    fn target(&self) -> String {
        match self {
            Channel::Desktop(c) => match &c.user {
                Some(u) => format!("user {u}"),
                None => "current user".into(),
            },
            Channel::Command(c) => c.argv.first().cloned().unwrap_or_default(),
            Channel::Webhook(c) => c.origin.clone(),
        }
    }
}

impl Notifier {
    /// A notifier for `instance` with the configured channels and default [`Tuning`].
    /// Must be called inside a tokio runtime (the channel workers are tasks). A channel that
    /// cannot be set up (unreadable webhook URL file, plain-http URL to a remote host) is
    /// logged as an error and left out; the others still work.
    pub fn new(cfg: &NotifyConfig, instance: &str) -> Notifier {
        Notifier::with_tuning(cfg, instance, Tuning::default())
    }

    /// [`Notifier::new`] with explicit timeouts/retries.
    pub fn with_tuning(cfg: &NotifyConfig, instance: &str, tuning: Tuning) -> Notifier {
        let mut channels = Vec::new();
        if cfg.desktop {
            channels.push(Channel::Desktop(Arc::new(DesktopChannel {
                user: cfg.desktop_user.clone(),
                address: tuning.desktop_bus_address.clone(),
                timeout: tuning.desktop_timeout,
            })));
        }
        if let Some(argv) = cfg.command.as_ref().filter(|a| !a.is_empty()) {
            channels.push(Channel::Command(Arc::new(CommandChannel {
                argv: argv.clone(),
                instance: instance.to_string(),
                timeout: tuning.command_timeout,
            })));
        }
        if let Some(file) = &cfg.webhook_url_file {
            match WebhookChannel::new(file, cfg, &tuning) {
                Ok(w) => channels.push(Channel::Webhook(Arc::new(w))),
                Err(e) => tracing::error!(
                    instance = %instance,
                    file = %file.display(),
                    error = %e,
                    "webhook disabled"
                ),
            }
        }
        let stats = Arc::new(NotifyStats::default());
        let pending = Arc::new(AtomicUsize::new(0));
        let idle = Arc::new(tokio::sync::Notify::new());
        let runtime = tokio::runtime::Handle::try_current();
        let mut queues = Vec::new();
        for channel in channels {
            let Ok(rt) = &runtime else {
                tracing::error!(
                    instance = %instance,
                    "notifier created outside a tokio runtime; disabled"
                );
                break;
            };
            let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
            rt.spawn(worker(
                channel.clone(),
                rx,
                instance.to_string(),
                stats.clone(),
                pending.clone(),
                idle.clone(),
            ));
            info!(instance = %instance, channel = channel.name(), target = %channel.target(), "notification channel");
            queues.push((channel, tx));
        }
        Notifier {
            instance: instance.into(),
            dedup: Arc::new(Mutex::new(Dedup::default())),
            queues: Arc::new(queues),
            stats,
            pending,
            idle,
        }
    }

    /// Tells a person, if the event is news. Never blocks, never fails; returns whether the
    /// event was admitted (not a repeat) — it may still fail to reach a channel later.
    pub fn notify(&self, kind: NoticeKind, severity: Severity, message: &str) -> bool {
        self.notify_at(kind, severity, message, Instant::now())
    }

    /// [`Notifier::notify`] at a given time (for the repeat intervals).
    pub fn notify_at(
        &self,
        kind: NoticeKind,
        severity: Severity,
        message: &str,
        now: Instant,
    ) -> bool {
        let admitted = {
            let mut d = match self.dedup.lock() {
                Ok(d) => d,
                Err(p) => p.into_inner(),
            };
            d.admit(kind, message, now)
        };
        let Some(message) = admitted else {
            self.stats.suppressed.fetch_add(1, Ordering::Relaxed);
            debug!(instance = %self.instance, kind = kind_name(kind), "notification suppressed (still active)");
            return false;
        };
        self.stats.admitted.fetch_add(1, Ordering::Relaxed);
        let ev = Event {
            instance: self.instance.to_string(),
            kind,
            severity,
            title: format!("ibwarden {}: {}", self.instance, kind_title(kind)),
            message,
        };
        info!(instance = %self.instance, kind = kind_name(kind), severity = severity_name(severity), message = %ev.message, "notification");
        for (channel, tx) in self.queues.iter() {
            self.pending.fetch_add(1, Ordering::SeqCst);
            let st = channel.stats(&self.stats);
            if tx.try_send(ev.clone()).is_err() {
                self.finish_one();
                st.dropped.fetch_add(1, Ordering::Relaxed);
                // One warning per overflow, not one per dropped event.
                if !st.drop_warned.swap(true, Ordering::Relaxed) {
                    warn!(
                        instance = %self.instance,
                        channel = channel.name(),
                        kind = kind_name(kind),
                        "notification dropped: the channel's queue is full (it is slow or hangs)"
                    );
                }
            } else {
                st.drop_warned.store(false, Ordering::Relaxed);
            }
        }
        true
    }

    fn finish_one(&self) {
        finish_one(&self.pending, &self.idle);
    }

    /// The gateway became ready (a passing API probe): every active problem has cleared.
    /// Sends "recovered" if anything was active. Call it on every `Status { ready: true }`:
    /// the core reports `Recovered` only after restarts, not when e.g. the first login
    /// failed and a person fixed the password, which must clear `LoginFailed` too.
    pub fn ready(&self) -> bool {
        self.notify(
            NoticeKind::Recovered,
            Severity::Info,
            "The gateway is logged in and its API answers.",
        )
    }

    /// Counters per channel.
    pub fn stats(&self) -> &NotifyStats {
        &self.stats
    }

    /// Names of the channels in use (`desktop`, `command`, `webhook`).
    pub fn channels(&self) -> Vec<&'static str> {
        self.queues.iter().map(|(c, _)| c.name()).collect()
    }

    /// Waits until every queued event was sent or given up, or `timeout` passes (at
    /// shutdown, so that a last notice is not lost). Returns true if all were done.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.pending.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.pending.load(Ordering::SeqCst) == 0;
            }
        }
    }
}

fn finish_one(pending: &AtomicUsize, idle: &tokio::sync::Notify) {
    if pending.fetch_sub(1, Ordering::SeqCst) == 1 {
        idle.notify_waiters();
    }
}

/// Sends a channel's events one at a time, in order.
async fn worker(
    channel: Channel,
    mut rx: mpsc::Receiver<Event>,
    instance: String,
    stats: Arc<NotifyStats>,
    pending: Arc<AtomicUsize>,
    idle: Arc<tokio::sync::Notify>,
) {
    let st = channel.stats(&stats);
    while let Some(ev) = rx.recv().await {
        match channel.send(&ev).await {
            Ok(()) => {
                st.sent.fetch_add(1, Ordering::Relaxed);
                if st.warned.swap(false, Ordering::Relaxed) {
                    info!(
                        instance = %instance,
                        channel = channel.name(),
                        "notification channel works again"
                    );
                } else {
                    debug!(
                        instance = %instance,
                        channel = channel.name(),
                        kind = kind_name(ev.kind),
                        "notification sent"
                    );
                }
            }
            Err(e) => {
                st.failed.fetch_add(1, Ordering::Relaxed);
                if !st.warned.swap(true, Ordering::Relaxed) {
                    warn!(
                        instance = %instance,
                        channel = channel.name(),
                        target = %channel.target(),
                        kind = kind_name(ev.kind),
                        error = %e,
                        "notification channel failed; further failures are logged at debug level until it works"
                    );
                } else {
                    debug!(instance = %instance, channel = channel.name(), kind = kind_name(ev.kind), error = %e, "notification failed");
                }
            }
        }
        finish_one(&pending, &idle);
    }
}

mod desktop;
#[allow(unused_imports)]
pub use desktop::*;
mod command;
#[allow(unused_imports)]
pub(crate) use command::*;
mod webhook;
#[allow(unused_imports)]
pub use webhook::*;
#[cfg(test)]
mod tests;
