//! The gateway simulator driven directly over X11 (XTest typing, WM_TAKE_FOCUS), without
//! ibwarden: window sequences, keyboard behaviour, verification, scenarios, the API port.
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{is_ev, Scenario, Session, START_TIMEOUT, STEP_TIMEOUT};

/// The `api_listen` event (recorded just before `logged_in`).
fn api_listen_event(s: &Session) -> serde_json::Value {
    s.rec
        .events()
        .into_iter()
        .find(|e| is_ev(e, "api_listen"))
        .expect("api_listen recorded before logged_in")
}

/// Text typed into `field` (per-keystroke record events).
fn typed(s: &Session, field: &str) -> String {
    s.rec
        .events()
        .iter()
        .filter(|e| is_ev(e, "key") && e["field"] == field && e["char"].is_string())
        .map(|e| e["char"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn live_login_with_correct_code() {
    let mut s = Session::start(&Scenario::new());
    let (user, pw) = (common::TEST_USER, common::TEST_PASSWORD);
    s.rec
        .wait_for("initial focus in username", STEP_TIMEOUT, |v| {
            is_ev(v, "focus") && v["field"] == "username"
        });
    s.type_login(user, pw);
    let attempt = s.rec.wait_ev("login_attempt", STEP_TIMEOUT);
    assert_eq!(attempt["verdict"], "ok");
    assert_eq!(attempt["username"], user);
    assert_eq!(attempt["password"], pw);
    assert_eq!(attempt["mode"], "live");
    s.rec
        .wait_window("Second Factor Authentication", STEP_TIMEOUT);
    let (code, step) = s.type_code();
    let checked = s.rec.wait_ev("code", STEP_TIMEOUT);
    assert_eq!(checked["code"], code.as_str());
    assert_eq!(checked["step"], step);
    assert_eq!(checked["verdict"], "accepted");
    s.rec.wait_ev("logged_in", STEP_TIMEOUT);
    let listen = api_listen_event(&s);
    assert_eq!(listen["port"], s.install.api_port);
    assert_eq!(
        s.rec.window_sequence(),
        [
            "IBKR Gateway",
            "Authenticating...",
            "Second Factor Authentication",
            "Connecting to server...",
            "Initializing environment...",
            "Starting application...",
            "IBKR Gateway"
        ],
        "window sequence"
    );
    assert_eq!(typed(&s, "username"), user);
    assert_eq!(typed(&s, "password"), pw);
    assert_eq!(typed(&s, "code"), code);
    let login_button = s
        .rec
        .events()
        .into_iter()
        .find(|e| is_ev(e, "button") && e["button"] == "Log In")
        .expect("Log In pressed");
    assert_eq!(login_button["how"], "keyboard");
    assert_eq!(login_button["fields"]["username"], user);
    // The main window is the same X window as the login frame, now wider.
    let main = s.x.wait_window(s.pid(), "IBKR Gateway", STEP_TIMEOUT);
    assert_eq!(
        s.x.windows_of(s.pid()).len(),
        1,
        "only the main window is left"
    );
    let _ = main;
    let log = s.install.launcher_log();
    for marker in [
        "AuthTimeoutMonitor-CCP: activate",
        "NS_AUTH_START",
        "Login has completed",
    ] {
        assert!(
            log.contains(marker),
            "launcher.log lacks {marker:?}:\n{log}"
        );
    }
}

#[test]
fn focus_order_of_the_login_frame() {
    let mut s = Session::start(&Scenario::new());
    s.focus("IBKR Gateway");
    s.rec.wait_for("initial focus", STEP_TIMEOUT, |v| {
        is_ev(v, "focus") && v["field"] == "username"
    });
    for want in [
        "password",
        "Log In",
        "IB API",
        "FIX CTCI",
        "Live Trading",
        "Paper Trading",
        "username",
    ] {
        s.x.key("Tab");
        s.rec
            .wait_for(&format!("Tab to {want}"), STEP_TIMEOUT, |v| {
                is_ev(v, "focus") && v["field"] == want
            });
    }
    for want in ["Paper Trading", "Live Trading"] {
        s.x.key("shift+Tab");
        s.rec
            .wait_for(&format!("Shift+Tab to {want}"), STEP_TIMEOUT, |v| {
                is_ev(v, "focus") && v["field"] == want
            });
    }
}

#[test]
fn wrong_password_shows_login_failed() {
    let mut s = Session::start(&Scenario::new());
    s.type_login(common::TEST_USER, "not-the-password");
    let a = s.rec.wait_ev("login_attempt", STEP_TIMEOUT);
    assert_eq!(a["verdict"], "bad_credentials");
    assert_eq!(a["password"], "not-the-password");
    let w = s.x.wait_window(s.pid(), "Login failed", STEP_TIMEOUT);
    // The frame keeps its progress title until the dialog is answered.
    let frame = s.x.wait_window(s.pid(), "Authenticating...", STEP_TIMEOUT);
    assert_eq!(
        w.transient_for,
        Some(frame.id),
        "Login failed is transient for the frame"
    );
    let b = s.press("Login failed", "Return");
    assert_eq!(b["button"], "OK");
    assert_eq!(b["how"], "keyboard");
    s.rec.wait_ev("login_reset", STEP_TIMEOUT);
    s.x.wait_window_gone(s.pid(), "Login failed", STEP_TIMEOUT);
    // Back on the login frame: the password was cleared, a retry with the right one works.
    let state = std::fs::read_to_string(s.install.settings_dir.join("sim-server-state.properties"))
        .expect("state file");
    assert!(state.contains("failures=1"), "failure persisted: {state}");
    s.focus("IBKR Gateway");
    s.x.key("Tab");
    s.rec.wait_for("focus password", STEP_TIMEOUT, |v| {
        is_ev(v, "focus") && v["field"] == "password"
    });
    s.x.type_text(common::TEST_PASSWORD);
    s.x.key("Return");
    let b = s.rec.wait_for("second Log In", STEP_TIMEOUT, |v| {
        is_ev(v, "button") && v["button"] == "Log In"
    });
    assert_eq!(
        b["fields"]["password"],
        common::TEST_PASSWORD,
        "password field was cleared"
    );
    assert_eq!(
        s.rec.wait_ev("login_attempt", STEP_TIMEOUT)["verdict"],
        "ok"
    );
}

#[test]
fn lockout_after_n_failures_survives_restart() {
    let sc = Scenario::new()
        .set("max_failures", 2)
        // Long enough to outlast a JVM relaunch and a typed login on a loaded 2-core machine
        // (4 s did not: the lockout had ended before the new JVM's login).
        .set("lockout_seconds", 15);
    let mut s = Session::start(&sc);
    s.type_login(common::TEST_USER, "bad1");
    assert_eq!(
        s.rec.wait_ev("login_attempt", STEP_TIMEOUT)["verdict"],
        "bad_credentials"
    );
    s.rec.wait_window("Login failed", STEP_TIMEOUT);
    s.press("Login failed", "Return");
    s.rec.wait_ev("login_reset", STEP_TIMEOUT);
    s.focus("IBKR Gateway");
    s.move_focus("Tab", "password");
    s.x.type_text("bad2");
    s.x.key("Return");
    assert_eq!(
        s.rec.wait_ev("login_attempt", STEP_TIMEOUT)["verdict"],
        "lockout_started"
    );
    let lock = s.rec.wait_ev("lockout", STEP_TIMEOUT);
    assert!(
        lock["text"]
            .as_str()
            .unwrap()
            .starts_with("Too many failed login attempts. Please wait "),
        "{lock}"
    );
    s.rec.wait_window("Gateway", STEP_TIMEOUT);
    // The lockout is server-side: a new JVM is still locked out, even with good credentials.
    s.sim = None;
    s.launch(None);
    s.type_login(common::TEST_USER, common::TEST_PASSWORD);
    let attempt = s.rec.wait_ev("login_attempt", STEP_TIMEOUT);
    let until = lock["until_ms"].as_u64().unwrap();
    assert!(
        attempt["t"].as_u64().unwrap() < until,
        "the relaunch took longer than the lockout; the test cannot see it: {attempt}"
    );
    assert_eq!(attempt["verdict"], "locked_out");
    s.rec.wait_window("Gateway", STEP_TIMEOUT);
    s.press("Gateway", "Return");
    s.rec.wait_ev("login_reset", STEP_TIMEOUT);
    // After the announced wait, the login goes through.
    let until = lock["until_ms"].as_u64().unwrap();
    let now = common::now_ms();
    if until > now {
        std::thread::sleep(Duration::from_millis(until - now + 50)); // the lockout's own end
    }
    s.focus("IBKR Gateway");
    s.move_focus("Tab", "password");
    s.x.type_text(common::TEST_PASSWORD);
    s.x.key("Return");
    assert_eq!(
        s.rec.wait_ev("login_attempt", STEP_TIMEOUT)["verdict"],
        "ok"
    );
}

#[test]
fn lockout_text_is_exact() {
    let sc = Scenario::new()
        .set("max_failures", 1)
        .set("lockout_seconds", 53);
    let mut s = Session::start(&sc);
    s.type_login(common::TEST_USER, "wrong");
    let lock = s.rec.wait_ev("lockout", STEP_TIMEOUT);
    assert_eq!(
        lock["text"],
        "Too many failed login attempts. Please wait 53 seconds before attempting to re-login again."
    );
}

#[test]
fn existing_session_then_handoff() {
    let mut s = Session::start(&Scenario::new().set("existing_session", "once"));
    s.type_login(common::TEST_USER, common::TEST_PASSWORD);
    s.rec.wait_window("Existing session detected", STEP_TIMEOUT);
    let b = s.press("Existing session detected", "Return");
    assert_eq!(
        b["button"], "Continue Login",
        "Enter presses the default button"
    );
    s.rec
        .wait_window("Second Factor Authentication", STEP_TIMEOUT);
    s.type_code();
    s.rec.wait_window("Trading Login Handoff", STEP_TIMEOUT);
    let b = s.press("Trading Login Handoff", "Return");
    assert_eq!(b["button"], "Disconnect Other Session");
    s.rec.wait_ev("logged_in", STEP_TIMEOUT);
    let seq = s.rec.window_sequence();
    let pos = |t: &str| {
        seq.iter()
            .position(|x| x == t)
            .unwrap_or_else(|| panic!("{t} in {seq:?}"))
    };
    assert!(pos("Existing session detected") < pos("Second Factor Authentication"));
    assert!(pos("Second Factor Authentication") < pos("Trading Login Handoff"));
    assert!(pos("Trading Login Handoff") < pos("Connecting to server..."));
}

#[test]
fn existing_session_cancel_by_tab_and_space() {
    let mut s = Session::start(&Scenario::new().set("existing_session", "once"));
    s.type_login(common::TEST_USER, common::TEST_PASSWORD);
    s.rec.wait_window("Existing session detected", STEP_TIMEOUT);
    s.focus("Existing session detected");
    s.x.key("Tab");
    s.rec.wait_for("focus on Cancel", STEP_TIMEOUT, |v| {
        is_ev(v, "focus") && v["field"] == "Cancel"
    });
    s.x.key("space");
    let b = s.rec.wait_ev("button", STEP_TIMEOUT);
    assert_eq!(b["button"], "Cancel");
    assert_eq!(
        s.rec.wait_ev("login_reset", STEP_TIMEOUT)["reason"],
        "existing_session_cancel"
    );
}

#[test]
fn paper_login_shows_warning_and_no_second_factor() {
    let mut s = Session::start(&Scenario::new());
    s.login_paper();
    let b = s
        .rec
        .events()
        .into_iter()
        .find(|e| is_ev(e, "button") && e["window"] == "IBKR Gateway")
        .expect("login button");
    assert_eq!(b["button"], "Paper Log In");
    let seq = s.rec.window_sequence();
    assert!(seq.contains(&"Warning".to_string()), "{seq:?}");
    assert!(
        !seq.contains(&"Second Factor Authentication".to_string()),
        "{seq:?}"
    );
    let w = s
        .rec
        .events()
        .into_iter()
        .find(|e| is_ev(e, "button") && e["window"] == "Warning")
        .expect("warning accepted");
    assert_eq!(w["button"], "I understand and accept");
    assert_eq!(api_listen_event(&s)["port"], s.install.api_port);
}

#[test]
fn device_chooser_by_first_letter() {
    let mut s = Session::start(&Scenario::new().set("devices", "IB Key,Mobile Authenticator app"));
    s.type_login(common::TEST_USER, common::TEST_PASSWORD);
    s.rec
        .wait_window("Second Factor Authentication", STEP_TIMEOUT);
    s.focus("Second Factor Authentication");
    s.rec
        .wait_for("focus on the device list", STEP_TIMEOUT, |v| {
            is_ev(v, "focus") && v["field"] == "devices"
        });
    s.x.key("M");
    s.x.key("Return");
    assert_eq!(
        s.rec.wait_ev("device", STEP_TIMEOUT)["device"],
        "Mobile Authenticator app"
    );
    s.rec
        .wait_for("focus on the code field", STEP_TIMEOUT, |v| {
            is_ev(v, "focus") && v["field"] == "code"
        });
    let (code, _) = s.install.scenario.fresh_totp();
    s.x.type_text(&code);
    s.x.key("Return");
    assert_eq!(s.rec.wait_ev("code", STEP_TIMEOUT)["verdict"], "accepted");
    s.rec.wait_ev("logged_in", STEP_TIMEOUT);
}

#[test]
fn wrong_and_reused_codes_are_rejected() {
    let mut s = Session::start(&Scenario::new().set("reject_codes", 1));
    s.type_login(common::TEST_USER, common::TEST_PASSWORD);
    s.rec
        .wait_window("Second Factor Authentication", STEP_TIMEOUT);
    s.focus("Second Factor Authentication");
    s.x.type_text("000000");
    s.x.key("Return");
    assert_eq!(s.rec.wait_ev("code", STEP_TIMEOUT)["verdict"], "rejected");
    // The code dialog reappears (a new window).
    s.rec
        .wait_window("Second Factor Authentication", STEP_TIMEOUT);
    let (code, _) = s.type_code();
    let c = s.rec.wait_ev("code", STEP_TIMEOUT);
    assert_eq!(
        c["verdict"], "forced_reject",
        "scenario rejects the first correct code"
    );
    s.rec
        .wait_window("Second Factor Authentication", STEP_TIMEOUT);
    s.focus("Second Factor Authentication");
    s.x.type_text(&code);
    s.x.key("Return");
    assert_eq!(
        s.rec.wait_ev("code", STEP_TIMEOUT)["verdict"],
        "reused",
        "a step is accepted once"
    );
}

#[test]
fn nightly_restart_then_token_login() {
    let mut s = Session::start(&Scenario::new());
    s.login_live();
    s.install.control("nightly_restart");
    assert_eq!(s.wait_exit(STEP_TIMEOUT), 0, "nightly restart exits 0");
    let dirs = s.install.autorestart_dirs();
    assert_eq!(dirs.len(), 1, "one autorestart token: {dirs:?}");
    assert!(s.install.launcher_log().contains("IB GATEWAY RESTART"));
    let mark = s.rec.events().len();
    s.launch(Some(&dirs[0]));
    s.rec.wait_ev("logged_in", STEP_TIMEOUT);
    let after: Vec<_> = s.rec.events().split_off(mark);
    assert!(
        !after.iter().any(|e| is_ev(e, "key")),
        "token login needs no typing"
    );
    let restart = after
        .iter()
        .find(|e| is_ev(e, "restart_token"))
        .expect("restart_token");
    assert_eq!(restart["present"], true);
    assert_eq!(restart["expired"], false);
    let login = after.iter().find(|e| is_ev(e, "logged_in")).unwrap();
    assert_eq!(login["via"], "token");
    assert_eq!(login["mode"], "live");
    let seq: Vec<_> = after
        .iter()
        .filter(|e| is_ev(e, "window_shown") || is_ev(e, "title"))
        .map(|e| e["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        seq,
        [
            "IBKR Gateway",
            "Authenticating...",
            "Connecting to server...",
            "Initializing environment...",
            "Starting application...",
            "IBKR Gateway"
        ]
    );
    assert!(s.install.autorestart_dirs().is_empty(), "token used up");
    // The next nightly restart hands on the same weekly expiry (no renewal without a login).
    let first = s
        .rec
        .events()
        .into_iter()
        .find(|e| is_ev(e, "autorestart_token"))
        .unwrap();
    s.install.control("nightly_restart");
    assert_eq!(s.wait_exit(STEP_TIMEOUT), 0);
    let second = s
        .rec
        .events()
        .into_iter()
        .filter(|e| is_ev(e, "autorestart_token"))
        .nth(1)
        .expect("second token");
    assert_eq!(second["expires_ms"], first["expires_ms"]);
}

#[test]
fn expired_token_needs_full_login() {
    let mut s = Session::start(&Scenario::new().set("token_ttl_s", 0));
    s.login_paper();
    s.install.control("nightly_restart");
    assert_eq!(s.wait_exit(STEP_TIMEOUT), 0);
    let dirs = s.install.autorestart_dirs();
    s.launch(Some(&dirs[0]));
    let t = s.rec.wait_ev("restart_token", STEP_TIMEOUT);
    assert_eq!(t["expired"], true);
    s.rec.wait_window("Gateway", STEP_TIMEOUT);
    s.press("Gateway", "Return");
    s.login_paper();
}

#[test]
fn crash_exits_134_with_hs_err() {
    let mut s = Session::start(&Scenario::new());
    s.install.control("crash");
    assert_eq!(s.wait_exit(START_TIMEOUT), 134);
    let files = s.install.hs_err_files();
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.contains("SIGSEGV"), "hs_err mentions SIGSEGV");
}

#[test]
fn xprop_shows_title_pid_and_transient_for() {
    let mut s = Session::start(&Scenario::new());
    s.type_login(common::TEST_USER, common::TEST_PASSWORD);
    s.rec
        .wait_window("Second Factor Authentication", STEP_TIMEOUT);
    let frame = s.x.wait_window(s.pid(), "Authenticating...", STEP_TIMEOUT);
    let dlg =
        s.x.wait_window(s.pid(), "Second Factor Authentication", STEP_TIMEOUT);
    let id = |w: &common::x11::Win| format!("{:#x}", w.id);
    let fp = s.xvfb.run_tool("xprop", "x11-utils", &["-id", &id(&frame)]);
    assert!(
        fp.contains("_NET_WM_NAME(UTF8_STRING) = \"Authenticating...\""),
        "{fp}"
    );
    assert!(
        fp.contains(&format!("_NET_WM_PID(CARDINAL) = {}", s.pid())),
        "{fp}"
    );
    assert!(
        fp.contains("WM_CLASS(STRING) = \"ibgateway-GWClient\""),
        "{fp}"
    );
    assert!(fp.contains("WM_TAKE_FOCUS"), "{fp}");
    assert!(!fp.contains("WM_TRANSIENT_FOR"), "{fp}");
    let dp = s.xvfb.run_tool("xprop", "x11-utils", &["-id", &id(&dlg)]);
    assert!(
        dp.contains("_NET_WM_NAME(UTF8_STRING) = \"Second Factor Authentication\""),
        "{dp}"
    );
    assert!(
        dp.contains(&format!("_NET_WM_PID(CARDINAL) = {}", s.pid())),
        "{dp}"
    );
    assert!(
        dp.contains(&format!(
            "WM_TRANSIENT_FOR(WINDOW): window id # {}",
            id(&frame)
        )),
        "{dp}"
    );
}

// ------------------------------------------------------------------------------ API port

fn frame(s: &mut TcpStream) -> Vec<String> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("frame length");
    let mut b = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut b).expect("frame body");
    let text = String::from_utf8(b).unwrap();
    let mut f: Vec<String> = text.split('\0').map(str::to_string).collect();
    f.pop();
    f
}

fn send(s: &mut TcpStream, fields: &[&str]) {
    let mut p = Vec::new();
    for f in fields {
        p.extend_from_slice(f.as_bytes());
        p.push(0);
    }
    let mut m = (p.len() as u32).to_be_bytes().to_vec();
    m.extend(p);
    s.write_all(&m).unwrap();
}

/// Handshake + START_API; returns the stream and the negotiated version.
fn api_connect(port: u16, client_id: u32) -> (TcpStream, u32) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect API port");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"API\0").unwrap();
    let v = b"v100..187";
    s.write_all(&(v.len() as u32).to_be_bytes()).unwrap();
    s.write_all(v).unwrap();
    let ack = frame(&mut s);
    let ver: u32 = ack[0].parse().unwrap();
    send(&mut s, &["71", "2", &client_id.to_string(), ""]);
    (s, ver)
}

#[test]
fn api_handshake_duplicate_client_and_link_loss() {
    let mut s = Session::start(&Scenario::new().set("server_version", 176));
    let port = s.install.api_port;
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "API port closed before login"
    );
    s.login_paper();
    let (mut a, ver) = api_connect(port, 7);
    assert_eq!(ver, 176);
    assert_eq!(frame(&mut a), ["15", "1", "DU1234567"]);
    assert_eq!(frame(&mut a), ["9", "1", "1"]);
    let codes: Vec<String> = (0..3).map(|_| frame(&mut a)[3].clone()).collect();
    assert_eq!(codes, ["2104", "2106", "2158"]);
    send(&mut a, &["49", "1"]);
    let t = frame(&mut a);
    assert_eq!(t[0], "49");
    let secs: u64 = t[2].parse().unwrap();
    assert!(secs.abs_diff(common::now_ms() / 1000) < 5);
    // Same client id again: 326 and closed.
    let (mut b, _) = api_connect(port, 7);
    let e = frame(&mut b);
    assert_eq!(&e[..4], ["4", "2", "-1", "326"]);
    let mut buf = [0u8; 1];
    assert_eq!(
        b.read(&mut buf).unwrap_or(0),
        0,
        "duplicate connection closed"
    );
    // Link loss and restore on the open connection.
    s.install.control("link_loss");
    assert_eq!(frame(&mut a)[3], "1100");
    s.install.control("link_restore");
    assert_eq!(frame(&mut a)[3], "1102");
}

#[test]
fn hang_keeps_windows_but_api_stops_answering() {
    let mut s = Session::start(&Scenario::new());
    s.login_paper();
    s.install.control("hang");
    s.rec.wait_ev("hang", STEP_TIMEOUT);
    let mut c = TcpStream::connect(("127.0.0.1", s.install.api_port)).expect("still accepts");
    c.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    c.write_all(b"API\0\0\0\0\x09v100..176").unwrap();
    let mut buf = [0u8; 4];
    let err = c
        .read_exact(&mut buf)
        .expect_err("no handshake answer from a hung gateway");
    assert!(matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    assert!(
        s.x.windows_of(s.pid())
            .iter()
            .any(|w| w.title == "IBKR Gateway"),
        "window stays"
    );
}

// ------------------------------------------------------------------------------ ib_async

const IB_ASYNC_PROBE: &str = r#"
import sys
from ib_async import IB
port, mode = int(sys.argv[1]), sys.argv[2]
ib = IB()
try:
    ib.connect("127.0.0.1", port, clientId=11, timeout=4)
except Exception as e:
    print("FAILED", type(e).__name__)
    sys.exit(0 if mode == "before" else 1)
if mode == "before":
    print("UNEXPECTED CONNECT")
    sys.exit(1)
t = ib.reqCurrentTime()
print("TIME", int(t.timestamp()))
print("ACCOUNTS", ",".join(ib.managedAccounts()))
print("VERSION", ib.client.serverVersion())
ib.disconnect()
"#;

#[test]
fn ib_async_connects_only_after_login() {
    let python = common::test_python();
    let mut s = Session::start(&Scenario::new());
    let port = s.install.api_port.to_string();
    let run = |mode: &str| {
        let out = Command::new(&python)
            .args(["-c", IB_ASYNC_PROBE, &port, mode])
            .output()
            .expect("run python");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "ib_async probe ({mode}) failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let before = run("before");
    assert!(
        before.starts_with("FAILED ConnectionRefusedError"),
        "{before}"
    );
    s.login_paper();
    let started = Instant::now();
    let after = run("after");
    let time_line = after
        .lines()
        .find(|l| l.starts_with("TIME "))
        .expect("TIME line");
    let t: u64 = time_line[5..].parse().unwrap();
    assert!(t.abs_diff(common::now_ms() / 1000) < 5, "{after}");
    assert!(after.contains("ACCOUNTS DU1234567"), "{after}");
    assert!(after.contains("VERSION 176"), "{after}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "connect is fast (all sync replies sent)"
    );
    s.rec.wait_for("client 11 START_API", STEP_TIMEOUT, |v| {
        is_ev(v, "api_start") && v["client_id"] == 11
    });
}

// ------------------------------------------------------------------------------ more scenarios

#[test]
fn clock_drift_gives_wrong_time_verdict() {
    let mut s = Session::start(&Scenario::new().set("clock_offset_s", 95));
    s.type_login(common::TEST_USER, common::TEST_PASSWORD);
    s.rec
        .wait_window("Second Factor Authentication", STEP_TIMEOUT);
    let secs = common::now_ms() / 1000;
    let code = s.install.scenario.totp_at(secs);
    s.focus("Second Factor Authentication");
    s.x.type_text(&code);
    s.x.key("Return");
    let c = s.rec.wait_ev("code", STEP_TIMEOUT);
    assert_eq!(c["verdict"], "wrong_time", "{c}");
    let off = c["offset"].as_i64().unwrap();
    assert!((-4..=-3).contains(&off), "{c}");
}

#[test]
fn ib_key_push_times_out() {
    let sc = Scenario::new()
        .set("devices", "IB Key")
        .set("twofa_timeout_s", 20);
    let mut s = Session::start(&sc);
    s.type_login(common::TEST_USER, common::TEST_PASSWORD);
    assert_eq!(
        s.rec.wait_ev("twofa_prompt", STEP_TIMEOUT)["device"],
        "IB Key"
    );
    s.rec.wait_ev("twofa_timeout", STEP_TIMEOUT);
    assert_eq!(
        s.rec.wait_ev("login_reset", STEP_TIMEOUT)["reason"],
        "twofa_timeout"
    );
    s.x.wait_window_gone(s.pid(), "Second Factor Authentication", STEP_TIMEOUT);
    s.x.wait_window(s.pid(), "IBKR Gateway", STEP_TIMEOUT);
}

#[test]
fn relogin_required_then_relogin() {
    let mut s = Session::start(&Scenario::new());
    let step = s.login_live();
    let (mut a, _) = api_connect(s.install.api_port, 1);
    for _ in 0..5 {
        frame(&mut a);
    }
    s.install.control("relogin_required");
    s.rec.wait_window("Re-login is required", STEP_TIMEOUT);
    assert_eq!(
        frame(&mut a)[3],
        "1100",
        "API clients learn the link is down"
    );
    let b = s.press("Re-login is required", "Return");
    assert_eq!(b["button"], "Re-login");
    s.rec.wait_window("Authenticating...", STEP_TIMEOUT);
    s.rec
        .wait_window("Second Factor Authentication", STEP_TIMEOUT);
    // The first login's step is used up: a later one is needed.
    s.type_code_after(step);
    assert_eq!(s.rec.wait_ev("code", STEP_TIMEOUT)["verdict"], "accepted");
    s.rec.wait_ev("logged_in", STEP_TIMEOUT);
    assert_eq!(frame(&mut a)[3], "1102", "and that it is back");
}

#[test]
fn connection_failed_and_progress_modal() {
    let sc = Scenario::new()
        .set("connection_failed", 1)
        .set("progress_modal", true);
    let mut s = Session::start(&sc);
    s.login_paper_credentials_only();
    s.rec.wait_window("Gateway", STEP_TIMEOUT);
    let b = s.press("Gateway", "Return");
    assert_eq!(b["button"], "OK");
    assert_eq!(
        s.rec.wait_ev("login_reset", STEP_TIMEOUT)["reason"],
        "connection_failed"
    );
    // Second try: the connecting-progress `Gateway` dialog; its OK cancels the login.
    s.focus("IBKR Gateway");
    s.move_focus("Tab", "password");
    s.x.type_text(common::TEST_PASSWORD);
    s.x.key("Return");
    s.rec.wait_window("Connecting to server...", STEP_TIMEOUT);
    s.rec.wait_window("Gateway", STEP_TIMEOUT);
    s.press("Gateway", "Return");
    assert_eq!(
        s.rec.wait_ev("login_reset", STEP_TIMEOUT)["reason"],
        "progress_cancel"
    );
}

#[test]
fn silent_drop_times_out_with_ccp_marker() {
    let sc = Scenario::new()
        .set("silent_drop", 1)
        .set("ccp_timeout_s", 20);
    let mut s = Session::start(&sc);
    s.type_login(common::TEST_USER, common::TEST_PASSWORD);
    assert_eq!(
        s.rec.wait_ev("login_attempt", STEP_TIMEOUT)["verdict"],
        "dropped"
    );
    assert_eq!(
        s.rec.wait_ev("login_reset", STEP_TIMEOUT)["reason"],
        "ccp_timeout"
    );
    let log = s.install.launcher_log();
    assert!(log.contains("AuthTimeoutMonitor-CCP: Timeout!"), "{log}");
    assert!(!log.contains("NS_AUTH_START"), "{log}");
}

#[test]
fn post_login_notices_and_unknown_dialog() {
    let sc = Scenario::new()
        .set("tip_of_the_day", true)
        .set("password_notice_days", 5);
    let mut s = Session::start(&sc);
    s.login_paper();
    s.rec.wait_window("Tip of the Day", STEP_TIMEOUT);
    let notice = s.x.wait_window(s.pid(), "Password Notice", STEP_TIMEOUT);
    assert_eq!(notice.transient_for, None, "Password Notice is a frame");
    let tip = s.x.wait_window(s.pid(), "Tip of the Day", STEP_TIMEOUT);
    assert!(tip.transient_for.is_some(), "Tip of the Day is a dialog");
    assert_eq!(s.press("Tip of the Day", "Return")["button"], "Close");
    assert_eq!(s.press("Password Notice", "space")["button"], "OK");
    s.install
        .control("dialog Mystery Dialog|Something new happened.|Yes,No");
    s.rec.wait_window("Mystery Dialog", STEP_TIMEOUT);
    s.focus("Mystery Dialog");
    s.move_focus("Tab", "No");
    s.x.key("Return");
    let b = s.rec.wait_ev("button", STEP_TIMEOUT);
    assert_eq!(
        b["button"], "Yes",
        "Enter presses the default even with focus on No"
    );
}

#[test]
fn bad_scenario_key_exits_2_naming_the_key() {
    let install = common::SimInstall::new(&Scenario::new().set("usrname", "x"));
    let xvfb = common::Xvfb::start();
    let mut p = common::launch_sim_directly(&install, &xvfb, None);
    let st = p.child.wait_exit(START_TIMEOUT);
    assert_eq!(common::shell_exit_code(st), 2);
    let err = std::fs::read_to_string(install.root().join("jvm.stderr")).unwrap();
    assert!(err.contains("unknown scenario key 'usrname'"), "{err}");
}

#[test]
fn sigterm_exits_143() {
    let mut s = Session::start(&Scenario::new());
    s.sim
        .as_ref()
        .unwrap()
        .child
        .signal_group(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(s.wait_exit(STEP_TIMEOUT), 143);
    s.rec.wait_ev("jvm_shutdown", STEP_TIMEOUT);
}

#[test]
fn buttongroup_toggles_only_reach_the_selected_one() {
    // Java 9+: focus requests to an unselected toggle of a ButtonGroup go to the selected one.
    let mut s = Session::start(&Scenario::new().set("mode_toggle_buttongroup", true));
    s.focus("IBKR Gateway");
    s.rec.wait_for("initial focus", STEP_TIMEOUT, |v| {
        is_ev(v, "focus") && v["field"] == "username"
    });
    s.move_focus("shift+Tab", "Live Trading");
    s.x.key("space");
    s.move_focus("shift+Tab", "IB API");
    assert!(
        !s.rec
            .events()
            .iter()
            .any(|e| is_ev(e, "toggle") && e["name"] == "Paper Trading"),
        "Paper Trading cannot be reached by keyboard in a ButtonGroup"
    );
}

// ------------------------------------------------------------------------------ TWS mode

#[test]
fn tws_live_login_second_factor_in_the_login_frame() {
    let mut s = Session::start_tws(&Scenario::new());
    let start = s.rec.events()[0].clone();
    assert_eq!(start["program"], "tws");
    s.login_live();
    let main =
        s.x.wait_window(s.pid(), "U1234567 Interactive Brokers", STEP_TIMEOUT);
    assert_eq!(s.x.windows_of(s.pid()).len(), 1, "login frame gone");
    assert!(main.transient_for.is_none());
    let shown: Vec<String> = s
        .rec
        .events()
        .iter()
        .filter(|e| is_ev(e, "window_shown"))
        .map(|e| e["title"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        shown,
        ["Login", "U1234567 Interactive Brokers"],
        "no 2FA window"
    );
    let morph = s
        .rec
        .events()
        .into_iter()
        .find(|e| is_ev(e, "content"))
        .expect("login frame content changed");
    assert_eq!(morph["window"], "Login");
    assert_eq!(morph["what"], "code_entry");
    let xp = s
        .xvfb
        .run_tool("xprop", "x11-utils", &["-id", &format!("{:#x}", main.id)]);
    assert!(
        xp.contains("WM_CLASS(STRING) = \"jclient-LoginFrame\""),
        "{xp}"
    );
}

#[test]
fn tws_paper_main_window_title() {
    let mut s = Session::start_tws(&Scenario::new());
    s.login_paper();
    s.x.wait_window(
        s.pid(),
        "DU1234567 Interactive Brokers (Simulated Trading)",
        STEP_TIMEOUT,
    );
}

#[test]
fn username_is_kept_after_failure_and_ctrl_a_replaces_it() {
    let mut s = Session::start(&Scenario::new());
    s.type_login("wronguser", common::TEST_PASSWORD);
    assert_eq!(
        s.rec.wait_ev("login_attempt", STEP_TIMEOUT)["verdict"],
        "bad_credentials"
    );
    s.rec.wait_window("Login failed", STEP_TIMEOUT);
    s.press("Login failed", "Return");
    s.rec.wait_ev("login_reset", STEP_TIMEOUT);
    s.focus("IBKR Gateway");
    s.wait_focus_is("username");
    s.x.key("ctrl+a");
    s.x.type_text(common::TEST_USER);
    s.move_focus("Tab", "password");
    s.x.type_text(common::TEST_PASSWORD);
    s.x.key("Return");
    let a = s.rec.wait_ev("login_attempt", STEP_TIMEOUT);
    assert_eq!(a["username"], common::TEST_USER, "{a}");
    assert_eq!(a["verdict"], "ok");
}

#[test]
fn existing_session_exit_application_exits_0() {
    let sc = Scenario::new()
        .set("existing_session", "once")
        .set("existing_session_style", "reconnect");
    let mut s = Session::start(&sc);
    s.type_login(common::TEST_USER, common::TEST_PASSWORD);
    s.rec.wait_window("Existing session detected", STEP_TIMEOUT);
    s.focus("Existing session detected");
    s.wait_focus_is("Reconnect This Session");
    s.move_focus("Tab", "Exit Application");
    s.x.key("space");
    assert_eq!(s.wait_exit(STEP_TIMEOUT), 0);
    let exit = s.rec.wait_ev("exit", STEP_TIMEOUT);
    assert_eq!(exit["reason"], "exit_application");
}

#[test]
fn token_expired_dialog_from_control_returns_to_login() {
    let mut s = Session::start(&Scenario::new());
    s.login_paper();
    s.install.control("token_expired");
    s.rec.wait_window("Gateway", STEP_TIMEOUT);
    s.press("Gateway", "Return");
    assert_eq!(
        s.rec.wait_ev("login_reset", STEP_TIMEOUT)["reason"],
        "token_expired"
    );
    s.x.wait_window(s.pid(), "IBKR Gateway", STEP_TIMEOUT);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", s.install.api_port)).is_err(),
        "API port closed when logged out"
    );
}
