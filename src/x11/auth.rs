//! Xauthority files: writing the private cookie file for our own Xvfb, and reading a cookie
//! back out of a file so our xcb connections can authenticate without touching the process
//! environment (`XAUTHORITY` is read by libxcb from the environment, and mutating the
//! environment of a multi-threaded process is unsound).
//!
//! File format (libXau): a sequence of entries, each
//! `family: u16 BE`, then four length-prefixed (`u16 BE`) byte strings: address, display
//! number, auth name, auth data.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// The only auth protocol we write or use.
pub(crate) const MIT_MAGIC_COOKIE: &str = "MIT-MAGIC-COOKIE-1";

/// `FamilyLocal` (unix socket, address = hostname).
const FAMILY_LOCAL: u16 = 0x0100;
/// `FamilyWild`: matches any address.
const FAMILY_WILD: u16 = 0xFFFF;

/// Errors reading or writing an Xauthority file. Messages never contain cookie bytes.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file could not be read, created or written.
    #[error("xauthority {path}: {about}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What we were doing.
        about: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The file is not in Xauthority format.
    #[error("xauthority {path}: malformed entry at byte {offset}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Where parsing stopped.
        offset: usize,
    },
    /// No MIT-MAGIC-COOKIE-1 entry matches the display.
    #[error("xauthority {path}: no MIT-MAGIC-COOKIE-1 entry for display {display}")]
    NoEntry {
        /// The file.
        path: PathBuf,
        /// Display number looked for.
        display: String,
    },
}

/// A 16-byte MIT-MAGIC-COOKIE-1. Zeroed on drop; never printed.
pub(crate) struct Cookie(pub(crate) Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Cookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cookie([redacted])")
    }
}

/// A fresh random cookie from the kernel's CSPRNG.
pub(crate) fn random_cookie() -> io::Result<Cookie> {
    let mut bytes = Zeroizing::new(vec![0u8; 16]);
    fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(Cookie(bytes))
}

/// Writes `path` (mode 0600, replacing any old file) with one `FamilyWild` entry with an empty
/// display number.
///
/// Why wild and number-less: with `-displayfd` the display number is only known after Xvfb
/// has read this file. The server loads every entry regardless of address, and libXau (used
/// by Java's Xlib and by libxcb) treats a zero-length number as "any display", so one entry
/// serves both sides.
pub(crate) fn write_xauthority(path: &Path, cookie: &Cookie) -> Result<(), AuthError> {
    let io_err = |about| {
        move |source| AuthError::Io {
            path: path.to_owned(),
            about,
            source,
        }
    };
    // Remove first so a pre-existing file with looser permissions is not reused.
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove old file")(e)),
    }
    let mut entry = Zeroizing::new(Vec::with_capacity(64));
    entry.extend_from_slice(&FAMILY_WILD.to_be_bytes());
    for field in [
        &b""[..],
        &b""[..],
        MIT_MAGIC_COOKIE.as_bytes(),
        &cookie.0[..],
    ] {
        // All fields are far below u16::MAX (fixed name, 16-byte cookie).
        entry.extend_from_slice(&(field.len() as u16).to_be_bytes());
        entry.extend_from_slice(field);
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err("create"))?;
    file.write_all(&entry).map_err(io_err("write"))?;
    file.sync_all().map_err(io_err("sync"))?;
    Ok(())
}

/// One parsed entry (only the fields we match on).
struct Entry {
    family: u16,
    number: Vec<u8>,
    name: Vec<u8>,
    data: Zeroizing<Vec<u8>>,
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<Entry>, AuthError> {
    let malformed = |offset| AuthError::Malformed {
        path: path.to_owned(),
        offset,
    };
    let mut out = Vec::new();
    let mut pos = 0usize;
    let take = |pos: &mut usize, n: usize| -> Option<&[u8]> {
        let s = bytes.get(*pos..pos.checked_add(n)?)?;
        *pos += n;
        Some(s)
    };
    while pos < bytes.len() {
        let start = pos;
        let family = take(&mut pos, 2).ok_or(malformed(start))?;
        let family = u16::from_be_bytes([family[0], family[1]]);
        let mut fields: Vec<&[u8]> = Vec::with_capacity(4);
        for _ in 0..4 {
            let len = take(&mut pos, 2).ok_or(malformed(pos))?;
            let len = u16::from_be_bytes([len[0], len[1]]) as usize;
            fields.push(take(&mut pos, len).ok_or(malformed(pos))?);
        }
        out.push(Entry {
            family,
            number: fields[1].to_vec(),
            name: fields[2].to_vec(),
            data: Zeroizing::new(fields[3].to_vec()),
        });
    }
    Ok(out)
}

/// The MIT-MAGIC-COOKIE-1 for display number `display` (e.g. `"3"`) from the file at `path`.
///
/// Preference: an exact display-number match over a number-less (any display) entry, and a
/// local or wild family over network families, as libXau does for a unix-socket connection.
pub(crate) fn read_cookie(path: &Path, display: &str) -> Result<Cookie, AuthError> {
    // An authority file holds a few entries of tens of bytes each.
    let bytes = Zeroizing::new(crate::state::read_file_capped(path, 64 * 1024).map_err(
        |source| AuthError::Io {
            path: path.to_owned(),
            about: "read",
            source,
        },
    )?);
    let entries = parse(path, &bytes)?;
    let score = |e: &Entry| -> Option<u8> {
        if e.name != MIT_MAGIC_COOKIE.as_bytes() || e.data.is_empty() {
            return None;
        }
        let number = if e.number == display.as_bytes() {
            2
        } else if e.number.is_empty() {
            1
        } else {
            return None;
        };
        let family = u8::from(e.family == FAMILY_LOCAL || e.family == FAMILY_WILD);
        Some(number * 2 + family)
    };
    entries
        .into_iter()
        .filter_map(|e| score(&e).map(|s| (s, e)))
        .max_by_key(|(s, _)| *s)
        .map(|(_, e)| Cookie(e.data))
        .ok_or_else(|| AuthError::NoEntry {
            path: path.to_owned(),
            display: display.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn write_then_read_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("Xauthority");
        let cookie = random_cookie().expect("urandom");
        write_xauthority(&path, &cookie).expect("write");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A number-less entry matches any display.
        let back = read_cookie(&path, "7").expect("read");
        assert_eq!(&back.0[..], &cookie.0[..]);
        // Rewriting replaces the file rather than appending.
        let cookie2 = random_cookie().expect("urandom");
        write_xauthority(&path, &cookie2).expect("rewrite");
        assert_eq!(
            &read_cookie(&path, "7").expect("read").0[..],
            &cookie2.0[..]
        );
    }

    fn entry(family: u16, addr: &[u8], num: &[u8], name: &[u8], data: &[u8]) -> Vec<u8> {
        let mut v = family.to_be_bytes().to_vec();
        for f in [addr, num, name, data] {
            v.extend_from_slice(&(f.len() as u16).to_be_bytes());
            v.extend_from_slice(f);
        }
        v
    }

    #[test]
    fn prefers_exact_display_number_and_skips_other_protocols() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("xa");
        let mut bytes = entry(FAMILY_LOCAL, b"host", b"", b"MIT-MAGIC-COOKIE-1", &[1; 16]);
        bytes.extend(entry(
            FAMILY_LOCAL,
            b"host",
            b"3",
            b"XDM-AUTHORIZATION-1",
            &[2; 16],
        ));
        bytes.extend(entry(
            FAMILY_LOCAL,
            b"host",
            b"3",
            b"MIT-MAGIC-COOKIE-1",
            &[3; 16],
        ));
        bytes.extend(entry(
            FAMILY_LOCAL,
            b"host",
            b"4",
            b"MIT-MAGIC-COOKIE-1",
            &[4; 16],
        ));
        fs::write(&path, bytes).expect("write");
        assert_eq!(&read_cookie(&path, "3").expect("3").0[..], &[3; 16]);
        assert_eq!(&read_cookie(&path, "9").expect("9").0[..], &[1; 16]);
    }

    #[test]
    fn truncated_file_is_a_clear_error_without_cookie_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("xa");
        let mut bytes = entry(
            FAMILY_LOCAL,
            b"host",
            b"3",
            b"MIT-MAGIC-COOKIE-1",
            &[0xAB; 16],
        );
        bytes.truncate(bytes.len() - 3);
        fs::write(&path, bytes).expect("write");
        let err = read_cookie(&path, "3").expect_err("truncated");
        let msg = err.to_string();
        assert!(msg.contains("malformed entry at byte"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }

    #[test]
    fn missing_entry_names_the_display() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("xa");
        fs::write(
            &path,
            entry(FAMILY_LOCAL, b"h", b"1", b"MIT-MAGIC-COOKIE-1", &[5; 16]),
        )
        .expect("write");
        let msg = read_cookie(&path, "2").expect_err("none").to_string();
        assert!(
            msg.contains("no MIT-MAGIC-COOKIE-1 entry for display 2"),
            "{msg}"
        );
    }
}
