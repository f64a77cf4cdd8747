//! The few facts that must survive a crash or a restart of ibwarden itself, and the atomic
//! file write used for them (and for config and secret files written by `setup`).
//!
//! What is kept is what protects the account: the last TOTP step typed (a restart must not
//! replay a code) and the times of recent failed logins (the lockout budget is per hour, not
//! per process). The core receives these values; the driver saves after each change.
//!
//! The file is `<state_dir>/state.json`. Unknown fields are ignored and missing ones take
//! their defaults, so older and newer versions of ibwarden can read each other's file.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Name of the state file inside the state directory.
pub const STATE_FILE: &str = "state.json";

/// Errors reading or writing persisted state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// An IO error on a named file.
    #[error("{about} {}: {source}", path.display())]
    Io {
        /// What was being done ("cannot read", "cannot write", ...).
        about: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The state file exists but is not valid JSON of the expected shape.
    #[error(
        "state file {} is corrupt ({source}); move it away to start with empty state \
         (the TOTP replay guard and failed-login count are then lost)",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The JSON error (line and column, no content).
        #[source]
        source: serde_json::Error,
    },
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the new content, never
/// a mix: a temporary file in the same directory is written, fsynced and renamed over
/// `path`, then the directory is fsynced so the rename itself is durable. The file gets mode
/// 0600 (it may hold a secret).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.as_deref().unwrap_or("file"),
        std::process::id()
    ));
    let io_err = |about: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| StateError::Io {
            about,
            path: p,
            source,
        }
    };
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("cannot create", &tmp))?;
        // A leftover temp file from a crashed run may have had other modes.
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io_err("cannot chmod", &tmp))?;
        f.write_all(bytes).map_err(io_err("cannot write", &tmp))?;
        f.sync_all().map_err(io_err("cannot fsync", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("cannot rename into", path))?;
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("cannot fsync directory", &dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates a directory (and parents) with mode 0700 if it does not exist.
pub fn create_private_dir(dir: &Path) -> Result<(), StateError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StateError::Io {
            about: "cannot create directory",
            path: dir.to_path_buf(),
            source,
        })
}

/// State persisted across restarts of ibwarden: the core's own [`Persisted`] (one type for
/// the machine and the file), written here.
pub use crate::core::Persisted as PersistedState;

use crate::core::Persisted;

impl Persisted {
    /// Path of the state file in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    /// Loads `<dir>/state.json`. A missing file (first run) gives the default state; a
    /// corrupt one is an error naming the file, because silently starting fresh would forget
    /// which TOTP step was used.
    pub fn load(dir: &Path) -> Result<PersistedState, StateError> {
        let path = Self::path(dir);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(StateError::Io {
                    about: "cannot read",
                    path,
                    source,
                })
            }
        };
        serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt { path, source })
    }

    /// Saves atomically to `<dir>/state.json`, creating `dir` (mode 0700) if needed.
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        create_private_dir(dir)?;
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|source| StateError::Corrupt {
            path: Self::path(dir),
            source,
        })?;
        bytes.push(b'\n');
        write_atomic(&Self::path(dir), &bytes)
    }

    /// Records that the code of `step` was typed. Never moves backwards.
    pub fn record_totp_step(&mut self, step: u64) {
        self.last_totp_step = Some(self.last_totp_step.map_or(step, |s| s.max(step)));
    }

    /// Records a failed login at `now_unix` and forgets those older than `keep_secs`.
    pub fn record_failed_login(&mut self, now_unix: u64, keep_secs: u64) {
        self.failed_logins.push(now_unix);
        self.prune_failed_logins(now_unix, keep_secs);
    }

    /// Drops failed logins older than `keep_secs` before `now_unix`.
    pub fn prune_failed_logins(&mut self, now_unix: u64, keep_secs: u64) {
        let cutoff = now_unix.saturating_sub(keep_secs);
        self.failed_logins.retain(|&t| t > cutoff);
        self.failed_logins.sort_unstable();
    }

    /// Failed logins within the last `window_secs` before `now_unix`.
    pub fn failed_logins_within(&self, now_unix: u64, window_secs: u64) -> usize {
        let cutoff = now_unix.saturating_sub(window_secs);
        self.failed_logins.iter().filter(|&&t| t > cutoff).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::totp;
    use std::time::Duration;

    #[test]
    fn missing_file_is_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            PersistedState::load(dir.path()).expect("load"),
            PersistedState::default()
        );
    }

    #[test]
    fn corrupt_file_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(STATE_FILE), b"{\"last_totp_step\": \"x").expect("write");
        let err = PersistedState::load(dir.path()).expect_err("corrupt");
        let msg = err.to_string();
        assert!(msg.contains(STATE_FILE), "{msg}");
        assert!(msg.contains("corrupt"), "{msg}");
    }

    #[test]
    fn save_is_private_and_roundtrips_unknown_fields_tolerated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("a/b");
        let mut st = PersistedState::default();
        st.record_totp_step(57_000_000);
        st.record_failed_login(1000, 3600);
        st.save(&sub).expect("save");
        let mode = fs::metadata(sub.join(STATE_FILE))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(PersistedState::load(&sub).expect("load"), st);
        // No temp file left behind.
        let names: Vec<_> = fs::read_dir(&sub)
            .expect("readdir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(STATE_FILE)]);
        // A newer version's extra fields are ignored.
        fs::write(
            sub.join(STATE_FILE),
            br#"{"last_totp_step": 5, "future_field": [1,2]}"#,
        )
        .expect("write");
        assert_eq!(
            PersistedState::load(&sub).expect("load").last_totp_step,
            Some(5)
        );
    }

    #[test]
    fn write_atomic_replaces_and_tightens_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        fs::write(&p, b"old").expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod");
        write_atomic(&p, b"new").expect("atomic");
        assert_eq!(fs::read(&p).expect("read"), b"new");
        assert_eq!(
            fs::metadata(&p).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        let err = write_atomic(&dir.path().join("missing/f"), b"x").expect_err("no dir");
        assert!(err.to_string().contains("missing"));
    }

    #[test]
    fn totp_step_never_repeats_across_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let min = Duration::from_secs(8);
        let now_ms = 1_700_000_010_000u64; // 20 s left in its step.
                                           // First process: plan, type, persist.
        let mut st = PersistedState::load(dir.path()).expect("load");
        let first = totp::plan(now_ms, min, st.last_totp_step);
        assert_eq!(first.wait, Duration::ZERO);
        st.record_totp_step(first.step);
        st.save(dir.path()).expect("save");
        drop(st);
        // "Restart" one second later: a fresh load must not hand out the same step.
        let st = PersistedState::load(dir.path()).expect("reload");
        let second = totp::plan(now_ms + 1_000, min, st.last_totp_step);
        assert!(second.step > first.step);
        assert!(second.wait > Duration::ZERO);
    }

    #[test]
    fn failed_login_window() {
        let mut st = PersistedState::default();
        st.record_failed_login(1_000, 3_600);
        st.record_failed_login(2_000, 3_600);
        st.record_failed_login(5_000, 3_600);
        assert_eq!(st.failed_logins, vec![2_000, 5_000]);
        assert_eq!(st.failed_logins_within(5_000, 3_600), 2);
        assert_eq!(st.failed_logins_within(5_000, 1_000), 1);
        st.record_totp_step(10);
        st.record_totp_step(9);
        assert_eq!(st.last_totp_step, Some(10));
    }
}
