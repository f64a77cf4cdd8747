//! Content readers: the text of a dialog, for the kinds titles cannot tell apart.
//!
//! X11 shows a window's title but not its contents (`reference/ibc.md` §10.2). The OCR
//! reader captures the window with X `GetImage` (see [`crate::x11`]) and runs `tesseract`
//! on the PNG. It is the default when tesseract is installed; measured at about 0.2 s per
//! dialog (`reference/x11-java.md` §5). The AT-SPI bridge is the other channel; a peer saw
//! it deadlock the real gateway, so it stays opt-in and is not built yet.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Which reader to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContentReader {
    /// `tesseract` at this path.
    Ocr(PathBuf),
    /// Titles only.
    None,
}

impl ContentReader {
    /// `auto`: OCR when `tesseract` is on PATH, else none.
    pub fn auto() -> ContentReader {
        match find_on_path("tesseract") {
            Some(p) => ContentReader::Ocr(p),
            None => ContentReader::None,
        }
    }

    /// Whether text can be read at all.
    pub fn available(&self) -> bool {
        !matches!(self, ContentReader::None)
    }

    /// Read the text in a PNG image. Blocking (runs a process): call from a blocking task.
    pub fn read_png(&self, png: &[u8]) -> Option<String> {
        match self {
            ContentReader::Ocr(bin) => ocr(bin, png),
            ContentReader::None => None,
        }
    }
}

/// How long one tesseract run may take. A dialog reads in about 0.1-0.2 s; a stuck process
/// must not hold a blocking thread (and the dialog's answer) forever.
const OCR_DEADLINE: Duration = Duration::from_secs(20);

fn ocr(bin: &Path, png: &[u8]) -> Option<String> {
    let mut child = Command::new(bin)
        .args(["stdin", "stdout", "--psm", "6"])
        .env("OMP_THREAD_LIMIT", "1")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let mut stdout = child.stdout.take()?;
    // Feed and drain on helper threads so neither pipe can block the deadline below.
    let data = png.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let ok = wait_with_deadline(&mut child, OCR_DEADLINE);
    let _ = writer.join();
    let out = reader.join().ok()?;
    ok.then(|| String::from_utf8_lossy(&out).into_owned())
}

/// Waits for `child`, killing it after `limit`. True if it exited successfully in time.
fn wait_with_deadline(child: &mut std::process::Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) => {
                tracing::warn!(limit_s = limit.as_secs(), "tesseract took too long; killed");
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            Err(_) => return false,
        }
    }
}

/// `PATH` lookup without running a shell.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn fake_tesseract(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("tesseract");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write fake");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    #[test]
    fn ocr_returns_what_tesseract_prints_for_the_image_it_was_fed() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Echoes the image back: proves stdin is fed and stdout read in full.
        let bin = fake_tesseract(dir.path(), "cat");
        let text = ContentReader::Ocr(bin).read_png(b"Login failed\nInvalid username");
        assert_eq!(text.as_deref(), Some("Login failed\nInvalid username"));
    }

    #[test]
    fn a_failing_tesseract_reads_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = fake_tesseract(dir.path(), "echo partial; exit 1");
        assert_eq!(ContentReader::Ocr(bin).read_png(b"x"), None);
        assert_eq!(ContentReader::None.read_png(b"x"), None);
    }

    #[test]
    fn a_stuck_tesseract_is_killed_at_the_deadline() {
        let mut child = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let started = Instant::now();
        assert!(!wait_with_deadline(&mut child, Duration::from_millis(200)));
        assert!(started.elapsed() < Duration::from_secs(5));
        // Reaped: no zombie left behind.
        assert!(child.try_wait().expect("try_wait").is_some());
    }
}
