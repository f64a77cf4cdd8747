//! `ibwarden vnc`: asks the running instance to start a human-takeover VNC server on the
//! gateway's display (see [`ibwarden::takeover`]) and prints, to this terminal only, how to
//! reach it over SSH and the one-time password. `ibwarden vnc --stop` ends it early.
//!
//! Wire format on the control socket (one JSON line each way, like every other command):
//! `{"cmd":"vnc"}` → `{"reply":"vnc","port":N,"password":"..."}` (or
//! `{"reply":"error","message":"..."}`), and `{"cmd":"vnc-stop"}` → `{"reply":"ok",...}`.
//! These are the serde forms of the `Request::Vnc` / `Request::VncStop` /
//! `ControlReply::Vnc { port, password }` variants the control socket is to carry, so this
//! client works unchanged once the server side has them.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

use ibwarden::config::Config;
use ibwarden::control::{ControlError, MAX_LINE};
use ibwarden::secret::Secret;

use super::ConfigArg;

/// The client waits this long for the instance to start x11vnc and answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// `ibwarden vnc` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
    /// The control socket [default: control.socket from the config].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Stop the takeover server now (a connected viewer is cut off; typing resumes).
    #[arg(long)]
    stop: bool,
    /// The host name to show in the ssh command [default: this machine's host name].
    #[arg(long, value_name = "HOST")]
    ssh_host: Option<String>,
}

impl Args {
    fn socket_path(&self) -> anyhow::Result<PathBuf> {
        if let Some(p) = &self.socket {
            return Ok(p.clone());
        }
        let config = Config::load(&self.config.path()?)?;
        Ok(config.control.socket)
    }
}

/// `ibwarden vnc [--stop]`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path = args.socket_path()?;
    if args.stop {
        let reply = ask(&path, "vnc-stop")?;
        println!(
            "{}",
            reply
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("takeover server stopped")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let reply = ask(&path, "vnc")?;
    let port = reply
        .get("port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0);
    let password = reply
        .get("password")
        .and_then(Value::as_str)
        .map(|p| Secret::new(p.to_string()));
    let (Some(port), Some(password)) = (port, password) else {
        bail!(
            "unexpected reply from {}: no port or password in a {:?} reply",
            path.display(),
            reply.get("reply").and_then(Value::as_str).unwrap_or("?")
        );
    };
    let host = match args.ssh_host {
        Some(h) => h,
        None => nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "THIS-SERVER".into()),
    };
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::current())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "USER".into());
    print!("{}", instructions(&host, &user, port, &password));
    Ok(ExitCode::SUCCESS)
}

/// What the person reads: the tunnel, the viewer, the password, what happens next.
pub fn instructions(host: &str, user: &str, port: u16, password: &Secret) -> String {
    format!(
        "A VNC server shows the gateway's screen on 127.0.0.1:{port} of {host} (loopback only).\n\
         \n\
         1. From your computer, open an SSH tunnel (leave it running):\n\
         \x20     ssh -N -L {port}:127.0.0.1:{port} {user}@{host}\n\
         2. Point a VNC viewer at 127.0.0.1, port {port}:\n\
         \x20     vncviewer 127.0.0.1::{port}\n\
         3. Enter the one-time password (shown only here, never logged):\n\
         \x20     {pw}\n\
         \n\
         While you are connected ibwarden types nothing (`ibwarden status` says so); it\n\
         resumes when you disconnect, and the server and this password end then. Nobody\n\
         connecting within 10 minutes also ends it; `ibwarden vnc --stop` ends it now.\n",
        pw = password.expose()
    )
}

/// One request line, one reply line; an error reply becomes an error.
fn ask(path: &Path, cmd: &str) -> anyhow::Result<Value> {
    let mut stream = UnixStream::connect(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ControlError::NotRunning {
                path: path.to_path_buf(),
            }
        }
        std::io::ErrorKind::PermissionDenied => ControlError::PermissionDenied {
            path: path.to_path_buf(),
        },
        _ => ControlError::Io {
            about: "cannot connect to",
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .with_context(|| format!("cannot configure the connection to {}", path.display()))?;
    let line = serde_json::json!({ "cmd": cmd }).to_string() + "\n";
    // A server that refused us may close before reading; its reply line is still there.
    let _ = stream.write_all(line.as_bytes());
    let mut reply = String::new();
    BufReader::new(stream.take(MAX_LINE))
        .read_line(&mut reply)
        .with_context(|| format!("cannot read the reply from {}", path.display()))?;
    if reply.trim().is_empty() {
        return Err(ControlError::NoReply {
            path: path.to_path_buf(),
        }
        .into());
    }
    let v: Value = serde_json::from_str(reply.trim()).map_err(|e| ControlError::BadReply {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    match v.get("reply").and_then(Value::as_str) {
        Some("error") => bail!(
            "{}",
            v.get("message")
                .and_then(Value::as_str)
                .unwrap_or("the instance refused")
        ),
        // An instance without takeover support rejects the unknown command.
        None => bail!("unexpected reply from {}", path.display()),
        Some(_) => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn instructions_name_the_tunnel_the_port_and_the_password() {
        let pw = Secret::new("k3Xm9PqR".into());
        let text = instructions("gw1.example", "trader", 41234, &pw);
        assert!(text.contains("ssh -N -L 41234:127.0.0.1:41234 trader@gw1.example"));
        assert!(text.contains("vncviewer 127.0.0.1::41234"));
        assert!(text.contains("      k3Xm9PqR\n"));
        assert!(text.contains("types nothing"));
    }

    /// A one-shot fake instance: checks the request line, answers `reply`.
    fn fake_server(reply: &'static str, want_cmd: &'static str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("control.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line).expect("read");
            let v: Value = serde_json::from_str(line.trim()).expect("json");
            assert_eq!(v["cmd"], want_cmd);
            s.write_all(reply.as_bytes()).expect("write");
        });
        (dir, path)
    }

    #[test]
    fn asks_over_the_socket_and_reads_port_and_password() {
        let (_d, path) = fake_server(
            "{\"reply\":\"vnc\",\"port\":41234,\"password\":\"k3Xm9PqR\"}\n",
            "vnc",
        );
        let v = ask(&path, "vnc").expect("reply");
        assert_eq!(v["port"], 41234);
        assert_eq!(v["password"], "k3Xm9PqR");
    }

    #[test]
    fn an_error_reply_is_an_error_with_its_message() {
        let (_d, path) = fake_server(
            "{\"reply\":\"error\",\"message\":\"x11vnc not found on PATH: install the Debian package x11vnc\"}\n",
            "vnc-stop",
        );
        let e = ask(&path, "vnc-stop").expect_err("error");
        assert!(e.to_string().contains("install the Debian package x11vnc"));
    }

    #[test]
    fn no_instance_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = ask(&dir.path().join("nope.sock"), "vnc").expect_err("not running");
        assert!(e.to_string().contains("is `ibwarden run` started?"), "{e}");
    }
}
