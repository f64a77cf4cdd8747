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
        | NoticeKind::ClockBehind => None,
        // Each push needs its own approval, but not a message per retry.
        NoticeKind::HumanApproval => Some(Duration::from_secs(5 * MIN)),
        NoticeKind::Crash => Some(Duration::from_secs(10 * MIN)),
        NoticeKind::LockoutGuard | NoticeKind::RestartLoop | NoticeKind::UnknownDialog => {
            Some(Duration::from_secs(60 * MIN))
        }
        NoticeKind::PasswordExpiring => Some(Duration::from_secs(24 * 60 * MIN)),
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

// ----------------------------------------------------------------------------------------
// desktop

/// `org.freedesktop.Notifications` on a session bus.
///
/// Why not `notify-rust`'s `show_async()`: it always connects with
/// `zbus::Connection::session()`, which reads `$DBUS_SESSION_BUS_ADDRESS` (or
/// `$XDG_RUNTIME_DIR/bus`) of *this* process. A system service has neither, and setting the
/// variable at run time is racy in a multi-threaded process. Nor can it connect as another
/// user: a session bus accepts only its owner's uid (root included is refused), so root must
/// connect the socket with the user's effective uid. zbus (the crate notify-rust uses) takes
/// a pre-connected stream and an explicit uid for the EXTERNAL handshake, so we make the same
/// `Notify` call notify-rust makes, on a connection we set up.
struct DesktopChannel {
    /// `desktop_user`: a name or a uid.
    user: Option<String>,
    /// An explicit bus address (tests, unusual set-ups).
    address: Option<String>,
    timeout: Duration,
}

/// Which bus, as whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusTarget {
    /// A D-Bus address (`unix:path=/run/user/1000/bus`).
    pub address: String,
    /// The socket path, when the address is a plain `unix:path=`.
    pub path: Option<PathBuf>,
    /// The bus owner's uid and gid (to connect as, when we are root).
    pub owner: Option<(u32, u32)>,
}

/// Finds the session bus of `user` (a name or uid), or of the current user: an explicit
/// address, then `$DBUS_SESSION_BUS_ADDRESS` (only for the current user), then
/// `/run/user/<uid>/bus`.
pub fn find_session_bus(user: Option<&str>, address: Option<&str>) -> Result<BusTarget, SendError> {
    let owner = match user {
        Some(u) => Some(lookup_user(u)?),
        None => None,
    };
    if let Some(a) = address {
        return Ok(BusTarget {
            address: a.to_string(),
            path: unix_path(a),
            owner,
        });
    }
    let (uid, gid) = match owner {
        Some(o) => o,
        None => {
            if let Some(a) = std::env::var("DBUS_SESSION_BUS_ADDRESS")
                .ok()
                .filter(|a| !a.is_empty())
            {
                return Ok(BusTarget {
                    path: unix_path(&a),
                    address: a,
                    owner: None,
                });
            }
            (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            )
        }
    };
    let path = PathBuf::from(format!("/run/user/{uid}/bus"));
    if !path.exists() {
        return Err(SendError::NoBus(format!(
            "{} does not exist (is uid {uid} logged in to a desktop?)",
            path.display()
        )));
    }
    Ok(BusTarget {
        address: format!("unix:path={}", path.display()),
        path: Some(path),
        owner: Some((uid, gid)),
    })
}

fn lookup_user(user: &str) -> Result<(u32, u32), SendError> {
    if let Ok(uid) = user.parse::<u32>() {
        let gid = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.gid.as_raw())
            .unwrap_or(uid);
        return Ok((uid, gid));
    }
    match nix::unistd::User::from_name(user) {
        Ok(Some(u)) => Ok((u.uid.as_raw(), u.gid.as_raw())),
        Ok(None) => Err(SendError::NoBus(format!(
            "desktop_user {user:?} does not exist"
        ))),
        Err(e) => Err(SendError::NoBus(format!(
            "cannot look up desktop_user {user:?}: {e}"
        ))),
    }
}

/// The socket path of a single `unix:path=...` address.
fn unix_path(address: &str) -> Option<PathBuf> {
    let rest = address.strip_prefix("unix:")?;
    if address.contains(';') {
        return None;
    }
    rest.split(',')
        .find_map(|kv| kv.strip_prefix("path="))
        .map(PathBuf::from)
}

/// Connects to a unix socket with `uid`/`gid` as the effective ids, so that the peer (the
/// bus) sees that user in `SO_PEERCRED`. Only root can do this.
fn connect_as(path: &Path, uid: u32, gid: u32) -> std::io::Result<UnixStream> {
    let path = path.to_path_buf();
    let handle = std::thread::Builder::new()
        .name("ibwarden-bus-connect".into())
        .spawn(move || {
            set_thread_ids(uid, gid)?;
            UnixStream::connect(&path)
        })?;
    handle
        .join()
        .map_err(|_| std::io::Error::other("connect thread panicked"))?
}

/// Sets the effective uid/gid of the calling thread only.
///
/// Raw syscalls on purpose: glibc's setresuid() changes the ids of EVERY thread (it signals
/// them all); the raw syscall changes only the caller. Call it only on a thread that ends
/// right after its work, so the changed ids end with it.
fn set_thread_ids(uid: u32, gid: u32) -> std::io::Result<()> {
    // 32-bit x86 and ARM keep 16-bit ids in the plain calls; the *32 variants take full ids.
    #[cfg(any(target_arch = "x86", target_arch = "arm"))]
    let (setresgid, setresuid) = (libc::SYS_setresgid32, libc::SYS_setresuid32);
    #[cfg(not(any(target_arch = "x86", target_arch = "arm")))]
    let (setresgid, setresuid) = (libc::SYS_setresgid, libc::SYS_setresuid);
    let keep = -1 as libc::c_int;
    // SAFETY: plain syscalls with integer arguments, affecting only this thread.
    if unsafe { libc::syscall(setresgid, keep, gid as libc::c_uint, keep) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::syscall(setresuid, keep, uid as libc::c_uint, keep) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl DesktopChannel {
    async fn send(&self, ev: &Event) -> Result<(), SendError> {
        let target = find_session_bus(self.user.as_deref(), self.address.as_deref())?;
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, send_desktop(target, ev)).await {
            Ok(r) => r,
            Err(_) => Err(SendError::Timeout(timeout)),
        }
    }
}

async fn send_desktop(target: BusTarget, ev: &Event) -> Result<(), SendError> {
    // ibwarden runs in the desktop user's own session (the bus is this process's
    // `$DBUS_SESSION_BUS_ADDRESS`): notify-rust does exactly this job, so it is used. For any
    // other bus (a system service reaching a user's desktop) it cannot, see above.
    if std::env::var("DBUS_SESSION_BUS_ADDRESS").ok().as_deref() == Some(target.address.as_str()) {
        let urgency = match ev.severity {
            Severity::Info => notify_rust::Urgency::Low,
            Severity::Warning => notify_rust::Urgency::Normal,
            Severity::Critical => notify_rust::Urgency::Critical,
        };
        return notify_rust::Notification::new()
            .appname("ibwarden")
            .summary(&ev.title)
            .body(&ev.message)
            .urgency(urgency)
            .hint(notify_rust::Hint::Category("ibwarden".into()))
            .show_async()
            .await
            .map(|_| ())
            .map_err(|e| SendError::NoBus(format!("{}: {e}", target.address)));
    }
    let euid = nix::unistd::geteuid().as_raw();
    if let Some((uid, _)) = target.owner {
        if euid != 0 && uid != euid {
            return Err(SendError::NoBus(format!(
                "{} belongs to uid {uid}, and a session bus admits only its owner: run \
                 ibwarden as that user, or as root",
                target.address
            )));
        }
    }
    let builder = match (&target.path, target.owner) {
        (Some(path), Some((uid, gid))) if euid == 0 && uid != 0 => {
            let path = path.clone();
            let stream = tokio::task::spawn_blocking(move || connect_as(&path, uid, gid))
                .await
                .map_err(|e| SendError::NoBus(e.to_string()))?
                .map_err(|e| SendError::NoBus(format!("{}: {e}", target.address)))?;
            zbus::connection::Builder::unix_stream(stream).user_id(uid)
        }
        _ => zbus::connection::Builder::address(target.address.as_str()),
    };
    let conn = builder
        .build()
        .await
        .map_err(|e| SendError::NoBus(format!("{}: {e}", target.address)))?;
    let (urgency, icon): (u8, &str) = match ev.severity {
        Severity::Info => (0, "dialog-information"),
        Severity::Warning => (1, "dialog-warning"),
        Severity::Critical => (2, "dialog-error"),
    };
    let mut hints: std::collections::HashMap<&str, zbus::Variant<'_>> =
        std::collections::HashMap::new();
    hints.insert("urgency", zbus::Variant::U8(urgency));
    hints.insert("category", zbus::Variant::from("ibwarden"));
    let actions: Vec<&str> = Vec::new();
    let reply = conn
        .call_method(
            Some("org.freedesktop.Notifications"),
            "/org/freedesktop/Notifications",
            Some("org.freedesktop.Notifications"),
            "Notify",
            &(
                "ibwarden",
                0u32,
                icon,
                ev.title.as_str(),
                ev.message.as_str(),
                actions,
                hints,
                -1i32,
            ),
        )
        .await
        .map_err(|e| SendError::Dbus(e.to_string()))?;
    let id: u32 = reply
        .body()
        .deserialize()
        .map_err(|e| SendError::Dbus(e.to_string()))?;
    debug!(instance = %ev.instance, id, "desktop notification shown");
    Ok(())
}

// ----------------------------------------------------------------------------------------
// command

/// Environment variables a hook may keep; everything else (secrets included) is dropped.
const COMMAND_ENV_KEEP: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TZ",
    "XDG_RUNTIME_DIR",
    "DBUS_SESSION_BUS_ADDRESS",
];

struct CommandChannel {
    argv: Vec<String>,
    instance: String,
    timeout: Duration,
}

impl CommandChannel {
    /// Runs `argv... <kind> <severity> <message>` with `IBWARDEN_*` set, stdin null, in its
    /// own process group (killed whole on timeout).
    async fn send(&self, ev: &Event) -> Result<(), SendError> {
        let program = self.argv[0].clone();
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&self.argv[1..])
            .arg(kind_name(ev.kind))
            .arg(severity_name(ev.severity))
            .arg(&ev.message)
            .env_clear()
            .envs(
                COMMAND_ENV_KEEP
                    .iter()
                    .filter_map(|k| std::env::var_os(k).map(|v| (*k, v))),
            )
            .env("IBWARDEN_EVENT", kind_name(ev.kind))
            .env("IBWARDEN_SEVERITY", severity_name(ev.severity))
            .env("IBWARDEN_TITLE", &ev.title)
            .env("IBWARDEN_MESSAGE", &ev.message)
            .env("IBWARDEN_INSTANCE", &self.instance)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|error| SendError::Spawn {
            program: program.clone(),
            error,
        })?;
        let pid = child.id();
        match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(out)) if out.status.success() => Ok(()),
            Ok(Ok(out)) => {
                let text = String::from_utf8_lossy(&out.stderr);
                let first: String = text.trim().chars().take(200).collect();
                Err(SendError::Exit {
                    program,
                    status: out.status.to_string(),
                    stderr: if first.is_empty() {
                        String::new()
                    } else {
                        format!(": {first}")
                    },
                })
            }
            Ok(Err(error)) => Err(SendError::Spawn { program, error }),
            Err(_) => {
                if let Some(pid) = pid {
                    // The group too: a shell script's children would outlive it otherwise.
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                Err(SendError::Timeout(self.timeout))
            }
        }
    }
}

// ----------------------------------------------------------------------------------------
// webhook

struct WebhookChannel {
    url: Secret,
    /// `https://host` (what logs may show).
    origin: String,
    preset: WebhookPreset,
    chat_id: Option<String>,
    agent: ureq::Agent,
    backoff: Vec<Duration>,
    total_timeout: Duration,
}

/// Why a webhook cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL file could not be read.
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),
    /// The file does not hold a usable URL (the URL itself is never shown).
    #[error("the file does not hold an http(s) URL with a host")]
    BadUrl,
    /// `http://` to a non-loopback host.
    #[error("{0}: plain http is allowed only to loopback addresses; use https")]
    Insecure(String),
}

/// Scheme and host of a URL, and whether the host is a loopback address.
fn origin_of(url: &str) -> Result<(String, bool, bool), WebhookError> {
    let uri: ureq::http::Uri = url.trim().parse().map_err(|_| WebhookError::BadUrl)?;
    let scheme = uri
        .scheme_str()
        .ok_or(WebhookError::BadUrl)?
        .to_ascii_lowercase();
    let host = uri.host().ok_or(WebhookError::BadUrl)?.to_string();
    if host.is_empty() || !(scheme == "https" || scheme == "http") {
        return Err(WebhookError::BadUrl);
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false);
    Ok((format!("{scheme}://{host}"), scheme == "https", loopback))
}

impl WebhookChannel {
    fn new(file: &Path, cfg: &NotifyConfig, tuning: &Tuning) -> Result<Self, WebhookError> {
        let raw = SecretSource::File(file.to_path_buf()).load()?;
        let mut url = raw.expose().trim().to_string();
        let (origin, https, loopback) = origin_of(&url)?;
        if !https && !loopback {
            return Err(WebhookError::Insecure(origin));
        }
        if cfg.webhook_preset == WebhookPreset::Telegram && !url.ends_with("/sendMessage") {
            // Accept the bot's base URL (`https://api.telegram.org/bot<token>`) too.
            url = format!("{}/sendMessage", url.trim_end_matches('/'));
        }
        let mut config = ureq::Agent::config_builder()
            .timeout_connect(Some(tuning.webhook_connect_timeout))
            .timeout_global(Some(tuning.webhook_total_timeout))
            .http_status_as_error(false)
            // A redirect would re-send the body (and maybe the token) somewhere else.
            .max_redirects(0)
            .user_agent(concat!("ibwarden/", env!("CARGO_PKG_VERSION")));
        if loopback {
            config = config.proxy(None);
        }
        Ok(WebhookChannel {
            url: Secret::new(url),
            origin,
            preset: cfg.webhook_preset,
            chat_id: cfg.telegram_chat_id.clone(),
            agent: config.build().into(),
            backoff: tuning.webhook_backoff.clone(),
            total_timeout: tuning.webhook_total_timeout,
        })
    }

    async fn send(&self, ev: &Event) -> Result<(), SendError> {
        let request = build_request(self.preset, self.chat_id.as_deref(), ev);
        let mut attempt = 0usize;
        loop {
            let agent = self.agent.clone();
            let url = self.url.clone();
            let req = request.clone();
            let total = self.total_timeout;
            // ureq is blocking; its own timeouts bound the call, the outer one is a backstop.
            let call = tokio::task::spawn_blocking(move || post(&agent, url.expose(), &req));
            let result = match tokio::time::timeout(total + Duration::from_secs(2), call).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => Err(SendError::Http(format!("request task failed: {e}"))),
                Err(_) => Err(SendError::Timeout(total)),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) if e.retryable() && attempt < self.backoff.len() => {
                    debug!(instance = %ev.instance, origin = %self.origin, attempt = attempt + 1, error = %e, "webhook failed; retrying");
                    tokio::time::sleep(self.backoff[attempt]).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A webhook request: headers and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookRequest {
    /// Extra headers (name, value).
    pub headers: Vec<(&'static str, String)>,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

/// Header values must be visible ASCII; ntfy shows them as the title.
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Formats an event for a preset.
pub fn build_request(preset: WebhookPreset, chat_id: Option<&str>, ev: &Event) -> WebhookRequest {
    let text = format!("{}\n{}", ev.title, ev.message);
    match preset {
        WebhookPreset::Ntfy => {
            let (priority, tag) = match ev.severity {
                Severity::Info => ("3", "white_check_mark"),
                Severity::Warning => ("4", "warning"),
                Severity::Critical => ("5", "rotating_light"),
            };
            WebhookRequest {
                headers: vec![
                    ("Title", header_safe(&ev.title)),
                    ("Priority", priority.into()),
                    ("Tags", format!("{tag},ibwarden,{}", kind_name(ev.kind))),
                ],
                content_type: "text/plain; charset=utf-8",
                body: ev.message.clone(),
            }
        }
        WebhookPreset::Telegram => {
            let chat = chat_id.unwrap_or_default();
            let chat_id = match chat.parse::<i64>() {
                Ok(n) => serde_json::Value::from(n),
                Err(_) => serde_json::Value::from(chat),
            };
            WebhookRequest {
                headers: Vec::new(),
                content_type: "application/json",
                body: serde_json::json!({ "chat_id": chat_id, "text": text }).to_string(),
            }
        }
        WebhookPreset::Slack => WebhookRequest {
            headers: Vec::new(),
            content_type: "application/json",
            body: serde_json::json!({ "text": text }).to_string(),
        },
        WebhookPreset::Generic => WebhookRequest {
            headers: Vec::new(),
            content_type: "application/json",
            body: serde_json::json!({
                "instance": ev.instance,
                "kind": kind_name(ev.kind),
                "severity": severity_name(ev.severity),
                "title": ev.title,
                "message": ev.message,
            })
            .to_string(),
        },
    }
}

/// One POST. Errors are described without the URL (ureq's own messages may contain it).
fn post(agent: &ureq::Agent, url: &str, req: &WebhookRequest) -> Result<(), SendError> {
    let mut r = agent.post(url).header("Content-Type", req.content_type);
    for (name, value) in &req.headers {
        r = r.header(*name, value.as_str());
    }
    match r.send(req.body.as_str()) {
        Ok(resp) => {
            let status = resp.status().as_u16();
            if (200..300).contains(&status) {
                Ok(())
            } else {
                Err(SendError::Status(status))
            }
        }
        Err(e) => Err(describe_ureq(&e)),
    }
}

fn describe_ureq(e: &ureq::Error) -> SendError {
    use ureq::Error as E;
    match e {
        E::StatusCode(code) => SendError::Status(*code),
        E::Timeout(t) => SendError::Http(format!("cannot connect: timeout ({t})")),
        E::HostNotFound => SendError::Http("cannot connect: host not found".into()),
        E::ConnectionFailed => SendError::Http("cannot connect: connection failed".into()),
        E::Io(io) => SendError::Http(format!("cannot connect: {}", io.kind())),
        E::Tls(msg) => SendError::Http(format!("tls: {msg}")),
        E::Rustls(err) => SendError::Http(format!("tls: {err}")),
        E::TooManyRedirects | E::RedirectFailed => {
            SendError::Http("the server redirected (not followed)".into())
        }
        E::BadUri(_) | E::Http(_) => SendError::Http("invalid URL".into()),
        E::Protocol(_) => SendError::Http("http protocol error".into()),
        _ => SendError::Http("request failed".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_until_recovered() {
        let mut d = Dedup::default();
        let t0 = Instant::now();
        assert!(
            d.admit(NoticeKind::Recovered, "ok", t0).is_none(),
            "nothing active"
        );
        assert!(d
            .admit(NoticeKind::LoginFailed, "bad password", t0)
            .is_some());
        let later = t0 + Duration::from_secs(86_400 * 30);
        assert!(d
            .admit(NoticeKind::LoginFailed, "bad password again", later)
            .is_none());
        let r = d
            .admit(NoticeKind::Recovered, "ok", later)
            .expect("recovered sent");
        assert!(r.contains("cleared: login failed"), "{r}");
        assert!(!d.any_active());
        assert!(d.admit(NoticeKind::Recovered, "ok", later).is_none());
        assert!(d
            .admit(NoticeKind::LoginFailed, "bad password", later)
            .is_some());
    }

    #[test]
    fn an_expiring_password_outlives_a_recovery() {
        let mut d = Dedup::default();
        let t0 = Instant::now();
        assert!(d
            .admit(NoticeKind::PasswordExpiring, "in 5 days", t0)
            .is_some());
        assert!(
            d.admit(NoticeKind::Recovered, "ok", t0).is_none(),
            "nothing to clear"
        );
        assert!(d.admit(NoticeKind::Crash, "crash", t0).is_some());
        let r = d.admit(NoticeKind::Recovered, "ok", t0).expect("sent");
        assert!(r.ends_with("(cleared: gateway crashed)"), "{r}");
        assert!(d
            .admit(NoticeKind::PasswordExpiring, "in 5 days", t0)
            .is_none());
    }

    #[test]
    fn repeating_kinds_respect_their_interval() {
        let mut d = Dedup::default();
        let t0 = Instant::now();
        let every = repeat_after(NoticeKind::LockoutGuard).expect("repeats");
        assert!(d
            .admit(NoticeKind::LockoutGuard, "wait 600 s", t0)
            .is_some());
        assert!(d
            .admit(
                NoticeKind::LockoutGuard,
                "wait 500 s",
                t0 + every - Duration::from_secs(1)
            )
            .is_none());
        assert!(d
            .admit(NoticeKind::LockoutGuard, "wait 400 s", t0 + every)
            .is_some());
        // The interval restarts from the last send.
        assert!(d
            .admit(
                NoticeKind::LockoutGuard,
                "x",
                t0 + every + Duration::from_secs(1)
            )
            .is_none());
        // Other kinds are independent.
        assert!(d.admit(NoticeKind::Crash, "crash", t0 + every).is_some());
    }

    #[test]
    fn unknown_dialogs_are_told_apart_by_message() {
        let mut d = Dedup::default();
        let t0 = Instant::now();
        assert!(d.admit(NoticeKind::UnknownDialog, "dialog A", t0).is_some());
        assert!(d.admit(NoticeKind::UnknownDialog, "dialog B", t0).is_some());
        assert!(d.admit(NoticeKind::UnknownDialog, "dialog A", t0).is_none());
        let r = d.admit(NoticeKind::Recovered, "ok", t0).expect("sent");
        assert_eq!(r.matches("unknown dialog").count(), 1, "{r}");
    }

    #[test]
    fn origin_hides_path_and_rejects_remote_http() {
        let (o, https, lo) =
            origin_of("https://api.telegram.org/bot123:SECRET/sendMessage").expect("valid");
        assert_eq!(o, "https://api.telegram.org");
        assert!(https && !lo);
        let (_, https, lo) = origin_of("http://127.0.0.1:8080/hook").expect("valid");
        assert!(!https && lo);
        assert!(origin_of("http://[::1]:9/x").expect("valid").2);
        assert!(!origin_of("http://10.0.0.1/x").expect("valid").2);
        assert!(origin_of("ftp://example.com/x").is_err());
        assert!(origin_of("not a url").is_err());
    }

    #[test]
    fn unix_path_of_address() {
        assert_eq!(
            unix_path("unix:path=/run/user/1000/bus,guid=abc"),
            Some(PathBuf::from("/run/user/1000/bus"))
        );
        assert_eq!(unix_path("unix:abstract=/tmp/x"), None);
        assert_eq!(unix_path("tcp:host=localhost,port=1"), None);
    }

    #[test]
    fn presets() {
        let ev = Event {
            instance: "live".into(),
            kind: NoticeKind::LoginFailed,
            severity: Severity::Critical,
            title: "ibwarden live: login failed".into(),
            message: "Fix the password.".into(),
        };
        let n = build_request(WebhookPreset::Ntfy, None, &ev);
        assert_eq!(n.body, "Fix the password.");
        assert!(n.headers.contains(&("Priority", "5".into())));
        let t = build_request(WebhookPreset::Telegram, Some("-100123"), &ev);
        let v: serde_json::Value = serde_json::from_str(&t.body).expect("json");
        assert_eq!(v["chat_id"], serde_json::json!(-100123));
        let t = build_request(WebhookPreset::Telegram, Some("@chan"), &ev);
        let v: serde_json::Value = serde_json::from_str(&t.body).expect("json");
        assert_eq!(v["chat_id"], serde_json::json!("@chan"));
        let g = build_request(WebhookPreset::Generic, None, &ev);
        let v: serde_json::Value = serde_json::from_str(&g.body).expect("json");
        assert_eq!(v["kind"], "login_failed");
        assert_eq!(v["severity"], "critical");
    }
}
