//! IBKR's calendar: planned restarts and the nightly maintenance window, in wall time.
//!
//! Pure: every function takes the wall-clock instant (`now`) as a parameter and reads no
//! clock. Nothing is cached between calls: each answer is recomputed from the local calendar
//! of the configured time zone, so DST changes and clock steps are handled by construction.
//!
//! - [`Schedule`]: the configured times. [`Schedule::next_event`] is the next planned event,
//!   [`Schedule::full_login_blocked_until`] the maintenance guard (users' reports,
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
mod tests;
