//! Every config key, once: section, name, type, default, range, whether a SIGHUP applies it,
//! a valid sample value and a one-line doc (ripgrep's flag definitions are the model).
//!
//! The table drives the reader (unknown-key detection and "did you mean"), the builder
//! (defaults and ranges of durations and integers), the reload (which changes wait for a
//! restart of ibwarden), `ibwarden keys` (the reference printed for the man page) and the
//! tests that hold `config.toml.example` and the parser to it: each key's default parses to
//! the same config as leaving it out, each sample value changes the config, and each
//! restart-only key is named by a reload that changes it.

use std::time::Duration;

/// What a key holds, with the range the builder enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    Path,
    Bool,
    /// An integer within `min..=max`.
    Int {
        min: i64,
        max: i64,
    },
    /// A duration within `min..=max` (milliseconds).
    Dur {
        min_ms: u64,
        max_ms: u64,
    },
    /// A time of day, `"23:45"`.
    Time,
    /// A weekly time, `"Sun 01:30"`, or `"off"`.
    WeeklyTime,
    /// One of these words.
    Choice(&'static [&'static str]),
    /// An array of strings.
    List,
    /// `address:port`.
    Addr,
}

/// When a changed value takes effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reload {
    /// A SIGHUP applies it to the running process.
    Live,
    /// It keeps its running value until ibwarden restarts (named in the reload's log line
    /// and in `status`).
    Restart,
}

/// One key of the config file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Key {
    pub section: &'static str,
    pub name: &'static str,
    pub kind: Kind,
    /// The default as a TOML value (`None`: no default, or derived from other keys; `doc`
    /// says which).
    pub default: Option<&'static str>,
    pub reload: Reload,
    /// A valid value other than the default, as TOML (used by the docs and the tests).
    pub sample: &'static str,
    pub doc: &'static str,
}

impl Key {
    /// `section.name`.
    pub(crate) fn dotted(&self) -> String {
        format!("{}.{}", self.section, self.name)
    }

    /// The type and range, for people.
    pub(crate) fn type_text(&self) -> String {
        match self.kind {
            Kind::Str => "string".into(),
            Kind::Path => "path".into(),
            Kind::Bool => "boolean".into(),
            Kind::Int { min, max } => format!("integer, {min} to {max}"),
            Kind::Dur { min_ms, max_ms } => format!(
                "duration, {} to {}",
                super::units::format_duration(Duration::from_millis(min_ms)),
                super::units::format_duration(Duration::from_millis(max_ms))
            ),
            Kind::Time => "time of day (\"HH:MM\")".into(),
            Kind::WeeklyTime => "weekly time (\"Sun 01:30\") or \"off\"".into(),
            Kind::Choice(words) => {
                let quoted: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
                format!("one of {}", quoted.join(", "))
            }
            Kind::List => "array of strings".into(),
            Kind::Addr => "address:port".into(),
        }
    }
}

const fn secs(s: u64) -> u64 {
    s * 1000
}

use Kind::*;
use Reload::{Live, Restart};

macro_rules! key {
    ($section:literal, $name:literal, $kind:expr, $default:expr, $reload:expr, $sample:literal, $doc:literal) => {
        Key {
            section: $section,
            name: $name,
            kind: $kind,
            default: $default,
            reload: $reload,
            sample: $sample,
            doc: $doc,
        }
    };
}

/// The sections, in file order.
pub(crate) const SECTIONS: &[&str] = &[
    "gateway", "account", "login", "schedule", "display", "probe", "state", "control", "health",
    "relay", "notify",
];

/// Every key. Adding one here makes the reader accept it; the tests then require it in
/// `config.toml.example`, a default that parses, and a builder that reads it.
pub(crate) const KEYS: &[Key] = &[
    // [gateway]
    key!("gateway", "program", Choice(&["gateway", "tws", "clientportal"]), Some("\"gateway\""), Restart, "\"tws\"",
        "IB Gateway, Trader Workstation, or the Client Portal gateway (clientportal.gw, logged in with headless Chromium)."),
    key!("gateway", "install_dir", Path, None, Restart, "\"/opt/ibgateway\"",
        "The offline install; default: the newest under ~/Jts/ibgateway, then /opt/ibgateway."),
    key!("gateway", "settings_dir", Path, None, Restart, "\"/srv/jts\"",
        "The gateway's jts.ini, logs and settings; default: <state dir>/jts."),
    key!("gateway", "trading_mode", Choice(&["live", "paper"]), Some("\"live\""), Live, "\"paper\"",
        "Live or paper account; live logins need the second factor."),
    key!("gateway", "api_port", Int { min: 1, max: 65535 }, None, Live, "4555",
        "TWS API port; default: 4001 live / 4002 paper (gateway), 7496 / 7497 (tws)."),
    key!("gateway", "java", Str, Some("\"auto\""), Live, "\"/usr/bin/java\"",
        "\"auto\" (the install's JRE, else java on PATH) or the path of a java executable."),
    key!("gateway", "jvm_args", List, None, Live, "[\"-Xmx1024m\"]",
        "Extra JVM arguments, after the .vmoptions file's (default: none)."),
    key!("gateway", "stop_grace", Dur { min_ms: secs(5), max_ms: secs(120) }, Some("\"90s\""), Live, "\"30s\"",
        "On stop, how long a logged-in gateway may take to log out after its window is closed, before SIGTERM."),
    // [account]
    key!("account", "username", Str, None, Restart, "\"someone\"",
        "IBKR username. Required."),
    key!("account", "password_file", Path, None, Restart, "\"/etc/ibwarden/pw\"",
        "File holding the password (one of password_file, password_credential, password_env is required)."),
    key!("account", "password_credential", Str, None, Restart, "\"ibkr-password\"",
        "systemd credential holding the password."),
    key!("account", "password_env", Str, None, Restart, "\"IBKR_PASSWORD\"",
        "Environment variable holding the password (weakest option)."),
    key!("account", "totp_file", Path, None, Restart, "\"/etc/ibwarden/totp\"",
        "File holding the Mobile Authenticator activation code (live accounts)."),
    key!("account", "totp_credential", Str, None, Restart, "\"ibkr-totp\"",
        "systemd credential holding the activation code."),
    key!("account", "totp_env", Str, None, Restart, "\"IBKR_TOTP\"",
        "Environment variable holding the activation code (weakest option)."),
    // [login]
    key!("login", "second_factor_device", Str, Some("\"Mobile Authenticator app\""), Live, "\"IB Key\"",
        "The device to pick when IBKR asks; anything but the authenticator app means a person approves."),
    key!("login", "existing_session", Choice(&["primary", "primaryoverride", "secondary", "manual"]), Some("\"primary\""), Live, "\"secondary\"",
        "What to do when the account is logged in elsewhere (IBC's ExistingSessionDetectedAction)."),
    key!("login", "verify_form", Choice(&["auto", "required", "off"]), Some("\"auto\""), Live, "\"required\"",
        "Look at a filled form before pressing Log In or OK: auto (when the screen can be read), required, off."),
    key!("login", "max_failed_logins_per_hour", Int { min: 1, max: 20 }, Some("3"), Live, "5",
        "Failed logins within an hour before ibwarden stops and notifies (counted across restarts)."),
    key!("login", "min_code_validity", Dur { min_ms: secs(1), max_ms: secs(25) }, Some("\"8s\""), Live, "\"12s\"",
        "Never type a code with less than this left before it expires."),
    key!("login", "max_code_rejections", Int { min: 1, max: 10 }, Some("2"), Live, "4",
        "Consecutive rejected codes before ibwarden stops and notifies."),
    key!("login", "ib_key_wait", Dur { min_ms: secs(10), max_ms: secs(600) }, Some("\"180s\""), Live, "\"90s\"",
        "How long an IB Key push may wait for approval on the phone."),
    key!("login", "relogin_backoff", Dur { min_ms: secs(5), max_ms: secs(600) }, Some("\"60s\""), Live, "\"2m\"",
        "First wait before logging in again after a login that went nowhere (doubles, up to 10 minutes)."),
    key!("login", "login_timeout", Dur { min_ms: secs(10), max_ms: secs(1800) }, Some("\"120s\""), Live, "\"5m\"",
        "From typing the credentials to the gateway's main window, at most."),
    key!("login", "content_reader", Choice(&["auto", "ocr", "atspi", "none"]), Some("\"auto\""), Restart, "\"none\"",
        "How text inside dialogs is read when the title is not enough."),
    // [schedule]
    key!("schedule", "timezone", Str, Some("\"America/New_York\""), Live, "\"Europe/London\"",
        "Time zone of every time in [schedule] (IANA name)."),
    key!("schedule", "daily_restart", Time, None, Live, "\"23:50\"",
        "Restart the gateway every day at this time (default: none, IBKR's nightly restart is used)."),
    key!("schedule", "weekly_cold_restart", WeeklyTime, Some("\"Sun 01:30\""), Live, "\"Sat 03:00\"",
        "Log in afresh once a week, after IBKR's Sunday session expiry."),
    key!("schedule", "maintenance_start", Time, Some("\"23:45\""), Live, "\"23:30\"",
        "When IBKR's nightly maintenance starts."),
    key!("schedule", "maintenance_delay", Dur { min_ms: 0, max_ms: secs(3600) }, Some("\"8m\""), Live, "\"15m\"",
        "After a maintenance exit, wait this long before logging in again."),
    key!("schedule", "closedown", WeeklyTime, None, Live, "\"Fri 17:00\"",
        "Shut down for good at this weekly time (default: never)."),
    // [display]
    key!("display", "mode", Choice(&["xvfb", "existing"]), Some("\"xvfb\""), Restart, "\"existing\"",
        "A private Xvfb, or an X display that already runs."),
    key!("display", "display", Str, None, Restart, "\":7\"",
        "The display for mode = \"existing\"."),
    key!("display", "xauthority", Path, None, Restart, "\"/home/u/.Xauthority\"",
        "The Xauthority file for mode = \"existing\"."),
    key!("display", "geometry", Str, Some("\"1280x1024x24\""), Restart, "\"1600x1200x24\"",
        "Size and depth of the private Xvfb screen."),
    // [probe]
    key!("probe", "interval", Dur { min_ms: secs(1), max_ms: secs(3600) }, Some("\"30s\""), Live, "\"10s\"",
        "How often the TWS API handshake is checked."),
    key!("probe", "timeout", Dur { min_ms: 100, max_ms: secs(120) }, Some("\"5s\""), Live, "\"3s\"",
        "How long one check may take (shorter than interval)."),
    key!("probe", "client_id", Int { min: 0, max: i32::MAX as i64 }, Some("999"), Live, "42",
        "API client id the probe connects with."),
    key!("probe", "failures_before_restart", Int { min: 1, max: 100 }, Some("3"), Live, "6",
        "Failed checks in a row before the gateway counts as hung and is restarted."),
    key!("probe", "link_lost_grace", Dur { min_ms: 0, max_ms: secs(86_400) }, Some("\"5m\""), Live, "\"10m\"",
        "How long the gateway may report IBKR's servers unreachable before a restart."),
    // [state]
    key!("state", "dir", Path, None, Restart, "\"/srv/ibwarden\"",
        "Persisted state; default: $STATE_DIRECTORY, else $XDG_STATE_HOME/ibwarden, else ~/.local/state/ibwarden."),
    // [control]
    key!("control", "socket", Path, None, Restart, "\"/srv/ibwarden/c.sock\"",
        "The control socket; default: $RUNTIME_DIRECTORY/control.sock, else <state dir>/control.sock."),
    key!("control", "ibc_command_port", Int { min: 1, max: 65535 }, None, Restart, "7462",
        "Serve IBC's command protocol on 127.0.0.1:PORT (default: off)."),
    key!("control", "ibc_command_auth_file", Path, None, Restart, "\"/etc/ibwarden/token\"",
        "A file holding the token the IBC command server requires (`AUTH <token>` first); required with ibc_command_port unless ibc_command_token = \"none\"."),
    key!("control", "ibc_command_token", Str, None, Restart, "\"none\"",
        "Only \"none\": serve the IBC command server without a token, so any local process (or a web page a local browser shows) may restart or stop the gateway."),
    // [health]
    key!("health", "listen", Addr, None, Restart, "\"127.0.0.1:9187\"",
        "Serve /healthz, /readyz and /metrics here (default: off)."),
    // [relay]
    key!("relay", "listen", Addr, None, Restart, "\"0.0.0.0:4003\"",
        "Relay API clients from other hosts to the gateway's API port, while it is ready (default: off)."),
    key!("relay", "allow", List, Some("[\"127.0.0.0/8\", \"::1/128\"]"), Restart, "[\"10.0.0.0/8\"]",
        "Client source address blocks the relay accepts; others are reset."),
    key!("relay", "max_connections", Int { min: 1, max: 4096 }, Some("32"), Restart, "8",
        "Relayed connections open at once; more are reset."),
    // [notify]
    key!("notify", "desktop", Bool, Some("true"), Live, "false",
        "Desktop notifications (D-Bus)."),
    key!("notify", "desktop_user", Str, None, Live, "\"alice\"",
        "The user whose desktop session gets notifications when ibwarden runs as a system service."),
    key!("notify", "command", List, None, Live, "[\"/usr/local/bin/page-me\"]",
        "A program run for each notice (the notice in its environment and on stdin)."),
    key!("notify", "webhook_url_file", Path, None, Live, "\"/etc/ibwarden/hook\"",
        "File holding the webhook URL (a secret: it often embeds a token)."),
    key!("notify", "webhook_preset", Choice(&["generic", "ntfy", "telegram", "slack"]), Some("\"generic\""), Live, "\"ntfy\"",
        "The body format of the webhook."),
    key!("notify", "telegram_chat_id", Str, None, Live, "\"-1001234567890\"",
        "The Telegram chat for webhook_preset = \"telegram\"."),
];

/// The key `section.name` (the builder only asks for keys in the table).
pub(crate) fn get(section: &str, name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.section == section && k.name == name)
}

/// The names of a section's keys.
pub(crate) fn names_in(section: &str) -> Vec<&'static str> {
    KEYS.iter()
        .filter(|k| k.section == section)
        .map(|k| k.name)
        .collect()
}

/// The sections a key name belongs to (for "did you mean [section]").
pub(crate) fn sections_of(name: &str) -> impl Iterator<Item = &'static str> + '_ {
    KEYS.iter()
        .filter(move |k| k.name == name)
        .map(|k| k.section)
}

/// When a key's change takes effect, in words.
fn reload_text(k: &Key) -> &'static str {
    match k.reload {
        Live => "is applied by a reload (SIGHUP)",
        Restart => "needs a restart of ibwarden",
    }
}

/// Text for a roff text line: a backslash starts an escape, `-` is a hyphen (`\-` is the
/// minus sign man pages use in options and paths), and a leading dot or quote a request.
pub(crate) fn roff_escape(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// The reference of every key as the man page `ibwarden.toml(5)` (roff), generated from this
/// table so it cannot drift from what the reader accepts.
pub(crate) fn reference_man(version: &str) -> String {
    let esc = roff_escape;
    let mut out = format!(
        ".TH IBWARDEN.TOML 5 \"\" \"ibwarden {}\" \"File Formats\"\n",
        esc(version)
    );
    out.push_str(
        ".SH NAME\nibwarden.toml \\- configuration of ibwarden\n\
         .SH DESCRIPTION\n\
         ibwarden reads one TOML file (\\fB\\-\\-config\\fR FILE, \\fB\\-\\-instance\\fR NAME for \
         \\fI/etc/ibwarden/NAME.toml\\fR, else the defaults under FILES). \
         Unknown keys, wrong types and values out of range are errors that name the file, \
         line and key. \\fBibwarden check\\fR validates a file without starting anything; \
         a SIGHUP re\\-reads it and applies what can change at runtime.\n\
         Secrets (password, activation code) are never values in this file: it names files, \
         systemd credentials or environment variables that hold them.\n",
    );
    for section in SECTIONS {
        out.push_str(&format!(".SH [{section}]\n"));
        for k in KEYS.iter().filter(|k| k.section == *section) {
            out.push_str(&format!(".TP\n.B {}\n", esc(k.name)));
            out.push_str(&format!("{}\n", esc(k.doc)));
            out.push_str(&format!(
                ".br\nType: {}. Default: {}. Example: {}. A change {}.\n",
                esc(&k.type_text()),
                esc(k.default.unwrap_or("none")),
                esc(k.sample),
                reload_text(k)
            ));
        }
    }
    out.push_str(
        ".SH ENVIRONMENT\n\
         Defaults that depend on where ibwarden runs:\n\
         .TP\nSTATE_DIRECTORY, XDG_STATE_HOME, HOME\n\
         \\fBstate.dir\\fR: $STATE_DIRECTORY (systemd \\fBStateDirectory=\\fR), else \
         $XDG_STATE_HOME/ibwarden, else ~/.local/state/ibwarden.\n\
         .TP\nRUNTIME_DIRECTORY\n\
         \\fBcontrol.socket\\fR: $RUNTIME_DIRECTORY/control.sock (systemd \
         \\fBRuntimeDirectory=\\fR), else <state dir>/control.sock.\n\
         .TP\nCREDENTIALS_DIRECTORY\n\
         Where \\fBpassword_credential\\fR and \\fBtotp_credential\\fR are read from \
         (systemd \\fBLoadCredential=\\fR).\n\
         .TP\nHOME\n\
         \\fB~/\\fR in paths; the default \\fBinstall_dir\\fR is looked for under ~/Jts/ibgateway.\n\
         .P\nThe variables named by \\fBpassword_env\\fR and \\fBtotp_env\\fR are read once \
         and removed from ibwarden's environment before the gateway starts.\n\
         .SH FILES\n\
         .TP\n/etc/ibwarden/NAME.toml\nThe config of the systemd unit ibwarden@NAME.service \
         (and of \\fB\\-\\-instance\\fR NAME).\n\
         .TP\n/etc/ibwarden/config.toml\nThe default of \\fB\\-\\-config\\fR for root.\n\
         .TP\n$XDG_CONFIG_HOME/ibwarden/config.toml, ~/.config/ibwarden/config.toml\n\
         The default of \\fB\\-\\-config\\fR for other users ($IBWARDEN_CONFIG overrides both).\n\
         .TP\n/etc/ibwarden/example.toml\nA config for the unit, installed by the package.\n\
         .TP\n/usr/share/doc/ibwarden/config.toml.example\nEvery key with its default and a comment.\n\
         .SH SEE ALSO\n\\fBibwarden\\fR(1), \\fBibwarden\\-check\\fR(1)\n",
    );
    out
}

/// The keys of every section, each `name = default` (a bare name when there is none), and
/// the ones a reload does not apply: the CONFIGURATION section of `ibwarden(1)`, which
/// points to `ibwarden.toml(5)` for the rest.
pub(crate) fn summary_man() -> String {
    let esc = roff_escape;
    let mut out = String::new();
    for section in SECTIONS {
        let keys: Vec<&Key> = KEYS.iter().filter(|k| k.section == *section).collect();
        let list: Vec<String> = keys
            .iter()
            .map(|k| match k.default {
                Some(d) => format!("{} = {d}", k.name),
                None => k.name.to_string(),
            })
            .collect();
        out.push_str(&format!(".TP\n.B [{section}]\n{}\n", esc(&list.join(", "))));
        let restart: Vec<&str> = keys
            .iter()
            .filter(|k| k.reload == Restart)
            .map(|k| k.name)
            .collect();
        if !restart.is_empty() {
            out.push_str(&format!(
                ".br\nApplied only when ibwarden itself starts again, not by a reload: {}.\n",
                esc(&restart.join(", "))
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_page_documents_every_key_in_valid_roff() {
        let page = reference_man("1.2.3");
        for k in KEYS {
            let heading = format!(".SH [{}]", k.section);
            let at = page.find(&heading).expect(&heading);
            let section = &page[at + heading.len()..];
            let section = &section[..section.find(".SH ").unwrap_or(section.len())];
            let entry = format!(".B {}\n", k.name.replace('-', "\\-"));
            assert!(
                section.contains(&entry),
                "{} missing from its section",
                k.dotted()
            );
        }
        // Every line that starts with a dot is one of the requests we emit: a doc sentence
        // starting with "." would otherwise be eaten by roff as an unknown request.
        for line in page.lines().filter(|l| l.starts_with('.')) {
            let request = line.split_whitespace().next().unwrap_or("");
            assert!(
                [".TH", ".SH", ".TP", ".B", ".br", ".P"].contains(&request),
                "stray roff request: {line}"
            );
        }
        assert!(page.contains("ibwarden 1.2.3"));
        for heading in [".SH ENVIRONMENT", ".SH FILES", ".SH SEE ALSO"] {
            assert!(page.contains(heading), "{heading} missing");
        }
        // Every variable the defaults of the table name is explained.
        for var in ["STATE_DIRECTORY", "RUNTIME_DIRECTORY", "XDG_STATE_HOME"] {
            assert!(
                KEYS.iter().any(|k| k.doc.contains(var)),
                "{var} is in no doc"
            );
            let env = &page[page.find(".SH ENVIRONMENT").expect("ENVIRONMENT")..];
            assert!(env.contains(&format!(".TP\n{var}")) || env.contains(&format!(", {var}")));
        }
    }

    #[test]
    fn the_summary_names_every_key_with_its_default_and_reload() {
        let summary = summary_man();
        for section in SECTIONS {
            let heading = format!(".B [{section}]\n");
            let at = summary.find(&heading).expect(&heading);
            let body = &summary[at + heading.len()..];
            let body = &body[..body.find(".TP").unwrap_or(body.len())];
            let (list, restart) = body.split_once(".br\n").unwrap_or((body, ""));
            for k in KEYS.iter().filter(|k| k.section == *section) {
                let name = roff_escape(k.name);
                let entry = match k.default {
                    Some(d) => roff_escape(&format!("{} = {d}", k.name)),
                    None => name.clone(),
                };
                assert!(list.contains(&entry), "{} missing: {list}", k.dotted());
                assert_eq!(
                    restart.contains(&name),
                    k.reload == Restart,
                    "{}: reload not told",
                    k.dotted()
                );
            }
        }
        for line in summary.lines().filter(|l| l.starts_with('.')) {
            let request = line.split_whitespace().next().unwrap_or("");
            assert!([".TP", ".B", ".br"].contains(&request), "{line}");
        }
    }

    #[test]
    fn roff_escape_keeps_text_text() {
        assert_eq!(roff_escape("a-b"), "a\\-b");
        assert_eq!(roff_escape("back\\slash"), "back\\eslash");
        assert_eq!(roff_escape(".5 s"), "\\&.5 s");
        assert_eq!(roff_escape("'q'"), "\\&'q'");
    }

    #[test]
    fn table_is_consistent() {
        let mut seen = std::collections::BTreeSet::new();
        for k in KEYS {
            assert!(SECTIONS.contains(&k.section), "{}", k.dotted());
            assert!(seen.insert(k.dotted()), "{} twice", k.dotted());
            assert_ne!(
                Some(k.sample),
                k.default,
                "{}: sample is the default",
                k.dotted()
            );
            if let (Choice(words), Some(d)) = (k.kind, k.default) {
                assert!(
                    words.iter().any(|w| format!("\"{w}\"") == d),
                    "{}",
                    k.dotted()
                );
            }
        }
        for s in SECTIONS {
            assert!(!names_in(s).is_empty(), "[{s}] has no keys");
        }
    }
}
