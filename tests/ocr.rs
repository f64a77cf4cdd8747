//! The OCR content reader on realistic pixels: the simulator renders the dialogs whose titles
//! cannot tell them apart (`Gateway`: connection failed, token expired, too many attempts;
//! `Login failed`), ibwarden captures them with X `GetImage` and reads them with tesseract,
//! and the dialog catalogue classifies the text. No ibwarden process: the pieces directly.
//!
//! Needs the Debian packages `tesseract-ocr` and `tesseract-ocr-eng`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ibwarden::core::dialog::{self, DialogKind};
use ibwarden::reader::ContentReader;
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
