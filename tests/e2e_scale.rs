//! End-to-end: four accounts on one 2-core host at once (paper, each with its own Xvfb and
//! JVM): every one ends ready with one login attempt, within a bound. A host with several
//! accounts is what users run; this makes it a tested promise, not only a benchmark.

mod common;
mod warden;

use std::time::{Duration, Instant};

use common::*;
use warden::Warden;

#[test]
fn four_instances_started_together_are_all_ready() {
    let installs: Vec<SimInstall> = (0..4).map(|_| SimInstall::new(&Scenario::new())).collect();
    let started = Instant::now();
    let mut wardens: Vec<Warden> = installs
        .iter()
        .map(|i| Warden::start(i, "paper", ""))
        .collect();
    for (n, w) in wardens.iter_mut().enumerate() {
        // Each gets the same bound: a login must not starve behind the others for minutes.
        let left = Duration::from_secs(180).saturating_sub(started.elapsed());
        let outcome = w.wait_ready_or_log("halted", left.max(Duration::from_secs(1)));
        assert_eq!(
            outcome.as_deref(),
            Ok("ready"),
            "instance {n} after {:?}:\n{}",
            started.elapsed(),
            w.log_tail(40)
        );
    }
    eprintln!("4 instances ready after {:?}", started.elapsed());
    for (n, install) in installs.iter().enumerate() {
        let attempts = install
            .record()
            .events()
            .into_iter()
            .filter(|e| is_ev(e, "login_attempt"))
            .count();
        assert_eq!(attempts, 1, "instance {n}");
    }
    for w in &mut wardens {
        w.stop_and_wait(Duration::from_secs(60));
    }
}
