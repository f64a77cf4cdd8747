//! The health endpoint over real TCP: `/readyz` follows published snapshots, `/livez` follows
//! the heartbeat, `/metrics` passes a strict Prometheus text-format (0.0.4) parser, and the
//! tiny HTTP server copes with bad and slow clients.

mod logcap;

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ibwarden::health::{self, HealthOptions};
use ibwarden::status::{self, SharedStatus, Snapshot};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// Starts a server on an ephemeral loopback port.
async fn start(opts: HealthOptions) -> (SocketAddr, SharedStatus) {
    let st = status::shared("live", now_ms());
    let listener = health::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(health::serve_listener(listener, st.clone(), opts));
    (addr, st)
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

/// One raw HTTP exchange on a blocking socket (in a blocking task).
async fn raw(addr: SocketAddr, request: String) -> Reply {
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(request.as_bytes()).expect("write");
        let mut out = Vec::new();
        s.read_to_end(&mut out)
            .expect("read to close (Connection: close)");
        let text = String::from_utf8(out).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("status line");
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
        let status: u16 = parts.next().expect("code").parse().expect("numeric code");
        let headers: BTreeMap<String, String> = lines
            .map(|l| {
                let (k, v) = l.split_once(": ").expect("header");
                (k.to_ascii_lowercase(), v.to_string())
            })
            .collect();
        assert_eq!(headers.get("connection").map(String::as_str), Some("close"));
        Reply {
            status,
            headers,
            body: body.to_string(),
        }
    })
    .await
    .expect("client task")
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    let r = raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    )
    .await;
    let len: usize = r.headers["content-length"].parse().expect("length");
    assert_eq!(len, r.body.len(), "Content-Length matches the body");
    r
}

fn update(st: &SharedStatus, f: impl FnOnce(&mut Snapshot)) {
    let mut s = status::read(st);
    f(&mut s);
    s.heartbeat_unix_ms = now_ms();
    status::publish(st, s);
}

#[tokio::test]
async fn readyz_follows_the_published_snapshot() {
    let (addr, st) = start(HealthOptions::default()).await;
    update(&st, |s| {
        s.phase = "LoggingIn".into();
        s.reason = "typing credentials".into();
    });
    let r = get(addr, "/readyz").await;
    assert_eq!(r.status, 503);
    assert!(
        r.body.contains("LoggingIn") && r.body.contains("typing credentials"),
        "{}",
        r.body
    );

    update(&st, |s| {
        s.phase = "Ready".into();
        s.ready = true;
        s.reason.clear();
    });
    let r = get(addr, "/readyz").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ready\n"));

    // The JVM died: the driver publishes not-ready at once.
    update(&st, |s| {
        s.phase = "Restarting".into();
        s.ready = false;
        s.reason = "the gateway JVM exited (status 137)".into();
    });
    let r = get(addr, "/readyz").await;
    assert_eq!(r.status, 503);
    assert!(r.body.contains("status 137"), "{}", r.body);
    // Query strings are ignored.
    assert_eq!(get(addr, "/readyz?verbose=1").await.status, 503);
}

#[tokio::test]
async fn livez_fails_when_the_heartbeat_stops() {
    let (addr, st) = start(HealthOptions {
        stale_after: Duration::from_millis(300),
        ..HealthOptions::default()
    })
    .await;
    update(&st, |_| {});
    assert_eq!(get(addr, "/livez").await.status, 200);
    // Not ready is still alive.
    assert_eq!(get(addr, "/readyz").await.status, 503);
    // No heartbeat for longer than stale_after.
    let mut s = status::read(&st);
    s.heartbeat_unix_ms = now_ms() - 5_000;
    s.started_unix_ms = now_ms() - 10_000;
    status::publish(&st, s);
    let r = get(addr, "/livez").await;
    assert_eq!(r.status, 503);
    assert!(r.body.contains("no heartbeat for 5 s"), "{}", r.body);
    update(&st, |_| {});
    assert_eq!(get(addr, "/livez").await.status, 200);
}

#[tokio::test]
async fn http_edges() {
    let (addr, _st) = start(HealthOptions::default()).await;
    assert_eq!(get(addr, "/nope").await.status, 404);
    let r = raw(
        addr,
        "POST /readyz HTTP/1.1\r\nContent-Length: 0\r\n\r\n".into(),
    )
    .await;
    assert_eq!(r.status, 405);
    assert_eq!(
        r.headers.get("allow").map(String::as_str),
        Some("GET, HEAD")
    );
    let r = raw(addr, "HEAD /metrics HTTP/1.1\r\n\r\n".into()).await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert!(r.headers["content-length"].parse::<usize>().expect("len") > 100);
    assert_eq!(raw(addr, "garbage\r\n\r\n".into()).await.status, 400);
    let huge = format!("GET /livez HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    assert_eq!(raw(addr, huge).await.status, 431);

    // A client that connects and says nothing does not hold up the others.
    let idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let started = Instant::now();
    assert_eq!(get(addr, "/livez").await.status, 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(idle);
}

// ------------------------------------------------------------------------ Prometheus parser

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A strict parser for the text exposition format 0.0.4: HELP/TYPE at most once per family
/// and before its samples, a family's samples contiguous, valid names, escaped label
/// values, numeric values, no duplicate series, trailing newline. Returns the samples and
/// the TYPE of each family.
fn parse_prometheus(text: &str) -> Result<(Vec<Sample>, BTreeMap<String, String>), String> {
    fn valid_metric_name(n: &str) -> bool {
        let mut c = n.chars();
        matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
            && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
    }
    fn valid_label_name(n: &str) -> bool {
        let mut c = n.chars();
        matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
            && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
    }
    fn value(v: &str) -> Result<f64, String> {
        match v {
            "NaN" => Ok(f64::NAN),
            "+Inf" => Ok(f64::INFINITY),
            "-Inf" => Ok(f64::NEG_INFINITY),
            _ => v.parse::<f64>().map_err(|_| format!("bad value {v:?}")),
        }
    }
    if !text.ends_with('\n') {
        return Err("no trailing newline".into());
    }
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: HashSet<String> = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut samples = Vec::new();
    let mut series = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let ln = i + 1;
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut p = rest.splitn(3, ' ');
            let kw = p.next().unwrap_or_default();
            if kw != "HELP" && kw != "TYPE" {
                continue; // a plain comment
            }
            let name = p.next().ok_or(format!("line {ln}: {kw} without name"))?;
            let arg = p.next().ok_or(format!("line {ln}: {kw} without text"))?;
            if !valid_metric_name(name) {
                return Err(format!("line {ln}: bad metric name {name:?}"));
            }
            if finished.contains(name) || samples.iter().any(|s: &Sample| s.name == name) {
                return Err(format!("line {ln}: {kw} for {name} after its samples"));
            }
            if kw == "TYPE" {
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&arg) {
                    return Err(format!("line {ln}: bad type {arg:?}"));
                }
                if types.insert(name.to_string(), arg.to_string()).is_some() {
                    return Err(format!("line {ln}: second TYPE for {name}"));
                }
            } else if !helps.insert(name.to_string()) {
                return Err(format!("line {ln}: second HELP for {name}"));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        // name{labels} value [timestamp]
        let name_end = line
            .find(['{', ' '])
            .ok_or(format!("line {ln}: no value"))?;
        let name = &line[..name_end];
        if !valid_metric_name(name) {
            return Err(format!("line {ln}: bad metric name {name:?}"));
        }
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let mut end = None;
            loop {
                // label name
                let start = match chars.peek() {
                    Some((_, '}')) => {
                        end = chars.next().map(|(i, _)| i);
                        break;
                    }
                    Some((i, _)) => *i,
                    None => break,
                };
                let mut eq = None;
                for (i, c) in chars.by_ref() {
                    if c == '=' {
                        eq = Some(i);
                        break;
                    }
                }
                let eq = eq.ok_or(format!("line {ln}: label without '='"))?;
                let lname = &r[start..eq];
                if !valid_label_name(lname) {
                    return Err(format!("line {ln}: bad label name {lname:?}"));
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(format!("line {ln}: label value not quoted"));
                }
                let mut val = String::new();
                let mut closed = false;
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => match chars.next().map(|(_, c)| c) {
                            Some('\\') => val.push('\\'),
                            Some('"') => val.push('"'),
                            Some('n') => val.push('\n'),
                            other => return Err(format!("line {ln}: bad escape {other:?}")),
                        },
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\n' => return Err(format!("line {ln}: raw newline in label")),
                        c => val.push(c),
                    }
                }
                if !closed {
                    return Err(format!("line {ln}: unterminated label value"));
                }
                if labels.insert(lname.to_string(), val).is_some() {
                    return Err(format!("line {ln}: duplicate label {lname}"));
                }
                match chars.next() {
                    Some((_, ',')) => continue,
                    Some((i, '}')) => {
                        end = Some(i);
                        break;
                    }
                    other => return Err(format!("line {ln}: expected ',' or '}}', got {other:?}")),
                }
            }
            let end = end.ok_or(format!("line {ln}: unterminated labels"))?;
            rest = &r[end + 1..];
        }
        let rest = rest
            .strip_prefix(' ')
            .ok_or(format!("line {ln}: no space before value"))?;
        let mut fields = rest.split(' ');
        let v = value(fields.next().unwrap_or_default()).map_err(|e| format!("line {ln}: {e}"))?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|_| format!("line {ln}: bad timestamp {ts:?}"))?;
        }
        if fields.next().is_some() {
            return Err(format!("line {ln}: trailing garbage"));
        }
        // Family bookkeeping: samples of one family are contiguous.
        if current.as_deref() != Some(name) {
            if let Some(prev) = current.take() {
                finished.insert(prev);
            }
            if finished.contains(name) {
                return Err(format!("line {ln}: samples of {name} are not contiguous"));
            }
            current = Some(name.to_string());
        }
        let key = format!("{name}{labels:?}");
        if !series.insert(key.clone()) {
            return Err(format!("line {ln}: duplicate series {key}"));
        }
        if types.get(name).map(String::as_str) == Some("counter") && v < 0.0 {
            return Err(format!("line {ln}: negative counter"));
        }
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value: v,
        });
    }
    Ok((samples, types))
}

#[test]
fn the_parser_rejects_what_it_should() {
    let ok = "# HELP a x\n# TYPE a gauge\na{l=\"v\\\"\\n\\\\\"} 1\nb 2 1700000000\n";
    let (s, _) = parse_prometheus(ok).expect("valid");
    assert_eq!(s[0].labels["l"], "v\"\n\\");
    for bad in [
        "a 1",                                   // no newline
        "a{l=\"v\"} x\n",                        // bad value
        "a{l=v} 1\n",                            // unquoted
        "a{l=\"\\t\"} 1\n",                      // bad escape
        "1a 1\n",                                // bad name
        "a 1\nb 1\na 2\n",                       // not contiguous
        "a 1\na 2\n",                            // duplicate series
        "# TYPE a gauge\n# TYPE a gauge\na 1\n", // two TYPEs
        "a 1\n# TYPE a gauge\n",                 // TYPE after samples
        "# TYPE a counter\na -1\n",              // negative counter
        "a{l=\"v\",l=\"w\"} 1\n",                // duplicate label
    ] {
        assert!(parse_prometheus(bad).is_err(), "accepted {bad:?}");
    }
}

fn find<'a>(s: &'a [Sample], name: &str) -> Vec<&'a Sample> {
    s.iter().filter(|x| x.name == name).collect()
}

fn one(s: &[Sample], name: &str) -> f64 {
    let v = find(s, name);
    assert_eq!(v.len(), 1, "exactly one {name}: {v:?}");
    v[0].value
}

#[tokio::test]
async fn metrics_parse_and_carry_the_snapshot() {
    let (addr, st) = start(HealthOptions::default()).await;
    let ready_at = now_ms() - 60_000;
    update(&st, |s| {
        s.instance = "live \"main\"\nline".into();
        s.phase = "Ready".into();
        s.ready = true;
        s.logins = 4;
        s.readies = 3;
        s.restarts = vec![("crash".into(), 2), ("daily \"restart\"".into(), 1)];
        s.login_budget_left = 2;
        s.last_ready_unix_ms = Some(ready_at);
        s.probe_latency_ms = Some(12.5);
        // Any live process will do as the "JVM".
        s.jvm_pid = Some(std::process::id());
    });
    // Spend some CPU so the process's CPU counter has something to show.
    let spin = Instant::now();
    let mut x = 0u64;
    while spin.elapsed() < Duration::from_millis(50) {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
    }
    let r = get(addr, "/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let (samples, types) = parse_prometheus(&r.body).unwrap_or_else(|e| panic!("{e}\n{}", r.body));

    let info = find(&samples, "ibwarden_info");
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].labels["instance_name"], "live \"main\"\nline");
    assert!(info[0].labels.contains_key("version"));

    let states = find(&samples, "ibwarden_state");
    let current: Vec<&str> = states
        .iter()
        .filter(|s| s.value == 1.0)
        .map(|s| s.labels["state"].as_str())
        .collect();
    assert_eq!(current, ["Ready"]);
    assert!(states.len() >= 8, "every phase is a series: {states:?}");
    assert_eq!(one(&samples, "ibwarden_ready"), 1.0);
    assert_eq!(one(&samples, "ibwarden_logins_total"), 4.0);
    assert_eq!(one(&samples, "ibwarden_readies_total"), 3.0);
    let restarts: BTreeMap<String, f64> = find(&samples, "ibwarden_restarts_total")
        .into_iter()
        .map(|s| (s.labels["reason"].clone(), s.value))
        .collect();
    assert_eq!(restarts["crash"], 2.0);
    assert_eq!(restarts["daily \"restart\""], 1.0);
    assert_eq!(one(&samples, "ibwarden_login_budget_left"), 2.0);
    assert_eq!(
        one(&samples, "ibwarden_last_ready_time_seconds"),
        ready_at as f64 / 1000.0
    );
    assert_eq!(one(&samples, "ibwarden_probe_latency_seconds"), 0.0125);
    assert!(one(&samples, "process_resident_memory_bytes") > 1_000_000.0);
    assert!(one(&samples, "process_cpu_seconds_total") > 0.0);
    // The JVM's figures come from its pid (here: ours, read a moment apart).
    let (jvm, own) = (
        one(&samples, "ibwarden_gateway_resident_memory_bytes"),
        one(&samples, "process_resident_memory_bytes"),
    );
    assert!((jvm - own).abs() < own * 0.2, "jvm {jvm} vs own {own}");
    assert!(one(&samples, "ibwarden_gateway_cpu_seconds_total") > 0.0);
    assert!(one(&samples, "ibwarden_heartbeat_age_seconds") < 5.0);
    for name in [
        "ibwarden_logins_total",
        "ibwarden_readies_total",
        "ibwarden_restarts_total",
        "process_cpu_seconds_total",
    ] {
        assert_eq!(
            types.get(name).map(String::as_str),
            Some("counter"),
            "{name}"
        );
    }
    for name in [
        "ibwarden_state",
        "ibwarden_ready",
        "ibwarden_login_budget_left",
    ] {
        assert_eq!(types.get(name).map(String::as_str), Some("gauge"), "{name}");
    }

    // Before the first ready: no last-ready or latency series, state follows.
    update(&st, |s| {
        s.phase = "Halted".into();
        s.ready = false;
        s.last_ready_unix_ms = None;
        s.probe_latency_ms = None;
        s.restarts.clear();
        s.jvm_pid = None;
    });
    let r = get(addr, "/metrics").await;
    let (samples, _) = parse_prometheus(&r.body).unwrap_or_else(|e| panic!("{e}\n{}", r.body));
    assert!(find(&samples, "ibwarden_last_ready_time_seconds").is_empty());
    assert!(find(&samples, "ibwarden_probe_latency_seconds").is_empty());
    assert!(find(&samples, "ibwarden_gateway_resident_memory_bytes").is_empty());
    assert_eq!(one(&samples, "ibwarden_ready"), 0.0);
    let current: Vec<&str> = find(&samples, "ibwarden_state")
        .into_iter()
        .filter(|s| s.value == 1.0)
        .map(|s| s.labels["state"].as_str())
        .collect();
    assert_eq!(current, ["Halted"]);
}

// ------------------------------------------------------------------------ logs

#[tokio::test]
async fn non_loopback_listen_warns_loudly() {
    let logs = logcap::logs();
    let listener = health::bind("0.0.0.0:0".parse().expect("addr"))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let text = String::from_utf8_lossy(&logs.lock().expect("lock")).into_owned();
    let warn = text
        .lines()
        .find(|l| l.contains("WARN") && l.contains(&format!("0.0.0.0:{port}")))
        .unwrap_or_else(|| panic!("no warning in {text}"));
    assert!(warn.contains("non-loopback"), "{warn}");
    // Loopback binds do not warn.
    let lo = health::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let lo_port = lo.local_addr().expect("addr").port();
    let text = String::from_utf8_lossy(&logs.lock().expect("lock")).into_owned();
    assert!(!text
        .lines()
        .any(|l| l.contains("WARN") && l.contains(&format!("127.0.0.1:{lo_port}"))));
}

/// A reconnecting slowloris: 300 connections from the monitor's own address that send half a
/// request head and hold on, reconnecting as soon as they are closed. A monitor probing
/// `/readyz` meanwhile must still be answered within 1 s at least 95 % of the time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_stays_answered_under_a_reconnecting_slowloris() {
    let (addr, st) = start(HealthOptions::default()).await;
    update(&st, |s| {
        s.ready = true;
        s.phase = "Ready".into();
    });
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let holding = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut attackers = Vec::new();
    for _ in 0..300 {
        let stop = stop.clone();
        let holding = holding.clone();
        attackers.push(tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                    continue;
                };
                let _ = s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n").await;
                holding.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                // Hold the connection until the server closes it.
                let mut b = [0u8; 64];
                let _ = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await;
                holding.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
        }));
    }
    // The attack is in place first: all 300 hold a connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    while holding.load(std::sync::atomic::Ordering::SeqCst) < 300 {
        assert!(
            Instant::now() < deadline,
            "the attackers never all connected"
        );
        tokio::task::yield_now().await;
    }
    // Probe for 3 s: longer than the head deadline, so the attackers reconnect meanwhile.
    let mut answered = 0;
    let mut probes = 0;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        probes += 1;
        let t = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(1), async {
            let r = raw_opt(addr, "GET /readyz HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
            r.filter(|(code, _)| *code == 200)
        })
        .await;
        if matches!(r, Ok(Some(_))) && t.elapsed() <= Duration::from_secs(1) {
            answered += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for a in attackers {
        a.abort();
    }
    assert!(
        answered * 100 >= probes * 95,
        "{answered} of {probes} /readyz probes answered within 1 s under the slowloris"
    );
}

/// One exchange that may fail (under attack the server may close a connection).
async fn raw_opt(addr: SocketAddr, request: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(request.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.ok()?;
    let text = String::from_utf8(out).ok()?;
    let code = text.split(' ').nth(1)?.parse().ok()?;
    Some((code, text))
}
