//! `launcher_log::follow` against real files (appends, a half-written line, truncation,
//! rotation, delete and re-create, a late file, the directory going away) and against the
//! gateway simulator (a silently dropped login, then an accepted one, through 2FA).
//!
//! Every wait is on the follower's channel with a deadline; no test sleeps.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ibwarden::launcher_log::{
    follow, follow_from, LauncherEvent as E, LauncherLogError, SecondFactorOutcome, StartAt,
};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// A deadline per event: the follower is woken by inotify, normally within milliseconds.
const EVENT_WAIT: Duration = Duration::from_secs(5);

fn line(msg: &str) -> String {
    format!("2026-11-24 08:12:13.456 [KQ] INFO  [JTS-AWT-EventQueue-0] - {msg}\n")
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(text.as_bytes()).expect("append");
}

async fn next(rx: &mut mpsc::Receiver<E>) -> E {
    match timeout(EVENT_WAIT, rx.recv()).await {
        Ok(Some(ev)) => ev,
        Ok(None) => panic!("the follower ended"),
        Err(_) => panic!("no launcher event within {EVENT_WAIT:?}"),
    }
}

async fn expect_seq(rx: &mut mpsc::Receiver<E>, want: &[E]) {
    let mut got = Vec::new();
    for _ in want {
        got.push(next(rx).await);
    }
    assert_eq!(got, want);
}

struct Dir {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    log: PathBuf,
}

fn dir() -> Dir {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("Jts");
    fs::create_dir(&dir).expect("mkdir");
    let log = dir.join("launcher.log");
    Dir {
        _tmp: tmp,
        dir,
        log,
    }
}

#[tokio::test]
async fn history_is_skipped_and_new_lines_are_read() {
    let d = dir();
    // An earlier session, ending in a half-written line whose tail arrives later.
    let history = format!(
        "{}{}2026-11-24 08:00:00.000 [KQ] INFO  [JTS-x] - half",
        line("AuthTimeoutMonitor-CCP: activate"),
        line("AuthTimeoutMonitor-CCP: Timeout!")
    );
    fs::write(&d.log, history).expect("write");
    let (tx, mut rx) = mpsc::channel(16);
    let _task = follow(&d.log, tx).await.expect("follow");
    // If the tail of the half line were read as a line, it would be an AuthStarted.
    append(&d.log, " AuthTimeoutMonitor-CCP: activate\n");
    append(&d.log, &line("Login has completed"));
    expect_seq(&mut rx, &[E::LoginCompleted]).await;
    // A line written in two pieces is one line.
    append(
        &d.log,
        "2026-11-24 08:12:13.456 [KQ] INFO  [JTS-x] - API server ",
    );
    append(&d.log, "listening on port 4002\n");
    expect_seq(&mut rx, &[E::ApiListening { port: 4002 }]).await;
}

#[tokio::test]
async fn start_at_beginning_reads_what_is_there() {
    let d = dir();
    fs::write(
        &d.log,
        line("AuthTimeoutMonitor-CCP: activate") + &line("AuthTimeoutMonitor-CCP: Timeout!"),
    )
    .expect("write");
    let (tx, mut rx) = mpsc::channel(16);
    let _task = follow_from(&d.log, StartAt::Beginning, tx)
        .await
        .expect("follow");
    expect_seq(&mut rx, &[E::AuthStarted, E::SilentDrop]).await;
}

#[tokio::test]
async fn silent_drop_across_appends() {
    let d = dir();
    fs::write(&d.log, line("Starting IB Gateway (simulator) pid 1")).expect("write");
    let (tx, mut rx) = mpsc::channel(16);
    let _task = follow(&d.log, tx).await.expect("follow");
    append(&d.log, &line("Login attempt 1 (live)"));
    append(&d.log, &line("AuthTimeoutMonitor-CCP: activate"));
    expect_seq(&mut rx, &[E::AuthStarted]).await;
    append(&d.log, &line("AuthTimeoutMonitor-CCP: Timeout!"));
    expect_seq(&mut rx, &[E::SilentDrop]).await;
    append(&d.log, &line("AuthTimeoutMonitor-CCP: activate"));
    append(&d.log, &line("NS_AUTH_START"));
    expect_seq(&mut rx, &[E::AuthStarted, E::AuthAccepted]).await;
}

#[tokio::test]
async fn truncation_restarts_from_the_first_byte() {
    let d = dir();
    fs::write(
        &d.log,
        line("Starting IB Gateway (simulator) pid 1").repeat(20),
    )
    .expect("write");
    let (tx, mut rx) = mpsc::channel(16);
    let _task = follow(&d.log, tx).await.expect("follow");
    append(&d.log, &line("Login has completed"));
    expect_seq(&mut rx, &[E::LoginCompleted]).await;
    // copytruncate-style: the same inode, emptied, then written again (shorter than before).
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&d.log)
        .expect("truncate");
    f.write_all(line("Existing session detected").as_bytes())
        .expect("write");
    drop(f);
    expect_seq(&mut rx, &[E::SessionPolicy]).await;
    append(&d.log, &line("Second factor authentication accepted"));
    expect_seq(&mut rx, &[E::SecondFactor(SecondFactorOutcome::Accepted)]).await;
}

#[tokio::test]
async fn rotation_reads_the_old_files_last_lines_then_the_new_file() {
    let d = dir();
    fs::write(&d.log, line("history")).expect("write");
    let (tx, mut rx) = mpsc::channel(16);
    let _task = follow(&d.log, tx).await.expect("follow");
    let mut old = OpenOptions::new().append(true).open(&d.log).expect("open");
    old.write_all(line("Existing session detected").as_bytes())
        .expect("write");
    expect_seq(&mut rx, &[E::SessionPolicy]).await;
    // A last line, then the rename, before the follower necessarily saw either.
    old.write_all(line("Connection to server failed").as_bytes())
        .expect("write");
    fs::rename(&d.log, d.dir.join("launcher.log.1")).expect("rename");
    fs::write(
        &d.log,
        line("Starting IB Gateway (simulator) pid 2") + &line("Login has completed"),
    )
    .expect("new file");
    expect_seq(
        &mut rx,
        &[E::ConnectionFailed, E::GatewayStarting, E::LoginCompleted],
    )
    .await;
    // The old file is no longer followed.
    old.write_all(line("Authentication failed").as_bytes())
        .expect("write");
    append(&d.log, &line("Session disconnected: re-login is required"));
    expect_seq(&mut rx, &[E::ReloginRequired]).await;
}

#[tokio::test]
async fn delete_and_recreate_and_a_file_that_appears_later() {
    let d = dir();
    let (tx, mut rx) = mpsc::channel(16);
    // No file yet: it is new when it appears, so it is read from its start.
    let _task = follow(&d.log, tx).await.expect("follow");
    fs::write(&d.log, line("Starting IB Gateway (simulator) pid 1")).expect("write");
    expect_seq(&mut rx, &[E::GatewayStarting]).await;
    fs::remove_file(&d.log).expect("rm");
    fs::write(&d.log, line("IB GATEWAY RESTART: restart=abc")).expect("write");
    expect_seq(&mut rx, &[E::TokenRestart]).await;
}

#[tokio::test]
async fn ends_when_the_receiver_is_dropped() {
    let d = dir();
    let (tx, rx) = mpsc::channel(16);
    let task = follow(&d.log, tx).await.expect("follow");
    drop(rx);
    let res = timeout(EVENT_WAIT, task)
        .await
        .expect("the follower stops")
        .expect("no panic");
    assert!(res.is_ok(), "{res:?}");
}

#[tokio::test]
async fn ends_with_an_error_when_the_directory_goes_away() {
    let d = dir();
    let (tx, mut rx) = mpsc::channel(16);
    let task = follow(&d.log, tx).await.expect("follow");
    append(&d.log, &line("Login has completed"));
    expect_seq(&mut rx, &[E::LoginCompleted]).await;
    fs::remove_dir_all(&d.dir).expect("rm -r");
    let res = timeout(EVENT_WAIT, task)
        .await
        .expect("the follower stops")
        .expect("no panic");
    match res {
        Err(LauncherLogError::DirectoryGone { dir }) => assert_eq!(dir, d.dir),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn bad_paths_are_named() {
    let (tx, _rx) = mpsc::channel(1);
    let e = follow("/", tx.clone()).await.expect_err("no file name");
    assert!(e.to_string().contains('/'), "{e}");
    let e = follow("/nonexistent-ibw-dir/launcher.log", tx)
        .await
        .expect_err("no directory");
    assert!(
        e.to_string().contains("/nonexistent-ibw-dir"),
        "the error names the directory: {e}"
    );
}

/// The real thing: the simulator drops the first login silently (`silent_drop=1`), accepts
/// the second; the follower, started before the JVM (no file yet), reports it in order.
#[test]
fn simulator_silent_drop_then_accepted_login() {
    use common::{is_ev, Scenario, Session, SimInstall, Xvfb, START_TIMEOUT, STEP_TIMEOUT};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let scenario = Scenario::new().set("silent_drop", 1);
    let install = SimInstall::new(&scenario);
    let log = install.settings_dir.join("launcher.log");
    assert!(!log.exists(), "fresh settings dir");
    let (tx, mut rx) = mpsc::channel(64);
    let _task = rt
        .block_on(async { follow(&log, tx).await })
        .expect("follow");
    let xvfb = Xvfb::start();
    let x = common::x11::X::connect(&xvfb);
    let rec = install.record();
    let mut s = Session {
        sim: None,
        x,
        xvfb,
        rec,
        install,
    };
    s.launch(None);
    let mut until = |want: E, within: Duration| collect_until(&rt, &mut rx, want, within);
    assert_eq!(
        until(E::GatewayStarting, START_TIMEOUT),
        vec![E::GatewayStarting]
    );

    s.type_login(common::TEST_USER, common::TEST_PASSWORD);
    // ccp_timeout_s 20 × time_factor 0.05 = 1 s after the press.
    let seen = until(E::SilentDrop, STEP_TIMEOUT);
    assert_eq!(seen, vec![E::AuthStarted, E::SilentDrop]);
    s.rec
        .wait_for("login_reset after the drop", STEP_TIMEOUT, |v| {
            is_ev(v, "login_reset")
        });

    // The username field keeps its text after a reset (caret at its end): erase it.
    s.focus("IBKR Gateway");
    for _ in 0..common::TEST_USER.len() {
        s.x.key("BackSpace");
    }
    s.type_login(common::TEST_USER, common::TEST_PASSWORD);
    let seen = until(E::AuthAccepted, STEP_TIMEOUT);
    assert_eq!(seen, vec![E::AuthStarted, E::AuthAccepted]);
    s.type_code();
    let seen = until(E::LoginCompleted, STEP_TIMEOUT);
    assert_eq!(
        seen,
        vec![
            E::SecondFactor(SecondFactorOutcome::Accepted),
            E::LoginCompleted
        ]
    );
    let port: u16 = s
        .install
        .scenario
        .get("api_port")
        .expect("api port")
        .parse()
        .expect("number");
    assert_eq!(
        until(E::ApiListening { port }, STEP_TIMEOUT),
        vec![E::ApiListening { port }]
    );
}

/// Collects follower events on `rt` until `want` arrives; returns all seen on the way.
fn collect_until(
    rt: &tokio::runtime::Runtime,
    rx: &mut mpsc::Receiver<E>,
    want: E,
    within: Duration,
) -> Vec<E> {
    rt.block_on(async {
        let mut seen = Vec::new();
        loop {
            match timeout(within, rx.recv()).await {
                Ok(Some(ev)) => {
                    let done = ev == want;
                    seen.push(ev);
                    if done {
                        return seen;
                    }
                }
                other => panic!("waiting for {want:?}: {other:?}; seen {seen:?}"),
            }
        }
    })
}

/// Logs in (live: password, then a TOTP code), has the simulator do its nightly restart,
/// and relaunches it with its auto-restart token; returns the events of the relaunch up to
/// `last`.
fn nightly_restart_then_relaunch(scenario: common::Scenario, last: E) -> Vec<E> {
    use common::{Session, START_TIMEOUT, STEP_TIMEOUT};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut s = Session::start(&scenario);
    let log = s.install.settings_dir.join("launcher.log");
    // Started after the JVM wrote its first lines: those are history.
    let (tx, mut rx) = mpsc::channel(64);
    let _task = rt
        .block_on(async { follow(&log, tx).await })
        .expect("follow");
    s.type_login(common::TEST_USER, common::TEST_PASSWORD);
    s.type_code();
    let seen = collect_until(&rt, &mut rx, E::LoginCompleted, STEP_TIMEOUT);
    assert_eq!(seen.first(), Some(&E::AuthStarted), "{seen:?}");
    assert!(
        !seen.contains(&E::GatewayStarting),
        "history skipped: {seen:?}"
    );
    let port: u16 = s
        .install
        .scenario
        .get("api_port")
        .expect("api port")
        .parse()
        .expect("number");
    let api = E::ApiListening { port };
    assert_eq!(
        collect_until(&rt, &mut rx, api.clone(), STEP_TIMEOUT),
        vec![api]
    );

    s.install.control("nightly_restart");
    let exiting = E::Exiting {
        reason: "nightly_restart".into(),
    };
    let seen = collect_until(&rt, &mut rx, exiting.clone(), STEP_TIMEOUT);
    assert_eq!(
        seen,
        vec![E::RestartInProgress, exiting],
        "one restart event"
    );
    assert_eq!(s.wait_exit(STEP_TIMEOUT), 0);
    let dirs = s.install.autorestart_dirs();
    assert_eq!(dirs.len(), 1, "one autorestart token: {dirs:?}");
    s.launch(Some(&dirs[0]));
    collect_until(&rt, &mut rx, last, START_TIMEOUT)
}

#[test]
fn simulator_nightly_restart_and_token_relaunch() {
    let seen = nightly_restart_then_relaunch(common::Scenario::new(), E::LoginCompleted);
    assert_eq!(
        seen,
        vec![
            E::GatewayStarting,
            E::TokenRestart,
            E::AuthStarted,
            E::AuthAccepted,
            E::LoginCompleted
        ]
    );
}

#[test]
fn simulator_expired_token_is_reported() {
    // token_ttl_s is scaled by time_factor 0.05: a token that lives 5 ms.
    let scenario = common::Scenario::new().set("token_ttl_s", "0.1");
    let seen = nightly_restart_then_relaunch(scenario, E::TokenExpired);
    assert_eq!(
        seen,
        vec![E::GatewayStarting, E::TokenRestart, E::TokenExpired]
    );
}

/// Runs `body` on its own runtime in another thread and fails if it has not finished within
/// `limit`: a follower that blocks a runtime thread (a FIFO's `open`, an endless read) would
/// stall the runtime's own timers, so the deadline is kept from outside it.
fn within<F>(limit: Duration, body: impl FnOnce() -> F + Send + 'static)
where
    F: std::future::Future<Output = ()>,
{
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(body());
        let _ = done_tx.send(());
        // The runtime is leaked on purpose: dropping it waits for blocking tasks, and a
        // test's FIFO may hold one until the process ends.
        std::mem::forget(rt);
    });
    match done_rx.recv_timeout(limit) {
        Ok(()) => {}
        Err(_) => panic!("not done within {limit:?}: something blocked the runtime"),
    }
}

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
}

/// This process's peak resident memory (VmHWM), in KiB. nextest runs each test in its own
/// process, so the figure is this test's.
fn peak_rss_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// A FIFO where the log should be: `follow` neither blocks opening it nor reads it; the
/// runtime stays live (a timer fires while the FIFO is there), and when a regular file
/// replaces it, its lines are read from the start.
#[test]
fn a_fifo_is_not_followed_and_a_regular_file_that_replaces_it_is() {
    within(Duration::from_secs(20), || async {
        let d = dir();
        mkfifo(&d.log);
        let (tx, mut rx) = mpsc::channel(16);
        let _task = follow(&d.log, tx).await.expect("follow");
        // Poke the FIFO's directory entry: an event for the name makes the follower look.
        fs::write(d.dir.join("other"), "x").expect("write");
        let t0 = std::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "the runtime's timers ran late"
        );
        assert!(rx.try_recv().is_err(), "nothing comes from a FIFO");
        fs::remove_file(&d.log).expect("rm fifo");
        fs::write(&d.log, line("Login has completed")).expect("write");
        expect_seq(&mut rx, &[E::LoginCompleted]).await;
    });
}

/// A FIFO replacing the followed file mid-way, then a regular file again: following goes on.
#[test]
fn following_survives_a_fifo_swapped_in() {
    within(Duration::from_secs(20), || async {
        let d = dir();
        let (tx, mut rx) = mpsc::channel(16);
        let _task = follow(&d.log, tx).await.expect("follow");
        append(&d.log, &line("Login has completed"));
        expect_seq(&mut rx, &[E::LoginCompleted]).await;
        fs::remove_file(&d.log).expect("rm");
        mkfifo(&d.log);
        fs::remove_file(&d.log).expect("rm fifo");
        fs::write(&d.log, line("IB GATEWAY RESTART: restart=abc")).expect("write");
        expect_seq(&mut rx, &[E::TokenRestart]).await;
    });
}

/// `launcher.log` → `/dev/zero` (a symlink to an endless device): ignored, memory flat, and
/// the regular file that replaces it is read.
#[test]
fn a_symlink_to_dev_zero_is_ignored_in_bounded_memory() {
    within(Duration::from_secs(20), || async {
        let d = dir();
        std::os::unix::fs::symlink("/dev/zero", &d.log).expect("symlink");
        let before = peak_rss_kib();
        let (tx, mut rx) = mpsc::channel(16);
        let _task = follow_from(&d.log, StartAt::Beginning, tx)
            .await
            .expect("follow");
        fs::write(d.dir.join("other"), "x").expect("write");
        fs::remove_file(&d.log).expect("rm link");
        fs::write(&d.log, line("Login has completed")).expect("write");
        expect_seq(&mut rx, &[E::LoginCompleted]).await;
        let grew = peak_rss_kib().saturating_sub(before);
        assert!(grew < 16 * 1024, "peak RSS grew by {grew} KiB");
    });
}

/// A 48 MiB append at once: read in chunks from its last 1 MiB, so the line at its end is
/// seen and memory stays flat; lines appended later are read as usual.
#[test]
fn a_huge_append_is_read_from_its_tail_in_bounded_memory() {
    within(Duration::from_secs(60), || async {
        let d = dir();
        fs::write(&d.log, "").expect("create");
        let (tx, mut rx) = mpsc::channel(16);
        let _task = follow(&d.log, tx).await.expect("follow");
        let before = peak_rss_kib();
        {
            let mut f = OpenOptions::new().append(true).open(&d.log).expect("open");
            let junk = line("noise that matches nothing").repeat(1024);
            for _ in 0..(48 * 1024 * 1024 / junk.len()) {
                f.write_all(junk.as_bytes()).expect("append");
            }
            f.write_all(line("Login has completed").as_bytes())
                .expect("append");
        }
        expect_seq(&mut rx, &[E::LoginCompleted]).await;
        append(&d.log, &line("IB GATEWAY RESTART: restart=abc"));
        expect_seq(&mut rx, &[E::TokenRestart]).await;
        let grew = peak_rss_kib().saturating_sub(before);
        assert!(grew < 16 * 1024, "peak RSS grew by {grew} KiB");
    });
}
