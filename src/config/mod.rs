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

mod build;
mod error;
pub(crate) mod keys;

/// The man page `ibwarden.toml(5)`: every key, generated from the key table.
pub fn reference_man(version: &str) -> String {
    keys::reference_man(version)
}

/// The CONFIGURATION section of `ibwarden(1)` (roff body, without the `.SH` line): each
/// section's keys with their defaults, and the ones a reload does not apply, from the same
/// key table; `ibwarden.toml(5)` ([`reference_man`]) has the rest.
pub fn summary_man() -> String {
    keys::summary_man()
}
mod reader;
pub(crate) mod units;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::civil::Time;
use jiff::tz::TimeZone;
use toml::de::DeTable;

pub use error::{ConfigError, Diagnostic};
pub use units::{Geometry, WeekdayTime};

use crate::secret::SecretSource;
use reader::Ctx;

pub use crate::core::domain::{Program, SecondFactor, SessionPolicy, TradingMode, VerifyForm};

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
    /// Gateway or TWS (`Gateway` too when `client_portal`: unused then).
    pub program: Program,
    /// `program = "clientportal"`: IBKR's Client Portal gateway (`clientportal.gw`), logged
    /// in through its web page with headless Chromium instead of windows (see
    /// [`crate::clientportal`]).
    pub client_portal: bool,
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
    /// On stop, how long a logged-in gateway may take to log out after its main window is
    /// closed, before SIGTERM.
    pub stop_grace: Duration,
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

impl AccountConfig {
    /// A secret comes from an environment variable (`*_env`), which ibwarden wipes from its
    /// own environment at start.
    pub fn has_env_secret(&self) -> bool {
        std::iter::once(&self.password)
            .chain(&self.totp)
            .any(|s| matches!(s, SecretSource::Env(_)))
    }
}

/// `[login]`: login policy.
#[derive(Clone, Debug)]
pub struct LoginConfig {
    /// The device to pick in the second-factor device list (`second_factor_device`).
    pub second_factor: SecondFactor,
    /// Answer to "existing session detected".
    pub existing_session: SessionPolicy,
    /// Whether a filled form is seen before it is submitted (`verify_form`).
    pub verify_form: VerifyForm,
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
    /// File with the token the IBC command server requires.
    pub ibc_command_auth_file: Option<PathBuf>,
    /// `ibc_command_token = "none"` (and no token file): serve without a token, as asked.
    pub ibc_command_open: bool,
}

/// `[health]`.
#[derive(Clone, Debug)]
pub struct HealthConfig {
    /// HTTP health endpoint address, if wanted.
    pub listen: Option<SocketAddr>,
}

/// `[relay]`: API clients from other hosts (see [`crate::relay`]).
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Where clients connect; `None`: no relay.
    pub listen: Option<SocketAddr>,
    /// Source address blocks accepted.
    pub allow: Vec<crate::relay::Cidr>,
    /// Relayed connections open at once.
    pub max_connections: u32,
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
    /// `[relay]`.
    pub relay: RelayConfig,
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

/// The largest config file read (the full example is about 12 KiB).
pub const MAX_CONFIG: u64 = 1024 * 1024;

impl Config {
    /// Reads and validates a config file, with defaults from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        use std::io;
        // A regular file of at most 1 MiB (a FIFO or /dev/zero named by mistake is refused,
        // not read forever).
        let read_err = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let bytes = crate::state::read_file_capped(path, MAX_CONFIG).map_err(read_err)?;
        let text = String::from_utf8(bytes).map_err(|_| {
            read_err(io::Error::new(
                io::ErrorKind::InvalidData,
                "it is not UTF-8 text",
            ))
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
            let message = e.message().trim();
            // The parser says only "duplicate key": name it (the span is the key itself).
            let what = if message.starts_with("duplicate") {
                let key = text
                    .get(span.clone())
                    .map(|k| k.trim().trim_matches(['[', ']', '"', '\'']).trim())
                    .filter(|k| !k.is_empty() && k.len() <= 64 && !k.contains('\n'));
                match key {
                    Some(k) => format!(
                        "invalid TOML: {message} `{k}`: it is set twice in the same table; \
                         keep one"
                    ),
                    None => format!("invalid TOML: {message}"),
                }
            } else {
                format!("invalid TOML: {message}")
            };
            ctx.error(span, None, what);
        }
        // After a syntax error the tree is partial: checking it would add misleading
        // "missing key" errors, so only the syntax errors are reported.
        let config = if syntax.is_empty() {
            build::build(&mut ctx, root.get_ref(), path, env)
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
        // A misspelt section name is the cause; the "required key is missing" errors it
        // leads to come after it, whatever their lines.
        diagnostics.sort_by_key(|d| (!d.message.contains("unknown section"), d.line, d.column));
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

impl<'a> From<&'a Config> for crate::secret::SecretSources<'a> {
    fn from(config: &'a Config) -> Self {
        crate::secret::SecretSources {
            username: &config.account.username,
            password: &config.account.password,
            totp: config.account.totp.as_ref(),
            trading_mode: config.gateway.trading_mode,
            second_factor: &config.login.second_factor,
        }
    }
}

#[cfg(test)]
mod tests;
