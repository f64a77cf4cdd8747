//! The content readers on the simulator's real windows: the dialogs whose titles cannot tell
//! them apart (`Gateway`: connection failed, token expired, too many attempts; `Login
//! failed`) are read with OCR (X `GetImage`, tesseract) and with the Java accessibility
//! bridge (AT-SPI, on a private bus), and the dialog catalogue classifies the text. No
//! ibwarden process: the pieces directly.
//!
//! Needs the Debian packages `tesseract-ocr`, `tesseract-ocr-eng`, `dbus`, `at-spi2-core`,
//! `libatk-wrapper-java` and `libatk-wrapper-java-jni`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ibwarden::core::dialog::{self, DialogKind};
use ibwarden::dialog_text::ContentReader;
use ibwarden::x11::DisplayTarget;

fn reader() -> ContentReader {
    require_tool("tesseract", "tesseract-ocr");
    let r = ContentReader::auto();
    assert!(
        matches!(r, ContentReader::Ocr(_)),
        "tesseract on PATH must give the OCR reader, got {r:?}"
    );
    r
}

/// Captures `title`'s window of the session's simulator and reads it until every word in
/// `words` is there (Swing may map the window before it paints it). Returns the text.
fn read_window(s: &Session, title: &str, words: &[&str]) -> String {
    let reader = reader();
    let win = s.x.wait_window(s.pid(), title, STEP_TIMEOUT);
    let target = DisplayTarget::existing(s.xvfb.display.clone(), Some(s.xvfb.xauthority.clone()));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let png = ibwarden::x11::screenshot::screenshot(&target, Some(win.id))
            .expect("capture the dialog");
        let started = Instant::now();
        let text = reader.read_png(&png).expect("tesseract read the image");
        eprintln!("OCR of {title:?} took {:?}: {text:?}", started.elapsed());
        let lower = text.to_lowercase();
        if words.iter().all(|w| lower.contains(&w.to_lowercase())) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "OCR of {title:?} never showed {words:?}; last text: {text:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn ocr_reads_login_failed() {
    let mut s = Session::start(&Scenario::new());
    s.type_login(TEST_USER, "not-the-password");
    s.rec.wait_window("Login failed", STEP_TIMEOUT);
    let text = read_window(&s, "Login failed", &["invalid", "username", "password"]);
    let (kind, needs_text) = dialog::classify("Login failed", true);
    assert!(needs_text);
    assert_eq!(
        dialog::refine(kind, &text),
        DialogKind::LoginFailed,
        "{text:?}"
    );
}

#[test]
fn ocr_reads_gateway_connection_failed() {
    let mut s = Session::start(&Scenario::new().set("connection_failed", 1));
    s.login_paper_credentials_only();
    s.rec.wait_window("Gateway", STEP_TIMEOUT);
    let text = read_window(&s, "Gateway", &["connection to server failed"]);
    let (kind, _) = dialog::classify("Gateway", true);
    assert_eq!(
        dialog::refine(kind, &text),
        DialogKind::ConnectionFailed,
        "{text:?}"
    );
}

#[test]
fn ocr_reads_the_expired_token_dialog() {
    let mut s = Session::start(&Scenario::new());
    s.install.control("token_expired");
    s.rec.wait_window("Gateway", STEP_TIMEOUT);
    let text = read_window(&s, "Gateway", &["security tokens", "expired"]);
    let (kind, _) = dialog::classify("Gateway", true);
    assert_eq!(
        dialog::refine(kind, &text),
        DialogKind::TokenExpired,
        "{text:?}"
    );
}

#[test]
fn ocr_reads_the_lockout_wait() {
    // IBKR remembers a lockout (simulator server state): 2 minutes 30 seconds from now.
    let mut s = Session::start(&Scenario::new());
    let until = now_ms() + 150_000;
    std::fs::write(
        s.install.settings_dir.join("sim-server-state.properties"),
        format!("failures=0\nlockout_until_ms={until}\nused_steps=\n"),
    )
    .expect("write simulator state");
    // The state file is read at JVM start: start it again.
    s.sim = None;
    s.launch(None);
    s.type_login(TEST_USER, TEST_PASSWORD);
    let lockout = s.rec.wait_ev("lockout", STEP_TIMEOUT);
    let shown_s = lockout["remaining_s"].as_u64().expect("remaining_s");
    let text = read_window(
        &s,
        "Gateway",
        &["too many failed login attempts", "please wait"],
    );
    let (kind, _) = dialog::classify("Gateway", true);
    assert_eq!(
        dialog::refine(kind, &text),
        DialogKind::TooManyAttempts,
        "{text:?}"
    );
    let wait = dialog::parse_lockout_wait(&text).unwrap_or_else(|| panic!("no wait in {text:?}"));
    assert_eq!(wait, shown_s, "the wait read is the wait shown: {text:?}");
}

// ------------------------------------------------------------------------------ AT-SPI

/// A simulator session whose JVM loads the Java accessibility bridge on a private bus.
fn atspi_session(sc: &Scenario) -> (Session, ibwarden::dialog_text::AtspiBus, tempfile::TempDir) {
    require_tool("dbus-daemon", "dbus");
    assert!(
        std::path::Path::new("/usr/libexec/at-spi-bus-launcher").is_file(),
        "install the Debian package at-spi2-core"
    );
    let jvm_args = ibwarden::dialog_text::AtspiBus::jvm_args()
        .unwrap_or_else(|e| panic!("{e} (install libatk-wrapper-java libatk-wrapper-java-jni)"));
    let bus_dir = tempfile::tempdir().expect("tempdir");
    let bus = ibwarden::dialog_text::AtspiBus::start(bus_dir.path()).expect("private session bus");
    let install = SimInstall::new(sc);
    let xvfb = Xvfb::start();
    let x = common::x11::X::connect(&xvfb);
    let rec = install.record();
    // The JVM command ibwarden builds, plus the bridge's arguments and the bus address.
    let vm = std::fs::read_to_string(install.install_dir.join("ibgateway.vmoptions"))
        .expect("vmoptions");
    let mut cmd = std::process::Command::new("java");
    for l in vm.lines().map(str::trim) {
        if !l.is_empty() && !l.starts_with('#') {
            cmd.arg(l);
        }
    }
    cmd.args(&jvm_args)
        .arg(format!("-DjtsConfigDir={}", install.settings_dir.display()))
        .arg("-cp")
        .arg(format!("{}/jars/*", install.install_dir.display()))
        .arg("ibgateway.GWClient")
        .env_clear()
        .env("DISPLAY", &xvfb.display)
        .env("XAUTHORITY", &xvfb.xauthority)
        .env("HOME", &install.home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LANG", "C.UTF-8")
        .env("DBUS_SESSION_BUS_ADDRESS", bus.address())
        .current_dir(&install.install_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let sim = SimProcess {
        child: ChildGuard::spawn("simulator JVM with the ATK bridge", &mut cmd),
    };
    let mut s = Session {
        sim: Some(sim),
        x,
        xvfb,
        rec,
        install,
    };
    s.rec.wait_window("IBKR Gateway", START_TIMEOUT);
    // The bridge registers the application a moment after the first window: wait until the
    // login frame reads (windows shown before that are not in the tree).
    read_accessible(&s, &bus, "IBKR Gateway", &["Log In", "Paper Trading"]);
    (s, bus, bus_dir)
}

/// Reads `title` over AT-SPI until every word is there (the bridge registers the window a
/// moment after it is mapped). Returns the text.
fn read_accessible(
    s: &Session,
    bus: &ibwarden::dialog_text::AtspiBus,
    title: &str,
    words: &[&str],
) -> String {
    let reader = ContentReader::Atspi(ibwarden::dialog_text::AtspiReader::new(bus.address()));
    assert!(reader.available());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let started = Instant::now();
        let text = reader.read_accessible(s.pid(), title).unwrap_or_default();
        eprintln!(
            "AT-SPI read of {title:?} took {:?}: {text:?}",
            started.elapsed()
        );
        if words.iter().all(|w| text.contains(w)) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "AT-SPI never showed {words:?} in {title:?}; last: {text:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn atspi_reads_the_expired_token_dialog_exactly() {
    let (s, bus, _dir) = atspi_session(&Scenario::new());
    s.install.control("token_expired");
    let mut rec = s.install.record();
    rec.wait_window("Gateway", STEP_TIMEOUT);
    let text = read_accessible(
        &s,
        &bus,
        "Gateway",
        &["Your security tokens have expired.", "OK"],
    );
    let (kind, _) = dialog::classify("Gateway", true);
    assert_eq!(
        dialog::refine(kind, &text),
        DialogKind::TokenExpired,
        "{text:?}"
    );
}

#[test]
fn atspi_reads_login_failed_and_finds_nothing_for_another_pid() {
    let (mut s, bus, _dir) = atspi_session(&Scenario::new());
    s.type_login(TEST_USER, "not-the-password");
    s.rec.wait_window("Login failed", STEP_TIMEOUT);
    let text = read_accessible(&s, &bus, "Login failed", &["Invalid username or password."]);
    let (kind, _) = dialog::classify("Login failed", true);
    assert_eq!(
        dialog::refine(kind, &text),
        DialogKind::LoginFailed,
        "{text:?}"
    );
    // Only the gateway's own windows: another pid reads nothing.
    let reader = ibwarden::dialog_text::AtspiReader::new(bus.address());
    assert_eq!(
        reader.read_window(s.pid() + 1_000_000, "Login failed"),
        None
    );
}
