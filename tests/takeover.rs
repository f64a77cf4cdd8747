//! Human takeover against a real x11vnc on a private Xvfb: a small RFB 3.8 client (VNC
//! authentication, DES challenge-response) logs in with the one-time password and is refused
//! with a wrong one; Connected/Disconnected arrive for the real viewer only; the server
//! listens on 127.0.0.1 only, keeps the password out of argv, files and its log, refuses a
//! second viewer, gives up after repeated wrong passwords or when nobody connects, and stops
//! cleanly.
//!
//! Needs the Debian packages `xvfb` and `x11vnc`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::vnc::vnc_response;
use ibwarden::takeover::{Takeover, TakeoverEvent, TakeoverOptions};
use ibwarden::x11::DisplayTarget;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::timeout;

const EVENT_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug)]
enum Login {
    /// SecurityResult OK and ServerInit read.
    Ok {
        width: u16,
        height: u16,
        name: String,
        stream: TcpStream,
    },
    /// SecurityResult failed, with the server's reason.
    Refused(String),
    /// The server closed the connection before the handshake ended (a second viewer).
    Closed,
}

fn read_u32(s: &mut TcpStream) -> u32 {
    let mut b = [0u8; 4];
    s.read_exact(&mut b).expect("read u32");
    u32::from_be_bytes(b)
}

/// An RFB 3.`minor` viewer: version, security type 2 (VNC authentication; with 3.3 the
/// server picks it), response, SecurityResult (3.8 adds a failure reason), then
/// ClientInit (exclusive) and ServerInit.
fn vnc_login_as(port: u16, password: &str, minor: u8) -> Login {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut version = [0u8; 12];
    if s.read_exact(&mut version).is_err() {
        return Login::Closed;
    }
    assert_eq!(&version, b"RFB 003.008\n", "server protocol version");
    s.write_all(format!("RFB 003.00{minor}\n").as_bytes())
        .expect("client version");
    if minor >= 7 {
        let mut n = [0u8; 1];
        s.read_exact(&mut n).expect("security type count");
        assert!(n[0] > 0, "the server offered no security type");
        let mut types = vec![0u8; n[0] as usize];
        s.read_exact(&mut types).expect("security types");
        assert_eq!(
            types,
            vec![2],
            "only VNC authentication is offered (never None)"
        );
        s.write_all(&[2]).expect("choose VNC authentication");
    } else {
        assert_eq!(read_u32(&mut s), 2, "the server chose VNC authentication");
    }
    let mut challenge = [0u8; 16];
    s.read_exact(&mut challenge).expect("challenge");
    s.write_all(&vnc_response(password, &challenge))
        .expect("response");
    if read_u32(&mut s) != 0 {
        if minor < 8 {
            return Login::Refused("(RFB 3.3/3.7 send no reason)".into());
        }
        let len = read_u32(&mut s) as usize;
        let mut reason = vec![0u8; len.min(4096)];
        s.read_exact(&mut reason).expect("reason");
        return Login::Refused(String::from_utf8_lossy(&reason).into_owned());
    }
    s.write_all(&[0]).expect("ClientInit");
    let mut init = [0u8; 24];
    if s.read_exact(&mut init).is_err() {
        return Login::Closed;
    }
    let width = u16::from_be_bytes([init[0], init[1]]);
    let height = u16::from_be_bytes([init[2], init[3]]);
    let len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize;
    let mut name = vec![0u8; len.min(4096)];
    s.read_exact(&mut name).expect("desktop name");
    Login::Ok {
        width,
        height,
        name: String::from_utf8_lossy(&name).into_owned(),
        stream: s,
    }
}

async fn login(port: u16, password: &str) -> Login {
    login_as(port, password, 8).await
}

async fn login_as(port: u16, password: &str, minor: u8) -> Login {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || vnc_login_as(port, &password, minor))
        .await
        .expect("client thread")
}

async fn next(rx: &mut UnboundedReceiver<TakeoverEvent>, state: &Path) -> TakeoverEvent {
    match timeout(EVENT_WAIT, rx.recv()).await {
        Ok(Some(ev)) => ev,
        Ok(None) => panic!("the event stream ended"),
        Err(_) => panic!(
            "no takeover event within {EVENT_WAIT:?}; x11vnc log:\n{}",
            std::fs::read_to_string(state.join("takeover/x11vnc.log")).unwrap_or_default()
        ),
    }
}

/// LISTEN sockets on `port` from /proc/net/tcp{,6}: (hex local address, is ipv6).
fn listeners(port: u16) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for l in text.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 4 || f[3] != "0A" {
                continue;
            }
            let Some((addr, p)) = f[1].split_once(':') else {
                continue;
            };
            if u16::from_str_radix(p, 16).ok() == Some(port) {
                out.push((addr.to_string(), v6));
            }
        }
    }
    out
}

/// TCP LISTEN sockets (hex local address:port) owned by process `pid`.
fn tcp_listeners_of(pid: u32) -> Vec<String> {
    let mut inodes = std::collections::HashSet::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .flatten()
    {
        if let Ok(t) = std::fs::read_link(e.path()) {
            let t = t.to_string_lossy().into_owned();
            if let Some(n) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                inodes.insert(n.to_string());
            }
        }
    }
    assert!(
        !inodes.is_empty(),
        "x11vnc has sockets (its Unix socket at least)"
    );
    let mut out = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for l in text.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                out.push(f[1].to_string());
            }
        }
    }
    out
}

fn target(xvfb: &common::Xvfb) -> DisplayTarget {
    DisplayTarget::existing(xvfb.display.clone(), Some(xvfb.xauthority.clone()))
}

fn process_alive(pid: u32) -> bool {
    ibwarden::procfs::is_alive(pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vnc_login_with_the_one_time_password_and_events() {
    common::require_tool("x11vnc", "x11vnc");
    let xvfb = common::Xvfb::start();
    let state = tempfile::tempdir().expect("tempdir");
    let (mut t, port, password) = Takeover::start(&target(&xvfb), state.path())
        .await
        .expect("takeover starts");
    let mut events = t.events().expect("events");
    assert!(t.events().is_none(), "the stream is handed out once");
    let pw = password.expose().to_string();
    assert_eq!(pw.len(), 8);

    // Loopback only, IPv4 only.
    let l = listeners(port);
    assert_eq!(
        l,
        vec![("0100007F".to_string(), false)],
        "listeners on {port}"
    );
    // x11vnc itself has no TCP listener, only its Unix socket.
    let x11vnc_listening = tcp_listeners_of(t.pid());
    assert!(
        x11vnc_listening.is_empty(),
        "x11vnc listens on TCP: {x11vnc_listening:?}"
    );
    assert!(state.path().join("takeover/vnc.sock").exists());

    // The password is in no argv, no file left behind.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", t.pid())).expect("cmdline");
    assert!(!String::from_utf8_lossy(&cmdline).contains(&pw));
    let dir = state.path().join("takeover");
    assert!(!dir.join("passwd").exists(), "x11vnc removed the file");
    let mode = std::fs::metadata(&dir).expect("dir").permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o700
    );

    // A wrong password (the right one with its last character changed) is refused.
    let mut wrong = pw.clone();
    let last = wrong.pop().expect("char");
    wrong.push(if last == 'a' { 'b' } else { 'a' });
    match login(port, &wrong).await {
        Login::Refused(reason) => assert!(!reason.is_empty()),
        other => panic!("wrong password accepted: {other:?}"),
    }

    // The right one is accepted; the viewer sees the gateway's display.
    let stream = match login(port, &pw).await {
        Login::Ok {
            width,
            height,
            name,
            stream,
        } => {
            assert_eq!((width, height), (1280, 1024), "the Xvfb screen");
            assert_eq!(name, "ibwarden");
            stream
        }
        other => panic!("right password refused: {other:?}"),
    };
    // The refused attempt produced no event: the first one is this viewer's.
    assert_eq!(
        next(&mut events, state.path()).await,
        TakeoverEvent::Connected
    );

    // A second viewer (even with the password) is turned away at once; no event for it.
    match login(port, &pw).await {
        Login::Closed => {}
        other => panic!("a second viewer was not closed at once: {other:?}"),
    }

    drop(stream);
    assert_eq!(
        next(&mut events, state.path()).await,
        TakeoverEvent::Disconnected
    );

    // Still serving (-forever) until stopped; a reconnect works the same way.
    let again = match login(port, &pw).await {
        Login::Ok { stream, .. } => stream,
        other => panic!("reconnect refused: {other:?}"),
    };
    assert_eq!(
        next(&mut events, state.path()).await,
        TakeoverEvent::Connected
    );

    let pid = t.pid();
    t.stop().await;
    // Stopping with a viewer connected reports the disconnect, then the end.
    assert_eq!(
        next(&mut events, state.path()).await,
        TakeoverEvent::Disconnected
    );
    assert_eq!(
        next(&mut events, state.path()).await,
        TakeoverEvent::Ended {
            reason: "stopped".into()
        }
    );
    assert!(next_none(&mut events).await, "the stream ends after Ended");
    drop(again);
    assert!(!process_alive(pid), "x11vnc {pid} is gone");
    assert!(
        listeners(port).is_empty(),
        "nothing listens on {port} any more"
    );
    assert!(!dir.join("vnc.sock").exists(), "the socket is removed");
    let log = std::fs::read_to_string(dir.join("x11vnc.log")).expect("log");
    assert!(
        log.contains("listening on unix socket"),
        "x11vnc's log is kept"
    );
    assert!(!log.contains(&pw), "the password is not in x11vnc's log");
}

async fn next_none(rx: &mut UnboundedReceiver<TakeoverEvent>) -> bool {
    matches!(timeout(EVENT_WAIT, rx.recv()).await, Ok(None))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rfb_3_3_viewer_is_tracked_too() {
    common::require_tool("x11vnc", "x11vnc");
    let xvfb = common::Xvfb::start();
    let state = tempfile::tempdir().expect("tempdir");
    let (mut t, port, password) = Takeover::start(&target(&xvfb), state.path())
        .await
        .expect("takeover starts");
    let mut events = t.events().expect("events");
    match login_as(port, "wrong-pw", 3).await {
        Login::Refused(_) => {}
        other => panic!("wrong password accepted: {other:?}"),
    }
    let stream = match login_as(port, password.expose(), 3).await {
        Login::Ok { stream, .. } => stream,
        other => panic!("right password refused: {other:?}"),
    };
    assert_eq!(
        next(&mut events, state.path()).await,
        TakeoverEvent::Connected
    );
    drop(stream);
    assert_eq!(
        next(&mut events, state.path()).await,
        TakeoverEvent::Disconnected
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_wrong_passwords_stop_the_server() {
    common::require_tool("x11vnc", "x11vnc");
    let xvfb = common::Xvfb::start();
    let state = tempfile::tempdir().expect("tempdir");
    let opts = TakeoverOptions {
        max_failed_auth: 2,
        ..TakeoverOptions::default()
    };
    let (mut t, port, password) = Takeover::start_with(&target(&xvfb), state.path(), &opts)
        .await
        .expect("takeover starts");
    let mut events = t.events().expect("events");
    let wrong = "x".repeat(8);
    assert_ne!(password.expose(), wrong);
    for _ in 0..2 {
        match login(port, &wrong).await {
            Login::Refused(_) => {}
            other => panic!("wrong password accepted: {other:?}"),
        }
    }
    match next(&mut events, state.path()).await {
        TakeoverEvent::Ended { reason } => {
            assert!(reason.contains("2 wrong VNC passwords"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        listeners(port).is_empty(),
        "nothing listens on {port} any more"
    );
    assert!(!process_alive(t.pid()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_connecting_ends_the_takeover() {
    common::require_tool("x11vnc", "x11vnc");
    let xvfb = common::Xvfb::start();
    let state = tempfile::tempdir().expect("tempdir");
    let opts = TakeoverOptions {
        connect_within: Duration::from_secs(1),
        ..TakeoverOptions::default()
    };
    let (mut t, _port, _password) = Takeover::start_with(&target(&xvfb), state.path(), &opts)
        .await
        .expect("takeover starts");
    let mut events = t.events().expect("events");
    match next(&mut events, state.path()).await {
        TakeoverEvent::Ended { reason } => assert_eq!(reason, "nobody connected within 1 s"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_display_that_does_not_exist_is_an_error_naming_it() {
    common::require_tool("x11vnc", "x11vnc");
    let state = tempfile::tempdir().expect("tempdir");
    let bad = DisplayTarget::existing(":999", None);
    let e = Takeover::start(&bad, state.path())
        .await
        .expect_err("no such display");
    let msg = e.to_string();
    assert!(
        msg.contains("x11vnc did not start on display :999"),
        "{msg}"
    );
}
