//! Secrets: the password and the TOTP activation code, read from a private file, a systemd
//! credential or an environment variable, and kept out of every log line and error message.
//!
//! [`Secret`] wraps the value: its `Debug` and `Display` print `[redacted]` and its memory is
//! wiped on drop. The only way to see the value is [`Secret::expose`], which is easy to grep
//! for. [`SecretSource`] is where the config says a secret lives; [`Secrets::load`] resolves
//! all of them at once from the account's [`SecretSources`].
//!
//! Sources, strongest first:
//! - `*_credential`: a systemd credential (`LoadCredential=`/`LoadCredentialEncrypted=`),
//!   read from `$CREDENTIALS_DIRECTORY/<name>`. systemd owns that directory and its modes.
//! - `*_file`: a file only its owner may read. Like ssh with a private key, a file that the
//!   group or others can read is refused, with the `chmod` that fixes it.
//! - `*_env`: an environment variable. The weakest: the environment of a process is visible
//!   to its owner and root in `/proc/PID/environ`, and is inherited by children unless they
//!   are started with the variable removed.
//!
//! Error messages name the file, credential or variable, never the value.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroize;

use crate::core::domain::{SecondFactor, TradingMode};
use crate::totp::{ActivationCode, ActivationCodeError};

pub(crate) mod value;

pub use value::Secret;

/// Where a secret is read from, as written in the config (`*_file`, `*_credential`, `*_env`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// A file readable by its owner only. Relative paths were already resolved against the
    /// config file's directory.
    File(PathBuf),
    /// A systemd credential name, looked up in `$CREDENTIALS_DIRECTORY`.
    Credential(String),
    /// An environment variable name.
    Env(String),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::File(p) => write!(f, "file {}", p.display()),
            SecretSource::Credential(n) => {
                write!(f, "systemd credential {n}")?;
                // Outside systemd with `--instance`: the credstore file it resolves to.
                if std::env::var_os("CREDENTIALS_DIRECTORY").is_none() {
                    if let Some(file) = crate::instance::active().and_then(|i| i.credential(n)) {
                        write!(f, " ({})", file.path().display())?;
                    }
                }
                Ok(())
            }
            SecretSource::Env(v) => write!(f, "environment variable {v}"),
        }
    }
}

/// Why a secret could not be loaded. Never contains the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read (missing, permission denied, ...).
    #[error("cannot read secret file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The file can be read by the group or others.
    #[error(
        "secret file {} is readable by group or others (mode {mode:04o}); fix: chmod 600 {}",
        path.display(),
        path.display()
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The path is a directory or another non-regular file.
    #[error("secret file {} is not a regular file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// `*_credential` is used but systemd did not set `$CREDENTIALS_DIRECTORY`.
    #[error(
        "systemd credential {name}: $CREDENTIALS_DIRECTORY is not set (use LoadCredential= in \
         the unit, `--instance NAME` from a root shell to read the unit's credstore, or a \
         *_file key when not running under systemd)"
    )]
    NoCredentialsDirectory {
        /// The credential name.
        name: String,
    },
    /// `--instance NAME` outside systemd, and the credstore has no such credential.
    #[error(
        "systemd credential {name}: neither {} nor {} exists (that is where the unit's \
         LoadCredential= finds it)",
        plain.display(),
        encrypted.display()
    )]
    NoCredstoreFile {
        /// The credential name.
        name: String,
        /// The plain credstore file looked for.
        plain: PathBuf,
        /// The encrypted one.
        encrypted: PathBuf,
    },
    /// `systemd-creds decrypt` failed on an encrypted credential.
    #[error("cannot decrypt {}: {why}", path.display())]
    Decrypt {
        /// The encrypted credential.
        path: PathBuf,
        /// systemd-creds' own message (it never contains the plaintext), or why it did not run.
        why: String,
    },
    /// The environment variable is not set.
    #[error("environment variable {var} is not set")]
    EnvMissing {
        /// The variable name.
        var: String,
    },
    /// The value is not UTF-8.
    #[error("secret from {source_desc} is not valid UTF-8")]
    NotUtf8 {
        /// Where it came from.
        source_desc: String,
    },
    /// The value is empty.
    #[error("secret from {source_desc} is empty")]
    Empty {
        /// Where it came from.
        source_desc: String,
    },
    /// The value is larger than any secret of its kind can be.
    #[error(
        "secret from {source_desc} is over {cap} bytes; it cannot be a {what} (is it the \
         right file?)"
    )]
    TooLarge {
        /// Where it came from.
        source_desc: String,
        /// The limit.
        cap: usize,
        /// What it should be ("password", "activation code", ...).
        what: &'static str,
    },
    /// The value holds a control character or whitespace where none can be.
    #[error("secret from {source_desc} {problem}; fix: {fix}")]
    Malformed {
        /// Where it came from.
        source_desc: String,
        /// What is wrong, in words (never the value).
        problem: &'static str,
        /// What to do.
        fix: &'static str,
    },
    /// The file belongs to another user.
    #[error(
        "secret file {} belongs to uid {owner}, not to the user ibwarden runs as (uid {uid}) \
         or root; fix: chown {uid} {}",
        path.display(),
        path.display()
    )]
    NotOwned {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The running (effective) uid.
        uid: u32,
    },
    /// The activation code is malformed.
    #[error("activation code from {source_desc}: {error}")]
    ActivationCode {
        /// Where it came from.
        source_desc: String,
        /// What is wrong (never the value).
        error: ActivationCodeError,
    },
    /// Live mode with the Mobile Authenticator app needs an activation code.
    #[error("no activation code configured (set account.totp_file, totp_credential or totp_env)")]
    NoActivationCode,
}

/// The largest password (or token) accepted: IBKR's passwords are far shorter, and a file
/// this big is the wrong file.
pub const MAX_SECRET: usize = 1024;

/// The largest activation code accepted (IBKR's are a few dozen base32 characters).
pub const MAX_ACTIVATION_CODE: usize = 256;

impl SecretSource {
    /// Reads a password-like secret (at most [`MAX_SECRET`] bytes); see [`Self::load_capped`].
    pub fn load(&self) -> Result<Secret, SecretError> {
        self.load_capped(MAX_SECRET, "password")
    }

    /// Reads the secret: at most `cap` bytes (`what` names the kind in the error). One
    /// trailing newline (`\n` or `\r\n`) is removed, since editors and `echo` add one; any
    /// other control character, a second newline (a blank last line) or whitespace at either
    /// end is refused with the fix named: typed into a login form, each would be a wrong
    /// password that costs a login attempt.
    pub fn load_capped(&self, cap: usize, what: &'static str) -> Result<Secret, SecretError> {
        let too_large = || SecretError::TooLarge {
            source_desc: self.to_string(),
            cap,
            what,
        };
        let bytes = match self {
            SecretSource::File(path) => read_secret_file(path, cap, true)?.ok_or_else(too_large)?,
            SecretSource::Credential(name) => match std::env::var_os("CREDENTIALS_DIRECTORY") {
                Some(dir) => {
                    // systemd creates these files itself (mode 0400, owned by the service
                    // user), so their mode and owner are not checked; their kind and size are.
                    let path = Path::new(&dir).join(name);
                    read_secret_file(&path, cap, false)?.ok_or_else(too_large)?
                }
                // A root shell with `--instance NAME`: where the unit loads it from.
                None => match crate::instance::active() {
                    Some(inst) => match inst.credential(name) {
                        Some(crate::instance::CredentialFile::Plain(path)) => {
                            read_secret_file(&path, cap, true)?.ok_or_else(too_large)?
                        }
                        Some(crate::instance::CredentialFile::Encrypted(path)) => {
                            decrypt_credential(name, &path, cap)?.ok_or_else(too_large)?
                        }
                        None => {
                            let [plain, encrypted] = inst.credential_paths(name);
                            return Err(SecretError::NoCredstoreFile {
                                name: name.clone(),
                                plain,
                                encrypted,
                            });
                        }
                    },
                    None => return Err(SecretError::NoCredentialsDirectory { name: name.clone() }),
                },
            },
            SecretSource::Env(var) => match std::env::var_os(var) {
                Some(v) => {
                    let mut v = v.into_encoded_bytes();
                    if v.len() > cap + 2 {
                        v.zeroize();
                        return Err(too_large());
                    }
                    v
                }
                None => return Err(SecretError::EnvMissing { var: var.clone() }),
            },
        };
        let mut text = String::from_utf8(bytes).map_err(|e| {
            // Wipe the rejected bytes too.
            let mut b = e.into_bytes();
            b.zeroize();
            SecretError::NotUtf8 {
                source_desc: self.to_string(),
            }
        })?;
        strip_one_newline(&mut text);
        if let Err((problem, fix)) = validate(&text) {
            text.zeroize();
            return Err(SecretError::Malformed {
                source_desc: self.to_string(),
                problem,
                fix,
            });
        }
        if text.is_empty() {
            return Err(SecretError::Empty {
                source_desc: self.to_string(),
            });
        }
        if text.len() > cap {
            text.zeroize();
            return Err(too_large());
        }
        // The source only (a path or a name), never the value.
        tracing::debug!(source = %self, "secret loaded");
        Ok(Secret::new(text))
    }
}

/// What is wrong with a secret's text (after its one trailing newline was removed), and
/// the fix; never the value.
fn validate(text: &str) -> Result<(), (&'static str, &'static str)> {
    if text.ends_with('\n') {
        return Err((
            "ends with a blank line",
            "remove the empty line(s) at the end: one line, at most one newline after it",
        ));
    }
    if text.ends_with('\r') {
        return Err((
            "ends with a carriage return",
            "remove it (an editor that saves old Mac line ends, or a stray \\r): one line, at \
             most one newline after it",
        ));
    }
    if text.contains(['\n', '\r']) {
        return Err((
            "has more than one line (a newline or carriage return inside)",
            "keep only the secret, on one line",
        ));
    }
    if text.contains('\t') {
        return Err(("contains a tab", "remove the tab"));
    }
    if text.chars().any(char::is_control) {
        return Err((
            "contains a control character",
            "write it again with a text editor or `ibwarden secret set`",
        ));
    }
    if text.starts_with(char::is_whitespace) || text.ends_with(char::is_whitespace) {
        return Err((
            "starts or ends with a space",
            "remove the spaces around the secret",
        ));
    }
    Ok(())
}

/// Removes one trailing `\n` or `\r\n`.
fn strip_one_newline(text: &mut String) {
    if text.ends_with("\r\n") {
        text.truncate(text.len() - 2);
    } else if text.ends_with('\n') {
        text.truncate(text.len() - 1);
    }
}

/// Checks that a secret file is a regular file private to its owner (the running user or
/// root), without reading it.
pub fn check_private_file(path: &Path) -> Result<(), SecretError> {
    let meta = fs::metadata(path).map_err(|source| SecretError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    check_private_meta(path, &meta)
}

fn check_private_meta(path: &Path, meta: &fs::Metadata) -> Result<(), SecretError> {
    use std::os::unix::fs::MetadataExt;
    if !meta.is_file() {
        return Err(SecretError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    let uid = nix::unistd::Uid::effective().as_raw();
    if meta.uid() != uid && meta.uid() != 0 {
        return Err(SecretError::NotOwned {
            path: path.to_path_buf(),
            owner: meta.uid(),
            uid,
        });
    }
    Ok(())
}

/// Reads at most `cap` bytes (plus a trailing `\r\n`) of a regular file; `Ok(None)` if it
/// holds more. Opened non-blocking, so a FIFO planted at the path is refused instead of
/// waited on; `private`: the mode and owner are checked on the open file (no race with a
/// swap between the check and the read).
fn read_secret_file(
    path: &Path,
    cap: usize,
    private: bool,
) -> Result<Option<Vec<u8>>, SecretError> {
    let read_err = |source| SecretError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Symlinks are followed: systemd's credentials and many secret managers are links.
    let (file, meta) = crate::state::open_nonblocking(path, true).map_err(read_err)?;
    if private {
        check_private_meta(path, &meta)?;
    } else if !meta.is_file() {
        return Err(SecretError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let limit = cap + 2;
    let mut bytes = crate::state::read_at_most(&file, limit as u64).map_err(read_err)?;
    if bytes.len() > limit {
        bytes.zeroize();
        return Ok(None);
    }
    Ok(Some(bytes))
}

/// Decrypts `/etc/credstore.encrypted/…` as systemd does for `LoadCredentialEncrypted=`:
/// `systemd-creds decrypt --name=NAME FILE -`, the plaintext read from its stdout (capped,
/// wiped when refused), never through a file.
fn decrypt_credential(name: &str, path: &Path, cap: usize) -> Result<Option<Vec<u8>>, SecretError> {
    use std::io::Read;
    let fail = |why: String| SecretError::Decrypt {
        path: path.to_path_buf(),
        why,
    };
    let mut child = std::process::Command::new("systemd-creds")
        .arg("decrypt")
        .arg(format!("--name={name}"))
        .arg(path)
        .arg("-")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("systemd-creds did not start ({e})")))?;
    let limit = cap + 2;
    let mut bytes = Vec::new();
    let read = match child.stdout.take() {
        Some(out) => out.take(limit as u64 + 1).read_to_end(&mut bytes),
        None => Ok(0),
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.by_ref().take(4096).read_to_string(&mut err);
    }
    let status = child.wait().map_err(|e| fail(e.to_string()))?;
    if let Err(e) = read {
        bytes.zeroize();
        return Err(fail(e.to_string()));
    }
    if !status.success() {
        bytes.zeroize();
        let why = err.trim();
        return Err(fail(if why.is_empty() {
            format!("systemd-creds exited with {status}")
        } else {
            why.to_string()
        }));
    }
    if bytes.len() > limit {
        bytes.zeroize();
        return Ok(None);
    }
    Ok(Some(bytes))
}

/// All the credentials one gateway instance needs, resolved.
#[derive(Debug)]
pub struct Secrets {
    /// The IBKR username. Not secret, but typed like the others.
    pub username: String,
    /// The IBKR password.
    pub password: Secret,
    /// The Mobile Authenticator activation code (None in paper mode without one).
    pub totp: Option<ActivationCode>,
}

/// Where one account's secrets are, and what decides whether an activation code is
/// required: the part of the configuration [`Secrets::load`] reads.
#[derive(Clone, Copy, Debug)]
pub struct SecretSources<'a> {
    /// The IBKR username (`account.username`).
    pub username: &'a str,
    /// Where the password is (`account.password_*`).
    pub password: &'a SecretSource,
    /// Where the activation code is (`account.totp_*`), if configured.
    pub totp: Option<&'a SecretSource>,
    /// `gateway.trading_mode`.
    pub trading_mode: TradingMode,
    /// `login.second_factor_device`.
    pub second_factor: &'a SecondFactor,
}

impl SecretSources<'_> {
    /// True when a missing activation code is an error: live mode with the Mobile
    /// Authenticator app as the second factor.
    pub fn requires_activation_code(&self) -> bool {
        self.trading_mode == TradingMode::Live && self.second_factor.is_totp()
    }
}

impl Secrets {
    /// Reads the password and (when configured or required) the activation code.
    ///
    /// The activation code is required in live mode when the second factor is the
    /// Mobile Authenticator app; otherwise it is loaded only if configured. Takes
    /// [`SecretSources`], or anything that converts into them (a `&Config`).
    pub fn load<'a>(sources: impl Into<SecretSources<'a>>) -> Result<Secrets, SecretError> {
        let sources = sources.into();
        let password = sources.password.load()?;
        let totp = match sources.totp {
            Some(source) => Some(load_activation_code(source)?),
            None if sources.requires_activation_code() => {
                return Err(SecretError::NoActivationCode)
            }
            None => None,
        };
        Ok(Secrets {
            username: sources.username.to_owned(),
            password,
            totp,
        })
    }
}

/// Removes the environment variables named by `*_env` sources from this process, so that
/// no child (Xvfb, notification hooks, the JVM) can inherit a secret.
///
/// Call it right after [`Secrets::load`], while the process is still single-threaded
/// (before the async runtime starts): changing the environment races with other threads
/// reading it.
pub fn scrub_environment<'a>(sources: impl Into<SecretSources<'a>>) {
    let sources = sources.into();
    for source in std::iter::once(sources.password).chain(sources.totp) {
        if let SecretSource::Env(var) = source {
            overwrite_original_env_value(var);
            std::env::remove_var(var);
        }
    }
}

/// Zeroes the value of `var` where the kernel put the process's environment: `remove_var`
/// only unlinks it from libc's table, while `/proc/<pid>/environ` (readable by the same user)
/// keeps showing the original block. Must run before any thread exists (nothing else may
/// read or change the environment meanwhile), which is when the CLI calls
/// [`scrub_environment`].
fn overwrite_original_env_value(var: &str) {
    extern "C" {
        static mut environ: *mut *mut libc::c_char;
    }
    let prefix = format!("{var}=");
    // SAFETY: single-threaded at this point (see above); `environ` is a NULL-terminated
    // array of NUL-terminated strings owned by the process; each string is only written
    // within its own length (found with strlen), and only bytes after `NAME=`.
    unsafe {
        let mut p = environ;
        if p.is_null() {
            return;
        }
        while !(*p).is_null() {
            let entry = *p;
            let len = libc::strlen(entry);
            let bytes = std::slice::from_raw_parts_mut(entry.cast::<u8>(), len);
            if bytes.starts_with(prefix.as_bytes()) {
                for b in &mut bytes[prefix.len()..] {
                    *b = 0;
                }
            }
            p = p.add(1);
        }
    }
}

/// Loads and parses an activation code.
pub fn load_activation_code(source: &SecretSource) -> Result<ActivationCode, SecretError> {
    let raw = source.load_capped(MAX_ACTIVATION_CODE, "activation code")?;
    ActivationCode::parse(raw.expose()).map_err(|error| SecretError::ActivationCode {
        source_desc: source.to_string(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_file(dir: &Path, name: &str, content: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        let mut f = fs::File::create(&path).expect("create");
        f.write_all(content.as_bytes()).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    #[test]
    fn file_strips_one_newline_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write_file(dir.path(), "pw", "pa ss\n", 0o600);
        let s = SecretSource::File(p).load().expect("load");
        assert_eq!(s.expose(), "pa ss");
        let p = write_file(dir.path(), "pw2", "x\r\n", 0o400);
        assert_eq!(SecretSource::File(p).load().expect("load").expose(), "x");
    }

    #[test]
    fn group_readable_file_is_refused_with_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write_file(dir.path(), "pw", "Sup3rSecretValue", 0o640);
        let err = SecretSource::File(p.clone())
            .load()
            .expect_err("must refuse");
        let msg = err.to_string();
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("chmod 600 {}", p.display())), "{msg}");
        assert!(msg.contains("0640"), "{msg}");
        assert!(!msg.contains("Sup3rSecretValue"));
        let p = write_file(dir.path(), "pw3", "x", 0o604);
        assert!(matches!(
            SecretSource::File(p).load(),
            Err(SecretError::TooOpen { .. })
        ));
    }

    #[test]
    fn missing_file_and_empty_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = SecretSource::File(dir.path().join("nope"))
            .load()
            .expect_err("missing");
        assert!(err.to_string().contains("nope"));
        let p = write_file(dir.path(), "empty", "\n", 0o600);
        assert!(matches!(
            SecretSource::File(p).load(),
            Err(SecretError::Empty { .. })
        ));
        assert!(matches!(
            SecretSource::File(dir.path().to_path_buf()).load(),
            Err(SecretError::NotAFile { .. })
        ));
    }

    #[test]
    fn control_characters_blank_lines_and_outer_spaces_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (content, problem) in [
            ("Sup3rSecret\n\n", "ends with a blank line"),
            ("Sup3rSecret\r", "ends with a carriage return"),
            ("Sup3rSecret\r\r\n", "ends with a carriage return"),
            ("Sup3r\rSecret\n", "more than one line"),
            ("Sup3r\nSecret", "more than one line"),
            ("Sup3r\tSecret", "tab"),
            ("Sup3r\u{7}Secret", "control character"),
            (" Sup3rSecret", "starts or ends with a space"),
            ("Sup3rSecret \n", "starts or ends with a space"),
        ] {
            let p = write_file(dir.path(), "pw", content, 0o600);
            let err = SecretSource::File(p.clone()).load().expect_err(content);
            let msg = err.to_string();
            assert!(msg.contains(problem), "{content:?}: {msg}");
            assert!(msg.contains("fix:"), "{msg}");
            assert!(msg.contains(&p.display().to_string()), "{msg}");
            assert!(!msg.contains("Sup3r"), "the value is not echoed: {msg}");
        }
        let p = write_file(dir.path(), "pw", "pa ss word\r\n", 0o600);
        assert_eq!(
            SecretSource::File(p).load().expect("inner space").expose(),
            "pa ss word"
        );
    }

    #[test]
    fn oversized_secrets_and_fifos_are_refused_without_reading_them_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write_file(dir.path(), "pw", &"a".repeat(MAX_SECRET + 1), 0o600);
        let err = SecretSource::File(p).load().expect_err("too big");
        assert!(
            matches!(
                err,
                SecretError::TooLarge {
                    cap: MAX_SECRET,
                    ..
                }
            ),
            "{err}"
        );
        let p = write_file(dir.path(), "pw", &"a".repeat(MAX_SECRET), 0o600);
        assert_eq!(
            SecretSource::File(p)
                .load()
                .expect("at the cap")
                .expose()
                .len(),
            MAX_SECRET
        );
        let p = write_file(
            dir.path(),
            "totp",
            &"A".repeat(MAX_ACTIVATION_CODE + 1),
            0o600,
        );
        let err = load_activation_code(&SecretSource::File(p)).expect_err("too big");
        assert!(err.to_string().contains("activation code"), "{err}");
        // A FIFO nobody writes to: refused at once, not waited on.
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let err = SecretSource::File(fifo).load().expect_err("fifo");
        assert!(matches!(err, SecretError::NotAFile { .. }), "{err}");
        // /dev/zero, endless: not a regular file.
        let err = SecretSource::File("/dev/zero".into())
            .load()
            .expect_err("device");
        assert!(
            matches!(
                err,
                SecretError::NotAFile { .. } | SecretError::TooOpen { .. }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_private_file_of_another_user_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write_file(dir.path(), "pw", "Sup3rSecret\n", 0o600);
        let me = nix::unistd::Uid::effective();
        // Giving a file away needs root (CI runs the suite as root).
        if !me.is_root() {
            eprintln!("skipped: giving a file to another user needs root");
            return;
        }
        nix::unistd::chown(&p, Some(nix::unistd::Uid::from_raw(65534)), None).expect("chown");
        let err = SecretSource::File(p.clone()).load().expect_err("not ours");
        let msg = err.to_string();
        assert!(
            matches!(err, SecretError::NotOwned { owner: 65534, .. }),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("chown {} {}", me.as_raw(), p.display())),
            "{msg}"
        );
        assert!(!msg.contains("Sup3r"), "{msg}");
    }

    #[test]
    fn env_source() {
        // A variable name unique to this test, so parallel tests cannot interfere.
        let var = "IBWARDEN_TEST_SECRET_ENV_SOURCE_UNSET";
        let err = SecretSource::Env(var.into()).load().expect_err("unset");
        assert!(err.to_string().contains(var));
    }

    #[test]
    fn activation_code_required_only_live_with_the_app() {
        let dir = tempfile::tempdir().expect("tempdir");
        let password = SecretSource::File(write_file(dir.path(), "pw", "pw\n", 0o600));
        let code = SecretSource::File(write_file(
            dir.path(),
            "totp",
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n",
            0o600,
        ));
        let app = SecondFactor::AuthenticatorApp;
        let sources = |totp, trading_mode, second_factor| SecretSources {
            username: "user1",
            password: &password,
            totp,
            trading_mode,
            second_factor,
        };
        let err = Secrets::load(sources(None, TradingMode::Live, &app)).expect_err("needs a code");
        assert!(matches!(err, SecretError::NoActivationCode), "{err}");
        for (mode, factor) in [
            (TradingMode::Paper, &app),
            (TradingMode::Live, &SecondFactor::IbKey),
        ] {
            let s = Secrets::load(sources(None, mode, factor)).expect("no code needed");
            assert!(s.totp.is_none());
            assert_eq!((s.username.as_str(), s.password.expose()), ("user1", "pw"));
        }
        let s = Secrets::load(sources(Some(&code), TradingMode::Live, &app)).expect("loads");
        assert!(s.totp.is_some());
    }
}
