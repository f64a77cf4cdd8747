//! Log output: one `tracing` subscriber, formatted for where the lines end up.
//!
//! - `human`: timestamps and colours, for a person at a terminal.
//! - `journald`: no timestamp (journald adds its own) and a `<N>` syslog priority prefix on
//!   each line, which systemd turns into the entry's priority (`SyslogLevelPrefix=`, on by
//!   default), so `journalctl -p warning` works.
//! - `json`: one JSON object per line, for log shippers.
//!
//! `auto` picks `journald` when stderr is the journal stream systemd gave us
//! (`$JOURNAL_STREAM` names stderr's device and inode) or when running as a systemd unit
//! (`$INVOCATION_ID`) without a terminal, else `human` (colours only on a terminal).
//!
//! Logs go to stderr; stdout is for command output (`ibwarden totp` prints the code there).
//! `RUST_LOG` overrides the level chosen with `-v`.

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// The `--log-format` choices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `journald` when stderr is the journal (under systemd), `human` otherwise.
    #[default]
    Auto,
    /// Timestamps, colours on a terminal.
    Human,
    /// No timestamps, `<N>` priority prefixes.
    Journald,
    /// One JSON object per line.
    Json,
}

/// What [`resolve`] looks at, gathered once so the choice is a pure function.
#[derive(Clone, Debug, Default)]
pub struct Surroundings {
    /// stderr is a terminal.
    pub stderr_is_terminal: bool,
    /// stderr's `(device, inode)`.
    pub stderr_dev_ino: Option<(u64, u64)>,
    /// `$JOURNAL_STREAM` (`DEVICE:INODE`).
    pub journal_stream: Option<String>,
    /// `$INVOCATION_ID` is set (running as a systemd unit).
    pub invocation_id: bool,
}

impl Surroundings {
    /// Reads the process's environment and stderr.
    pub fn detect() -> Surroundings {
        let stderr = std::io::stderr();
        let stderr_dev_ino = nix::sys::stat::fstat(&stderr)
            .ok()
            .map(|st| (st.st_dev, st.st_ino));
        Surroundings {
            stderr_is_terminal: stderr.is_terminal(),
            stderr_dev_ino,
            journal_stream: std::env::var("JOURNAL_STREAM").ok(),
            invocation_id: std::env::var_os("INVOCATION_ID").is_some(),
        }
    }
}

/// The concrete format: [`LogFormat::Auto`] resolved. `ansi` applies to human output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// Human-readable; with colours if `ansi`.
    Human {
        /// Use ANSI colours.
        ansi: bool,
    },
    /// journald-friendly.
    Journald,
    /// JSON lines.
    Json,
}

/// Resolves `auto` from the surroundings.
pub fn resolve(format: LogFormat, s: &Surroundings) -> Resolved {
    match format {
        LogFormat::Human => Resolved::Human {
            ansi: s.stderr_is_terminal,
        },
        LogFormat::Journald => Resolved::Journald,
        LogFormat::Json => Resolved::Json,
        LogFormat::Auto => {
            let on_journal = match (&s.journal_stream, s.stderr_dev_ino) {
                (Some(js), Some((dev, ino))) => {
                    js.split_once(':')
                        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
                        == Some((dev, ino))
                }
                _ => false,
            };
            if on_journal || (s.invocation_id && !s.stderr_is_terminal) {
                Resolved::Journald
            } else {
                Resolved::Human {
                    ansi: s.stderr_is_terminal,
                }
            }
        }
    }
}

/// The filter: `RUST_LOG` if set, else ibwarden at `info` (`-v`: `debug`, `-vv`: `trace`)
/// and other crates at `warn`.
pub fn filter(verbosity: u8, rust_log: Option<&str>) -> EnvFilter {
    if let Some(directives) = rust_log.filter(|s| !s.trim().is_empty()) {
        // A bad RUST_LOG should not stop ibwarden; invalid directives are skipped.
        return EnvFilter::builder().parse_lossy(directives);
    }
    let level = match verbosity {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    // chromiumoxide warns about every CDP event its generated types do not know (newer
    // Chromium sends many); they are harmless, and only an error of it is worth a line.
    EnvFilter::builder().parse_lossy(format!("warn,chromiumoxide=error,ibwarden={level}"))
}

/// Installs the global subscriber. Call once, early in `main`. A second call is ignored.
pub fn init(format: LogFormat, verbosity: u8) {
    let resolved = resolve(format, &Surroundings::detect());
    let filter = filter(verbosity, std::env::var("RUST_LOG").ok().as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // try_init: tests and embedding callers may have installed one already.
    let _ = match resolved {
        Resolved::Human { ansi } => builder.with_ansi(ansi).with_target(false).try_init(),
        Resolved::Journald => builder
            .with_ansi(false)
            .event_format(JournaldFormat)
            .try_init(),
        Resolved::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// journald line format: `<prio>LEVEL span{fields}: message fields`, no timestamp.
#[derive(Clone, Copy, Debug, Default)]
pub struct JournaldFormat;

/// The syslog priority journald should give a tracing level.
pub fn syslog_priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

impl<S, N> FormatEvent<S, N> for JournaldFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = event.metadata().level();
        write!(writer, "<{}>{} ", syslog_priority(level), level)?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                write!(writer, "{}", span.name())?;
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        write!(writer, "{{{fields}}}")?;
                    }
                }
                write!(writer, ": ")?;
            }
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn s(term: bool, dev_ino: Option<(u64, u64)>, js: Option<&str>, inv: bool) -> Surroundings {
        Surroundings {
            stderr_is_terminal: term,
            stderr_dev_ino: dev_ino,
            journal_stream: js.map(str::to_string),
            invocation_id: inv,
        }
    }

    #[test]
    fn auto_resolution() {
        // Terminal: human with colours.
        assert_eq!(
            resolve(LogFormat::Auto, &s(true, Some((1, 2)), None, false)),
            Resolved::Human { ansi: true }
        );
        // stderr is the journal stream.
        assert_eq!(
            resolve(
                LogFormat::Auto,
                &s(false, Some((8, 4242)), Some("8:4242"), true)
            ),
            Resolved::Journald
        );
        // JOURNAL_STREAM inherited but stderr redirected elsewhere: not the journal.
        assert_eq!(
            resolve(
                LogFormat::Auto,
                &s(false, Some((8, 1)), Some("8:4242"), false)
            ),
            Resolved::Human { ansi: false }
        );
        // A unit whose stderr goes to a file or socket: still no timestamps needed.
        assert_eq!(
            resolve(LogFormat::Auto, &s(false, None, None, true)),
            Resolved::Journald
        );
        assert_eq!(
            resolve(LogFormat::Json, &s(true, None, None, false)),
            Resolved::Json
        );
        assert_eq!(
            resolve(LogFormat::Human, &s(false, None, None, true)),
            Resolved::Human { ansi: false }
        );
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn journald_lines_have_priority_and_no_timestamp() {
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_ansi(false)
            .event_format(JournaldFormat)
            .with_writer(move || w.clone())
            .with_max_level(Level::DEBUG)
            .finish();
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("gateway", instance = "main");
            let _g = span.enter();
            tracing::warn!(attempt = 2, "login failed");
            tracing::debug!("probe ok");
        });
        let out = String::from_utf8(buf.0.lock().expect("lock").clone()).expect("utf8");
        assert_eq!(
            out,
            "<4>WARN gateway{instance=\"main\"}: login failed attempt=2\n\
             <7>DEBUG gateway{instance=\"main\"}: probe ok\n"
        );
    }

    #[test]
    fn filter_levels() {
        assert_eq!(
            filter(0, None).to_string(),
            "chromiumoxide=error,ibwarden=info,warn"
        );
        assert_eq!(
            filter(1, None).to_string(),
            "chromiumoxide=error,ibwarden=debug,warn"
        );
        assert_eq!(
            filter(3, Some("")).to_string(),
            "chromiumoxide=error,ibwarden=trace,warn"
        );
        assert_eq!(
            filter(0, Some("ibwarden::core=trace")).to_string(),
            "ibwarden::core=trace"
        );
    }
}
