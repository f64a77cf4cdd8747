//! The TOML config file: schema, defaults and validation.
//!
//! [`Config::load`] reads a file and returns a fully typed [`Config`] (durations are
//! [`Duration`]s, choices are enums, relative paths are resolved) or a [`ConfigError`] that
//! lists *every* problem as `path:line:col: key `section.key`: message`. Unknown keys are
//! errors with a "did you mean" suggestion. Secret values are never in the file (only where
//! to find them: `*_file`, `*_credential`, `*_env`), and no message echoes one.
//!
//! Relative paths in the file are relative to the directory of the config file; `~/` means
//! `$HOME`. Defaults that depend on the environment (`$STATE_DIRECTORY`,
//! `$RUNTIME_DIRECTORY`, `$HOME`) come from an [`Env`], so tests can pin them.
//!
//! `config.toml.example` at the top of the repository documents every key and its default;
//! a test parses it.
//!
//! Reading is in two layers: [`reader`] walks the spanned TOML tree and reports type and
//! syntax problems by position; this module turns the values into the typed sections and
//! checks what involves several keys.

mod error;
mod reader;
pub mod units;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::civil::Time;
use jiff::tz::TimeZone;
use toml::de::DeTable;
use toml::Spanned;

pub use error::{ConfigError, Diagnostic};
pub use units::{Geometry, WeekdayTime};

use crate::secret::SecretSource;
use reader::{Ctx, Section};

pub use crate::core::domain::{Program, SecondFactor, SessionPolicy, TradingMode};

/// Which `java` runs the gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Java {
    /// The JRE bundled with the install, else `java` on `PATH` (found by `gateway::install`).
    Auto,
    /// This executable.
    Path(PathBuf),
}

/// How the contents of a dialog (not only its title) are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentReader {
    /// OCR when tesseract is installed, else titles only (AT-SPI is opt-in only).
    Auto,
    /// Screenshot + tesseract.
    Ocr,
    /// The accessibility bus (Java ATK wrapper).
    Atspi,
    /// Titles only.
    None,
}

/// Which X display the gateway uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisplayMode {
    /// ibwarden starts a private Xvfb.
    Xvfb,
    /// An existing display (`display.display`), e.g. a desktop session.
    Existing,
}

/// Body format of the notification webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookPreset {
    /// ntfy.sh: plain-text POST with a Title header.
    Ntfy,
    /// Telegram Bot API `sendMessage` (needs `telegram_chat_id`).
    Telegram,
    /// Slack (and compatible) incoming webhook: `{"text": ...}`.
    Slack,
    /// JSON object with the event's fields.
    Generic,
}

/// `[gateway]`: what to run and where.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Gateway or TWS.
    pub program: Program,
    /// The install directory, if configured; `None` means discover it (`gateway::install`:
    /// `~/Jts/ibgateway/<highest version>`, `/opt/ibgateway`, ...).
    pub install_dir: Option<PathBuf>,
    /// The settings directory the gateway reads `jts.ini` from and writes its logs to.
    pub settings_dir: PathBuf,
    /// Live or paper.
    pub trading_mode: TradingMode,
    /// The TWS API port the gateway listens on (and the probe connects to).
    pub api_port: u16,
    /// Which `java`.
    pub java: Java,
    /// Extra JVM arguments, appended after the ones from the `.vmoptions` file.
    pub jvm_args: Vec<String>,
}

/// `[account]`: who logs in. Values of secrets are not here, only where to read them.
#[derive(Clone, Debug)]
pub struct AccountConfig {
    /// IBKR username.
    pub username: String,
    /// Where the password is.
    pub password: SecretSource,
    /// Where the Mobile Authenticator activation code is (None: not configured).
    pub totp: Option<SecretSource>,
}

/// `[login]`: login policy.
#[derive(Clone, Debug)]
pub struct LoginConfig {
    /// The device to pick in the second-factor device list (`second_factor_device`).
    pub second_factor: SecondFactor,
    /// Answer to "existing session detected".
    pub existing_session: SessionPolicy,
    /// Stop trying and call a person after this many failed logins in an hour.
    pub max_failed_logins_per_hour: u32,
    /// A code with less than this left is not typed; the next one is awaited.
    pub min_code_validity: Duration,
    /// Consecutive rejected codes before stopping (a clock or activation-code problem).
    pub max_code_rejections: u32,
    /// How long to wait for an IB Key push to be approved on the phone.
    pub ib_key_wait: Duration,
    /// First wait before logging in again (same gateway) after a login that went nowhere.
    pub relogin_backoff: Duration,
    /// From typing the credentials to the main window, at most.
    pub login_timeout: Duration,
    /// How dialog contents are read.
    pub content_reader: ContentReader,
}

impl LoginConfig {
    /// True if the second factor is TOTP from the Mobile Authenticator app.
    pub fn uses_authenticator_app(&self) -> bool {
        self.second_factor.is_totp()
    }
}

/// `[schedule]`: planned restarts, in `timezone`.
#[derive(Clone, Debug)]
pub struct ScheduleConfig {
    /// Time zone of all the times below.
    pub timezone: TimeZone,
    /// Its IANA name, as written.
    pub timezone_name: String,
    /// Restart (without a new login if the gateway allows) every day at this time.
    pub daily_restart: Option<Time>,
    /// Full stop and fresh login once a week (after IBKR's Sunday token expiry).
    pub weekly_cold_restart: Option<WeekdayTime>,
    /// Start of IBKR's nightly maintenance, when the gateway exits by itself.
    pub maintenance_start: Time,
    /// After a maintenance exit, wait this long before logging in again.
    pub maintenance_delay: Duration,
    /// Stop for good (until started again) at this weekly time.
    pub closedown: Option<WeekdayTime>,
}

/// `[display]`: the X display.
#[derive(Clone, Debug)]
pub struct DisplayConfig {
    /// Own Xvfb or an existing display.
    pub mode: DisplayMode,
    /// The display name for `existing` (e.g. `:0`).
    pub display: Option<String>,
    /// `XAUTHORITY` for an existing display.
    pub xauthority: Option<PathBuf>,
    /// Xvfb screen geometry.
    pub geometry: Geometry,
}

/// `[probe]`: the TWS API health probe.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// Time between probes while running.
    pub interval: Duration,
    /// One probe's deadline.
    pub timeout: Duration,
    /// API client id used by the probe (reserve it: no real client may use it).
    pub client_id: i32,
    /// Consecutive failed probes before a restart.
    pub failures_before_restart: u32,
    /// How long the gateway may report a lost IBKR connection before a restart.
    pub link_lost_grace: Duration,
}

/// `[state]`.
#[derive(Clone, Debug)]
pub struct StateConfig {
    /// Directory for `state.json` and other persistent files.
    pub dir: PathBuf,
}

/// `[control]`: how to talk to a running ibwarden.
#[derive(Clone, Debug)]
pub struct ControlConfig {
    /// Unix socket of the control interface.
    pub socket: PathBuf,
    /// IBC-compatible command server port (on 127.0.0.1), if wanted.
    pub ibc_command_port: Option<u16>,
    /// File with a token the IBC command server requires, if set.
    pub ibc_command_auth_file: Option<PathBuf>,
}

/// `[health]`.
#[derive(Clone, Debug)]
pub struct HealthConfig {
    /// HTTP health endpoint address, if wanted.
    pub listen: Option<SocketAddr>,
}

/// `[notify]`: how a person is told.
#[derive(Clone, Debug)]
pub struct NotifyConfig {
    /// Desktop notifications over D-Bus.
    pub desktop: bool,
    /// Whose desktop session to notify when running as a system service.
    pub desktop_user: Option<String>,
    /// A command run for each notification (argv; the event is appended as arguments and set
    /// in `IBWARDEN_*` environment variables; stdin is null).
    pub command: Option<Vec<String>>,
    /// File holding the webhook URL (a secret: URLs carry tokens).
    pub webhook_url_file: Option<PathBuf>,
    /// Webhook body format.
    pub webhook_preset: WebhookPreset,
    /// Telegram chat id for the `telegram` preset.
    pub telegram_chat_id: Option<String>,
}

/// A validated config.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from (as given).
    pub path: PathBuf,
    /// `[gateway]`.
    pub gateway: GatewayConfig,
    /// `[account]`.
    pub account: AccountConfig,
    /// `[login]`.
    pub login: LoginConfig,
    /// `[schedule]`.
    pub schedule: ScheduleConfig,
    /// `[display]`.
    pub display: DisplayConfig,
    /// `[probe]`.
    pub probe: ProbeConfig,
    /// `[state]`.
    pub state: StateConfig,
    /// `[control]`.
    pub control: ControlConfig,
    /// `[health]`.
    pub health: HealthConfig,
    /// `[notify]`.
    pub notify: NotifyConfig,
    /// Non-fatal remarks (e.g. a secret read from an environment variable).
    pub warnings: Vec<Diagnostic>,
}

/// The parts of the process environment that defaults depend on.
#[derive(Clone, Debug, Default)]
pub struct Env {
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// `$STATE_DIRECTORY` (systemd `StateDirectory=`; first entry if several).
    pub state_directory: Option<PathBuf>,
    /// `$RUNTIME_DIRECTORY` (systemd `RuntimeDirectory=`; first entry if several).
    pub runtime_directory: Option<PathBuf>,
    /// `$XDG_STATE_HOME`.
    pub xdg_state_home: Option<PathBuf>,
}

impl Env {
    /// Reads the current process environment.
    pub fn from_process() -> Env {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        // systemd separates several directories with ':'; the first is ours.
        let first = |p: Option<PathBuf>| {
            p.map(|p| {
                let s = p.to_string_lossy().into_owned();
                PathBuf::from(s.split(':').next().unwrap_or_default())
            })
        };
        Env {
            home: var("HOME"),
            state_directory: first(var("STATE_DIRECTORY")),
            runtime_directory: first(var("RUNTIME_DIRECTORY")),
            xdg_state_home: var("XDG_STATE_HOME"),
        }
    }

    /// The state directory used when `[state] dir` is not set.
    pub fn default_state_dir(&self) -> Option<PathBuf> {
        if let Some(d) = &self.state_directory {
            return Some(d.clone());
        }
        if let Some(x) = &self.xdg_state_home {
            return Some(x.join("ibwarden"));
        }
        self.home.as_ref().map(|h| h.join(".local/state/ibwarden"))
    }
}

impl Config {
    /// Reads and validates a config file, with defaults from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config = Self::from_str_with_env(&text, path, &Env::from_process())?;
        tracing::debug!(
            path = %path.display(),
            program = config.gateway.program.as_str(),
            trading_mode = config.gateway.trading_mode.as_str(),
            warnings = config.warnings.len(),
            "config loaded"
        );
        Ok(config)
    }

    /// Parses config text; `path` is used in messages and to resolve relative paths.
    #[allow(clippy::should_implement_trait)] // needs a path, so not `FromStr`
    pub fn from_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Self::from_str_with_env(text, path, &Env::from_process())
    }

    /// Like [`Config::from_str`] with an explicit environment.
    pub fn from_str_with_env(text: &str, path: &Path, env: &Env) -> Result<Config, ConfigError> {
        let base_dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // Absolute base so that resolved paths stay valid after a chdir.
        let base_dir = std::path::absolute(&base_dir).unwrap_or(base_dir);
        let mut ctx = Ctx {
            source: text,
            path: path.to_path_buf(),
            base_dir,
            home: env.home.clone(),
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        let (root, syntax) = DeTable::parse_recoverable(text);
        for e in &syntax {
            let span = e.span().unwrap_or(0..0);
            ctx.error(span, None, format!("invalid TOML: {}", e.message().trim()));
        }
        // After a syntax error the tree is partial: checking it would add misleading
        // "missing key" errors, so only the syntax errors are reported.
        let config = if syntax.is_empty() {
            build(&mut ctx, root.get_ref(), path, env)
        } else {
            None
        };
        if ctx.errors.is_empty() {
            if let Some(mut config) = config {
                ctx.warnings.sort_by_key(|d| (d.line, d.column));
                config.warnings = ctx.warnings;
                return Ok(config);
            }
        }
        let mut diagnostics = ctx.errors;
        diagnostics.sort_by_key(|d| (d.line, d.column));
        diagnostics.dedup();
        if diagnostics.is_empty() {
            // build() returns None only after recording an error; keep a message anyway.
            diagnostics.push(Diagnostic::at(
                text,
                path,
                0..0,
                None,
                "invalid config".into(),
            ));
        }
        Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            diagnostics,
        })
    }
}

/// Default API port of a program in a trading mode.
pub fn default_api_port(program: Program, mode: TradingMode) -> u16 {
    match (program, mode) {
        (Program::Gateway, TradingMode::Live) => 4001,
        (Program::Gateway, TradingMode::Paper) => 4002,
        (Program::Tws, TradingMode::Live) => 7496,
        (Program::Tws, TradingMode::Paper) => 7497,
    }
}

/// How a time of day is described in type errors.
const TIME: &str = "a time like \"23:45\"";

fn dur(s: &str) -> Result<Duration, String> {
    units::parse_duration(s)
}

/// Checks a duration is within `min..=max` and reports it at the key otherwise.
fn dur_in(
    ctx: &mut Ctx<'_>,
    sec: &Section<'_, '_>,
    key: &str,
    default: Duration,
    min: Duration,
    max: Duration,
) -> Duration {
    let Some(d) = ctx.parsed(sec, key, "a duration like \"8s\" or \"5m\"", dur) else {
        return default;
    };
    if d < min || d > max {
        ctx.error(
            sec.span_of(key),
            Some(sec.key(key)),
            format!(
                "must be between {} and {}",
                units::format_duration(min),
                units::format_duration(max)
            ),
        );
        return default;
    }
    d
}

/// Reads one secret source from `<prefix>_file`, `<prefix>_credential` or `<prefix>_env`
/// (at most one). Never looks at or prints a value.
fn secret_source(ctx: &mut Ctx<'_>, sec: &Section<'_, '_>, prefix: &str) -> Option<SecretSource> {
    let file_key = format!("{prefix}_file");
    let cred_key = format!("{prefix}_credential");
    let env_key = format!("{prefix}_env");
    let present: Vec<&String> = [&file_key, &cred_key, &env_key]
        .into_iter()
        .filter(|k| sec.has(k))
        .collect();
    if present.len() > 1 {
        let names: Vec<&str> = present.iter().map(|s| s.as_str()).collect();
        ctx.error(
            sec.span_of(present[1]),
            Some(sec.key(present[1])),
            format!("set only one of {}", names.join(", ")),
        );
        return None;
    }
    if sec.has(&file_key) {
        return ctx
            .path(sec, &file_key)
            .map(|p| SecretSource::File(p.into_inner()));
    }
    if sec.has(&cred_key) {
        let name = ctx.string(sec, &cred_key)?;
        let valid = !name.get_ref().is_empty()
            && !name.get_ref().contains('/')
            && name.get_ref() != "."
            && name.get_ref() != "..";
        if !valid {
            ctx.error(
                name.span(),
                Some(sec.key(&cred_key)),
                "a credential name must be a plain file name (as in LoadCredential=NAME:...)"
                    .into(),
            );
            return None;
        }
        return Some(SecretSource::Credential(name.into_inner()));
    }
    if sec.has(&env_key) {
        let var = ctx.string(sec, &env_key)?;
        let v = var.get_ref();
        let valid = v
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            // Do not echo: a person may have pasted the secret itself here by mistake.
            ctx.error(
                var.span(),
                Some(sec.key(&env_key)),
                "must be the NAME of an environment variable (letters, digits, _), not the secret \
                 itself"
                    .into(),
            );
            return None;
        }
        ctx.warn(
            var.span(),
            Some(sec.key(&env_key)),
            "secret read from an environment variable: the weakest option (visible in \
             /proc/PID/environ, inherited by children); prefer a *_credential or *_file"
                .into(),
        );
        return Some(SecretSource::Env(var.into_inner()));
    }
    None
}

/// Builds the typed config; returns `None` if a required value is missing or invalid (the
/// problem is recorded in `ctx`).
fn build(ctx: &mut Ctx<'_>, root: &DeTable<'_>, path: &Path, env: &Env) -> Option<Config> {
    ctx.check_top_level(root);
    let g = ctx.section(root, "gateway");
    let a = ctx.section(root, "account");
    let l = ctx.section(root, "login");
    let s = ctx.section(root, "schedule");
    let d = ctx.section(root, "display");
    let p = ctx.section(root, "probe");
    let st = ctx.section(root, "state");
    let c = ctx.section(root, "control");
    let h = ctx.section(root, "health");
    let n = ctx.section(root, "notify");

    // [state] first: other defaults live under it.
    let state_dir = match ctx.path(&st, "dir") {
        Some(p) => Some(p.into_inner()),
        None if st.has("dir") => None,
        None => {
            let d = env.default_state_dir();
            if d.is_none() {
                ctx.missing(
                    &st,
                    "dir",
                    " and cannot be derived ($STATE_DIRECTORY, $XDG_STATE_HOME and $HOME are unset)",
                );
            }
            d
        }
    };

    // [gateway]
    let program = ctx
        .choice(
            &g,
            "program",
            &[("gateway", Program::Gateway), ("tws", Program::Tws)],
        )
        .unwrap_or(Program::Gateway);
    let trading_mode_read = ctx.choice(
        &g,
        "trading_mode",
        &[("live", TradingMode::Live), ("paper", TradingMode::Paper)],
    );
    // An invalid mode was reported; do not add errors that only follow from guessing it.
    let trading_mode_known = trading_mode_read.is_some() || !g.has("trading_mode");
    let trading_mode = trading_mode_read.unwrap_or(TradingMode::Live);
    let install_dir = ctx.path(&g, "install_dir").map(Spanned::into_inner);
    let settings_dir = ctx
        .path(&g, "settings_dir")
        .map(Spanned::into_inner)
        .or_else(|| state_dir.as_ref().map(|d| d.join("jts")));
    let api_port = ctx
        .integer(&g, "api_port", 1, 65535)
        .map(|n| n as u16)
        .unwrap_or_else(|| default_api_port(program, trading_mode));
    let java = match ctx.string(&g, "java") {
        Some(j) if j.get_ref() == "auto" => Java::Auto,
        Some(j) => match reader::resolve_path(j.get_ref(), &ctx.base_dir, ctx.home.as_deref()) {
            Ok(p) if !j.get_ref().is_empty() => Java::Path(p),
            Ok(_) => {
                ctx.error(
                    j.span(),
                    Some(g.key("java")),
                    "use \"auto\" or a path".into(),
                );
                Java::Auto
            }
            Err(msg) => {
                ctx.error(j.span(), Some(g.key("java")), msg);
                Java::Auto
            }
        },
        None => Java::Auto,
    };
    let jvm_args = ctx.string_list(&g, "jvm_args").unwrap_or_default();
    for (i, arg) in jvm_args.iter().enumerate() {
        // The gateway's own class path and main class are set by ibwarden; a user-supplied
        // one would silently break the launch.
        if arg == "-cp" || arg == "-classpath" || arg == "-jar" {
            ctx.error(
                g.span_of("jvm_args"),
                Some(g.key("jvm_args")),
                format!(
                    "argument {} ({arg}) is set by ibwarden and cannot be overridden",
                    i + 1
                ),
            );
        }
    }

    // [account]
    let username = match ctx.string(&a, "username") {
        Some(u) if u.get_ref().trim().is_empty() => {
            ctx.error(u.span(), Some(a.key("username")), "is empty".into());
            None
        }
        Some(u) => Some(u.into_inner()),
        None => {
            if !a.has("username") {
                ctx.missing(&a, "username", "");
            }
            None
        }
    };
    let password = secret_source(ctx, &a, "password");
    if password.is_none()
        && !(a.has("password_file") || a.has("password_credential") || a.has("password_env"))
    {
        ctx.missing(
            &a,
            "password_file",
            " (set one of password_file, password_credential, password_env)",
        );
    }
    let totp = secret_source(ctx, &a, "totp");

    // [login]
    let second_factor = ctx
        .string(&l, "second_factor_device")
        .map(|s| SecondFactor::from_label(s.get_ref()))
        .unwrap_or(SecondFactor::AuthenticatorApp);
    let login = LoginConfig {
        existing_session: ctx
            .choice(
                &l,
                "existing_session",
                &[
                    ("primary", SessionPolicy::Primary),
                    ("primaryoverride", SessionPolicy::PrimaryOverride),
                    ("secondary", SessionPolicy::Secondary),
                    ("manual", SessionPolicy::Manual),
                ],
            )
            .unwrap_or(SessionPolicy::Primary),
        max_failed_logins_per_hour: ctx
            .integer(&l, "max_failed_logins_per_hour", 1, 20)
            .map_or(3, |n| n as u32),
        min_code_validity: dur_in(
            ctx,
            &l,
            "min_code_validity",
            Duration::from_secs(8),
            Duration::from_secs(1),
            Duration::from_secs(25),
        ),
        max_code_rejections: ctx
            .integer(&l, "max_code_rejections", 1, 10)
            .map_or(2, |n| n as u32),
        ib_key_wait: dur_in(
            ctx,
            &l,
            "ib_key_wait",
            Duration::from_secs(180),
            Duration::from_secs(10),
            Duration::from_secs(600),
        ),
        relogin_backoff: dur_in(
            ctx,
            &l,
            "relogin_backoff",
            Duration::from_secs(60),
            Duration::from_secs(5),
            Duration::from_secs(600),
        ),
        login_timeout: dur_in(
            ctx,
            &l,
            "login_timeout",
            Duration::from_secs(120),
            Duration::from_secs(10),
            Duration::from_secs(1800),
        ),
        content_reader: ctx
            .choice(
                &l,
                "content_reader",
                &[
                    ("auto", ContentReader::Auto),
                    ("ocr", ContentReader::Ocr),
                    ("atspi", ContentReader::Atspi),
                    ("none", ContentReader::None),
                ],
            )
            .unwrap_or(ContentReader::Auto),
        second_factor,
    };
    if trading_mode_known
        && trading_mode == TradingMode::Live
        && login.uses_authenticator_app()
        && totp.is_none()
    {
        let has_any = a.has("totp_file") || a.has("totp_credential") || a.has("totp_env");
        if !has_any {
            ctx.missing(
                &a,
                "totp_file",
                " (live mode with the Mobile Authenticator app needs the activation code: set \
                 one of totp_file, totp_credential, totp_env; or trading_mode = \"paper\")",
            );
        }
    }

    // [schedule]
    let timezone_name = ctx
        .string(&s, "timezone")
        .map(Spanned::into_inner)
        .unwrap_or_else(|| "America/New_York".to_string());
    let timezone = match TimeZone::get(&timezone_name) {
        Ok(tz) => Some(tz),
        Err(_) => {
            ctx.error(
                s.span_of("timezone"),
                Some(s.key("timezone")),
                format!(
                    "unknown time zone {timezone_name:?}; use an IANA name like \
                     \"America/New_York\" or \"Europe/London\""
                ),
            );
            None
        }
    };
    let optional_weekday_time =
        |ctx: &mut Ctx<'_>, key: &str, default: Option<WeekdayTime>| -> Option<WeekdayTime> {
            match ctx.string(&s, key) {
                Some(v) if v.get_ref() == "off" => None,
                Some(v) => match units::parse_weekday_time(v.get_ref()) {
                    Ok(w) => Some(w),
                    Err(msg) => {
                        ctx.error(v.span(), Some(s.key(key)), format!("{msg}, or \"off\""));
                        default
                    }
                },
                None => default,
            }
        };
    let weekly_cold_restart = optional_weekday_time(
        ctx,
        "weekly_cold_restart",
        Some(WeekdayTime {
            weekday: jiff::civil::Weekday::Sunday,
            time: Time::constant(1, 30, 0, 0),
        }),
    );
    let closedown = optional_weekday_time(ctx, "closedown", None);
    let daily_restart = ctx.parsed(&s, "daily_restart", TIME, units::parse_time_of_day);
    let maintenance_start = ctx
        .parsed(&s, "maintenance_start", TIME, units::parse_time_of_day)
        .unwrap_or(Time::constant(23, 45, 0, 0));
    let maintenance_delay = dur_in(
        ctx,
        &s,
        "maintenance_delay",
        Duration::from_secs(480),
        Duration::ZERO,
        Duration::from_secs(3600),
    );
    let schedule = timezone.map(|timezone| ScheduleConfig {
        timezone,
        timezone_name,
        daily_restart,
        weekly_cold_restart,
        maintenance_start,
        maintenance_delay,
        closedown,
    });

    // [display]
    let mode = ctx
        .choice(
            &d,
            "mode",
            &[
                ("xvfb", DisplayMode::Xvfb),
                ("existing", DisplayMode::Existing),
            ],
        )
        .unwrap_or(DisplayMode::Xvfb);
    let display_name = ctx.string(&d, "display").map(Spanned::into_inner);
    if let Some(name) = &display_name {
        if !looks_like_display(name) {
            ctx.error(
                d.span_of("display"),
                Some(d.key("display")),
                format!("{name:?} is not an X display name like \":0\" or \"host:1\""),
            );
        }
    }
    if mode == DisplayMode::Existing && display_name.is_none() && !d.has("display") {
        ctx.missing(
            &d,
            "display",
            " (mode = \"existing\" needs the display, e.g. \":0\")",
        );
    }
    if mode == DisplayMode::Xvfb && display_name.is_some() {
        ctx.warn(
            d.span_of("display"),
            Some(d.key("display")),
            "ignored with mode = \"xvfb\" (ibwarden picks a free display number)".into(),
        );
    }
    let display = DisplayConfig {
        mode,
        display: display_name,
        xauthority: ctx.path(&d, "xauthority").map(Spanned::into_inner),
        geometry: ctx
            .parsed(
                &d,
                "geometry",
                "a geometry like \"1280x1024x24\"",
                units::parse_geometry,
            )
            .unwrap_or(Geometry {
                width: 1280,
                height: 1024,
                depth: 24,
            }),
    };

    // [probe]
    let probe = ProbeConfig {
        interval: dur_in(
            ctx,
            &p,
            "interval",
            Duration::from_secs(30),
            Duration::from_secs(1),
            Duration::from_secs(3600),
        ),
        timeout: dur_in(
            ctx,
            &p,
            "timeout",
            Duration::from_secs(5),
            Duration::from_millis(100),
            Duration::from_secs(120),
        ),
        client_id: ctx
            .integer(&p, "client_id", 0, i64::from(i32::MAX))
            .map_or(999, |n| n as i32),
        failures_before_restart: ctx
            .integer(&p, "failures_before_restart", 1, 100)
            .map_or(3, |n| n as u32),
        link_lost_grace: dur_in(
            ctx,
            &p,
            "link_lost_grace",
            Duration::from_secs(300),
            Duration::ZERO,
            Duration::from_secs(86_400),
        ),
    };
    if probe.timeout >= probe.interval {
        ctx.error(
            p.span_of("timeout"),
            Some(p.key("timeout")),
            format!(
                "must be shorter than probe.interval ({})",
                units::format_duration(probe.interval)
            ),
        );
    }

    // [control]
    let socket = ctx.path(&c, "socket").map(Spanned::into_inner).or_else(|| {
        env.runtime_directory
            .as_ref()
            .map(|r| r.join("control.sock"))
            .or_else(|| state_dir.as_ref().map(|d| d.join("control.sock")))
    });
    let control_port = ctx
        .integer(&c, "ibc_command_port", 1, 65535)
        .map(|n| n as u16);
    if let Some(port) = control_port {
        if port == api_port {
            ctx.error(
                c.span_of("ibc_command_port"),
                Some(c.key("ibc_command_port")),
                format!("must differ from gateway.api_port ({api_port})"),
            );
        }
    }
    let control_auth = ctx
        .path(&c, "ibc_command_auth_file")
        .map(Spanned::into_inner);

    // [health]
    let listen = match ctx.string(&h, "listen") {
        Some(v) => match v.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                ctx.error(
                    v.span(),
                    Some(h.key("listen")),
                    format!(
                        "{:?} is not an address:port like \"127.0.0.1:9187\"",
                        v.get_ref()
                    ),
                );
                None
            }
        },
        None => None,
    };

    // [notify]
    let webhook_preset = ctx
        .choice(
            &n,
            "webhook_preset",
            &[
                ("ntfy", WebhookPreset::Ntfy),
                ("telegram", WebhookPreset::Telegram),
                ("slack", WebhookPreset::Slack),
                ("generic", WebhookPreset::Generic),
            ],
        )
        .unwrap_or(WebhookPreset::Generic);
    let webhook_url_file = ctx.path(&n, "webhook_url_file").map(Spanned::into_inner);
    let telegram_chat_id = match n.raw("telegram_chat_id").map(|v| v.get_ref()) {
        Some(toml::de::DeValue::Integer(i)) => Some(i.as_str().to_string()),
        Some(_) => ctx.string(&n, "telegram_chat_id").map(Spanned::into_inner),
        None => None,
    };
    if n.has("webhook_preset") && webhook_url_file.is_none() && !n.has("webhook_url_file") {
        ctx.error(
            n.span_of("webhook_preset"),
            Some(n.key("webhook_preset")),
            "set webhook_url_file too (the preset formats the webhook's body)".into(),
        );
    }
    if webhook_preset == WebhookPreset::Telegram && telegram_chat_id.is_none() {
        ctx.missing(
            &n,
            "telegram_chat_id",
            " (webhook_preset = \"telegram\" needs it)",
        );
    }
    let command = match ctx.string_list(&n, "command") {
        Some(argv) if argv.is_empty() => {
            ctx.error(
                n.span_of("command"),
                Some(n.key("command")),
                "is empty; remove the key or give a program and its arguments".into(),
            );
            None
        }
        other => other,
    };
    let notify = NotifyConfig {
        desktop: ctx.boolean(&n, "desktop").unwrap_or(true),
        desktop_user: ctx.string(&n, "desktop_user").map(Spanned::into_inner),
        command,
        webhook_url_file,
        webhook_preset,
        telegram_chat_id,
    };

    // Anything still missing was reported above.
    let settings_dir = settings_dir?;
    let state_dir = state_dir?;
    let socket = socket?;
    let username = username?;
    let password = password?;
    let schedule = schedule?;
    Some(Config {
        path: path.to_path_buf(),
        gateway: GatewayConfig {
            program,
            install_dir,
            settings_dir,
            trading_mode,
            api_port,
            java,
            jvm_args,
        },
        account: AccountConfig {
            username,
            password,
            totp,
        },
        login,
        schedule,
        display,
        probe,
        state: StateConfig { dir: state_dir },
        control: ControlConfig {
            socket,
            ibc_command_port: control_port,
            ibc_command_auth_file: control_auth,
        },
        health: HealthConfig { listen },
        notify,
        warnings: Vec::new(),
    })
}

/// `:N`, `:N.S`, `host:N` (not validated further: Xlib decides).
fn looks_like_display(name: &str) -> bool {
    match name.rsplit_once(':') {
        Some((_, num)) => {
            let n = num.split('.').next().unwrap_or("");
            !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests;
