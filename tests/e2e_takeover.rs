//! End-to-end: what the gateway's `launcher.log` says (silent drops) and a person taking
//! over the display over VNC, against the real binary and the simulator.

mod common;
mod warden;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::vnc::vnc_response;

use common::*;
use warden::Warden;

/// IBKR drops the login silently three times (`AuthTimeoutMonitor-CCP: Timeout!` without
/// `NS_AUTH_START`), then accepts it. ibwarden logs in again in the same JVM, on a growing
/// ladder, and is ready at the end; the failed-login budget is untouched.
#[test]
fn three_silent_drops_then_accepted_on_the_ladder_in_one_jvm() {
    let sc = Scenario::new().set("silent_drop", 3);
    let install = SimInstall::new(&sc);
    // A short ladder: 5 s, 10 s, 20 s (the default starts at 60 s).
    let mut w = Warden::start_with(
        &install,
        "paper",
        "relogin_backoff = \"5s\"\nmax_failed_logins_per_hour = 1\n",
        "",
    );
    w.wait_ready(Duration::from_secs(120));
    let rec = install.record();
    let evs = rec.events();
    let attempts: Vec<_> = evs.iter().filter(|e| is_ev(e, "login_attempt")).collect();
    let verdicts: Vec<&str> = attempts
        .iter()
        .map(|e| e["verdict"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        verdicts,
        ["dropped", "dropped", "dropped", "ok"],
        "{attempts:?}"
    );
    // The ladder: each wait at least as long as the rung (1, 2, 4 s) after the drop.
    let t: Vec<u64> = attempts.iter().filter_map(|e| e["t"].as_u64()).collect();
    let drops: Vec<u64> = evs
        .iter()
        .filter(|e| is_ev(e, "login_reset"))
        .filter_map(|e| e["t"].as_u64())
        .collect();
    assert!(drops.len() >= 3, "{drops:?}");
    for (i, rung) in [5000u64, 10000, 20000].into_iter().enumerate() {
        let gap = t[i + 1].saturating_sub(drops[i]);
        assert!(
            gap + 300 >= rung,
            "re-login {} after {gap} ms, rung {rung} ms",
            i + 1
        );
    }
    let starts = evs.iter().filter(|e| is_ev(e, "start")).count();
    assert_eq!(starts, 1, "never a second JVM for a silent drop");
    assert!(
        w.log().contains("IBKR dropped the login silently"),
        "seen through launcher.log"
    );
    w.stop_and_wait(Duration::from_secs(60));
}

/// An RFB 3.8 viewer: returns the open connection after ServerInit, or `None` if refused.
fn vnc_connect(port: u16, password: &str) -> Option<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the VNC port");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut version = [0u8; 12];
    s.read_exact(&mut version).ok()?;
    s.write_all(b"RFB 003.008\n").ok()?;
    let mut n = [0u8; 1];
    s.read_exact(&mut n).ok()?;
    let mut types = vec![0u8; n[0] as usize];
    s.read_exact(&mut types).ok()?;
    assert_eq!(types, vec![2], "only VNC authentication is offered");
    s.write_all(&[2]).ok()?;
    let mut challenge = [0u8; 16];
    s.read_exact(&mut challenge).ok()?;
    s.write_all(&vnc_response(password, &challenge)).ok()?;
    let mut result = [0u8; 4];
    s.read_exact(&mut result).ok()?;
    if result != [0, 0, 0, 0] {
        return None;
    }
    s.write_all(&[0]).ok()?;
    let mut init = [0u8; 24];
    s.read_exact(&mut init).ok()?;
    let len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize;
    let mut name = vec![0u8; len.min(4096)];
    s.read_exact(&mut name).ok()?;
    Some(s)
}

#[test]
fn a_person_on_vnc_pauses_typing_and_ibwarden_resumes_when_they_leave() {
    let install = SimInstall::new(&Scenario::new());
    let mut w = Warden::start(&install, "live", "");
    w.wait_log("Xvfb started", Duration::from_secs(30));
    // Ask the running instance for the takeover server (as `ibwarden vnc` does).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ibwarden"))
        .args(["vnc", "--config"])
        .arg(&w.config)
        .env("HOME", w.dir.path())
        .output()
        .expect("ibwarden vnc");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port: u16 = text
        .split("127.0.0.1::")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {text}"));
    // The password is on the line after "Enter the one-time password".
    let lines: Vec<&str> = text.lines().collect();
    let password = lines
        .iter()
        .position(|l| l.contains("one-time password"))
        .and_then(|i| lines.get(i + 1))
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| panic!("no password in {text}"));
    // (A wrong password is refused: tests/takeover.rs.)
    let conn = vnc_connect(port, &password).expect("the one-time password is accepted");
    w.wait_log("typing paused", Duration::from_secs(10));
    // While the person is connected, the login window comes up and nothing is typed.
    let mut rec = install.record();
    rec.wait_window("IBKR Gateway", Duration::from_secs(30));
    let hold = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < hold {
        assert!(w.child.try_wait().is_none(), "ibwarden died");
        std::thread::sleep(Duration::from_millis(100));
    }
    let keys = install
        .record()
        .events()
        .iter()
        .filter(|e| is_ev(e, "key"))
        .count();
    assert_eq!(keys, 0, "ibwarden typed while a person was connected");
    drop(conn);
    w.wait_log("typing resumes", Duration::from_secs(10));
    w.wait_ready(Duration::from_secs(90));
    let attempts = install
        .record()
        .events()
        .iter()
        .filter(|e| is_ev(e, "login_attempt"))
        .count();
    assert_eq!(attempts, 1);
    w.stop_and_wait(Duration::from_secs(60));
}
