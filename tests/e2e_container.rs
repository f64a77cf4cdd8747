//! The container entrypoint, run the way the image runs it: `ibwarden container` as PID 1
//! of its own PID namespace (`unshare --pid --fork --mount-proc`), configured only by the
//! environment (the IBC images' variables plus `IBWARDEN_*`), with the password as a
//! secret file. Through it: the API relay, with a real API client (ib_async) on the far
//! side, and the simulator's record as the proof of what reached the gateway.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const READY: Duration = Duration::from_secs(90);

/// `GET path` on the health endpoint: (status, body), or None when nothing listens.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

fn metric(body: &str, series: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in /metrics:\n{body}"))
}

/// The host pid of the process the `unshare --fork` child runs (PID 1 inside).
fn namespace_init(unshare_pid: u32, timeout: Duration) -> u32 {
    let deadline = Instant::now() + timeout;
    loop {
        let children =
            fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"))
                .unwrap_or_default();
        if let Some(pid) = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "unshare started no child");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Container {
    child: ChildGuard,
    dir: tempfile::TempDir,
    health: SocketAddr,
    relay: SocketAddr,
    log: PathBuf,
}

impl Container {
    fn start(install: &SimInstall, extra_env: &[(&str, &str)]) -> Container {
        let dir = tempfile::Builder::new()
            .prefix("ibw-ctr-")
            .tempdir()
            .expect("tempdir");
        let secrets = dir.path().join("secrets");
        fs::create_dir(&secrets).expect("mkdir");
        let pw = secrets.join("tws_password");
        fs::write(&pw, format!("{}\n", install.scenario.password())).expect("write");
        fs::set_permissions(&pw, fs::Permissions::from_mode(0o600)).expect("chmod");
        let health = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let relay = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = dir.path().join("ibwarden.log");
        let out = fs::File::create(&log).expect("log");
        let root = install.install_dir.parent().expect("install root");
        let unshare = require_tool("unshare", "util-linux");
        let mut cmd = Command::new(unshare);
        cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child"])
            .arg(env!("CARGO_BIN_EXE_ibwarden"))
            .args(["--log-format", "human", "-v", "container"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("STATE_DIRECTORY", dir.path().join("state"))
            .env("RUNTIME_DIRECTORY", dir.path().join("run"))
            .env("IBWARDEN_CONFIG", dir.path().join("no-mounted-config.toml"))
            // The IBC images' variables, as a gnzsnz compose file has them.
            .env("TWS_USERID", install.scenario.username())
            .env("TWS_PASSWORD_FILE", &pw)
            .env("TRADING_MODE", "paper")
            .env("TWS_PATH", root)
            .env("TWS_SETTINGS_PATH", &install.settings_dir)
            .env("TIME_ZONE", "America/New_York")
            .env("EXISTING_SESSION_DETECTED_ACTION", "primary")
            // ibwarden's own.
            .env("IBWARDEN_API_PORT", install.api_port.to_string())
            .env("IBWARDEN_HEALTH_LISTEN", health.to_string())
            .env("IBWARDEN_RELAY_LISTEN", relay.to_string())
            .env("IBWARDEN_RELAY_ALLOW", "127.0.0.1/32")
            .envs(extra_env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().expect("dup")))
            .stderr(Stdio::from(out));
        let child = ChildGuard::spawn("unshare ibwarden container", &mut cmd);
        Container {
            child,
            dir,
            health,
            relay,
            log,
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((200, _)) = get(self.health, "/readyz") {
                return;
            }
            if let Some(st) = self.child.try_wait() {
                panic!("the container exited ({st}) before ready:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "not ready in {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ibwarden(&self, args: &[&str]) -> std::process::Output {
        // `docker exec NAME ibwarden ...`: the image's environment (RUNTIME_DIRECTORY), no
        // config file.
        Command::new(env!("CARGO_BIN_EXE_ibwarden"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path().join("exec-home"))
            .env("RUNTIME_DIRECTORY", self.dir.path().join("run"))
            .output()
            .expect("ibwarden")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("container log:\n{}", self.log());
        }
    }
}

/// A Python ib_async client through `port`: connects, prints CONNECTED with the accounts,
/// then waits for the disconnect the relay sends at a restart and prints DISCONNECTED.
const CLIENT: &str = r#"
import sys, asyncio
from ib_async import IB
port = int(sys.argv[1])
ib = IB()
ib.connect("127.0.0.1", port, clientId=21, timeout=10)
print("CONNECTED", ",".join(ib.managedAccounts()), flush=True)
gone = asyncio.Event()
ib.disconnectedEvent += lambda: gone.set()
try:
    ib.run(asyncio.wait_for(gone.wait(), 120))
    print("DISCONNECTED", flush=True)
except ConnectionError:
    # ib_async's way of telling that the peer closed the connection.
    print("DISCONNECTED", flush=True)
except asyncio.TimeoutError:
    print("STILL CONNECTED", flush=True)
"#;

/// A connect from `source` (another loopback address) to `to`: what the client sees.
fn connect_from(source: [u8; 4], to: SocketAddr) -> std::io::Result<Vec<u8>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.bind(SocketAddr::from((source, 0)))?;
        let mut s = sock.connect(to).await?;
        // The API's first bytes: a client would send its handshake.
        s.write_all(b"API\0\0\0\0\x09v100..176").await?;
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
            .await
            .map_err(|_| std::io::Error::other("no answer and no close in 5 s"))??;
        Ok(got)
    })
}

#[test]
fn the_entrypoint_runs_from_the_environment_as_pid_1_and_relays_only_while_ready() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "a PID namespace needs root (CI containers are)"
    );
    let python = test_python();
    let install = SimInstall::new(&Scenario::new());
    let mut rec = install.record();
    let mut c = Container::start(&install, &[]);
    let init = namespace_init(c.child.pid(), Duration::from_secs(10));
    let status = fs::read_to_string(format!("/proc/{init}/status")).expect("status");
    let nspid = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .expect("NSpid");
    assert!(
        nspid.split_whitespace().last() == Some("1"),
        "ibwarden is PID 1 in its namespace: {nspid}"
    );

    // Before ready, the relay does not listen: the client's connect is refused by the
    // kernel. The check only counts while /readyz says not ready on both sides of it.
    loop {
        let before = get(c.health, "/readyz");
        let attempt = TcpStream::connect_timeout(&c.relay, Duration::from_secs(2));
        let after = get(c.health, "/readyz");
        match (before, after) {
            (Some((503, _)), Some((503, _))) => {
                let err = attempt.expect_err("the relay listens before ready");
                assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
                break;
            }
            (Some((200, _)), _) | (_, Some((200, _))) => {
                panic!("ready before the relay could be checked:\n{}", c.log())
            }
            _ => std::thread::sleep(Duration::from_millis(20)), // health not up yet
        }
    }
    c.wait_ready(READY);
    let log = c.log();
    assert!(
        log.contains("container: config written from the environment"),
        "{log}"
    );
    // The config came from the variables: the simulator saw that user log in.
    let login = rec.wait_for("a login", Duration::from_secs(5), |v| {
        is_ev(v, "login_attempt")
    });
    assert_eq!(login["username"], install.scenario.username(), "{login}");
    let config = fs::read_to_string(c.dir.path().join("run/ibwarden.toml")).expect("config");
    assert!(
        !config.contains(install.scenario.password()),
        "no password in the TOML"
    );
    assert_eq!(
        fs::metadata(c.dir.path().join("run/ibwarden.toml"))
            .expect("meta")
            .permissions()
            .mode()
            & 0o077,
        0,
        "the written config is private"
    );

    // A source outside relay.allow is reset before anything reaches the gateway.
    let connects_before = rec
        .events()
        .iter()
        .filter(|e| is_ev(e, "api_connect"))
        .count();
    let refused = connect_from([127, 0, 0, 2], c.relay);
    assert!(
        matches!(&refused, Ok(b) if b.is_empty()) || refused.is_err(),
        "a non-allowed source got bytes: {refused:?}"
    );
    let (_, m) = get(c.health, "/metrics").expect("metrics");
    assert_eq!(
        metric(
            &m,
            "ibwarden_relay_connections_total{result=\"refused_source\"}"
        ),
        1
    );

    // A real API client through the relay.
    let mut client = Command::new(&python)
        .args(["-c", CLIENT, &c.relay.port().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    let mut lines = BufReader::new(client.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(
        first.starts_with("CONNECTED DU1234567"),
        "ib_async through the relay: {first:?}"
    );
    let start = rec.wait_for("client 21 through the relay", Duration::from_secs(5), |v| {
        is_ev(v, "api_start") && v["client_id"] == 21
    });
    assert!(start.is_object());
    let connects_after = rec
        .events()
        .iter()
        .filter(|e| is_ev(e, "api_connect"))
        .count();
    let (_, m) = get(c.health, "/metrics").expect("metrics");
    assert_eq!(metric(&m, "ibwarden_relay_connections"), 1, "{m}");
    assert_eq!(metric(&m, "ibwarden_relay_listening"), 1);
    assert!(metric(&m, "ibwarden_relay_bytes_total{direction=\"to_clients\"}") > 0);
    // Only the ib_async client (and the probe's own connections, which go direct) reached
    // the gateway; the refused source never did.
    let relayed = metric(&m, "ibwarden_relay_connections_total{result=\"relayed\"}");
    assert_eq!(relayed, 1, "{m}");
    assert!(connects_after > connects_before);

    // `docker exec NAME ibwarden restart`: the socket is found without a config file, and
    // the relayed client sees a clean disconnect.
    let out = c.ibwarden(&["restart"]);
    assert!(
        out.status.success(),
        "restart: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = lines.next().and_then(Result::ok).unwrap_or_default();
    let out = client.wait_with_output().expect("python");
    assert_eq!(
        second,
        "DISCONNECTED",
        "the relay cut the client at the restart; python said: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.wait_ready(READY);
    let (_, m) = get(c.health, "/metrics").expect("metrics");
    assert_eq!(
        metric(&m, "ibwarden_relay_connections_total{result=\"cut\"}"),
        1,
        "{m}"
    );
    assert_eq!(
        metric(&m, "ibwarden_relay_listening"),
        1,
        "listening again once ready"
    );
    let out = c.ibwarden(&["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // SIGTERM to PID 1 (what `docker stop` sends): the gateway closes through its own exit
    // path and ibwarden exits 0; nothing of the namespace survives.
    let mark = rec.events().len();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let st = c.child.wait_exit(Duration::from_secs(90));
    assert!(st.success(), "exit {st}:\n{}", c.log());
    rec.wait_from(
        mark,
        "the gateway's own exit",
        Duration::from_secs(5),
        |v| is_ev(v, "exit"),
    );
    assert!(
        processes_with(&install.install_dir.display().to_string()).is_empty(),
        "no JVM left"
    );
}

#[test]
fn a_password_in_the_environment_is_refused_with_exit_78_and_not_echoed() {
    let install = SimInstall::new(&Scenario::new());
    let mut c = Container::start(&install, &[("TWS_PASSWORD", "hunter2-in-env")]);
    let st = c.child.wait_exit(Duration::from_secs(20));
    assert_eq!(st.code(), Some(78), "{}", c.log());
    let log = c.log();
    assert!(log.contains("TWS_PASSWORD_FILE"), "{log}");
    assert!(!log.contains("hunter2"), "{log}");
    assert!(
        install.record().events().is_empty(),
        "no gateway was started"
    );
}
