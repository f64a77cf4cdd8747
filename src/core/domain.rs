//! Domain values shared by the configuration, the core and the adapters, defined once.
//!
//! The config parses text into these; the core decides on them; the adapters (install
//! discovery, the JVM command line) read the facts attached to them. Nothing here does IO.

/// Which IBKR program is supervised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Program {
    /// IB Gateway (`ibgateway.vmoptions`, main class `ibgateway.GWClient`).
    Gateway,
    /// Trader Workstation (`tws.vmoptions`, main class `jclient.LoginFrame`).
    Tws,
}

impl Program {
    /// The JVM main class the install4j launcher starts.
    pub fn main_class(self) -> &'static str {
        match self {
            Program::Gateway => "ibgateway.GWClient",
            Program::Tws => "jclient.LoginFrame",
        }
    }

    /// The `.vmoptions` file that marks an install directory of this program.
    pub fn vmoptions_file(self) -> &'static str {
        match self {
            Program::Gateway => "ibgateway.vmoptions",
            Program::Tws => "tws.vmoptions",
        }
    }

    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Program::Gateway => "gateway",
            Program::Tws => "tws",
        }
    }

    /// The name people know it by.
    pub fn display_name(self) -> &'static str {
        match self {
            Program::Gateway => "IB Gateway",
            Program::Tws => "TWS",
        }
    }
}

/// Live or paper trading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TradingMode {
    /// Real money; the second factor is needed.
    Live,
    /// Paper account; no second factor, a `Warning` to accept.
    Paper,
}

impl TradingMode {
    /// The name used in the config file and on the gateway's login screen.
    pub fn as_str(self) -> &'static str {
        match self {
            TradingMode::Live => "live",
            TradingMode::Paper => "paper",
        }
    }
}

/// What to answer when IBKR reports that the account is logged in elsewhere
/// (IBC's `ExistingSessionDetectedAction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionPolicy {
    /// Take the session; a running primary re-takes it.
    Primary,
    /// Take the session at login, but yield to a later login elsewhere.
    PrimaryOverride,
    /// Never override another session.
    Secondary,
    /// Leave the dialog to a person (notified).
    Manual,
}

impl SessionPolicy {
    /// The name used in the config file (IBC's spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            SessionPolicy::Primary => "primary",
            SessionPolicy::PrimaryOverride => "primaryoverride",
            SessionPolicy::Secondary => "secondary",
            SessionPolicy::Manual => "manual",
        }
    }
}

/// Whether a filled form must be seen before it is submitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VerifyForm {
    /// Seen when a screen model can be built; when it cannot (no OCR, an unknown look) an
    /// uninterrupted fill is submitted as typed.
    Auto,
    /// Never submitted unseen: a form the model cannot read means a relaunch and a notice.
    Required,
    /// Submitted as typed (the blind path; for measuring what seeing costs).
    Off,
}

impl VerifyForm {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyForm::Auto => "auto",
            VerifyForm::Required => "required",
            VerifyForm::Off => "off",
        }
    }
}

/// The second-factor device picked in the gateway's device chooser.
///
/// What ibwarden does after the choice depends on the kind, never on a substring of a name:
/// the authenticator app gets a TOTP code typed, IB Key gets a wait for the push approval,
/// anything else is chosen by its label and left to a person.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SecondFactor {
    /// IBKR's "Mobile Authenticator app": a TOTP code from the activation code.
    AuthenticatorApp,
    /// IB Key on the phone: a push to approve.
    IbKey,
    /// Another device, chosen by the label IBKR shows for it.
    Other(String),
}

impl SecondFactor {
    /// The label IBKR shows for the authenticator app in the device list.
    pub const AUTHENTICATOR_APP: &'static str = "Mobile Authenticator app";
    /// The label IBKR shows for IB Key in the device list.
    pub const IB_KEY: &'static str = "IB Key";

    /// Reads a configured device name: the two known devices by their label, whatever the
    /// case, spacing or `-` (`ib-key`, `IB  Key`, `mobile authenticator app`); anything
    /// else is kept as written.
    pub fn from_label(label: &str) -> SecondFactor {
        let n = normalize_label(label);
        if n == normalize_label(Self::AUTHENTICATOR_APP) || n == "authenticator app" {
            SecondFactor::AuthenticatorApp
        } else if n == normalize_label(Self::IB_KEY) {
            SecondFactor::IbKey
        } else {
            SecondFactor::Other(label.trim().to_string())
        }
    }

    /// The label to pick in the device list.
    pub fn label(&self) -> &str {
        match self {
            SecondFactor::AuthenticatorApp => Self::AUTHENTICATOR_APP,
            SecondFactor::IbKey => Self::IB_KEY,
            SecondFactor::Other(s) => s,
        }
    }

    /// True for the authenticator app (a TOTP code is typed).
    pub fn is_totp(&self) -> bool {
        matches!(self, SecondFactor::AuthenticatorApp)
    }
}

/// A label as compared: trimmed, case-folded, runs of whitespace and `-` as one space.
pub fn normalize_label(s: &str) -> String {
    s.split(|c: char| c.is_whitespace() || c == '-')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_factor_labels_normalise() {
        assert_eq!(
            SecondFactor::from_label("Mobile Authenticator app"),
            SecondFactor::AuthenticatorApp
        );
        assert_eq!(
            SecondFactor::from_label("  mobile-authenticator  APP "),
            SecondFactor::AuthenticatorApp
        );
        assert_eq!(SecondFactor::from_label("IB Key"), SecondFactor::IbKey);
        assert_eq!(SecondFactor::from_label("ib-key"), SecondFactor::IbKey);
        assert_eq!(
            SecondFactor::from_label(" Security Card "),
            SecondFactor::Other("Security Card".into())
        );
        // A name that merely contains "IB Key" is not IB Key.
        assert!(matches!(
            SecondFactor::from_label("not IB Key"),
            SecondFactor::Other(_)
        ));
        assert_eq!(SecondFactor::IbKey.label(), "IB Key");
    }
}
