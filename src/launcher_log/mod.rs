//! The gateway's `launcher.log` as a signal: what IBKR's servers did, which window titles
//! cannot tell (users' reports).
//!
//! Three layers, each tested on its own:
//!
//! - [`classify`]: one line → at most one [`LauncherEvent`]. Pure.
//! - [`Tracker`]: the little state the lines need between them. The one that matters:
//!   `AuthTimeoutMonitor-CCP: activate` followed by `AuthTimeoutMonitor-CCP: Timeout!` with
//!   no `NS_AUTH_START` in between is IBKR silently dropping the login
//!   ([`LauncherEvent::SilentDrop`]), the signature ibg-controller found in production.
//! - [`follow`]: a tokio task that follows the file with inotify on its directory (no
//!   polling) and sends the tracker's events on a channel.
//!
//! # Where following starts
//!
//! At the end of the file as it is when [`follow`] is called: the lines already there are
//! history (an earlier JVM, an earlier ibwarden) and acting on them again would re-run a
//! back-off that already ran. Call it before launching the JVM so nothing of the current
//! session is missed. A file that appears later, replaces the followed one (rotation: the
//! old one renamed or deleted, a new one created) or shrinks (truncation) is new: it is read
//! from its first byte. Lines written to the old file just before a rename are still read
//! from the still-open old file first.
//!
//! A truncation followed by writes that grow the file past the old offset before the
//! follower looks is indistinguishable from appends; inotify wakes the follower on the
//! truncation itself, so this needs a writer faster than one event round-trip.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// Longest line kept (bytes); the rest of a longer line is dropped.
const MAX_LINE: usize = 16 * 1024;
/// Longest `Exiting:` reason kept (characters).
const MAX_REASON: usize = 200;

pub use crate::core::{LauncherEvent, SecondFactorOutcome};

/// The message part of a line: after `] - ` in the gateway's
/// `yyyy-MM-dd HH:mm:ss.SSS [XX] INFO  [JTS-<thread>] - <message>` format, else the
/// whole (trimmed) line.
fn message(line: &str) -> &str {
    let line = line.trim_end_matches(['\r', '\n']);
    match line.find("] - ") {
        Some(i) => &line[i + 4..],
        None => line.trim(),
    }
    .trim_end()
}

/// Classifies one line. [`LauncherEvent::SilentDrop`] is never returned here (it needs the
/// lines before it: see [`Tracker`]); a CCP timeout is [`LauncherEvent::AuthTimeout`].
///
/// The CCP and restart markers are matched anywhere in the line, as ibg-controller matches
/// them in the real gateway's log; the others at the start of the message.
pub fn classify(line: &str) -> Option<LauncherEvent> {
    use LauncherEvent as E;
    // Order matters where one marker contains another.
    if line.contains("AuthTimeoutMonitor-CCP: Timeout!") {
        return Some(E::AuthTimeout);
    }
    if line.contains("AuthTimeoutMonitor-CCP: activate") {
        return Some(E::AuthStarted);
    }
    if line.contains("NS_AUTH_START") {
        return Some(E::AuthAccepted);
    }
    if line.contains("IB GATEWAY RESTART: restart=") {
        return Some(E::TokenRestart);
    }
    if line.contains("IB GATEWAY RESTART") {
        return Some(E::RestartInProgress);
    }
    let msg = message(line);
    let lower = msg.to_ascii_lowercase();
    if msg.starts_with("Starting IB Gateway") {
        return Some(E::GatewayStarting);
    }
    if msg.starts_with("Restart in progress")
        || msg.starts_with("The application will automatically restart in")
    {
        return Some(E::RestartInProgress);
    }
    if msg.starts_with("Authentication failed") {
        return Some(E::AuthFailed);
    }
    if msg.starts_with("Existing session detected") {
        return Some(E::SessionPolicy);
    }
    if let Some(rest) = msg.strip_prefix("Second factor authentication ") {
        let outcome = match rest.trim_end_matches('.') {
            "accepted" => SecondFactorOutcome::Accepted,
            "failed" => SecondFactorOutcome::Failed,
            "timed out" => SecondFactorOutcome::TimedOut,
            _ => return None,
        };
        return Some(E::SecondFactor(outcome));
    }
    if msg.starts_with("Connection to server failed") {
        return Some(E::ConnectionFailed);
    }
    if msg.starts_with("Login has completed") {
        return Some(E::LoginCompleted);
    }
    if let Some(rest) = msg.strip_prefix("API server listening on port ") {
        return rest
            .trim()
            .parse()
            .ok()
            .map(|port| E::ApiListening { port });
    }
    if msg.starts_with("Session disconnected: re-login is required") {
        return Some(E::ReloginRequired);
    }
    // The simulator's line, IBAutomater's (`Auto-restart token expired`) and the text of the
    // real Sunday dialog if it is ever logged.
    if lower.starts_with("autorestart token expired")
        || lower.starts_with("auto-restart token expired")
        || (lower.contains("security tokens") && lower.contains("expired"))
    {
        return Some(E::TokenExpired);
    }
    if msg.starts_with("Restart requested but no autorestart token found") {
        return Some(E::TokenMissing);
    }
    if let Some(reason) = msg.strip_prefix("Exiting: ") {
        return Some(E::Exiting {
            reason: reason.trim().chars().take(MAX_REASON).collect(),
        });
    }
    None
}

/// Where the current login attempt is, as far as the log says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Auth {
    /// No attempt in flight (or following began mid-attempt).
    #[default]
    Idle,
    /// `activate` seen, no `NS_AUTH_START` yet.
    Activated,
    /// `NS_AUTH_START` seen since the `activate`.
    Answered,
}

/// Turns lines into events, with the state [`classify`] cannot have.
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    auth: Auth,
    last: Option<LauncherEvent>,
}

impl Tracker {
    /// A tracker that has seen nothing.
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// Feeds one line; returns the event it means, if any.
    ///
    /// A timeout after an `activate` with no `NS_AUTH_START` is a
    /// [`LauncherEvent::SilentDrop`]. A second restart marker right after the first (the
    /// gateway logs `Restart in progress` then `IB GATEWAY RESTART`) is not repeated.
    pub fn feed(&mut self, line: &str) -> Option<LauncherEvent> {
        use LauncherEvent as E;
        let mut ev = classify(line)?;
        match ev {
            E::GatewayStarting => self.auth = Auth::Idle,
            E::AuthStarted => self.auth = Auth::Activated,
            E::AuthAccepted => self.auth = Auth::Answered,
            E::AuthTimeout => {
                if self.auth == Auth::Activated {
                    ev = E::SilentDrop;
                }
                self.auth = Auth::Idle;
            }
            E::AuthFailed | E::LoginCompleted | E::ConnectionFailed | E::Exiting { .. } => {
                self.auth = Auth::Idle
            }
            _ => {}
        }
        if ev == E::RestartInProgress && self.last == Some(E::RestartInProgress) {
            return None;
        }
        self.last = Some(ev.clone());
        Some(ev)
    }
}

/// Failure to follow `launcher.log`.
#[derive(Debug, thiserror::Error)]
pub enum LauncherLogError {
    /// The path has no directory part or no file name.
    #[error("launcher log path {} has no directory or file name", path.display())]
    BadPath {
        /// The path.
        path: PathBuf,
    },
    /// inotify could not be set up or read.
    #[error("cannot watch {}: {source}", dir.display())]
    Watch {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        source: nix::Error,
    },
    /// The directory holding the log was deleted or moved away.
    #[error("the directory {} holding the launcher log went away", dir.display())]
    DirectoryGone {
        /// The directory.
        dir: PathBuf,
    },
    /// Reading the file failed.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// Where following begins in a file that already exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// After its last line: what is there is history (the default; see the module doc).
    End,
    /// At its first byte (a file known to belong to the current session).
    Beginning,
}

/// Follows the log at `path` from its current end; see [`follow_from`].
pub async fn follow(
    path: impl Into<PathBuf>,
    tx: mpsc::Sender<LauncherEvent>,
) -> Result<JoinHandle<Result<(), LauncherLogError>>, LauncherLogError> {
    follow_from(path, StartAt::End, tx).await
}

/// Follows the log at `path`: sets up the inotify watch on its directory and fixes the
/// starting position before returning (so a JVM launched afterwards cannot write a line
/// the follower misses), then a task reads new lines as they come and sends the
/// [`Tracker`]'s events on `tx`.
///
/// The file is the outside world's: every open and read runs on tokio's blocking pool, never
/// on the runtime's threads (a FIFO or a hung filesystem stalls one blocking thread, not the
/// supervisor); only a regular file is read (a FIFO, a device or a directory at the path
/// is treated as no file, with one warning, until a regular file replaces it); and a read
/// takes at most [`MAX_CATCH_UP`] from the tail of what was appended since the last one.
/// A read error is logged and the file re-opened at the next change: following only ends
/// when the receiver is dropped (`Ok`) or the directory goes away (an error).
///
/// Must be called inside a tokio runtime.
pub async fn follow_from(
    path: impl Into<PathBuf>,
    start: StartAt,
    tx: mpsc::Sender<LauncherEvent>,
) -> Result<JoinHandle<Result<(), LauncherLogError>>, LauncherLogError> {
    let path = path.into();
    let (dir, name) = match (path.parent(), path.file_name()) {
        (Some(d), Some(n)) => (
            if d.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                d.to_path_buf()
            },
            n.to_os_string(),
        ),
        _ => return Err(LauncherLogError::BadPath { path }),
    };
    let watch_err = |source| LauncherLogError::Watch {
        dir: dir.clone(),
        source,
    };
    let inotify =
        Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).map_err(watch_err)?;
    inotify
        .add_watch(
            &dir,
            AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_MODIFY
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_MOVED_FROM
                | AddWatchFlags::IN_DELETE
                | AddWatchFlags::IN_DELETE_SELF
                | AddWatchFlags::IN_MOVE_SELF
                | AddWatchFlags::IN_ONLYDIR,
        )
        .map_err(watch_err)?;
    // SAFETY: the `Inotify` owns its descriptor and the `AsyncFd` owns the `Inotify`, so the
    // descriptor stays open and the same for the `AsyncFd`'s whole life.
    let fd = unsafe { AsyncFd::register(InotifyFd(inotify)) }.map_err(|e| {
        let e = io::Error::from(e);
        LauncherLogError::Watch {
            dir: dir.clone(),
            source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    })?;
    let mut follower = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || Follower::new(path, start))
            .await
            .map_err(|e| LauncherLogError::Io {
                path: dir.clone(),
                source: io::Error::other(e.to_string()),
            })??
    };
    debug!(path = %path.display(), offset = follower.offset, "following the launcher log");
    Ok(tokio::spawn(async move {
        // Anything written between set-up and the first wake-up.
        let Some((f, events)) = catch_up_blocking(follower).await else {
            return Ok(());
        };
        follower = f;
        if !send_all(events, &tx).await {
            return Ok(());
        }
        loop {
            let events = tokio::select! {
                _ = tx.closed() => return Ok(()),
                ready = fd.readable() => {
                    let mut guard = ready.map_err(|e| LauncherLogError::Io {
                        path: dir.clone(),
                        source: e,
                    })?;
                    match guard.get_inner().0.read_events() {
                        Ok(evs) => evs,
                        Err(nix::errno::Errno::EAGAIN) => {
                            guard.clear_ready();
                            continue;
                        }
                        Err(e) => return Err(LauncherLogError::Watch { dir: dir.clone(), source: e }),
                    }
                }
            };
            let mut relevant = false;
            let mut gone = false;
            for ev in &events {
                if ev
                    .mask
                    .intersects(AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF)
                    || ev.mask.contains(AddWatchFlags::IN_IGNORED)
                {
                    gone = true;
                }
                if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW)
                    || ev.name.as_deref() == Some(name.as_os_str())
                {
                    relevant = true;
                }
            }
            if relevant || gone {
                let Some((f, events)) = catch_up_blocking(follower).await else {
                    return Ok(());
                };
                follower = f;
                if !send_all(events, &tx).await {
                    return Ok(());
                }
            }
            if gone {
                // What the open file still held was read above; nothing more can come.
                return Err(LauncherLogError::DirectoryGone { dir: dir.clone() });
            }
        }
    }))
}

/// Runs [`Follower::catch_up`] on the blocking pool; a read error is logged (once per
/// distinct error until a read succeeds) and leaves the follower ready to re-open.
/// `None` if the blocking task itself was lost (the runtime is shutting down).
async fn catch_up_blocking(mut follower: Follower) -> Option<(Follower, Vec<LauncherEvent>)> {
    tokio::task::spawn_blocking(move || {
        let events = match follower.catch_up() {
            Ok(events) => {
                follower.last_error = None;
                events
            }
            Err(e) => {
                let text = e.to_string();
                if follower.last_error.as_deref() != Some(text.as_str()) {
                    warn!(error = %text, "launcher log unreadable; re-opened at its next change");
                    follower.last_error = Some(text);
                }
                follower.file = None;
                Vec::new()
            }
        };
        (follower, events)
    })
    .await
    .ok()
}

/// Sends events in order; false when the receiver is gone.
async fn send_all(events: Vec<LauncherEvent>, tx: &mpsc::Sender<LauncherEvent>) -> bool {
    for ev in events {
        debug!(event = ?ev, "launcher log");
        if tx.send(ev).await.is_err() {
            return false;
        }
    }
    true
}

/// The inotify instance as tokio's `AsyncFd` wants it (nix 0.31 implements `AsFd` only).
struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// The most one catch-up reads: when more was appended since the last read (a runaway
/// writer, a 1 GiB append), the follower jumps to the last `MAX_CATCH_UP` bytes, which hold
/// the lines that matter now, and says so.
pub const MAX_CATCH_UP: u64 = 1024 * 1024;

/// Read size: the file is read in chunks of this many bytes, never into one buffer.
const CHUNK: usize = 64 * 1024;

/// Opens `path` for reading if it is a regular file. `Ok(None)`: nothing there, or
/// something that is not a regular file (a FIFO would block `open` and never end a read; a
/// device like `/dev/zero` never ends either), which is warned about once per identity.
fn open_regular(
    path: &Path,
    warned: &mut Option<(u64, u64)>,
) -> Result<Option<(File, std::fs::Metadata)>, io::Error> {
    let (file, meta) = match crate::state::open_nonblocking(path, true) {
        Ok(x) => x,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !meta.is_file() {
        if *warned != Some((meta.dev(), meta.ino())) {
            warn!(path = %path.display(), "launcher log is not a regular file; ignored until one replaces it");
            *warned = Some((meta.dev(), meta.ino()));
        }
        return Ok(None);
    }
    Ok(Some((file, meta)))
}

/// The open file, where we are in it, and the line being assembled.
struct Follower {
    path: PathBuf,
    file: Option<(File, (u64, u64))>,
    offset: u64,
    partial: Vec<u8>,
    /// Drop bytes up to the next newline (we started inside a line, or it was too long).
    skipping: bool,
    tracker: Tracker,
    /// The non-regular file already warned about (device, inode).
    warned: Option<(u64, u64)>,
    /// The last read error logged (not repeated until a read succeeds).
    last_error: Option<String>,
}

impl Follower {
    fn new(path: PathBuf, start: StartAt) -> Result<Follower, LauncherLogError> {
        let mut f = Follower {
            path,
            file: None,
            offset: 0,
            partial: Vec::new(),
            skipping: false,
            tracker: Tracker::new(),
            warned: None,
            last_error: None,
        };
        match open_regular(&f.path, &mut f.warned) {
            Ok(Some((mut file, meta))) => {
                if start == StartAt::End && meta.len() > 0 {
                    // Starting inside a line that is still being written: skip its tail.
                    file.seek(SeekFrom::Start(meta.len() - 1))
                        .map_err(|e| f.io(e))?;
                    let mut last = [0u8; 1];
                    file.read_exact(&mut last).map_err(|e| f.io(e))?;
                    f.skipping = last[0] != b'\n';
                    f.offset = meta.len();
                }
                f.file = Some((file, (meta.dev(), meta.ino())));
            }
            Ok(None) => {}
            Err(e) => return Err(f.io(e)),
        }
        Ok(f)
    }

    fn io(&self, source: io::Error) -> LauncherLogError {
        LauncherLogError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Reads everything new, following replacement and truncation; returns the events.
    fn catch_up(&mut self) -> Result<Vec<LauncherEvent>, LauncherLogError> {
        let mut out = Vec::new();
        let current = match std::fs::metadata(&self.path) {
            Ok(m) => Some((m.dev(), m.ino(), m.len(), m.is_file())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.io(e)),
        };
        let same_file = matches!((&self.file, current), (Some((_, id)), Some((dev, ino, _, _))) if *id == (dev, ino));
        if self.file.is_some() && !same_file {
            // Rotated or deleted: the old file may still hold lines written just before.
            self.read_new(&mut out)?;
            self.flush_partial(&mut out);
            self.file = None;
        }
        if self.file.is_none() {
            if !matches!(current, Some((_, _, _, true))) {
                // Nothing there, or not a regular file: the next change brings one back.
                if let Some((dev, ino, _, false)) = current {
                    if self.warned != Some((dev, ino)) {
                        warn!(path = %self.path.display(), "launcher log is not a regular file; ignored until one replaces it");
                        self.warned = Some((dev, ino));
                    }
                }
                return Ok(out);
            }
            match open_regular(&self.path, &mut self.warned).map_err(|e| self.io(e))? {
                Some((file, meta)) => {
                    debug!(path = %self.path.display(), "launcher log (re)opened from its start");
                    self.file = Some((file, (meta.dev(), meta.ino())));
                    self.offset = 0;
                    self.partial.clear();
                    self.skipping = false;
                }
                // Gone (or replaced) between stat and open: the next event brings it back.
                None => return Ok(out),
            }
        } else if let Some((_, _, len, _)) = current {
            if len < self.offset {
                debug!(path = %self.path.display(), len, offset = self.offset,
                    "launcher log truncated; reading from its start");
                self.offset = 0;
                self.partial.clear();
                self.skipping = false;
            }
        }
        self.read_new(&mut out)?;
        Ok(out)
    }

    /// Reads what the open file holds past `offset`, up to its size now, in chunks, keeping
    /// only the last [`MAX_CATCH_UP`] bytes of a larger append.
    fn read_new(&mut self, out: &mut Vec<LauncherEvent>) -> Result<(), LauncherLogError> {
        let Some((mut file, id)) = self.file.take() else {
            return Ok(());
        };
        let res = self.read_new_from(&mut file, out);
        self.file = Some((file, id));
        res.map_err(|e| self.io(e))
    }

    fn read_new_from(&mut self, file: &mut File, out: &mut Vec<LauncherEvent>) -> io::Result<()> {
        let len = file.metadata()?.len();
        if len <= self.offset {
            return Ok(());
        }
        if len - self.offset > MAX_CATCH_UP {
            warn!(path = %self.path.display(), skipped = len - self.offset - MAX_CATCH_UP,
                "launcher log grew faster than it can be read; skipping to its last 1 MiB");
            self.offset = len - MAX_CATCH_UP;
            self.partial.clear();
            // The cut lands inside a line: drop up to the next newline.
            self.skipping = true;
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut left = len - self.offset;
        let mut buf = vec![0u8; CHUNK];
        while left > 0 {
            let want = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
            let n = match file.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            left -= n as u64;
            self.offset += n as u64;
            self.take_bytes(&buf[..n], out);
        }
        Ok(())
    }

    /// Splits bytes into lines (a line may span chunks) and feeds the complete ones.
    fn take_bytes(&mut self, bytes: &[u8], out: &mut Vec<LauncherEvent>) {
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            let complete = chunk.last() == Some(&b'\n');
            let body = if complete {
                &chunk[..chunk.len() - 1]
            } else {
                chunk
            };
            if self.skipping {
                if complete {
                    self.skipping = false;
                }
                continue;
            }
            if self.partial.len() + body.len() > MAX_LINE {
                warn!(path = %self.path.display(), "launcher log line too long; dropped");
                self.partial.clear();
                self.skipping = !complete;
                continue;
            }
            self.partial.extend_from_slice(body);
            if complete {
                self.emit_partial(out);
            }
        }
    }

    fn flush_partial(&mut self, out: &mut Vec<LauncherEvent>) {
        if !self.partial.is_empty() {
            self.emit_partial(out);
        }
        self.skipping = false;
    }

    fn emit_partial(&mut self, out: &mut Vec<LauncherEvent>) {
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        if let Some(ev) = self.tracker.feed(&line) {
            out.push(ev);
        }
    }
}

/// Reads the events of a whole file from its start (diagnostics, tests): at most its last
/// [`MAX_CATCH_UP`] bytes.
pub fn read_all(path: &Path) -> Result<Vec<LauncherEvent>, LauncherLogError> {
    // The same bounded reader as following: a regular file only, its last 1 MiB at most.
    let mut follower = Follower::new(path.to_path_buf(), StartAt::Beginning)?;
    if follower.file.is_none() {
        return Err(LauncherLogError::Io {
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::NotFound, "no regular file there"),
        });
    }
    let mut out = follower.catch_up()?;
    follower.flush_partial(&mut out);
    Ok(out)
}

/// The gateway opens `launcher.log` for appending as it starts: a FIFO (or a socket, or a
/// symlink to one) at that path would block its start for good, before any window, and a
/// relaunch would block again. The settings directory is ibwarden's, so the thing is
/// removed, with a warning, and the gateway creates a regular log as usual.
pub fn clear_blocking(path: &std::path::Path) {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    let target = if meta.file_type().is_symlink() {
        match std::fs::metadata(path) {
            Ok(m) => m.file_type(),
            // A dangling link: the gateway creates its target, which is harmless.
            Err(_) => return,
        }
    } else {
        meta.file_type()
    };
    if target.is_fifo() || target.is_socket() {
        match std::fs::remove_file(path) {
            Ok(()) => warn!(path = %path.display(),
                "launcher.log was a FIFO or socket, which would block the gateway's start; removed it"),
            Err(e) => warn!(path = %path.display(), error = %e,
                "launcher.log is a FIFO or socket, which blocks the gateway's start, and cannot be removed"),
        }
    }
}

#[cfg(test)]
mod tests;
