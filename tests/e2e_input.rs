//! End-to-end: what ibwarden types arrives exactly, never goes into another window, and a
//! gateway whose API does not answer is never reported ready.

mod common;
mod warden;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use warden::Warden;

/// Every printable ASCII symbol, a space, and letters outside ASCII (Latin-1 and beyond).
const HARD_PASSWORD: &str = "p@ss w0rd!#$%^&*()_+{}|:\"<>?~äöüßé€ж";

#[test]
fn a_password_with_every_symbol_arrives_exactly_20_times_in_a_row() {
    for run in 0..20 {
        let sc = Scenario::new()
            .set("password", HARD_PASSWORD)
            .set("paper_password", HARD_PASSWORD);
        let install = SimInstall::new(&sc);
        let mut w = Warden::start(&install, "paper", "");
        w.wait_ready(Duration::from_secs(60));
        let rec = install.record();
        let attempts: Vec<_> = rec
            .events()
            .into_iter()
            .filter(|e| is_ev(e, "login_attempt"))
            .collect();
        assert_eq!(attempts.len(), 1, "run {run}: {attempts:?}");
        assert_eq!(
            attempts[0]["password"].as_str(),
            Some(HARD_PASSWORD),
            "run {run}: the password arrived altered"
        );
        assert_eq!(attempts[0]["verdict"], "ok", "run {run}");
        w.assert_no_secret_in_logs(&install);
        w.stop_and_wait(Duration::from_secs(60));
    }
}

#[test]
fn an_api_port_that_accepts_but_never_answers_is_never_ready() {
    let install = SimInstall::new(&Scenario::new().set("api_hang_handshake", true));
    let mut w = Warden::start(&install, "live", "");
    let mut rec = install.record();
    rec.wait_ev("logged_in", Duration::from_secs(60));
    // Let ibwarden's probe connect (and fail) several times after the login completed.
    for _ in 0..4 {
        rec.wait_ev("api_connect", Duration::from_secs(30));
    }
    w.drain_notifications();
    assert!(
        !w.sent_ready(),
        "READY sent without an API handshake: {:?}",
        w.notifications
    );
    assert!(
        !w.log().contains(" ready "),
        "logged ready: {}",
        w.log_tail(20)
    );
    w.stop_and_wait(Duration::from_secs(60));
}

/// An X client that grabs the keyboard focus for its own window in a tight loop and counts
/// every key it receives.
struct Thief {
    stop: Arc<AtomicBool>,
    keys: Arc<AtomicUsize>,
    steals: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Thief {
    fn start(display: &str, xauthority: &std::path::Path) -> Thief {
        use xcb::x;
        let target = ibwarden::x11::DisplayTarget::existing(display, Some(xauthority.into()));
        let (conn, screen_num) = ibwarden::x11::connect(&target, &[]).expect("thief connects");
        let stop = Arc::new(AtomicBool::new(false));
        let keys = Arc::new(AtomicUsize::new(0));
        let steals = Arc::new(AtomicUsize::new(0));
        let (s2, k2, st2) = (stop.clone(), keys.clone(), steals.clone());
        let thread = std::thread::spawn(move || {
            let setup = conn.get_setup();
            let screen = setup.roots().nth(screen_num as usize).expect("screen");
            let win: x::Window = conn.generate_id();
            conn.send_and_check_request(&x::CreateWindow {
                depth: x::COPY_FROM_PARENT as u8,
                wid: win,
                parent: screen.root(),
                x: 700,
                y: 600,
                width: 300,
                height: 100,
                border_width: 0,
                class: x::WindowClass::InputOutput,
                visual: screen.root_visual(),
                value_list: &[x::Cw::EventMask(
                    x::EventMask::KEY_PRESS | x::EventMask::FOCUS_CHANGE,
                )],
            })
            .expect("create thief window");
            conn.send_and_check_request(&x::MapWindow { window: win })
                .expect("map thief");
            while !s2.load(Ordering::SeqCst) {
                let _ = conn.send_and_check_request(&x::SetInputFocus {
                    revert_to: x::InputFocus::PointerRoot,
                    focus: win,
                    time: x::CURRENT_TIME,
                });
                st2.fetch_add(1, Ordering::SeqCst);
                while let Ok(Some(ev)) = conn.poll_for_event() {
                    if let xcb::Event::X(x::Event::KeyPress(_)) = ev {
                        k2.fetch_add(1, Ordering::SeqCst);
                    }
                }
                // A stress actor, not a wait: re-take the focus every 2 ms.
                std::thread::sleep(Duration::from_millis(2));
            }
            // Collect keys that were in flight.
            let _ = conn.send_and_check_request(&x::UnmapWindow { window: win });
            while let Ok(Some(ev)) = conn.poll_for_event() {
                if let xcb::Event::X(x::Event::KeyPress(_)) = ev {
                    k2.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Thief {
            stop,
            keys,
            steals,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("thief thread");
        }
        self.keys.load(Ordering::SeqCst)
    }
}

#[test]
fn a_window_that_steals_the_focus_never_receives_a_key() {
    // The thief is in place as soon as ibwarden's display exists, before the JVM has even
    // started (about a second before the login frame appears).
    let install = SimInstall::new(&Scenario::new());
    let mut w = Warden::start(&install, "live", "");
    let display = w.wait_log("Xvfb started", Duration::from_secs(30));
    let name = display
        .split("display=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .map(|s| s.trim_matches('"').to_string())
        .expect("display name in the log");
    let xauth = w.state_dir.join("display").join("Xauthority");
    let thief = Thief::start(&name, &xauth);
    w.wait_log("window mapped", Duration::from_secs(30));
    // Keep stealing while ibwarden tries to type (it retries while the focus is wrong).
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert!(w.child.try_wait().is_none(), "ibwarden died");
        std::thread::sleep(Duration::from_millis(50));
    }
    let steals = thief.steals.load(Ordering::SeqCst);
    let stolen_keys = thief.finish();
    assert!(steals > 100, "the thief did not run ({steals})");
    assert_eq!(stolen_keys, 0, "keys went into the focus thief's window");
    // Once the thief is gone, the login completes with the right credentials.
    w.wait_ready(Duration::from_secs(60));
    let attempts: Vec<_> = install
        .record()
        .events()
        .into_iter()
        .filter(|e| is_ev(e, "login_attempt"))
        .collect();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0]["password"], TEST_PASSWORD);
    w.stop_and_wait(Duration::from_secs(60));
}
