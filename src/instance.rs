//! `--instance NAME`: one name for every path the packaged unit `ibwarden@NAME` uses, so a
//! root shell reaches the same config, state, control socket and credentials as the unit.
//!
//! | what           | the unit                                   | `--instance NAME`                       |
//! |----------------|--------------------------------------------|-----------------------------------------|
//! | config         | `--config /etc/ibwarden/NAME.toml`         | `/etc/ibwarden/NAME.toml`               |
//! | state          | `StateDirectory=ibwarden/NAME`             | `$STATE_DIRECTORY`, else `/var/lib/ibwarden/NAME` |
//! | control socket | `RuntimeDirectory=ibwarden/NAME`           | `$RUNTIME_DIRECTORY`, else `/run/ibwarden/NAME` |
//! | credential `c` | `LoadCredential=c:ibwarden-NAME-c`         | `$CREDENTIALS_DIRECTORY/c`, else `/etc/credstore/ibwarden-NAME-c`, else `/etc/credstore.encrypted/ibwarden-NAME-c` (via `systemd-creds decrypt`) |
//!
//! Variables systemd already set win, exactly as in the unit. `IBWARDEN_SYSTEM_ROOT` puts
//! all of these under another directory (tests, a chroot, an image being built).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// An instance name and the root its system paths live under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    name: String,
    root: PathBuf,
}

/// Why an instance name is refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "instance name {name:?} is not usable: {why} (the NAME of ibwarden@NAME: letters, digits, \
     '-', '_', '.' and ':', at most 64 characters)"
)]
pub struct InstanceError {
    name: String,
    why: &'static str,
}

static ACTIVE: OnceLock<Instance> = OnceLock::new();

impl Instance {
    /// Checks `name` and takes the root from `IBWARDEN_SYSTEM_ROOT` (default `/`).
    pub fn new(name: &str) -> Result<Instance, InstanceError> {
        let bad = |why| InstanceError {
            name: name.chars().take(80).collect(),
            why,
        };
        if name.is_empty() {
            return Err(bad("it is empty"));
        }
        if name.len() > 64 {
            return Err(bad("it is too long"));
        }
        if name.starts_with(['.', '-']) {
            return Err(bad("it starts with '.' or '-'"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            return Err(bad("it has a character systemd does not allow"));
        }
        let root = std::env::var_os("IBWARDEN_SYSTEM_ROOT")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"));
        Ok(Instance {
            name: name.to_string(),
            root,
        })
    }

    /// The instance whose config `path` is (`/etc/ibwarden/NAME.toml`), if it is one.
    pub fn for_config(path: &Path) -> Option<Instance> {
        let name = path.file_stem()?.to_str()?;
        let inst = Instance::new(name).ok()?;
        (path.extension()? == "toml" && inst.config() == path).then_some(inst)
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn under(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// `/etc/ibwarden/NAME.toml`.
    pub fn config(&self) -> PathBuf {
        self.under("etc/ibwarden")
            .join(format!("{}.toml", self.name))
    }

    /// `/var/lib/ibwarden/NAME` (the unit's `StateDirectory=`).
    pub fn state_dir(&self) -> PathBuf {
        self.under("var/lib/ibwarden").join(&self.name)
    }

    /// `/run/ibwarden/NAME` (the unit's `RuntimeDirectory=`).
    pub fn runtime_dir(&self) -> PathBuf {
        self.under("run/ibwarden").join(&self.name)
    }

    /// Where the unit's `LoadCredential=CRED:ibwarden-NAME-CRED` finds credential `cred`:
    /// the plain file if it exists, else the encrypted one if it exists.
    pub fn credential(&self, cred: &str) -> Option<CredentialFile> {
        let file = format!("ibwarden-{}-{cred}", self.name);
        let plain = self.under("etc/credstore").join(&file);
        if plain.symlink_metadata().is_ok() {
            return Some(CredentialFile::Plain(plain));
        }
        let encrypted = self.under("etc/credstore.encrypted").join(&file);
        if encrypted.symlink_metadata().is_ok() {
            return Some(CredentialFile::Encrypted(encrypted));
        }
        None
    }

    /// The places [`Instance::credential`] looks, for an error message.
    pub fn credential_paths(&self, cred: &str) -> [PathBuf; 2] {
        let file = format!("ibwarden-{}-{cred}", self.name);
        [
            self.under("etc/credstore").join(&file),
            self.under("etc/credstore.encrypted").join(&file),
        ]
    }

    /// Makes this the process's instance: `$STATE_DIRECTORY` and `$RUNTIME_DIRECTORY` get
    /// the unit's values unless systemd set them, and credentials fall back to the
    /// credstore. Returns the config path. Call it before any thread exists (the CLI does,
    /// first thing); a second call keeps the first instance.
    pub fn activate(self) -> PathBuf {
        let config = self.config();
        for (var, value) in [
            ("STATE_DIRECTORY", self.state_dir()),
            ("RUNTIME_DIRECTORY", self.runtime_dir()),
        ] {
            if std::env::var_os(var).is_none() {
                // The CLI calls this while the process has one thread.
                std::env::set_var(var, value);
            }
        }
        let _ = ACTIVE.set(self);
        config
    }
}

/// The instance [`Instance::activate`] made current, if any.
pub fn active() -> Option<&'static Instance> {
    ACTIVE.get()
}

/// A credential file in the credstore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialFile {
    /// `/etc/credstore/…`: read as a private secret file.
    Plain(PathBuf),
    /// `/etc/credstore.encrypted/…`: decrypted by `systemd-creds decrypt`.
    Encrypted(PathBuf),
}

impl CredentialFile {
    /// The file's path.
    pub fn path(&self) -> &Path {
        match self {
            CredentialFile::Plain(p) | CredentialFile::Encrypted(p) => p,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_systemd_refuses_are_refused_without_echoing_much() {
        for bad in ["", "../etc", "a/b", "-x", ".x", "a b", &"x".repeat(65)] {
            let e = Instance::new(bad).expect_err(bad).to_string();
            assert!(e.contains("not usable"), "{e}");
        }
        let i = Instance::new("live-1_a.b:c").expect("valid");
        assert_eq!(i.name(), "live-1_a.b:c");
    }

    #[test]
    fn paths_are_the_units() {
        let i = Instance {
            name: "live".into(),
            root: PathBuf::from("/"),
        };
        assert_eq!(i.config(), Path::new("/etc/ibwarden/live.toml"));
        assert_eq!(i.state_dir(), Path::new("/var/lib/ibwarden/live"));
        assert_eq!(i.runtime_dir(), Path::new("/run/ibwarden/live"));
        assert_eq!(
            i.credential_paths("password"),
            [
                PathBuf::from("/etc/credstore/ibwarden-live-password"),
                PathBuf::from("/etc/credstore.encrypted/ibwarden-live-password")
            ]
        );
        let r = Instance {
            name: "paper".into(),
            root: PathBuf::from("/tmp/root"),
        };
        assert_eq!(r.config(), Path::new("/tmp/root/etc/ibwarden/paper.toml"));
    }

    #[test]
    fn the_plain_credential_wins_over_the_encrypted_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let i = Instance {
            name: "live".into(),
            root: dir.path().to_path_buf(),
        };
        assert_eq!(i.credential("totp"), None);
        let enc = dir.path().join("etc/credstore.encrypted");
        std::fs::create_dir_all(&enc).expect("mkdir");
        std::fs::write(enc.join("ibwarden-live-totp"), b"x").expect("write");
        assert_eq!(
            i.credential("totp"),
            Some(CredentialFile::Encrypted(enc.join("ibwarden-live-totp")))
        );
        let plain = dir.path().join("etc/credstore");
        std::fs::create_dir_all(&plain).expect("mkdir");
        std::fs::write(plain.join("ibwarden-live-totp"), b"x").expect("write");
        assert_eq!(
            i.credential("totp"),
            Some(CredentialFile::Plain(plain.join("ibwarden-live-totp")))
        );
    }
}
