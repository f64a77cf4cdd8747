//! The gateway JVM as a process: spawn, wait, classify the exit, stop, and find it again
//! after our own restart.
//!
//! - The JVM gets its own process group (so a stop reaches every process it forked),
//!   `PR_SET_PDEATHSIG` (so it cannot outlive us by accident), a cleared environment (see
//!   [`super::launch`]) and its stdout/stderr in a log file of its own: the gateway prints
//!   whatever it likes there, and it must not end up in our structured logs.
//! - Waiting never polls: tokio waits on a pidfd for our own child, and [`PidFd`] does the
//!   same for a JVM we adopted after a restart (not our child, so it cannot be `wait`ed).
//! - [`classify_exit`] turns an exit status into an [`ExitKind`] (pure; tested on raw
//!   statuses and on real exits).
//! - A pid file plus an identity check ([`find_adoptable`]) lets a restarted ibwarden find
//!   the JVM it started instead of launching a second one for the same account.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tracing::{debug, info, warn};

use super::launch::JvmCommand;

/// The JVM's own log is rotated (one old copy kept) when it grows beyond this at a launch.
const JVM_LOG_ROTATE_BYTES: u64 = 16 * 1024 * 1024;

/// Errors of the process adapter.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// Spawning the JVM failed.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The executable.
        program: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A file operation failed.
    #[error("{about} {path}: {source}")]
    Io {
        /// What we were doing.
        about: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A process-control system call failed.
    #[error("{about}: {source}")]
    Sys {
        /// What we were doing.
        about: &'static str,
        /// The cause.
        source: nix::Error,
    },
    /// Waiting on the child failed.
    #[error("waiting for pid {pid}: {source}")]
    Wait {
        /// The child.
        pid: u32,
        /// The cause.
        source: io::Error,
    },
    /// The process survived SIGKILL for the whole deadline (stuck in the kernel).
    #[error("pid {pid} did not exit {after:?} after SIGKILL")]
    Unkillable {
        /// The process.
        pid: u32,
        /// How long we waited.
        after: Duration,
    },
}

/// Makes this process a child subreaper: orphans of the JVM (a launcher that forks and
/// exits, helper processes) are re-parented to us instead of to pid 1, so they stay in
/// view. Call once at startup.
pub fn become_subreaper() -> Result<(), ProcessError> {
    nix::sys::prctl::set_child_subreaper(true).map_err(|source| ProcessError::Sys {
        about: "PR_SET_CHILD_SUBREAPER",
        source,
    })
}

/// Reaps zombie orphans of the gateway's process group: processes the JVM forked that
/// outlived it, were re-parented to us (we are a subreaper) and have since exited.
///
/// Only members of group `pgid` other than its leader are touched: the leader is the
/// [`GatewayProcess`] tokio waits for, and other children belong to other owners. Call it
/// after the gateway exits and on SIGCHLD. Returns the pids reaped.
pub fn reap_group_orphans(pgid: u32) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut reaped = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == pgid {
            continue;
        }
        let Some(crate::procfs::Stat {
            state, ppid, pgrp, ..
        }) = crate::procfs::stat(pid)
        else {
            continue;
        };
        if state == 'Z' && ppid == me && pgrp == pgid {
            use nix::sys::wait::{waitpid, WaitPidFlag};
            if waitpid(pid_of(pid), Some(WaitPidFlag::WNOHANG)).is_ok() {
                debug!(pid, pgid, "reaped an orphan of the gateway");
                reaped.push(pid);
            }
        }
    }
    reaped
}

/// How to spawn.
#[derive(Clone, Debug)]
pub struct SpawnOptions {
    /// Where the JVM's stdout and stderr go (appended; created 0600).
    pub log_path: PathBuf,
    /// Signal the kernel sends the JVM when the thread that spawned it dies.
    ///
    /// `Some(SIGKILL)` (the default) guarantees no orphaned gateway; it also means a
    /// `kill -9` of ibwarden takes the JVM down hard, so adoption only matters when this
    /// is `None` or the signal is caught.
    pub parent_death_signal: Option<Signal>,
}

impl SpawnOptions {
    /// Defaults: log to `log_path`, SIGKILL on parent death.
    pub fn new(log_path: impl Into<PathBuf>) -> Self {
        SpawnOptions {
            log_path: log_path.into(),
            parent_death_signal: Some(Signal::SIGKILL),
        }
    }
}

/// A running JVM we started.
///
/// Dropping it while the process still runs kills the whole process group (logged):
/// a gateway must never be left running without a supervisor that knows about it. Use
/// [`GatewayProcess::detach`] to leave it running on purpose.
#[derive(Debug)]
pub struct GatewayProcess {
    child: tokio::process::Child,
    pid: u32,
    pidfd: Arc<PidFd>,
    started: SystemTime,
    exited: bool,
    armed: bool,
}

/// Starts the JVM described by `cmd`.
///
/// Must be called from a runtime worker thread (an async task), not from
/// `spawn_blocking`: the parent-death signal fires when the *thread* that forked exits,
/// and blocking-pool threads exit when idle.
pub fn spawn(cmd: &JvmCommand, opts: &SpawnOptions) -> Result<GatewayProcess, ProcessError> {
    let log = open_jvm_log(&opts.log_path)?;
    let log_err = log.try_clone().map_err(|source| ProcessError::Io {
        about: "duplicating the handle of",
        path: opts.log_path.clone(),
        source,
    })?;

    let mut command = tokio::process::Command::new(&cmd.program);
    command
        .args(&cmd.args)
        .env_clear()
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&cmd.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .process_group(0)
        // Our guard decides what happens on drop, not tokio.
        .kill_on_drop(false);
    let death_signal = opts.parent_death_signal;
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs between fork and exec; it only makes async-signal-safe
    // system calls (prctl, getppid) and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if let Some(sig) = death_signal {
                nix::sys::prctl::set_pdeathsig(sig).map_err(io::Error::from)?;
                // The parent may have died before prctl took effect: then no signal would
                // ever come. Refuse to start an unsupervised gateway.
                if nix::unistd::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(|source| ProcessError::Spawn {
        program: cmd.program.clone(),
        source,
    })?;
    let pid = child.id().ok_or_else(|| ProcessError::Spawn {
        program: cmd.program.clone(),
        source: io::Error::other("child exited before its pid was read"),
    })?;
    // The child is not reaped until we wait for it, so the pid cannot be reused here.
    let pidfd = PidFd::open(pid).map_err(|source| ProcessError::Wait { pid, source })?;
    debug!(pid, program = %cmd.program.display(), log = %opts.log_path.display(), "gateway jvm spawned");
    Ok(GatewayProcess {
        child,
        pid,
        pidfd: Arc::new(pidfd),
        started: SystemTime::now(),
        exited: false,
        armed: true,
    })
}

impl GatewayProcess {
    /// The JVM's pid; also its process group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// When it was spawned (to ignore crash reports older than this launch).
    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// A pidfd for the process, usable by [`terminate_pidfd`] while another task waits.
    pub fn pidfd(&self) -> Arc<PidFd> {
        Arc::clone(&self.pidfd)
    }

    /// Waits for the exit and reaps the process. Cancel-safe (for `select!`); no polling.
    pub async fn wait(&mut self) -> Result<ExitStatus, ProcessError> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|source| ProcessError::Wait {
                pid: self.pid,
                source,
            })?;
        self.exited = true;
        Ok(status)
    }

    /// Leaves the process running when this handle is dropped (e.g. for adoption by the
    /// next ibwarden). Returns the pid.
    pub fn detach(mut self) -> u32 {
        self.armed = false;
        self.pid
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if !self.armed || self.exited {
            return;
        }
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        warn!(
            pid = self.pid,
            "gateway handle dropped while running; killing its process group"
        );
        let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
    }
}

/// Opens the JVM log for appending, rotating it first if it grew too big.
fn open_jvm_log(path: &Path) -> Result<File, ProcessError> {
    if let Ok(meta) = fs::metadata(path) {
        if meta.len() > JVM_LOG_ROTATE_BYTES {
            let mut old = path.as_os_str().to_os_string();
            old.push(".1");
            let _ = fs::rename(path, old);
        }
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| ProcessError::Io {
            about: "opening the jvm log",
            path: path.to_path_buf(),
            source,
        })?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // A separator so one launch's output can be told from the next.
    let _ = writeln!(
        file,
        "--- ibwarden: launching the gateway jvm at unix time {now} ---"
    );
    Ok(file)
}

/// How the JVM ended (measured, IBC's source).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// Exit code 0: a user-style close, or the nightly auto-restart exit.
    Clean,
    /// The JVM aborted (SIGABRT/SIGSEGV, or code 134 through a shell); `hs_err` is the
    /// crash report if one was found.
    Crash {
        /// The signal, if it died by one.
        signal: Option<i32>,
        /// `hs_err_pid<pid>.log`, if found.
        hs_err: Option<PathBuf>,
    },
    /// Killed by SIGKILL/SIGTERM (or exit code 137/143: killed through a shell, or a JVM
    /// that ran its shutdown hooks on SIGTERM).
    Killed {
        /// The signal number (9 or 15).
        signal: i32,
    },
    /// Exit code 1: what the JVM does when the X server connection is lost.
    XConnectionLost,
    /// Anything else.
    Other {
        /// Exit code, if it exited.
        code: Option<i32>,
        /// Signal, if it was killed by one.
        signal: Option<i32>,
    },
}

/// Classifies an exit status. Pure; `hs_err` is what [`find_hs_err`] found (attached to
/// crashes only).
pub fn classify_exit(status: ExitStatus, hs_err: Option<PathBuf>) -> ExitKind {
    classify_raw(status.code(), status.signal(), hs_err)
}

/// [`classify_exit`] on the decoded parts, for statuses that did not come from `wait`.
pub fn classify_raw(code: Option<i32>, signal: Option<i32>, hs_err: Option<PathBuf>) -> ExitKind {
    const SIGABRT: i32 = libc::SIGABRT;
    const SIGSEGV: i32 = libc::SIGSEGV;
    const SIGBUS: i32 = libc::SIGBUS;
    const SIGKILL: i32 = libc::SIGKILL;
    const SIGTERM: i32 = libc::SIGTERM;
    match (code, signal) {
        (Some(0), _) => ExitKind::Clean,
        (_, Some(s @ (SIGABRT | SIGSEGV | SIGBUS))) => ExitKind::Crash {
            signal: Some(s),
            hs_err,
        },
        (Some(134), _) => ExitKind::Crash {
            signal: None,
            hs_err,
        },
        (_, Some(s @ (SIGKILL | SIGTERM))) => ExitKind::Killed { signal: s },
        (Some(137), _) => ExitKind::Killed { signal: SIGKILL },
        (Some(143), _) => ExitKind::Killed { signal: SIGTERM },
        (Some(1), _) => ExitKind::XConnectionLost,
        (code, signal) => ExitKind::Other { code, signal },
    }
}

/// Finds the crash report of `pid` in `work_dir` (`hs_err_pid<pid>.log`); failing that,
/// the newest `hs_err_pid*.log` modified at or after `since` (a JVM that re-executed
/// itself has another pid). Old reports from earlier launches are never returned.
pub fn find_hs_err(work_dir: &Path, pid: u32, since: SystemTime) -> Option<PathBuf> {
    let exact = work_dir.join(format!("hs_err_pid{pid}.log"));
    if exact.is_file() {
        return Some(exact);
    }
    // File times come from the kernel's coarse clock and can read slightly *before* a
    // precise `SystemTime::now()` taken earlier; allow for that.
    let since = since.checked_sub(Duration::from_secs(2)).unwrap_or(since);
    let entries = fs::read_dir(work_dir).ok()?;
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.as_bytes();
            name.starts_with(b"hs_err_pid") && name.ends_with(b".log")
        })
        .filter_map(|e| {
            let modified = e.metadata().ok()?.modified().ok()?;
            (modified >= since).then(|| (modified, e.path()))
        })
        .max()
        .map(|(_, p)| p)
}

/// A Linux pidfd: becomes readable when the process exits, whether or not it is our child.
#[derive(Debug)]
pub struct PidFd {
    pid: u32,
    fd: AsyncFd<OwnedFd>,
}

impl PidFd {
    /// Opens a pidfd for `pid`. Fails with ESRCH if no such process exists. Must be called
    /// inside a tokio runtime (the fd is registered with its reactor).
    ///
    /// For a process that is not our child, the pid could have been reused between
    /// learning it and this call; check its identity after opening ([`is_our_jvm`]).
    pub fn open(pid: u32) -> io::Result<PidFd> {
        let raw_pid =
            libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw_pid, libc::PIDFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = i32::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
        // SAFETY: the kernel just returned this fd to us; nothing else owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the OwnedFd is moved into the AsyncFd, which keeps it open and unchanged
        // for its whole lifetime.
        let fd = unsafe { AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE) }?;
        Ok(PidFd { pid, fd })
    }

    /// The pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Resolves once the process has exited (including "is a zombie"). Cancel-safe.
    pub async fn exited(&self) -> io::Result<()> {
        // Readiness never clears: an exited process stays exited, so no need to reset it.
        let _guard = self.fd.readable().await?;
        Ok(())
    }

    /// True if the process has already exited.
    pub fn has_exited(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.get_ref().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        n > 0 && pfd.revents & libc::POLLIN != 0
    }
}

/// How a [`terminate`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Termination {
    /// The process was already gone.
    AlreadyGone,
    /// It exited within the grace period after SIGTERM.
    Terminated,
    /// It ignored SIGTERM for the whole grace period and was killed.
    Killed,
}

/// SIGKILL must take effect within this; a process still alive is stuck in the kernel.
const KILL_DEADLINE: Duration = Duration::from_secs(10);

/// Stops the process group led by `pgid`: SIGTERM (plus SIGCONT, so a stopped JVM can run
/// its shutdown hooks), wait up to `grace` for the leader to exit, then SIGKILL.
///
/// The polite step before this (WM_DELETE_WINDOW and the exit dialog) is the driver's,
/// over X11. Works for our child and for an adopted JVM alike; does not reap (the owner
/// of the [`GatewayProcess`] does, in its `wait`).
pub async fn terminate(pgid: u32, grace: Duration) -> Result<Termination, ProcessError> {
    match PidFd::open(pgid) {
        Ok(fd) => terminate_pidfd(&fd, grace).await,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
            // Leader gone; anything left in its group goes too.
            let _ = killpg(pid_of(pgid), Signal::SIGKILL);
            Ok(Termination::AlreadyGone)
        }
        Err(e) => Err(ProcessError::Wait {
            pid: pgid,
            source: e,
        }),
    }
}

/// [`terminate`] with a pidfd opened earlier (no pid-reuse window).
pub async fn terminate_pidfd(leader: &PidFd, grace: Duration) -> Result<Termination, ProcessError> {
    let pgid = pid_of(leader.pid());
    if leader.has_exited() {
        let _ = killpg(pgid, Signal::SIGKILL);
        return Ok(Termination::AlreadyGone);
    }
    debug!(
        pgid = leader.pid(),
        ?grace,
        "sending SIGTERM to the gateway process group"
    );
    signal_group(pgid, Signal::SIGTERM)?;
    let _ = killpg(pgid, Signal::SIGCONT);
    if let Ok(r) = tokio::time::timeout(grace, leader.exited()).await {
        r.map_err(|source| ProcessError::Wait {
            pid: leader.pid(),
            source,
        })?;
        // Leftover group members (helpers the JVM forked) do not get a grace of their own.
        let _ = killpg(pgid, Signal::SIGKILL);
        return Ok(Termination::Terminated);
    }
    warn!(
        pgid = leader.pid(),
        ?grace,
        "gateway ignored SIGTERM; sending SIGKILL"
    );
    signal_group(pgid, Signal::SIGKILL)?;
    match tokio::time::timeout(KILL_DEADLINE, leader.exited()).await {
        Ok(r) => {
            r.map_err(|source| ProcessError::Wait {
                pid: leader.pid(),
                source,
            })?;
            Ok(Termination::Killed)
        }
        Err(_) => Err(ProcessError::Unkillable {
            pid: leader.pid(),
            after: KILL_DEADLINE,
        }),
    }
}

fn signal_group(pgid: Pid, sig: Signal) -> Result<(), ProcessError> {
    match killpg(pgid, sig) {
        // Gone between the check and the signal: that is the goal anyway.
        Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
        Err(source) => Err(ProcessError::Sys {
            about: "signalling the gateway process group",
            source,
        }),
    }
}

fn pid_of(pid: u32) -> Pid {
    Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX))
}

// ---- pid file and adoption -----------------------------------------------------------

/// What identifies "our" JVM among all processes: the main class and the exact settings
/// directory on its command line (two ibwarden instances never share a settings dir).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JvmIdentity {
    /// `ibgateway.GWClient` or `jclient.LoginFrame`.
    pub main_class: String,
    /// The `-DjtsConfigDir=` value we launch with.
    pub settings_dir: PathBuf,
}

impl JvmIdentity {
    fn matches(&self, cmdline: &[OsString]) -> bool {
        let mut config_arg = OsString::from("-DjtsConfigDir=");
        config_arg.push(self.settings_dir.as_os_str());
        let has_main = cmdline.iter().any(|a| a == OsStr::new(&self.main_class));
        let has_config = cmdline.contains(&config_arg);
        has_main && has_config
    }
}

/// Writes `pid` to `path` atomically: temp file in the same directory, fsync, rename,
/// fsync of the directory. A crash leaves either the old or the new file, never a torn one.
pub fn write_pidfile(path: &Path, pid: u32) -> Result<(), ProcessError> {
    let io_err = |about: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| ProcessError::Io {
            about,
            path: p,
            source,
        }
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp_name = OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or(OsStr::new("pid")));
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err("creating", &tmp))?;
    file.write_all(format!("{pid}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_err("writing", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("renaming into place", path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing directory", dir))?;
    Ok(())
}

/// Reads a pid file. `Ok(None)` if it does not exist; an error names the file if it is
/// unreadable or does not hold a pid.
pub fn read_pidfile(path: &Path) -> Result<Option<u32>, ProcessError> {
    use crate::state::{read_regular_file, ReadError};
    let io = |source| ProcessError::Io {
        about: "reading",
        path: path.to_path_buf(),
        source,
    };
    // Ours, but in a directory the outside world can reach: a regular file of a few bytes.
    let text = match read_regular_file(path, 32) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(ReadError::Missing) => return Ok(None),
        Err(e) => return Err(io(e.into())),
    };
    match text.trim().parse::<u32>() {
        Ok(pid) if pid > 1 => Ok(Some(pid)),
        _ => Err(ProcessError::Io {
            about: "parsing",
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidData, "not a pid"),
        }),
    }
}

/// Removes the pid file; a missing file is fine.
pub fn remove_pidfile(path: &Path) -> Result<(), ProcessError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ProcessError::Io {
            about: "removing",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// True if `pid` is alive (not a zombie) and its command line identifies it as `id`.
pub fn is_our_jvm(pid: u32, id: &JvmIdentity) -> bool {
    if !crate::procfs::is_alive(pid) {
        return false;
    }
    crate::procfs::cmdline(pid).is_some_and(|cmd| id.matches(&cmd))
}

/// The pid recorded in `pidfile` if that process is still our JVM (see [`is_our_jvm`]).
/// A missing, unreadable or stale pid file gives `None` (logged); the caller may then
/// remove it and launch.
pub fn find_adoptable(pidfile: &Path, id: &JvmIdentity) -> Option<u32> {
    let pid = match read_pidfile(pidfile) {
        Ok(Some(pid)) => pid,
        Ok(None) => return None,
        Err(e) => {
            warn!(error = %e, "ignoring unusable pid file");
            return None;
        }
    };
    if is_our_jvm(pid, id) {
        info!(pid, "found the gateway jvm from a previous run");
        Some(pid)
    } else {
        debug!(pid, "pid file is stale: no such gateway process");
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(code: Option<i32>, signal: Option<i32>) -> ExitKind {
        classify_raw(code, signal, None)
    }

    #[test]
    fn classification_table() {
        assert_eq!(raw(Some(0), None), ExitKind::Clean);
        assert_eq!(raw(Some(1), None), ExitKind::XConnectionLost);
        assert_eq!(
            raw(Some(134), None),
            ExitKind::Crash {
                signal: None,
                hs_err: None
            }
        );
        assert_eq!(
            raw(None, Some(6)),
            ExitKind::Crash {
                signal: Some(6),
                hs_err: None
            }
        );
        assert_eq!(
            raw(None, Some(11)),
            ExitKind::Crash {
                signal: Some(11),
                hs_err: None
            }
        );
        assert_eq!(raw(Some(137), None), ExitKind::Killed { signal: 9 });
        assert_eq!(raw(Some(143), None), ExitKind::Killed { signal: 15 });
        assert_eq!(raw(None, Some(9)), ExitKind::Killed { signal: 9 });
        assert_eq!(raw(None, Some(15)), ExitKind::Killed { signal: 15 });
        assert_eq!(
            raw(Some(87), None),
            ExitKind::Other {
                code: Some(87),
                signal: None
            }
        );
        assert_eq!(
            raw(None, Some(1)),
            ExitKind::Other {
                code: None,
                signal: Some(1)
            }
        );
        // hs_err is carried for crashes only.
        let p = PathBuf::from("/w/hs_err_pid7.log");
        assert_eq!(
            classify_raw(Some(134), None, Some(p.clone())),
            ExitKind::Crash {
                signal: None,
                hs_err: Some(p.clone())
            }
        );
        assert_eq!(classify_raw(Some(0), None, Some(p)), ExitKind::Clean);
    }

    #[test]
    fn classification_of_wait_statuses() {
        // Raw wait(2) statuses: exit code in bits 8-15, signal in bits 0-6.
        assert_eq!(
            classify_exit(ExitStatus::from_raw(0), None),
            ExitKind::Clean
        );
        assert_eq!(
            classify_exit(ExitStatus::from_raw(1 << 8), None),
            ExitKind::XConnectionLost
        );
        assert_eq!(
            classify_exit(ExitStatus::from_raw(9), None),
            ExitKind::Killed { signal: 9 }
        );
        assert_eq!(
            classify_exit(ExitStatus::from_raw(6 | 0x80), None),
            ExitKind::Crash {
                signal: Some(6),
                hs_err: None
            }
        );
    }

    #[test]
    fn identity_needs_main_class_and_exact_settings_dir() {
        let id = JvmIdentity {
            main_class: "ibgateway.GWClient".into(),
            settings_dir: "/s/jts".into(),
        };
        let cmd = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(id.matches(&cmd(&[
            "java",
            "-DjtsConfigDir=/s/jts",
            "ibgateway.GWClient"
        ])));
        assert!(!id.matches(&cmd(&[
            "java",
            "-DjtsConfigDir=/s/jts2",
            "ibgateway.GWClient"
        ])));
        assert!(!id.matches(&cmd(&[
            "java",
            "-DjtsConfigDir=/s/jts",
            "jclient.LoginFrame"
        ])));
        assert!(!id.matches(&cmd(&["grep", "ibgateway.GWClient /s/jts"])));
    }
}
