//! Converting an IBC setup into an ibwarden config (`ibwarden import-ibc`).
//!
//! Input: IBC's `config.ini` (a Java properties file) and/or the
//! environment variables of the common IBC Docker images (gnzsnz,
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
    /// The value written as `control.ibc_command_auth_file` when the command server is
    /// mapped (IBC had no token; ibwarden requires one): the caller writes a random token
    /// there when [`Conversion::token_needed`].
    pub token_file: String,
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
    /// The command server is mapped, so [`Options::token_file`] must hold a token.
    pub token_needed: bool,
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

/// Every setting of IBC 3.24's `config.ini` (IBC's source), plus the deprecated
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

/// True for a variable of the common IBC Docker images that the converter reads, when it is
/// found in a process environment (`ibwarden container`). The launcher scripts' generic
/// `USERNAME` and `PASSWORD` are left out there: a process environment has them for other
/// reasons.
pub fn is_image_variable(name: &str) -> bool {
    if matches!(name, "USERNAME" | "PASSWORD") {
        return false;
    }
    env_to_ibc(name).is_some() || is_known_env(name)
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
    /// The command server is mapped: a token file is referenced.
    token_needed: bool,
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
        token_needed: false,
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
        token_needed: c.token_needed,
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
}

mod env;
mod parse;
mod rules;
mod table;

pub use table::settings_table;
#[cfg(test)]
mod tests;

#[allow(unused_imports)]
use env::*;
pub use parse::*;
