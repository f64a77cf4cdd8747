//! Security, end to end: secrets never leave ibwarden (logs, notifications, status output,
//! state and crash files, screenshot names, the JVM's and Xvfb's `cmdline`/`environ`), the X
//! server ibwarden starts is not on TCP and refuses clients without its cookie, and the
//! control socket refuses other users (file mode, then `SO_PEERCRED`). Parser robustness
//! (no panic on any input) is in `fuzz_parsers.rs`.

mod common;
mod warden;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use warden::Warden;

const LOGIN: Duration = Duration::from_secs(60);
const LIVE_LOGIN: Duration = Duration::from_secs(90);

/// Every secret of a test: the password and the activation code in the forms a leak could
/// take (as configured, upper/lower case, without padding).
fn secrets() -> Vec<String> {
    let mut v = vec![
        TEST_PASSWORD.to_string(),
        TEST_TOTP_SECRET.to_string(),
        TEST_TOTP_SECRET.to_lowercase(),
    ];
    // Also a long chunk of the activation code, in case it is split or reformatted.
    v.push(TEST_TOTP_SECRET[4..20].to_string());
    v
}

fn assert_clean(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for s in secrets() {
        assert!(!text.contains(&s), "a secret leaked into {what}");
    }
}

/// Every file under `dir`: names and contents.
fn scan_tree(dir: &Path) -> usize {
    let mut n = 0;
    for p in warden::walk(dir) {
        assert_clean(
            &format!("the file name {}", p.display()),
            p.display().to_string().as_bytes(),
        );
        if let Ok(bytes) = fs::read(&p) {
            assert_clean(&p.display().to_string(), &bytes);
            n += 1;
        }
    }
    n
}

fn proc_clean(pid: u32, what: &str) {
    for f in ["cmdline", "environ"] {
        let bytes = fs::read(format!("/proc/{pid}/{f}"))
            .unwrap_or_else(|e| panic!("read /proc/{pid}/{f} ({what}): {e}"));
        assert_clean(&format!("{what} /proc/{pid}/{f}"), &bytes);
    }
}

fn pid_from_log(w: &mut Warden, needle: &str) -> u32 {
    let line = w.wait_log(needle, Duration::from_secs(30));
    line.split("pid=")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"))
}

fn display_from_log(w: &mut Warden) -> String {
    let line = w.wait_log("Xvfb started", Duration::from_secs(30));
    let d = line
        .split("display=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no display in {line:?}"));
    d.trim_matches('"').to_string()
}

fn ibwarden(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ibwarden"));
    c.args(args);
    c
}

#[test]
fn live_login_leaks_no_secret_anywhere() {
    let install = SimInstall::new(&Scenario::new());
    let mut w = Warden::start(&install, "live", "");
    w.wait_ready(LIVE_LOGIN);
    let rec = install.record();
    assert_eq!(
        rec.events()
            .iter()
            .filter(|e| is_ev(e, "code") && e["verdict"] == "accepted")
            .count(),
        1,
        "a real live login with a code"
    );
    // An unknown dialog makes ibwarden save a screenshot (file name from the dialog).
    install.control(&format!(
        "dialog Mystery {TEST_USER}|Something unexpected happened|OK"
    ));
    w.wait_log("screenshot saved", Duration::from_secs(20));
    let shots: Vec<PathBuf> = warden::walk(&w.state_dir.join("screenshots"));
    assert!(!shots.is_empty(), "a screenshot was saved");

    // The processes: the JVM, Xvfb and ibwarden itself.
    let jvm = rec
        .events()
        .iter()
        .find(|e| is_ev(e, "start"))
        .and_then(|e| e["pid"].as_u64())
        .expect("JVM pid") as u32;
    proc_clean(jvm, "the JVM");
    let xvfb = pid_from_log(&mut w, "Xvfb started");
    proc_clean(xvfb, "Xvfb");
    proc_clean(w.child.pid(), "ibwarden");

    // Status output over the control socket, and `ibwarden check`.
    let sock = w.state_dir.join("control.sock");
    let out = ibwarden(&["status", "--socket"])
        .arg(&sock)
        .output()
        .expect("ibwarden status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Ready"));
    assert_clean("`ibwarden status`", &out.stdout);
    assert_clean("`ibwarden status` stderr", &out.stderr);
    let out = ibwarden(&["status", "--json", "--socket"])
        .arg(&sock)
        .output()
        .expect("ibwarden status --json");
    assert_clean("`ibwarden status --json`", &out.stdout);
    let out = ibwarden(&["check", "--config"])
        .arg(&w.config)
        .env("HOME", w.dir.path())
        .output()
        .expect("ibwarden check");
    assert_clean("`ibwarden check`", &out.stdout);
    assert_clean("`ibwarden check` stderr", &out.stderr);

    w.stop_and_wait(Duration::from_secs(60));
    // Logs, notifications, every file ibwarden or the gateway wrote (state dir: persisted
    // state, gateway.log, Xvfb.log, screenshots; the settings dir: launcher.log, ...).
    w.assert_no_secret_in_logs(&install);
    for n in &w.notifications {
        assert_clean("a notification", n.as_bytes());
    }
    assert_clean("ibwarden's log", w.log().as_bytes());
    assert!(scan_tree(&w.state_dir) >= 3, "the state dir was scanned");
    assert!(scan_tree(&install.settings_dir) >= 1);
}

#[test]
fn a_crash_report_and_its_notification_hold_no_secret() {
    let install = SimInstall::new(&Scenario::new());
    let mut w = Warden::start(&install, "paper", "");
    w.wait_ready(LOGIN);
    // A real JVM crash (SIGSEGV → hs_err file with the JVM's arguments and environment).
    {
        use std::io::Write;
        let port = install.control_port();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("control");
        s.write_all(b"crash\n").expect("write");
    }
    w.wait_ready_again(LOGIN);
    let reports: Vec<PathBuf> = warden::walk(&w.state_dir.join("jvm"))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("hs_err_pid"))
        })
        .collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let report = fs::read(&reports[0]).expect("read the crash report");
    assert!(report.len() > 1000, "a real crash report");
    assert_clean("the crash report", &report);
    proc_clean(
        install
            .record()
            .events()
            .iter()
            .rev()
            .find(|e| is_ev(e, "start"))
            .and_then(|e| e["pid"].as_u64())
            .expect("pid") as u32,
        "the relaunched JVM",
    );
    w.stop_and_wait(Duration::from_secs(60));
    w.assert_no_secret_in_logs(&install);
    scan_tree(&w.state_dir);
    scan_tree(&install.settings_dir);
}

// ------------------------------------------------------------------------------ X server

/// TCP sockets in LISTEN state from /proc/net/tcp and tcp6: (local port, inode).
fn tcp_listeners() -> Vec<(u16, u64)> {
    let mut v = Vec::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(f) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 || cols[3] != "0A" {
                continue;
            }
            let port = cols[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
                .expect("port");
            let inode = cols[9].parse().expect("inode");
            v.push((port, inode));
        }
    }
    v
}

/// Socket inodes held open by `pid`.
fn socket_inodes(pid: u32) -> Vec<u64> {
    let mut v = Vec::new();
    for e in fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .flatten()
    {
        if let Ok(target) = fs::read_link(e.path()) {
            let t = target.to_string_lossy();
            if let Some(n) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                v.push(n.parse().expect("inode"));
            }
        }
    }
    v
}

#[test]
fn xvfb_is_not_on_tcp_and_refuses_clients_without_the_cookie() {
    let install = SimInstall::new(&Scenario::new());
    let mut w = Warden::start(&install, "paper", "");
    w.wait_ready(LOGIN);
    let xvfb = pid_from_log(&mut w, "Xvfb started");
    let display = display_from_log(&mut w);
    let number: u16 = display
        .trim_start_matches(':')
        .split('.')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("display {display:?}"));

    // 1. No TCP listener on 6000+N, and none owned by Xvfb at all.
    let listeners = tcp_listeners();
    assert!(
        !listeners.iter().any(|(p, _)| *p == 6000 + number),
        "something listens on TCP port {}",
        6000 + number
    );
    let mine = socket_inodes(xvfb);
    assert!(!mine.is_empty(), "Xvfb has sockets (its Unix socket)");
    let on_tcp: Vec<_> = listeners.iter().filter(|(_, i)| mine.contains(i)).collect();
    assert!(on_tcp.is_empty(), "Xvfb listens on TCP: {on_tcp:?}");
    // `ss -ltnp` agrees (iproute2), when installed.
    if let Ok(out) = Command::new("ss").args(["-ltnp"]).output() {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains(&format!("pid={xvfb},")) && !text.contains("\"Xvfb\""),
            "ss shows Xvfb listening:\n{text}"
        );
    }

    // 2. Its Unix socket refuses a client without the cookie, and one with a wrong cookie.
    let tmp = tempfile::tempdir().expect("tempdir");
    let empty = tmp.path().join("empty-xauthority");
    fs::write(&empty, b"").expect("empty Xauthority");
    let try_xprop = |xauth: &Path| {
        Command::new(require_tool("xprop", "x11-utils"))
            .args(["-root", "_NET_SUPPORTED"])
            .env_clear()
            .env("DISPLAY", &display)
            .env("XAUTHORITY", xauth)
            .env("HOME", tmp.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .output()
            .expect("run xprop")
    };
    let out = try_xprop(&empty);
    assert!(
        !out.status.success(),
        "a client without the cookie was let in: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let wrong = tmp.path().join("wrong-xauthority");
    let mut entry = Vec::new();
    entry.extend_from_slice(&0xffffu16.to_be_bytes());
    for b in [&b""[..], b"", b"MIT-MAGIC-COOKIE-1", b"0123456789abcdef"] {
        entry.extend_from_slice(&(b.len() as u16).to_be_bytes());
        entry.extend_from_slice(b);
    }
    fs::write(&wrong, &entry).expect("wrong Xauthority");
    let out = try_xprop(&wrong);
    assert!(!out.status.success(), "a wrong cookie was let in");

    // 3. The positive control: ibwarden's own Xauthority (owner-only) works.
    let xauth = w.state_dir.join("display").join("Xauthority");
    let mode = fs::metadata(&xauth)
        .expect("Xauthority")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode & 0o077, 0, "Xauthority is owner-only: {mode:o}");
    let out = try_xprop(&xauth);
    assert!(
        out.status.success(),
        "the right cookie must work: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    w.stop_and_wait(Duration::from_secs(60));
}

// ------------------------------------------------------------------------------ control socket

#[test]
fn the_control_socket_refuses_another_user() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test runs a client as uid 65534 (nobody): it needs root (CI containers are)"
    );
    let install = SimInstall::new(&Scenario::new());
    // The socket in a world-traversable dir, so only the socket's own protections apply.
    let run = tempfile::Builder::new()
        .prefix("ibw-sec-run-")
        .tempdir()
        .expect("tempdir");
    fs::set_permissions(run.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let sock = run.path().join("control.sock");
    let mut w = Warden::start(
        &install,
        "paper",
        &format!("[control]\nsocket = \"{}\"\n", sock.display()),
    );
    w.wait_ready(LOGIN);
    let mode = fs::metadata(&sock).expect("socket").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_ibwarden"));
    // setpriv, not Command::uid: setpriv changes uid keeping its capabilities until the exec,
    // so the binary is reachable even when the checkout lies under a 0700 directory (a clone
    // in /root, CI's mktemp dir); the program itself then runs with none.
    let as_nobody = |args: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(args)
            .arg("--socket")
            .arg(&sock)
            .env_clear()
            .env("HOME", "/nonexistent")
            .env("PATH", "/usr/bin:/bin")
            .current_dir("/");
        c.output()
            .expect("run ibwarden as nobody (setpriv, util-linux)")
    };
    // The owner (root here) gets an answer: the test can tell refusal from breakage.
    let out = ibwarden(&["status", "--socket"])
        .arg(&sock)
        .output()
        .expect("status as owner");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Layer 1: the file mode. Another user cannot even connect.
    for cmd in [&["status"][..], &["stop"][..], &["totp-now"][..]] {
        let out = as_nobody(cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cmd:?} as nobody succeeded");
        assert!(err.contains("permission denied"), "{cmd:?}: {err}");
        assert_clean("a refusal", &out.stdout);
    }
    // Layer 2: SO_PEERCRED. Even with the mode opened up by mistake, the server refuses.
    fs::set_permissions(&sock, fs::Permissions::from_mode(0o666)).expect("chmod socket");
    for cmd in [&["stop"][..], &["totp-now"][..], &["status"][..]] {
        let out = as_nobody(cmd);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{cmd:?} as nobody succeeded: {text}");
        assert!(
            text.contains("permission denied") || text.contains("without an answer"),
            "{cmd:?}: {text}"
        );
        assert_clean("a refused reply", text.as_bytes());
    }
    assert!(
        w.log().contains("refused a client of another user"),
        "{}",
        w.log_tail(20)
    );
    // Nobody's `stop` did nothing: still running, same JVM.
    assert!(
        w.child.try_wait().is_none(),
        "ibwarden was stopped by another user"
    );
    let starts = install
        .record()
        .events()
        .iter()
        .filter(|e| is_ev(e, "start"))
        .count();
    assert_eq!(starts, 1);
    w.stop_and_wait(Duration::from_secs(60));
}
