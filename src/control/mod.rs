//! The control surface of a running instance: a Unix socket for `ibwarden status|restart|
//! stop|totp-now|screenshot`, and optionally an IBC-compatible command server on loopback
//! TCP so scripts written for IBC keep working.
//!
//! # The control socket
//!
//! One request line, one reply line, both JSON (`{"cmd":"status"}` →
//! `{"reply":"status","status":{...}}`). `status` is answered here from the published
//! [`Snapshot`](crate::status::Snapshot), so it works even while the driver is busy; every
//! other command becomes a [`ControlRequest`] on a channel to the driver, which answers
//! through the request's oneshot.
//!
//! Access is owner-only, twice over: the socket file is mode 0600 from the moment it has its
//! final name (it is bound under a temporary name, chmod-ed, then renamed), and every
//! connection's peer uid (`SO_PEERCRED`) must be ours or root's. A lock file next to the
//! socket makes a second instance on the same path fail fast instead of stealing the
//! socket; a stale socket (nobody listening) is replaced.
//!
//! # The IBC command server
//!
//! Plain TCP on 127.0.0.1, newline-terminated case-insensitive commands, one reply line
//! each (IBC's source): `STOP`, `RESTART`, `EXIT`; `RECONNECTDATA`,
//! `RECONNECTACCOUNT` and `PAUSE` are answered with an `ERROR` line (ibwarden does not type
//! IBC's key chords into the gateway). With a token file configured, the first command
//! must be `AUTH <token>`.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

mod ibc;
#[cfg(test)]
use crate::secret::Secret;
pub use ibc::{bind_ibc, serve_ibc, MAX_AUTH_DELAY, MAX_IBC_LINE, MAX_UNPROVEN, UNPROVEN_DEADLINE};
#[cfg(test)]
use ibc::{constant_time_eq, ibc_step, IbcStep};

use crate::status::{self, SharedStatus};

/// Longest request line accepted (bytes).
pub const MAX_LINE: u64 = 64 * 1024;
/// A client must send its request within this after connecting.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The driver must answer a forwarded command within this.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// The client waits this long for the reply (longer than [`REPLY_TIMEOUT`]).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);
/// Connections served at once; more are turned away.
const MAX_CONNECTIONS: usize = 16;
/// An IBC command-server connection idle this long is closed.
const IBC_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Errors of the control socket (server and client).
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nothing listens on the socket.
    #[error("no ibwarden instance is listening on {}; is `ibwarden run` started?", path.display())]
    NotRunning {
        /// The socket.
        path: PathBuf,
    },
    /// Another live instance owns the socket.
    #[error("another ibwarden instance is already listening on {}", path.display())]
    AlreadyRunning {
        /// The socket.
        path: PathBuf,
    },
    /// Something that is not a socket sits where the socket should be.
    #[error("{} exists and is not a socket; remove it or set control.socket", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The socket belongs to another user.
    #[error("permission denied on {}: run this as the user that runs `ibwarden run`", path.display())]
    PermissionDenied {
        /// The socket.
        path: PathBuf,
    },
    /// The server closed the connection without answering (e.g. it refused our uid).
    #[error("ibwarden closed the connection on {} without an answer", path.display())]
    NoReply {
        /// The socket.
        path: PathBuf,
    },
    /// The reply was not understood.
    #[error("unreadable reply from {}: {reason}", path.display())]
    BadReply {
        /// The socket.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file or socket operation failed.
    #[error("{about} {}: {source}", path.display())]
    Io {
        /// What we were doing.
        about: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

fn io_err<'a>(about: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ControlError + 'a {
    move |source| ControlError::Io {
        about,
        path: path.to_path_buf(),
        source,
    }
}

/// A request line, as sent on the socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    /// The published snapshot (answered by the server itself).
    Status,
    /// Restart the gateway (with the auto-restart token if there is one).
    Restart,
    /// Stop the gateway cleanly and exit.
    Stop,
    /// The current TOTP code and how long it stays valid.
    TotpNow,
    /// Write a PNG of the display to `out` (an absolute path).
    Screenshot {
        /// Where to write the PNG.
        out: PathBuf,
    },
    /// Start the human-takeover VNC server (loopback, one-time password).
    Vnc,
    /// Stop the human-takeover VNC server.
    VncStop,
    /// Write every gateway window's PNG and screen model into the directory `out`.
    Inspect {
        /// An absolute directory (created, mode 0700).
        out: PathBuf,
    },
}

/// A command the driver carries out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlCommand {
    /// Feed `Input::Restart` to the core.
    Restart,
    /// Feed `Input::Stop` to the core.
    Stop,
    /// Answer [`ControlReply::Totp`] from the loaded activation code.
    TotpNow,
    /// Write a PNG of the whole display to `out`; answer [`ControlReply::Screenshot`].
    Screenshot {
        /// Where to write it.
        out: PathBuf,
    },
    /// Start the takeover VNC server; answer [`ControlReply::Vnc`].
    Vnc,
    /// Stop the takeover VNC server.
    VncStop,
    /// Write the windows' report into `out`; answer [`ControlReply::Inspected`].
    Inspect {
        /// Where.
        out: PathBuf,
    },
}

impl Request {
    /// The driver's command, or `None` for requests the server answers itself.
    pub fn into_command(self) -> Option<ControlCommand> {
        match self {
            Request::Status => None,
            Request::Restart => Some(ControlCommand::Restart),
            Request::Stop => Some(ControlCommand::Stop),
            Request::TotpNow => Some(ControlCommand::TotpNow),
            Request::Screenshot { out } => Some(ControlCommand::Screenshot { out }),
            Request::Vnc => Some(ControlCommand::Vnc),
            Request::VncStop => Some(ControlCommand::VncStop),
            Request::Inspect { out } => Some(ControlCommand::Inspect { out }),
        }
    }
}

/// A reply line.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "kebab-case")]
pub enum ControlReply {
    /// Accepted; what happens now.
    Ok {
        /// One line for people.
        message: String,
    },
    /// The published [`Snapshot`](crate::status::Snapshot), as JSON (the client prints it or
    /// formats it without needing the exact struct version of the server).
    Status {
        /// The snapshot.
        status: serde_json::Value,
    },
    /// The current TOTP code.
    Totp {
        /// Six digits.
        code: String,
        /// Seconds it stays valid.
        valid_secs: u64,
    },
    /// A screenshot was written.
    Screenshot {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// The takeover VNC server runs on `127.0.0.1:port`, for one session with `password`.
    Vnc {
        /// Loopback port.
        port: u16,
        /// One-time password (shown to the person who asked; never logged).
        password: String,
    },
    /// `inspect` wrote these files.
    Inspected {
        /// The files (PNGs and `inspect.json`).
        files: Vec<PathBuf>,
    },
    /// Refused or failed.
    Error {
        /// Why, for people.
        message: String,
    },
}

// Hand-written so the TOTP code never reaches a log through `{:?}`.
impl fmt::Debug for ControlReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlReply::Ok { message } => f.debug_struct("Ok").field("message", message).finish(),
            ControlReply::Status { .. } => f.write_str("Status { .. }"),
            ControlReply::Totp { valid_secs, .. } => f
                .debug_struct("Totp")
                .field("code", &"<redacted>")
                .field("valid_secs", valid_secs)
                .finish(),
            ControlReply::Screenshot { path, bytes } => f
                .debug_struct("Screenshot")
                .field("path", path)
                .field("bytes", bytes)
                .finish(),
            ControlReply::Vnc { port, .. } => f
                .debug_struct("Vnc")
                .field("port", port)
                .field("password", &"<redacted>")
                .finish(),
            ControlReply::Inspected { files } => {
                f.debug_struct("Inspected").field("files", files).finish()
            }
            ControlReply::Error { message } => {
                f.debug_struct("Error").field("message", message).finish()
            }
        }
    }
}

impl ControlReply {
    /// An error reply.
    pub fn error(message: impl Into<String>) -> ControlReply {
        ControlReply::Error {
            message: message.into(),
        }
    }

    /// An ok reply.
    pub fn ok(message: impl Into<String>) -> ControlReply {
        ControlReply::Ok {
            message: message.into(),
        }
    }
}

/// A command for the driver and the way to answer it. Dropping `reply` unanswered makes the
/// client see "ibwarden did not answer".
#[derive(Debug)]
pub struct ControlRequest {
    /// What to do.
    pub cmd: ControlCommand,
    /// Where the answer goes.
    pub reply: oneshot::Sender<ControlReply>,
}

/// The bound control socket. Dropping it removes the socket file (if it is still ours) and
/// releases the instance lock.
#[derive(Debug)]
pub struct ControlSocket {
    listener: StdUnixListener,
    path: PathBuf,
    /// (dev, ino) of our socket file: only that file is removed on drop.
    id: (u64, u64),
    _lock: Flock<File>,
}

impl ControlSocket {
    /// Binds the socket at `path` (owner-only, see the module doc). Creates the parent
    /// directory (mode 0700) if it does not exist. Fails with
    /// [`ControlError::AlreadyRunning`] if another instance serves this path.
    pub fn bind(path: &Path) -> Result<ControlSocket, ControlError> {
        let name = path
            .file_name()
            .ok_or_else(|| ControlError::NotASocket {
                path: path.to_path_buf(),
            })?
            .to_os_string();
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&parent)
                .map_err(io_err(
                    "cannot create the control socket directory",
                    &parent,
                ))?;
        }

        // The lock decides between two ibwarden instances racing for the same path.
        let mut lock_name = name.clone();
        lock_name.push(".lock");
        let lock_path = parent.join(lock_name);
        let lock_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err("cannot open the control lock file", &lock_path))?;
        let lock = match Flock::lock(lock_file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(ControlError::AlreadyRunning {
                    path: path.to_path_buf(),
                })
            }
            Err((_, e)) => {
                return Err(ControlError::Io {
                    about: "cannot lock",
                    path: lock_path,
                    source: e.into(),
                })
            }
        };

        // Something already there: a live socket is someone else's; a dead one is stale.
        match fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => match StdUnixStream::connect(path) {
                Ok(_) => {
                    return Err(ControlError::AlreadyRunning {
                        path: path.to_path_buf(),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    info!(path = %path.display(), "removing a stale control socket");
                    fs::remove_file(path)
                        .map_err(io_err("cannot remove the stale control socket", path))?;
                }
                Err(e) => {
                    return Err(ControlError::Io {
                        about: "cannot check the existing control socket",
                        path: path.to_path_buf(),
                        source: e,
                    })
                }
            },
            Ok(_) => {
                return Err(ControlError::NotASocket {
                    path: path.to_path_buf(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ControlError::Io {
                    about: "cannot inspect",
                    path: path.to_path_buf(),
                    source: e,
                })
            }
        }

        // Bind under a temporary name, make it private, then give it its name: the socket
        // is never reachable at `path` with wider permissions.
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(&name);
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        let tmp = parent.join(tmp_name);
        let _ = fs::remove_file(&tmp);
        let listener =
            StdUnixListener::bind(&tmp).map_err(io_err("cannot bind the control socket", &tmp))?;
        let placed = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))
            .and_then(|()| fs::rename(&tmp, path));
        if let Err(e) = placed {
            let _ = fs::remove_file(&tmp);
            return Err(ControlError::Io {
                about: "cannot set up the control socket",
                path: path.to_path_buf(),
                source: e,
            });
        }
        listener
            .set_nonblocking(true)
            .map_err(io_err("cannot configure the control socket", path))?;
        let meta = fs::symlink_metadata(path).map_err(io_err("cannot inspect", path))?;
        info!(path = %path.display(), "control socket listening");
        Ok(ControlSocket {
            listener,
            path: path.to_path_buf(),
            id: (meta.dev(), meta.ino()),
            _lock: lock,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves connections until the task is dropped (aborted). `status` answers `status`;
    /// everything else goes to the driver on `tx`.
    pub async fn serve(
        self,
        status: SharedStatus,
        tx: mpsc::Sender<ControlRequest>,
    ) -> Result<(), ControlError> {
        let std = self
            .listener
            .try_clone()
            .map_err(io_err("cannot use the control socket", &self.path))?;
        let listener = UnixListener::from_std(std)
            .map_err(io_err("cannot use the control socket", &self.path))?;
        let me = nix::unistd::Uid::effective().as_raw();
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        if conns.len() >= MAX_CONNECTIONS {
                            warn!("control socket: too many connections; refusing one");
                            continue;
                        }
                        conns.spawn(handle_control(stream, status.clone(), tx.clone(), me));
                    }
                    Err(e) => {
                        // EMFILE and friends: do not spin; the next accept may succeed.
                        warn!(error = %e, "control socket: accept failed");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        // Remove the file only if it is still the one we bound (a successor may own the
        // path by now).
        if let Ok(m) = fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.id {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
}

/// True if a peer with `uid` may control an instance running as `me`.
fn uid_allowed(uid: u32, me: u32) -> bool {
    uid == me || uid == 0
}

async fn handle_control(
    stream: UnixStream,
    status: SharedStatus,
    tx: mpsc::Sender<ControlRequest>,
    me: u32,
) {
    let uid = match stream.peer_cred() {
        Ok(c) => c.uid(),
        Err(e) => {
            warn!(error = %e, "control socket: cannot read the peer's credentials; refused");
            return;
        }
    };
    let (read, mut write) = stream.into_split();
    if !uid_allowed(uid, me) {
        warn!(uid, "control socket: refused a client of another user");
        let reply = ControlReply::error(format!(
            "permission denied: uid {uid} may not control this ibwarden (uid {me})"
        ));
        let _ = write_reply(&mut write, &reply).await;
        return;
    }
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read.take(MAX_LINE));
    let reply = match tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await {
        Err(_) => ControlReply::error("no request received in time"),
        Ok(Err(e)) => ControlReply::error(format!("cannot read the request: {e}")),
        Ok(Ok(_)) if !line.ends_with('\n') => {
            ControlReply::error("the request must be one line ending with a newline")
        }
        Ok(Ok(_)) => match serde_json::from_str::<Request>(line.trim()) {
            Err(e) => ControlReply::error(format!("invalid request: {e}")),
            Ok(req) => {
                debug!(?req, uid, "control request");
                answer(req, &status, &tx).await
            }
        },
    };
    if let Err(e) = write_reply(&mut write, &reply).await {
        debug!(error = %e, "control socket: client went away before the reply");
    }
}

async fn answer(
    req: Request,
    status: &SharedStatus,
    tx: &mpsc::Sender<ControlRequest>,
) -> ControlReply {
    let Some(cmd) = req.into_command() else {
        return match serde_json::to_value(status::read(status)) {
            Ok(v) => ControlReply::Status { status: v },
            Err(e) => ControlReply::error(format!("cannot encode the status: {e}")),
        };
    };
    forward(cmd, tx).await
}

/// Sends `cmd` to the driver and waits for its answer.
async fn forward(cmd: ControlCommand, tx: &mpsc::Sender<ControlRequest>) -> ControlReply {
    let (reply, answer) = oneshot::channel();
    let asked = async {
        tx.send(ControlRequest { cmd, reply }).await.ok()?;
        answer.await.ok()
    };
    match tokio::time::timeout(REPLY_TIMEOUT, asked).await {
        Ok(Some(r)) => r,
        Ok(None) => ControlReply::error("ibwarden is shutting down"),
        Err(_) => ControlReply::error(format!(
            "ibwarden did not answer within {} s",
            REPLY_TIMEOUT.as_secs()
        )),
    }
}

async fn write_reply<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    reply: &ControlReply,
) -> io::Result<()> {
    let mut text = serde_json::to_string(reply).map_err(io::Error::other)?;
    text.push('\n');
    w.write_all(text.as_bytes()).await?;
    w.flush().await?;
    w.shutdown().await
}

/// The driver's answer to [`ControlCommand::TotpNow`]: the code of the current step and the
/// seconds it stays valid. (Unlike login, this does not mark the step used: it is for a
/// person comparing codes.)
pub fn totp_reply(code: Option<&crate::totp::ActivationCode>, now_unix_secs: u64) -> ControlReply {
    let Some(code) = code else {
        return ControlReply::error("no activation code is configured (paper accounts have none)");
    };
    let step = crate::totp::step_at(now_unix_secs);
    ControlReply::Totp {
        code: code.code_at_step(step).expose().to_string(),
        valid_secs: crate::totp::remaining_secs(now_unix_secs),
    }
}

/// The driver's answer to [`ControlCommand::Screenshot`] once it has the PNG bytes (or the
/// capture error): writes them to `out` atomically (mode 0600: a screenshot can show an
/// account number) and says where.
pub fn screenshot_reply(out: &Path, png: Result<Vec<u8>, String>) -> ControlReply {
    let png = match png {
        Ok(p) => p,
        Err(e) => return ControlReply::error(format!("cannot capture the display: {e}")),
    };
    if !out.is_absolute() {
        return ControlReply::error(format!("{} is not an absolute path", out.display()));
    }
    match crate::state::write_atomic(out, &png) {
        Ok(()) => ControlReply::Screenshot {
            path: out.to_path_buf(),
            bytes: png.len() as u64,
        },
        Err(e) => ControlReply::error(format!("cannot write the screenshot: {e}")),
    }
}

/// Sends one request to the instance listening on `path` and returns its reply (blocking;
/// for the CLI).
pub fn request(path: &Path, req: &Request) -> Result<ControlReply, ControlError> {
    let mut stream = StdUnixStream::connect(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => ControlError::NotRunning {
            path: path.to_path_buf(),
        },
        io::ErrorKind::PermissionDenied => ControlError::PermissionDenied {
            path: path.to_path_buf(),
        },
        _ => ControlError::Io {
            about: "cannot connect to",
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    stream
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .map_err(io_err("cannot configure the connection to", path))?;
    let mut line = serde_json::to_string(req).map_err(|e| ControlError::Io {
        about: "cannot encode the request for",
        path: path.to_path_buf(),
        source: io::Error::other(e),
    })?;
    line.push('\n');
    // A server that refused us may close before reading; its reply line is still there.
    let _ = stream.write_all(line.as_bytes());
    let mut reply = String::new();
    BufReader::new(stream.take(MAX_LINE))
        .read_line(&mut reply)
        .map_err(io_err("cannot read the reply from", path))?;
    if reply.trim().is_empty() {
        return Err(ControlError::NoReply {
            path: path.to_path_buf(),
        });
    }
    serde_json::from_str(reply.trim()).map_err(|e| ControlError::BadReply {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
