//! `ibwarden status|restart|stop|totp-now|screenshot`: talk to the running instance over its
//! control socket (`control.socket` in the config, or `--socket`). See [`ibwarden::control`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use serde_json::Value;

use ibwarden::config::Config;
use ibwarden::control::{self, ControlReply, Request};

use super::ConfigArg;

/// Where the control socket is.
#[derive(Debug, Clone, clap::Args)]
pub struct SocketArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The control socket [default: control.socket from the config].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
}

impl SocketArgs {
    fn path(&self) -> anyhow::Result<PathBuf> {
        if let Some(p) = &self.socket {
            return Ok(p.clone());
        }
        let path = self.config.path()?;
        // No config file, but a running instance's socket where systemd (RuntimeDirectory=)
        // and the container image put it: `docker exec NAME ibwarden status` just works.
        if self.config.config.is_none() && self.config.instance.is_none() && !path.exists() {
            if let Some(dir) = std::env::var_os("RUNTIME_DIRECTORY").filter(|d| !d.is_empty()) {
                let sock = PathBuf::from(dir).join("control.sock");
                if sock.exists() {
                    return Ok(sock);
                }
            }
        }
        let config = Config::load(&path)?;
        Ok(config.control.socket)
    }
}

/// `ibwarden status` options.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    socket: SocketArgs,
    /// Print the raw status as JSON (one object).
    #[arg(long)]
    json: bool,
}

/// `ibwarden screenshot` options.
#[derive(Debug, clap::Args)]
pub struct ScreenshotArgs {
    #[command(flatten)]
    socket: SocketArgs,
    /// Where to write the PNG [default: ibwarden-<unix time>.png in the current directory].
    #[arg(long, short, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// `ibwarden inspect` options.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    #[command(flatten)]
    socket: SocketArgs,
    /// The directory to write to [default: ibwarden-inspect-<unix time> in the current
    /// directory].
    #[arg(long, short, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// `ibwarden inspect`.
pub fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let out = match args.out {
        Some(p) => p,
        None => PathBuf::from(format!("ibwarden-inspect-{}", now_ms() / 1000)),
    };
    let out = absolute(out)?;
    let (path, reply) = ask(&args.socket, &Request::Inspect { out })?;
    match reply {
        ControlReply::Inspected { files } => {
            for f in files {
                println!("{}", f.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        other => Err(unexpected(&path, &other)),
    }
}

fn ask(socket: &SocketArgs, req: &Request) -> anyhow::Result<(PathBuf, ControlReply)> {
    let path = socket.path()?;
    let reply = control::request(&path, req)?;
    if let ControlReply::Error { message } = &reply {
        bail!("{message}");
    }
    Ok((path, reply))
}

fn unexpected(path: &Path, reply: &ControlReply) -> anyhow::Error {
    anyhow::anyhow!("unexpected reply from {}: {reply:?}", path.display())
}

/// `ibwarden status`.
pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let (path, reply) = ask(&args.socket, &Request::Status)?;
    let ControlReply::Status { status } = reply else {
        return Err(unexpected(&path, &reply));
    };
    if args.json {
        println!("{}", serde_json::to_string(&status)?);
    } else {
        print!("{}", format_status(&status, now_ms()));
    }
    Ok(ExitCode::SUCCESS)
}

/// `ibwarden restart`.
pub fn restart(args: SocketArgs) -> anyhow::Result<ExitCode> {
    simple(&args, &Request::Restart)
}

/// `ibwarden stop`.
pub fn stop(args: SocketArgs) -> anyhow::Result<ExitCode> {
    simple(&args, &Request::Stop)
}

fn simple(args: &SocketArgs, req: &Request) -> anyhow::Result<ExitCode> {
    let (path, reply) = ask(args, req)?;
    match reply {
        ControlReply::Ok { message } => {
            println!("{message}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(unexpected(&path, &other)),
    }
}

/// `ibwarden totp-now`: the code the running instance would type now (first line) and how
/// long it stays valid (second line), like `ibwarden totp`.
pub fn totp_now(args: SocketArgs) -> anyhow::Result<ExitCode> {
    let (path, reply) = ask(&args, &Request::TotpNow)?;
    match reply {
        ControlReply::Totp { code, valid_secs } => {
            println!("{code}");
            println!("valid for {valid_secs} s");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(unexpected(&path, &other)),
    }
}

/// `ibwarden screenshot`.
pub fn screenshot(args: ScreenshotArgs) -> anyhow::Result<ExitCode> {
    let out = match args.out {
        Some(p) => p,
        None => PathBuf::from(format!("ibwarden-{}.png", now_ms() / 1000)),
    };
    let out = absolute(out)?;
    let (path, reply) = ask(&args.socket, &Request::Screenshot { out })?;
    match reply {
        ControlReply::Screenshot { path, bytes } => {
            println!("{} ({bytes} bytes)", path.display());
            Ok(ExitCode::SUCCESS)
        }
        other => Err(unexpected(&path, &other)),
    }
}

/// The server resolves paths in its own working directory: send an absolute one.
fn absolute(path: PathBuf) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path);
    }
    Ok(std::env::current_dir()
        .context("cannot read the current directory")?
        .join(path))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The status for people, one fact per line. Reads the snapshot as JSON so an older or newer
/// server still prints what both know.
pub fn format_status(s: &Value, now_ms: u64) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<14} {v}\n"));
    let str_of = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let u64_of = |k: &str| s.get(k).and_then(Value::as_u64);

    let instance = str_of("instance");
    if !instance.is_empty() {
        line("instance:", instance);
    }
    let ready = s.get("ready").and_then(Value::as_bool).unwrap_or(false);
    let phase = str_of("phase");
    line(
        "state:",
        if ready {
            format!("{phase} (ready)")
        } else {
            format!("{phase} (not ready)")
        },
    );
    let reason = str_of("reason");
    if !reason.is_empty() {
        let key = if ready { "doing:" } else { "waiting:" };
        line(key, reason);
    }
    if let Some(pid) = u64_of("jvm_pid") {
        line("gateway pid:", pid.to_string());
    }
    if let Some(started) = u64_of("started_unix_ms").filter(|&t| t > 0) {
        line(
            "uptime:",
            format!(
                "{} (since {})",
                human_duration(now_ms.saturating_sub(started) / 1000),
                when(started)
            ),
        );
    }
    match u64_of("last_ready_unix_ms") {
        Some(t) => line(
            "last ready:",
            format!(
                "{} ({} ago)",
                when(t),
                human_duration(now_ms.saturating_sub(t) / 1000)
            ),
        ),
        None => line("last ready:", "never".into()),
    }
    if let Some(ms) = s.get("probe_latency_ms").and_then(Value::as_f64) {
        line("api probe:", format!("{ms:.1} ms"));
    }
    line(
        "logins:",
        format!(
            "{} submitted, ready {} times",
            u64_of("logins").unwrap_or(0),
            u64_of("readies").unwrap_or(0)
        ),
    );
    if let Some(left) = u64_of("login_budget_left") {
        line(
            "login budget:",
            format!("{left} failed logins left this hour"),
        );
    }
    let restarts: Vec<String> = s
        .get("restarts")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|e| {
                    let pair = e.as_array()?;
                    Some(format!(
                        "{} ×{}",
                        pair.first()?.as_str()?,
                        pair.get(1)?.as_u64()?
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    line(
        "restarts:",
        if restarts.is_empty() {
            "none".into()
        } else {
            restarts.join(", ")
        },
    );
    let next = s.get("next_scheduled").and_then(|n| {
        Some((
            n.get("what")?.as_str()?.to_string(),
            n.get("at_unix_ms")?.as_u64()?,
        ))
    });
    match next {
        Some((name, at)) => line(
            "next planned:",
            format!(
                "{name} at {} (in {})",
                when(at),
                human_duration(at.saturating_sub(now_ms) / 1000)
            ),
        ),
        None => line("next planned:", "nothing scheduled".into()),
    }
    if let Some(cp) = s.get("client_portal").filter(|v| v.is_object()) {
        let flag = |k: &str| cp.get(k).and_then(Value::as_bool);
        let session = match (flag("authenticated"), flag("connected"), flag("competing")) {
            (None, _, _) => "no answer from the gateway's API yet".to_string(),
            (Some(a), c, comp) => {
                let mut words = vec![if a {
                    "authenticated"
                } else {
                    "not authenticated"
                }];
                words.push(if c == Some(true) {
                    "connected"
                } else {
                    "not connected"
                });
                if comp == Some(true) {
                    words.push("another session competes");
                }
                match cp.get("last_status_unix_ms").and_then(Value::as_u64) {
                    Some(t) => format!(
                        "{} ({} ago)",
                        words.join(", "),
                        human_duration(now_ms.saturating_sub(t) / 1000)
                    ),
                    None => words.join(", "),
                }
            }
        };
        line("session:", session);
        line(
            "last tickle:",
            match cp.get("last_tickle_unix_ms").and_then(Value::as_u64) {
                Some(t) => format!(
                    "{} ({} ago)",
                    when(t),
                    human_duration(now_ms.saturating_sub(t) / 1000)
                ),
                None => "none yet".into(),
            },
        );
        line(
            "reauth:",
            format!(
                "{} reauthenticate requests sent",
                cp.get("reauthentications")
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
            ),
        );
        line(
            "browser:",
            if flag("browser_open") == Some(true) {
                "open (a login is running)".into()
            } else {
                "closed".into()
            },
        );
    }
    if s.get("human_connected").and_then(Value::as_bool) == Some(true) {
        line(
            "display:",
            "a person is connected; ibwarden types nothing".into(),
        );
    }
    out
}

fn when(unix_ms: u64) -> String {
    let Ok(ts) = jiff::Timestamp::from_millisecond(i64::try_from(unix_ms).unwrap_or(i64::MAX))
    else {
        return format!("{unix_ms} ms");
    };
    let zoned = ts.to_zoned(jiff::tz::TimeZone::system());
    zoned.strftime("%Y-%m-%d %H:%M:%S %Z").to_string()
}

fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h {m}m")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_for_people() {
        let s = serde_json::json!({
            "instance": "live",
            "phase": "Backoff",
            "ready": false,
            "reason": "inside IBKR's maintenance window; next login at 00:23",
            "jvm_pid": null,
            "started_unix_ms": 1_000_000u64,
            "last_ready_unix_ms": 4_000_000u64,
            "logins": 3,
            "readies": 2,
            "restarts": [["jvm crashed", 1], ["daily restart", 2]],
            "login_budget_left": 1,
            "next_scheduled": {"what": "daily restart", "at_unix_ms": 7_600_000u64},
            "probe_latency_ms": null,
            "human_connected": false
        });
        let text = format_status(&s, 4_000_000);
        assert!(text.contains("Backoff (not ready)"), "{text}");
        assert!(
            text.contains("waiting:       inside IBKR's maintenance window"),
            "{text}"
        );
        assert!(text.contains("uptime:        50m 0s"), "{text}");
        assert!(text.contains("(0s ago)"), "{text}");
        assert!(text.contains("jvm crashed ×1, daily restart ×2"), "{text}");
        assert!(text.contains("1 failed logins left"), "{text}");
        assert!(text.contains("daily restart at"), "{text}");
        assert!(text.contains("(in 1h 0m)"), "{text}");
        assert!(!text.contains("gateway pid"), "{text}");
        assert!(
            !text.contains("last tickle"),
            "only for the Client Portal: {text}"
        );
    }

    #[test]
    fn client_portal_status_for_people() {
        let s = serde_json::json!({
            "phase": "Ready",
            "ready": true,
            "reason": "ready: authenticated and connected",
            "jvm_pid": 4242,
            "client_portal": {
                "authenticated": true,
                "connected": true,
                "competing": true,
                "last_status_unix_ms": 3_990_000u64,
                "last_tickle_unix_ms": 3_940_000u64,
                "reauthentications": 2,
                "browser_open": false
            }
        });
        let text = format_status(&s, 4_000_000);
        assert!(
            text.contains(
                "session:       authenticated, connected, another session competes (10s ago)"
            ),
            "{text}"
        );
        assert!(text.contains("(1m 0s ago)"), "{text}");
        assert!(
            text.contains("reauth:        2 reauthenticate requests sent"),
            "{text}"
        );
        assert!(text.contains("browser:       closed"), "{text}");
        let fresh = serde_json::json!({
            "phase": "LoggingIn",
            "client_portal": {"authenticated": null, "reauthentications": 0, "browser_open": true}
        });
        let text = format_status(&fresh, 4_000_000);
        assert!(
            text.contains("no answer from the gateway's API yet"),
            "{text}"
        );
        assert!(text.contains("last tickle:   none yet"), "{text}");
        assert!(text.contains("open (a login is running)"), "{text}");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(65), "1m 5s");
        assert_eq!(human_duration(3 * 3600 + 120), "3h 2m");
        assert_eq!(human_duration(2 * 86400 + 3600), "2d 1h 0m");
    }
}
