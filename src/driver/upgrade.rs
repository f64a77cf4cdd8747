//! Picking up a new binary without an extra login. A package upgrade replaces
//! `/usr/bin/ibwarden` but never restarts a running instance (that could mean a new login
//! with the second factor in market hours). The next time the gateway restarts anyway — the
//! daily restart, `ibwarden restart`, a relaunch after a crash — the driver sees that its own
//! binary was replaced (`/proc/self/exe` names a deleted file), and instead of launching the
//! gateway it stops its adapters and `exec`s the new binary with the same arguments: the same
//! pid for systemd, the state on disk, the gateway launched by the new code (with its
//! restart token when it has one).
//!
//! Not when a secret came from the environment: ibwarden wiped it from its own environment
//! at start, so the new image could not load it. A warning says so, once.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Mutex;

/// The binary to exec once the runtime has stopped, set by [`request`].
static PENDING: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The path the running binary was started from, if the file there is no longer the one
/// running (it was replaced, as dpkg does with a rename) and a new executable is in its place.
pub(crate) fn replaced_binary() -> Option<PathBuf> {
    let link = std::fs::read_link("/proc/self/exe").ok()?;
    let text = link.to_str()?;
    let path = PathBuf::from(text.strip_suffix(" (deleted)")?);
    let meta = std::fs::metadata(&path).ok()?;
    use std::os::unix::fs::PermissionsExt;
    (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(path)
}

/// Asks for `path` to be exec'd when [`crate::driver::run`] has returned.
pub(crate) fn request(path: PathBuf) {
    if let Ok(mut p) = PENDING.lock() {
        *p = Some(path);
    }
}

/// True once [`request`] was called (the stop is a re-exec, not an exit).
pub(crate) fn requested() -> bool {
    PENDING.lock().map(|p| p.is_some()).unwrap_or(false)
}

/// Replaces the process with the new binary, same arguments and environment, if one was
/// requested. Call it after the runtime is dropped (no other thread left). Returns only if
/// nothing was requested or the exec failed (the error then says why).
pub fn exec_if_requested() -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    let Some(path) = PENDING.lock().ok().and_then(|mut p| p.take()) else {
        return Ok(());
    };
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    tracing::info!(binary = %path.display(), "re-executing the upgraded ibwarden");
    Err(std::process::Command::new(&path).args(args).exec())
}
