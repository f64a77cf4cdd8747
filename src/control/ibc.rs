//! The IBC-compatible command server: plain TCP on 127.0.0.1, one command per line.
//!
//! IBC's protocol has no encryption and at most a shared token, and anything on the host
//! can reach loopback, including a web page in a local browser. So the server is strict:
//!
//! - a token is required (`control.ibc_command_auth_file`) unless the config opts out with
//!   `ibc_command_token = "none"`;
//! - a line is at most [`MAX_IBC_LINE`] bytes; a longer one closes the connection (never
//!   split into pieces read as commands), and so does anything that looks like HTTP (a
//!   request line or a header), so a browser's `POST` whose body is `RESTART` does nothing;
//! - a connection that has not authenticated gets [`UNPROVEN_DEADLINE`] in all, and at most
//!   [`MAX_UNPROVEN`] of them are open: the next one closes the oldest, so idle connections
//!   cannot hold every slot while a real client is served in milliseconds;
//! - each wrong `AUTH` is logged, and the peer's next `AUTH` answered only after a delay that
//!   doubles per failure (up to [`MAX_AUTH_DELAY`]; forgotten after [`FAILURE_MEMORY`]).
//!   The whole loopback network is one peer: `127.0.0.2` is the same host.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    forward, ControlCommand, ControlError, ControlReply, ControlRequest, IBC_IDLE_TIMEOUT,
    MAX_CONNECTIONS,
};
use crate::secret::Secret;

/// The longest command line (bytes, newline included). IBC's commands are a word and a token.
pub const MAX_IBC_LINE: usize = 1024;
/// A connection must authenticate within this after it was accepted (with no token
/// configured: every connection, which only ever sends a command and leaves).
pub const UNPROVEN_DEADLINE: Duration = Duration::from_secs(10);
/// Unauthenticated connections open at once; the next one closes the oldest.
pub const MAX_UNPROVEN: usize = 8;
/// The longest delay before a peer's `AUTH` is answered, after repeated failures.
pub const MAX_AUTH_DELAY: Duration = Duration::from_secs(5);
/// Failures older than this are forgotten.
const FAILURE_MEMORY: Duration = Duration::from_secs(600);
/// The first delay after a failure; it doubles with each further one.
const FIRST_AUTH_DELAY: Duration = Duration::from_millis(100);

/// Binds the IBC-compatible command server on `127.0.0.1:port` (loopback only: the
/// protocol has no encryption and at most a shared secret).
pub async fn bind_ibc(port: u16) -> Result<TcpListener, ControlError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpListener::bind(addr)
        .await
        .map_err(|source| ControlError::Io {
            about: "cannot listen for IBC commands on",
            path: PathBuf::from(addr.to_string()),
            source,
        })
}

/// What the connections share.
struct Shared {
    auth: Option<Secret>,
    stopping: AtomicBool,
    tx: mpsc::Sender<ControlRequest>,
    slots: Mutex<Slots>,
    penalties: Mutex<Penalties>,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Slots {
    next_id: u64,
    open: Vec<Slot>,
}

struct Slot {
    id: u64,
    proven: bool,
    cancel: CancellationToken,
}

impl Slots {
    /// Makes room for a new connection and registers it; `None` if every slot is held by
    /// an authenticated connection.
    fn admit(&mut self) -> Option<(u64, CancellationToken)> {
        if self.open.iter().filter(|s| !s.proven).count() >= MAX_UNPROVEN {
            if let Some(i) = self.open.iter().position(|s| !s.proven) {
                debug!("IBC command server: closing the oldest unauthenticated connection");
                self.open.remove(i).cancel.cancel();
            }
        }
        if self.open.len() >= MAX_CONNECTIONS {
            return None;
        }
        self.next_id += 1;
        let cancel = CancellationToken::new();
        self.open.push(Slot {
            id: self.next_id,
            proven: false,
            cancel: cancel.clone(),
        });
        Some((self.next_id, cancel))
    }

    fn prove(&mut self, id: u64) {
        if let Some(s) = self.open.iter_mut().find(|s| s.id == id) {
            s.proven = true;
        }
    }

    fn remove(&mut self, id: u64) {
        self.open.retain(|s| s.id != id);
    }
}

/// Wrong `AUTH`s per peer.
#[derive(Default)]
struct Penalties {
    by_peer: HashMap<IpAddr, (u32, Instant)>,
}

impl Penalties {
    /// Loopback addresses are all this host: one peer.
    fn key(ip: IpAddr) -> IpAddr {
        if ip.is_loopback() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            ip
        }
    }

    /// How long the peer's next `AUTH` waits.
    fn delay(&mut self, ip: IpAddr, now: Instant) -> Duration {
        match self.by_peer.get(&Self::key(ip)) {
            Some(&(n, last)) if now.duration_since(last) < FAILURE_MEMORY && n > 0 => {
                let shift = (n - 1).min(16);
                FIRST_AUTH_DELAY
                    .saturating_mul(1 << shift)
                    .min(MAX_AUTH_DELAY)
            }
            _ => Duration::ZERO,
        }
    }

    /// Records a failure; returns the peer's recent count.
    fn failed(&mut self, ip: IpAddr, now: Instant) -> u32 {
        if self.by_peer.len() > 1024 {
            self.by_peer
                .retain(|_, (_, last)| now.duration_since(*last) < FAILURE_MEMORY);
        }
        let e = self.by_peer.entry(Self::key(ip)).or_insert((0, now));
        if now.duration_since(e.1) >= FAILURE_MEMORY {
            e.0 = 0;
        }
        e.0 = e.0.saturating_add(1);
        e.1 = now;
        e.0
    }

    fn succeeded(&mut self, ip: IpAddr) {
        self.by_peer.remove(&Self::key(ip));
    }
}

/// Serves IBC commands on `listener` until the task is dropped. `auth`: the token the first
/// command must present as `AUTH <token>` (`None` only when the config said
/// `ibc_command_token = "none"`).
pub async fn serve_ibc(
    listener: TcpListener,
    auth: Option<Secret>,
    tx: mpsc::Sender<ControlRequest>,
) {
    let shared = Arc::new(Shared {
        auth,
        stopping: AtomicBool::new(false),
        tx,
        slots: Mutex::new(Slots::default()),
        penalties: Mutex::new(Penalties::default()),
    });
    let mut conns = JoinSet::new();
    let mut refused_logged: Option<Instant> = None;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if !peer.ip().is_loopback() {
                        warn!(%peer, "IBC command server: refused a non-loopback client");
                        continue;
                    }
                    let admitted = lock(&shared.slots).admit();
                    let Some((id, cancel)) = admitted else {
                        let now = Instant::now();
                        if refused_logged.is_none_or(|t| now.duration_since(t) > Duration::from_secs(60)) {
                            warn!("IBC command server: every slot is held by an authenticated client; refusing connections");
                            refused_logged = Some(now);
                        }
                        continue;
                    };
                    let shared = shared.clone();
                    conns.spawn(async move {
                        tokio::select! {
                            () = handle_ibc(stream, peer, id, &shared) => {}
                            () = cancel.cancelled() => {}
                        }
                        lock(&shared.slots).remove(id);
                    });
                }
                Err(e) => {
                    warn!(error = %e, "IBC command server: accept failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// What one IBC command line does.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum IbcStep {
    /// Write this line and keep reading.
    Reply(String),
    /// Write this line and close the connection.
    Close(String),
    /// Forward a command to the driver; on success write `ok` and close.
    Forward {
        cmd: ControlCommand,
        ok: &'static str,
    },
    /// An `AUTH` line, and whether its token is the configured one (the caller answers it,
    /// after the peer's delay).
    Auth { matches: bool },
    /// Not this protocol (HTTP): close without executing anything.
    Hangup(&'static str),
    /// Nothing (blank line).
    Nothing,
}

/// HTTP methods: a line starting with one of these and a space is a browser or a scanner.
const HTTP_METHODS: &[&str] = &[
    "GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE", "PATCH", "CONNECT", "TRACE",
];

/// Decides what an IBC command line means (pure; the replies are IBC's own text).
pub(super) fn ibc_step(
    line: &str,
    authed: bool,
    auth: Option<&Secret>,
    stopping: &AtomicBool,
) -> IbcStep {
    let line = line.trim();
    if line.is_empty() {
        return IbcStep::Nothing;
    }
    let (word, rest) = match line.split_once(char::is_whitespace) {
        Some((v, r)) => (v, r.trim()),
        None => (line, ""),
    };
    if (HTTP_METHODS.contains(&word) && rest.contains('/'))
        || line.contains(" HTTP/")
        || (word.ends_with(':') && word.len() > 1)
    {
        return IbcStep::Hangup("an HTTP request");
    }
    let verb = word.to_ascii_uppercase();
    if let Some(token) = auth {
        if verb == "AUTH" {
            return IbcStep::Auth {
                matches: constant_time_eq(rest.as_bytes(), token.expose().as_bytes()),
            };
        }
        if !authed && verb != "EXIT" {
            return IbcStep::Reply("ERROR Not authenticated: send AUTH <token> first".into());
        }
    }
    match verb.as_str() {
        "EXIT" => IbcStep::Close("OK Goodbye".into()),
        "STOP" => {
            if stopping.swap(true, Ordering::SeqCst) {
                IbcStep::Reply("ERROR STOP already in progress".into())
            } else {
                IbcStep::Forward {
                    cmd: ControlCommand::Stop,
                    ok: "OK Shutting down: STOP command",
                }
            }
        }
        "RESTART" => IbcStep::Forward {
            cmd: ControlCommand::Restart,
            ok: "OK RESTART in progress",
        },
        "ENABLEAPI" => IbcStep::Reply("ERROR ENABLEAPI is not valid for the IB Gateway".into()),
        "RECONNECTDATA" | "RECONNECTACCOUNT" | "PAUSE" => IbcStep::Reply(format!(
            "ERROR {verb} is not supported by ibwarden; use RESTART"
        )),
        _ => IbcStep::Reply("ERROR Command invalid".into()),
    }
}

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn handle_ibc(stream: tokio::net::TcpStream, peer: SocketAddr, id: u64, shared: &Shared) {
    let accepted = Instant::now();
    let (read, mut write) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(read);
    let mut authed = false;
    loop {
        // Until authenticated, one deadline for the whole connection; after, an idle limit.
        let deadline = if authed {
            Instant::now() + IBC_IDLE_TIMEOUT
        } else {
            accepted + UNPROVEN_DEADLINE
        };
        let mut buf = Vec::new();
        let mut limited = (&mut lines).take(MAX_IBC_LINE as u64 + 1);
        let n = match tokio::time::timeout_at(deadline, limited.read_until(b'\n', &mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => return,
            Err(_) => {
                if !authed {
                    let _ = write
                        .write_all(b"ERROR Timed out: send AUTH <token> within 10 s\n")
                        .await;
                }
                return;
            }
        };
        if n == 0 {
            return;
        }
        if buf.last() != Some(&b'\n') && buf.len() > MAX_IBC_LINE {
            warn!(%peer, "IBC command server: line over {MAX_IBC_LINE} bytes; connection closed");
            let _ = write.write_all(b"ERROR Line too long\n").await;
            return;
        }
        let Ok(line) = String::from_utf8(buf) else {
            warn!(%peer, "IBC command server: a line that is not UTF-8; connection closed");
            return;
        };
        let step = ibc_step(&line, authed, shared.auth.as_ref(), &shared.stopping);
        if let IbcStep::Forward { cmd, .. } = &step {
            info!(command = ?cmd, "IBC command server: command received");
        }
        let (text, close) = match step {
            IbcStep::Nothing => continue,
            IbcStep::Hangup(what) => {
                warn!(%peer, "IBC command server: {what}, not an IBC command; connection closed");
                return;
            }
            IbcStep::Reply(t) => (t, false),
            IbcStep::Close(t) => (t, true),
            IbcStep::Auth { matches } => {
                let delay = lock(&shared.penalties).delay(peer.ip(), Instant::now());
                if !delay.is_zero() {
                    // Answered only after the delay; a connection closed meanwhile (its
                    // deadline, or evicted) taught the peer nothing.
                    if tokio::time::timeout_at(deadline, tokio::time::sleep(delay))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                if matches {
                    authed = true;
                    lock(&shared.penalties).succeeded(peer.ip());
                    lock(&shared.slots).prove(id);
                    debug!(%peer, "IBC command server: authenticated");
                    ("OK Authenticated".to_string(), false)
                } else {
                    let failures = lock(&shared.penalties).failed(peer.ip(), Instant::now());
                    let next = lock(&shared.penalties).delay(peer.ip(), Instant::now());
                    warn!(%peer, failures, next_delay_ms = next.as_millis() as u64,
                        "IBC command server: wrong AUTH token");
                    ("ERROR Authentication failed".to_string(), true)
                }
            }
            IbcStep::Forward { cmd, ok } => {
                let was_stop = cmd == ControlCommand::Stop;
                match forward(cmd, &shared.tx).await {
                    ControlReply::Error { message } => {
                        if was_stop {
                            shared.stopping.store(false, Ordering::SeqCst);
                        }
                        (format!("ERROR {message}"), false)
                    }
                    _ => (ok.to_string(), true),
                }
            }
        };
        let out = format!("{text}\n");
        if write.write_all(out.as_bytes()).await.is_err() || close {
            let _ = write.shutdown().await;
            return;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
