//! systemd's notify protocol (`sd_notify(3)`), without a crate: one datagram per state
//! change to the socket named by `$NOTIFY_SOCKET`.
//!
//! ibwarden runs as `Type=notify`: `READY=1` is sent only after a passing API probe, every
//! state change updates `STATUS=`, the main loop pings `WATCHDOG=1` (so a stuck ibwarden is
//! restarted by systemd), and a config reload is framed by `RELOADING=1` (with
//! `MONOTONIC_USEC=`, as `Type=notify-reload` requires) and `READY=1`.
//!
//! [`Systemd`] is the sending end (named for what it talks to: `notify::Notifier` is the
//! one that tells a person).
//!
//! Notification is best effort: without `$NOTIFY_SOCKET` nothing is sent, and a socket that
//! has gone away is logged once, never an error for the caller.

use std::ffi::OsStr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::{debug, warn};

/// Longest `STATUS=` text sent; systemd shows one line, and a status is not a log.
const MAX_STATUS_CHARS: usize = 400;

/// Where notifications go.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// A socket file.
    Path(PathBuf),
    /// A Linux abstract socket (`@name` in `$NOTIFY_SOCKET`).
    Abstract(Vec<u8>),
}

/// A handle for sending notifications. Cheap to share by reference; `Sync`.
#[derive(Debug)]
pub struct Systemd {
    target: Option<Target>,
    socket: Option<UnixDatagram>,
    /// Set after the first failure is logged at warn; later ones go to debug.
    warned: AtomicBool,
}

impl Systemd {
    /// A notifier for `$NOTIFY_SOCKET`; disabled when it is unset or empty.
    pub fn from_env() -> Systemd {
        Systemd::new(std::env::var_os("NOTIFY_SOCKET").as_deref())
    }

    /// A notifier for an explicit address (`/path` or `@abstract`); `None` disables it.
    pub fn new(addr: Option<&OsStr>) -> Systemd {
        let target = match addr.map(OsStr::as_bytes) {
            None | Some([]) => None,
            Some([b'@', name @ ..]) => Some(Target::Abstract(name.to_vec())),
            Some(path) if path.starts_with(b"/") => {
                Some(Target::Path(PathBuf::from(OsStr::from_bytes(path))))
            }
            Some(_) => {
                // vsock: and relative paths are not used for services on one host.
                warn!(addr = ?addr, "unsupported NOTIFY_SOCKET address; systemd notifications disabled");
                None
            }
        };
        // Non-blocking: a full receive queue must never stall the supervisor's loop.
        let socket = target.as_ref().and_then(|_| {
            UnixDatagram::unbound()
                .and_then(|s| s.set_nonblocking(true).map(|()| s))
                .map_err(|e| warn!(error = %e, "cannot create the sd_notify socket"))
                .ok()
        });
        Systemd {
            target,
            socket,
            warned: AtomicBool::new(false),
        }
    }

    /// True if notifications are sent somewhere (running under systemd `Type=notify`).
    pub fn is_enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends raw `KEY=VALUE` lines. Returns whether the datagram was sent.
    pub fn send(&self, state: &str) -> bool {
        let (Some(socket), Some(target)) = (&self.socket, &self.target) else {
            return false;
        };
        let result = match target {
            Target::Path(path) => socket.send_to(state.as_bytes(), path),
            Target::Abstract(name) => SocketAddr::from_abstract_name(name)
                .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr)),
        };
        match result {
            Ok(_) => true,
            Err(e) => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    warn!(error = %e, "sd_notify failed; further failures are logged at debug");
                } else {
                    debug!(error = %e, "sd_notify failed");
                }
                false
            }
        }
    }

    /// `READY=1` with a status line: only after a passing API probe.
    pub fn ready(&self, status: &str) -> bool {
        self.send(&format!("READY=1\nSTATUS={}", clean_status(status)))
    }

    /// `STATUS=...`.
    pub fn status(&self, status: &str) -> bool {
        self.send(&format!("STATUS={}", clean_status(status)))
    }

    /// `WATCHDOG=1`: "the main loop is alive".
    pub fn watchdog(&self) -> bool {
        self.send("WATCHDOG=1")
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=` (required by `Type=notify-reload`); send
    /// [`Systemd::ready`] when the reload is done.
    pub fn reloading(&self, status: &str) -> bool {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS={}",
            monotonic_usec(),
            clean_status(status)
        ))
    }

    /// The watchdog interval for this process ([`watchdog_interval`]).
    pub fn watchdog_interval(&self) -> Option<Duration> {
        watchdog_interval()
    }

    /// `STOPPING=1` with a status line.
    pub fn stopping(&self, status: &str) -> bool {
        self.send(&format!("STOPPING=1\nSTATUS={}", clean_status(status)))
    }
}

/// One line, bounded: a newline would start a new (bogus) assignment.
fn clean_status(status: &str) -> String {
    status
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_STATUS_CHARS)
        .collect()
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd compares `MONOTONIC_USEC` with.
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid pointer we pass.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000).saturating_add(nanos / 1_000)
}

/// The watchdog interval systemd expects pings within (`WatchdogSec=`), from
/// `$WATCHDOG_USEC` and `$WATCHDOG_PID`. `None` when the watchdog is off or meant for
/// another process. Ping at least every half of it, as `sd_watchdog_enabled(3)` advises.
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_from(
        std::env::var_os("WATCHDOG_USEC").as_deref(),
        std::env::var_os("WATCHDOG_PID").as_deref(),
        std::process::id(),
    )
}

/// [`watchdog_interval`] on explicit values (testable without touching the environment).
pub fn watchdog_interval_from(
    usec: Option<&OsStr>,
    pid: Option<&OsStr>,
    own_pid: u32,
) -> Option<Duration> {
    let usec: u64 = usec?.to_str()?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    if let Some(pid) = pid {
        let pid: u32 = pid.to_str()?.trim().parse().ok()?;
        if pid != own_pid {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 1024];
        let n = sock.recv(&mut buf).expect("datagram within 5 s");
        String::from_utf8(buf[..n].to_vec()).expect("utf-8")
    }

    #[test]
    fn messages_arrive_on_a_path_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).expect("bind");
        let n = Systemd::new(Some(path.as_os_str()));
        assert!(n.is_enabled());

        assert!(n.ready("ready: api up (server 176)"));
        assert_eq!(recv(&server), "READY=1\nSTATUS=ready: api up (server 176)");
        assert!(n.status("logging in\nREADY=1"));
        // A newline in a status cannot smuggle in another assignment.
        assert_eq!(recv(&server), "STATUS=logging in READY=1");
        assert!(n.watchdog());
        assert_eq!(recv(&server), "WATCHDOG=1");
        assert!(n.stopping("stopping"));
        assert_eq!(recv(&server), "STOPPING=1\nSTATUS=stopping");

        let before = monotonic_usec();
        assert!(n.reloading("reloading config"));
        let msg = recv(&server);
        let lines: Vec<&str> = msg.lines().collect();
        assert_eq!(lines[0], "RELOADING=1");
        let usec: u64 = lines[1]
            .strip_prefix("MONOTONIC_USEC=")
            .expect("monotonic field")
            .parse()
            .expect("number");
        assert!(usec >= before && usec <= monotonic_usec());
        assert_eq!(lines[2], "STATUS=reloading config");
    }

    #[test]
    fn messages_arrive_on_an_abstract_socket() {
        let name = format!("ibwarden-sdnotify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let server = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        let n = Systemd::new(Some(OsStr::new(&format!("@{name}"))));
        assert!(n.watchdog());
        assert_eq!(recv(&server), "WATCHDOG=1");
    }

    #[test]
    fn gone_socket_and_no_socket_are_not_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = Systemd::new(Some(dir.path().join("gone").as_os_str()));
        assert!(n.is_enabled());
        assert!(!n.ready("x"));
        assert!(!n.watchdog()); // second failure: logged at debug only
        assert!(n.warned.load(Ordering::Relaxed));

        for disabled in [None, Some(OsStr::new("")), Some(OsStr::new("vsock:2:1234"))] {
            let n = Systemd::new(disabled);
            assert!(!n.is_enabled());
            assert!(!n.ready("x"));
        }
    }

    #[test]
    fn watchdog_interval_parsing() {
        let os = |s: &'static str| Some(OsStr::new(s));
        assert_eq!(
            watchdog_interval_from(os("30000000"), None, 42),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            watchdog_interval_from(os("30000000"), os("42"), 42),
            Some(Duration::from_secs(30))
        );
        assert_eq!(watchdog_interval_from(os("30000000"), os("43"), 42), None);
        assert_eq!(watchdog_interval_from(os("0"), None, 42), None);
        assert_eq!(watchdog_interval_from(os("soon"), None, 42), None);
        assert_eq!(watchdog_interval_from(None, os("42"), 42), None);
    }
}
