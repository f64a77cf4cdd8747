//! Small value syntaxes used in the config: durations (`8s`, `5m`, `1h30m`), times of day
//! (`23:45`), weekday times (`Sun 01:30`) and Xvfb geometries (`1280x1024x24`).
//!
//! Hand-written so that the error messages can say exactly what is wrong; each parser returns
//! a short message (no position: the caller knows the key and the span).

use std::fmt;
use std::time::Duration;

use jiff::civil::{Time, Weekday};

/// Parses `8s`, `5m`, `1h30m`, `250ms`, `2d`: one or more `<number><unit>` groups with units
/// `d`, `h`, `m`, `s`, `ms` in decreasing order, each at most once.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    const HINT: &str = "expected a duration like \"8s\", \"5m\" or \"1h30m\"";
    let s = text.trim();
    if s.is_empty() {
        return Err(format!("empty duration; {HINT}"));
    }
    let units: [(&str, u64); 5] = [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total_ms: u64 = 0;
    // Index into `units` of the last unit used: later groups must use a smaller unit.
    let mut last_unit: Option<usize> = None;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(format!("{text:?} is not a duration; {HINT}"));
        }
        let number: u64 = s[start..i]
            .parse()
            .map_err(|_| format!("number too large in {text:?}"))?;
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[ustart..i];
        if unit.is_empty() {
            return Err(format!("missing unit in {text:?}; {HINT}"));
        }
        let Some(idx) = units.iter().position(|(u, _)| *u == unit) else {
            return Err(format!(
                "unknown unit {unit:?} in {text:?} (units: d, h, m, s, ms)"
            ));
        };
        if last_unit.is_some_and(|l| idx <= l) {
            return Err(format!(
                "units in {text:?} must go from largest to smallest, each once"
            ));
        }
        last_unit = Some(idx);
        total_ms = number
            .checked_mul(units[idx].1)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| format!("duration {text:?} is too long"))?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration the way the config writes it (`1h30m`, `8s`, `250ms`, `0s`).
pub(crate) fn format_duration(d: Duration) -> String {
    let mut ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

/// Parses `HH:MM` (24-hour, `H:MM` accepted) into a time of day.
pub(crate) fn parse_time_of_day(text: &str) -> Result<Time, String> {
    let bad =
        || format!("{text:?} is not a time of day; expected 24-hour \"HH:MM\" like \"23:45\"");
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    if !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let hour: i8 = h.parse().map_err(|_| bad())?;
    let minute: i8 = m.parse().map_err(|_| bad())?;
    if hour > 23 {
        return Err(format!("hour {hour} out of range 0-23 in {text:?}"));
    }
    if minute > 59 {
        return Err(format!("minute {minute} out of range 0-59 in {text:?}"));
    }
    Time::new(hour, minute, 0, 0).map_err(|_| bad())
}

pub use crate::core::schedule::WeekdayTime;

/// Parses `Sun 01:30` (English day names, 3 letters or full, any case).
pub(crate) fn parse_weekday_time(text: &str) -> Result<WeekdayTime, String> {
    let mut parts = text.split_whitespace();
    let (Some(day), Some(time), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!(
            "{text:?} is not a weekday time; expected a day and a time like \"Sun 01:30\""
        ));
    };
    let weekday = parse_weekday(day).ok_or_else(|| {
        format!("{day:?} is not a day of the week (Mon, Tue, Wed, Thu, Fri, Sat, Sun)")
    })?;
    Ok(WeekdayTime {
        weekday,
        time: parse_time_of_day(time)?,
    })
}

fn parse_weekday(day: &str) -> Option<Weekday> {
    let d = day.to_ascii_lowercase();
    let all = [
        ("monday", Weekday::Monday),
        ("tuesday", Weekday::Tuesday),
        ("wednesday", Weekday::Wednesday),
        ("thursday", Weekday::Thursday),
        ("friday", Weekday::Friday),
        ("saturday", Weekday::Saturday),
        ("sunday", Weekday::Sunday),
    ];
    all.iter()
        .find(|(name, _)| d == *name || (d.len() == 3 && name.starts_with(&d)))
        .map(|(_, w)| *w)
}

/// Xvfb screen geometry: `WIDTHxHEIGHTxDEPTH`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// Colour depth in bits.
    pub depth: u8,
}

impl fmt::Display for Geometry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.width, self.height, self.depth)
    }
}

/// Parses `1280x1024x24`. The gateway's windows need at least 800x600; depths are the ones
/// Xvfb supports.
pub(crate) fn parse_geometry(text: &str) -> Result<Geometry, String> {
    let bad =
        || format!("{text:?} is not a geometry; expected WIDTHxHEIGHTxDEPTH like \"1280x1024x24\"");
    let parts: Vec<&str> = text.trim().split('x').collect();
    let [w, h, d] = parts.as_slice() else {
        return Err(bad());
    };
    let width: u16 = w.parse().map_err(|_| bad())?;
    let height: u16 = h.parse().map_err(|_| bad())?;
    let depth: u8 = d.parse().map_err(|_| bad())?;
    if width < 800 || height < 600 {
        return Err(format!(
            "geometry {width}x{height} is too small; the gateway's windows need at least 800x600"
        ));
    }
    if ![8, 15, 16, 24, 30].contains(&depth) {
        return Err(format!(
            "depth {depth} is not supported by Xvfb; use 24 (or 8, 15, 16, 30)"
        ));
    }
    Ok(Geometry {
        width,
        height,
        depth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("8s"), Ok(Duration::from_secs(8)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(
            parse_duration("1m30s500ms"),
            Ok(Duration::from_millis(90_500))
        );
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in [
            "",
            "8",
            "s",
            "8x",
            "5m1h",
            "1s1s",
            "-5s",
            "1.5s",
            "8 s",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
        }
        assert!(parse_duration("5m1h")
            .expect_err("must fail")
            .contains("largest to smallest"));
        assert!(parse_duration("8")
            .expect_err("must fail")
            .contains("missing unit"));
    }

    #[test]
    fn duration_format_roundtrip() {
        for s in ["8s", "5m", "1h30m", "250ms", "0s", "2d3h"] {
            let d = parse_duration(s).expect(s);
            assert_eq!(format_duration(d), s);
        }
    }

    #[test]
    fn times() {
        assert_eq!(parse_time_of_day("23:45"), Ok(Time::constant(23, 45, 0, 0)));
        assert_eq!(parse_time_of_day("0:05"), Ok(Time::constant(0, 5, 0, 0)));
        for bad in [
            "24:00", "12:60", "1230", "12:5", "ab:cd", "", "12:30:00", "+1:30",
        ] {
            assert!(parse_time_of_day(bad).is_err(), "{bad:?} should fail");
        }
        assert!(parse_time_of_day("24:00")
            .expect_err("must fail")
            .contains("hour 24"));
    }

    #[test]
    fn weekday_times() {
        let w = parse_weekday_time("Sun 01:30").expect("valid");
        assert_eq!(w.weekday, Weekday::Sunday);
        assert_eq!(w.time, Time::constant(1, 30, 0, 0));
        assert_eq!(w.to_string(), "Sun 01:30");
        assert_eq!(
            parse_weekday_time("friday  17:00").expect("valid").weekday,
            Weekday::Friday
        );
        for bad in [
            "Sun",
            "01:30",
            "Sunday 25:00",
            "Sonntag 01:30",
            "Su 01:30",
            "Sun 01:30 x",
        ] {
            assert!(parse_weekday_time(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn geometries() {
        assert_eq!(
            parse_geometry("1280x1024x24"),
            Ok(Geometry {
                width: 1280,
                height: 1024,
                depth: 24
            })
        );
        assert_eq!(
            parse_geometry("1280x1024x24").expect("ok").to_string(),
            "1280x1024x24"
        );
        for bad in [
            "1280x1024",
            "640x480x24",
            "1280x1024x12",
            "axbxc",
            "1280X1024X24",
        ] {
            assert!(parse_geometry(bad).is_err(), "{bad:?} should fail");
        }
    }
}
