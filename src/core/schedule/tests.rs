//! Tests of the parent module.

use super::*;
use jiff::civil::time;

const NY: &str = "America/New_York";

/// The `[schedule]` values a test varies (the config module builds the real one).
struct ScheduleConfig {
    timezone: TimeZone,
    daily_restart: Option<Time>,
    weekly_cold_restart: Option<WeekdayTime>,
    maintenance_start: Time,
    maintenance_delay: Duration,
    closedown: Option<WeekdayTime>,
}

impl Schedule {
    fn from_test(c: &ScheduleConfig) -> Schedule {
        Schedule::new(
            c.timezone.clone(),
            c.daily_restart,
            c.weekly_cold_restart,
            c.closedown,
            c.maintenance_start,
            c.maintenance_delay,
        )
    }
}

fn cfg() -> ScheduleConfig {
    ScheduleConfig {
        timezone: TimeZone::get(NY).expect("bundled tzdb"),
        daily_restart: Some(time(23, 50, 0, 0)),
        weekly_cold_restart: Some(WeekdayTime {
            weekday: Weekday::Sunday,
            time: time(1, 30, 0, 0),
        }),
        maintenance_start: time(23, 45, 0, 0),
        maintenance_delay: Duration::from_secs(480),
        closedown: None,
    }
}

fn ts(s: &str) -> Timestamp {
    s.parse().expect("test timestamp")
}

/// All events in [from, to) by repeated `next_event`.
fn events(s: &Schedule, from: Timestamp, to: Timestamp) -> Vec<(Timestamp, ScheduledEvent)> {
    let mut out = Vec::new();
    let mut now = from;
    while let Some((at, ev)) = s.next_event(now) {
        if at >= to {
            break;
        }
        out.push((at, ev));
        now = at;
    }
    out
}

#[test]
fn daily_restart_once_per_local_day_across_spring_forward() {
    let s = Schedule::from_test(&cfg());
    let evs = events(&s, ts("2026-03-05T00:00:00Z"), ts("2026-03-12T00:00:00Z"));
    let daily: Vec<Timestamp> = evs
        .iter()
        .filter(|(_, e)| *e == ScheduledEvent::DailyRestart)
        .map(|(t, _)| *t)
        .collect();
    // 23:50 EST = 04:50Z next day until Sat 7 Mar; 23:50 EDT = 03:50Z from Sun 8 Mar.
    assert_eq!(
        daily,
        vec![
            ts("2026-03-05T04:50:00Z"), // Wed 4 Mar 23:50 EST
            ts("2026-03-06T04:50:00Z"),
            ts("2026-03-07T04:50:00Z"),
            ts("2026-03-08T04:50:00Z"), // Sat 7 Mar 23:50 EST
            ts("2026-03-09T03:50:00Z"), // Sun 8 Mar 23:50 EDT
            ts("2026-03-10T03:50:00Z"),
            ts("2026-03-11T03:50:00Z"),
        ]
    );
    // Every local day has exactly one, at 23:50 local.
    let tz = s.timezone().clone();
    for t in &daily {
        assert_eq!(tz.to_datetime(*t).time(), time(23, 50, 0, 0));
    }
}

#[test]
fn daily_restart_once_per_local_day_across_fall_back() {
    let s = Schedule::from_test(&cfg());
    let evs = events(&s, ts("2026-10-30T00:00:00Z"), ts("2026-11-04T00:00:00Z"));
    let daily: Vec<Timestamp> = evs
        .iter()
        .filter(|(_, e)| *e == ScheduledEvent::DailyRestart)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(
        daily,
        vec![
            ts("2026-10-30T03:50:00Z"), // Thu 29 Oct 23:50 EDT
            ts("2026-10-31T03:50:00Z"),
            ts("2026-11-01T03:50:00Z"), // Sat 31 Oct 23:50 EDT
            ts("2026-11-02T04:50:00Z"), // Sun 1 Nov 23:50 EST (25-hour day)
            ts("2026-11-03T04:50:00Z"),
        ]
    );
}

#[test]
fn sunday_cold_restart_on_both_dst_sundays() {
    let s = Schedule::from_test(&cfg());
    // Spring forward: Sun 8 Mar 2026, 02:00 EST → 03:00 EDT; 01:30 is still EST.
    let evs = events(&s, ts("2026-03-07T12:00:00Z"), ts("2026-03-08T12:00:00Z"));
    let cold: Vec<_> = evs
        .iter()
        .filter(|(_, e)| *e == ScheduledEvent::WeeklyColdRestart)
        .collect();
    assert_eq!(
        cold,
        vec![&(
            ts("2026-03-08T06:30:00Z"),
            ScheduledEvent::WeeklyColdRestart
        )]
    );
    // Fall back: Sun 1 Nov 2026, 01:30 happens twice; it fires once, the first time
    // (EDT, 05:30Z), not again at 01:30 EST (06:30Z).
    let evs = events(&s, ts("2026-10-31T12:00:00Z"), ts("2026-11-01T12:00:00Z"));
    let cold: Vec<_> = evs
        .iter()
        .filter(|(_, e)| *e == ScheduledEvent::WeeklyColdRestart)
        .collect();
    assert_eq!(
        cold,
        vec![&(
            ts("2026-11-01T05:30:00Z"),
            ScheduledEvent::WeeklyColdRestart
        )]
    );
    // And only on Sundays: one per week.
    let evs = events(&s, ts("2026-10-01T00:00:00Z"), ts("2026-11-30T00:00:00Z"));
    let cold: Vec<Timestamp> = evs
        .iter()
        .filter(|(_, e)| *e == ScheduledEvent::WeeklyColdRestart)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(cold.len(), 9, "{cold:?}");
    for t in cold {
        let local = s.timezone().to_datetime(t);
        assert_eq!(local.weekday(), Weekday::Sunday);
        assert_eq!(local.time(), time(1, 30, 0, 0));
    }
}

#[test]
fn a_time_in_the_spring_gap_happens_once_an_hour_later() {
    let mut c = cfg();
    c.daily_restart = Some(time(2, 30, 0, 0));
    c.weekly_cold_restart = None;
    let s = Schedule::from_test(&c);
    let evs = events(&s, ts("2026-03-07T00:00:00Z"), ts("2026-03-10T00:00:00Z"));
    assert_eq!(
        evs,
        vec![
            (ts("2026-03-07T07:30:00Z"), ScheduledEvent::DailyRestart), // 02:30 EST
            (ts("2026-03-08T07:30:00Z"), ScheduledEvent::DailyRestart), // gap → 03:30 EDT
            (ts("2026-03-09T06:30:00Z"), ScheduledEvent::DailyRestart), // 02:30 EDT
        ]
    );
}

#[test]
fn closedown_beats_a_restart_at_the_same_instant() {
    let mut c = cfg();
    c.closedown = Some(WeekdayTime {
        weekday: Weekday::Friday,
        time: time(23, 50, 0, 0),
    });
    let s = Schedule::from_test(&c);
    // Fri 6 Nov 2026 23:50 EST = Sat 04:50Z.
    let (at, ev) = s.next_event(ts("2026-11-06T12:00:00Z")).expect("an event");
    assert_eq!(
        (at, ev),
        (ts("2026-11-07T04:50:00Z"), ScheduledEvent::Closedown)
    );
}

#[test]
fn nothing_configured_means_no_event() {
    let mut c = cfg();
    c.daily_restart = None;
    c.weekly_cold_restart = None;
    let s = Schedule::from_test(&c);
    assert_eq!(s.next_event(ts("2026-11-06T12:00:00Z")), None);
    let sch = Scheduler::new(s, ts("2026-11-06T12:00:00Z"));
    assert_eq!(sch.next_check(ts("2026-11-06T12:00:00Z")), RECHECK);
}

#[test]
fn maintenance_blocks_full_login_across_midnight() {
    let s = Schedule::from_test(&cfg());
    // Tue 24 Nov 2026 (EST): window 23:45 → 00:15 + 8 min = 00:23 local = 05:23Z.
    let end = ts("2026-11-25T05:23:00Z");
    assert_eq!(s.full_login_blocked_until(ts("2026-11-25T04:44:59Z")), None);
    assert_eq!(
        s.full_login_blocked_until(ts("2026-11-25T04:45:00Z")),
        Some(end)
    );
    // 8 s after the reset exit (the peers' cascade): blocked.
    assert_eq!(
        s.full_login_blocked_until(ts("2026-11-25T04:45:20Z")),
        Some(end)
    );
    // After midnight local, it is yesterday's window that blocks.
    assert_eq!(
        s.full_login_blocked_until(ts("2026-11-25T05:10:00Z")),
        Some(end)
    );
    assert_eq!(
        s.full_login_blocked_until(ts("2026-11-25T05:22:59Z")),
        Some(end)
    );
    assert_eq!(s.full_login_blocked_until(end), None);
    assert_eq!(s.full_login_blocked_until(ts("2026-11-25T12:00:00Z")), None);
    // The window is local: in summer it is an hour earlier in UTC.
    assert_eq!(
        s.full_login_blocked_until(ts("2026-07-01T03:50:00Z")),
        Some(ts("2026-07-01T04:23:00Z"))
    );
    assert_eq!(s.full_login_blocked_until(ts("2026-07-01T04:50:00Z")), None);
}

#[test]
fn maintenance_on_the_dst_nights() {
    let s = Schedule::from_test(&cfg());
    // Sat 31 Oct 23:45 EDT (03:45Z 1 Nov); the block ends 00:23 EDT on Sun (04:23Z),
    // before the 01:00→01:00 fold.
    assert_eq!(
        s.full_login_blocked_until(ts("2026-11-01T04:00:00Z")),
        Some(ts("2026-11-01T04:23:00Z"))
    );
    // Sat 7 Mar 23:45 EST (04:45Z 8 Mar) → 00:23 EST (05:23Z).
    assert_eq!(
        s.full_login_blocked_until(ts("2026-03-08T05:00:00Z")),
        Some(ts("2026-03-08T05:23:00Z"))
    );
    let (start, end) = s
        .maintenance_around(ts("2026-03-08T12:00:00Z"))
        .expect("next window");
    // Sun 8 Mar 23:45 EDT = 03:45Z on the 9th.
    assert_eq!(start, ts("2026-03-09T03:45:00Z"));
    assert_eq!(end, ts("2026-03-09T04:23:00Z"));
}

#[test]
fn helpers_for_the_core() {
    let s = Schedule::from_test(&cfg());
    let t = timestamp_from_unix_ms(1_795_584_180_000);
    assert_eq!(t, ts("2026-11-25T05:23:00Z"));
    assert_eq!(s.format_local(t), "Wed 00:23 EST");
    assert_eq!(timestamp_from_unix_ms(u64::MAX), Timestamp::MAX);
}

#[test]
fn zero_delay_still_blocks_the_published_window() {
    let mut c = cfg();
    c.maintenance_delay = Duration::ZERO;
    let s = Schedule::from_test(&c);
    assert_eq!(
        s.full_login_blocked_until(ts("2026-11-25T05:00:00Z")),
        Some(ts("2026-11-25T05:15:00Z"))
    );
}

#[test]
fn nightly_reset_exit_window() {
    let s = Schedule::from_test(&cfg());
    // The gateway exits at ~23:45:12 ET.
    assert!(s.is_nightly_reset_exit(ts("2026-11-25T04:45:12Z")));
    assert!(s.is_nightly_reset_exit(ts("2026-11-25T04:30:00Z")));
    assert!(s.is_nightly_reset_exit(ts("2026-11-25T05:14:59Z")));
    assert!(!s.is_nightly_reset_exit(ts("2026-11-25T05:15:00Z")));
    assert!(!s.is_nightly_reset_exit(ts("2026-11-25T04:29:59Z")));
    assert!(!s.is_nightly_reset_exit(ts("2026-11-25T15:00:00Z")));
    // Summer time: an hour earlier in UTC.
    assert!(s.is_nightly_reset_exit(ts("2026-07-01T03:45:12Z")));
    assert!(!s.is_nightly_reset_exit(ts("2026-07-01T04:45:12Z")));
}

#[test]
fn scheduler_fires_each_event_once() {
    let s = Schedule::from_test(&cfg());
    let start = ts("2026-11-24T12:00:00Z");
    let mut sch = Scheduler::new(s, start);
    assert_eq!(sch.poll(start), Poll::default());
    let (at, ev) = sch.upcoming(start).expect("an event");
    assert_eq!(
        (at, ev),
        (ts("2026-11-25T04:50:00Z"), ScheduledEvent::DailyRestart)
    );
    assert_eq!(sch.next_check(start), RECHECK);
    assert_eq!(
        sch.upcoming_for_status(start),
        Some(("daily restart".to_string(), 1_795_582_200_000))
    );
    let just_before = at.checked_sub(SignedDuration::from_secs(5)).expect("ts");
    assert_eq!(sch.next_check(just_before), Duration::from_secs(5));
    assert_eq!(sch.poll(just_before).fired, None);
    let p = sch.poll(at);
    assert_eq!(p.fired, Some(Fired { event: ev, at }));
    assert!(p.missed.is_empty());
    // Polling again at the same or a later time does not fire it again.
    assert_eq!(sch.poll(at).fired, None);
    let later = at.checked_add(SignedDuration::from_secs(30)).expect("ts");
    assert_eq!(sch.poll(later).fired, None);
}

#[test]
fn clock_jump_backwards_does_not_fire_twice() {
    let s = Schedule::from_test(&cfg());
    let at = ts("2026-11-25T04:50:00Z");
    let mut sch = Scheduler::new(s, ts("2026-11-25T04:40:00Z"));
    assert!(sch.poll(at).fired.is_some());
    // NTP steps the clock back 20 minutes: the 23:50 restart lies ahead again in wall
    // time, but it has fired.
    let back = ts("2026-11-25T04:35:00Z");
    assert_eq!(sch.poll(back), Poll::default());
    assert_eq!(sch.poll(ts("2026-11-25T04:50:00Z")).fired, None);
    assert_eq!(sch.poll(ts("2026-11-25T04:55:00Z")).fired, None);
    // The next day's fires normally.
    let next = ts("2026-11-26T04:50:00Z");
    assert_eq!(
        sch.upcoming(ts("2026-11-25T05:00:00Z")),
        Some((next, ScheduledEvent::DailyRestart))
    );
    assert_eq!(
        sch.poll(next).fired.map(|f| f.event),
        Some(ScheduledEvent::DailyRestart)
    );
}

#[test]
fn clock_corrected_from_far_future_starts_over() {
    let s = Schedule::from_test(&cfg());
    // Booted with a clock in 2031, then corrected.
    let mut sch = Scheduler::new(s, ts("2031-01-01T00:00:00Z"));
    assert_eq!(sch.poll(ts("2026-11-24T12:00:00Z")), Poll::default());
    let p = sch.poll(ts("2026-11-25T04:50:00Z"));
    assert_eq!(p.fired.map(|f| f.event), Some(ScheduledEvent::DailyRestart));
}

#[test]
fn clock_jump_forward_fires_late_once_or_drops_stale() {
    let s = Schedule::from_test(&cfg());
    // A 20-minute jump over the 23:50 restart: fires, 15 min late.
    let mut sch = Scheduler::new(s.clone(), ts("2026-11-25T04:45:00Z"));
    let p = sch.poll(ts("2026-11-25T05:05:00Z"));
    assert_eq!(
        p.fired,
        Some(Fired {
            event: ScheduledEvent::DailyRestart,
            at: ts("2026-11-25T04:50:00Z")
        })
    );
    // Suspended for two days: the stale restarts are dropped, not replayed.
    let mut sch = Scheduler::new(s.clone(), ts("2026-11-24T12:00:00Z"));
    let p = sch.poll(ts("2026-11-26T12:00:00Z"));
    assert_eq!(p.fired, None);
    assert_eq!(
        p.missed,
        vec![Fired {
            event: ScheduledEvent::DailyRestart,
            at: ts("2026-11-26T04:50:00Z")
        }]
    );
    // A jump over both Sunday events (Sat 23:50 daily, Sun 01:30 cold) within the hour:
    // only the cold restart fires; the daily one is reported as missed.
    let mut sch = Scheduler::new(s, ts("2026-11-29T04:40:00Z")); // Sat 28 23:40 EST
    let p = sch.poll(ts("2026-11-29T06:35:00Z")); // Sun 01:35 EST
    assert_eq!(
        p.fired,
        Some(Fired {
            event: ScheduledEvent::WeeklyColdRestart,
            at: ts("2026-11-29T06:30:00Z")
        })
    );
    assert_eq!(p.missed.len(), 1);
    assert_eq!(p.missed[0].event, ScheduledEvent::DailyRestart);
}

#[test]
fn scheduler_walks_a_dst_week_minute_by_minute() {
    // Drive the scheduler the way the driver does (poll, sleep next_check) through the
    // fall-back week and collect what fires.
    let s = Schedule::from_test(&cfg());
    let mut now = ts("2026-10-29T00:00:00Z");
    let end = ts("2026-11-05T00:00:00Z");
    let mut sch = Scheduler::new(s, now);
    let mut fired = Vec::new();
    while now < end {
        if let Some(f) = sch.poll(now).fired {
            fired.push((f.at, f.event, now));
        }
        let step = sch.next_check(now).max(Duration::from_millis(1));
        now = now
            .checked_add(SignedDuration::try_from(step).expect("small"))
            .expect("ts");
    }
    // Every firing happens exactly at its instant.
    for (at, _, when) in &fired {
        assert_eq!(at, when);
    }
    let kinds: Vec<(Timestamp, ScheduledEvent)> = fired.iter().map(|(a, e, _)| (*a, *e)).collect();
    assert_eq!(
        kinds,
        vec![
            (ts("2026-10-29T03:50:00Z"), ScheduledEvent::DailyRestart),
            (ts("2026-10-30T03:50:00Z"), ScheduledEvent::DailyRestart),
            (ts("2026-10-31T03:50:00Z"), ScheduledEvent::DailyRestart),
            (ts("2026-11-01T03:50:00Z"), ScheduledEvent::DailyRestart),
            (
                ts("2026-11-01T05:30:00Z"),
                ScheduledEvent::WeeklyColdRestart
            ),
            (ts("2026-11-02T04:50:00Z"), ScheduledEvent::DailyRestart),
            (ts("2026-11-03T04:50:00Z"), ScheduledEvent::DailyRestart),
            (ts("2026-11-04T04:50:00Z"), ScheduledEvent::DailyRestart),
        ]
    );
}

#[test]
fn date_helpers_are_consistent() {
    let s = Schedule::from_test(&cfg());
    let now = ts("2026-11-25T12:00:00Z");
    let last = s
        .last_event_of(ScheduledEvent::WeeklyColdRestart, now)
        .expect("last sunday");
    assert_eq!(last, ts("2026-11-22T06:30:00Z"));
    assert_eq!(
        s.next_event_of(ScheduledEvent::WeeklyColdRestart, now),
        Some(ts("2026-11-29T06:30:00Z"))
    );
}
