//! IBKR's calendar: planned restarts and the nightly maintenance window, in wall time.
//!
//! Pure: every function takes the wall-clock instant (`now`) as a parameter and reads no
//! clock. Nothing is cached between calls: each answer is recomputed from the local calendar
//! of the configured time zone, so DST changes and clock steps are handled by construction.
//!
//! - [`Schedule`]: the configured times. [`Schedule::next_event`] is the next planned event,
//!   [`Schedule::full_login_blocked_until`] the maintenance guard (`reference/peers.md` §9,
//!   §16: a full login ~8 s after the nightly reset was silently dropped and cascaded into a
//!   35–60 minute lockout), [`Schedule::is_nightly_reset_exit`] tells the gateway's own
//!   nightly auto-restart exit (code 0) from other clean exits.
//! - [`Scheduler`]: the small amount of state needed to fire each event exactly once even
//!   when the wall clock jumps (the driver owns one and polls it).
//!
//! Local times that do not exist (the spring-forward gap) or exist twice (the fall-back
//! hour) are resolved the "compatible" way (RFC 5545, `jiff`'s default): a time in the gap
//! moves forward by the gap's length, an ambiguous time takes its first occurrence. So a
//! daily event happens exactly once per local day.

use std::fmt;
use std::time::Duration;

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// How long IBKR's nightly maintenance lasts after `maintenance_start` (IBKR publishes
/// 23:45–00:15 ET). The configured `maintenance_delay` is added on top.
pub const MAINTENANCE_WINDOW: Duration = Duration::from_secs(30 * 60);

/// A clean (code 0) JVM exit this long before `maintenance_start` still counts as the
/// nightly auto-restart: the gateway's clock and ours may differ, and its restart time is
/// set in the gateway (Lock and Exit), not by us.
pub const RESET_EXIT_EARLY: Duration = Duration::from_secs(15 * 60);

/// An event fired later than this (the machine slept, the clock jumped forward) is dropped
/// instead of fired: a restart hours late is a surprise, not a plan.
pub const MAX_LATENESS: Duration = Duration::from_secs(60 * 60);

/// A backwards clock step larger than this is taken as a corrected clock (forget what
/// fired "in the future"); smaller steps never fire an event twice.
pub const CLOCK_RESET: Duration = Duration::from_secs(24 * 60 * 60);

/// The driver re-reads the wall clock at least this often, so a clock step or a DST change
/// is noticed even while a monotonic sleep towards the next event is pending.
pub const RECHECK: Duration = Duration::from_secs(60);

/// A weekly point in (zoned) time, e.g. `Sun 01:30`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeekdayTime {
    /// Day of the week.
    pub weekday: Weekday,
    /// Time of day on that day.
    pub time: Time,
}

impl fmt::Display for WeekdayTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let day = match self.weekday {
            Weekday::Monday => "Mon",
            Weekday::Tuesday => "Tue",
            Weekday::Wednesday => "Wed",
            Weekday::Thursday => "Thu",
            Weekday::Friday => "Fri",
            Weekday::Saturday => "Sat",
            Weekday::Sunday => "Sun",
        };
        write!(f, "{day} {:02}:{:02}", self.time.hour(), self.time.minute())
    }
}

/// A planned event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScheduledEvent {
    /// Our own daily restart: relaunch, with the gateway's auto-restart token if present.
    DailyRestart,
    /// The weekly restart after IBKR's Sunday token expiry: a full login.
    WeeklyColdRestart,
    /// Stop for good (until started again).
    Closedown,
}

impl ScheduledEvent {
    /// A short name for logs and `status` (`daily restart`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ScheduledEvent::DailyRestart => "daily restart",
            ScheduledEvent::WeeklyColdRestart => "weekly cold restart",
            ScheduledEvent::Closedown => "closedown",
        }
    }

    /// When two events are due at once, the stronger one wins: a closedown makes any
    /// restart moot, and a cold restart includes a daily one.
    fn rank(self) -> u8 {
        match self {
            ScheduledEvent::DailyRestart => 0,
            ScheduledEvent::WeeklyColdRestart => 1,
            ScheduledEvent::Closedown => 2,
        }
    }
}

impl fmt::Display for ScheduledEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The configured calendar (plain values; cheap to clone).
#[derive(Clone, Debug)]
pub struct Schedule {
    tz: TimeZone,
    daily_restart: Option<Time>,
    weekly_cold_restart: Option<WeekdayTime>,
    closedown: Option<WeekdayTime>,
    maintenance_start: Time,
    maintenance_delay: SignedDuration,
}

impl Schedule {
    /// A calendar from plain values (the config builds it from a validated `[schedule]`).
    pub fn new(
        tz: TimeZone,
        daily_restart: Option<Time>,
        weekly_cold_restart: Option<WeekdayTime>,
        closedown: Option<WeekdayTime>,
        maintenance_start: Time,
        maintenance_delay: Duration,
    ) -> Schedule {
        Schedule {
            tz,
            daily_restart,
            weekly_cold_restart,
            closedown,
            maintenance_start,
            // Validation caps the delay at one hour; saturate rather than panic anyway.
            maintenance_delay: SignedDuration::try_from(maintenance_delay)
                .unwrap_or(SignedDuration::MAX),
        }
    }

    /// The time zone all times are in.
    pub fn timezone(&self) -> &TimeZone {
        &self.tz
    }

    /// `at` as local wall time for people (`Wed 00:23 EST`), e.g. in a `status` reason.
    pub fn format_local(&self, at: Timestamp) -> String {
        at.to_zoned(self.tz.clone())
            .strftime("%a %H:%M %Z")
            .to_string()
    }

    /// The next planned event strictly after `now`, if any is configured. Events at the same
    /// instant are merged: the stronger one is returned (closedown > cold > daily).
    pub fn next_event(&self, now: Timestamp) -> Option<(Timestamp, ScheduledEvent)> {
        let mut best: Option<(Timestamp, ScheduledEvent)> = None;
        for (kind, at) in self.candidates(now) {
            let Some(at) = at else { continue };
            best = match best {
                Some((t, k)) if t < at || (t == at && k.rank() >= kind.rank()) => Some((t, k)),
                _ => Some((at, kind)),
            };
        }
        best
    }

    /// The latest instant of `kind` at or before `now` (used to catch up after a clock jump).
    pub fn last_event_of(&self, kind: ScheduledEvent, now: Timestamp) -> Option<Timestamp> {
        let today = self.tz.to_datetime(now).date();
        // A weekly event is at most 7 days back; look 8 to cover DST-shifted instants.
        (0..=8)
            .filter_map(|back| today.checked_sub(jiff::Span::new().days(back)).ok())
            .filter_map(|day| self.instant_of(kind, day))
            .filter(|at| *at <= now)
            .max()
    }

    /// The first instant of `kind` strictly after `now`.
    pub fn next_event_of(&self, kind: ScheduledEvent, now: Timestamp) -> Option<Timestamp> {
        let today = self.tz.to_datetime(now).date();
        // Start a day back: a time late at night on the previous local day can still lie
        // ahead in UTC terms only if the zone moved; cheap to include.
        (-1..=8)
            .filter_map(|d| today.checked_add(jiff::Span::new().days(d)).ok())
            .filter_map(|day| self.instant_of(kind, day))
            .filter(|at| *at > now)
            .min()
    }

    /// If a full login (credentials and second factor, no auto-restart token) must not start
    /// at `now`, the instant from which it may. The blocked interval is
    /// `[maintenance_start, maintenance_start + MAINTENANCE_WINDOW + maintenance_delay)`,
    /// local time, every day; it may span midnight.
    pub fn full_login_blocked_until(&self, now: Timestamp) -> Option<Timestamp> {
        let (start, end) = self.maintenance_around(now)?;
        (start <= now && now < end).then_some(end)
    }

    /// True if a clean JVM exit (code 0) at `now` is the gateway's own nightly auto-restart:
    /// it falls within `[maintenance_start - RESET_EXIT_EARLY, maintenance_start +
    /// MAINTENANCE_WINDOW)`. Such an exit is relaunched with the token, and never followed by
    /// a full login before [`Schedule::full_login_blocked_until`] allows it.
    pub fn is_nightly_reset_exit(&self, now: Timestamp) -> bool {
        let early = signed(RESET_EXIT_EARLY);
        let window = signed(MAINTENANCE_WINDOW);
        self.maintenance_starts_near(now).into_iter().any(|start| {
            let (Ok(from), Ok(to)) = (start.checked_sub(early), start.checked_add(window)) else {
                return false;
            };
            from <= now && now < to
        })
    }

    /// The maintenance interval (start, end of the login block) containing `now`, or else
    /// the next one.
    pub fn maintenance_around(&self, now: Timestamp) -> Option<(Timestamp, Timestamp)> {
        let block = signed(MAINTENANCE_WINDOW).checked_add(self.maintenance_delay)?;
        let mut intervals: Vec<(Timestamp, Timestamp)> = self
            .maintenance_starts_near(now)
            .into_iter()
            .filter_map(|s| s.checked_add(block).ok().map(|e| (s, e)))
            .collect();
        intervals.sort();
        intervals
            .iter()
            .find(|(s, e)| *s <= now && now < *e)
            .or_else(|| intervals.iter().find(|(s, _)| *s > now))
            .copied()
    }

    /// Maintenance starts on the local days around `now` (yesterday's may still be running
    /// after midnight).
    fn maintenance_starts_near(&self, now: Timestamp) -> Vec<Timestamp> {
        let today = self.tz.to_datetime(now).date();
        (-1..=1)
            .filter_map(|d| today.checked_add(jiff::Span::new().days(d)).ok())
            .filter_map(|day| {
                self.tz
                    .to_timestamp(day.to_datetime(self.maintenance_start))
                    .ok()
            })
            .collect()
    }

    fn candidates(&self, now: Timestamp) -> [(ScheduledEvent, Option<Timestamp>); 3] {
        [
            ScheduledEvent::DailyRestart,
            ScheduledEvent::WeeklyColdRestart,
            ScheduledEvent::Closedown,
        ]
        .map(|k| (k, self.next_event_of(k, now)))
    }

    /// The instant of `kind` on local day `day`, if it happens that day.
    fn instant_of(&self, kind: ScheduledEvent, day: Date) -> Option<Timestamp> {
        let time = match kind {
            ScheduledEvent::DailyRestart => self.daily_restart?,
            ScheduledEvent::WeeklyColdRestart => weekly_on(self.weekly_cold_restart?, day)?,
            ScheduledEvent::Closedown => weekly_on(self.closedown?, day)?,
        };
        // "Compatible" disambiguation: gap → later, fold → earlier (see the module doc).
        self.tz.to_timestamp(day.to_datetime(time)).ok()
    }
}

/// The wall-clock instant of the core's `Now::unix_ms`.
pub fn timestamp_from_unix_ms(unix_ms: u64) -> Timestamp {
    Timestamp::from_millisecond(i64::try_from(unix_ms).unwrap_or(i64::MAX))
        .unwrap_or(Timestamp::MAX)
}

fn weekly_on(w: WeekdayTime, day: Date) -> Option<Time> {
    (day.weekday() == w.weekday).then_some(w.time)
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// What [`Scheduler::poll`] found due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fired {
    /// The event.
    pub event: ScheduledEvent,
    /// Its planned instant.
    pub at: Timestamp,
}

/// Fires each planned event once, however the wall clock moves.
///
/// Call contract (the driver): create it at start-up with the current wall time, then call
/// [`Scheduler::poll`] with the current wall time whenever [`Scheduler::next_check`] says
/// (it is at most [`RECHECK`] away, so clock steps are noticed), and feed a returned event
/// to the core as `Input::Scheduled`.
///
/// Rules: an event fires when the wall clock passes its instant, at most [`MAX_LATENESS`]
/// late (later ones are dropped and reported in [`Poll::missed`]). After a backwards clock
/// step nothing fires again until the clock passes the highest time already seen, unless
/// the step is larger than [`CLOCK_RESET`] (a wrong clock was corrected). Events missed by
/// a forward jump collapse into one: the strongest due kind.
#[derive(Clone, Debug)]
pub struct Scheduler {
    schedule: Schedule,
    /// The highest wall time seen by `poll`; everything up to it has been handled.
    seen: Timestamp,
}

/// The result of one [`Scheduler::poll`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Poll {
    /// The event to act on now, if any.
    pub fired: Option<Fired>,
    /// Events skipped because they were more than [`MAX_LATENESS`] late or weaker than
    /// `fired` (log them).
    pub missed: Vec<Fired>,
}

impl Scheduler {
    /// A scheduler that considers everything up to `now` handled (nothing fires at start-up
    /// for a time that has already passed).
    pub fn new(schedule: Schedule, now: Timestamp) -> Scheduler {
        Scheduler {
            schedule,
            seen: now,
        }
    }

    /// The calendar.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Replaces the calendar (config reload); what has fired stays fired.
    pub fn set_schedule(&mut self, schedule: Schedule) {
        self.schedule = schedule;
    }

    /// The next event that will fire, as seen at `now` (for `status`).
    pub fn upcoming(&self, now: Timestamp) -> Option<(Timestamp, ScheduledEvent)> {
        self.schedule.next_event(now.max(self.seen))
    }

    /// [`Scheduler::upcoming`] in the form of `Snapshot::next_scheduled` (name, unix ms).
    pub fn upcoming_for_status(&self, now: Timestamp) -> Option<(String, u64)> {
        self.upcoming(now).map(|(at, ev)| {
            (
                ev.name().to_string(),
                u64::try_from(at.as_millisecond()).unwrap_or(0),
            )
        })
    }

    /// How long the driver may sleep before the next [`Scheduler::poll`]: until the next
    /// event, but never longer than [`RECHECK`].
    pub fn next_check(&self, now: Timestamp) -> Duration {
        match self.upcoming(now) {
            Some((at, _)) => {
                let until = at.duration_since(now);
                Duration::try_from(until)
                    .unwrap_or(Duration::ZERO)
                    .min(RECHECK)
            }
            None => RECHECK,
        }
    }

    /// Advances to `now` and returns what is due.
    pub fn poll(&mut self, now: Timestamp) -> Poll {
        let mut out = Poll::default();
        if now <= self.seen {
            if self.seen.duration_since(now) > signed(CLOCK_RESET) {
                // The clock was far in the future and got corrected: start over from here.
                self.seen = now;
            }
            return out;
        }
        let from = self.seen;
        self.seen = now;
        let lateness = signed(MAX_LATENESS);
        let mut due: Vec<Fired> = [
            ScheduledEvent::DailyRestart,
            ScheduledEvent::WeeklyColdRestart,
            ScheduledEvent::Closedown,
        ]
        .into_iter()
        .filter_map(|event| {
            // The latest instant in (from, now]; earlier ones of the same kind are older
            // still and would be dropped anyway.
            let at = self.schedule.last_event_of(event, now)?;
            (at > from).then_some(Fired { event, at })
        })
        .collect();
        due.sort_by_key(|f| std::cmp::Reverse(f.event.rank()));
        for f in due {
            let late = now.duration_since(f.at) > lateness;
            if late || out.fired.is_some() {
                out.missed.push(f);
            } else {
                out.fired = Some(f);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
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
        let kinds: Vec<(Timestamp, ScheduledEvent)> =
            fired.iter().map(|(a, e, _)| (*a, *e)).collect();
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
}
