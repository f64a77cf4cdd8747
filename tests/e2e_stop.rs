//! End-to-end stop requests: Ctrl-C in a shell script (the demo's case) delivers SIGINT to
//! the process group and the script's trap sends SIGTERM, so ibwarden sees two stop
//! requests at once. Both mean "stop cleanly": the gateway must still be closed through its
//! own window (a hard-killed JVM can strand IBKR's session). The real binary, its Xvfb, the
//! simulator; assertions on the simulator's record.

mod common;
mod warden;

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use common::*;
use warden::Warden;

const LOGIN: Duration = Duration::from_secs(60);

#[test]
fn sigint_and_sigterm_together_still_close_the_gateway_through_its_window() {
    let install = SimInstall::new(&Scenario::new());
    let mut w = Warden::start(&install, "paper", "");
    w.wait_ready(LOGIN);
    w.child.signal_group(Signal::SIGINT);
    w.child.signal_group(Signal::SIGTERM);
    let status = w.child.wait_exit(Duration::from_secs(60));
    assert!(
        status.success(),
        "ibwarden exits 0: {status:?}\n{}",
        w.log_tail(40)
    );
    let log = w.log();
    assert!(
        log.contains("already stopping cleanly"),
        "the second request is a no-op:\n{}",
        w.log_tail(40)
    );
    assert!(!log.contains("killing the gateway"), "{}", w.log_tail(40));
    let evs = install.record().events();
    assert!(
        evs.iter().any(|e| is_ev(e, "window_close_request")),
        "WM_DELETE_WINDOW sent"
    );
    let exit = evs
        .iter()
        .rev()
        .find(|e| is_ev(e, "exit"))
        .expect("the gateway exited by itself");
    assert_eq!(exit["code"], 0, "{exit}");
    assert_eq!(exit["reason"], "window_closed", "{exit}");
}

#[test]
fn a_third_stop_request_kills_a_gateway_that_does_not_close() {
    let install = SimInstall::new(&Scenario::new());
    let mut w = Warden::start(&install, "paper", "");
    w.wait_ready(LOGIN);
    // Frozen, as a hung gateway is: it answers neither the close request nor (until the
    // SIGCONT that comes with SIGTERM) a signal.
    let jvm = install
        .record()
        .events()
        .iter()
        .filter(|e| is_ev(e, "start"))
        .find_map(|e| e["pid"].as_u64())
        .expect("the gateway recorded its pid");
    kill(Pid::from_raw(jvm as i32), Signal::SIGSTOP).expect("SIGSTOP the gateway");
    // kill() only queues the stop: wait until the kernel shows every thread stopped, or
    // the close request below can still be handled (measured once in a full run).
    let stopped = || {
        std::fs::read_dir(format!("/proc/{jvm}/task"))
            .map(|rd| {
                rd.flatten().all(|t| {
                    std::fs::read_to_string(t.path().join("stat"))
                        .ok()
                        .and_then(|st| {
                            st.rsplit_once(") ")
                                .map(|(_, rest)| rest.starts_with('T') || rest.starts_with('t'))
                        })
                        .unwrap_or(true)
                })
            })
            .unwrap_or(false)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !stopped() {
        assert!(
            std::time::Instant::now() < deadline,
            "the JVM never stopped"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    w.child.signal_group(Signal::SIGINT);
    w.child.signal_group(Signal::SIGTERM);
    // The kernel merges a pending signal with a second one of the same number: the third
    // request goes once the second has been seen.
    w.wait_log("already stopping cleanly", Duration::from_secs(10));
    w.child.signal_group(Signal::SIGTERM);
    let status = w.child.wait_exit(Duration::from_secs(30));
    assert!(
        status.success(),
        "ibwarden exits 0: {status:?}\n{}",
        w.log_tail(40)
    );
    assert!(
        w.log().contains("killing the gateway"),
        "{}",
        w.log_tail(40)
    );
    let evs = install.record().events();
    assert!(
        !evs.iter().any(|e| is_ev(e, "exit")),
        "the gateway never exited by itself: {evs:?}"
    );
}
