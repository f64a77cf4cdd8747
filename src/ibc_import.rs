//! Converting an IBC setup into an ibwarden config (`ibwarden import-ibc`).
//!
//! Input: IBC's `config.ini` (a Java properties file, `reference/ibc.md` §2) and/or the
//! environment variables of the common IBC Docker images (`reference/peers.md` §3-6: gnzsnz,
//! UnusualAlpha, extrange's `IBC_<Key>`, manhinhang) and of IBC's own launcher scripts.
//! Output: the text of an ibwarden TOML config and a [`Report`] with one entry per setting
//! read: mapped (to which key), built into ibwarden (nothing to set), not mapped (and why),
//! or unknown. Nothing is dropped silently. Things only a person can do (store the
//! activation code, a second instance for `TRADING_MODE=both`) are listed as to-dos.
//!
//! Secrets: IBC keeps the password in clear text. It is never written into the TOML and
//! never shown in the report; [`Conversion::password`] hands it to the caller (the CLI
//! writes it to a chmod 600 file the TOML references with `password_file`). Values of any
//! key whose name looks secret (`*password*`, `*passphrase*`, `*token*`, ...) are never
//! shown, whatever the key.
//!
//! Pure: no IO, no clock (`today` is an [`Options`] field, used to convert IBC's local
//! times into ibwarden's schedule time zone).

use std::collections::BTreeMap;
use std::fmt;

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;

use crate::config::units::{self, WeekdayTime};
use crate::config::TradingMode;
use crate::secret::Secret;

/// ibwarden's schedule time zone (IBKR's resets are defined in it).
const SCHEDULE_TZ: &str = "America/New_York";

/// Why the input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A line of the properties or env file is malformed.
    #[error("{file}:{line}: {message}")]
    Syntax {
        /// `config.ini` or the env file's name, as given by the caller.
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong (never the line's text: it may hold a password).
        message: String,
    },
}

/// Where a setting was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The file (as named by the caller).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// The key or variable name as written.
    pub name: String,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.name)
    }
}

/// What became of one setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Written to the TOML as `to` (e.g. `gateway.trading_mode = "paper"`).
    Mapped {
        /// The TOML assignment (secrets: only the key).
        to: String,
        /// Something to know about the mapping.
        note: Option<String>,
    },
    /// Blank or IBC's default, or something ibwarden always does: nothing to write.
    Builtin {
        /// Why nothing is written.
        why: String,
    },
    /// Known to IBC but not carried over: what it did is lost or done another way.
    NotMapped {
        /// Why, and what to do instead.
        why: String,
    },
    /// Not an IBC setting (or not one of the Docker images' variables).
    Unknown {
        /// A hint (e.g. a case-insensitive match).
        hint: Option<String>,
    },
    /// Overridden by a later line or by an environment variable.
    Overridden {
        /// What overrides it.
        by: Origin,
    },
}

/// One setting read and what became of it.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Where it was read.
    pub origin: Origin,
    /// The value as shown in the report: `None` for secrets (never shown).
    pub shown_value: Option<String>,
    /// What became of it.
    pub outcome: Outcome,
}

/// What the conversion did, setting by setting, and what a person must still do.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// One entry per setting read, in input order (ini first, then env).
    pub entries: Vec<Entry>,
    /// Things only a person can do, in order.
    pub todo: Vec<String>,
}

impl Report {
    /// Entries with outcome [`Outcome::Mapped`].
    pub fn mapped(&self) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(|e| matches!(e.outcome, Outcome::Mapped { .. }))
    }

    /// The entry for a key or variable name (the last one read).
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().rev().find(|e| e.origin.name == name)
    }
}

/// Picks the entries of one report group.
type OutcomeFilter = fn(&Outcome) -> bool;

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = |e: &Entry| match &e.shown_value {
            Some(v) if v.is_empty() => " (blank)".to_string(),
            Some(v) => format!(" = {v:?}"),
            None => " = (secret, not shown)".to_string(),
        };
        let groups: [(&str, OutcomeFilter); 5] = [
            ("Mapped", |o| matches!(o, Outcome::Mapped { .. })),
            (
                "Nothing to set (blank, default, or built into ibwarden)",
                |o| matches!(o, Outcome::Builtin { .. }),
            ),
            ("NOT mapped", |o| matches!(o, Outcome::NotMapped { .. })),
            ("Unknown (not IBC settings; ignored)", |o| {
                matches!(o, Outcome::Unknown { .. })
            }),
            ("Overridden", |o| matches!(o, Outcome::Overridden { .. })),
        ];
        for (title, pick) in groups {
            let items: Vec<&Entry> = self.entries.iter().filter(|e| pick(&e.outcome)).collect();
            if items.is_empty() {
                continue;
            }
            writeln!(f, "{title} ({}):", items.len())?;
            for e in items {
                write!(f, "  {}{}", e.origin, value(e))?;
                match &e.outcome {
                    Outcome::Mapped { to, note } => {
                        write!(f, "\n      -> {to}")?;
                        if let Some(n) = note {
                            write!(f, "\n         {n}")?;
                        }
                    }
                    Outcome::Builtin { why } | Outcome::NotMapped { why } => {
                        write!(f, "\n      {why}")?;
                    }
                    Outcome::Unknown { hint } => {
                        if let Some(h) = hint {
                            write!(f, "\n      {h}")?;
                        }
                    }
                    Outcome::Overridden { by } => write!(f, "\n      overridden by {by}")?,
                }
                writeln!(f)?;
            }
            writeln!(f)?;
        }
        if self.todo.is_empty() {
            writeln!(f, "Nothing needs you.")?;
        } else {
            writeln!(f, "Needs you ({}):", self.todo.len())?;
            for (i, t) in self.todo.iter().enumerate() {
                writeln!(f, "  {}. {t}", i + 1)?;
            }
        }
        Ok(())
    }
}

/// Conversion settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// The value written as `account.password_file` when the password was found in the
    /// input (relative paths are relative to the config file).
    pub password_file: String,
    /// The value written as `account.totp_file` when a live account needs the activation
    /// code.
    pub totp_file: String,
    /// Reference systemd credentials (`password_credential = "password"`, `totp_credential
    /// = "totp"`, as `ibwarden@.service` loads them) instead of files; `password_file` and
    /// `totp_file` are then where those credentials are stored (for the report).
    pub credentials: bool,
    /// Today's date, to convert IBC's local times (at today's UTC offsets).
    pub today: Date,
    /// The name of the ini file in the report (e.g. its path).
    pub ini_name: String,
    /// The name of the env file in the report.
    pub env_name: String,
}

/// The result of [`convert`].
#[derive(Debug)]
pub struct Conversion {
    /// The ibwarden config (loads with [`crate::config::Config::from_str`]).
    pub toml: String,
    /// What was done.
    pub report: Report,
    /// The password found in the input (IBC `IbPassword`, `TWS_PASSWORD`, ...), for the
    /// caller to store in [`Options::password_file`]. Never in `toml` or `report`.
    pub password: Option<Secret>,
}

/// One `key=value` of a properties file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Property {
    /// The key.
    pub key: String,
    /// The value, unescaped, not trimmed at the end (as Java reads it).
    pub value: String,
    /// 1-based line where the logical line starts.
    pub line: usize,
}

/// Parses a Java properties file (the format of IBC's `config.ini`): `#`/`!` comments,
/// `key=value`, `key:value` or `key value`, backslash line continuations, `\uXXXX` escapes.
pub fn parse_properties(text: &str, file: &str) -> Result<Vec<Property>, ImportError> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let start = i + 1;
        let first = lines[i].trim_start_matches([' ', '\t', '\x0c']);
        i += 1;
        if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
            continue;
        }
        // Join continuation lines: an odd number of trailing backslashes continues.
        let mut logical = String::from(first);
        while ends_with_odd_backslashes(&logical) && i <= lines.len() {
            logical.pop();
            if i == lines.len() {
                break;
            }
            logical.push_str(lines[i].trim_start_matches([' ', '\t', '\x0c']));
            i += 1;
        }
        let (key_raw, value_raw) = split_key_value(&logical);
        let syntax = |message: String| ImportError::Syntax {
            file: file.to_string(),
            line: start,
            message,
        };
        let key = unescape(key_raw).map_err(syntax)?;
        let value = unescape(value_raw).map_err(syntax)?;
        out.push(Property {
            key,
            value,
            line: start,
        });
    }
    Ok(out)
}

fn ends_with_odd_backslashes(s: &str) -> bool {
    s.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

/// Splits a logical line at the first unescaped `=`, `:` or whitespace (Java rules).
fn split_key_value(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let mut k = 0;
    let mut escaped = false;
    while k < bytes.len() {
        let b = bytes[k];
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'=' || b == b':' || b == b' ' || b == b'\t' || b == b'\x0c' {
            break;
        }
        k += 1;
    }
    let key = &line[..k];
    let mut rest = line[k..].trim_start_matches([' ', '\t', '\x0c']);
    if let Some(r) = rest.strip_prefix(['=', ':']) {
        rest = r.trim_start_matches([' ', '\t', '\x0c']);
    }
    (key, rest)
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 4)
                    .and_then(char::from_u32)
                    .ok_or_else(|| "malformed \\uXXXX escape".to_string())?;
                out.push(code);
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

/// One `NAME=value` of an env file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvVar {
    /// The variable name.
    pub name: String,
    /// The value (quotes removed).
    pub value: String,
    /// 1-based line.
    pub line: usize,
}

/// Parses a Docker/Compose env file: `NAME=value` lines, `#` comments, optional `export `,
/// optional matching quotes around the value, ` #` comments after unquoted values.
pub fn parse_env_file(text: &str, file: &str) -> Result<Vec<EnvVar>, ImportError> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let syntax = |message: &str| ImportError::Syntax {
            file: file.to_string(),
            line: n + 1,
            message: message.to_string(),
        };
        let Some((name, value)) = line.split_once('=') else {
            return Err(syntax("expected NAME=VALUE"));
        };
        let name = name.trim();
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(syntax(
                "expected NAME=VALUE with a variable name of letters, digits and _",
            ));
        }
        let value = value.trim();
        let value = match value.chars().next() {
            Some(q @ ('"' | '\'')) if value.len() >= 2 && value.ends_with(q) => {
                value[1..value.len() - 1].to_string()
            }
            Some('"' | '\'') => return Err(syntax("unterminated quoted value")),
            _ => match value.find(" #") {
                Some(i) => value[..i].trim_end().to_string(),
                None => value.to_string(),
            },
        };
        out.push(EnvVar {
            name: name.to_string(),
            value,
            line: n + 1,
        });
    }
    Ok(out)
}

/// True for names whose values must never be shown (passwords, passphrases, tokens).
pub fn is_secret_name(name: &str) -> bool {
    // IBC's own keys are known: only the two passwords are secret (not, say,
    // DismissPasswordExpiryWarning).
    let ibc_key = name.strip_prefix("IBC_").unwrap_or(name);
    if IBC_KEYS.contains(&ibc_key) {
        return ibc_key == "IbPassword" || ibc_key == "FIXPassword";
    }
    let n = name.to_ascii_lowercase();
    ["password", "passwd", "passphrase", "secret", "token", "_pw"]
        .iter()
        .any(|w| n.contains(w))
}

/// Every setting of IBC 3.24's `config.ini` (`reference/ibc.md` §2), plus the deprecated
/// ones IBC still reads.
pub const IBC_KEYS: &[&str] = &[
    "FIX",
    "IbLoginId",
    "IbPassword",
    "FIXLoginId",
    "FIXPassword",
    "TradingMode",
    "IbDir",
    "StoreSettingsOnServer",
    "MinimizeMainWindow",
    "LoginDialogDisplayTimeout",
    "ShowAllTrades",
    "SecondFactorDevice",
    "ReloginAfterSecondFactorAuthenticationTimeout",
    "SecondFactorAuthenticationExitInterval",
    "SecondFactorAuthenticationTimeout",
    "ExitAfterSecondFactorAuthenticationTimeout",
    "ReadOnlyLogin",
    "ExistingSessionDetectedAction",
    "AcceptNonBrokerageAccountWarning",
    "AutoRestartTime",
    "AutoLogoffTime",
    "ColdRestartTime",
    "ClosedownAt",
    "SaveTwsSettingsAt",
    "OverrideTwsApiPort",
    "OverrideTwsMasterClientID",
    "ReadOnlyApi",
    "BypassOrderPrecautions",
    "BypassBondWarning",
    "BypassNegativeYieldToWorstConfirmation",
    "BypassCalledBondWarning",
    "BypassSameActionPairTradeWarning",
    "BypassPriceBasedVolatilityRiskWarning",
    "BypassUSStocksMarketDataInSharesWarning",
    "BypassRedirectOrderWarning",
    "BypassNoOverfillProtectionPrecaution",
    "AcceptBidAskLastSizeDisplayUpdateNotification",
    "SendMarketDataInLotsForUSstocks",
    "TrustedTwsApiClientIPs",
    "ResetOrderIdsAtStart",
    "ConfirmOrderIdReset",
    "AcceptIncomingConnectionAction",
    "AllowBlindTrading",
    "ConfirmCryptoCurrencyOrders",
    "DismissPasswordExpiryWarning",
    "DismissNSEComplianceNotice",
    "CommandServerPort",
    "ControlFrom",
    "BindAddress",
    "CommandPrompt",
    "SuppressInfoMessages",
    "LogStructureScope",
    "LogStructureWhen",
    "LogComponents",
    "IncludeStackTraceForExceptions",
];

/// Docker-image and launcher-script variables that stand for an IBC setting.
fn env_to_ibc(name: &str) -> Option<&'static str> {
    let key = match name {
        "TWS_USERID" | "TWSUSERID" | "USERNAME" => "IbLoginId",
        "TWS_PASSWORD" | "TWSPASSWORD" | "PASSWORD" => "IbPassword",
        "FIXUSERID" => "FIXLoginId",
        "FIXPASSWORD" => "FIXPassword",
        "TRADING_MODE" => "TradingMode",
        "READ_ONLY_API" => "ReadOnlyApi",
        "TWOFA_DEVICE" => "SecondFactorDevice",
        "TWOFA_EXIT_INTERVAL" => "SecondFactorAuthenticationExitInterval",
        "RELOGIN_AFTER_TWOFA_TIMEOUT" => "ReloginAfterSecondFactorAuthenticationTimeout",
        "BYPASS_WARNING" => "BypassOrderPrecautions",
        "AUTO_RESTART_TIME" => "AutoRestartTime",
        "AUTO_LOGOFF_TIME" => "AutoLogoffTime",
        "TWS_COLD_RESTART" => "ColdRestartTime",
        "SAVE_TWS_SETTINGS" => "SaveTwsSettingsAt",
        "EXISTING_SESSION_DETECTED_ACTION" => "ExistingSessionDetectedAction",
        "ALLOW_BLIND_TRADING" => "AllowBlindTrading",
        "TWS_ACCEPT_INCOMING" => "AcceptIncomingConnectionAction",
        "TWS_MASTER_CLIENT_ID" => "OverrideTwsMasterClientID",
        "TWS_SETTINGS_PATH" => "IbDir",
        _ => {
            // extrange/ibkr-docker: IBC_<Key> overrides the ini line <Key>.
            let k = name.strip_prefix("IBC_")?;
            return IBC_KEYS.iter().find(|&&known| known == k).copied();
        }
    };
    Some(key)
}

/// Docker-image variables that are not IBC settings but are understood (see
/// `Converter::env_settings`).
fn is_known_env(name: &str) -> bool {
    const KNOWN: &[&str] = &[
        "TWS_PASSWORD_FILE",
        "TIME_ZONE",
        "TZ",
        "GATEWAY_OR_TWS",
        "TWS_USERID_PAPER",
        "TWS_PASSWORD_PAPER",
        "TWS_PASSWORD_PAPER_FILE",
        "TWOFA_TIMEOUT_ACTION",
        "JAVA_HEAP_SIZE",
        "TWS_PATH",
        "JAVA_PATH",
        "HEALTHCHECK_CLIENT_ID",
        "HEALTHCHECK_API_ENABLE",
        "CUSTOM_CONFIG",
        "TWS_MAJOR_VRSN",
        "IBC_INI",
        "IBC_PATH",
        "LOG_PATH",
        "HIDE",
        "VNC_SERVER_PASSWORD",
        "VNC_SERVER_PASSWORD_FILE",
        "PASSWD",
        "PASSWD_FILE",
        "PUID",
        "PGID",
        "START_SCRIPTS",
        "X_SCRIPTS",
        "IBC_SCRIPTS",
    ];
    KNOWN.contains(&name) || name.starts_with("SSH_")
}

/// A value and where it came from.
#[derive(Clone, Debug)]
struct Setting {
    value: String,
    origin: Origin,
    /// Index of its entry in the report.
    entry: usize,
}

/// The TOML being built: section → lines.
#[derive(Default)]
struct Toml {
    sections: BTreeMap<&'static str, Vec<String>>,
}

impl Toml {
    fn set(&mut self, section: &'static str, key: &str, value: String, from: &Origin) {
        let lines = self.sections.entry(section).or_default();
        if from.line == 0 {
            lines.push(format!("# from {}", from.name));
        } else {
            lines.push(format!(
                "# from {} ({}:{})",
                from.name, from.file, from.line
            ));
        }
        lines.push(format!("{key} = {value}"));
    }

    fn render(&self, header: &str) -> String {
        let mut out = String::from(header);
        for section in [
            "gateway", "account", "login", "schedule", "probe", "control",
        ] {
            if let Some(lines) = self.sections.get(section) {
                out.push_str(&format!("\n[{section}]\n"));
                for l in lines {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// IBC's boolean: `yes`/`true`/`no`/`false`, case-insensitive, untrimmed; else `None`.
fn ibc_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" => Some(true),
        "no" | "false" => Some(false),
        _ => None,
    }
}

/// State of one conversion.
struct Converter<'a> {
    opts: &'a Options,
    report: Report,
    toml: Toml,
    password: Option<Secret>,
    /// Effective IBC settings (after env overrides).
    ibc: BTreeMap<&'static str, Setting>,
    /// Env-only variables (not IBC settings) with their entry index.
    env_only: Vec<Setting>,
    /// The API port the config ends up with (explicit or the default).
    api_port: u16,
}

/// Converts an IBC `config.ini` (text, if any) and Docker-image env variables into an
/// ibwarden TOML config and a report. Env values override ini values when not blank (the
/// images substitute them into their `config.ini` template).
pub fn convert(
    ini_text: Option<&str>,
    env: &[EnvVar],
    opts: &Options,
) -> Result<Conversion, ImportError> {
    let props = match ini_text {
        Some(t) => parse_properties(t, &opts.ini_name)?,
        None => Vec::new(),
    };
    let mut c = Converter {
        opts,
        report: Report::default(),
        toml: Toml::default(),
        password: None,
        ibc: BTreeMap::new(),
        env_only: Vec::new(),
        api_port: 0,
    };
    for p in props {
        let origin = Origin {
            file: opts.ini_name.clone(),
            line: p.line,
            name: p.key.clone(),
        };
        match IBC_KEYS.iter().find(|&&k| k == p.key) {
            Some(&key) => c.take_ibc(key, p.value, origin),
            None => {
                let hint = IBC_KEYS
                    .iter()
                    .find(|k| k.eq_ignore_ascii_case(&p.key))
                    .map(|k| format!("did you mean {k}? IBC keys are case-sensitive, so IBC ignored this line too"));
                c.push(origin, &p.value, Outcome::Unknown { hint });
            }
        }
    }
    for v in env {
        let origin = Origin {
            file: opts.env_name.clone(),
            line: v.line,
            name: v.name.clone(),
        };
        match env_to_ibc(&v.name) {
            // A blank variable leaves the template's line blank: IBC's default, unless
            // the ini said otherwise.
            Some(key) if v.value.trim().is_empty() && c.ibc.contains_key(key) => {
                let ini = c.ibc[key].origin.clone();
                c.push(
                    origin,
                    &v.value,
                    Outcome::Builtin {
                        why: format!("blank: the value from {ini} is used"),
                    },
                );
            }
            Some(key) => c.take_ibc(key, v.value.clone(), origin),
            None => {
                let entry = c.push(
                    origin.clone(),
                    &v.value,
                    Outcome::Unknown {
                        hint: Some("not a variable of the common IBC images".into()),
                    },
                );
                c.env_only.push(Setting {
                    value: v.value.clone(),
                    origin,
                    entry,
                });
            }
        }
    }
    c.run();
    let header = format!(
        "# ibwarden config converted from IBC by `ibwarden import-ibc` ({}).\n\
         # Read the report it printed; then: ibwarden check --config THIS_FILE\n\
         # Every key is documented in config.toml.example (/usr/share/doc/ibwarden/).\n",
        opts.today
    );
    Ok(Conversion {
        toml: c.toml.render(&header),
        report: c.report,
        password: c.password,
    })
}

impl Converter<'_> {
    fn push(&mut self, origin: Origin, value: &str, outcome: Outcome) -> usize {
        let shown_value = (!is_secret_name(&origin.name)).then(|| value.to_string());
        self.report.entries.push(Entry {
            origin,
            shown_value,
            outcome,
        });
        self.report.entries.len() - 1
    }

    /// Records an IBC setting; a later one overrides an earlier one (Java properties: the
    /// last line wins; env: the image's template line).
    fn take_ibc(&mut self, key: &'static str, value: String, origin: Origin) {
        let entry = self.push(
            origin.clone(),
            &value,
            Outcome::Builtin { why: String::new() },
        );
        if let Some(old) = self.ibc.insert(
            key,
            Setting {
                value,
                origin: origin.clone(),
                entry,
            },
        ) {
            self.report.entries[old.entry].outcome = Outcome::Overridden { by: origin };
        }
    }

    fn set_outcome(&mut self, s: &Setting, outcome: Outcome) {
        self.report.entries[s.entry].outcome = outcome;
    }

    fn mapped(&mut self, s: &Setting, section: &'static str, key: &str, value: String) {
        self.mapped_note(s, section, key, value, None);
    }

    fn mapped_note(
        &mut self,
        s: &Setting,
        section: &'static str,
        key: &str,
        value: String,
        note: Option<String>,
    ) {
        let to = format!("{section}.{key} = {value}");
        self.toml.set(section, key, value, &s.origin);
        self.set_outcome(s, Outcome::Mapped { to, note });
    }

    fn builtin(&mut self, s: &Setting, why: impl Into<String>) {
        self.set_outcome(s, Outcome::Builtin { why: why.into() });
    }

    fn not_mapped(&mut self, s: &Setting, why: impl Into<String>) {
        self.set_outcome(s, Outcome::NotMapped { why: why.into() });
    }

    fn get(&self, key: &str) -> Option<&Setting> {
        self.ibc.get(key)
    }

    fn env(&self, name: &str) -> Option<Setting> {
        self.env_only
            .iter()
            .rev()
            .find(|s| s.origin.name == name)
            .cloned()
    }

    fn run(&mut self) {
        let settings: Vec<(&'static str, Setting)> =
            self.ibc.iter().map(|(k, s)| (*k, s.clone())).collect();

        // Context several settings depend on.
        let mode_raw = self
            .get("TradingMode")
            .map(|s| s.value.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let mut live = mode_raw != "paper";
        let mut program = "gateway";
        if let Some(s) = self.env("GATEWAY_OR_TWS") {
            match s.value.trim().to_ascii_lowercase().as_str() {
                v @ ("gateway" | "tws") => {
                    program = if v == "tws" { "tws" } else { "gateway" };
                    self.mapped(&s, "gateway", "program", toml_str(program));
                }
                "" => self.builtin(&s, "blank: IB Gateway (ibwarden's default)"),
                _ => self.not_mapped(
                    &s,
                    "not \"gateway\" or \"tws\"; ibwarden runs IB Gateway by default",
                ),
            }
        }
        // The API port the config will end up with, for conflicts with the command server.
        let program_kind = if program == "tws" {
            crate::config::Program::Tws
        } else {
            crate::config::Program::Gateway
        };
        let mode_kind = if mode_raw == "paper" {
            TradingMode::Paper
        } else {
            TradingMode::Live
        };
        self.api_port = self
            .get("OverrideTwsApiPort")
            .and_then(|s| s.value.trim().parse::<u16>().ok())
            .filter(|p| *p != 0)
            .unwrap_or_else(|| crate::config::default_api_port(program_kind, mode_kind));
        let source_tz = self.source_time_zone();
        let sfd = self
            .get("SecondFactorDevice")
            .map(|s| s.value.trim().to_string())
            .unwrap_or_default();
        let uses_app = sfd.is_empty() || sfd == crate::core::SecondFactor::AUTHENTICATOR_APP;

        for (key, s) in settings {
            self.ibc_setting(key, &s, &source_tz);
        }
        if self
            .get("TradingMode")
            .is_some_and(|s| s.value.trim().eq_ignore_ascii_case("both"))
        {
            live = true;
        }
        self.env_settings(program);
        self.account(live && uses_app);
    }

    /// The time zone IBC's times were in: `TIME_ZONE` (gnzsnz) or `TZ`, else unknown.
    fn source_time_zone(&mut self) -> SourceTz {
        for name in ["TIME_ZONE", "TZ"] {
            let Some(s) = self.env(name) else { continue };
            let v = s.value.trim().to_string();
            if v.is_empty() {
                self.builtin(&s, "blank");
                continue;
            }
            return match TimeZone::get(&v) {
                Ok(tz) => {
                    self.builtin(
                        &s,
                        format!(
                            "used to convert IBC's local times into {SCHEDULE_TZ} (ibwarden's \
                             schedule time zone); the gateway's own display time zone is \
                             jts.ini's TimeZone in its settings dir"
                        ),
                    );
                    SourceTz::Known(v, tz)
                }
                Err(_) => {
                    self.not_mapped(&s, "not an IANA time zone name");
                    SourceTz::Unknown
                }
            };
        }
        SourceTz::Unknown
    }

    #[allow(clippy::too_many_lines)]
    fn ibc_setting(&mut self, key: &'static str, s: &Setting, tz: &SourceTz) {
        let v = s.value.trim();
        let blank = v.is_empty();
        const API_SETTING: &str = "ibwarden does not change the gateway's API settings: they \
            persist in its settings dir. Set it once in the gateway (Configure > Settings > API), \
            e.g. over x11vnc";
        const ORDER_DIALOG: &str = "order-time dialogs are not a login matter: ibwarden leaves \
            them to whoever trades (answer them over x11vnc, or change the setting in the gateway)";
        const IBC_LOGGING: &str = "IBC's in-JVM diagnostics; ibwarden logs every window it sees \
            at debug level (-v) and screenshots unknown dialogs";
        match key {
            "IbLoginId" => {
                if blank {
                    self.builtin(s, "blank (see the to-do list)");
                } else {
                    self.mapped(s, "account", "username", toml_str(v));
                }
            }
            "IbPassword" => {} // account()
            "FIX" => match ibc_bool(&s.value) {
                Some(true) => self.not_mapped(
                    s,
                    "ibwarden runs IB API sessions only; the FIX CTCI gateway login is not supported",
                ),
                _ => self.builtin(s, "IB API session (the only kind ibwarden runs)"),
            },
            "FIXLoginId" | "FIXPassword" => {
                if blank {
                    self.builtin(s, "blank");
                } else {
                    self.not_mapped(s, "FIX CTCI is not supported");
                }
            }
            "TradingMode" => match v.to_ascii_lowercase().as_str() {
                "" => self.builtin(s, "blank: live (ibwarden's default)"),
                m @ ("live" | "paper") => {
                    self.mapped(s, "gateway", "trading_mode", toml_str(m));
                }
                "both" => {
                    self.mapped_note(
                        s,
                        "gateway",
                        "trading_mode",
                        toml_str("live"),
                        Some("one account per ibwarden instance: this file is the live one".into()),
                    );
                    self.report.todo.push(
                        "TRADING_MODE=both: ibwarden runs one account per instance. Convert again \
                         with TRADING_MODE=paper and TWS_USERID/TWS_PASSWORD set to the paper \
                         account's, and run it as a second unit (e.g. ibwarden@paper)."
                            .into(),
                    );
                }
                _ => self.not_mapped(s, "not live or paper (IBC exits 1104 on it)"),
            },
            "IbDir" => {
                if blank {
                    self.builtin(
                        s,
                        "blank: the gateway settings live under ibwarden's state dir (<state dir>/jts)",
                    );
                } else {
                    self.mapped_note(
                        s,
                        "gateway",
                        "settings_dir",
                        toml_str(v),
                        Some(
                            "keeps the existing settings (API settings, autorestart token); the \
                             ibwarden user must own it, and under the systemd unit a dir outside \
                             /var/lib/ibwarden needs ReadWritePaths= in a drop-in"
                                .into(),
                        ),
                    );
                }
            }
            "StoreSettingsOnServer" if blank => self.builtin(s, "blank: left as it is"),
            "StoreSettingsOnServer" => self.not_mapped(
                s,
                "a TWS checkbox; ibwarden does not change gateway settings: set it once in TWS",
            ),
            "MinimizeMainWindow" => self.builtin(
                s,
                "the gateway runs on ibwarden's private Xvfb, where no one sees its window",
            ),
            "LoginDialogDisplayTimeout" => self.builtin(
                s,
                "ibwarden waits for the login window with its own deadline and relaunches the \
                 JVM when it passes",
            ),
            "ShowAllTrades" => self.not_mapped(s, "undocumented legacy IBC option; not carried over"),
            "SecondFactorDevice" => {
                if blank {
                    self.builtin(
                        s,
                        "blank: ibwarden picks \"Mobile Authenticator app\" and types its TOTP code",
                    );
                } else if v == crate::core::SecondFactor::AUTHENTICATOR_APP {
                    self.builtin(s, "ibwarden's default");
                } else {
                    self.mapped_note(
                        s,
                        "login",
                        "second_factor_device",
                        toml_str(v),
                        Some(
                            "a person still approves each login on the phone; with the Mobile \
                             Authenticator app (TOTP) ibwarden logs in unattended"
                                .into(),
                        ),
                    );
                }
            }
            "ReloginAfterSecondFactorAuthenticationTimeout"
            | "ExitAfterSecondFactorAuthenticationTimeout"
            | "SecondFactorAuthenticationExitInterval" => self.builtin(
                s,
                "ibwarden retries a timed-out second factor itself, within \
                 login.max_failed_logins_per_hour",
            ),
            "SecondFactorAuthenticationTimeout" => {
                if blank {
                    self.builtin(s, "blank");
                    return;
                }
                match v.parse::<u64>() {
                    Ok(n) if (10..=600).contains(&n) => {
                        self.mapped(s, "login", "ib_key_wait", toml_str(&format!("{n}s")));
                    }
                    _ => self.not_mapped(s, "not a number of seconds between 10 and 600"),
                }
            }
            "ReadOnlyLogin" => match ibc_bool(&s.value) {
                Some(true) => self.not_mapped(
                    s,
                    "read-only login (TWS only) is not supported: ibwarden always completes the \
                     second factor",
                ),
                _ => self.builtin(s, "full login (ibwarden's only mode)"),
            },
            "ExistingSessionDetectedAction" => match v.to_ascii_lowercase().as_str() {
                "" => self.mapped_note(
                    s,
                    "login",
                    "existing_session",
                    toml_str("manual"),
                    Some(
                        "blank is IBC's default, manual (ibwarden's own default is primary); \
                         manual means a person is notified and decides"
                            .into(),
                    ),
                ),
                m @ ("primary" | "primaryoverride" | "secondary" | "manual") => {
                    self.mapped(s, "login", "existing_session", toml_str(m));
                }
                _ => self.not_mapped(
                    s,
                    "not primary, primaryoverride, secondary or manual; ibwarden's default \
                     (primary) applies",
                ),
            },
            "AcceptNonBrokerageAccountWarning" => self.builtin(
                s,
                "ibwarden always accepts the paper-account warning (API connections fail until \
                 it is accepted)",
            ),
            "AutoRestartTime" => self.daily_time(s, tz, true),
            "AutoLogoffTime" => self.daily_time(s, tz, false),
            "ColdRestartTime" => {
                if blank {
                    self.builtin(
                        s,
                        "blank: ibwarden's weekly cold restart (Sun 01:30 America/New_York) applies",
                    );
                    return;
                }
                match units::parse_time_of_day(v) {
                    Ok(t) => {
                        let w = WeekdayTime {
                            weekday: Weekday::Sunday,
                            time: t,
                        };
                        self.weekly(s, tz, "weekly_cold_restart", w);
                    }
                    Err(e) => self.not_mapped(s, format!("{e} (IBC exits 1105 on it)")),
                }
            }
            "ClosedownAt" => {
                if blank {
                    self.builtin(s, "blank: no closedown");
                    return;
                }
                if units::parse_time_of_day(v).is_ok() {
                    self.not_mapped(
                        s,
                        "a daily closedown: ibwarden's closedown is weekly; use a systemd timer \
                         running `systemctl stop ibwarden@NAME` instead",
                    );
                    return;
                }
                match units::parse_weekday_time(v) {
                    Ok(w) => self.weekly(s, tz, "closedown", w),
                    Err(e) => self.not_mapped(
                        s,
                        format!("{e}; only English day names are understood"),
                    ),
                }
            }
            "SaveTwsSettingsAt" if blank => self.builtin(s, "blank"),
            "SaveTwsSettingsAt" => self.not_mapped(
                s,
                "ibwarden does not drive the gateway's menus; the gateway saves its settings when \
                 it exits cleanly (ibwarden always stops it cleanly)",
            ),
            "OverrideTwsApiPort" => match v.parse::<u32>() {
                _ if blank => self.builtin(s, "blank: the gateway's default port"),
                Ok(0) => self.builtin(s, "0: the gateway's default port"),
                Ok(p) if p <= 65535 => {
                    self.mapped_note(
                        s,
                        "gateway",
                        "api_port",
                        p.to_string(),
                        Some(
                            "the port the probe connects to; it must match the gateway's API \
                             Socket port setting (kept in its settings dir)"
                                .into(),
                        ),
                    );
                }
                _ => self.not_mapped(s, "not a port number"),
            },
            "OverrideTwsMasterClientID" | "ReadOnlyApi" | "SendMarketDataInLotsForUSstocks"
            | "ResetOrderIdsAtStart"
            | "BypassOrderPrecautions"
            | "BypassBondWarning"
            | "BypassNegativeYieldToWorstConfirmation"
            | "BypassCalledBondWarning"
            | "BypassSameActionPairTradeWarning"
            | "BypassPriceBasedVolatilityRiskWarning"
            | "BypassUSStocksMarketDataInSharesWarning"
            | "BypassRedirectOrderWarning"
            | "BypassNoOverfillProtectionPrecaution" => {
                if blank || (key == "ResetOrderIdsAtStart" && ibc_bool(&s.value) == Some(false)) {
                    self.builtin(s, "blank: the gateway's setting is left as it is");
                } else {
                    self.not_mapped(s, API_SETTING);
                }
            }
            "TrustedTwsApiClientIPs" if blank => self.builtin(s, "blank"),
            "TrustedTwsApiClientIPs" => self.not_mapped(
                s,
                "add the addresses to TrustedIPs in the [IBGateway] section of jts.ini in the \
                 gateway's settings dir",
            ),
            "AcceptIncomingConnectionAction" => match v.to_ascii_lowercase().as_str() {
                "" | "manual" => self.builtin(
                    s,
                    "ibwarden leaves the incoming-connection prompt to a person, as IBC's manual",
                ),
                _ => self.not_mapped(
                    s,
                    "ibwarden never accepts or rejects API clients for you; list trusted client \
                     addresses in jts.ini TrustedIPs so the gateway does not ask",
                ),
            },
            "AcceptBidAskLastSizeDisplayUpdateNotification" | "ConfirmOrderIdReset" => {
                if blank {
                    self.builtin(s, "blank");
                } else {
                    self.not_mapped(
                        s,
                        "ibwarden does not answer this dialog (it screenshots and reports \
                         unknown dialogs); answer it once over x11vnc",
                    );
                }
            }
            "AllowBlindTrading" | "ConfirmCryptoCurrencyOrders" => {
                let off = blank
                    || ibc_bool(&s.value) == Some(false)
                    || v.eq_ignore_ascii_case("manual");
                if off {
                    self.builtin(s, "left to a person, as IBC's default");
                } else {
                    self.not_mapped(s, ORDER_DIALOG);
                }
            }
            "DismissPasswordExpiryWarning" => self.builtin(
                s,
                "ibwarden dismisses the password notice and notifies a person (password expiring)",
            ),
            "DismissNSEComplianceNotice" => self.not_mapped(
                s,
                "the Indian TWS NSE compliance notice is not in ibwarden's dialog catalogue; if it \
                 appears it is reported as an unknown dialog",
            ),
            "CommandServerPort" => match v.parse::<u32>() {
                _ if blank => self.builtin(s, "blank: no command server"),
                Ok(0) => self.builtin(s, "0: no command server"),
                Ok(p) if p == u32::from(self.api_port) => self.not_mapped(
                    s,
                    format!("the gateway's API port is {p} too; pick another port"),
                ),
                Ok(p) if p <= 65535 => self.mapped_note(
                    s,
                    "control",
                    "ibc_command_port",
                    p.to_string(),
                    Some(
                        "ibwarden's IBC-compatible command server listens on 127.0.0.1 only; \
                         `ibwarden status|restart|stop` use the control socket"
                            .into(),
                    ),
                ),
                _ => self.not_mapped(s, "not a port number"),
            },
            "BindAddress" => {
                if blank || v == "127.0.0.1" || v == "localhost" {
                    self.builtin(s, "ibwarden's command server binds 127.0.0.1");
                } else {
                    self.not_mapped(
                        s,
                        "ibwarden's command server listens on 127.0.0.1 only; reach it over ssh",
                    );
                }
            }
            "ControlFrom" if blank => self.builtin(s, "blank: loopback only, as ibwarden"),
            "ControlFrom" => self.not_mapped(
                s,
                "ibwarden's command server accepts loopback clients only; use an ssh tunnel and \
                 control.ibc_command_auth_file",
            ),
            "CommandPrompt" if blank => self.builtin(s, "blank"),
            "CommandPrompt" => self.not_mapped(s, "ibwarden's command server sends no prompt"),
            "SuppressInfoMessages" => self.builtin(s, "the command server's replies are fixed"),
            "LogStructureScope" | "LogStructureWhen" | "LogComponents"
            | "IncludeStackTraceForExceptions" => self.builtin(s, IBC_LOGGING),
            _ => self.not_mapped(s, "no ibwarden equivalent"),
        }
    }

    /// `AutoRestartTime` (restart) or `AutoLogoffTime` (logoff): `hh:mm AM/PM`.
    fn daily_time(&mut self, s: &Setting, tz: &SourceTz, restart: bool) {
        let v = s.value.trim();
        if v.is_empty() {
            self.builtin(
                s,
                "blank: the time set in the gateway (Lock and Exit) or IBKR's nightly restart \
                 applies",
            );
            return;
        }
        if !restart {
            self.not_mapped(
                s,
                "a daily logoff without restart: ibwarden keeps the gateway up; stop it with a \
                 systemd timer (`systemctl stop ibwarden@NAME`) or use schedule.closedown (weekly)",
            );
            return;
        }
        let Some(t) = parse_ampm(v) else {
            self.not_mapped(s, "not a time like \"11:59 PM\"");
            return;
        };
        let (t, note) = match tz {
            SourceTz::Known(name, zone) => match to_schedule_tz(self.opts.today, t, zone) {
                Some(ny) => (
                    ny.time(),
                    Some(format!(
                        "converted from {name} at today's offset; re-check after a daylight-saving \
                         change that only one of the two zones makes"
                    )),
                ),
                None => (t, None),
            },
            SourceTz::Unknown => (
                t,
                Some(format!(
                    "IBC used the machine's local time zone; assumed {SCHEDULE_TZ} (set TIME_ZONE \
                     in the env file to convert)"
                )),
            ),
        };
        let text = format!("{:02}:{:02}", t.hour(), t.minute());
        self.mapped_note(s, "schedule", "daily_restart", toml_str(&text), note);
    }

    fn weekly(&mut self, s: &Setting, tz: &SourceTz, key: &str, w: WeekdayTime) {
        let (w, note) = match tz {
            SourceTz::Known(name, zone) => {
                // The next such weekday from today, converted.
                let date = next_weekday(self.opts.today, w.weekday);
                match to_schedule_tz(date, w.time, zone) {
                    Some(ny) => (
                        WeekdayTime {
                            weekday: ny.weekday(),
                            time: ny.time(),
                        },
                        Some(format!(
                            "converted from {name} at this week's offset; re-check after a \
                             daylight-saving change that only one of the two zones makes"
                        )),
                    ),
                    None => (w, None),
                }
            }
            SourceTz::Unknown => (
                w,
                Some(format!(
                    "IBC used the machine's local time zone; assumed {SCHEDULE_TZ} (set TIME_ZONE \
                     in the env file to convert)"
                )),
            ),
        };
        self.mapped_note(s, "schedule", key, toml_str(&w.to_string()), note);
    }

    /// Docker-image variables that are not IBC settings.
    fn env_settings(&mut self, program: &str) {
        let vars: Vec<Setting> = self.env_only.clone();
        for s in vars {
            let v = s.value.trim().to_string();
            let name = s.origin.name.as_str();
            let elsewhere = ["TWS_PASSWORD_FILE", "TIME_ZONE", "TZ", "GATEWAY_OR_TWS"];
            if v.is_empty() && !elsewhere.contains(&name) {
                let why = if !is_known_env(name) {
                    Outcome::Unknown {
                        hint: Some("blank, and not a variable of the common IBC images".into()),
                    }
                } else {
                    Outcome::Builtin {
                        why: "blank: nothing to carry over".into(),
                    }
                };
                self.set_outcome(&s, why);
                continue;
            }
            match name {
                "TWS_PASSWORD_FILE" | "TIME_ZONE" | "TZ" | "GATEWAY_OR_TWS" => {} // elsewhere
                "TWS_USERID_PAPER" | "TWS_PASSWORD_PAPER" | "TWS_PASSWORD_PAPER_FILE" => {
                    if v.is_empty() {
                        self.builtin(&s, "blank");
                    } else {
                        self.not_mapped(
                            &s,
                            "the paper account of TRADING_MODE=both: convert again for a second \
                             instance (one account per ibwarden instance)",
                        );
                    }
                }
                "TWOFA_TIMEOUT_ACTION" => self.builtin(
                    &s,
                    "ibwarden retries a timed-out second factor itself (no script restart needed)",
                ),
                "JAVA_HEAP_SIZE" => {
                    if v.is_empty() {
                        self.builtin(&s, "blank: the heap from the install's .vmoptions");
                    } else {
                        match v.trim_end_matches(['m', 'M']).parse::<u32>() {
                            Ok(mb) if mb >= 256 => self.mapped(
                                &s,
                                "gateway",
                                "jvm_args",
                                format!("[{}]", toml_str(&format!("-Xmx{mb}m"))),
                            ),
                            _ => self.not_mapped(&s, "not a heap size in MB (at least 256)"),
                        }
                    }
                }
                "TWS_PATH" => {
                    if v.is_empty() {
                        self.builtin(&s, "blank: the install is found automatically");
                    } else {
                        let dir = if program == "tws" {
                            v.clone()
                        } else {
                            format!("{}/ibgateway", v.trim_end_matches('/'))
                        };
                        self.mapped_note(
                            &s,
                            "gateway",
                            "install_dir",
                            toml_str(&dir),
                            Some("the newest version directory under it is used".into()),
                        );
                    }
                }
                "JAVA_PATH" => {
                    if v.is_empty() {
                        self.builtin(&s, "blank: the install's bundled JRE, else java on PATH");
                    } else {
                        let java = format!("{}/java", v.trim_end_matches('/'));
                        self.mapped(&s, "gateway", "java", toml_str(&java));
                    }
                }
                "HEALTHCHECK_CLIENT_ID" => match v.parse::<i32>() {
                    Ok(id) if id >= 0 => self.mapped(&s, "probe", "client_id", id.to_string()),
                    _ if v.is_empty() => self.builtin(&s, "blank: client id 999"),
                    _ => self.not_mapped(&s, "not a client id"),
                },
                "HEALTHCHECK_API_ENABLE" => self.not_mapped(
                    &s,
                    "ibwarden's HTTP health endpoint is [health] listen (e.g. \"127.0.0.1:9187\"); \
                     it answers /readyz only after a passing API handshake",
                ),
                "CUSTOM_CONFIG" if v.is_empty() => self.builtin(&s, "blank"),
                "CUSTOM_CONFIG" => self.not_mapped(
                    &s,
                    "a custom config.ini: convert it too (`ibwarden import-ibc THAT_FILE --env-file ...`)",
                ),
                "TWS_MAJOR_VRSN" => {
                    self.builtin(&s, "ibwarden runs the newest installed version (or install_dir)")
                }
                "IBC_INI" | "IBC_PATH" => {
                    self.builtin(&s, "IBC itself is not needed any more")
                }
                "LOG_PATH" => self.builtin(
                    &s,
                    "ibwarden logs to journald under systemd (--log-format), the gateway to its \
                     settings dir",
                ),
                "HIDE" => self.builtin(&s, "no xterm: ibwarden runs headless"),
                "VNC_SERVER_PASSWORD" | "VNC_SERVER_PASSWORD_FILE" | "PASSWD" | "PASSWD_FILE"
                | "PUID" | "PGID" => self.not_mapped(
                    &s,
                    "remote desktop of the image: ibwarden has none built in; for a human \
                     takeover run x11vnc on ibwarden's Xvfb display (over ssh, not exposed)",
                ),
                "START_SCRIPTS" | "X_SCRIPTS" | "IBC_SCRIPTS" => self.not_mapped(
                    &s,
                    "start hooks of the image: use ExecStartPre= in a systemd drop-in, and \
                     [notify] command for events",
                ),
                n if n.starts_with("SSH_") => self.not_mapped(
                    &s,
                    "the image's ssh tunnel: run autossh or a systemd unit of its own",
                ),
                n if n.starts_with("IBC_") => {
                    let k = &n[4..];
                    let hint = IBC_KEYS
                        .iter()
                        .find(|known| known.eq_ignore_ascii_case(k))
                        .map(|known| format!("did you mean IBC_{known}? (IBC keys are case-sensitive)"))
                        .unwrap_or_else(|| "IBC_<Key> with a Key IBC does not have".into());
                    self.set_outcome(&s, Outcome::Unknown { hint: Some(hint) });
                }
                _ => {} // stays Unknown
            }
        }
    }

    /// The `[account]` key and value that say where a secret (`password` or `totp`) is.
    fn secret_ref(&self, which: &str) -> (&'static str, String) {
        match (which, self.opts.credentials) {
            ("password", true) => ("password_credential", toml_str("password")),
            ("password", false) => ("password_file", toml_str(&self.opts.password_file)),
            (_, true) => ("totp_credential", toml_str("totp")),
            (_, false) => ("totp_file", toml_str(&self.opts.totp_file)),
        }
    }

    /// How a person stores a secret where the config expects it.
    fn store_hint(&self, which: &str, prompt: &str, file: &str) -> String {
        if self.opts.credentials {
            format!(
                "`(umask 077; systemd-ask-password -n \"{prompt}:\" > {file})` (read by \
                 systemd as the credential {which}; chmod 600, root only)"
            )
        } else {
            format!("`ibwarden secret set {which} --config THIS_FILE` (writes {file}, chmod 600)")
        }
    }

    /// `[account]`: username placeholder, password reference, activation code.
    fn account(&mut self, needs_totp: bool) {
        let user = self
            .get("IbLoginId")
            .map(|s| s.value.trim().to_string())
            .unwrap_or_default();
        if user.is_empty() {
            let none = Origin {
                file: "(none)".into(),
                line: 0,
                name: "IbLoginId".into(),
            };
            self.toml.set(
                "account",
                "username",
                toml_str("CHANGE-ME"),
                &Origin {
                    name: "nothing: no IbLoginId / TWS_USERID was set".into(),
                    ..none
                },
            );
            self.report.todo.push(
                "No username (IbLoginId / TWS_USERID) was set: replace CHANGE-ME with the IBKR \
                 username in [account] username."
                    .into(),
            );
        }

        let file_var = self
            .env("TWS_PASSWORD_FILE")
            .filter(|s| !s.value.trim().is_empty());
        let password = self.get("IbPassword").cloned();
        if let Some(f) = &file_var {
            let path = f.value.trim().to_string();
            self.mapped_note(
                f,
                "account",
                "password_file",
                toml_str(&path),
                Some(
                    "the file must exist on this machine, owned by the ibwarden user, chmod 600 \
                     (group- or world-readable files are refused)"
                        .into(),
                ),
            );
            if let Some(p) = &password {
                self.not_mapped(
                    p,
                    "TWS_PASSWORD_FILE is used instead; the value was not copied anywhere",
                );
            }
        } else if let Some(p) = password.clone().filter(|p| !p.value.is_empty()) {
            // IBC's getString trims; keep the exact value IBC would have typed.
            self.password = Some(Secret::new(p.value.trim().to_string()));
            let file = self.opts.password_file.clone();
            let (key, value) = self.secret_ref("password");
            let to = format!(
                "account.{key} = {value} (the password goes to the chmod 600 file {file}, never \
                 into the TOML)"
            );
            self.toml.set("account", key, value, &p.origin);
            let note = if self.opts.credentials {
                "for no clear text on disk at all, encrypt it: systemd-creds (see the comments \
                 in ibwarden@.service)"
            } else {
                "under systemd, prefer a credential: password_credential with \
                 LoadCredentialEncrypted= (see the comments in ibwarden@.service)"
            };
            self.set_outcome(
                &p,
                Outcome::Mapped {
                    to,
                    note: Some(note.into()),
                },
            );
            self.report.todo.push(format!(
                "Once ibwarden logs in with the password in {file}, delete the clear-text \
                 password from the IBC files (config.ini / env file)."
            ));
        } else {
            if let Some(p) = &password {
                self.builtin(p, "blank (see the to-do list)");
            }
            let file = self.opts.password_file.clone();
            let (key, value) = self.secret_ref("password");
            self.toml.set(
                "account",
                key,
                value,
                &Origin {
                    file: String::new(),
                    line: 0,
                    name: "nothing: no password was set".into(),
                },
            );
            let how = self.store_hint("password", "IBKR password", &file);
            self.report
                .todo
                .push(format!("No password was set: store it with {how}."));
        }

        if needs_totp {
            let file = self.opts.totp_file.clone();
            let (key, value) = self.secret_ref("totp");
            let how = self.store_hint("totp", "Activation code", &file);
            self.toml.set(
                "account",
                key,
                value,
                &Origin {
                    file: String::new(),
                    line: 0,
                    name: "ibwarden: live logins type the Mobile Authenticator code".into(),
                },
            );
            self.report.todo.push(format!(
                "IBC never had the second factor's secret. Enrol IBKR's Mobile Authenticator app \
                 (Client Portal > Settings > Secure Login System), keep the activation code shown \
                 under the QR code, and store it with {how}. Check with `ibwarden totp` \
                 against the app."
            ));
        }
    }
}

/// The zone IBC's local times are in.
enum SourceTz {
    Known(String, TimeZone),
    Unknown,
}

/// `hh:mm AM/PM` (IBC) or `hh:mm` (24-hour).
fn parse_ampm(v: &str) -> Option<Time> {
    let mut parts = v.split_whitespace();
    let hm = parts.next()?;
    let suffix = parts.next().map(|s| s.to_ascii_uppercase());
    if parts.next().is_some() {
        return None;
    }
    let t = units::parse_time_of_day(hm).ok()?;
    let hour = match suffix.as_deref() {
        None => t.hour(),
        Some(ap @ ("AM" | "PM")) => {
            if !(1..=12).contains(&t.hour()) {
                return None;
            }
            let h = t.hour() % 12;
            if ap == "PM" {
                h + 12
            } else {
                h
            }
        }
        Some(_) => return None,
    };
    Time::new(hour, t.minute(), 0, 0).ok()
}

/// The first `weekday` on or after `from`.
fn next_weekday(from: Date, weekday: Weekday) -> Date {
    let mut d = from;
    for _ in 0..7 {
        if d.weekday() == weekday {
            return d;
        }
        d = d.tomorrow().unwrap_or(d);
    }
    d
}

/// `date time` in `zone`, as civil time in the schedule zone.
fn to_schedule_tz(date: Date, time: Time, zone: &TimeZone) -> Option<jiff::civil::DateTime> {
    let target = TimeZone::get(SCHEDULE_TZ).ok()?;
    let zoned = date.to_datetime(time).to_zoned(zone.clone()).ok()?;
    Some(zoned.with_time_zone(target).datetime())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options {
            password_file: "main.password".into(),
            totp_file: "main.totp".into(),
            credentials: false,
            today: Date::constant(2026, 11, 24),
            ini_name: "config.ini".into(),
            env_name: ".env".into(),
        }
    }

    #[test]
    fn properties_syntax() {
        let text = "# c\n! c\n  a = 1 \nb:2\nc 3\nd\\\n   e=4\nf=\\u0041\\tx\\\n  y\ng\n";
        let p = parse_properties(text, "x").expect("parses");
        let kv: Vec<(&str, &str, usize)> = p
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str(), p.line))
            .collect();
        assert_eq!(
            kv,
            vec![
                ("a", "1 ", 3),
                ("b", "2", 4),
                ("c", "3", 5),
                ("de", "4", 6),
                ("f", "A\txy", 8),
                ("g", "", 10),
            ]
        );
        let err = parse_properties("ok=1\nbad=\\u12G4\n", "c.ini").expect_err("bad escape");
        assert_eq!(err.to_string(), "c.ini:2: malformed \\uXXXX escape");
    }

    #[test]
    fn env_file_syntax() {
        let text = "# c\nA=1\nexport B=\"x y\"\nC='z' \nD=v # comment\nE=\n";
        let v = parse_env_file(text, "e").expect("parses");
        let kv: Vec<(&str, &str)> = v
            .iter()
            .map(|v| (v.name.as_str(), v.value.as_str()))
            .collect();
        assert_eq!(
            kv,
            vec![("A", "1"), ("B", "x y"), ("C", "z"), ("D", "v"), ("E", "")]
        );
        let err = parse_env_file("A=1\nNOPE\n", "e").expect_err("no =");
        assert_eq!(err.to_string(), "e:2: expected NAME=VALUE");
        assert!(parse_env_file("1A=x\n", "e").is_err());
    }

    #[test]
    fn ampm_times() {
        assert_eq!(parse_ampm("11:59 PM"), Some(Time::constant(23, 59, 0, 0)));
        assert_eq!(parse_ampm("12:00 AM"), Some(Time::constant(0, 0, 0, 0)));
        assert_eq!(parse_ampm("12:00 PM"), Some(Time::constant(12, 0, 0, 0)));
        assert_eq!(parse_ampm("08:05 am"), Some(Time::constant(8, 5, 0, 0)));
        assert_eq!(parse_ampm("23:10"), Some(Time::constant(23, 10, 0, 0)));
        assert_eq!(parse_ampm("13:00 PM"), None);
        assert_eq!(parse_ampm("noon"), None);
    }

    #[test]
    fn times_convert_into_new_york() {
        let ini = "AutoRestartTime=11:59 PM\nColdRestartTime=07:05\nClosedownAt=Friday 22:00\n";
        let env = parse_env_file("TIME_ZONE=Europe/Zurich\n", ".env").expect("env");
        let c = convert(Some(ini), &env, &opts()).expect("converts");
        // 2026-11-24: Zurich is UTC+1, New York UTC-5: 6 hours behind.
        assert!(c.toml.contains("daily_restart = \"17:59\""), "{}", c.toml);
        assert!(
            c.toml.contains("weekly_cold_restart = \"Sun 01:05\""),
            "{}",
            c.toml
        );
        assert!(c.toml.contains("closedown = \"Fri 16:00\""), "{}", c.toml);
        // Asia/Tokyo: Sunday 07:05 is Saturday 17:05 in New York.
        let env = parse_env_file("TZ=Asia/Tokyo\n", ".env").expect("env");
        let c = convert(Some("ColdRestartTime=07:05\n"), &env, &opts()).expect("converts");
        assert!(
            c.toml.contains("weekly_cold_restart = \"Sat 17:05\""),
            "{}",
            c.toml
        );
        // Without a zone: kept, with a note.
        let c = convert(Some("AutoRestartTime=11:59 PM\n"), &[], &opts()).expect("converts");
        assert!(c.toml.contains("daily_restart = \"23:59\""));
        let Outcome::Mapped { note, .. } = &c.report.entry("AutoRestartTime").expect("e").outcome
        else {
            panic!("not mapped");
        };
        assert!(note
            .as_deref()
            .unwrap_or("")
            .contains("assumed America/New_York"));
    }

    #[test]
    fn later_lines_and_env_override() {
        let ini = "TradingMode=live\nTradingMode=paper\n";
        let env = parse_env_file("TRADING_MODE=live\nREAD_ONLY_API=\n", ".env").expect("env");
        let c = convert(Some(ini), &env, &opts()).expect("converts");
        let over: Vec<_> = c
            .report
            .entries
            .iter()
            .filter(|e| matches!(e.outcome, Outcome::Overridden { .. }))
            .map(|e| e.origin.line)
            .collect();
        assert_eq!(over, vec![1, 2]);
        assert!(c.toml.contains("trading_mode = \"live\""));
        assert!(c.toml.contains("totp_file = \"main.totp\""));
    }

    #[test]
    fn unknown_keys_are_listed_with_hints() {
        let c = convert(Some("tradingmode=paper\nFoo=1\n"), &[], &opts()).expect("converts");
        let e = c.report.entry("tradingmode").expect("listed");
        assert!(
            matches!(&e.outcome, Outcome::Unknown { hint: Some(h) } if h.contains("TradingMode"))
        );
        assert!(matches!(
            c.report.entry("Foo").expect("listed").outcome,
            Outcome::Unknown { .. }
        ));
    }

    #[test]
    fn secret_values_are_never_shown() {
        let ini = "IbPassword=Hunter2-Sekret\nMyApiToken=tok-Sekret\n";
        let env = parse_env_file(
            "SSH_PASSPHRASE=pp-Sekret\nVNC_SERVER_PASSWORD=vnc-Sekret\n",
            ".env",
        )
        .expect("env");
        let c = convert(Some(ini), &env, &opts()).expect("converts");
        let report = c.report.to_string();
        let debug = format!("{:?}", c.report);
        for text in [&c.toml, &report, &debug] {
            assert!(!text.contains("Sekret"), "leak in:\n{text}");
        }
        assert_eq!(
            c.password.as_ref().map(Secret::expose),
            Some("Hunter2-Sekret")
        );
        assert!(format!("{c:?}").find("Sekret").is_none());
    }
}
