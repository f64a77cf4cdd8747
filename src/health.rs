//! The health endpoint: `/livez`, `/readyz` and `/metrics` (Prometheus text format 0.0.4)
//! over a deliberately tiny HTTP/1.1 server (GET/HEAD only, one request per connection,
//! `Connection: close`), so monitoring needs no web framework in the supervisor.
//!
//! Every answer is computed from the published [`Snapshot`](crate::status::Snapshot) alone:
//! the server never reaches into the driver, so a slow scraper cannot stall a login.
//!
//! - `/livez`: 200 while the driver loop is alive, i.e. it published a heartbeat
//!   (`heartbeat_unix_ms`) within [`HealthOptions::stale_after`]; 503 otherwise.
//! - `/readyz`: 200 only while the last API probe passed (`Snapshot.ready`); 503 with the
//!   phase and reason otherwise.
//! - `/metrics`: state as a labelled gauge, counters, last ready time, probe latency,
//!   failed-login budget, and RSS/CPU of ibwarden and of the gateway JVM from `/proc`.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use crate::status::{self, SharedStatus, Snapshot};

/// Longest request head read (request line and headers).
const MAX_REQUEST: usize = 8 * 1024;
/// Connections open at once. At the limit a new connection is still taken: the oldest one
/// that has not sent its request head yet is closed for it, so clients that hold
/// connections open without asking (slowloris) cannot lock a monitor out.
const MAX_CONNECTIONS: usize = 512;
/// Connections one remote peer address may hold; past it the peer's own oldest unfinished
/// connection is closed first. Loopback peers share the global limit only: on one host the
/// monitor and anything else local have the same address.
const MAX_PER_PEER: usize = 64;
/// A connection younger than this is never closed to make room (its head may be on its
/// way); a newcomer finding no older unfinished one is refused instead.
const MIN_AGE: Duration = Duration::from_millis(50);
/// Time a client gets to send its request head (a monitor sends it with the connect).
const HEAD_TIMEOUT: Duration = Duration::from_secs(1);
/// Time a client gets to send its request and read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The phases of the core, so the state gauge has a stable set of series.
const PHASES: &[&str] = &[
    "Idle",
    "Launching",
    "LoggingIn",
    "AwaitApi",
    "Ready",
    "Restarting",
    "Backoff",
    "Halted",
    "Stopping",
    "Stopped",
];

/// How the endpoint judges liveness.
#[derive(Clone, Debug)]
pub struct HealthOptions {
    /// `/livez` fails when the driver's heartbeat is older than this.
    pub stale_after: Duration,
    /// The API relay's counters, when `[relay]` is on (shown in `/metrics`).
    pub relay: Option<Arc<crate::relay::RelayStats>>,
}

impl Default for HealthOptions {
    fn default() -> Self {
        HealthOptions {
            stale_after: Duration::from_secs(60),
            relay: None,
        }
    }
}

/// Binds the listener. Warns loudly when the address is not loopback: the metrics tell
/// anyone who can connect about the account's state.
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        warn!(
            listen = %local,
            "health endpoint listens on a non-loopback address: anyone who can reach it sees \
             the gateway's state; firewall it or use 127.0.0.1"
        );
    }
    info!(listen = %local, "health endpoint listening");
    Ok(listener)
}

/// Binds `addr` and serves until the task is dropped.
pub async fn serve(addr: SocketAddr, status: SharedStatus) -> io::Result<()> {
    let listener = bind(addr).await?;
    serve_listener(listener, status, HealthOptions::default()).await
}

/// Serves on a bound listener until the task is dropped. Accept errors (e.g. out of file
/// descriptors) are logged and retried after a short pause; they never end the server.
pub async fn serve_listener(
    listener: TcpListener,
    status: SharedStatus,
    opts: HealthOptions,
) -> io::Result<()> {
    let table = Arc::new(std::sync::Mutex::new(Connections::default()));
    let opts = Arc::new(opts);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "health endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let admitted = match table.lock() {
            Ok(mut t) => t.admit(peer.ip()),
            Err(_) => return Ok(()),
        };
        let Some((id, cancel, head_done)) = admitted else {
            debug!(%peer, "health endpoint: no room; closing");
            continue;
        };
        let status = status.clone();
        let opts = opts.clone();
        let table = table.clone();
        tokio::spawn(async move {
            let served = async {
                tokio::select! {
                    r = tokio::time::timeout(IO_TIMEOUT, handle(stream, &status, &opts, &head_done)) => {
                        if r.is_err() {
                            debug!(%peer, "health endpoint: client too slow");
                        }
                    }
                    _ = cancel.notified() => {
                        debug!(%peer, "health endpoint: unfinished connection closed for a new one");
                    }
                }
            };
            served.await;
            if let Ok(mut t) = table.lock() {
                t.remove(id);
            }
        });
    }
}

/// The open connections, oldest first. A std mutex: held for a push or a scan, never
/// across an await.
#[derive(Default)]
struct Connections {
    next: u64,
    open: std::collections::VecDeque<Conn>,
}

struct Conn {
    id: u64,
    peer: std::net::IpAddr,
    accepted: std::time::Instant,
    cancel: Arc<tokio::sync::Notify>,
    /// Set once the request head arrived (then the connection is about to be answered).
    head_done: Arc<std::sync::atomic::AtomicBool>,
}

impl Connections {
    /// Takes a new connection, making room by closing the oldest unfinished one of the same
    /// peer (past [`MAX_PER_PEER`]) or of anyone (past [`MAX_CONNECTIONS`]).
    fn admit(
        &mut self,
        peer: std::net::IpAddr,
    ) -> Option<(
        u64,
        Arc<tokio::sync::Notify>,
        Arc<std::sync::atomic::AtomicBool>,
    )> {
        use std::sync::atomic::Ordering;
        let now = std::time::Instant::now();
        let victim = |c: &Conn| {
            !c.head_done.load(Ordering::SeqCst) && now.duration_since(c.accepted) >= MIN_AGE
        };
        if !peer.is_loopback()
            && self.open.iter().filter(|c| c.peer == peer).count() >= MAX_PER_PEER
        {
            let i = self.open.iter().position(|c| c.peer == peer && victim(c))?;
            self.evict(i);
        }
        if self.open.len() >= MAX_CONNECTIONS {
            let i = self.open.iter().position(victim)?;
            self.evict(i);
        }
        self.next += 1;
        let conn = Conn {
            id: self.next,
            peer,
            accepted: now,
            cancel: Arc::new(tokio::sync::Notify::new()),
            head_done: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        let out = (conn.id, conn.cancel.clone(), conn.head_done.clone());
        self.open.push_back(conn);
        Some(out)
    }

    fn evict(&mut self, i: usize) {
        if let Some(c) = self.open.remove(i) {
            // `notify_one` stores a permit: the task sees it even if not yet waiting.
            c.cancel.notify_one();
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some(i) = self.open.iter().position(|c| c.id == id) {
            self.open.remove(i);
        }
    }
}

/// One HTTP answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Extra headers.
    pub headers: Vec<(&'static str, &'static str)>,
    /// Body.
    pub body: String,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: body.into(),
        }
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

async fn handle(
    mut stream: TcpStream,
    status: &SharedStatus,
    opts: &HealthOptions,
    head_done: &std::sync::atomic::AtomicBool,
) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    // Read the head (up to the blank line) within HEAD_TIMEOUT; a body is not expected and
    // is ignored.
    let read_head = async {
        loop {
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
                break true;
            }
            if buf.len() > MAX_REQUEST {
                break false;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break !buf.is_empty() && buf.contains(&b'\n'),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let Ok(head_complete) = tokio::time::timeout(HEAD_TIMEOUT, read_head).await else {
        return;
    };
    head_done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (resp, head_only) = if !head_complete && buf.len() > MAX_REQUEST {
        (Response::text(431, "request too large\n"), false)
    } else {
        let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let mut parts = line.trim_end_matches('\r').split(' ');
        let method = parts.next().unwrap_or_default();
        let target = parts.next().unwrap_or_default();
        let version = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") || target.is_empty() {
            (Response::text(400, "bad request\n"), false)
        } else {
            let path = target.split('?').next().unwrap_or_default();
            match method {
                "GET" | "HEAD" => (
                    route(path, &status::read(status), now_unix_ms(), opts),
                    method == "HEAD",
                ),
                _ => {
                    let mut r = Response::text(405, "only GET\n");
                    r.headers.push(("Allow", "GET, HEAD"));
                    (r, false)
                }
            }
        }
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        resp.status,
        reason_phrase(resp.status),
        resp.content_type,
        resp.body.len()
    );
    for (k, v) in &resp.headers {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(&resp.body);
    }
    let _ = stream.write_all(out.as_bytes()).await;
    let _ = stream.shutdown().await;
    // Closing with unread input makes the kernel send a reset, which can destroy the answer
    // before the client reads it (431 on a large request): read what is left until the
    // client closes (bounded by the caller's timeout and a byte limit).
    let mut drained = 0usize;
    while drained < 1 << 20 {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The answer for a path, from a snapshot (pure: unit-testable).
pub fn route(path: &str, snap: &Snapshot, now_unix_ms: u64, opts: &HealthOptions) -> Response {
    match path {
        "/livez" => {
            let age = heartbeat_age(snap, now_unix_ms);
            if age <= opts.stale_after {
                Response::text(200, "ok\n")
            } else {
                Response::text(
                    503,
                    format!(
                        "driver loop stalled: no heartbeat for {} s\n",
                        age.as_secs()
                    ),
                )
            }
        }
        "/readyz" => {
            let relay_down = opts
                .relay
                .as_ref()
                .is_some_and(|r| r.listening.load(std::sync::atomic::Ordering::SeqCst) == 0);
            if snap.ready && relay_down {
                // Ready means a client can connect: with `[relay]` on, through the relay.
                // The relay binds a moment after the gateway is found serving (or cannot
                // bind at all): until it listens, a probe routing clients to it must wait.
                Response::text(
                    503,
                    "not ready (Ready): the gateway serves, but the API relay does not \
                     listen yet (relay.listen)\n",
                )
            } else if snap.ready {
                Response::text(200, "ready\n")
            } else {
                let reason = if snap.reason.is_empty() {
                    "API probe has not passed".to_string()
                } else {
                    snap.reason.replace('\n', " ")
                };
                Response::text(503, format!("not ready ({}): {reason}\n", snap.phase))
            }
        }
        "/metrics" => Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            headers: Vec::new(),
            body: {
                let mut body = metrics(snap, now_unix_ms);
                if let Some(r) = &opts.relay {
                    relay_metrics(&mut body, r);
                }
                body
            },
        },
        "/" => Response::text(200, "ibwarden: /livez /readyz /metrics\n"),
        _ => Response::text(404, "not found\n"),
    }
}

/// Time since the driver last published (or since start, before the first heartbeat).
fn heartbeat_age(snap: &Snapshot, now_unix_ms: u64) -> Duration {
    let last = snap.heartbeat_unix_ms.max(snap.started_unix_ms);
    Duration::from_millis(now_unix_ms.saturating_sub(last))
}

/// A label value, escaped as the text format requires (`\\`, `\"`, `\n`).
fn label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// A sample value: integers as integers, the rest in Rust's shortest round-trip form.
fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The `/metrics` body.
/// The relay's families, appended to `/metrics` when `[relay]` is on.
pub fn relay_metrics(o: &mut String, r: &crate::relay::RelayStats) {
    use std::sync::atomic::Ordering::Relaxed;
    family(
        o,
        "ibwarden_relay_listening",
        "gauge",
        "1 while the API relay accepts clients (the gateway serves), else 0.",
    );
    let _ = writeln!(o, "ibwarden_relay_listening {}", r.listening.load(Relaxed));
    family(
        o,
        "ibwarden_relay_connections",
        "gauge",
        "API relay connections open now.",
    );
    let _ = writeln!(o, "ibwarden_relay_connections {}", r.open.load(Relaxed));
    family(
        o,
        "ibwarden_relay_connections_total",
        "counter",
        "API relay connections by outcome.",
    );
    for (result, v) in [
        ("relayed", &r.accepted),
        ("refused_source", &r.refused_source),
        ("refused_limit", &r.refused_limit),
        ("upstream_failed", &r.upstream_failed),
        ("cut", &r.cut),
    ] {
        let _ = writeln!(
            o,
            "ibwarden_relay_connections_total{{result=\"{result}\"}} {}",
            v.load(Relaxed)
        );
    }
    family(
        o,
        "ibwarden_relay_bytes_total",
        "counter",
        "Bytes the API relay carried, by direction.",
    );
    for (dir, v) in [
        ("to_gateway", &r.bytes_to_gateway),
        ("to_clients", &r.bytes_to_clients),
    ] {
        let _ = writeln!(
            o,
            "ibwarden_relay_bytes_total{{direction=\"{dir}\"}} {}",
            v.load(Relaxed)
        );
    }
}

pub fn metrics(snap: &Snapshot, now_unix_ms: u64) -> String {
    let mut o = String::with_capacity(4096);
    family(
        &mut o,
        "ibwarden_info",
        "gauge",
        "Build and instance information (always 1).",
    );
    let _ = writeln!(
        o,
        "ibwarden_info{{instance_name=\"{}\",version=\"{}\"}} 1",
        label(&snap.instance),
        env!("CARGO_PKG_VERSION")
    );

    family(
        &mut o,
        "ibwarden_state",
        "gauge",
        "Phase of the supervisor (1 for the current one).",
    );
    let mut phases: Vec<&str> = PHASES.to_vec();
    if !phases.contains(&snap.phase.as_str()) && !snap.phase.is_empty() {
        phases.push(&snap.phase);
    }
    for p in phases {
        let _ = writeln!(
            o,
            "ibwarden_state{{state=\"{}\"}} {}",
            label(p),
            u8::from(p == snap.phase)
        );
    }

    family(
        &mut o,
        "ibwarden_ready",
        "gauge",
        "1 while the last TWS API probe passed.",
    );
    let _ = writeln!(o, "ibwarden_ready {}", u8::from(snap.ready));

    family(
        &mut o,
        "ibwarden_human_connected",
        "gauge",
        "1 while a person drives the display.",
    );
    let _ = writeln!(
        o,
        "ibwarden_human_connected {}",
        u8::from(snap.human_connected)
    );

    family(
        &mut o,
        "ibwarden_logins_total",
        "counter",
        "Login submissions.",
    );
    let _ = writeln!(o, "ibwarden_logins_total {}", snap.logins);

    family(
        &mut o,
        "ibwarden_readies_total",
        "counter",
        "Times the gateway became ready.",
    );
    let _ = writeln!(o, "ibwarden_readies_total {}", snap.readies);

    family(
        &mut o,
        "ibwarden_restarts_total",
        "counter",
        "Gateway relaunches by reason.",
    );
    for (reason, n) in &snap.restarts {
        let _ = writeln!(
            o,
            "ibwarden_restarts_total{{reason=\"{}\"}} {n}",
            label(reason)
        );
    }

    family(
        &mut o,
        "ibwarden_login_budget_left",
        "gauge",
        "Failed logins still allowed in the rolling hour.",
    );
    let _ = writeln!(o, "ibwarden_login_budget_left {}", snap.login_budget_left);

    family(
        &mut o,
        "ibwarden_start_time_seconds",
        "gauge",
        "When ibwarden started (unix seconds).",
    );
    let _ = writeln!(
        o,
        "ibwarden_start_time_seconds {}",
        num(snap.started_unix_ms as f64 / 1000.0)
    );

    if let Some(t) = snap.last_ready_unix_ms {
        family(
            &mut o,
            "ibwarden_last_ready_time_seconds",
            "gauge",
            "When the gateway last became ready (unix seconds).",
        );
        let _ = writeln!(
            o,
            "ibwarden_last_ready_time_seconds {}",
            num(t as f64 / 1000.0)
        );
    }
    if let Some(ms) = snap.probe_latency_ms {
        family(
            &mut o,
            "ibwarden_probe_latency_seconds",
            "gauge",
            "Round trip of the last passing API probe.",
        );
        let _ = writeln!(o, "ibwarden_probe_latency_seconds {}", num(ms / 1000.0));
    }

    family(
        &mut o,
        "ibwarden_heartbeat_age_seconds",
        "gauge",
        "Time since the driver loop last published its state.",
    );
    let _ = writeln!(
        o,
        "ibwarden_heartbeat_age_seconds {}",
        num(heartbeat_age(snap, now_unix_ms).as_secs_f64())
    );

    if let Some(p) = snap.jvm_pid.and_then(ProcStats::read) {
        family(
            &mut o,
            "ibwarden_gateway_resident_memory_bytes",
            "gauge",
            "Resident memory of the gateway JVM in bytes.",
        );
        let _ = writeln!(o, "ibwarden_gateway_resident_memory_bytes {}", p.rss_bytes);
        family(
            &mut o,
            "ibwarden_gateway_cpu_seconds_total",
            "counter",
            "CPU time of the current gateway JVM in seconds (restarts with it).",
        );
        let _ = writeln!(
            o,
            "ibwarden_gateway_cpu_seconds_total {}",
            num(p.cpu_seconds)
        );
    }
    if let Some(p) = ProcStats::read(std::process::id()) {
        family(
            &mut o,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        let _ = writeln!(o, "process_resident_memory_bytes {}", p.rss_bytes);
        family(
            &mut o,
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
        );
        let _ = writeln!(o, "process_cpu_seconds_total {}", num(p.cpu_seconds));
        if let Some(fds) = p.open_fds {
            family(
                &mut o,
                "process_open_fds",
                "gauge",
                "Number of open file descriptors.",
            );
            let _ = writeln!(o, "process_open_fds {fds}");
        }
    }
    o
}

/// A process's resource use, from `/proc/<pid>` (cheap: one small file and a dir).
struct ProcStats {
    rss_bytes: u64,
    cpu_seconds: f64,
    open_fds: Option<usize>,
}

impl ProcStats {
    fn read(pid: u32) -> Option<ProcStats> {
        let stat = crate::procfs::stat(pid)?;
        // SAFETY: sysconf has no preconditions.
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        // SAFETY: as above.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if tick <= 0 || page <= 0 {
            return None;
        }
        let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .ok()
            .map(|d| d.count());
        Some(ProcStats {
            rss_bytes: stat.rss_pages.saturating_mul(page as u64),
            cpu_seconds: (stat.utime + stat.stime) as f64 / tick as f64,
            open_fds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        Snapshot {
            instance: "live".into(),
            phase: "LoggingIn".into(),
            started_unix_ms: 1_000_000,
            heartbeat_unix_ms: 1_000_000,
            ..Snapshot::default()
        }
    }

    #[test]
    fn livez_goes_stale() {
        let o = HealthOptions {
            stale_after: Duration::from_secs(10),
            relay: None,
        };
        let s = snap();
        assert_eq!(route("/livez", &s, 1_005_000, &o).status, 200);
        let r = route("/livez", &s, 1_011_000, &o);
        assert_eq!(r.status, 503);
        assert!(r.body.contains("11 s"), "{}", r.body);
    }

    #[test]
    fn readyz_follows_ready() {
        let o = HealthOptions::default();
        let mut s = snap();
        s.reason = "typing credentials".into();
        let r = route("/readyz", &s, 1_000_000, &o);
        assert_eq!(r.status, 503);
        assert!(
            r.body.contains("LoggingIn") && r.body.contains("typing"),
            "{}",
            r.body
        );
        s.ready = true;
        assert_eq!(route("/readyz", &s, 1_000_000, &o).status, 200);
        assert_eq!(route("/nope", &s, 1_000_000, &o).status, 404);
    }

    #[test]
    fn readyz_waits_for_the_relay_when_there_is_one() {
        let stats = Arc::new(crate::relay::RelayStats::default());
        let o = HealthOptions {
            relay: Some(stats.clone()),
            ..HealthOptions::default()
        };
        let mut s = snap();
        s.phase = "Ready".into();
        s.ready = true;
        let r = route("/readyz", &s, 1_000_000, &o);
        assert_eq!(
            r.status, 503,
            "the gateway serves but clients cannot connect yet"
        );
        assert!(r.body.contains("relay"), "{}", r.body);
        stats
            .listening
            .store(1, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(route("/readyz", &s, 1_000_000, &o).status, 200);
        s.ready = false;
        assert_eq!(route("/readyz", &s, 1_000_000, &o).status, 503);
    }

    #[test]
    fn label_escaping() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
