//! Attacks on the IBC-compatible command server, one test each: a line longer than the
//! protocol allows, a browser's HTTP POST whose body is a command, idle connections that
//! try to hold every slot, a connection that never authenticates, and a stream of wrong
//! tokens. Each is bounded in time and asserts what reached the (fake) driver.
//!
//! The attacks on files (launcher.log, state, secrets) are in `launcher_log.rs`,
//! `secret` unit tests and `e2e_hostile.rs`; the health endpoint's slowloris in `health.rs`.
//! `docs/reliability.md` lists them all with their measured bounds.

mod logcap;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use ibwarden::control::{
    self, ControlCommand, ControlReply, ControlRequest, MAX_IBC_LINE, MAX_UNPROVEN,
    UNPROVEN_DEADLINE,
};
use ibwarden::secret::Secret;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    commands: std_mpsc::Receiver<ControlCommand>,
    _rt: tokio::runtime::Runtime,
}

/// A command server on an ephemeral port, with a driver that records what it was asked.
fn server(token: Option<&str>) -> Server {
    logcap::logs();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt.block_on(control::bind_ibc(0)).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, mut rx) = mpsc::channel::<ControlRequest>(8);
    let (seen_tx, seen_rx) = std_mpsc::channel();
    rt.spawn(control::serve_ibc(
        listener,
        token.map(|t| Secret::new(t.to_string())),
        tx,
    ));
    rt.spawn(async move {
        while let Some(ControlRequest { cmd, reply }) = rx.recv().await {
            let _ = seen_tx.send(cmd);
            let _ = reply.send(ControlReply::ok("done"));
        }
    });
    Server {
        addr,
        commands: seen_rx,
        _rt: rt,
    }
}

fn connect(addr: SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let c = TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(WAIT + UNPROVEN_DEADLINE))
        .expect("timeout");
    let r = BufReader::new(c.try_clone().expect("clone"));
    (c, r)
}

/// Everything the server sends until it closes the connection.
fn rest(r: &mut BufReader<TcpStream>) -> String {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    s
}

fn line(r: &mut BufReader<TcpStream>) -> String {
    let mut s = String::new();
    r.read_line(&mut s).expect("reply");
    s.trim_end().to_string()
}

fn log_text() -> String {
    logcap::text()
}

/// `"X" * 4096 + "RESTART\n"` used to be read in 4 KiB pieces, the last one a RESTART.
/// Now a line over the limit closes the connection and nothing is executed.
#[test]
fn a_line_over_the_limit_closes_the_connection_and_runs_nothing() {
    let s = server(None);
    let (mut c, mut r) = connect(s.addr);
    let mut attack = "X".repeat(4096);
    attack.push_str("RESTART\n");
    c.write_all(attack.as_bytes()).expect("write");
    let got = rest(&mut r);
    assert_eq!(got.trim_end(), "ERROR Line too long", "{got:?}");
    assert!(s.commands.try_recv().is_err());
    // A line at the limit is still a line.
    let (mut c, mut r) = connect(s.addr);
    let padded = format!("{:<width$}\n", "RESTART", width = MAX_IBC_LINE - 1);
    c.write_all(padded.as_bytes()).expect("write");
    assert_eq!(line(&mut r), "OK RESTART in progress");
    assert_eq!(
        s.commands.recv_timeout(WAIT).expect("forwarded"),
        ControlCommand::Restart
    );
}

/// A web page a local browser shows can POST to 127.0.0.1:7462 with the body `RESTART`.
/// The request line closes the connection before the body is read.
#[test]
fn an_http_post_whose_body_is_restart_does_nothing() {
    let s = server(None);
    for request in [
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:7462\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n\r\nRESTART\n",
        "GET /STOP HTTP/1.1\r\nHost: localhost\r\n\r\n",
        // A header first (a request line split off by a proxy): the same.
        "Host: 127.0.0.1\r\nSTOP\r\n",
    ] {
        let (mut c, mut r) = connect(s.addr);
        c.write_all(request.as_bytes()).expect("write");
        let got = rest(&mut r);
        assert_eq!(got, "", "no reply to HTTP: {got:?}");
    }
    assert!(
        s.commands.recv_timeout(Duration::from_millis(300)).is_err(),
        "nothing was forwarded"
    );
    assert!(log_text().contains("an HTTP request"), "{}", log_text());
}

/// 16 idle connections used to lock everyone out for 600 s. Now, with 40 idle
/// unauthenticated connections open (more than every slot), a real client still
/// authenticates and restarts at once: each new connection closes the oldest idle one.
#[test]
fn idle_unauthenticated_connections_cannot_hold_every_slot() {
    let s = server(Some("tok3n"));
    let idle: Vec<_> = (0..40).map(|_| connect(s.addr)).collect();
    let t0 = Instant::now();
    let (mut c, mut r) = connect(s.addr);
    c.write_all(b"AUTH tok3n\r\nRESTART\r\n").expect("write");
    assert_eq!(line(&mut r), "OK Authenticated");
    assert_eq!(line(&mut r), "OK RESTART in progress");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(
        s.commands.recv_timeout(WAIT).expect("forwarded"),
        ControlCommand::Restart
    );
    // Only the newest MAX_UNPROVEN idle ones can still be open; the older were closed.
    let mut closed = 0;
    for (_, mut r) in idle {
        r.get_ref()
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let mut b = [0u8; 1];
        if matches!(r.read(&mut b), Ok(0)) {
            closed += 1;
        }
    }
    assert!(closed >= 40 - MAX_UNPROVEN, "{closed} of 40 closed");
}

/// A connection that never authenticates is told so and closed after 10 s in all, even
/// if it keeps sending lines.
#[test]
fn an_unauthenticated_connection_gets_ten_seconds() {
    let s = server(Some("tok3n"));
    let (mut c, mut r) = connect(s.addr);
    let t0 = Instant::now();
    c.write_all(b"RESTART\r\n").expect("write");
    assert_eq!(
        line(&mut r),
        "ERROR Not authenticated: send AUTH <token> first"
    );
    let got = rest(&mut r);
    let took = t0.elapsed();
    assert!(got.contains("ERROR Timed out"), "{got:?}");
    assert!(
        took >= UNPROVEN_DEADLINE - Duration::from_millis(100)
            && took < UNPROVEN_DEADLINE + Duration::from_secs(3),
        "{took:?}"
    );
    assert!(s.commands.try_recv().is_err());
}

/// 1,000 wrong tokens went through at 7,400/s with no log line. Now each failure is logged
/// with the count, and the peer's next AUTH waits twice as long as the last one did: six
/// tries take at least 0.1 + 0.2 + 0.4 + 0.8 + 1.6 s. The right token then still works (after
/// the same wait) and clears the count.
#[test]
fn wrong_tokens_are_logged_and_slowed_down() {
    let s = server(Some("tok3n"));
    let t0 = Instant::now();
    for _ in 0..6 {
        let (mut c, mut r) = connect(s.addr);
        c.write_all(b"AUTH guess\r\n").expect("write");
        assert_eq!(line(&mut r), "ERROR Authentication failed");
    }
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(3100), "{took:?}");
    let logged = log_text();
    let failures: Vec<_> = logged
        .lines()
        .filter(|l| l.contains("wrong AUTH token"))
        .collect();
    assert_eq!(failures.len(), 6, "{logged}");
    assert!(failures[5].contains("failures=6"), "{}", failures[5]);
    assert!(!logged.contains("guess"), "the token tried is not logged");
    let (mut c, mut r) = connect(s.addr);
    c.write_all(b"AUTH tok3n\r\n").expect("write");
    assert_eq!(line(&mut r), "OK Authenticated");
    let t1 = Instant::now();
    let (mut c, mut r) = connect(s.addr);
    c.write_all(b"AUTH tok3n\r\n").expect("write");
    assert_eq!(line(&mut r), "OK Authenticated");
    assert!(
        t1.elapsed() < Duration::from_secs(1),
        "the count was cleared"
    );
}
