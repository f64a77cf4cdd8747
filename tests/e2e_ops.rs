//! End-to-end operations: the health endpoint of a running `ibwarden run` follows the
//! gateway's real state, and `/metrics` is valid Prometheus text.

mod common;
mod warden;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use warden::Warden;

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((code, body))
}

/// Polls `path` until it answers `code` (the endpoint is a state, not an event stream).
fn wait_code(port: u16, path: &str, code: u16, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some((c, body)) = get(port, path) {
            if c == code {
                return body;
            }
            last = Some((c, body));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{path} never answered {code} within {timeout:?}; last: {last:?}");
}

#[test]
fn readyz_follows_login_and_a_killed_jvm_and_metrics_parse() {
    let port = free_port();
    let install = SimInstall::new(&Scenario::new());
    let extra = format!("[health]\nlisten = \"127.0.0.1:{port}\"\n");
    let mut w = Warden::start(&install, "paper", &extra);
    // Not ready before the login: 503 (the first answer, since login takes seconds).
    let body = wait_code(port, "/readyz", 503, Duration::from_secs(30));
    assert!(!body.is_empty());
    assert_eq!(get(port, "/livez").map(|r| r.0), Some(200));
    w.wait_ready(Duration::from_secs(60));
    wait_code(port, "/readyz", 200, Duration::from_secs(10));
    // Kill the JVM: not ready until it is back.
    let pid = install
        .record()
        .events()
        .iter()
        .find(|e| is_ev(e, "start"))
        .and_then(|e| e["pid"].as_i64())
        .expect("jvm pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill jvm");
    wait_code(port, "/readyz", 503, Duration::from_secs(30));
    w.wait_ready_again(Duration::from_secs(90));
    wait_code(port, "/readyz", 200, Duration::from_secs(10));

    let metrics = wait_code(port, "/metrics", 200, Duration::from_secs(5));
    // Prometheus text format 0.0.4: comments, then `name{labels} value` lines.
    let mut names = Vec::new();
    for line in metrics.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix('#') {
            let kw = rest.split_whitespace().next().unwrap_or("");
            assert!(kw == "HELP" || kw == "TYPE", "bad comment line {line:?}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().unwrap_or("");
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line:?}");
            }
        }
        names.push(name.to_string());
    }
    for want in ["ibwarden_ready", "ibwarden_restarts_total"] {
        assert!(
            names.iter().any(|n| n.starts_with(want)),
            "{want} missing from /metrics:\n{metrics}"
        );
    }
    w.stop_and_wait(Duration::from_secs(60));
}
