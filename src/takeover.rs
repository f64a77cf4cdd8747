//! Human takeover: `x11vnc` on the gateway's display, for a person to finish what automation
//! cannot (a new dialog, a passkey, a question only they can answer).
//!
//! The server is locked down, because whoever connects can trade on the account:
//!
//! - **loopback only** (`-localhost -noipv6`): reached through `ssh -L`, never the network;
//! - **a one-time password**: 8 random characters (VNC authentication uses 8 at most),
//!   handed to the caller as a [`Secret`] and given to x11vnc through a 0600 file in a 0700
//!   directory that x11vnc deletes once read (`-passwdfile rm:FILE`), never through argv
//!   (world-readable in `/proc`) or the environment; it dies with the server;
//! - **one viewer at a time** (`-nevershared -dontdisconnect`: a second one is refused);
//! - **a deadline to connect** (`-timeout`), and the server is stopped after
//!   [`TakeoverOptions::max_failed_auth`] failed password attempts;
//! - no `~/.x11vncrc`, no remote-control channel over X properties, no DNS look-ups.
//!
//! Connections are observed through x11vnc's `-afteraccept` / `-gone` hooks (run after the
//! password was accepted, and when a client leaves), which write the client id and state
//! into a FIFO this module reads: [`TakeoverEvent::Connected`] only for a client that passed
//! authentication, [`TakeoverEvent::Disconnected`] when that client leaves.
//!
//! The driver pauses its typing between `Connected` and `Disconnected` and says so in
//! `status`; stopping the server after the person leaves keeps the password one-time.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::secret::Secret;
use crate::x11::DisplayTarget;

/// Characters of the one-time password: letters and digits a person cannot misread
/// (no `0/O`, `1/l/I`). 56 symbols, 8 characters: about 46 bits.
const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// VNC authentication (RFB security type 2) uses the first 8 bytes of the password only.
const PASSWORD_LEN: usize = 8;
/// x11vnc must be listening within this.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// After SIGTERM, x11vnc gets this long before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// Attempts at finding a free port (another process may take the one we picked).
const PORT_ATTEMPTS: usize = 3;

/// Failure to start a takeover server.
#[derive(Debug, thiserror::Error)]
pub enum TakeoverError {
    /// `x11vnc` is not on PATH.
    #[error("x11vnc not found on PATH: install the Debian package x11vnc")]
    NotInstalled,
    /// A path would need quoting that the hooks cannot do safely.
    #[error("takeover directory {} contains a quote or a newline; use a plain state directory", path.display())]
    UnsafePath {
        /// The path.
        path: PathBuf,
    },
    /// A file operation failed.
    #[error("{about} {}: {source}", path.display())]
    Io {
        /// What we were doing.
        about: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// x11vnc exited or did not report its port in time.
    #[error("x11vnc did not start listening on 127.0.0.1:{port}: {detail}")]
    NotListening {
        /// The port it was given.
        port: u16,
        /// What its log says (last lines; never contains the password).
        detail: String,
    },
}

fn io_err<'a>(about: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> TakeoverError + 'a {
    move |source| TakeoverError::Io {
        about,
        path: path.to_path_buf(),
        source,
    }
}

/// What happened on the takeover server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TakeoverEvent {
    /// A person connected and passed the password check: stop typing.
    Connected,
    /// That person disconnected: typing may resume.
    Disconnected,
    /// The server is gone (stopped, nobody connected in time, too many wrong passwords,
    /// or it died). A `Disconnected` comes first if someone was connected.
    Ended {
        /// Why, for people.
        reason: String,
    },
}

/// Knobs of a takeover server.
#[derive(Clone, Debug)]
pub struct TakeoverOptions {
    /// x11vnc exits if nobody connects within this (`-timeout`).
    pub connect_within: Duration,
    /// Failed password attempts before the server is stopped.
    pub max_failed_auth: u32,
}

impl Default for TakeoverOptions {
    fn default() -> Self {
        TakeoverOptions {
            connect_within: Duration::from_secs(600),
            max_failed_auth: 5,
        }
    }
}

/// A running x11vnc. Dropping it stops the server (SIGKILL); [`Takeover::stop`] stops it
/// gracefully and waits.
#[derive(Debug)]
pub struct Takeover {
    port: u16,
    pid: u32,
    events: Option<mpsc::UnboundedReceiver<TakeoverEvent>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Takeover {
    /// Starts x11vnc on `display` with the default options; see [`Takeover::start_with`].
    pub async fn start(
        display: &DisplayTarget,
        state_dir: &Path,
    ) -> Result<(Takeover, u16, Secret), TakeoverError> {
        Takeover::start_with(display, state_dir, &TakeoverOptions::default()).await
    }

    /// Starts x11vnc on `display`, listening on a free port of 127.0.0.1, files in
    /// `state_dir/takeover/` (0700). Returns once it listens, with the port and the
    /// one-time password (give it to the person who asked; never log it).
    pub async fn start_with(
        display: &DisplayTarget,
        state_dir: &Path,
        opts: &TakeoverOptions,
    ) -> Result<(Takeover, u16, Secret), TakeoverError> {
        let bin = crate::reader::find_on_path("x11vnc").ok_or(TakeoverError::NotInstalled)?;
        let dir = state_dir.join("takeover");
        prepare_dir(&dir)?;
        let fifo = dir.join("events");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(
            |e| TakeoverError::Io {
                about: "cannot create the fifo",
                path: fifo.clone(),
                source: io::Error::from(e),
            },
        )?;
        // Read-write: opening does not wait for a writer, and the hooks' writers closing
        // never looks like end-of-file.
        let receiver = tokio::net::unix::pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(&fifo)
            .map_err(io_err("cannot open the fifo", &fifo))?;
        let password =
            one_time_password().map_err(io_err("cannot read", Path::new("/dev/urandom")))?;

        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()
                .map_err(io_err("cannot find a free port on", Path::new("127.0.0.1")))?;
            match spawn_x11vnc(&bin, display, &dir, &fifo, port, &password, opts).await {
                Ok((child, stdout)) => {
                    let pid = child.id().unwrap_or(0);
                    let x_display = display.name.as_str();
                    info!(
                        port,
                        pid, x_display, "takeover server listening on loopback"
                    );
                    let (tx, rx) = mpsc::unbounded_channel();
                    let (stop_tx, stop_rx) = oneshot::channel();
                    let task = tokio::spawn(supervise(
                        child,
                        stdout,
                        receiver,
                        stop_rx,
                        tx,
                        dir.clone(),
                        opts.max_failed_auth,
                        opts.connect_within,
                    ));
                    let t = Takeover {
                        port,
                        pid,
                        events: Some(rx),
                        stop: Some(stop_tx),
                        task: Some(task),
                    };
                    return Ok((t, port, password));
                }
                Err(e) => {
                    debug!(error = %e, "x11vnc did not start; trying another port");
                    last_err = Some(e);
                }
            }
        }
        cleanup(&dir);
        Err(last_err.unwrap_or(TakeoverError::NotListening {
            port: 0,
            detail: "no attempt made".into(),
        }))
    }

    /// The loopback port x11vnc listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// x11vnc's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The event stream (once; `None` after the first call).
    pub fn events(&mut self) -> Option<mpsc::UnboundedReceiver<TakeoverEvent>> {
        self.events.take()
    }

    /// Stops x11vnc (SIGTERM, then SIGKILL after 3 s) and waits until it is gone and its
    /// files are removed. The event stream ends with [`TakeoverEvent::Ended`].
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Takeover {
    fn drop(&mut self) {
        // The supervising task stops the server when this sender goes away.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Creates `dir` 0700 (tightening an existing one) and removes files of an earlier run.
fn prepare_dir(dir: &Path) -> Result<(), TakeoverError> {
    let s = dir.as_os_str().to_string_lossy();
    if s.contains('\'') || s.contains('\n') {
        return Err(TakeoverError::UnsafePath {
            path: dir.to_path_buf(),
        });
    }
    crate::state::create_private_dir(dir).map_err(|e| TakeoverError::Io {
        about: "cannot create",
        path: dir.to_path_buf(),
        source: io::Error::other(e.to_string()),
    })?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(io_err("cannot restrict", dir))?;
    for name in ["events", "passwd", "x11vnc.log"] {
        let p = dir.join(name);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("cannot remove", &p)(e)),
        }
    }
    Ok(())
}

/// Removes the files a takeover leaves (the log stays, for diagnosis).
fn cleanup(dir: &Path) {
    for name in ["events", "passwd"] {
        let _ = fs::remove_file(dir.join(name));
    }
}

/// Eight characters from [`ALPHABET`], uniformly (rejection sampling over random bytes).
fn one_time_password() -> io::Result<Secret> {
    let mut urandom = fs::File::open("/dev/urandom")?;
    let limit = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    let mut out = String::with_capacity(PASSWORD_LEN);
    let mut buf = [0u8; 32];
    while out.len() < PASSWORD_LEN {
        urandom.read_exact(&mut buf)?;
        for b in buf {
            if b < limit && out.len() < PASSWORD_LEN {
                out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
            }
        }
    }
    buf.fill(0);
    Ok(Secret::new(out))
}

fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The `-afteraccept` / `-gone` hook: one line `<mode> <client id> <state>` into the FIFO.
fn hook(mode: &str, fifo: &Path) -> String {
    // The path was checked for quotes and newlines in `prepare_dir`.
    format!(
        "echo {mode} \"$RFB_CLIENT_ID\" \"$RFB_STATE\" >> '{}'",
        fifo.display()
    )
}

/// Starts x11vnc and waits for its `PORT=` line.
async fn spawn_x11vnc(
    bin: &Path,
    display: &DisplayTarget,
    dir: &Path,
    fifo: &Path,
    port: u16,
    password: &Secret,
    opts: &TakeoverOptions,
) -> Result<
    (
        Child,
        tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    ),
    TakeoverError,
> {
    let pwfile = dir.join("passwd");
    let _ = fs::remove_file(&pwfile);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&pwfile)
            .map_err(io_err("cannot create", &pwfile))?;
        f.write_all(format!("{}\n", password.expose()).as_bytes())
            .map_err(io_err("cannot write", &pwfile))?;
    }
    let log_path = dir.join("x11vnc.log");
    let log = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(io_err("cannot create", &log_path))?;

    let mut cmd = Command::new(bin);
    cmd.arg("-display").arg(&display.name);
    if let Some(auth) = &display.xauthority {
        cmd.arg("-auth").arg(auth);
    }
    cmd.args(["-localhost", "-noipv6", "-rfbport"])
        .arg(port.to_string())
        .arg("-passwdfile")
        .arg(format!("rm:{}", pwfile.display()))
        .args([
            "-forever",
            "-nevershared",
            "-dontdisconnect",
            "-norc",
            "-noremote",
            "-nolookup",
            "-desktop",
            "ibwarden",
            "-timeout",
        ])
        .arg(opts.connect_within.as_secs().max(1).to_string())
        .arg("-afteraccept")
        .arg(hook("afteraccept", fifo))
        .arg("-gone")
        .arg(hook("gone", fifo))
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C")
        .env("HOME", dir)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(io_err("cannot start", bin))?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.start_kill();
        return Err(TakeoverError::NotListening {
            port,
            detail: "no stdout".into(),
        });
    };
    let mut lines = BufReader::new(stdout).lines();
    let want = format!("PORT={port}");
    let started = tokio::time::timeout(START_TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim() == want {
                return true;
            }
        }
        false
    })
    .await;
    if started == Ok(true) {
        return Ok((child, lines));
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    let _ = fs::remove_file(&pwfile);
    Err(TakeoverError::NotListening {
        port,
        detail: match started {
            Err(_) => format!("no PORT= line within {} s", START_TIMEOUT.as_secs()),
            Ok(_) => log_tail(&log_path),
        },
    })
}

/// The last few lines of x11vnc's log, for an error message.
fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    if tail.is_empty() {
        "it exited without a message".into()
    } else {
        format!("it exited: {tail}")
    }
}

/// Owns x11vnc: turns hook lines into events, stops it on request, reports its end.
#[allow(clippy::too_many_arguments)]
async fn supervise(
    mut child: Child,
    mut stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    fifo: tokio::net::unix::pipe::Receiver,
    mut stop: oneshot::Receiver<()>,
    tx: mpsc::UnboundedSender<TakeoverEvent>,
    dir: PathBuf,
    max_failed_auth: u32,
    connect_within: Duration,
) {
    let mut hooks = BufReader::new(fifo).lines();
    let mut connected: HashSet<String> = HashSet::new();
    let mut failed = 0u32;
    let mut stdout_open = true;
    let reason = loop {
        tokio::select! {
            _ = &mut stop => {
                terminate(&mut child).await;
                break "stopped".to_string();
            }
            status = child.wait() => {
                break match status {
                    Ok(s) if connected.is_empty() && failed == 0 && s.code() != Some(0) => {
                        format!("x11vnc exited ({s}); nobody connected within {} s?", connect_within.as_secs())
                    }
                    Ok(s) => format!("x11vnc exited ({s})"),
                    Err(e) => format!("x11vnc could not be waited for: {e}"),
                };
            }
            line = stdout.next_line(), if stdout_open => {
                // Drained so x11vnc never blocks on a full pipe; nothing in it matters.
                if !matches!(line, Ok(Some(_))) {
                    stdout_open = false;
                }
            }
            line = hooks.next_line() => {
                let Ok(Some(line)) = line else { continue };
                let mut parts = line.split_whitespace();
                let (mode, id, state) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                match mode {
                    // Events mark transitions of "anyone connected", so a consumer can
                    // keep one flag even if x11vnc ever admits a second viewer.
                    Some("afteraccept") => {
                        if connected.insert(id.to_string()) {
                            info!(client = id, "a person connected to the takeover server");
                            if connected.len() == 1 {
                                let _ = tx.send(TakeoverEvent::Connected);
                            }
                        }
                    }
                    Some("gone") => {
                        if connected.remove(id) {
                            info!(client = id, "a person disconnected from the takeover server");
                            if connected.is_empty() {
                                let _ = tx.send(TakeoverEvent::Disconnected);
                            }
                        } else if state == "AUTHENTICATION" {
                            // Gone while x11vnc was checking the password: a wrong one
                            // (measured: x11vnc reports that state for a failed check; a
                            // probe that leaves earlier does not count). Bounded, so the
                            // password cannot be guessed.
                            failed += 1;
                            warn!(client = id, failed, "a VNC client left without passing the password check");
                            if failed >= max_failed_auth {
                                terminate(&mut child).await;
                                break format!("stopped after {failed} failed VNC password attempts");
                            }
                        }
                    }
                    _ => debug!(line = %line, "unexpected hook line"),
                }
            }
        }
    };
    if !connected.is_empty() {
        let _ = tx.send(TakeoverEvent::Disconnected);
    }
    info!(reason = %reason, "takeover server ended");
    cleanup(&dir);
    let _ = tx.send(TakeoverEvent::Ended { reason });
}

/// SIGTERM, a grace period, then SIGKILL; always reaps.
async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
            return;
        }
        warn!(pid, "x11vnc ignored SIGTERM; killing it");
    }
    let _ = child.kill().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_eight_unambiguous_characters_and_differ() {
        let a = one_time_password().expect("pw");
        let b = one_time_password().expect("pw");
        for p in [&a, &b] {
            assert_eq!(p.expose().len(), PASSWORD_LEN);
            assert!(p.expose().bytes().all(|c| ALPHABET.contains(&c)));
        }
        assert_ne!(a.expose(), b.expose());
        assert_eq!(format!("{a:?}"), "[redacted]");
    }

    #[test]
    fn hook_writes_mode_id_and_state_to_the_fifo() {
        assert_eq!(
            hook("gone", Path::new("/var/lib/ibw/takeover/events")),
            "echo gone \"$RFB_CLIENT_ID\" \"$RFB_STATE\" >> '/var/lib/ibw/takeover/events'"
        );
    }

    #[test]
    fn quotes_in_the_directory_are_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let bad = tmp.path().join("it's");
        assert!(matches!(
            prepare_dir(&bad),
            Err(TakeoverError::UnsafePath { .. })
        ));
    }

    #[test]
    fn prepare_dir_is_private_and_clears_old_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path().join("takeover");
        fs::create_dir(&d).expect("mkdir");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::write(d.join("passwd"), "old\n").expect("write");
        prepare_dir(&d).expect("prepare");
        let mode = fs::metadata(&d).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(!d.join("passwd").exists());
    }
}
