//! Content readers: the text of a dialog, for the kinds titles cannot tell apart.
//!
//! X11 shows a window's title but not its contents (IBC's source). The OCR
//! reader captures the window with X `GetImage` (see [`crate::x11`]) and runs `tesseract`
//! on the PNG. It is the default when tesseract is installed; measured at about 0.2 s per
//! dialog (measured).
//!
//! The AT-SPI reader ([`AtspiReader`]) asks the Java accessibility bridge instead: exact
//! texts and button names, no pixels. A peer saw the bridge deadlock the real gateway during
//! login, so it is opt-in, and every read runs under a deadline. It needs a private session
//! bus ([`AtspiBus`], the accessibility bus is activated from it), the bus address in the
//! JVM's environment and [`AtspiBus::jvm_args`] on the JVM's command line (Debian packages
//! `at-spi2-core`, `libatk-wrapper-java`, `libatk-wrapper-java-jni`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Which reader to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContentReader {
    /// `tesseract` at this path.
    Ocr(PathBuf),
    /// The Java accessibility bridge over AT-SPI (opt-in): read by pid and title with
    /// [`ContentReader::read_accessible`], not from pixels.
    Atspi(AtspiReader),
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
            ContentReader::Atspi(_) | ContentReader::None => None,
        }
    }
}

/// How long one tesseract run may take. A dialog reads in about 0.1-0.2 s; a stuck process
/// must not hold a blocking thread (and the dialog's answer) forever.
const OCR_DEADLINE: Duration = Duration::from_secs(20);

impl ContentReader {
    /// Read the text of the gateway's (`pid`) top-level titled `title` over AT-SPI; `None`
    /// for the pixel and titles-only readers. Blocking, like [`ContentReader::read_png`].
    pub fn read_accessible(&self, pid: u32, title: &str) -> Option<String> {
        match self {
            ContentReader::Atspi(r) => r.read_window(pid, title),
            ContentReader::Ocr(_) | ContentReader::None => None,
        }
    }
}

fn ocr(bin: &Path, png: &[u8]) -> Option<String> {
    run_tesseract(bin, png, &["--psm", "6"])
}

/// Runs `tesseract stdin stdout ARGS` on `png` with a deadline; its stdout if it succeeded.
/// One thread for OCR (the box has two cores and the loop must keep one).
pub(crate) fn run_tesseract(bin: &Path, png: &[u8], args: &[&str]) -> Option<String> {
    let mut child = Command::new(bin)
        .args(["stdin", "stdout"])
        .args(args)
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

// ------------------------------------------------------------------------------ AT-SPI

/// Where Debian's `libatk-wrapper-java` installs the Java side of the bridge.
pub const ATK_WRAPPER_JAR: &str = "/usr/share/java/java-atk-wrapper.jar";

/// How long one AT-SPI read may take (the bridge can hang with the gateway's EDT).
const ATSPI_DEADLINE: Duration = Duration::from_secs(5);

/// Nodes visited at most per window (a dialog has a few dozen).
const ATSPI_MAX_NODES: usize = 2000;

/// Why the AT-SPI bus could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AtspiError {
    /// `dbus-daemon` missing or failed.
    #[error("cannot start dbus-daemon: {0}")]
    Daemon(String),
    /// The Java side of the bridge is not installed.
    #[error("the Java ATK wrapper {0} is missing (Debian package libatk-wrapper-java)")]
    NoWrapper(String),
}

/// A private D-Bus session bus for the gateway's accessibility bridge; the daemon is killed
/// when this is dropped. The accessibility bus itself (`at-spi-bus-launcher`) is activated
/// through it on first use.
#[derive(Debug)]
pub struct AtspiBus {
    child: std::process::Child,
    address: String,
}

impl AtspiBus {
    /// Starts `dbus-daemon --session` with its socket in `dir` and waits (5 s) for its
    /// address.
    pub fn start(dir: &Path) -> Result<AtspiBus, AtspiError> {
        let bin = find_on_path("dbus-daemon")
            .ok_or_else(|| AtspiError::Daemon("dbus-daemon not on PATH (package dbus)".into()))?;
        let mut child = Command::new(bin)
            .args(["--session", "--nofork", "--print-address=1"])
            .arg(format!("--address=unix:dir={}", dir.display()))
            // The accessibility bus launcher it activates puts its socket under
            // XDG_RUNTIME_DIR: a private one keeps two instances (or a desktop) apart.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("XDG_RUNTIME_DIR", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| AtspiError::Daemon(e.to_string()))?;
        let Some(mut out) = child.stdout.take() else {
            let _ = child.kill();
            return Err(AtspiError::Daemon("no stdout".into()));
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while let Ok(1) = out.read(&mut byte) {
                if byte[0] == b'\n' {
                    break;
                }
                line.push(byte[0]);
            }
            let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
        });
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(address) if !address.is_empty() => Ok(AtspiBus { child, address }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(AtspiError::Daemon("it printed no address".into()))
            }
        }
    }

    /// The bus address, for the JVM's `DBUS_SESSION_BUS_ADDRESS` and [`AtspiReader::new`].
    pub fn address(&self) -> &str {
        &self.address
    }

    /// JVM arguments that load the ATK wrapper (its jar on the boot class path, so the
    /// gateway's own `-cp` stays as it is).
    pub fn jvm_args() -> Result<Vec<String>, AtspiError> {
        if !Path::new(ATK_WRAPPER_JAR).is_file() {
            return Err(AtspiError::NoWrapper(ATK_WRAPPER_JAR.into()));
        }
        Ok(vec![
            "-Djavax.accessibility.assistive_technologies=org.GNOME.Accessibility.AtkWrapper"
                .into(),
            format!("-Xbootclasspath/a:{ATK_WRAPPER_JAR}"),
        ])
    }
}

impl Drop for AtspiBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a window's texts over AT-SPI: the accessible tree of the application whose D-Bus
/// connection belongs to the gateway's pid, the top-level named like the window's title,
/// and every label, button and text under it, in tree order, one per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AtspiReader {
    session_bus: String,
}

type Node = (String, zbus::OwnedObjectPath);

impl AtspiReader {
    /// A reader for the session bus at `session_bus` (see [`AtspiBus::address`]).
    pub fn new(session_bus: impl Into<String>) -> AtspiReader {
        AtspiReader {
            session_bus: session_bus.into(),
        }
    }

    /// The text of `pid`'s top-level titled `title`, or `None` (not found, no bridge, or
    /// the deadline passed). Blocking: call from a blocking thread, never from async code.
    pub fn read_window(&self, pid: u32, title: &str) -> Option<String> {
        // Built inside the runtime: the timer needs its reactor.
        let fut = async { tokio::time::timeout(ATSPI_DEADLINE, self.read_async(pid, title)).await };
        let result = match tokio::runtime::Handle::try_current() {
            Ok(h) => h.block_on(fut),
            Err(_) => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?
                .block_on(fut),
        };
        match result {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, title, "AT-SPI read failed");
                None
            }
            Err(_) => {
                tracing::warn!(title, "AT-SPI read timed out (the bridge may hang)");
                None
            }
        }
    }

    async fn read_async(&self, pid: u32, title: &str) -> zbus::Result<Option<String>> {
        let session = zbus::connection::Builder::address(self.session_bus.as_str())
            .build()
            .await?;
        let reply = session
            .call_method(
                Some("org.a11y.Bus"),
                "/org/a11y/bus",
                Some("org.a11y.Bus"),
                "GetAddress",
                &(),
            )
            .await?;
        let address: String = reply.body().deserialize()?;
        let a11y = zbus::connection::Builder::address(address.as_str())
            .build()
            .await?;
        let root: Node = (
            "org.a11y.atspi.Registry".into(),
            zbus::OwnedObjectPath::try_from("/org/a11y/atspi/accessible/root")?,
        );
        for app in children(&a11y, &root).await? {
            let owner = a11y
                .call_method(
                    Some("org.freedesktop.DBus"),
                    "/org/freedesktop/DBus",
                    Some("org.freedesktop.DBus"),
                    "GetConnectionUnixProcessID",
                    &(app.0.as_str(),),
                )
                .await;
            let app_pid: u32 = match owner {
                Ok(r) => r.body().deserialize()?,
                Err(_) => continue,
            };
            if app_pid != pid {
                continue;
            }
            // The newest top-level with that title (a dialog shown again is a new one).
            let mut found = None;
            for top in children(&a11y, &app).await? {
                if name(&a11y, &top).await?.trim() == title.trim() {
                    found = Some(top);
                }
            }
            if let Some(top) = found {
                return Ok(Some(collect_text(&a11y, top).await?));
            }
        }
        Ok(None)
    }
}

async fn children(c: &zbus::Connection, node: &Node) -> zbus::Result<Vec<Node>> {
    let r = c
        .call_method(
            Some(node.0.as_str()),
            node.1.as_str(),
            Some("org.a11y.atspi.Accessible"),
            "GetChildren",
            &(),
        )
        .await?;
    r.body().deserialize()
}

async fn name(c: &zbus::Connection, node: &Node) -> zbus::Result<String> {
    let r = c
        .call_method(
            Some(node.0.as_str()),
            node.1.as_str(),
            Some("org.freedesktop.DBus.Properties"),
            "Get",
            &("org.a11y.atspi.Accessible", "Name"),
        )
        .await?;
    let v: zbus::OwnedVariant = r.body().deserialize()?;
    Ok(String::try_from(v).unwrap_or_default())
}

/// Depth-first, in tree order: each node's name (labels, buttons) and its text content
/// (text areas), skipping empty ones.
async fn collect_text(c: &zbus::Connection, top: Node) -> zbus::Result<String> {
    let mut lines = Vec::new();
    let mut stack = vec![top];
    let mut visited = 0;
    while let Some(node) = stack.pop() {
        visited += 1;
        if visited > ATSPI_MAX_NODES {
            break;
        }
        let n = name(c, &node).await?;
        if !n.trim().is_empty() {
            lines.push(n.trim().to_string());
        }
        let ifaces: Vec<String> = c
            .call_method(
                Some(node.0.as_str()),
                node.1.as_str(),
                Some("org.a11y.atspi.Accessible"),
                "GetInterfaces",
                &(),
            )
            .await?
            .body()
            .deserialize()?;
        if ifaces.iter().any(|i| i == "org.a11y.atspi.Text") {
            let r = c
                .call_method(
                    Some(node.0.as_str()),
                    node.1.as_str(),
                    Some("org.a11y.atspi.Text"),
                    "GetText",
                    &(0i32, -1i32),
                )
                .await?;
            let t: String = r.body().deserialize()?;
            if !t.trim().is_empty() {
                lines.push(t.trim().to_string());
            }
        }
        let mut kids = children(c, &node).await?;
        kids.reverse();
        stack.extend(kids);
    }
    Ok(lines.join("\n"))
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
    fn a_private_bus_starts_with_a_unix_address_and_stops_on_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bus = AtspiBus::start(dir.path()).expect("dbus-daemon (package dbus)");
        assert!(bus.address().starts_with("unix:"), "{}", bus.address());
        let pid = bus.child.id();
        drop(bus);
        // Killed and reaped: no such process any more.
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn atspi_against_a_bus_without_the_bridge_reads_nothing_quickly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bus = AtspiBus::start(dir.path()).expect("dbus-daemon (package dbus)");
        let started = Instant::now();
        let r = ContentReader::Atspi(AtspiReader::new(bus.address()));
        assert_eq!(r.read_accessible(std::process::id(), "Gateway"), None);
        assert!(started.elapsed() <= ATSPI_DEADLINE + Duration::from_secs(1));
        assert_eq!(r.read_png(b"x"), None);
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
