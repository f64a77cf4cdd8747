//! The few facts that must survive a crash or a restart of ibwarden itself, and the atomic
//! file write used for them (and for config and secret files written by `setup`).
//!
//! What is kept is what protects the account: the last TOTP step typed (a restart must not
//! replay a code) and the times of recent failed logins (the lockout budget is per hour, not
//! per process). The core receives these values; the driver saves after each change.
//!
//! The file is `<state_dir>/state.json`: `{"version": 1, "last_totp_step": …,
//! "failed_logins": […], "credentials_rejected": …}`, every field required. A file that is
//! anything else (empty object, a list, unknown fields, a newer version, a symlink, a FIFO,
//! larger than [`MAX_STATE_BYTES`]) is refused with how to recover: never read as "no
//! state", which would forget a halt, the spent login budget or the last TOTP step. The file
//! written before versions existed (the same three fields, no `version`) is read as version 0.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Name of the state file inside the state directory.
pub const STATE_FILE: &str = "state.json";

/// The state file's format version.
pub const STATE_VERSION: u64 = 1;

/// A state file is a few hundred bytes; anything over this is not ours.
pub const MAX_STATE_BYTES: u64 = 64 * 1024;

/// What recovering from a refused state file costs, said with the refusal.
const RECOVER: &str = "move it away to start with empty state (the TOTP replay guard, the \
                       failed-login budget and a halt after a rejected password are then \
                       forgotten: wait 30 s and an hour before the next start)";

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
    #[error("state file {} is corrupt ({source}); {RECOVER}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The JSON error (line and column, no content).
        #[source]
        source: serde_json::Error,
    },
    /// The state file is not a state file ibwarden wrote.
    #[error("state file {} is refused: {why}; {RECOVER}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it (never its content).
        why: String,
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

/// The file's shape (see the module doc).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    #[serde(default)]
    version: u64,
    last_totp_step: Option<u64>,
    failed_logins: Vec<u64>,
    credentials_rejected: Option<u64>,
}

/// Why [`read_regular_file`] read nothing.
#[derive(Debug)]
pub enum ReadError {
    /// There is no file.
    Missing,
    /// There is something ibwarden will not read (why, without content).
    Refused(String),
    /// An OS error.
    Io(io::Error),
}

/// Opens `path` for reading such that nothing planted there can block: `O_NONBLOCK` makes a
/// FIFO open at once (instead of waiting for a writer), `O_NOCTTY` keeps a terminal from
/// becoming ours. Returns the file with its `fstat`, so the caller checks the file it holds
/// and not whatever the path names a moment later. `follow`: a symlink is followed (else it
/// fails with `ELOOP`).
///
/// Every reader of a file from outside (state, secrets, pid file, config, launcher.log,
/// the install's files) opens it here, then decides on the metadata.
pub fn open_nonblocking(path: &Path, follow: bool) -> io::Result<(fs::File, fs::Metadata)> {
    let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nofollow | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)?;
    let meta = f.metadata()?;
    Ok((f, meta))
}

/// Reads `file` to its end, but never more than `max + 1` bytes: a result longer than `max`
/// means the file holds more (it grew, or it is not what it claims), and nothing beyond the
/// cap was ever allocated.
pub fn read_at_most(file: &fs::File, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::with_capacity(usize::try_from(max.min(64 * 1024)).unwrap_or(0));
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Reads a file that must be a regular file (a symlink is not followed, a FIFO or device is
/// not opened for reading without `O_NONBLOCK`, so nothing can make the read block) of at
/// most `max` bytes.
pub fn read_regular_file(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    read_regular(path, max, false)
}

/// Like [`read_regular_file`], but a symlink to a regular file is followed (a config under
/// `/etc` may be one, as on NixOS; an install's files may be links into a package).
pub fn read_regular_file_following(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    read_regular(path, max, true)
}

fn read_regular(path: &Path, max: u64, follow: bool) -> Result<Vec<u8>, ReadError> {
    let (f, meta) = match open_nonblocking(path, follow) {
        Ok(x) => x,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadError::Missing),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(ReadError::Refused("it is a symbolic link".into()))
        }
        Err(e) => return Err(ReadError::Io(e)),
    };
    if !meta.file_type().is_file() {
        return Err(ReadError::Refused("it is not a regular file".into()));
    }
    if meta.len() > max {
        return Err(ReadError::Refused(format!(
            "it is {} bytes, more than the {max} a valid file can have",
            meta.len()
        )));
    }
    let bytes = read_at_most(&f, max).map_err(ReadError::Io)?;
    if bytes.len() as u64 > max {
        return Err(ReadError::Refused(format!(
            "it grew past {max} bytes while read"
        )));
    }
    Ok(bytes)
}

/// [`read_regular_file_following`] as an `io::Result`, for callers that report OS errors:
/// a small file (an install's, an X authority file) that must be regular and at most `max`
/// bytes. A refusal is `InvalidData` with the reason.
pub fn read_file_capped(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    read_regular_file_following(path, max).map_err(io::Error::from)
}

impl From<ReadError> for io::Error {
    /// `ENOENT` for a missing file, `InvalidData` with the reason for a refused one.
    fn from(e: ReadError) -> io::Error {
        match e {
            ReadError::Io(e) => e,
            ReadError::Missing => io::Error::from_raw_os_error(libc::ENOENT),
            ReadError::Refused(why) => io::Error::new(io::ErrorKind::InvalidData, why),
        }
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Missing => f.write_str("it does not exist"),
            ReadError::Refused(why) => f.write_str(why),
            ReadError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl Persisted {
    /// Path of the state file in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    /// Loads `<dir>/state.json`. A missing file (first run) gives the default state;
    /// anything but a regular file of the current (or the pre-version) shape is an error
    /// naming the file and the recovery, because silently starting fresh would forget which
    /// TOTP step was used, the spent login budget and a halt. Blocking: call it off the
    /// async runtime's threads.
    pub fn load(dir: &Path) -> Result<PersistedState, StateError> {
        let path = Self::path(dir);
        let invalid = |why: String| StateError::Invalid {
            path: path.clone(),
            why,
        };
        let bytes = match read_regular_file(&path, MAX_STATE_BYTES) {
            Ok(b) => b,
            Err(ReadError::Missing) => return Ok(Self::default()),
            Err(ReadError::Refused(why)) => return Err(invalid(why)),
            Err(ReadError::Io(source)) => {
                return Err(StateError::Io {
                    about: "cannot read",
                    path,
                    source,
                })
            }
        };
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
                path: path.clone(),
                source,
            })?;
        let serde_json::Value::Object(map) = &value else {
            return Err(invalid("it is not a JSON object".into()));
        };
        let version = match map.get("version") {
            None => 0,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| invalid("`version` is not a number".into()))?,
        };
        if version > STATE_VERSION {
            return Err(invalid(format!(
                "it has version {version}, written by a newer ibwarden (this one reads up to \
                 {STATE_VERSION})"
            )));
        }
        for key in map.keys() {
            if !matches!(
                key.as_str(),
                "version" | "last_totp_step" | "failed_logins" | "credentials_rejected"
            ) {
                return Err(invalid(format!("unknown field `{key}`")));
            }
        }
        for key in ["last_totp_step", "failed_logins", "credentials_rejected"] {
            if !map.contains_key(key) {
                return Err(invalid(format!("the field `{key}` is missing")));
            }
        }
        let disk: OnDisk = serde_json::from_value(value).map_err(|source| StateError::Corrupt {
            path: path.clone(),
            source,
        })?;
        Ok(Persisted {
            last_totp_step: disk.last_totp_step,
            failed_logins: disk.failed_logins,
            credentials_rejected: disk.credentials_rejected,
        })
    }

    /// Saves atomically to `<dir>/state.json`, creating `dir` (mode 0700) if needed.
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        create_private_dir(dir)?;
        let disk = OnDisk {
            version: STATE_VERSION,
            last_totp_step: self.last_totp_step,
            failed_logins: self.failed_logins.clone(),
            credentials_rejected: self.credentials_rejected,
        };
        let mut bytes = serde_json::to_vec_pretty(&disk).map_err(|source| StateError::Corrupt {
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
    fn save_is_private_and_roundtrips() {
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
        let text = fs::read_to_string(sub.join(STATE_FILE)).expect("read");
        assert!(text.contains("\"version\": 1"), "{text}");
    }

    fn refused(content: &[u8]) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(STATE_FILE), content).expect("write");
        PersistedState::load(dir.path())
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn a_state_file_that_is_not_ours_is_refused_never_reset() {
        for (content, why) in [
            (&b"{}"[..], "the field `last_totp_step` is missing"),
            (b"[]", "not a JSON object"),
            (b"[5, [], null]", "not a JSON object"),
            (b"null", "not a JSON object"),
            (
                br#"{"version":1,"last_totp_step":5,"failed_logins":[],"credentials_rejected":null,"x":1}"#,
                "unknown field `x`",
            ),
            (
                br#"{"version":9,"last_totp_step":5,"failed_logins":[],"credentials_rejected":null}"#,
                "written by a newer ibwarden",
            ),
            (
                br#"{"version":1,"last_totp_step":5,"failed_logins":[]}"#,
                "`credentials_rejected` is missing",
            ),
        ] {
            let msg = refused(content);
            assert!(msg.contains(why), "{msg}");
            assert!(msg.contains("move it away"), "the recovery is named: {msg}");
        }
    }

    #[test]
    fn the_file_from_before_versions_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(
            dir.path().join(STATE_FILE),
            br#"{"last_totp_step": 5, "failed_logins": [7], "credentials_rejected": 9}"#,
        )
        .expect("write");
        let st = PersistedState::load(dir.path()).expect("load");
        assert_eq!(st.last_totp_step, Some(5));
        assert_eq!(st.failed_logins, vec![7]);
        assert_eq!(st.credentials_rejected, Some(9));
    }

    #[test]
    fn a_symlink_fifo_or_huge_state_file_is_refused_without_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(STATE_FILE);
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &path).expect("symlink");
        let msg = PersistedState::load(dir.path())
            .expect_err("dangling")
            .to_string();
        assert!(msg.contains("symbolic link"), "{msg}");
        fs::remove_file(&path).expect("rm");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let msg = PersistedState::load(dir.path())
            .expect_err("fifo")
            .to_string();
        assert!(msg.contains("not a regular file"), "{msg}");
        fs::remove_file(&path).expect("rm");
        let f = fs::File::create(&path).expect("create");
        f.set_len(MAX_STATE_BYTES + 1).expect("grow");
        let msg = PersistedState::load(dir.path())
            .expect_err("huge")
            .to_string();
        assert!(msg.contains("more than"), "{msg}");
    }

    #[test]
    fn the_shared_opener_never_blocks_and_the_capped_read_never_reads_past_the_cap() {
        // /dev/zero never ends: the read stops one byte past the cap.
        let (f, meta) = open_nonblocking(Path::new("/dev/zero"), true).expect("open");
        assert!(!meta.is_file());
        assert_eq!(read_at_most(&f, 1000).expect("read").len(), 1001);
        // A FIFO without a writer opens at once.
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let (_, meta) = open_nonblocking(&fifo, false).expect("open fifo");
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()));
        let err = read_file_capped(&fifo, 10).expect_err("not regular");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("not a regular file"), "{err}");
        // Symlinks: followed or refused, as asked.
        let file = dir.path().join("f");
        fs::write(&file, b"12345").expect("write");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        assert_eq!(read_file_capped(&link, 5).expect("followed"), b"12345");
        assert!(matches!(
            read_regular_file(&link, 5),
            Err(ReadError::Refused(_))
        ));
        let err = read_file_capped(&file, 4).expect_err("over the cap");
        assert!(err.to_string().contains("more than the 4"), "{err}");
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
