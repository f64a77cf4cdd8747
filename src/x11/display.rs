//! The private X server: one `Xvfb` per gateway, started and owned by the supervisor.
//!
//! `Xvfb -displayfd FD -nolisten tcp -auth FILE -screen 0 GEOMETRY`: `-displayfd` makes the
//! server pick a free display number and write it to FD once it accepts connections, so
//! there is no guessing, no lock-file race and no sleep. The auth file holds a fresh random
//! MIT-MAGIC-COOKIE-1 (mode 0600, in the private state dir), so other local users cannot
//! connect and read keystrokes. No window manager is started (measured: no
//! reparenting, no grabs, no WM lag on keymap changes).
//!
//! Lifetime: the child is killed when [`Xvfb`] is dropped (`kill_on_drop`) and when this
//! process dies (`PR_SET_PDEATHSIG`). Note that pdeathsig fires when the *thread* that
//! spawned the child exits, so call [`Xvfb::start`] from a runtime worker (any async
//! context), not from a short-lived `spawn_blocking` thread.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use super::{auth, DisplayTarget};

/// How long Xvfb may take to report its display number.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Xvfb::stop`] waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Failure to start or stop Xvfb.
#[derive(Debug, thiserror::Error)]
pub enum DisplayError {
    /// The `Xvfb` binary is not installed.
    #[error("Xvfb not found in PATH (Debian/Ubuntu: apt-get install xvfb)")]
    NotInstalled,
    /// An OS call failed.
    #[error("xvfb: {about}: {source}")]
    Io {
        /// What we were doing.
        about: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// Writing the Xauthority file failed.
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    /// Xvfb exited before reporting a display number.
    #[error("xvfb exited during startup ({status}); log {log}: {tail}")]
    EarlyExit {
        /// Its exit status.
        status: ExitStatus,
        /// Its stderr log file.
        log: PathBuf,
        /// Last lines of the log.
        tail: String,
    },
    /// Xvfb did not report a display number in time.
    #[error("xvfb reported no display number within {0:?}")]
    Timeout(Duration),
    /// What Xvfb wrote to the display fd is not a number.
    #[error("xvfb wrote an unexpected display number {0:?}")]
    BadDisplayNumber(String),
}

/// A running Xvfb owned by us.
#[derive(Debug)]
pub struct Xvfb {
    child: Child,
    pid: u32,
    target: DisplayTarget,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Xvfb {
    /// Starts Xvfb with its Xauthority file (`Xauthority`) and stderr log (`Xvfb.log`) in
    /// `dir`, which must be private to us (the state dir). `geometry` is e.g. `1280x1024x24`.
    ///
    /// Returns once the server accepts connections.
    pub async fn start(dir: &Path, geometry: &str) -> Result<Xvfb, DisplayError> {
        let xauthority = dir.join("Xauthority");
        let log = dir.join("Xvfb.log");
        let cookie = auth::random_cookie().map_err(|source| DisplayError::Io {
            about: "read /dev/urandom",
            source,
        })?;
        auth::write_xauthority(&xauthority, &cookie)?;
        drop(cookie);

        let log_file = std::fs::File::create(&log).map_err(|source| DisplayError::Io {
            about: "create Xvfb.log",
            source,
        })?;
        // O_CLOEXEC on both ends so that no other child spawned concurrently by this process
        // inherits them; the child clears it on its write end in pre_exec.
        let (read_end, write_end): (OwnedFd, OwnedFd) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| DisplayError::Io {
                about: "pipe2",
                source: io::Error::from(e),
            })?;
        let write_fd = write_end.as_raw_fd();

        let mut cmd = Command::new("Xvfb");
        cmd.arg("-displayfd")
            .arg(write_fd.to_string())
            .args(["-nolisten", "tcp", "-auth"])
            .arg(&xauthority)
            .args(["-screen", "0", geometry])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            // Xorg servers speak sd_notify themselves: without this, Xvfb would send
            // READY=1 on *our* NOTIFY_SOCKET long before the gateway is logged in.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .kill_on_drop(true)
            // Own process group: a Ctrl-C to our terminal's group does not hit Xvfb before
            // we have stopped the JVM that depends on it.
            .process_group(0);
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
        // syscalls (prctl, fcntl) on values captured by copy.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                    .map_err(io::Error::from)?;
                let flags = libc::fcntl(write_fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(write_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0
                {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => DisplayError::NotInstalled,
            _ => DisplayError::Io {
                about: "spawn Xvfb",
                source,
            },
        })?;
        // Our copy of the write end must close, or EOF never arrives if Xvfb dies.
        drop(write_end);
        let pid = child.id().unwrap_or(0);

        let mut rx =
            tokio::net::unix::pipe::Receiver::from_owned_fd(read_end).map_err(|source| {
                DisplayError::Io {
                    about: "display fd",
                    source,
                }
            })?;
        let mut buf = Vec::new();
        let read_number = async {
            // Xvfb writes "N\n" once listening; EOF means it exited.
            let mut chunk = [0u8; 32];
            loop {
                let n = rx.read(&mut chunk).await?;
                if n == 0 || chunk[..n].contains(&b'\n') {
                    buf.extend_from_slice(&chunk[..n]);
                    return Ok::<_, io::Error>(());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        };
        let outcome = tokio::time::timeout(START_TIMEOUT, read_number).await;
        let number = String::from_utf8_lossy(&buf).trim().to_owned();
        match outcome {
            Err(_) => {
                let _ = child.start_kill();
                return Err(DisplayError::Timeout(START_TIMEOUT));
            }
            Ok(Err(source)) => {
                let _ = child.start_kill();
                return Err(DisplayError::Io {
                    about: "read display fd",
                    source,
                });
            }
            Ok(Ok(())) if number.is_empty() => {
                let status = child.wait().await.map_err(|source| DisplayError::Io {
                    about: "wait for Xvfb",
                    source,
                })?;
                return Err(DisplayError::EarlyExit {
                    status,
                    tail: log_tail(&log),
                    log,
                });
            }
            Ok(Ok(())) => {}
        }
        if !number.bytes().all(|b| b.is_ascii_digit()) {
            let _ = child.start_kill();
            return Err(DisplayError::BadDisplayNumber(number));
        }
        let target = DisplayTarget {
            name: format!(":{number}"),
            xauthority: Some(xauthority),
        };
        tracing::debug!(display = %target.name, pid, "xvfb started");
        Ok(Xvfb {
            child,
            pid,
            target,
            log,
            exited: None,
        })
    }

    /// Display name, e.g. `":3"`.
    pub fn display(&self) -> &str {
        &self.target.name
    }

    /// The private Xauthority file (give it to the JVM as `XAUTHORITY`).
    pub fn xauthority(&self) -> &Path {
        // Always set by `start`.
        self.target.xauthority.as_deref().unwrap_or(Path::new(""))
    }

    /// Where to connect, for the watcher, the typist and screenshots.
    pub fn target(&self) -> &DisplayTarget {
        &self.target
    }

    /// Xvfb's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its stderr log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Resolves when Xvfb exits, with its status. Cancel-safe: use it in `select!` to detect
    /// the server dying; calling it again after it resolved returns the same status.
    pub async fn wait_exit(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.exited {
            return Ok(status);
        }
        let status = self.child.wait().await?;
        self.exited = Some(status);
        tracing::warn!(display = %self.target.name, pid = self.pid, %status, "xvfb exited");
        Ok(status)
    }

    /// Stops Xvfb: SIGTERM, then SIGKILL after a grace period. Idempotent.
    pub async fn stop(&mut self) -> Result<ExitStatus, DisplayError> {
        if let Some(status) = self.exited {
            return Ok(status);
        }
        if let Ok(pid) = i32::try_from(self.pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let status = match tokio::time::timeout(STOP_GRACE, self.child.wait()).await {
            Ok(r) => r.map_err(|source| DisplayError::Io {
                about: "wait for Xvfb",
                source,
            })?,
            Err(_) => {
                self.child.kill().await.map_err(|source| DisplayError::Io {
                    about: "kill Xvfb",
                    source,
                })?;
                self.child.wait().await.map_err(|source| DisplayError::Io {
                    about: "wait for Xvfb",
                    source,
                })?
            }
        };
        self.exited = Some(status);
        tracing::info!(display = %self.target.name, pid = self.pid, %status, "xvfb stopped");
        Ok(status)
    }
}

/// The last few lines of Xvfb's log, for an error message.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}
