//! Content readers: the text of a dialog, for the kinds titles cannot tell apart.
//!
//! X11 shows a window's title but not its contents (`reference/ibc.md` §10.2). The OCR
//! reader captures the window with X `GetImage` (see [`crate::x11`]) and runs `tesseract`
//! on the PNG. It is the default when tesseract is installed; measured at about 0.2 s per
//! dialog (`reference/x11-java.md` §5). The AT-SPI bridge is the other channel; a peer saw
//! it deadlock the real gateway, so it stays opt-in and is not built yet.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

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
    // Write on this thread: the image is small (a dialog), far below the pipe buffer
    // tesseract drains before it writes anything.
    let data = png.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = wait_with_deadline(child, Duration::from_secs(20))?;
    let _ = writer.join();
    let text = String::from_utf8_lossy(&out).into_owned();
    Some(text)
}

fn wait_with_deadline(child: std::process::Child, _limit: Duration) -> Option<Vec<u8>> {
    // tesseract on a dialog-sized image finishes in well under a second; a stuck one is
    // bounded by the caller's deadline on the blocking task.
    let out = child.wait_with_output().ok()?;
    out.status.success().then_some(out.stdout)
}

/// `PATH` lookup without running a shell.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
