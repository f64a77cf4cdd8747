//! Plain data exchanged between the core and the adapters.

use std::fmt;

/// One top-level X window as the watcher saw it when it was mapped.
///
/// Window ids repeat across JVM restarts, so a window is identified by `(id, pid)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowInfo {
    /// X window id.
    pub id: u32,
    /// `_NET_WM_PID`, if set.
    pub pid: Option<u32>,
    /// The parents of `pid` (nearest first), as the adapter read them from procfs, so the
    /// core can tell a window of a process the JVM forked. Empty when unknown.
    pub ancestry: Vec<u32>,
    /// `_NET_WM_NAME`, else `WM_NAME`, else empty.
    pub title: String,
    /// `WM_TRANSIENT_FOR`, if set (dialogs).
    pub transient_for: Option<u32>,
    /// Geometry (root coordinates, no WM so no frame).
    pub x: i16,
    /// Geometry.
    pub y: i16,
    /// Geometry.
    pub width: u16,
    /// Geometry.
    pub height: u16,
}

/// A credential referenced by name. Actions carry references, never values, so logging an
/// action cannot leak a secret; the driver resolves them at the last moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretRef {
    /// The IBKR username (not secret, but typed the same way).
    Username,
    /// The IBKR password.
    Password,
    /// The 6-digit TOTP code of the given RFC 6238 time step.
    TotpCode {
        /// `floor(unix_seconds / 30)`.
        step: u64,
    },
}

/// A named key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamedKey {
    /// Tab: next focusable component.
    Tab,
    /// Shift+Tab: previous component.
    ShiftTab,
    /// Enter: presses the default button.
    Enter,
    /// Space: presses the focused button / toggles the focused toggle.
    Space,
    /// Escape.
    Escape,
    /// Up arrow.
    Up,
    /// Down arrow.
    Down,
    /// Home.
    Home,
    /// Ctrl+A (select all in a text field, so typing replaces it).
    SelectAll,
}

/// One step of keyboard input into a window.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyStep {
    /// Literal, non-secret text.
    Text(String),
    /// A secret, resolved by the driver.
    Secret(SecretRef),
    /// A named key.
    Key(NamedKey),
    /// A pause, in milliseconds (after a combo selection, before Enter, ...).
    PauseMs(u32),
    /// A left click at a point of the window (window coordinates): focusing a field or
    /// pressing a toggle found by the screen model.
    Click {
        /// Column.
        x: u32,
        /// Row.
        y: u32,
    },
}

impl fmt::Debug for KeyStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyStep::Text(t) => write!(f, "Text({t:?})"),
            KeyStep::Secret(r) => write!(f, "Secret({r:?})"),
            KeyStep::Key(k) => write!(f, "Key({k:?})"),
            KeyStep::PauseMs(ms) => write!(f, "PauseMs({ms})"),
            KeyStep::Click { x, y } => write!(f, "Click({x}, {y})"),
        }
    }
}

/// What one TWS API probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// Handshake, START_API, managed accounts and next valid id all arrived.
    Up {
        /// Negotiated server version.
        server_version: u32,
        /// Managed accounts, as sent.
        accounts: Vec<String>,
        /// True if a 1100 (connectivity between IB and TWS lost) arrived and no 1101/1102 after.
        link_lost: bool,
    },
    /// Nothing usable: refused, timed out, closed early. The text says which step failed.
    Down {
        /// Human-readable reason (no secrets: the probe never sees any).
        reason: String,
    },
}

/// What a line of the gateway's `launcher.log` (or a sequence of them) says; the follower
/// adapter (`crate::launcher_log`) parses the file into these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LauncherEvent {
    /// A gateway JVM started (`Starting IB Gateway`).
    GatewayStarting,
    /// It was started with an auto-restart token (`IB GATEWAY RESTART: restart=<dir>`).
    TokenRestart,
    /// Log In was pressed and the gateway asked IBKR (`AuthTimeoutMonitor-CCP: activate`).
    AuthStarted,
    /// IBKR answered the login (`NS_AUTH_START`): credentials reached the server.
    AuthAccepted,
    /// IBKR never answered the login: `AuthTimeoutMonitor-CCP: Timeout!` with no
    /// `NS_AUTH_START` since the `activate`. A concurrent session or IBKR's limiter; only a
    /// growing wait and re-pressing Log In in the same JVM help (a new JVM re-arms it).
    SilentDrop,
    /// `AuthTimeoutMonitor-CCP: Timeout!` that is not a silent drop: after `NS_AUTH_START`,
    /// or with no `activate` seen (following began mid-login).
    AuthTimeout,
    /// Wrong username or password (`Authentication failed`).
    AuthFailed,
    /// `Existing session detected`.
    SessionPolicy,
    /// Second-factor result.
    SecondFactor(SecondFactorOutcome),
    /// `Connection to server failed`.
    ConnectionFailed,
    /// `Login has completed`.
    LoginCompleted,
    /// `API server listening on port N`.
    ApiListening {
        /// The port.
        port: u16,
    },
    /// `Session disconnected: re-login is required`.
    ReloginRequired,
    /// The gateway is restarting itself (`Restart in progress`, `The application will
    /// automatically restart in`, `IB GATEWAY RESTART` before the nightly exit).
    RestartInProgress,
    /// The auto-restart token expired: a full login with 2FA is needed.
    TokenExpired,
    /// A restart was requested but no auto-restart token was found.
    TokenMissing,
    /// `Exiting: <reason>`.
    Exiting {
        /// The reason as logged (at most 200 characters).
        reason: String,
    },
}

/// How a second-factor step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecondFactorOutcome {
    /// `Second factor authentication accepted`.
    Accepted,
    /// `Second factor authentication failed`.
    Failed,
    /// `Second factor authentication timed out`.
    TimedOut,
}

/// A form ibwarden filled and must see before it submits it (the press that spends a login
/// attempt or a code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormCheck {
    /// The login frame: username, password (as a mask), the trading mode toggle.
    Login {
        /// The mode the toggle must show.
        mode: super::domain::TradingMode,
    },
    /// The second-factor dialog's code field.
    Code {
        /// The TOTP step whose code must be in it.
        step: u64,
    },
    /// The second-factor device chooser: the configured device's row is the selected one.
    Device,
}

/// What the screen model saw in a filled form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormVerdict {
    /// It holds what was typed.
    Matches,
    /// It does not (why, without secrets): never submit it.
    Differs(String),
    /// The model could not tell (no OCR, an unknown look): why.
    Unseen(String),
}

/// Where the screen model found a form's parts, in window coordinates: what a refill by
/// target clicks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FormTargets {
    /// The username field.
    pub username: Option<(u32, u32)>,
    /// The password field.
    pub password: Option<(u32, u32)>,
    /// The `Live Trading` toggle.
    pub live: Option<(u32, u32)>,
    /// The `Paper Trading` toggle.
    pub paper: Option<(u32, u32)>,
    /// The code field.
    pub code: Option<(u32, u32)>,
    /// The configured device's row in the chooser.
    pub device: Option<(u32, u32)>,
}
