//! The control socket and the IBC-compatible command server against a fake driver: the
//! real server on a tempdir socket, the library client, and the real `ibwarden` binary's
//! `status|restart|stop|totp-now|screenshot` subcommands. Includes the owner-only checks
//! (socket mode, SO_PEERCRED) with a client running as `nobody`.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use ibwarden::control::{
    self, ControlCommand, ControlError, ControlReply, ControlRequest, ControlSocket, Request,
};
use ibwarden::secret::Secret;
use ibwarden::status::{self, SharedStatus, Snapshot};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);
const BIN: &str = env!("CARGO_BIN_EXE_ibwarden");

/// A control server on its own runtime with a fake driver that records every command and
/// answers it the way the real driver will.
struct Server {
    dir: tempfile::TempDir,
    path: PathBuf,
    status: SharedStatus,
    commands: std_mpsc::Receiver<ControlCommand>,
    rt: Option<tokio::runtime::Runtime>,
}

fn snapshot() -> Snapshot {
    Snapshot {
        instance: "live".into(),
        phase: "Ready".into(),
        ready: true,
        reason: "ready".into(),
        jvm_pid: Some(4242),
        started_unix_ms: 1_700_000_000_000,
        last_ready_unix_ms: Some(1_700_000_060_000),
        logins: 1,
        readies: 1,
        restarts: vec![("jvm crashed".into(), 2)],
        login_budget_left: 3,
        next_scheduled: Some(ibwarden::status::Scheduled {
            what: "daily restart".into(),
            at_unix_ms: 1_700_050_000_000,
        }),
        probe_latency_ms: Some(1.5),
        human_connected: false,
        ..Snapshot::default()
    }
}

async fn fake_driver(
    mut rx: mpsc::Receiver<ControlRequest>,
    seen: std_mpsc::Sender<ControlCommand>,
) {
    {
        while let Some(ControlRequest { cmd, reply }) = rx.recv().await {
            let answer = match &cmd {
                ControlCommand::Restart => ControlReply::ok("restarting the gateway"),
                ControlCommand::Stop => ControlReply::ok("stopping the gateway"),
                ControlCommand::TotpNow => ControlReply::Totp {
                    code: "123456".into(),
                    valid_secs: 17,
                },
                ControlCommand::Screenshot { out } => {
                    let png = b"\x89PNG\r\n\x1a\nfake";
                    match fs::write(out, png) {
                        Ok(()) => ControlReply::Screenshot {
                            path: out.clone(),
                            bytes: png.len() as u64,
                        },
                        Err(e) => {
                            ControlReply::error(format!("cannot write {}: {e}", out.display()))
                        }
                    }
                }
                ControlCommand::Vnc => ControlReply::Vnc {
                    port: 5999,
                    password: "k3Xm9PqR".into(),
                },
                ControlCommand::VncStop => ControlReply::ok("takeover server stopped"),
                ControlCommand::Inspect { out } => ControlReply::Inspected {
                    files: vec![out.join("inspect.json")],
                },
            };
            let _ = seen.send(cmd);
            let _ = reply.send(answer);
        }
    }
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run").join("control.sock");
        Server::start_at(dir, path)
    }

    fn start_at(dir: tempfile::TempDir, path: PathBuf) -> Server {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let status = status::shared("live", 1);
        status::publish(&status, snapshot());
        let socket = ControlSocket::bind(&path).expect("bind");
        let (tx, rx) = mpsc::channel(8);
        let (seen_tx, seen_rx) = std_mpsc::channel();
        let st = status.clone();
        rt.spawn(async move {
            let _ = socket.serve(st, tx).await;
        });
        rt.spawn(fake_driver(rx, seen_tx));
        Server {
            dir,
            path,
            status,
            commands: seen_rx,
            rt: Some(rt),
        }
    }

    fn next_command(&self) -> ControlCommand {
        self.commands
            .recv_timeout(WAIT)
            .expect("the driver received a command")
    }

    /// Stops the runtime (drops the socket) and waits for it.
    fn shutdown(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(WAIT);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn cli(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("IBWARDEN_CONFIG")
        .output()
        .expect("run ibwarden")
}

fn cli_as_nobody(args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .args(args)
        .env_remove("IBWARDEN_CONFIG")
        .output()
        .expect("run setpriv (util-linux)")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).expect("stat").permissions().mode() & 0o7777
}

#[test]
fn status_round_trips_the_published_snapshot() {
    let s = Server::start();
    let reply = control::request(&s.path, &Request::Status).expect("status");
    let ControlReply::Status { status } = reply else {
        panic!("unexpected reply {reply:?}");
    };
    assert_eq!(status, serde_json::to_value(snapshot()).expect("json"));

    // A new snapshot is what the next request sees.
    let mut snap = snapshot();
    snap.phase = "Backoff".into();
    snap.ready = false;
    snap.reason = "inside IBKR's maintenance window".into();
    status::publish(&s.status, snap.clone());
    let ControlReply::Status { status } =
        control::request(&s.path, &Request::Status).expect("status")
    else {
        panic!("not a status reply");
    };
    assert_eq!(status, serde_json::to_value(&snap).expect("json"));
    assert!(
        s.commands.try_recv().is_err(),
        "status must not reach the driver"
    );
}

#[test]
fn commands_are_forwarded_to_the_driver() {
    let s = Server::start();
    assert_eq!(
        control::request(&s.path, &Request::Restart).expect("restart"),
        ControlReply::ok("restarting the gateway")
    );
    assert_eq!(s.next_command(), ControlCommand::Restart);
    assert_eq!(
        control::request(&s.path, &Request::Stop).expect("stop"),
        ControlReply::ok("stopping the gateway")
    );
    assert_eq!(s.next_command(), ControlCommand::Stop);
    let out = s.dir.path().join("shot.png");
    let reply = control::request(&s.path, &Request::Screenshot { out: out.clone() }).expect("shot");
    assert_eq!(
        reply,
        ControlReply::Screenshot {
            path: out.clone(),
            bytes: 12
        }
    );
    assert_eq!(
        s.next_command(),
        ControlCommand::Screenshot { out: out.clone() }
    );
    assert!(fs::read(&out).expect("png").starts_with(b"\x89PNG"));
}

#[test]
fn a_bad_request_gets_an_error_line() {
    let s = Server::start();
    let mut c = StdUnixStream::connect(&s.path).expect("connect");
    c.write_all(b"{\"cmd\":\"reboot\"}\n").expect("write");
    let mut line = String::new();
    BufReader::new(c).read_line(&mut line).expect("read");
    let reply: ControlReply = serde_json::from_str(line.trim()).expect("a reply");
    assert!(
        matches!(&reply, ControlReply::Error { message } if message.contains("invalid request")),
        "{reply:?}"
    );
}

#[test]
fn socket_is_owner_only_and_removed_on_drop() {
    let mut s = Server::start();
    let meta = fs::symlink_metadata(&s.path).expect("socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(mode(&s.path), 0o600);
    // We created the parent directory: private too.
    assert_eq!(mode(s.path.parent().expect("parent")), 0o700);
    // No temporary name left behind.
    let names: Vec<String> = fs::read_dir(s.path.parent().expect("parent"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.ends_with(".tmp")),
        "leftover temporary socket: {names:?}"
    );
    s.shutdown();
    assert!(
        !s.path.exists(),
        "socket file removed when the server stops"
    );
}

#[test]
fn a_stale_socket_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("control.sock");
    // A socket file nobody listens on (a crashed instance).
    drop(StdUnixListener::bind(&path).expect("bind"));
    assert!(path.exists());
    assert!(matches!(
        StdUnixStream::connect(&path).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused)
    ));
    let s = Server::start_at(dir, path);
    let reply = control::request(&s.path, &Request::Status).expect("status from the new server");
    assert!(matches!(reply, ControlReply::Status { .. }));
    assert_eq!(mode(&s.path), 0o600);
}

#[test]
fn a_live_socket_is_not_stolen() {
    // Another ibwarden on the same path: the instance lock refuses.
    let s = Server::start();
    match ControlSocket::bind(&s.path) {
        Err(ControlError::AlreadyRunning { path }) => assert_eq!(path, s.path),
        other => panic!("second bind must fail: {other:?}"),
    }
    // The first one still answers.
    assert!(matches!(
        control::request(&s.path, &Request::Status).expect("status"),
        ControlReply::Status { .. }
    ));

    // Something else listening there (no lock held): the connect check refuses.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("control.sock");
    let other = StdUnixListener::bind(&path).expect("bind");
    let err = ControlSocket::bind(&path).expect_err("must not steal");
    assert!(
        matches!(err, ControlError::AlreadyRunning { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("already listening"), "{err}");
    // Still theirs.
    let _c = StdUnixStream::connect(&path).expect("theirs still answers");
    assert!(other.accept().is_ok());
}

#[test]
fn a_regular_file_is_not_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("control.sock");
    fs::write(&path, "important").expect("write");
    let err = ControlSocket::bind(&path).expect_err("not a socket");
    assert!(matches!(err, ControlError::NotASocket { .. }), "{err:?}");
    assert_eq!(fs::read_to_string(&path).expect("kept"), "important");
}

#[test]
fn client_says_clearly_when_nothing_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("control.sock");
    let err = control::request(&path, &Request::Status).expect_err("nothing runs");
    assert!(matches!(err, ControlError::NotRunning { .. }), "{err:?}");
    // Also for a stale socket file.
    drop(StdUnixListener::bind(&path).expect("bind"));
    let err = control::request(&path, &Request::Status).expect_err("nothing listens");
    assert!(matches!(err, ControlError::NotRunning { .. }), "{err:?}");

    let out = cli(&["status", "--socket", path.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "no ibwarden instance is listening on {}; is `ibwarden run` started?",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn cli_subcommands_against_a_server() {
    let s = Server::start();
    // Through the config file, as a user would.
    let config = s.dir.path().join("config.toml");
    fs::write(
        &config,
        format!(
            "[account]\nusername = \"someone\"\npassword_file = \"password\"\n\n\
             [gateway]\ntrading_mode = \"paper\"\n\n\
             [state]\ndir = \"{}\"\n\n[control]\nsocket = \"{}\"\n",
            s.dir.path().join("state").display(),
            s.path.display()
        ),
    )
    .expect("config");
    let cfg = config.to_str().expect("utf8");

    let out = cli(&["status", "--config", cfg, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json on stdout");
    assert_eq!(v, serde_json::to_value(snapshot()).expect("json"));

    let out = cli(&["status", "--config", cfg]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let human = text(&out.stdout);
    assert!(human.contains("Ready (ready)"), "{human}");
    assert!(human.contains("gateway pid:   4242"), "{human}");
    assert!(human.contains("jvm crashed ×2"), "{human}");
    assert!(human.contains("3 failed logins left"), "{human}");
    assert!(human.contains("daily restart at"), "{human}");

    let sock = s.path.to_str().expect("utf8");
    let out = cli(&["restart", "--socket", sock]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "restarting the gateway\n");
    assert_eq!(s.next_command(), ControlCommand::Restart);

    let out = cli(&["totp-now", "--config", cfg]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "123456\nvalid for 17 s\n");
    assert_eq!(s.next_command(), ControlCommand::TotpNow);

    // A relative --out is resolved against the client's directory.
    let out = Command::new(BIN)
        .args(["screenshot", "--socket", sock, "--out", "shot.png"])
        .current_dir(s.dir.path())
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let expected = s.dir.path().join("shot.png");
    assert_eq!(
        s.next_command(),
        ControlCommand::Screenshot {
            out: expected.clone()
        }
    );
    assert!(text(&out.stdout).starts_with(&expected.display().to_string()));
    assert!(expected.exists());

    let out = cli(&["stop", "--socket", sock]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(s.next_command(), ControlCommand::Stop);
}

#[test]
fn another_user_is_refused() {
    let s = Server::start();
    // Let `nobody` reach the socket's directory, so only the socket itself guards it.
    for d in [s.dir.path(), s.path.parent().expect("parent")] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).expect("chmod dir");
    }
    let sock = s.path.to_str().expect("utf8");

    // 1. The socket's mode (0600) keeps another user out.
    let out = cli_as_nobody(&["stop", "--socket", sock]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("permission denied on"), "{err}");

    // 2. With the mode opened up, the SO_PEERCRED check still refuses.
    fs::set_permissions(&s.path, fs::Permissions::from_mode(0o666)).expect("chmod socket");
    let out = cli_as_nobody(&["stop", "--socket", sock]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("permission denied: uid 65534"), "{err}");
    let out = cli_as_nobody(&["status", "--socket", sock, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no status for another user");

    // Nothing reached the driver: the next command it sees is ours.
    let out = cli(&["restart", "--socket", sock]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(s.next_command(), ControlCommand::Restart);
}

// ----- IBC command server ----------------------------------------------------------------

struct Ibc {
    addr: std::net::SocketAddr,
    commands: std_mpsc::Receiver<ControlCommand>,
    _rt: tokio::runtime::Runtime,
}

fn ibc_server(auth: Option<&str>) -> Ibc {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt.block_on(control::bind_ibc(0)).expect("bind");
    let addr = listener.local_addr().expect("addr");
    assert!(addr.ip().is_loopback());
    let (tx, rx) = mpsc::channel(8);
    let (seen_tx, seen_rx) = std_mpsc::channel();
    let auth = auth.map(|a| Secret::new(a.to_string()));
    rt.spawn(control::serve_ibc(listener, auth, tx));
    rt.spawn(fake_driver(rx, seen_tx));
    Ibc {
        addr,
        commands: seen_rx,
        _rt: rt,
    }
}

/// Sends `lines` one by one, returning the reply to each, then whether the server closed.
fn ibc_session(addr: std::net::SocketAddr, lines: &[&str]) -> (Vec<String>, bool) {
    let mut c = TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut r = BufReader::new(c.try_clone().expect("clone"));
    let mut replies = Vec::new();
    for l in lines {
        c.write_all(format!("{l}\r\n").as_bytes()).expect("write");
        let mut reply = String::new();
        r.read_line(&mut reply).expect("read");
        replies.push(reply.trim_end().to_string());
    }
    let mut rest = String::new();
    let closed = matches!(r.read_line(&mut rest), Ok(0));
    (replies, closed)
}

#[test]
fn ibc_stop_restart_exit() {
    let s = ibc_server(None);
    let (r, closed) = ibc_session(s.addr, &["restart"]);
    assert_eq!(r, vec!["OK RESTART in progress"]);
    assert!(closed);
    assert_eq!(
        s.commands.recv_timeout(WAIT).expect("forwarded"),
        ControlCommand::Restart
    );

    let (r, closed) = ibc_session(s.addr, &["FOO", "RECONNECTDATA", "ENABLEAPI", "STOP"]);
    assert_eq!(r[0], "ERROR Command invalid");
    assert!(
        r[1].starts_with("ERROR RECONNECTDATA is not supported"),
        "{r:?}"
    );
    assert_eq!(r[2], "ERROR ENABLEAPI is not valid for the IB Gateway");
    assert_eq!(r[3], "OK Shutting down: STOP command");
    assert!(closed);
    assert_eq!(
        s.commands.recv_timeout(WAIT).expect("forwarded"),
        ControlCommand::Stop
    );
    // A second STOP, like IBC.
    let (r, _) = ibc_session(s.addr, &["STOP", "EXIT"]);
    assert_eq!(r, vec!["ERROR STOP already in progress", "OK Goodbye"]);
    assert!(s.commands.try_recv().is_err());
}

#[test]
fn ibc_auth_token() {
    let s = ibc_server(Some("tok3n"));
    let (r, closed) = ibc_session(s.addr, &["RESTART", "AUTH nope"]);
    assert_eq!(
        r,
        vec![
            "ERROR Not authenticated: send AUTH <token> first",
            "ERROR Authentication failed"
        ]
    );
    assert!(closed);
    let (r, closed) = ibc_session(s.addr, &["AUTH tok3n", "RESTART"]);
    assert_eq!(r, vec!["OK Authenticated", "OK RESTART in progress"]);
    assert!(closed);
    assert_eq!(
        s.commands.recv_timeout(WAIT).expect("forwarded"),
        ControlCommand::Restart
    );
    assert!(
        s.commands.try_recv().is_err(),
        "the refused RESTART was not forwarded"
    );
}
