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
}

impl fmt::Debug for KeyStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyStep::Text(t) => write!(f, "Text({t:?})"),
            KeyStep::Secret(r) => write!(f, "Secret({r:?})"),
            KeyStep::Key(k) => write!(f, "Key({k:?})"),
            KeyStep::PauseMs(ms) => write!(f, "PauseMs({ms})"),
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
