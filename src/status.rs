//! The supervisor's state as others may see it: `ibwarden status`, `/readyz`, `/metrics`.
//!
//! The driver owns the core and publishes a [`Snapshot`] after every step of its loop. Readers
//! (the control socket, the health endpoint) only ever read a copy: they never reach into the
//! core, so they cannot block it. The lock is a std `RwLock` held for a clone or an
//! assignment, never across an `.await`.

use std::sync::{Arc, RwLock};

use serde::Serialize;

/// A point-in-time view of one supervised gateway.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Snapshot {
    /// Instance name (the config file's stem, or the systemd instance).
    pub instance: String,
    /// Phase of the core (`LoggingIn`, `Ready`, `Backoff`, `Halted`, ...).
    pub phase: String,
    /// True only while the last API probe passed.
    pub ready: bool,
    /// Why it waits or halted, or what it is doing (one line for people).
    pub reason: String,
    /// The gateway JVM's pid, if one runs.
    pub jvm_pid: Option<u32>,
    /// When ibwarden started (unix ms).
    pub started_unix_ms: u64,
    /// When the gateway last became ready (unix ms).
    pub last_ready_unix_ms: Option<u64>,
    /// Login submissions so far.
    pub logins: u64,
    /// Times the gateway became ready.
    pub readies: u64,
    /// Relaunches by reason.
    pub restarts: Vec<(String, u64)>,
    /// Failed logins still allowed in the rolling hour.
    pub login_budget_left: u32,
    /// The next scheduled event, if any.
    pub next_scheduled: Option<Scheduled>,
    /// Round-trip of the last passing probe, in milliseconds.
    pub probe_latency_ms: Option<f64>,
    /// A person is connected to the display (VNC takeover): ibwarden types nothing.
    pub human_connected: bool,
    /// Keys changed in the file since ibwarden started that only a restart of ibwarden
    /// applies (the running values stay until then).
    pub restart_pending: Vec<String>,
    /// When the driver loop last published (unix ms); `/livez` fails when it goes stale.
    /// The driver must publish periodically even when idle, not only on state changes.
    pub heartbeat_unix_ms: u64,
    /// The Client Portal session, for `program = "clientportal"` (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_portal: Option<ClientPortal>,
}

/// What the Client Portal gateway's API last said, and how the session is kept.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ClientPortal {
    /// `authenticated` of the last `auth/status` or tickle answer.
    pub authenticated: Option<bool>,
    /// `connected` of that answer.
    pub connected: Option<bool>,
    /// `competing` of that answer.
    pub competing: Option<bool>,
    /// When that answer came (unix ms).
    pub last_status_unix_ms: Option<u64>,
    /// When the last tickle was answered (unix ms).
    pub last_tickle_unix_ms: Option<u64>,
    /// `reauthenticate` requests sent since ibwarden started.
    pub reauthentications: u64,
    /// A browser login is running (Chromium is open only then).
    pub browser_open: bool,
}

/// A planned event: `{"what": "daily restart", "at_unix_ms": ...}` in `status --json`.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Scheduled {
    /// What happens (`daily restart`, `weekly cold restart`, `closedown`).
    pub what: String,
    /// When (unix ms).
    pub at_unix_ms: u64,
}

/// The shared, published snapshot.
pub type SharedStatus = Arc<RwLock<Snapshot>>;

/// A new shared snapshot.
pub fn shared(instance: &str, started_unix_ms: u64) -> SharedStatus {
    Arc::new(RwLock::new(Snapshot {
        instance: instance.to_string(),
        started_unix_ms,
        phase: "Idle".into(),
        ..Snapshot::default()
    }))
}

/// A copy of the current snapshot (a poisoned lock still yields the last value).
pub fn read(status: &SharedStatus) -> Snapshot {
    match status.read() {
        Ok(s) => s.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

/// Replaces the snapshot.
pub fn publish(status: &SharedStatus, snap: Snapshot) {
    match status.write() {
        Ok(mut s) => *s = snap,
        Err(p) => *p.into_inner() = snap,
    }
}
