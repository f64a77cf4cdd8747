//! Notifications against the real things: a session D-Bus with dunst (under Xvfb) for the
//! desktop channel, a local HTTP server for the webhook presets, a script for the command
//! hook. Logs are captured by a global tracing subscriber; each test filters them by its own
//! instance name.

mod common;

mod logcap;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ibwarden::config::{NotifyConfig, WebhookPreset};
use ibwarden::core::{NoticeKind, Severity};
use ibwarden::notify::{Notifier, Tuning};

// ------------------------------------------------------------------------ log capture

/// Captured log lines mentioning `instance=<name>`.
fn log_lines(instance: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(&logcap::logs().lock().expect("log lock")).into_owned();
    let plain = format!("instance={instance} ");
    let quoted = format!("instance=\"{instance}\"");
    text.lines()
        .filter(|l| {
            l.contains(&plain) || l.contains(&quoted) || l.ends_with(&plain[..plain.len() - 1])
        })
        .map(str::to_string)
        .collect()
}

fn all_logs() -> String {
    String::from_utf8_lossy(&logcap::logs().lock().expect("log lock")).into_owned()
}

fn config() -> NotifyConfig {
    NotifyConfig {
        desktop: false,
        desktop_user: None,
        command: None,
        webhook_url_file: None,
        webhook_preset: WebhookPreset::Generic,
        telegram_chat_id: None,
    }
}

/// Polls `f` every 20 ms until it returns Some or the deadline passes.
fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ------------------------------------------------------------------------ D-Bus + dunst

/// A session bus started with `dbus-daemon --fork`; killed on drop.
struct Bus {
    address: String,
    pid: i32,
    /// The bus owner (None: us); only the owner may connect.
    user: Option<String>,
}

impl Bus {
    /// Starts a session bus listening on `socket`, as `user` (None: as us). Its config has
    /// no service directories, so nothing is D-Bus-activated behind the test's back.
    fn start(socket: &Path, user: Option<&str>) -> Bus {
        common::require_tool("dbus-daemon", "dbus");
        let conf = socket.with_extension("conf");
        fs::write(
            &conf,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" \
                 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
                 <busconfig><type>session</type><listen>unix:path={}</listen><auth>EXTERNAL</auth>\
                 <policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/>\
                 <allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>\n",
                socket.display()
            ),
        )
        .expect("write bus config");
        fs::set_permissions(&conf, fs::Permissions::from_mode(0o644)).expect("chmod");
        let mut cmd = match user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--", "dbus-daemon"]);
                c
            }
            None => Command::new("dbus-daemon"),
        };
        let out = cmd
            .arg(format!("--config-file={}", conf.display()))
            .args([
                "--fork",
                "--nopidfile",
                "--print-address=1",
                "--print-pid=1",
            ])
            .arg(format!("--address=unix:path={}", socket.display()))
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .expect("run dbus-daemon");
        assert!(out.status.success(), "dbus-daemon failed: {}", out.status);
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let address = lines.next().expect("address line").trim().to_string();
        let pid = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("pid line");
        Bus {
            address,
            pid,
            user: user.map(str::to_string),
        }
    }

    /// `dbus-send` as the bus owner (or as `as_us`: as this process).
    fn dbus_send(&self, as_us: bool, args: &[&str]) -> std::process::Output {
        let mut cmd = match (&self.user, as_us) {
            (Some(u), false) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--", "dbus-send"]);
                c
            }
            _ => Command::new("dbus-send"),
        };
        cmd.arg(format!("--bus={}", self.address))
            .args(args)
            .output()
            .expect("run dbus-send")
    }

    /// True once `name` has an owner on the bus.
    fn has_owner(&self, name: &str) -> bool {
        let out = self.dbus_send(
            false,
            &[
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                &format!("string:{name}"),
            ],
        );
        String::from_utf8_lossy(&out.stdout).contains("boolean true")
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

/// dunst on `xvfb` and `bus`, with a rule that runs `record.sh` for every notification from
/// ibwarden; the script appends DUNST_* to `record`.
struct Dunst {
    _guard: common::ChildGuard,
    record: PathBuf,
}

impl Dunst {
    fn start(display: &str, xauthority: &Path, bus: &Bus, dir: &Path, user: Option<&str>) -> Dunst {
        common::require_tool("dunst", "dunst");
        let record = dir.join("record");
        let script = dir.join("record.sh");
        fs::write(
            &script,
            format!(
                "#!/bin/sh\nprintf '%s|%s|%s|%s\\n' \"$DUNST_APP_NAME\" \"$DUNST_URGENCY\" \
                 \"$DUNST_SUMMARY\" \"$DUNST_BODY\" >> {}\n",
                record.display()
            ),
        )
        .expect("write script");
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
        let rc = dir.join("dunstrc");
        fs::write(
            &rc,
            format!(
                "[global]\n    always_run_script = true\n\n[record]\n    appname = ibwarden\n    \
                 script = {}\n",
                script.display()
            ),
        )
        .expect("write dunstrc");
        let mut cmd = match user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--", "dunst"]);
                c
            }
            None => Command::new("dunst"),
        };
        cmd.arg("-config")
            .arg(&rc)
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .env("HOME", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .env("DISPLAY", display)
            .env("XAUTHORITY", xauthority);
        let guard = common::ChildGuard::spawn("dunst", &mut cmd);
        wait_for(
            "dunst to own org.freedesktop.Notifications",
            Duration::from_secs(10),
            || bus.has_owner("org.freedesktop.Notifications").then_some(()),
        );
        Dunst {
            _guard: guard,
            record,
        }
    }

    fn wait_record(&self, n: usize) -> Vec<String> {
        wait_for(
            "dunst to run the record script",
            Duration::from_secs(10),
            || {
                let text = fs::read_to_string(&self.record).ok()?;
                let lines: Vec<String> = text.lines().map(str::to_string).collect();
                (lines.len() >= n).then_some(lines)
            },
        )
    }
}

#[tokio::test]
async fn desktop_notification_reaches_dunst() {
    logcap::logs();
    let xvfb = common::Xvfb::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = Bus::start(&dir.path().join("bus"), None);
    let dunst = Dunst::start(&xvfb.display, &xvfb.xauthority, &bus, dir.path(), None);

    let mut cfg = config();
    cfg.desktop = true;
    let tuning = Tuning {
        desktop_bus_address: Some(bus.address.clone()),
        ..Tuning::default()
    };
    let n = Notifier::with_tuning(&cfg, "desk1", tuning);
    assert_eq!(n.channels(), ["desktop"]);
    assert!(n.notify(
        NoticeKind::LoginFailed,
        Severity::Critical,
        "IBKR rejected the username or password. Fix the secret and run ibwarden restart."
    ));
    assert!(n.flush(Duration::from_secs(10)).await, "send finished");
    let lines = dunst.wait_record(1);
    assert_eq!(
        lines[0],
        "ibwarden|CRITICAL|ibwarden desk1: login failed|IBKR rejected the username or \
         password. Fix the secret and run ibwarden restart."
    );
    // Still active: not told again; recovery is told, at low urgency.
    assert!(!n.notify(NoticeKind::LoginFailed, Severity::Critical, "again"));
    // The gateway became ready: the driver calls ready(); the core's own Recovered that
    // may follow is then no news.
    assert!(n.ready());
    assert!(!n.notify(NoticeKind::Recovered, Severity::Info, "again"));
    assert!(n.flush(Duration::from_secs(10)).await);
    let lines = dunst.wait_record(2);
    assert_eq!(
        lines[1],
        "ibwarden|LOW|ibwarden desk1: recovered|The gateway is logged in and its API answers. \
         (cleared: login failed)"
    );
    assert_eq!(n.stats().desktop.counts(), (2, 0, 0));
    assert_eq!(lines.len(), 2, "{lines:?}");
}

/// As root, with `desktop_user`: the bus belongs to another user (who alone may connect);
/// the notifier connects with that user's uid.
#[tokio::test]
async fn desktop_notification_to_another_users_bus() {
    logcap::logs();
    if !nix::unistd::geteuid().is_root() {
        panic!("this test needs root (it starts a bus as user nobody)");
    }
    let xvfb = common::Xvfb::start();
    let dir = tempfile::tempdir().expect("tempdir");
    // nobody must reach its bus socket, the Xauthority and the record file.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod dir");
    let xauth = dir.path().join("Xauthority");
    fs::copy(&xvfb.xauthority, &xauth).expect("copy Xauthority");
    fs::set_permissions(&xauth, fs::Permissions::from_mode(0o644)).expect("chmod");
    let bus = Bus::start(&dir.path().join("bus"), Some("nobody"));
    let dunst = Dunst::start(&xvfb.display, &xauth, &bus, dir.path(), Some("nobody"));

    // Root itself is refused by a bus owned by nobody: that is why the uid switch exists.
    let as_root = bus.dbus_send(
        true,
        &[
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.ListNames",
        ],
    );
    assert!(
        !as_root.status.success(),
        "root should not be allowed on nobody's session bus"
    );

    let mut cfg = config();
    cfg.desktop = true;
    cfg.desktop_user = Some("nobody".into());
    let tuning = Tuning {
        desktop_bus_address: Some(bus.address.clone()),
        ..Tuning::default()
    };
    let n = Notifier::with_tuning(&cfg, "desk2", tuning);
    assert!(n.notify(
        NoticeKind::HumanApproval,
        Severity::Critical,
        "Approve on your phone."
    ));
    assert!(n.flush(Duration::from_secs(10)).await);
    let lines = dunst.wait_record(1);
    assert_eq!(
        lines[0],
        "ibwarden|CRITICAL|ibwarden desk2: approve the login on your phone|Approve on your phone."
    );
    // The switch was confined to a throw-away thread: we are still root.
    assert!(nix::unistd::geteuid().is_root());
    assert_eq!(n.stats().desktop.counts(), (1, 0, 0));
}

#[tokio::test]
async fn no_bus_is_one_warning_and_no_failure() {
    logcap::logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config();
    cfg.desktop = true;
    let tuning = Tuning {
        desktop_bus_address: Some(format!("unix:path={}", dir.path().join("none").display())),
        ..Tuning::default()
    };
    let n = Notifier::with_tuning(&cfg, "nobus", tuning);
    let started = Instant::now();
    assert!(n.notify(NoticeKind::LoginFailed, Severity::Critical, "a"));
    assert!(n.notify(NoticeKind::Crash, Severity::Warning, "b"));
    assert!(n.notify(NoticeKind::CodeRejected, Severity::Critical, "c"));
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "notify must not block"
    );
    assert!(n.flush(Duration::from_secs(10)).await);
    assert_eq!(n.stats().desktop.counts(), (0, 3, 0));
    let warns: Vec<String> = log_lines("nobus")
        .into_iter()
        .filter(|l| l.contains(" WARN "))
        .collect();
    assert_eq!(warns.len(), 1, "exactly one warning: {warns:#?}");
    assert!(warns[0].contains("channel=\"desktop\"") || warns[0].contains("channel=desktop"));
    assert!(warns[0].contains("no session bus"), "{}", warns[0]);

    // A bus with no notification daemon: the same, one warning per channel.
    let bus = Bus::start(&dir.path().join("bus"), None);
    let tuning = Tuning {
        desktop_bus_address: Some(bus.address.clone()),
        ..Tuning::default()
    };
    let n = Notifier::with_tuning(&cfg, "nodaemon", tuning);
    assert!(n.notify(NoticeKind::LoginFailed, Severity::Critical, "a"));
    assert!(n.notify(NoticeKind::Crash, Severity::Warning, "b"));
    assert!(n.flush(Duration::from_secs(10)).await);
    assert_eq!(n.stats().desktop.counts(), (0, 2, 0));
    let warns: Vec<String> = log_lines("nodaemon")
        .into_iter()
        .filter(|l| l.contains(" WARN "))
        .collect();
    assert_eq!(warns.len(), 1, "exactly one warning: {warns:#?}");
    assert!(
        warns[0].contains("org.freedesktop.Notifications"),
        "{}",
        warns[0]
    );
}

// ------------------------------------------------------------------------ webhook

#[derive(Clone, Debug)]
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the test server does with the n-th request.
#[derive(Clone, Copy, Debug)]
enum Reply {
    Status(u16),
    /// Read the request, then never answer (and keep the connection open).
    Hang,
}

/// A local HTTP/1.1 server on a std thread: records requests, answers per a script (the
/// last entry repeats).
struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<(Instant, Request)>>>,
}

impl Server {
    fn start(script: Vec<Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            for (i, conn) in listener.incoming().enumerate() {
                let Ok(mut conn) = conn else { continue };
                let Some(req) = read_request(&mut conn) else {
                    continue;
                };
                recorded.lock().expect("lock").push((Instant::now(), req));
                match script[i.min(script.len() - 1)] {
                    Reply::Status(code) => {
                        let body = if code == 200 {
                            "{\"ok\":true}"
                        } else {
                            "error"
                        };
                        let _ = write!(
                            conn,
                            "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Reply::Hang => held.push(conn),
                }
            }
        });
        Server { port, requests }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    fn times(&self) -> Vec<Instant> {
        self.requests
            .lock()
            .expect("lock")
            .iter()
            .map(|(t, _)| *t)
            .collect()
    }
}

fn read_request(conn: &mut TcpStream) -> Option<Request> {
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut r = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().expect("content-length"))
        .expect("the client sends Content-Length");
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
        body: String::from_utf8(body).expect("utf-8 body"),
    })
}

/// The token every webhook URL in these tests carries; it must never be logged.
const TOKEN: &str = "123456:TOPSECRET-token";

fn webhook_config(dir: &Path, url: &str, preset: WebhookPreset) -> NotifyConfig {
    let file = dir.join("webhook-url");
    fs::write(&file, format!("{url}\n")).expect("write url");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).expect("chmod");
    let mut cfg = config();
    cfg.webhook_url_file = Some(file);
    cfg.webhook_preset = preset;
    cfg
}

fn fast() -> Tuning {
    Tuning {
        webhook_connect_timeout: Duration::from_millis(500),
        webhook_total_timeout: Duration::from_millis(800),
        webhook_backoff: vec![Duration::from_millis(100), Duration::from_millis(200)],
        ..Tuning::default()
    }
}

#[tokio::test]
async fn webhook_presets_send_body_and_headers() {
    logcap::logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(vec![Reply::Status(200)]);
    let base = format!("http://127.0.0.1:{}", server.port);
    let msg = "IBKR rejected the username or password. Fix it and run `ibwarden restart`.";

    // ntfy: text body, Title/Priority/Tags headers.
    let cfg = webhook_config(
        dir.path(),
        &format!("{base}/ibw-{TOKEN}"),
        WebhookPreset::Ntfy,
    );
    let n = Notifier::with_tuning(&cfg, "hook-ntfy", fast());
    assert_eq!(n.channels(), ["webhook"]);
    assert!(n.notify(NoticeKind::LoginFailed, Severity::Critical, msg));
    assert!(n.flush(Duration::from_secs(10)).await);
    let r = server.requests().pop().expect("one request");
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, format!("/ibw-{TOKEN}"));
    assert_eq!(r.body, msg);
    assert_eq!(r.header("Title"), Some("ibwarden hook-ntfy: login failed"));
    assert_eq!(r.header("Priority"), Some("5"));
    assert_eq!(
        r.header("Tags"),
        Some("rotating_light,ibwarden,login_failed")
    );
    assert!(r
        .header("Content-Type")
        .unwrap_or_default()
        .starts_with("text/plain"));

    // Telegram: /bot<token>/sendMessage with {chat_id, text}; the base URL is completed.
    let mut cfg = webhook_config(
        dir.path(),
        &format!("{base}/bot{TOKEN}"),
        WebhookPreset::Telegram,
    );
    cfg.telegram_chat_id = Some("-1001234".into());
    let n = Notifier::with_tuning(&cfg, "hook-tg", fast());
    assert!(n.notify(NoticeKind::Crash, Severity::Warning, "The JVM crashed."));
    assert!(n.flush(Duration::from_secs(10)).await);
    let r = server.requests().pop().expect("request");
    assert_eq!(r.path, format!("/bot{TOKEN}/sendMessage"));
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(
        v,
        serde_json::json!({"chat_id": -1001234, "text": "ibwarden hook-tg: gateway crashed\nThe JVM crashed."})
    );

    // Slack-style: {text}.
    let cfg = webhook_config(
        dir.path(),
        &format!("{base}/services/{TOKEN}"),
        WebhookPreset::Slack,
    );
    let n = Notifier::with_tuning(&cfg, "hook-slack", fast());
    assert!(n.notify(
        NoticeKind::PasswordExpiring,
        Severity::Warning,
        "Change it."
    ));
    assert!(n.flush(Duration::from_secs(10)).await);
    let r = server.requests().pop().expect("request");
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(
        v,
        serde_json::json!({"text": "ibwarden hook-slack: IBKR password expires soon\nChange it."})
    );

    // Generic: every field.
    let cfg = webhook_config(
        dir.path(),
        &format!("{base}/generic?t={TOKEN}"),
        WebhookPreset::Generic,
    );
    let n = Notifier::with_tuning(&cfg, "hook-gen", fast());
    assert!(n.notify(
        NoticeKind::UnknownDialog,
        Severity::Warning,
        "A dialog titled X."
    ));
    assert!(n.flush(Duration::from_secs(10)).await);
    let r = server.requests().pop().expect("request");
    assert_eq!(r.path, format!("/generic?t={TOKEN}"));
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(v["instance"], "hook-gen");
    assert_eq!(v["kind"], "unknown_dialog");
    assert_eq!(v["severity"], "warning");
    assert_eq!(v["message"], "A dialog titled X.");
    assert_eq!(server.requests().len(), 4);
    assert!(
        !all_logs().contains("TOPSECRET"),
        "the URL's token was logged"
    );
}

#[tokio::test]
async fn webhook_retries_on_500_not_on_400() {
    logcap::logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(vec![
        Reply::Status(500),
        Reply::Status(502),
        Reply::Status(200),
    ]);
    let url = format!("http://127.0.0.1:{}/{TOKEN}", server.port);
    let cfg = webhook_config(dir.path(), &url, WebhookPreset::Generic);
    let n = Notifier::with_tuning(&cfg, "hook-retry", fast());
    assert!(n.notify(NoticeKind::Crash, Severity::Warning, "crash"));
    assert!(n.flush(Duration::from_secs(10)).await);
    assert_eq!(server.requests().len(), 3, "500, 502, then 200");
    let t = server.times();
    assert!(t[1] - t[0] >= Duration::from_millis(100), "first backoff");
    assert!(t[2] - t[1] >= Duration::from_millis(200), "second backoff");
    assert_eq!(n.stats().webhook.counts(), (1, 0, 0));
    assert!(log_lines("hook-retry")
        .iter()
        .all(|l| !l.contains(" WARN ")));

    // 404: a client error is not retried.
    let server = Server::start(vec![Reply::Status(404)]);
    let url = format!("http://127.0.0.1:{}/{TOKEN}", server.port);
    let cfg = webhook_config(dir.path(), &url, WebhookPreset::Generic);
    let n = Notifier::with_tuning(&cfg, "hook-404", fast());
    assert!(n.notify(NoticeKind::Crash, Severity::Warning, "crash"));
    assert!(n.flush(Duration::from_secs(10)).await);
    assert_eq!(server.requests().len(), 1);
    assert_eq!(n.stats().webhook.counts(), (0, 1, 0));
    let warns: Vec<String> = log_lines("hook-404")
        .into_iter()
        .filter(|l| l.contains(" WARN "))
        .collect();
    assert_eq!(warns.len(), 1, "{warns:#?}");
    assert!(warns[0].contains("http status 404"), "{}", warns[0]);
    assert!(
        warns[0].contains("http://127.0.0.1"),
        "origin logged: {}",
        warns[0]
    );

    // 503 every time: 3 tries, then one failure.
    let server = Server::start(vec![Reply::Status(503)]);
    let url = format!("http://127.0.0.1:{}/{TOKEN}", server.port);
    let cfg = webhook_config(dir.path(), &url, WebhookPreset::Generic);
    let n = Notifier::with_tuning(&cfg, "hook-503", fast());
    assert!(n.notify(NoticeKind::Crash, Severity::Warning, "crash"));
    assert!(n.flush(Duration::from_secs(10)).await);
    assert_eq!(server.requests().len(), 3);
    assert_eq!(n.stats().webhook.counts(), (0, 1, 0));
    assert!(
        !all_logs().contains("TOPSECRET"),
        "the URL's token was logged"
    );
}

#[tokio::test]
async fn webhook_gives_up_on_a_server_that_never_answers() {
    logcap::logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(vec![Reply::Hang]);
    let url = format!("http://127.0.0.1:{}/{TOKEN}", server.port);
    let cfg = webhook_config(dir.path(), &url, WebhookPreset::Slack);
    let tuning = fast();
    let n = Notifier::with_tuning(&cfg, "hook-hang", tuning.clone());
    let started = Instant::now();
    assert!(n.notify(NoticeKind::RestartLoop, Severity::Warning, "loop"));
    assert!(n.flush(Duration::from_secs(20)).await, "gave up");
    let took = started.elapsed();
    // 3 tries of at most the total timeout each, plus the backoffs, plus slack.
    let bound = tuning.webhook_total_timeout * 3 + Duration::from_millis(300 + 1500);
    assert!(took < bound, "took {took:?}, bound {bound:?}");
    assert!(
        took >= tuning.webhook_total_timeout * 3,
        "took {took:?}: did it wait at all?"
    );
    assert_eq!(server.requests().len(), 3, "a timeout is retried");
    assert_eq!(n.stats().webhook.counts(), (0, 1, 0));
    let warns: Vec<String> = log_lines("hook-hang")
        .into_iter()
        .filter(|l| l.contains(" WARN "))
        .collect();
    assert_eq!(warns.len(), 1, "{warns:#?}");
    assert!(
        !all_logs().contains("TOPSECRET"),
        "the URL's token was logged"
    );
}

#[test]
fn webhook_defaults_match_the_spec() {
    let t = Tuning::default();
    assert_eq!(t.webhook_connect_timeout, Duration::from_secs(5));
    assert_eq!(t.webhook_total_timeout, Duration::from_secs(10));
    assert_eq!(
        t.webhook_backoff,
        [Duration::from_secs(1), Duration::from_secs(2)],
        "3 tries"
    );
}

#[tokio::test]
async fn webhook_refuses_plain_http_to_remote_hosts_without_logging_the_url() {
    logcap::logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = webhook_config(
        dir.path(),
        &format!("http://ntfy.example.com/{TOKEN}"),
        WebhookPreset::Ntfy,
    );
    let n = Notifier::with_tuning(&cfg, "hook-insecure", fast());
    assert!(n.channels().is_empty());
    let lines = log_lines("hook-insecure");
    assert!(
        lines.iter().any(|l| l.contains("ERROR")
            && l.contains("http://ntfy.example.com")
            && l.contains("use https")),
        "{lines:#?}"
    );
    // A URL file readable by others is refused like any secret file.
    let file = dir.path().join("open-url");
    fs::write(&file, format!("https://ntfy.example.com/{TOKEN}")).expect("write");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut cfg = config();
    cfg.webhook_url_file = Some(file);
    let n = Notifier::with_tuning(&cfg, "hook-open", fast());
    assert!(n.channels().is_empty());
    assert!(log_lines("hook-open")
        .iter()
        .any(|l| l.contains("chmod 600")));
    assert!(
        !all_logs().contains("TOPSECRET"),
        "the URL's token was logged"
    );
}

// ------------------------------------------------------------------------ command hook

fn hook_script(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("hook.sh");
    fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write hook");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
    p
}

#[tokio::test]
async fn command_hook_gets_argv_and_env_and_nothing_else() {
    logcap::logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("calls");
    let script = hook_script(
        dir.path(),
        &format!(
            "n=$(ls {d} | grep -c '^call'); mkdir {d}/call$n; \
             for a in \"$@\"; do printf '%s\\n' \"$a\"; done > {d}/call$n/argv; \
             env > {d}/call$n/env; \
             if [ -t 0 ] || read -r x; then echo stdin-not-null > {d}/call$n/stdin; fi",
            d = out.display()
        ),
    );
    fs::create_dir(&out).expect("mkdir");
    let mut cfg = config();
    cfg.command = Some(vec![script.display().to_string(), "--urgent".into()]);
    let n = Notifier::with_tuning(&cfg, "cmd1", fast());
    assert_eq!(n.channels(), ["command"]);
    let msg = "IBKR rejected the username or password.\nRun `ibwarden restart` after fixing it.";
    assert!(n.notify(NoticeKind::LoginFailed, Severity::Critical, msg));
    assert!(
        !n.notify(NoticeKind::LoginFailed, Severity::Critical, msg),
        "deduplicated"
    );
    assert!(n.notify(NoticeKind::Recovered, Severity::Info, "Ready again."));
    assert!(n.flush(Duration::from_secs(10)).await);
    assert_eq!(n.stats().command.counts(), (2, 0, 0));

    let argv = fs::read_to_string(out.join("call0/argv")).expect("argv");
    assert_eq!(
        argv,
        format!("--urgent\nlogin_failed\ncritical\n{msg}\n"),
        "fixed args, then kind, severity, message"
    );
    let env = fs::read_to_string(out.join("call0/env")).expect("env");
    let vars: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .filter(|k| {
            k.chars()
                .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
        })
        .collect();
    for v in [
        "IBWARDEN_EVENT",
        "IBWARDEN_SEVERITY",
        "IBWARDEN_MESSAGE",
        "IBWARDEN_INSTANCE",
    ] {
        assert!(vars.contains(&v), "{v} missing: {env}");
    }
    assert!(env.contains("IBWARDEN_EVENT=login_failed\n"));
    assert!(env.contains("IBWARDEN_SEVERITY=critical\n"));
    assert!(env.contains("IBWARDEN_INSTANCE=cmd1\n"));
    // Only an allowlist of the parent's environment passes (secrets live in env vars too).
    let allowed = [
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LC_ALL",
        "TZ",
        "XDG_RUNTIME_DIR",
        "DBUS_SESSION_BUS_ADDRESS",
        "PWD",
        "SHLVL",
        "_",
        "OLDPWD",
    ];
    for v in &vars {
        assert!(
            v.starts_with("IBWARDEN_") || allowed.contains(v),
            "unexpected variable {v} reached the hook"
        );
    }
    assert!(!out.join("call0/stdin").exists(), "stdin must be null");

    let argv = fs::read_to_string(out.join("call1/argv")).expect("second call");
    let lines: Vec<&str> = argv.lines().collect();
    assert_eq!(lines[1], "recovered");
    assert_eq!(lines[2], "info");
    assert!(
        lines[3].starts_with("Ready again. (cleared: login failed)"),
        "{argv}"
    );
    assert!(!out.join("call2").exists(), "exactly two calls");
}

#[tokio::test]
async fn command_hook_timeout_kills_the_group_and_failures_warn_once() {
    logcap::logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let pids = dir.path().join("pids");
    let script = hook_script(
        dir.path(),
        &format!("sleep 60 & echo $! >> {}; wait", pids.display()),
    );
    let mut cfg = config();
    cfg.command = Some(vec![script.display().to_string()]);
    let tuning = Tuning {
        command_timeout: Duration::from_millis(500),
        ..fast()
    };
    let n = Notifier::with_tuning(&cfg, "cmd-slow", tuning);
    let started = Instant::now();
    assert!(n.notify(NoticeKind::Crash, Severity::Warning, "crash"));
    assert!(n.flush(Duration::from_secs(10)).await);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(n.stats().command.counts(), (0, 1, 0));
    let pid: u32 = fs::read_to_string(&pids)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    wait_for(
        "the hook's child to be killed",
        Duration::from_secs(5),
        || {
            // Gone, or a zombie waiting for its (also killed) parent's reaper.
            (!ibwarden::procfs::is_alive(pid)).then_some(())
        },
    );

    // A failing hook: one warning with its stderr, then debug lines only.
    let script = hook_script(dir.path(), "echo 'pager is down' >&2; exit 3");
    let mut cfg = config();
    cfg.command = Some(vec![script.display().to_string()]);
    let n = Notifier::with_tuning(&cfg, "cmd-fail", fast());
    assert!(n.notify(NoticeKind::Crash, Severity::Warning, "crash"));
    assert!(n.notify(NoticeKind::LoginFailed, Severity::Critical, "bad password"));
    assert!(n.flush(Duration::from_secs(10)).await);
    assert_eq!(n.stats().command.counts(), (0, 2, 0));
    let warns: Vec<String> = log_lines("cmd-fail")
        .into_iter()
        .filter(|l| l.contains(" WARN "))
        .collect();
    assert_eq!(warns.len(), 1, "{warns:#?}");
    assert!(
        warns[0].contains("exit status: 3") && warns[0].contains("pager is down"),
        "{}",
        warns[0]
    );

    // A program that does not exist is a failure too, never a panic.
    let mut cfg = config();
    cfg.command = Some(vec!["/nonexistent/ibwarden-hook".into()]);
    let n = Notifier::with_tuning(&cfg, "cmd-missing", fast());
    assert!(n.notify(NoticeKind::Crash, Severity::Warning, "crash"));
    assert!(n.flush(Duration::from_secs(10)).await);
    assert_eq!(n.stats().command.counts(), (0, 1, 0));
}

#[tokio::test]
async fn all_channels_together_and_a_full_queue_drops_without_blocking() {
    logcap::logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(vec![Reply::Status(200)]);
    let mut cfg = webhook_config(
        dir.path(),
        &format!("http://127.0.0.1:{}/{TOKEN}", server.port),
        WebhookPreset::Generic,
    );
    let calls = dir.path().join("calls");
    let script = hook_script(
        dir.path(),
        &format!("echo \"$IBWARDEN_EVENT\" >> {}", calls.display()),
    );
    cfg.command = Some(vec![script.display().to_string()]);
    cfg.desktop = true;
    let tuning = Tuning {
        desktop_bus_address: Some(format!("unix:path={}", dir.path().join("none").display())),
        ..fast()
    };
    let n = Notifier::with_tuning(&cfg, "all", tuning);
    assert_eq!(n.channels(), ["desktop", "command", "webhook"]);
    // Many distinct unknown dialogs at once: more than a queue holds.
    let started = Instant::now();
    for i in 0..100 {
        assert!(n.notify(
            NoticeKind::UnknownDialog,
            Severity::Warning,
            &format!("dialog {i}")
        ));
    }
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "notify must not block"
    );
    assert!(n.flush(Duration::from_secs(30)).await);
    let (sent, failed, dropped) = n.stats().command.counts();
    assert_eq!(sent + failed + dropped, 100);
    assert!(dropped > 0, "a queue of 32 must overflow with 100 events");
    assert_eq!(failed, 0);
    let lines = fs::read_to_string(&calls).expect("calls");
    assert_eq!(lines.lines().count() as u64, sent);
    let (wsent, _, wdropped) = n.stats().webhook.counts();
    assert_eq!(server.requests().len() as u64, wsent);
    assert_eq!(wsent + wdropped, 100);
    assert_eq!(n.stats().desktop.counts().0, 0);
}
